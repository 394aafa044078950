//! The procedures: every query and mutation over projects, servers, flavors, volumes,
//! volume snapshots, images, networks and subnets, as plain async functions over a [`Ctx`], answering a [`domain::Error`]
//! (`Error`) when they fail; and the invalidation map that says which queries each
//! update type makes stale.
//!
//! Every procedure but `auth.login` runs for a signed-in caller ([`Ctx::caller`], a
//! session). Queries read the [`Store`] and answer only what the caller's projects hold
//! (with public images and shared networks): a list holds nothing else, and a resource of
//! another project is not found, exactly as one that does not exist. Mutations act only
//! in the caller's projects, where a role other than `reader` is needed (`403` naming the
//! project before anything reaches the cloud), and go upstream with the caller's own
//! token scoped to the project, so the cloud's policy judges the user and its audit log
//! names them. Then they refresh only the record they changed (one show call upstream,
//! with Stalecast's own account, which stores it and publishes the update) before they
//! answer, so a client that sees the answer can rely on the notification being out.
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
pub mod signin;
pub mod stats;
pub mod types;

use std::net::IpAddr;
use std::sync::Arc;

pub use error::Error;
use types::*;

use crate::auth::{Membership, Session, Sessions};
use crate::updates::{Room, UpdateBus, UpdateType};
use crate::upstream::UpstreamError;
use crate::upstream::client::{Acting, OpenStackClient};
use crate::upstream::model::{Network, Resource, Server, Subnet, Volume, VolumeSnapshot};
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

/// What every procedure runs with: the server's parts, and who calls. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub client: Arc<OpenStackClient>,
    pub store: Arc<Store>,
    pub bus: Arc<UpdateBus>,
    /// The server's own figures (`server.stats`).
    pub stats: Arc<stats::Figures>,
    pub sessions: Arc<Sessions>,
    /// The caller's session, when the request named a running one.
    pub caller: Option<Arc<Session>>,
    /// The address the request came from (sign-in limits count failures per address).
    pub peer: Option<IpAddr>,
}

impl Ctx {
    /// The caller's session, or `401` for a caller who is not signed in. The wire layer
    /// refuses such a call before it gets here; this keeps every procedure safe on its own.
    pub fn caller(&self) -> Result<&Arc<Session>, Error> {
        self.caller.as_ref().ok_or_else(|| Error::Unauthorized("sign in first".into()))
    }

    /// The projects the caller may see.
    fn room(&self) -> Result<Arc<Room>, Error> {
        Ok(self.caller()?.room())
    }
}

/// Which records of a collection one answer holds: those the caller may see, of one
/// project or of all of them.
#[derive(Clone, Debug)]
pub struct Sight {
    pub room: Arc<Room>,
    pub project: Option<String>,
}

/// What an answer depends on besides the collection's version and its own question: the
/// records it may hold. Callers whose sights have the same key get the same answer, so it
/// is encoded once for all of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SightKey {
    /// One project's records, for callers who may see that project (whatever else).
    Project(String),
    /// One project's records, for callers who may not see it: its public ones only.
    PublicOf(String),
    /// Every record the room with this id sees.
    Room(u64),
}

impl Sight {
    pub fn new(room: Arc<Room>, project: Option<String>) -> Self {
        Sight { room, project }
    }

    /// Whether the answer holds `record`.
    pub fn keeps<R: Resource>(&self, record: &R) -> bool {
        self.project.as_deref().is_none_or(|p| record.project_id() == Some(p)) && record.seen_by(&self.room)
    }

    pub fn key(&self) -> SightKey {
        match &self.project {
            Some(project) if self.room.sees_project(project) => SightKey::Project(project.clone()),
            Some(project) => SightKey::PublicOf(project.clone()),
            None => SightKey::Room(self.room.id()),
        }
    }
}

/// A list query's answer, not yet encoded: what the caller may see of the stored
/// collection, whole or one project's part of it. The wire layer encodes each (version,
/// [`SightKey`]) once and shares it, so thousands of tabs showing one project's volumes
/// cost one encoding per change too.
#[derive(Debug)]
pub struct Listing<R> {
    pub snapshot: Arc<Snapshot<R>>,
    pub sight: Sight,
}

