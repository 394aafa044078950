//! What the procedures take and answer besides the resources themselves: their inputs,
//! and small outputs such as `Deleted` and `UpdatesState`.

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::updates::UpdateType;

/// Input of list queries: everything, or one project's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListInput {
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "prj-web")]
    pub project_id: Option<String>,
}

/// Input of `…get` queries and of mutations that act on one resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdInput {
    pub id: String,
}

/// Input of `compute.servers.create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerCreate {
    #[schema(example = "prj-web")]
    pub project_id: String,
    #[schema(example = "api-1")]
    pub name: String,
    /// Flavor name; defaults to `m1.small`.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "m1.small")]
    pub flavor: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub image_id: Option<String>,
}

/// Input of `storage.volumes.create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeCreate {
    #[schema(example = "prj-web")]
    pub project_id: String,
    #[schema(example = "scratch")]
    pub name: String,
    /// 1 to 16384.
    #[schema(example = 10, minimum = 1, maximum = 16384)]
    pub size_gb: u32,
    #[serde(default)]
    #[ts(optional)]
    pub description: Option<String>,
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
    /// 0 when no update of this type was published yet.
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
