//! The resources Stalecast keeps and serves — projects, servers, volumes, volume
//! snapshots, images, networks, subnets, flavors — as the browser sees them (camelCase JSON, exported to TypeScript). The
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

/// A Cinder volume snapshot. (`VolumeSnapshot`, not `Snapshot`: the store's
/// [`Snapshot`](super::store::Snapshot) is a collection's stored value.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshot {
    pub id: String,
    pub name: String,
    pub project_id: String,
    /// The volume it is a snapshot of.
    pub volume_id: String,
    /// Cinder's status: `creating`, `available`, `deleting`, `error`, …
    pub status: String,
    /// The size of the volume when it was taken.
    pub size_gb: u32,
    pub description: String,
    /// Cinder's free-form `metadata` (string keys and values).
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    /// Absent until the snapshot first changes.
    pub updated_at: Option<String>,
}

/// A Neutron subnet: an address range of a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub network_id: String,
    /// `10.0.0.0/24`, `fd00:1::/64`.
    pub cidr: String,
    /// 4 or 6.
    pub ip_version: u8,
    /// Absent when the subnet has no gateway.
    pub gateway_ip: Option<String>,
    pub enable_dhcp: bool,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// A Nova flavor: a size servers are created with. Public flavors belong to no project:
/// every user of the cloud may use them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    /// Memory, in MiB.
    pub ram_mb: u32,
    /// Root disk, in GB.
    pub disk_gb: u32,
    /// Ephemeral disk, in GB.
    pub ephemeral_gb: u32,
    /// Swap, in MiB.
    pub swap_mb: u32,
    pub is_public: bool,
    /// A disabled flavor stays listed but takes no new servers.
    pub disabled: bool,
    pub description: Option<String>,
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

impl Resource for VolumeSnapshot {
    const TYPE: UpdateType = UpdateType::Snapshots;
    fn id(&self) -> &str {
        &self.id
    }
    fn project_id(&self) -> Option<&str> {
        Some(&self.project_id)
    }
}

impl Resource for Subnet {
    const TYPE: UpdateType = UpdateType::Subnets;
    fn id(&self) -> &str {
        &self.id
    }
    fn project_id(&self) -> Option<&str> {
        Some(&self.project_id)
    }
}

impl Resource for Flavor {
    const TYPE: UpdateType = UpdateType::Flavors;
    fn id(&self) -> &str {
        &self.id
    }
    /// Public flavors are the whole cloud's: in no project, visible to every user.
    fn project_id(&self) -> Option<&str> {
        None
    }
    /// Every user sees the public flavors; a private one only through Nova's flavor
    /// access lists, which Stalecast does not read: nobody here.
    fn public(&self) -> bool {
        self.is_public
    }
}