impl<R: Fetch> Listing<R> {
    /// The records the answer holds, in the stored order.
    pub fn items(&self) -> impl Iterator<Item = &R> {
        self.snapshot.items.iter().map(|r| &**r).filter(|r| self.sight.keeps(*r))
    }
}

/// What the caller may see of a collection, or of one project's part of it (nothing of a
/// project they may not see but its public records, as for a project that does not
/// exist).
pub async fn list<R: Fetch>(ctx: &Ctx, input: Option<ListInput>) -> Result<Listing<R>, Error> {
    let room = ctx.room()?;
    if let Some(input) = &input {
        input.validate()?;
    }
    let snapshot = ctx.store.get::<R>().await?;
    Ok(Listing { snapshot, sight: Sight::new(room, input.and_then(|i| i.project_id)) })
}

/// One resource by id, when the caller may see it: another project's is not found, as
/// one that does not exist, so that its existence is not revealed.
pub async fn get<R: Fetch>(ctx: &Ctx, input: IdInput) -> Result<R, Error> {
    let room = ctx.room()?;
    input.validate()?;
    let snapshot = ctx.store.get::<R>().await?;
    found(&snapshot, &input.id, &room)
}

fn found<R: Fetch>(snapshot: &Snapshot<R>, id: &str, room: &Room) -> Result<R, Error> {
    snapshot
        .find(id)
        .filter(|r| r.seen_by(room))
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("no {} with id \"{id}\"", singular(R::TYPE))))
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

/// Where the bus stands for the caller: its latest seq, the replay ring's size, the last
/// update of each type they may see.
pub fn updates_state(ctx: &Ctx) -> Result<UpdatesState, Error> {
    let state = ctx.bus.state_for(&*ctx.room()?);
    Ok(UpdatesState {
        seq: state.seq,
        ring_size: state.ring_size as u64,
        types: state.types.into_iter().map(|(kind, s)| TypeUpdateState { kind, seq: s.seq, ts: s.ts }).collect(),
    })
}

/// The flavor of a server created without one.
pub const DEFAULT_FLAVOR: &str = "m1.small";

/// Creates a server in its project (by the flavor's name or id); answers it as upstream
/// shows it after the write (status `BUILD`).
pub async fn create_server(ctx: &Ctx, input: ServerCreate) -> Result<Server, Error> {
    let caller = ctx.caller()?;
    input.validate()?;
    let membership = writer_in(caller, &input.project_id, true)?;
    let acting = Acting::User(&membership.token);
    let flavor = input.flavor.as_deref().unwrap_or(DEFAULT_FLAVOR);
    // Nova takes a flavor's id; users know flavors by name (and sometimes by id).
    let flavor_id = ctx.client.flavor_id(acting, &input.project_id, flavor).await.or_refused(ctx, caller).await?;
    let flavor_id = flavor_id.ok_or_else(|| {
        Error::invalid("flavor", format!("no flavor named or with id \"{flavor}\" in project {}", input.project_id))
    })?;
    publishable(ctx)?;
    let id = ctx
        .client
        .create_server(acting, &input.project_id, &input.name, &flavor_id, input.image_id.as_deref())
        .await
        .or_refused(ctx, caller)
        .await?;
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
    let caller = ctx.caller()?;
    input.validate()?;
    let (record, membership) = existing::<Server>(ctx, caller, &input.id).await?;
    let acting = Acting::User(&membership.token);
    publishable(ctx)?;
    ctx.client.delete_server(acting, &input.id, Some(&record.project_id)).await.or_refused(ctx, caller).await?;
    ctx.store.forget::<Server>(&input.id).await;
    Ok(Deleted { id: input.id })
}

/// Runs a server action (`os-start`, `os-stop`); answers the server after it.
pub async fn server_action(ctx: &Ctx, input: IdInput, action: &str) -> Result<Server, Error> {
    let caller = ctx.caller()?;
    input.validate()?;
    let (record, membership) = existing::<Server>(ctx, caller, &input.id).await?;
    let acting = Acting::User(&membership.token);
    publishable(ctx)?;
    let done = ctx.client.server_action(acting, &input.id, Some(&record.project_id), action).await;
    done.or_refused(ctx, caller).await?;
    // What is known without reading again: the last stored record (the action's effect
    // shows once the poller sees it).
    Ok(refreshed(ctx, record).await)
}

