//! What the procedures take and answer besides the resources themselves: their inputs
//! with their limits (`validate`, and the same limits in the OpenAPI schema), and small
//! outputs such as `Deleted` and `UpdatesState`.
//!
//! Every string input has a maximum length, in characters: ids [`MAX_ID`], names
//! [`MAX_NAME`], flavors [`MAX_FLAVOR`], descriptions [`MAX_DESCRIPTION`], CIDRs
//! [`MAX_CIDR`]. The schema
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
/// A CIDR (`10.0.0.0/24`; the longest IPv6 one is 43 characters).
pub const MAX_CIDR: usize = 64;
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

/// Input of `storage.snapshots.create`: a snapshot of a volume, made in the volume's
/// project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotCreate {
    /// At most 64 characters.
    #[schema(example = "vol-0001", max_length = 64)]
    pub volume_id: String,
    /// At most 255 characters, not blank, no control characters.
    #[schema(example = "before-upgrade", max_length = 255)]
    pub name: String,
    /// At most 1024 characters.
    #[serde(default)]
    #[ts(optional)]
    #[schema(max_length = 1024)]
    pub description: Option<String>,
    /// Snapshot a volume that is `in-use` too (Cinder refuses without it).
    #[serde(default)]
    #[ts(optional)]
    pub force: Option<bool>,
}

impl SnapshotCreate {
    pub fn validate(&self) -> Result<(), Error> {
        check_len("volumeId", &self.volume_id, MAX_ID)?;
        check_name("name", &self.name)?;
        check_len("description", self.description.as_deref().unwrap_or_default(), MAX_DESCRIPTION)
    }
}

/// Input of `networks.subnets.create`: an address range of a network, made in the
/// network's project. Whether the CIDR is valid and free is Neutron's to say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubnetCreate {
    /// At most 64 characters.
    #[schema(example = "net-web-team", max_length = 64)]
    pub network_id: String,
    /// At most 64 characters, not blank.
    #[schema(example = "10.20.0.0/24", max_length = 64)]
    pub cidr: String,
    /// 4 or 6; by default 6 when the CIDR holds a `:`, else 4.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = 4, minimum = 4, maximum = 6)]
    pub ip_version: Option<u8>,
    /// At most 255 characters, no control characters; may be empty.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "web-v4", max_length = 255)]
    pub name: Option<String>,
}

impl SubnetCreate {
    pub fn validate(&self) -> Result<(), Error> {
        check_len("networkId", &self.network_id, MAX_ID)?;
        check_len("cidr", &self.cidr, MAX_CIDR)?;
        if self.cidr.trim().is_empty() || self.cidr.chars().any(char::is_control) {
            return Err(Error::invalid("cidr", "must not be blank or contain control characters"));
        }
        if self.ip_version.is_some_and(|v| v != 4 && v != 6) {
            return Err(Error::invalid("ipVersion", "must be 4 or 6"));
        }
        let name = self.name.as_deref().unwrap_or_default();
        check_len("name", name, MAX_NAME)?;
        if name.chars().any(char::is_control) {
            return Err(Error::invalid("name", "must not contain control characters"));
        }
        Ok(())
    }

    /// The IP version asked for, or the CIDR's.
    pub fn version(&self) -> u8 {
        self.ip_version.unwrap_or(if self.cidr.contains(':') { 6 } else { 4 })
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
            "volumeId" | "networkId" => MAX_ID,
            "cidr" => MAX_CIDR,
            other => panic!("no limit known for {other}"),
        };
        let all = [
            max_lengths::<ListInput>(),
            max_lengths::<IdInput>(),
            max_lengths::<ServerCreate>(),
            max_lengths::<VolumeCreate>(),
            max_lengths::<SnapshotCreate>(),
            max_lengths::<SubnetCreate>(),
        ];
        let strings: Vec<_> = all.into_iter().flatten().collect();
        // projectId (list), id, projectId, name, flavor, imageId, projectId, name, description,
        // volumeId, name, description, networkId, cidr, name.
        assert_eq!(strings.len(), 15, "{strings:?}");
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
