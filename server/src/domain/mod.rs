//! The procedures: every query and mutation over projects, servers, flavors, volumes,
//! volume snapshots, images, networks and subnets, as plain async functions over a [`Ctx`], answering a [`domain::Error`]
//! (`Error`) when they fail; and the invalidation map that says which queries each
//! update type makes stale.
//!
//! Queries read the [`Store`]. Mutations write upstream, then refresh only the record
//! they changed (one show call upstream, which stores it and publishes the update) before
//! they answer, so a client that sees the answer can rely on the notification being out.
//! A delete removes the record from the store without asking upstream again. When the
//! write succeeded but the refresh after it fails, the mutation still answers success,
//! with what the write itself told; the poller catches up and publishes the change then.
//! Every input is checked first (each string has a maximum length, [`types`]), so
//! nothing invalid reaches upstream; nor does a write whose notification could not be
//! published (a cluster whose Redis is unreachable: 503).
//!
//! Nothing here knows HTTP or tRPC: the `rpc` layer names these procedures on the wire
//! and turns their errors into tRPC's envelope, and a unit test can call them with no
//! socket at all.

pub mod changes;
mod error;
pub mod page;
pub mod stats;
pub mod types;

use std::sync::Arc;

pub use error::Error;
use types::*;

use crate::updates::{UpdateBus, UpdateType};
use crate::upstream::client::OpenStackClient;
use crate::upstream::model::{Network, Project, Server, Subnet, Volume, VolumeSnapshot};
use crate::upstream::store::{Fetch, Show, Snapshot, Store};

/// Which query procedures each update type makes stale. Declared once, here, next to the
/// procedures; emitted to TypeScript as `UPDATE_QUERY_MAP`. Every path must be a
/// registered query (checked by a test over the registry). A list's `page` is beside it:
/// any change of a collection may move a record into, out of or within a page.
pub const INVALIDATION: &[(UpdateType, &[&str])] = &[
    (UpdateType::Projects, &["projects.list", "projects.page"]),
    (UpdateType::Servers, &["compute.servers.list", "compute.servers.page", "compute.servers.get"]),
    (UpdateType::Volumes, &["storage.volumes.list", "storage.volumes.page", "storage.volumes.get"]),
    (UpdateType::Images, &["images.list", "images.page"]),
    (UpdateType::Networks, &["networks.list", "networks.page"]),
    (UpdateType::Snapshots, &["storage.snapshots.list", "storage.snapshots.page", "storage.snapshots.get"]),
    (UpdateType::Subnets, &["networks.subnets.list", "networks.subnets.page", "networks.subnets.get"]),
    (UpdateType::Flavors, &["compute.flavors.list", "compute.flavors.page", "compute.flavors.get"]),
    (UpdateType::ServerStats, &["server.stats"]),
];

/// Each list query's `changes` companion (see [`changes`]). Emitted to TypeScript as
/// `CHANGES_QUERY_MAP`; both paths must be registered queries (checked by a test).
pub const CHANGES: &[(&str, &str)] = &[
    ("projects.list", "projects.changes"),
    ("compute.servers.list", "compute.servers.changes"),
    ("storage.volumes.list", "storage.volumes.changes"),
    ("images.list", "images.changes"),
    ("networks.list", "networks.changes"),
    ("storage.snapshots.list", "storage.snapshots.changes"),
    ("networks.subnets.list", "networks.subnets.changes"),
    ("compute.flavors.list", "compute.flavors.changes"),
];

/// What every procedure runs with. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub client: Arc<OpenStackClient>,
    pub store: Arc<Store>,
    pub bus: Arc<UpdateBus>,
    /// The server's own figures (`server.stats`).
    pub stats: Arc<stats::Figures>,
}

/// A list query's answer, not yet encoded: the stored collection, whole or one project's
/// part of it. The wire layer encodes each (version, project) once and shares it, so
/// thousands of tabs showing one project's volumes cost one encoding per change too.
#[derive(Debug)]
pub struct Listing<R> {
    pub snapshot: Arc<Snapshot<R>>,
    pub project: Option<String>,
}

impl<R: Fetch> Listing<R> {
    /// The records the answer holds, in the stored order.
    pub fn items(&self) -> impl Iterator<Item = &R> {
        let project = self.project.as_deref();
        self.snapshot.items.iter().map(|r| &**r).filter(move |r| project.is_none_or(|p| r.project_id() == Some(p)))
    }
}

/// A collection, or one project's part of it.
pub async fn list<R: Fetch>(ctx: &Ctx, input: Option<ListInput>) -> Result<Listing<R>, Error> {
    if let Some(input) = &input {
        input.validate()?;
    }
    let snapshot = ctx.store.get::<R>().await?;
    Ok(Listing { snapshot, project: input.and_then(|i| i.project_id) })
}