/// Creates a volume; answers it as upstream shows it after the write (status `creating`).
pub async fn create_volume(ctx: &Ctx, input: VolumeCreate) -> Result<Volume, Error> {
    let caller = ctx.caller()?;
    input.validate()?;
    let membership = writer_in(caller, &input.project_id, true)?;
    let description = input.description.unwrap_or_default();
    publishable(ctx)?;
    let id = ctx
        .client
        .create_volume(Acting::User(&membership.token), &input.project_id, &input.name, input.size_gb, &description)
        .await
        .or_refused(ctx, caller)
        .await?;
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
    let caller = ctx.caller()?;
    input.validate()?;
    let (record, membership) = existing::<Volume>(ctx, caller, &input.id).await?;
    let acting = Acting::User(&membership.token);
    publishable(ctx)?;
    ctx.client.delete_volume(acting, &input.id, Some(&record.project_id)).await.or_refused(ctx, caller).await?;
    ctx.store.forget::<Volume>(&input.id).await;
    Ok(Deleted { id: input.id })
}

/// Snapshots a volume, in the volume's project (as `create_volume`, with a token of that
/// project); answers the snapshot as upstream shows it after the write (status
/// `creating`). Cinder refuses a volume that is not `available` (or `in-use`, with
/// `force`): a 400 with its message.
pub async fn create_snapshot(ctx: &Ctx, input: SnapshotCreate) -> Result<VolumeSnapshot, Error> {
    let caller = ctx.caller()?;
    input.validate()?;
    // The volume decides the project: one the caller may not see is no volume at all.
    let volumes = ctx.store.get::<Volume>().await?;
    let volume = found(&volumes, &input.volume_id, &caller.room())
        .map_err(|_| Error::invalid("volumeId", format!("no volume with id \"{}\"", input.volume_id)))?;
    let membership = writer_in(caller, &volume.project_id, true)?;
    let description = input.description.unwrap_or_default();
    let force = input.force.unwrap_or(false);
    publishable(ctx)?;
    let acting = Acting::User(&membership.token);
    let id = ctx
        .client
        .create_snapshot(acting, &volume.project_id, &volume.id, &input.name, &description, force)
        .await
        .or_refused(ctx, caller)
        .await?;
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
    let caller = ctx.caller()?;
    input.validate()?;
    let (record, membership) = existing::<VolumeSnapshot>(ctx, caller, &input.id).await?;
    publishable(ctx)?;
    let acting = Acting::User(&membership.token);
    ctx.client.delete_snapshot(acting, &input.id, Some(&record.project_id)).await.or_refused(ctx, caller).await?;
    ctx.store.forget::<VolumeSnapshot>(&input.id).await;
    Ok(Deleted { id: input.id })
}

