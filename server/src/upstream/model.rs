//! The resources Stalecast keeps and serves — projects, servers, volumes, images,
//! networks — as the browser sees them (camelCase JSON, exported to TypeScript). The
//! client translates OpenStack's JSON into these; the store keeps them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use crate::updates::{Owner, Room, UpdateType};

/// A resource kind the poller keeps in the cache.
pub trait Resource: Clone + PartialEq + Serialize + Send + Sync + 'static {
    /// The update type published when a resource of this kind changes.
    const TYPE: UpdateType;
    fn id(&self) -> &str;
    /// The owning project, for per-project filtering.
    fn project_id(&self) -> Option<&str>;
    /// Whether every user of the cloud may see it, whatever their projects (a public
    /// image, a shared network), as the services themselves list it.
    fn public(&self) -> bool {
        false
    }

    /// Whether a user who may see `room`'s projects may see it.
    fn seen_by(&self, room: &Room) -> bool {
        self.public() || self.project_id().is_some_and(|p| room.sees_project(p))
    }

    /// Who may hear of a change of it (what [`Resource::seen_by`] decides, as the bus
    /// keeps it).
    fn owner(&self) -> Owner {
        match self.project_id() {
            _ if self.public() => Owner::Everyone,
            Some(project) => Owner::project(project),
            None => Owner::Nobody,
        }
    }
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
    /// Nova's free-form `metadata` (string keys and values).
    pub metadata: BTreeMap<String, String>,
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
    /// Cinder's free-form `metadata` (string keys and values).
    pub metadata: BTreeMap<String, String>,
    /// The volume type (`ssd`, `__DEFAULT__`, …), when upstream says.
    pub volume_type: Option<String>,
    /// Whether an instance can boot from it.
    pub bootable: bool,
    pub created_at: String,
    /// Absent until the volume first changes.
    pub updated_at: Option<String>,
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
    /// Glance lists public and community images to everyone; private and shared ones to
    /// their owner (members of a shared image are not known here: its owner only).
    fn public(&self) -> bool {
        matches!(self.visibility.as_str(), "public" | "community")
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
    /// Neutron lists a shared network to every project.
    fn public(&self) -> bool {
        self.shared
    }
}
