//! What the procedures take and answer besides the resources themselves: their inputs
//! with their limits (`validate`, and the same limits in the OpenAPI schema), and small
//! outputs such as `Deleted` and `UpdatesState`.
//!
//! Every string input has a maximum length, in characters: ids [`MAX_ID`], names
//! [`MAX_NAME`], flavors [`MAX_FLAVOR`], descriptions [`MAX_DESCRIPTION`]. The schema
//! attributes must repeat them as literals; a unit test keeps the two equal.

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use super::Error;
use crate::updates::UpdateType;

/// Ids of resources and projects (Keystone's are at most 64 characters; Nova's and
/// Cinder's are 36-character UUIDs).
pub const MAX_ID: usize = 64;
/// Display names (Nova's and Cinder's limit).
pub const MAX_NAME: usize = 255;
/// Flavor names.
pub const MAX_FLAVOR: usize = 64;
/// Volume descriptions.
pub const MAX_DESCRIPTION: usize = 1024;
/// Volume sizes, in GB.
pub const SIZE_GB: std::ops::RangeInclusive<u32> = 1..=16384;

/// `field` is at most `max` characters.
fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(())
}

/// A display name: at most [`MAX_NAME`] characters, not blank, no control characters.
fn check_name(field: &'static str, name: &str) -> Result<(), Error> {
    check_len(field, name, MAX_NAME)?;
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not be blank or contain control characters"));
    }
    Ok(())
}

/// Input of list queries: everything, or one project's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListInput {
    /// At most 64 characters.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "prj-web", max_length = 64)]
    pub project_id: Option<String>,
}

impl ListInput {
    pub fn validate(&self) -> Result<(), Error> {
        check_len("projectId", self.project_id.as_deref().unwrap_or_default(), MAX_ID)
    }
}

/// Input of `…get` queries and of mutations that act on one resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdInput {
    /// At most 64 characters.
    #[schema(max_length = 64)]
    pub id: String,
}

impl IdInput {
    pub fn validate(&self) -> Result<(), Error> {
        check_len("id", &self.id, MAX_ID)
    }
}

/// Input of `compute.servers.create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerCreate {
    /// At most 64 characters.
    #[schema(example = "prj-web", max_length = 64)]
    pub project_id: String,
    /// At most 255 characters, not blank, no control characters.
    #[schema(example = "api-1", max_length = 255)]
    pub name: String,
    /// Flavor name; defaults to `m1.small`; at most 64 characters.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "m1.small", max_length = 64)]
    pub flavor: Option<String>,
    /// At most 64 characters.
    #[serde(default)]
    #[ts(optional)]
    #[schema(max_length = 64)]
    pub image_id: Option<String>,
}

impl ServerCreate {
    pub fn validate(&self) -> Result<(), Error> {
        check_len("projectId", &self.project_id, MAX_ID)?;
        check_name("name", &self.name)?;
        check_len("flavor", self.flavor.as_deref().unwrap_or_default(), MAX_FLAVOR)?;
        check_len("imageId", self.image_id.as_deref().unwrap_or_default(), MAX_ID)
    }
}

/// Input of `storage.volumes.create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeCreate {
    /// At most 64 characters.
    #[schema(example = "prj-web", max_length = 64)]
    pub project_id: String,
    /// At most 255 characters, not blank, no control characters.
    #[schema(example = "scratch", max_length = 255)]
    pub name: String,
    /// 1 to 16384.
    #[schema(example = 10, minimum = 1, maximum = 16384)]
    pub size_gb: u32,
    /// At most 1024 characters.
    #[serde(default)]
    #[ts(optional)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
}

impl VolumeCreate {
    pub fn validate(&self) -> Result<(), Error> {
        check_len("projectId", &self.project_id, MAX_ID)?;
        check_name("name", &self.name)?;
        if !SIZE_GB.contains(&self.size_gb) {
            return Err(Error::invalid("sizeGb", format!("must be between {} and {}", SIZE_GB.start(), SIZE_GB.end())));
        }
        check_len("description", self.description.as_deref().unwrap_or_default(), MAX_DESCRIPTION)
    }
}

/// What a delete answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    pub id: String,
}

/// The last update of one type (`updates.state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypeUpdateState {
    #[serde(rename = "type")]
    pub kind: UpdateType,
    /// 0 when no update of this type that the caller may see was published yet.
    #[ts(type = "number")]
    pub seq: u64,
    /// Microseconds since the Unix epoch; 0 when none yet.
    #[ts(type = "number")]
    pub ts: u64,
}

/// Output of `updates.state`: where the bus stands, for clients deciding what to refetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdatesState {
    /// The latest `seq` the bus handed out.
    #[ts(type = "number")]
    pub seq: u64,
    /// How many updates the replay ring keeps for resuming clients.
    #[ts(type = "number")]
    pub ring_size: u64,
    pub types: Vec<TypeUpdateState>,
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    /// The `maxLength` of each string property in a type's schema.
    fn max_lengths<T: PartialSchema>() -> Vec<(String, Option<usize>)> {
        let schema = serde_json::to_value(T::schema()).expect("schema as JSON");
        let properties = schema["properties"].as_object().expect("properties");
        properties
            .iter()
            .filter(|(_, p)| p.to_string().contains("\"string\""))
            .map(|(name, p)| (name.clone(), p["maxLength"].as_u64().map(|n| n as usize)))
            .collect()
    }

    #[test]
    fn the_schema_states_every_limit_validate_enforces() {
        let limit = |field: &str| match field {
            "id" | "projectId" | "imageId" => MAX_ID,
            "name" => MAX_NAME,
            "flavor" => MAX_FLAVOR,
            "description" => MAX_DESCRIPTION,
            other => panic!("no limit known for {other}"),
        };
        let all = [
            max_lengths::<ListInput>(),
            max_lengths::<IdInput>(),
            max_lengths::<ServerCreate>(),
            max_lengths::<VolumeCreate>(),
        ];
        let strings: Vec<_> = all.into_iter().flatten().collect();
        // projectId (list), id, projectId, name, flavor, imageId, projectId, name, description.
        assert_eq!(strings.len(), 9, "{strings:?}");
        for (field, max) in strings {
            assert_eq!(max, Some(limit(&field)), "{field}");
        }
    }

    #[test]
    fn an_oversized_string_names_its_field_and_limit() {
        let input = ServerCreate {
            project_id: "prj-web".into(),
            name: "web".into(),
            flavor: Some("f".repeat(MAX_FLAVOR + 1)),
            image_id: None,
        };
        assert_eq!(input.validate(), Err(Error::invalid("flavor", "at most 64 characters")));
        let input = ServerCreate { flavor: Some("f".repeat(MAX_FLAVOR)), ..input };
        assert_eq!(input.validate(), Ok(()));
        let input = IdInput { id: "v".repeat(MAX_ID + 1) };
        assert_eq!(input.validate().map_err(|e| e.to_string()), Err("input.id: at most 64 characters".into()));
    }
}