/// Adds a subnet to a network, in the network's project; answers it as upstream shows
/// it after the write. The network's own record lists its subnets, so it is read back
/// too: both updates (`subnets` and `networks`) are out before the answer.
pub async fn create_subnet(ctx: &Ctx, input: SubnetCreate) -> Result<Subnet, Error> {
    let caller = ctx.caller()?;
    input.validate()?;
    let networks = ctx.store.get::<Network>().await?;
    let network = found(&networks, &input.network_id, &caller.room())
        .map_err(|_| Error::invalid("networkId", format!("no network with id \"{}\"", input.network_id)))?;
    let membership = writer_in(caller, &network.project_id, true)?;
    let version = input.version();
    let name = input.name.unwrap_or_default();
    publishable(ctx)?;
    let acting = Acting::User(&membership.token);
    let id = ctx
        .client
        .create_subnet(acting, &network.project_id, &network.id, &input.cidr, version, &name)
        .await
        .or_refused(ctx, caller)
        .await?;
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
    let caller = ctx.caller()?;
    input.validate()?;
    let (record, membership) = existing::<Subnet>(ctx, caller, &input.id).await?;
    publishable(ctx)?;
    let acting = Acting::User(&membership.token);
    ctx.client.delete_subnet(acting, &input.id, Some(&record.project_id)).await.or_refused(ctx, caller).await?;
    ctx.store.forget::<Subnet>(&input.id).await;
    let network = ctx.store.cached::<Network>().and_then(|n| n.find(&record.network_id).cloned());
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
/// (one show call, with Stalecast's own account). If that read fails, or the record is
/// already gone, the write still happened: answers `written`, what the write itself
/// told, and leaves the rest to the poller.
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

/// What a write with the caller's own token answers upstream.
trait Refused<T> {
    /// The answer; when the cloud refused the user's token (401), the session's
    /// memberships are read again first, which ends it if Keystone no longer accepts the
    /// token it stands on (its streams end, the dashboard asks the user to sign in).
    async fn or_refused(self, ctx: &Ctx, caller: &Session) -> Result<T, Error>;
}

impl<T> Refused<T> for Result<T, UpstreamError> {
    async fn or_refused(self, ctx: &Ctx, caller: &Session) -> Result<T, Error> {
        if let Err(UpstreamError::Unauthorized(_)) = &self {
            ctx.sessions.recheck(caller).await;
        }
        self.map_err(Error::from)
    }
}

/// The caller's membership of `project`, when they may change things there. A project
/// they have no role on is unknown to them (`creating`: a `400` naming `projectId`, as for
/// a project that does not exist; else `404`); a role that may not write is `403`,
/// naming the project and the role.
fn writer_in(caller: &Session, project: &str, creating: bool) -> Result<Membership, Error> {
    let memberships = caller.memberships();
    let Some(membership) = memberships.get(project) else {
        let message = format!("no project with id \"{project}\"");
        return Err(if creating { Error::invalid("projectId", message) } else { Error::NotFound(message) });
    };
    if !membership.may_write() {
        return Err(Error::Forbidden(format!(
            "{} may not change anything in project {} ({}): their role there is {}",
            caller.user().name,
            membership.project.name,
            membership.project.id,
            membership.roles.join(", ")
        )));
    }
    Ok(membership.clone())
}

/// A stored record the caller may see and change, with their membership of its project:
/// not found when it is unknown or another project's; `403` when their role there may
/// not write.
async fn existing<R: Fetch>(ctx: &Ctx, caller: &Session, id: &str) -> Result<(R, Membership), Error> {
    let snapshot = ctx.store.get::<R>().await?;
    let record = found(&snapshot, id, &caller.room())?;
    let project = record.project_id().unwrap_or_default().to_owned();
    let membership = writer_in(caller, &project, false).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!("no {} with id \"{id}\"", singular(R::TYPE))),
        other => other,
    })?;
    Ok((record, membership))
}

#[cfg(test)]
mod tests {
    //! The procedures called as functions: a store seeded by hand, an upstream nobody
    //! listens on, sessions made by hand, no socket of Stalecast's.

    use std::time::Duration;

    use super::*;
    use crate::auth::SessionConfig;
    use crate::updates::BusConfig;
    use crate::upstream::client::UpstreamConfig;

