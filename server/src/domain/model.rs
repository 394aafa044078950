//! The resources Stalecast serves, as the browser sees them (camelCase JSON, exported to
//! TypeScript), and the inputs of the procedures over them.

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::rpc::Wire;
use crate::updates::UpdateType;

/// A resource kind the poller keeps in the cache.
pub trait Resource: Clone + PartialEq + Serialize + Send + Sync + 'static {
    /// The update type published when a resource of this kind changes.
    const TYPE: UpdateType;
    fn id(&self) -> &str;
    /// The owning project, for per-project filtering.
    fn project_id(&self) -> Option<&str>;
}

/// A Keystone project (tenant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
}

/// A Nova server (instance).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub id: String,
    pub name: String,
    pub project_id: String,
    /// Nova's status: `BUILD`, `ACTIVE`, `SHUTOFF`, `ERROR`, …
    pub status: String,
    pub flavor: String,
    pub image_id: Option<String>,
    /// Fixed IP addresses, by network name.
    pub addresses: Vec<ServerAddress>,
    pub created: String,
    pub updated: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerAddress {
    pub network: String,
    pub addr: String,
}

/// A Cinder volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub project_id: String,
    /// Cinder's status: `creating`, `available`, `in-use`, `error`, …
    pub status: String,
    pub size_gb: u32,
    /// The server the volume is attached to, if any.
    pub attached_to: Option<String>,
    pub description: String,
    pub created_at: String,
}

/// A Glance image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub id: String,
    pub name: String,
    pub status: String,
    pub visibility: String,
    #[ts(type = "number")]
    pub size_bytes: u64,
    pub min_disk_gb: u32,
    pub project_id: Option<String>,
}

/// A Neutron network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub status: String,
    pub shared: bool,
    pub subnets: Vec<String>,
}

impl Resource for Project {
    const TYPE: UpdateType = UpdateType::Projects;
    fn id(&self) -> &str {
        &self.id
    }
    fn project_id(&self) -> Option<&str> {
        Some(&self.id)
    }
}

impl Resource for Server {
    const TYPE: UpdateType = UpdateType::Servers;
    fn id(&self) -> &str {
        &self.id
    }
    fn project_id(&self) -> Option<&str> {
        Some(&self.project_id)
    }
}

impl Resource for Volume {
    const TYPE: UpdateType = UpdateType::Volumes;
    fn id(&self) -> &str {
        &self.id
    }
    fn project_id(&self) -> Option<&str> {
        Some(&self.project_id)
    }
}

impl Resource for Image {
    const TYPE: UpdateType = UpdateType::Images;
    fn id(&self) -> &str {
        &self.id
    }
    fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }
}

impl Resource for Network {
    const TYPE: UpdateType = UpdateType::Networks;
    fn id(&self) -> &str {
        &self.id
    }
    fn project_id(&self) -> Option<&str> {
        Some(&self.project_id)
    }
}

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

impl Wire for Project {}
impl Wire for Server {}
impl Wire for Volume {}
impl Wire for Image {}
impl Wire for Network {}
impl Wire for ListInput {}
impl Wire for IdInput {}
impl Wire for ServerCreate {}
impl Wire for VolumeCreate {}
impl Wire for Deleted {}
impl Wire for UpdatesState {}