/// One resource by id.
pub async fn get<R: Fetch>(ctx: &Ctx, input: IdInput) -> Result<R, Error> {
    input.validate()?;
    let snapshot = ctx.store.get::<R>().await?;
    found(&snapshot, &input.id)
}

fn found<R: Fetch>(snapshot: &Snapshot<R>, id: &str) -> Result<R, Error> {
    snapshot.find(id).cloned().ok_or_else(|| Error::NotFound(format!("no {} with id \"{id}\"", singular(R::TYPE))))
}

fn singular(kind: UpdateType) -> &'static str {
    match kind {
        UpdateType::Projects => "project",
        UpdateType::Servers => "server",
        UpdateType::Volumes => "volume",
        UpdateType::Images => "image",
        UpdateType::Networks => "network",
        UpdateType::Snapshots => "snapshot",
        UpdateType::Subnets => "subnet",
        UpdateType::Flavors => "flavor",
        UpdateType::ServerStats => "figure",
    }
}

/// Where the bus stands: its latest seq, the replay ring's size, the last update of each
/// type.
pub fn updates_state(ctx: &Ctx) -> UpdatesState {
    let state = ctx.bus.state();
    UpdatesState {
        seq: state.seq,
        ring_size: state.ring_size as u64,
        types: state.types.into_iter().map(|(kind, s)| TypeUpdateState { kind, seq: s.seq, ts: s.ts }).collect(),
    }
}

/// The flavor of a server created without one.
pub const DEFAULT_FLAVOR: &str = "m1.small";

/// Creates a server in its project (by the flavor's name or id); answers it as upstream
/// shows it after the write (status `BUILD`).
pub async fn create_server(ctx: &Ctx, input: ServerCreate) -> Result<Server, Error> {
    input.validate()?;
    check_project(ctx, &input.project_id).await?;
    let flavor = input.flavor.as_deref().unwrap_or(DEFAULT_FLAVOR);
    // Nova takes a flavor's id; users know flavors by name (and sometimes by id).
    let flavor_id = ctx.client.flavor_id(&input.project_id, flavor).await?.ok_or_else(|| {
        Error::invalid("flavor", format!("no flavor named or with id \"{flavor}\" in project {}", input.project_id))
    })?;
    publishable(ctx)?;
    let id = ctx.client.create_server(&input.project_id, &input.name, &flavor_id, input.image_id.as_deref()).await?;
    let written = Server {
        id,
        name: input.name,
        project_id: input.project_id,
        status: "BUILD".into(),
        flavor: flavor.to_owned(),
        image_id: input.image_id,
        addresses: Vec::new(),
        metadata: Default::default(),
        created: String::new(),
        updated: String::new(),
    };
    Ok(refreshed(ctx, written).await)
}

pub async fn delete_server(ctx: &Ctx, input: IdInput) -> Result<Deleted, Error> {
    input.validate()?;
    let project = known_project::<Server>(ctx, &input.id);
    publishable(ctx)?;
    ctx.client.delete_server(&input.id, project.as_deref()).await?;
    ctx.store.forget::<Server>(&input.id).await;
    Ok(Deleted { id: input.id })
}

/// Runs a server action (`os-start`, `os-stop`); answers the server after it.
pub async fn server_action(ctx: &Ctx, input: IdInput, action: &str) -> Result<Server, Error> {
    input.validate()?;
    let project = known_project::<Server>(ctx, &input.id);
    publishable(ctx)?;
    ctx.client.server_action(&input.id, project.as_deref(), action).await?;
    // What is known without reading again: the last stored record (the action's effect
    // shows once the poller sees it), or only the id if none was ever stored.
    let known = ctx.store.cached::<Server>().and_then(|s| s.find(&input.id).cloned());
    let written = known.unwrap_or_else(|| Server {
        id: input.id,
        name: String::new(),
        project_id: String::new(),
        status: String::new(),
        flavor: String::new(),
        image_id: None,
        addresses: Vec::new(),
        metadata: Default::default(),
        created: String::new(),
        updated: String::new(),
    });
    Ok(refreshed(ctx, written).await)
}

/// Creates a volume; answers it as upstream shows it after the write (status `creating`).
pub async fn create_volume(ctx: &Ctx, input: VolumeCreate) -> Result<Volume, Error> {
    input.validate()?;
    check_project(ctx, &input.project_id).await?;
    let description = input.description.unwrap_or_default();
    publishable(ctx)?;
    let id = ctx.client.create_volume(&input.project_id, &input.name, input.size_gb, &description).await?;
    let written = Volume {
        id,
        name: input.name,
        project_id: input.project_id,
        status: "creating".into(),
        size_gb: input.size_gb,
        attached_to: None,
        description,
        metadata: Default::default(),
        volume_type: None,
        bootable: false,
        created_at: String::new(),
        updated_at: None,
    };
    Ok(refreshed(ctx, written).await)
}

