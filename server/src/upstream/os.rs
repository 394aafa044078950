//! OpenStack's JSON shapes of the resources Stalecast keeps (Keystone's projects, Nova's
//! servers and flavors, Cinder's volumes and snapshots, Glance's images, Neutron's
//! networks and subnets), read leniently (a
//! field a deployment leaves out takes its default) and turned into the domain's
//! types ([`super::model`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::model::{Flavor, Image, Network, Project, Server, ServerAddress, Subnet, Volume, VolumeSnapshot};

#[derive(Deserialize)]
pub struct OsProject {
    pub id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl OsProject {
    pub fn into_domain(self) -> Project {
        Project {
            id: self.id,
            name: self.name,
            description: self.description.unwrap_or_default(),
            enabled: self.enabled,
        }
    }
}

#[derive(Deserialize)]
pub struct ServerEnvelope {
    pub server: OsServer,
}

#[derive(Deserialize)]
pub struct OsServer {
    id: String,
    name: String,
    status: String,
    #[serde(alias = "project_id")]
    tenant_id: String,
    #[serde(default)]
    flavor: Value,
    /// An object `{"id": …}`, or `""` for servers booted from a volume.
    #[serde(default)]
    image: Value,
    #[serde(default)]
    addresses: BTreeMap<String, Vec<OsAddress>>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    created: String,
    #[serde(default)]
    updated: String,
}

#[derive(Deserialize)]
pub struct OsAddress {
    addr: String,
}

impl OsServer {
    pub fn into_domain(self) -> Server {
        let flavor = ["original_name", "id"]
            .iter()
            .find_map(|k| self.flavor.get(k).and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned();
        let image_id = self.image.get("id").and_then(Value::as_str).map(str::to_owned);
        let addresses = self
            .addresses
            .into_iter()
            .flat_map(|(network, addrs)| {
                addrs.into_iter().map(move |a| ServerAddress { network: network.clone(), addr: a.addr })
            })
            .collect();
        Server {
            id: self.id,
            name: self.name,
            project_id: self.tenant_id,
            status: self.status,
            flavor,
            image_id,
            addresses,
            metadata: strings(self.metadata),
            created: self.created,
            updated: self.updated,
        }
    }
}

#[derive(Deserialize)]
pub struct VolumeEnvelope {
    pub volume: OsVolume,
}

#[derive(Deserialize)]
pub struct OsVolume {
    id: String,
    #[serde(default)]
    name: Option<String>,
    status: String,
    size: u32,
    #[serde(rename = "os-vol-tenant-attr:tenant_id", alias = "project_id", default)]
    tenant_id: String,
    #[serde(default)]
    attachments: Vec<OsAttachment>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    volume_type: Option<String>,
    /// `"true"`/`"false"` in Cinder's answers; a JSON boolean is taken too.
    #[serde(default)]
    bootable: Value,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    updated_at: Option<String>,
}

/// OpenStack's `metadata`: string values by key. Any other value is kept as its JSON text
/// rather than failing the whole listing.
type Metadata = BTreeMap<String, Value>;

fn strings(metadata: Option<Metadata>) -> BTreeMap<String, String> {
    metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => (key, text),
            other => (key, other.to_string()),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct OsAttachment {
    server_id: String,
}

impl OsVolume {
    pub fn into_domain(self) -> Volume {
        Volume {
            id: self.id,
            name: self.name.unwrap_or_default(),
            project_id: self.tenant_id,
            status: self.status,
            size_gb: self.size,
            attached_to: self.attachments.into_iter().next().map(|a| a.server_id),
            description: self.description.unwrap_or_default(),
            metadata: strings(self.metadata),
            volume_type: self.volume_type,
            bootable: match &self.bootable {
                Value::Bool(b) => *b,
                Value::String(s) => s.eq_ignore_ascii_case("true"),
                _ => false,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Deserialize)]
pub struct OsImage {
    id: String,
    #[serde(default)]
    name: Option<String>,
    status: String,
    #[serde(default)]
    visibility: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    min_disk: u32,
    #[serde(default)]
    owner: Option<String>,
}

impl OsImage {
    pub fn into_domain(self) -> Image {
        Image {
            id: self.id,
            name: self.name.unwrap_or_default(),
            status: self.status,
            visibility: self.visibility,
            size_bytes: self.size.unwrap_or(0),
            min_disk_gb: self.min_disk,
            project_id: self.owner,
        }
    }
}

#[derive(Deserialize)]
pub struct OsNetwork {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    project_id: Option<String>,
    /// The older name of `project_id`, still sent by many deployments.
    #[serde(default)]
    tenant_id: Option<String>,
    status: String,
    #[serde(default)]
    shared: bool,
    #[serde(default)]
    subnets: Vec<String>,
}

impl OsNetwork {
    pub fn into_domain(self) -> Network {
        Network {
            id: self.id,
            name: self.name,
            project_id: self.project_id.or(self.tenant_id).unwrap_or_default(),
            status: self.status,
            shared: self.shared,
            subnets: self.subnets,
        }
    }
}

#[derive(Deserialize)]
pub struct NetworkEnvelope {
    pub network: OsNetwork,
}

#[derive(Deserialize)]
pub struct SnapshotEnvelope {
    pub snapshot: OsSnapshot,
}

/// A Cinder snapshot (`GET /snapshots/detail`).
#[derive(Deserialize)]
pub struct OsSnapshot {
    id: String,
    #[serde(default)]
    name: Option<String>,
    status: String,
    #[serde(default)]
    size: u32,
    #[serde(default)]
    volume_id: String,
    /// Shown to admins (and, by default policy, to the project's own users).
    #[serde(rename = "os-extended-snapshot-attributes:project_id", alias = "project_id", default)]
    project_id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    updated_at: Option<String>,
}

impl OsSnapshot {
    pub fn into_domain(self) -> VolumeSnapshot {
        VolumeSnapshot {
            id: self.id,
            name: self.name.unwrap_or_default(),
            project_id: self.project_id,
            volume_id: self.volume_id,
            status: self.status,
            size_gb: self.size,
            description: self.description.unwrap_or_default(),
            metadata: strings(self.metadata),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Deserialize)]
pub struct SubnetEnvelope {
    pub subnet: OsSubnet,
}

/// A Neutron subnet (`GET /v2.0/subnets`).
#[derive(Deserialize)]
pub struct OsSubnet {
    id: String,
    #[serde(default)]
    name: String,
    network_id: String,
    #[serde(default)]
    project_id: Option<String>,
    /// The older name of `project_id`.
    #[serde(default)]
    tenant_id: Option<String>,
    cidr: String,
    #[serde(default = "four")]
    ip_version: u8,
    #[serde(default)]
    gateway_ip: Option<String>,
    #[serde(default)]
    enable_dhcp: bool,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    updated_at: Option<String>,
}

fn four() -> u8 {
    4
}

impl OsSubnet {
    pub fn into_domain(self) -> Subnet {
        Subnet {
            id: self.id,
            name: self.name,
            project_id: self.project_id.or(self.tenant_id).unwrap_or_default(),
            network_id: self.network_id,
            cidr: self.cidr,
            ip_version: self.ip_version,
            gateway_ip: self.gateway_ip.filter(|g| !g.is_empty()),
            enable_dhcp: self.enable_dhcp,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A Nova flavor as `GET /flavors/detail` lists it.
#[derive(Deserialize)]
pub struct OsFlavorDetail {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    vcpus: u32,
    #[serde(default)]
    ram: u32,
    #[serde(default)]
    disk: u32,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral", default)]
    ephemeral: u32,
    /// A number of MiB, or `""` for none before microversion 2.75.
    #[serde(default)]
    swap: Value,
    #[serde(rename = "os-flavor-access:is_public", default = "yes")]
    is_public: bool,
    #[serde(rename = "OS-FLV-DISABLED:disabled", default)]
    disabled: bool,
    #[serde(default)]
    description: Option<String>,
}

impl OsFlavorDetail {
    pub fn into_domain(self) -> Flavor {
        Flavor {
            id: self.id,
            name: self.name,
            vcpus: self.vcpus,
            ram_mb: self.ram,
            disk_gb: self.disk,
            ephemeral_gb: self.ephemeral,
            swap_mb: self.swap.as_u64().and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
            is_public: self.is_public,
            disabled: self.disabled,
            description: self.description.filter(|d| !d.is_empty()),
        }
    }
}

#[derive(Deserialize)]
pub struct CreatedServer {
    pub server: IdOnly,
}

#[derive(Deserialize)]
pub struct CreatedVolume {
    pub volume: IdOnly,
}

#[derive(Deserialize)]
pub struct CreatedSnapshot {
    pub snapshot: IdOnly,
}

#[derive(Deserialize)]
pub struct CreatedSubnet {
    pub subnet: IdOnly,
}

/// A Nova flavor, as `GET /flavors` lists it.
#[derive(Deserialize)]
pub struct OsFlavor {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize)]
pub struct IdOnly {
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::{OsFlavorDetail, OsSnapshot, OsSubnet, OsVolume};

    #[test]
    fn snapshots_subnets_and_flavors_read_as_the_services_send_them() {
        let snapshot: OsSnapshot = serde_json::from_value(serde_json::json!({
            "id": "s", "name": null, "status": "available", "size": 10, "volume_id": "v",
            "os-extended-snapshot-attributes:project_id": "p", "metadata": {}, "created_at": "2026-01-02T03:04:05.000000",
            "updated_at": null, "description": null, "os-extended-snapshot-attributes:progress": "100%",
        }))
        .expect("snapshot");
        let snapshot = snapshot.into_domain();
        assert_eq!((snapshot.project_id.as_str(), snapshot.volume_id.as_str(), snapshot.size_gb), ("p", "v", 10));
        assert!(snapshot.name.is_empty() && snapshot.updated_at.is_none());

        let subnet: OsSubnet = serde_json::from_value(serde_json::json!({
            "id": "s", "name": "", "network_id": "n", "tenant_id": "p", "cidr": "fd00::/64", "ip_version": 6,
            "gateway_ip": null, "enable_dhcp": true,
        }))
        .expect("subnet");
        let subnet = subnet.into_domain();
        assert_eq!((subnet.project_id.as_str(), subnet.ip_version, subnet.gateway_ip), ("p", 6, None));

        let old: OsFlavorDetail = serde_json::from_value(serde_json::json!({
            "id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1, "swap": "",
            "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": true, "OS-FLV-DISABLED:disabled": false,
        }))
        .expect("flavor before 2.75");
        assert_eq!(old.into_domain().swap_mb, 0, "an empty swap is none");
        let new: OsFlavorDetail =
            serde_json::from_value(serde_json::json!({"id": "2", "name": "m1.small", "swap": 1024, "description": ""}))
                .expect("flavor");
        let new = new.into_domain();
        assert_eq!((new.swap_mb, new.is_public, new.description), (1024, true, None));
    }

    #[test]
    fn a_volume_reads_leniently_with_its_metadata_type_and_bootable_flag() {
        let full: OsVolume = serde_json::from_value(serde_json::json!({
            "id": "v", "status": "available", "size": 1, "bootable": "true", "volume_type": "ssd",
            "metadata": {"owner": "team-billing", "replicas": 3}, "updated_at": "2026-01-02T03:04:05Z",
        }))
        .expect("full");
        let full = full.into_domain();
        assert!(full.bootable);
        assert_eq!(full.volume_type.as_deref(), Some("ssd"));
        assert_eq!(full.metadata["owner"], "team-billing");
        assert_eq!(full.metadata["replicas"], "3", "a non-string value is kept as its JSON text");
        assert_eq!(full.updated_at.as_deref(), Some("2026-01-02T03:04:05Z"));

        let bare: OsVolume = serde_json::from_value(serde_json::json!({
            "id": "v", "status": "available", "size": 1, "bootable": true, "metadata": null, "updated_at": null,
        }))
        .expect("bare");
        let bare = bare.into_domain();
        assert!(bare.bootable, "a JSON boolean too");
        assert!(bare.metadata.is_empty() && bare.volume_type.is_none() && bare.updated_at.is_none());
        let oldest: OsVolume =
            serde_json::from_value(serde_json::json!({"id": "v", "status": "available", "size": 1})).expect("oldest");
        assert!(!oldest.into_domain().bootable);
    }
}