    /// A context for a caller who holds `roles` in each of `projects`.
    fn ctx(projects: &[(&str, &str)]) -> Ctx {
        // Nothing listens on port 9 (discard): any upstream call fails at once.
        let config = UpstreamConfig::password("http://127.0.0.1:9", "u", "p", "p", Duration::from_secs(1));
        let client = Arc::new(OpenStackClient::new(config).expect("client"));
        let bus = Arc::new(UpdateBus::starting_at(1, BusConfig::default()));
        let store = Arc::new(Store::new(client.clone(), bus.clone()));
        let stats = stats::Figures::new(&bus, &store, std::time::SystemTime::now());
        let sessions = Sessions::new(client.clone(), SessionConfig::default(), None);
        let caller = Some(sessions.made_by_hand("alice", projects));
        Ctx { client, store, bus, stats, sessions, caller, peer: None }
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
    async fn lists_and_gets_answer_what_the_caller_may_see_from_the_store() {
        let ctx = ctx(&[("prj-a", "member"), ("prj-b", "reader")]);
        ctx.store.seed(vec![volume("v-1", "prj-a"), volume("v-2", "prj-b"), volume("v-3", "prj-c")]);
        let whole = list::<Volume>(&ctx, None).await.expect("list");
        let ids: Vec<&str> = whole.items().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["v-1", "v-2"], "not prj-c's");
        let input = Some(ListInput { project_id: Some("prj-b".into()) });
        let part = list::<Volume>(&ctx, input).await.expect("list");
        assert_eq!(part.items().cloned().collect::<Vec<_>>(), vec![volume("v-2", "prj-b")]);
        assert!(Arc::ptr_eq(&whole.snapshot, &part.snapshot), "both read the one stored value");
        let other = list::<Volume>(&ctx, Some(ListInput { project_id: Some("prj-c".into()) })).await.expect("list");
        assert_eq!(other.items().count(), 0, "another project's part is empty, as an unknown project's");
        assert_eq!(get::<Volume>(&ctx, IdInput { id: "v-1".into() }).await.expect("get"), volume("v-1", "prj-a"));
        let missing = get::<Volume>(&ctx, IdInput { id: "v-9".into() }).await.expect_err("absent");
        assert_eq!(missing, Error::NotFound("no volume with id \"v-9\"".into()));
        let hidden = get::<Volume>(&ctx, IdInput { id: "v-3".into() }).await.expect_err("another project's");
        assert_eq!(hidden, Error::NotFound("no volume with id \"v-3\"".into()), "the same answer as for none");
    }

    #[tokio::test]
    async fn invalid_input_names_its_field_before_anything_reaches_upstream() {
        let ctx = ctx(&[("prj-a", "member")]);
        let input = VolumeCreate { project_id: "prj-a".into(), name: "ok".into(), size_gb: 0, description: None };
        let error = create_volume(&ctx, input).await.expect_err("size 0");
        assert_eq!(error, Error::invalid("sizeGb", "must be between 1 and 16384"));
        let input = ServerCreate { project_id: "prj-x".into(), name: "web".into(), flavor: None, image_id: None };
        let error = create_server(&ctx, input).await.expect_err("unknown project");
        assert_eq!(error, Error::invalid("projectId", "no project with id \"prj-x\""));
        // With valid input the write is attempted, and the unreachable upstream says so.
        let input = ServerCreate { project_id: "prj-a".into(), name: "web".into(), flavor: None, image_id: None };
        assert!(matches!(create_server(&ctx, input).await, Err(Error::Unavailable(_))));
    }

    #[tokio::test]
    async fn a_reader_may_not_write_and_nothing_reaches_upstream() {
        let ctx = ctx(&[("prj-data", "reader")]);
        ctx.store.seed(vec![volume("v-1", "prj-data")]);
        let input = VolumeCreate { project_id: "prj-data".into(), name: "x".into(), size_gb: 1, description: None };
        // Forbidden, not Unavailable: the unreachable upstream was never asked.
        let error = create_volume(&ctx, input).await.expect_err("reader");
        assert!(matches!(&error, Error::Forbidden(m) if m.contains("prj-data") && m.contains("reader")), "{error}");
        let error = delete_volume(&ctx, IdInput { id: "v-1".into() }).await.expect_err("reader");
        assert!(matches!(error, Error::Forbidden(_)), "{error}");
    }

    #[tokio::test]
    async fn without_a_caller_every_procedure_is_unauthorized() {
        let ctx = Ctx { caller: None, ..ctx(&[]) };
        let unauthorized = Error::Unauthorized("sign in first".into());
        assert_eq!(list::<Volume>(&ctx, None).await.expect_err("no caller"), unauthorized);
        assert_eq!(get::<Volume>(&ctx, IdInput { id: "v".into() }).await.expect_err("no caller"), unauthorized);
        assert_eq!(updates_state(&ctx).expect_err("no caller"), unauthorized);
        let input = VolumeCreate { project_id: "p".into(), name: "x".into(), size_gb: 1, description: None };
        assert_eq!(create_volume(&ctx, input).await.expect_err("no caller"), unauthorized);
    }
}