pub async fn delete_volume(ctx: &Ctx, input: IdInput) -> Result<Deleted, Error> {
    input.validate()?;
    let project = known_project::<Volume>(ctx, &input.id);
    publishable(ctx)?;
    ctx.client.delete_volume(&input.id, project.as_deref()).await?;
    ctx.store.forget::<Volume>(&input.id).await;
    Ok(Deleted { id: input.id })
}

/// Snapshots a volume, in the volume's project (as `create_volume`, with a token of that
/// project); answers the snapshot as upstream shows it after the write (status
/// `creating`). Cinder refuses a volume that is not `available` (or `in-use`, with
/// `force`): a 400 with its message.
pub async fn create_snapshot(ctx: &Ctx, input: SnapshotCreate) -> Result<VolumeSnapshot, Error> {
    input.validate()?;
    let volumes = ctx.store.get::<Volume>().await?;
    let volume = volumes
        .find(&input.volume_id)
        .ok_or_else(|| Error::invalid("volumeId", format!("no volume with id \"{}\"", input.volume_id)))?;
    let description = input.description.unwrap_or_default();
    let force = input.force.unwrap_or(false);
    publishable(ctx)?;
    let id = ctx.client.create_snapshot(&volume.project_id, &volume.id, &input.name, &description, force).await?;
    let written = VolumeSnapshot {
        id,
        name: input.name,
        project_id: volume.project_id.clone(),
        volume_id: volume.id.clone(),
        status: "creating".into(),
        size_gb: volume.size_gb,
        description,
        metadata: Default::default(),
        created_at: String::new(),
        updated_at: None,
    };
    Ok(refreshed(ctx, written).await)
}

pub async fn delete_snapshot(ctx: &Ctx, input: IdInput) -> Result<Deleted, Error> {
    input.validate()?;
    let project = known_project::<VolumeSnapshot>(ctx, &input.id);
    publishable(ctx)?;
    ctx.client.delete_snapshot(&input.id, project.as_deref()).await?;
    ctx.store.forget::<VolumeSnapshot>(&input.id).await;
    Ok(Deleted { id: input.id })
}

/// Adds a subnet to a network, in the network's project; answers it as upstream shows
/// it after the write. The network's own record lists its subnets, so it is read back
/// too: both updates (`subnets` and `networks`) are out before the answer.
pub async fn create_subnet(ctx: &Ctx, input: SubnetCreate) -> Result<Subnet, Error> {
    input.validate()?;
    let networks = ctx.store.get::<Network>().await?;
    let network = networks
        .find(&input.network_id)
        .cloned()
        .ok_or_else(|| Error::invalid("networkId", format!("no network with id \"{}\"", input.network_id)))?;
    let version = input.version();
    let name = input.name.unwrap_or_default();
    publishable(ctx)?;
    let id = ctx.client.create_subnet(&network.project_id, &network.id, &input.cidr, version, &name).await?;
    let written = Subnet {
        id,
        name,
        project_id: network.project_id.clone(),
        network_id: network.id.clone(),
        cidr: input.cidr,
        ip_version: version,
        gateway_ip: None,
        enable_dhcp: true,
        created_at: String::new(),
        updated_at: None,
    };
    let subnet = refreshed(ctx, written).await;
    refreshed(ctx, network).await;
    Ok(subnet)
}

/// Deletes a subnet, and reads its network back (one subnet fewer in its list).
pub async fn delete_subnet(ctx: &Ctx, input: IdInput) -> Result<Deleted, Error> {
    input.validate()?;
    let known = ctx.store.cached::<Subnet>().and_then(|s| s.find(&input.id).cloned());
    let project = known.as_ref().map(|s| s.project_id.as_str()).filter(|p| !p.is_empty());
    publishable(ctx)?;
    ctx.client.delete_subnet(&input.id, project).await?;
    ctx.store.forget::<Subnet>(&input.id).await;
    let network = known.and_then(|s| ctx.store.cached::<Network>()?.find(&s.network_id).cloned());
    if let Some(network) = network {
        refreshed(ctx, network).await;
    }
    Ok(Deleted { id: input.id })
}

/// Refuses a write whose notification could not be published (in a cluster whose Redis
/// is unreachable), before anything reaches upstream.
fn publishable(ctx: &Ctx) -> Result<(), Error> {
    if ctx.store.can_publish() { Ok(()) } else { Err(Error::Unpublishable) }
}

/// After a successful write: the record as upstream now shows it, stored and published
/// (one show call). If that read fails, or the record is already gone, the write still
/// happened: answers `written`, what the write itself told, and leaves the rest to the
/// poller.
async fn refreshed<R: Show>(ctx: &Ctx, written: R) -> R {
    let project = written.project_id().filter(|p| !p.is_empty());
    match ctx.store.refresh_one::<R>(written.id(), project).await {
        Ok(Some(record)) => record,
        Ok(None) => written,
        Err(error) => {
            tracing::warn!(kind = %R::TYPE, id = written.id(), %error, "written upstream, but reading it back failed; the poller will catch up");
            written
        }
    }
}

/// The project of a stored record: the token to change it with may need to be that
/// project's (`None` when it was never stored; the service token is used then).
fn known_project<R: Fetch>(ctx: &Ctx, id: &str) -> Option<String> {
    let snapshot = ctx.store.cached::<R>()?;
    snapshot.find(id).and_then(|r| r.project_id().map(str::to_owned))
}

/// Checks that `projectId` names a known project.
async fn check_project(ctx: &Ctx, project_id: &str) -> Result<(), Error> {
    let projects = ctx.store.get::<Project>().await?;
    if projects.find(project_id).is_none() {
        return Err(Error::invalid("projectId", format!("no project with id \"{project_id}\"")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The procedures called as functions: a store seeded by hand, an upstream nobody
    //! listens on, no socket of Stalecast's.

    use std::time::Duration;

    use super::*;
    use crate::updates::BusConfig;
    use crate::upstream::client::UpstreamConfig;

    fn ctx() -> Ctx {
        // Nothing listens on port 9 (discard): any upstream call fails at once.
        let config = UpstreamConfig::password("http://127.0.0.1:9", "u", "p", "p", Duration::from_secs(1));
        let client = Arc::new(OpenStackClient::new(config).expect("client"));
        let bus = Arc::new(UpdateBus::starting_at(1, BusConfig::default()));
        let store = Arc::new(Store::new(client.clone(), bus.clone()));
        let stats = stats::Figures::new(&bus, &store, std::time::SystemTime::now());
        Ctx { client, store, bus, stats }
    }

    fn volume(id: &str, project: &str) -> Volume {
        Volume {
            id: id.into(),
            name: id.into(),
            project_id: project.into(),
            status: "available".into(),
            size_gb: 1,
            attached_to: None,
            description: String::new(),
            metadata: Default::default(),
            volume_type: None,
            bootable: false,
            created_at: String::new(),
            updated_at: None,
        }
    }

    #[tokio::test]
    async fn lists_and_gets_answer_from_the_store() {
        let ctx = ctx();
        ctx.store.seed(vec![volume("v-1", "prj-a"), volume("v-2", "prj-b")]);
        let whole = list::<Volume>(&ctx, None).await.expect("list");
        assert_eq!(whole.items().count(), 2);
        let input = Some(ListInput { project_id: Some("prj-b".into()) });
        let part = list::<Volume>(&ctx, input).await.expect("list");
        assert_eq!(part.items().cloned().collect::<Vec<_>>(), vec![volume("v-2", "prj-b")]);
        assert!(Arc::ptr_eq(&whole.snapshot, &part.snapshot), "both read the one stored value");
        assert_eq!(get::<Volume>(&ctx, IdInput { id: "v-1".into() }).await.expect("get"), volume("v-1", "prj-a"));
        let missing = get::<Volume>(&ctx, IdInput { id: "v-9".into() }).await.expect_err("absent");
        assert_eq!(missing, Error::NotFound("no volume with id \"v-9\"".into()));
    }

    #[tokio::test]
    async fn invalid_input_names_its_field_before_anything_reaches_upstream() {
        let ctx = ctx();
        let input = VolumeCreate { project_id: "prj-a".into(), name: "ok".into(), size_gb: 0, description: None };
        let error = create_volume(&ctx, input).await.expect_err("size 0");
        assert_eq!(error, Error::invalid("sizeGb", "must be between 1 and 16384"));
        ctx.store.seed(vec![Project {
            id: "prj-a".into(),
            name: "a".into(),
            description: String::new(),
            enabled: true,
        }]);
        let input = ServerCreate { project_id: "prj-x".into(), name: "web".into(), flavor: None, image_id: None };
        let error = create_server(&ctx, input).await.expect_err("unknown project");
        assert_eq!(error, Error::invalid("projectId", "no project with id \"prj-x\""));
        // With valid input the write is attempted, and the unreachable upstream says so.
        let input = ServerCreate { project_id: "prj-a".into(), name: "web".into(), flavor: None, image_id: None };
        assert!(matches!(create_server(&ctx, input).await, Err(Error::Unavailable(_))));
    }
}
