//! The last known value of every collection, and the one place that turns a fresh
//! upstream answer into an [`Update`](crate::updates::Update).
//!
//! [`Store::refresh`] fetches a collection, compares it with the stored one, stores it
//! and publishes the changed ids; the poller goes through it. A mutation changes one
//! record and refreshes only that one: [`Store::refresh_one`] shows it upstream and
//! stores it in its collection, [`Store::forget`] removes a deleted one. All of them
//! publish only what differs from the stored value, so every change is announced
//! exactly once.
//!
//! A mutation never waits behind a poll. A full fetch of 36,000 volumes takes the
//! upstream hundreds of milliseconds, and when the fetch and the per-record refreshes
//! shared one lock per type, `storage.volumes.create` waited for it: p50 34 ms, p90
//! 738 ms, max 1,244 ms over 40 creates while the poller read that collection every 2 s
//! (release build). Now three things are separate: full fetches of a type run one at a
//! time (`fetch_locks`, held across the upstream call); refreshes of one record run one
//! at a time (`record_locks`, so two shows of one record land in order); and
//! putting a new value in the slot is a short synchronous step under the slot's `writes`
//! lock, never across an await. A record refreshed after a fetch began is newer than that
//! fetch's copy of it, or as new: the slot remembers it (present or absent), and when the
//! fetch lands that state replaces the fetched one, so a poll that started before a
//! mutation can never undo it — also when that poll is the collection's first load, which
//! has no stored value to patch yet. Queries read
//! the stored value and reach upstream only when there is none yet; when the upstream
//! fails, they keep answering from it while [`Store::health`] reports how stale it is.
//!
//! Each collection has a typed slot of its own (one per update type, never evicted: a stale value beats
//! no value), and each stored value a version that changes only when its content does,
//! so the layers above can keep one encoded answer per version.
//!
//! Each record also carries the seq of the update that last changed it, and each
//! collection a short log of its changes with the records they deleted
//! ([`Snapshot::changes_since`]): a client that holds the collection as of some seq can
//! ask for only what changed after it. The stamps are put in place while the bus
//! allocates the seq ([`UpdateBus::publish_changes`]), before anyone hears of the update.
//!
//! In a cluster (a [`Relay`] is set) the store finds changes as before but does not
//! apply them itself: it sends the changed records to the cluster's log and every node
//! applies them from there, in the log's order and under its seq ([`Store::apply`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use super::UpstreamError;
use super::client::OpenStackClient;
use super::known::Known;
use super::model::{Flavor, Image, Network, Project, Resource, Server, Subnet, Volume, VolumeSnapshot};
use super::relay::{Origin, Outgoing, Relay, RelayError, Relayed};
use crate::updates::{Owner, Update, UpdateBus, UpdateType};

/// What a fetch answers: the collection's records, and what its listing learnt for the
/// next one ([`Known`]).
pub type Fetched<R> = (Vec<Arc<R>>, Known<R>);

/// A resource kind the store can fetch from upstream, and where the store keeps it.
pub trait Fetch: Resource + serde::de::DeserializeOwned {
    /// The whole collection, decoded against what its last listing knew (`last`).
    fn fetch(
        client: &OpenStackClient,
        last: Arc<Known<Self>>,
    ) -> impl Future<Output = Result<Fetched<Self>, UpstreamError>> + Send;
    fn slot(slots: &Slots) -> &Slot<Self>;
}

impl Fetch for Project {
    async fn fetch(client: &OpenStackClient, _: Arc<Known<Self>>) -> Result<Fetched<Self>, UpstreamError> {
        // A few dozen records: decoded whole every time.
        Ok((client.projects().await?.into_iter().map(Arc::new).collect(), Known::default()))
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.projects
    }
}
impl Fetch for Server {
    fn fetch(
        client: &OpenStackClient,
        last: Arc<Known<Self>>,
    ) -> impl Future<Output = Result<Fetched<Self>, UpstreamError>> + Send {
        client.servers(last)
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.servers
    }
}
impl Fetch for Volume {
    fn fetch(
        client: &OpenStackClient,
        last: Arc<Known<Self>>,
    ) -> impl Future<Output = Result<Fetched<Self>, UpstreamError>> + Send {
        client.volumes(last)
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.volumes
    }
}
impl Fetch for Image {
    fn fetch(
        client: &OpenStackClient,
        last: Arc<Known<Self>>,
    ) -> impl Future<Output = Result<Fetched<Self>, UpstreamError>> + Send {
        client.images(last)
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.images
    }
}
impl Fetch for Network {
    fn fetch(
        client: &OpenStackClient,
        last: Arc<Known<Self>>,
    ) -> impl Future<Output = Result<Fetched<Self>, UpstreamError>> + Send {
        client.networks(last)
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.networks
    }
}

impl Fetch for VolumeSnapshot {
    fn fetch(
        client: &OpenStackClient,
        last: Arc<Known<Self>>,
    ) -> impl Future<Output = Result<Fetched<Self>, UpstreamError>> + Send {
        client.snapshots(last)
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.snapshots
    }
}
impl Fetch for Subnet {
    fn fetch(
        client: &OpenStackClient,
        last: Arc<Known<Self>>,
    ) -> impl Future<Output = Result<Fetched<Self>, UpstreamError>> + Send {
        client.subnets(last)
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.subnets
    }
}
impl Fetch for Flavor {
    fn fetch(
        client: &OpenStackClient,
        last: Arc<Known<Self>>,
    ) -> impl Future<Output = Result<Fetched<Self>, UpstreamError>> + Send {
        client.flavors(last)
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.flavors
    }
}

/// A resource kind the upstream can also show one at a time (`GET /servers/{id}`), in
/// its project when that is known (a user who is not an admin shows it with a token of
/// that project).
pub trait Show: Fetch {
    fn show(
        client: &OpenStackClient,
        id: &str,
        project: Option<&str>,
    ) -> impl Future<Output = Result<Self, UpstreamError>> + Send;
}

impl Show for Server {
    fn show(
        client: &OpenStackClient,
        id: &str,
        project: Option<&str>,
    ) -> impl Future<Output = Result<Self, UpstreamError>> + Send {
        client.server(id, project)
    }
}
impl Show for Volume {
    fn show(
        client: &OpenStackClient,
        id: &str,
        project: Option<&str>,
    ) -> impl Future<Output = Result<Self, UpstreamError>> + Send {
        client.volume(id, project)
    }
}

impl Show for VolumeSnapshot {
    fn show(
        client: &OpenStackClient,
        id: &str,
        project: Option<&str>,
    ) -> impl Future<Output = Result<Self, UpstreamError>> + Send {
        client.snapshot(id, project)
    }
}
impl Show for Network {
    fn show(
        client: &OpenStackClient,
        id: &str,
        project: Option<&str>,
    ) -> impl Future<Output = Result<Self, UpstreamError>> + Send {
        client.network(id, project)
    }
}
impl Show for Subnet {
    fn show(
        client: &OpenStackClient,
        id: &str,
        project: Option<&str>,
    ) -> impl Future<Output = Result<Self, UpstreamError>> + Send {
        client.subnet(id, project)
    }
}

/// Changes each collection remembers for [`Snapshot::changes_since`]: the replay ring's
/// reach at one update per change, a few KiB of seqs and deleted records. (Short in unit
/// tests, so that they can run past it.)
#[cfg(not(test))]
pub const CHANGE_LOG: usize = 4096;
#[cfg(test)]
pub const CHANGE_LOG: usize = 8;

/// One change of a collection: its update's seq and the records it deleted.
#[derive(Debug, Clone)]
pub struct Change<R> {
    pub seq: u64,
    pub deleted: Vec<R>,
}

/// One collection as last fetched.
///
/// Each record is shared (`Arc`): a new value of the collection copies pointers, not
/// records, and keeps the very records that did not change. With 36,000 volumes, storing
/// one changed record used to clone every record's strings (tens of thousands of
/// allocations on the mutation's path); now it copies 36,000 pointers.
#[derive(Debug)]
pub struct Snapshot<R> {
    pub items: Vec<Arc<R>>,
    /// The seq of the update that last changed each item, in the order of `items`
    /// (the `floor` for items held since the first load).
    pub stamps: Vec<u64>,
    /// The latest changes, oldest first, at most [`CHANGE_LOG`].
    pub log: VecDeque<Change<R>>,
    /// What happened at or before this seq is not in `log`.
    pub floor: u64,
    /// Changes when, and only when, `items` does (unique across every collection).
    pub version: u64,
    /// When upstream last confirmed this value.
    pub fetched_at: SystemTime,
}

/// What changed in a collection after a seq.
#[derive(Debug, PartialEq)]
pub enum Since<R> {
    /// The records added or changed (whole, as they are now) and the ids removed; `seq`
    /// is the collection's last change, where the client stands after applying them.
    Changes { seq: u64, upserts: Vec<R>, deletes: Vec<String> },
    /// The store cannot say (the seq is older than what it remembers, or from the
    /// future): the client must read the whole collection again.
    Resync { seq: u64 },
}

impl<R: Resource> Snapshot<R> {
    pub fn find(&self, id: &str) -> Option<&R> {
        self.items.iter().find(|r| r.id() == id).map(|r| &**r)
    }

    /// The seq of the collection's last change (the floor when none is remembered).
    pub fn seq(&self) -> u64 {
        self.log.back().map_or(self.floor, |c| c.seq)
    }

    /// The latest change at or before `since` (or the floor): every `since` between two
    /// changes has the same answer, so this is what an answer is keyed by.
    pub fn point(&self, since: u64) -> Option<u64> {
        if since < self.floor {
            return None;
        }
        let after = self.log.partition_point(|c| c.seq <= since);
        Some(if after == 0 { self.floor } else { self.log[after - 1].seq })
    }

    /// What changed after `since` (`None`: not a seq this store handed out), limited to
    /// the records `keep` accepts. `latest` is the bus's latest seq: anything beyond it
    /// is from the future (another process, or a tampered value).
    pub fn changes_since(&self, since: Option<u64>, latest: u64, keep: impl Fn(&R) -> bool) -> Since<R>
    where
        R: Clone,
    {
        let seq = self.seq();
        let Some(point) = since.filter(|s| *s <= latest).and_then(|s| self.point(s)) else {
            return Since::Resync { seq };
        };
        let upserts: Vec<R> = self
            .items
            .iter()
            .zip(&self.stamps)
            .filter(|(r, stamp)| **stamp > point && keep(r))
            .map(|(r, _)| R::clone(r))
            .collect();
        let present: HashSet<&str> = upserts.iter().map(|r| r.id()).collect();
        let start = self.log.partition_point(|c| c.seq <= point);
        let mut deletes: Vec<String> = Vec::new();
        for change in self.log.range(start..) {
            for record in &change.deleted {
                // Deleted, then made again with the same id: the upsert says what holds now.
                if keep(record) && !present.contains(record.id()) && self.find(record.id()).is_none() {
                    deletes.push(record.id().to_owned());
                }
            }
        }
        deletes.sort_unstable();
        deletes.dedup();
        Since::Changes { seq: seq.max(point), upserts, deletes }
    }
}

/// Appends a change to `log`, dropping the oldest beyond [`CHANGE_LOG`] (and raising the
/// floor past them). Answers the new floor.
fn remember<R>(log: &mut VecDeque<Change<R>>, floor: u64, change: Change<R>) -> u64 {
    log.push_back(change);
    let mut floor = floor;
    while log.len() > CHANGE_LOG {
        if let Some(dropped) = log.pop_front() {
            floor = floor.max(dropped.seq);
        }
    }
    floor
}

/// Announces a change of `record` (which was `was` before, if anything) to who may see it
/// now and, when that differs, to who could see it before: a record that moved out of a
/// project is gone from that project's lists.
fn owners_of_change<R: Resource>(announced: &mut Vec<(String, Owner)>, was: Option<&R>, record: &R) {
    let owner = record.owner();
    if let Some(before) = was.map(Resource::owner).filter(|before| *before != owner) {
        announced.push((record.id().to_owned(), before));
    }
    announced.push((record.id().to_owned(), owner));
}

/// `fetched`, with the records refreshed one by one during the fetch in the state they
/// were last shown in (present or absent) instead of as the fetch saw them; those the
/// fetch did not see (created during it) at the end.
fn keep_refreshed<R: Resource>(fetched: Vec<Arc<R>>, refreshed: Vec<(String, Option<Arc<R>>)>) -> Vec<Arc<R>> {
    if refreshed.is_empty() {
        return fetched;
    }
    let now: HashMap<&str, &Option<Arc<R>>> = refreshed.iter().map(|(id, r)| (id.as_str(), r)).collect();
    let mut placed = HashSet::new();
    let mut out = Vec::with_capacity(fetched.len() + refreshed.len());
    for record in fetched {
        match now.get(record.id()) {
            None => out.push(record),
            Some(state) => {
                placed.insert(record.id().to_owned());
                if let Some(current) = state {
                    out.push(current.clone());
                }
            }
        }
    }
    for (id, state) in &refreshed {
        if let (false, Some(current)) = (placed.contains(id), state) {
            out.push(current.clone());
        }
    }
    out
}

/// Where one collection's last value is kept. Read far more often than written, and
/// only ever held for a pointer copy.
#[derive(Debug)]
pub struct Slot<R> {
    value: RwLock<Option<Arc<Snapshot<R>>>>,
    /// Held while a new value is put in the slot (never across an await).
    writes: Mutex<Writes<R>>,
    /// What the last complete listing decoded, for the next one.
    known: Mutex<Arc<Known<R>>>,
}

impl<R> Default for Slot<R> {
    fn default() -> Self {
        Slot {
            value: RwLock::new(None),
            writes: Mutex::new(Writes { fetch_began: None, refreshed: Vec::new() }),
            known: Mutex::new(Arc::new(Known::default())),
        }
    }
}

impl<R> Slot<R> {
    fn get(&self) -> Option<Arc<Snapshot<R>>> {
        self.value.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set(&self, snapshot: Arc<Snapshot<R>>) {
        *self.value.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
    }
    fn writes(&self) -> MutexGuard<'_, Writes<R>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn known(&self) -> MutexGuard<'_, Arc<Known<R>>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a fetch changes in the stored collection.
enum Diffed<R> {
    /// Nothing: the snapshot to store, only fresher.
    Same(Arc<Snapshot<R>>),
    Changed(Changed<R>),
}

/// A fetched collection that differs from the stored one.
struct Changed<R> {
    /// The fetched records, in the listing's order.
    items: Vec<Arc<R>>,
    /// The stored stamps of the unchanged ones (0 for the changed).
    stamps: Vec<u64>,
    /// Where the changed ones are in `items`.
    changed: Vec<usize>,
    deleted: Vec<R>,
    fetched_at: SystemTime,
    /// Who hears of each change: the ids with their owners ([`owners_of_change`]).
    announced: Vec<(String, Owner)>,
}

impl<R: Resource> Changed<R> {
    /// The ids the notification names: the changed, then the deleted.
    fn ids(&self) -> Vec<String> {
        self.changed
            .iter()
            .map(|at| self.items[*at].id().to_owned())
            .chain(self.deleted.iter().map(|r| r.id().to_owned()))
            .collect()
    }
}

/// Per collection: when its running fetch began, and the records refreshed one by one
/// since then, as they were last shown (`None`: gone), in the order they were first
/// refreshed.
#[derive(Debug)]
struct Writes<R> {
    fetch_began: Option<u64>,
    refreshed: Vec<(String, Option<Arc<R>>)>,
}

impl<R> Writes<R> {
    fn remember(&mut self, id: &str, record: Option<Arc<R>>) {
        match self.refreshed.iter_mut().find(|(at, _)| at == id) {
            Some(entry) => entry.1 = record,
            None => self.refreshed.push((id.to_owned(), record)),
        }
    }
}

/// One slot per collection.
#[derive(Debug, Default)]
pub struct Slots {
    projects: Slot<Project>,
    servers: Slot<Server>,
    volumes: Slot<Volume>,
    images: Slot<Image>,
    networks: Slot<Network>,
    snapshots: Slot<VolumeSnapshot>,
    subnets: Slot<Subnet>,
    flavors: Slot<Flavor>,
}

/// How the upstream answered for one type lately.
#[derive(Clone, Debug, Default)]
pub struct TypeHealth {
    /// The last successful fetch.
    pub last_success: Option<SystemTime>,
    /// Failed fetches since the last success.
    pub failures: u32,
    /// What the last failure was (for operators, via the log and `/readyz`).
    pub last_error: Option<String>,
}

/// Maps keyed by record ids, with foldhash's fast hasher (the ids come from the cloud
/// the service account reads, and a map is rebuilt on every poll).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Locks for per-record refreshes, striped: a record's refreshes always take the same
/// one of [`RECORD_STRIPES`] locks of its type, so they run one at a time and in order,
/// while two records rarely share a lock. One lock per type made every mutation of a
/// type wait for the previous one's upstream round trip: at 10 volume changes a second
/// against a busy upstream, creates queued for seconds (p50 4.3 s in the delta storm).
#[derive(Debug)]
struct RecordLocks([[tokio::sync::Mutex<()>; RECORD_STRIPES]; UpdateType::ALL.len()]);

/// Record locks per type.
const RECORD_STRIPES: usize = 64;

impl Default for RecordLocks {
    fn default() -> Self {
        RecordLocks(std::array::from_fn(|_| std::array::from_fn(|_| tokio::sync::Mutex::new(()))))
    }
}

impl RecordLocks {
    async fn lock(&self, kind: UpdateType, id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hasher::write(&mut hasher, id.as_bytes());
        let stripe = std::hash::Hasher::finish(&hasher) as usize % RECORD_STRIPES;
        self.0[kind as usize][stripe].lock().await
    }
}

/// The last value of every collection.
#[derive(Debug)]
pub struct Store {
    client: Arc<OpenStackClient>,
    bus: Arc<UpdateBus>,
    slots: Slots,
    next_version: AtomicU64,
    /// One full fetch at a time per type.
    fetch_locks: [tokio::sync::Mutex<()>; UpdateType::ALL.len()],
    /// One refresh at a time per record: two shows of one record land in the order
    /// they were asked, while refreshes of different records run side by side.
    record_locks: RecordLocks,
    /// Orders fetch starts and per-record refresh starts.
    ticks: AtomicU64,
    health: Mutex<[TypeHealth; UpdateType::ALL.len()]>,
    /// Where changes go in a cluster (none: this store applies them itself).
    relay: std::sync::OnceLock<Arc<dyn Relay>>,
}

impl Store {
    pub fn new(client: Arc<OpenStackClient>, bus: Arc<UpdateBus>) -> Self {
        Store {
            relay: std::sync::OnceLock::new(),
            client,
            bus,
            slots: Slots::default(),
            next_version: AtomicU64::new(1),
            fetch_locks: Default::default(),
            record_locks: RecordLocks::default(),
            ticks: AtomicU64::new(1),
            health: Mutex::new(Default::default()),
        }
    }

    pub fn client(&self) -> &OpenStackClient {
        &self.client
    }

    /// Sends every change to `relay` from now on instead of applying it here (set once,
    /// before anything is stored; a second relay is refused).
    pub fn set_relay(&self, relay: Arc<dyn Relay>) -> Result<(), &'static str> {
        self.relay.set(relay).map_err(|_| "the store has a relay already")
    }

    /// Whether a change made now could be published: always without a relay. Mutations
    /// ask before writing upstream.
    pub fn can_publish(&self) -> bool {
        self.relay.get().is_none_or(|relay| relay.ready())
    }

    /// Announces that something that is not one of the stored collections changed (the
    /// server's own figures, `serverStats`): on the local bus, or in a cluster through the
    /// shared log like every other update, since a seq allocated here would collide with
    /// the log's. Nothing is stored; a failure to send is logged, and the next change
    /// announces again.
    pub async fn announce(&self, kind: UpdateType) {
        debug_assert!(!UpdateType::COLLECTIONS.contains(&kind), "{kind} is a collection: refresh it");
        match self.relay.get() {
            None => {
                self.bus.publish(kind, None);
            }
            Some(relay) => {
                let records = String::from(r#"{"upserts":[],"deletes":[]}"#);
                let change = Outgoing { kind, ids: None, records, origin: Origin::Mutation };
                if let Err(error) = relay.send(change).await {
                    tracing::debug!(%kind, %error, "could not announce a change");
                }
            }
        }
    }

    /// The stored collection, if it was ever fetched.
    pub fn cached<R: Fetch>(&self) -> Option<Arc<Snapshot<R>>> {
        R::slot(&self.slots).get()
    }

    /// The stored collection, fetching it (once, however many callers wait) when there
    /// is none yet.
    pub async fn get<R: Fetch>(&self) -> Result<Arc<Snapshot<R>>, UpstreamError> {
        if let Some(snapshot) = self.cached::<R>() {
            return Ok(snapshot);
        }
        let _guard = self.fetch_locks[R::TYPE as usize].lock().await;
        if let Some(snapshot) = self.cached::<R>() {
            return Ok(snapshot);
        }
        self.fetch_and_store::<R>().await
    }

    /// Loads every collection not stored yet (a node that does not poll, at start); a
    /// failure is logged, and the first query that needs the collection tries again.
    pub async fn load_all(&self) {
        let loads = (self.get::<Project>().await.err(), self.get::<Server>().await.err());
        let more =
            (self.get::<Volume>().await.err(), self.get::<Image>().await.err(), self.get::<Network>().await.err());
        for error in [loads.0, loads.1, more.0, more.1, more.2].into_iter().flatten() {
            tracing::warn!(%error, "loading a collection at start failed; the first query that needs it tries again");
        }
    }

    /// Fetches the collection, stores it and publishes the ids that changed since the
    /// stored value (nothing on the first load: nobody can have seen older data from
    /// this process). Answers the new snapshot.
    pub async fn refresh<R: Fetch>(&self) -> Result<Arc<Snapshot<R>>, UpstreamError> {
        let _guard = self.fetch_locks[R::TYPE as usize].lock().await;
        self.fetch_and_store::<R>().await
    }

    /// Shows one record upstream and stores it in its collection (replaced, or added at
    /// the end), or removes it when upstream says it does not exist; publishes its id
    /// when that changed the stored collection. Answers the record, `None` when it does
    /// not exist. A collection not loaded yet still gets its id announced, and its first
    /// load holds this state of the record. `project` is the record's, when known.
    pub async fn refresh_one<R: Show>(&self, id: &str, project: Option<&str>) -> Result<Option<R>, UpstreamError> {
        let _guard = self.record_locks.lock(R::TYPE, id).await;
        let started = self.ticks.fetch_add(1, Ordering::Relaxed);
        let record = match R::show(&self.client, id, project).await {
            Ok(record) => Some(record),
            Err(UpstreamError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        match self.relay.get() {
            Some(relay) => self.relay_one(relay.as_ref(), id, record.clone()).await,
            None => self.store_one(id, record.clone(), started),
        }
        Ok(record)
    }

    /// Removes a record deleted upstream from its collection, publishing its id if it
    /// was stored.
    pub async fn forget<R: Fetch>(&self, id: &str) {
        let _guard = self.record_locks.lock(R::TYPE, id).await;
        let started = self.ticks.fetch_add(1, Ordering::Relaxed);
        match self.relay.get() {
            Some(relay) => self.relay_one::<R>(relay.as_ref(), id, None).await,
            None => self.store_one::<R>(id, None, started),
        }
    }

    /// [`store_one`](Self::store_one) in a cluster: sends record `id` (or its absence) to
    /// the cluster when it differs from the stored one (or nothing is stored yet), and
    /// waits until this node applied it. The write upstream happened already: when the
    /// change cannot be sent, the poller announces it once the cluster is back.
    async fn relay_one<R: Fetch>(&self, relay: &dyn Relay, id: &str, record: Option<R>) {
        let stored = self.cached::<R>().map(|s| s.find(id).cloned());
        if stored.as_ref().is_some_and(|stored| *stored == record) {
            return;
        }
        let relayed = match record {
            Some(record) => Relayed { upserts: vec![record], deletes: Vec::new() },
            None => Relayed { upserts: Vec::new(), deletes: vec![id.to_owned()] },
        };
        let ids = Some(vec![id.to_owned()]);
        if let Err(error) = self.send(relay, ids, &relayed, Origin::Mutation).await {
            tracing::warn!(kind = %R::TYPE, id, %error, "written upstream, but the change could not be published; the poller will announce it");
        }
    }

    /// Sends one change of `R` to the cluster.
    async fn send<R: Fetch>(
        &self,
        relay: &dyn Relay,
        ids: Option<Vec<String>>,
        relayed: &Relayed<R>,
        origin: Origin,
    ) -> Result<u64, RelayError> {
        // The records are the store's own types: they serialize.
        let records = serde_json::to_string(relayed).map_err(|e| RelayError::Unavailable(e.to_string()))?;
        relay.send(Outgoing { kind: R::TYPE, ids, records, origin }).await
    }

    /// Applies a change the cluster's log delivered, as update `update` (its seq and
    /// `ts` the log's): the records in `records` (a [`Relayed`] of `update.kind`, JSON)
    /// replace or join the stored ones, the deleted ids leave, all stamped with its seq;
    /// then the update goes out on this node's bus. Answers an error, applying nothing,
    /// when the records do not decode. A collection not loaded yet has nothing to patch
    /// (its first load keeps these records, when it is under way).
    pub fn apply(&self, update: Update, records: &str) -> Result<(), serde_json::Error> {
        match update.kind {
            UpdateType::Projects => self.apply_typed::<Project>(update, serde_json::from_str(records)?),
            UpdateType::Servers => self.apply_typed::<Server>(update, serde_json::from_str(records)?),
            UpdateType::Volumes => self.apply_typed::<Volume>(update, serde_json::from_str(records)?),
            UpdateType::Images => self.apply_typed::<Image>(update, serde_json::from_str(records)?),
            UpdateType::Networks => self.apply_typed::<Network>(update, serde_json::from_str(records)?),
            UpdateType::Snapshots => self.apply_typed::<VolumeSnapshot>(update, serde_json::from_str(records)?),
            UpdateType::Subnets => self.apply_typed::<Subnet>(update, serde_json::from_str(records)?),
            UpdateType::Flavors => self.apply_typed::<Flavor>(update, serde_json::from_str(records)?),
            // Not stored here ([`Store::announce`]): only the notification.
            UpdateType::ServerStats => {
                self.bus.ingest(update, Vec::new(), |_| {});
            }
        }
        Ok(())
    }

    fn apply_typed<R: Fetch>(&self, update: Update, relayed: Relayed<R>) {
        let slot = R::slot(&self.slots);
        let mut writes = slot.writes();
        let upserts: Vec<Arc<R>> = relayed.upserts.into_iter().map(Arc::new).collect();
        if writes.fetch_began.is_some() {
            // A fetch under way read these records before or after the change: when it
            // lands it keeps the change.
            for record in &upserts {
                writes.remember(record.id(), Some(record.clone()));
            }
            for id in &relayed.deletes {
                writes.remember(id, None);
            }
        }
        // Who hears of it, as where the change was found (`owners_of_change`): each
        // record's owner, and its former one when it moved; each deleted record's owner as
        // this node stored it (one it never stored: nobody's).
        let mut announced = Vec::with_capacity(upserts.len() + relayed.deletes.len());
        let Some(old) = self.cached::<R>() else {
            for record in &upserts {
                owners_of_change(&mut announced, None, &**record);
            }
            announced.extend(relayed.deletes.iter().map(|id| (id.clone(), Owner::Nobody)));
            self.bus.ingest(update, announced, |_| {});
            return;
        };
        let mut items = old.items.clone();
        let mut stamps = old.stamps.clone();
        let gone: HashSet<&str> = relayed.deletes.iter().map(String::as_str).collect();
        let mut deleted = Vec::new();
        if !gone.is_empty() {
            let mut kept_stamps = Vec::with_capacity(stamps.len());
            let mut kept = Vec::with_capacity(items.len());
            for (record, stamp) in items.into_iter().zip(stamps) {
                if gone.contains(record.id()) {
                    deleted.push(R::clone(&record));
                } else {
                    kept.push(record);
                    kept_stamps.push(stamp);
                }
            }
            (items, stamps) = (kept, kept_stamps);
        }
        // One record (a mutation's) is looked for; more (a poll's) through a map.
        let indexed = upserts.len() > 1;
        let at: FastMap<&str, usize> =
            if indexed { items.iter().enumerate().map(|(i, r)| (r.id(), i)).collect() } else { FastMap::default() };
        let mut changed = Vec::with_capacity(upserts.len());
        let mut appended = Vec::new();
        for record in upserts {
            let found =
                if indexed { at.get(record.id()).copied() } else { items.iter().position(|r| r.id() == record.id()) };
            owners_of_change(&mut announced, found.map(|i| &*items[i]), &*record);
            match found {
                Some(i) => changed.push((i, record)),
                None => appended.push(record),
            }
        }
        drop(at);
        let owners: FastMap<&str, Owner> = deleted.iter().map(|r| (r.id(), r.owner())).collect();
        announced.extend(
            relayed.deletes.iter().map(|id| (id.clone(), owners.get(id.as_str()).cloned().unwrap_or(Owner::Nobody))),
        );
        drop(owners);
        let mut positions = Vec::with_capacity(changed.len() + appended.len());
        for (i, record) in changed {
            items[i] = record;
            positions.push(i);
        }
        for record in appended {
            items.push(record);
            stamps.push(0);
            positions.push(items.len() - 1);
        }
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let mut log = old.log.clone();
        self.bus.ingest(update, announced, |seq| {
            for i in positions {
                stamps[i] = seq;
            }
            let floor = remember(&mut log, old.floor, Change { seq, deleted });
            slot.set(Arc::new(Snapshot { items, stamps, log, floor, version, fetched_at: old.fetched_at }));
        });
    }

    /// Notes that the upstream confirmed collection `kind` at `at` on another node (the
    /// cluster's poller): this node's readiness follows it.
    pub fn confirmed(&self, kind: UpdateType, at: SystemTime) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let entry = &mut health[kind as usize];
        if entry.last_success.is_none_or(|last| last < at) {
            entry.last_success = Some(at);
            entry.failures = 0;
            entry.last_error = None;
        }
    }

    /// Puts `record` (or its absence), as upstream showed it from `started` on, into the
    /// stored collection as record `id`: a new version, stamped with the seq of the
    /// update that announces its id, when that changes anything. A fetch of the type
    /// that began before `started` will keep this state of the record. A collection not
    /// loaded yet has nothing to patch: its id is announced all the same (whoever hears
    /// it and asks waits for the first load, which holds this state of the record).
    fn store_one<R: Fetch>(&self, id: &str, record: Option<R>, started: u64) {
        let slot = R::slot(&self.slots);
        let mut writes = slot.writes();
        let record = record.map(Arc::new);
        if writes.fetch_began.is_some_and(|began| began < started) {
            writes.remember(id, record.clone());
        }
        let Some(old) = self.cached::<R>() else {
            // Nobody was shown the collection yet: only those who may see the record hear.
            let owner = record.as_ref().map_or(Owner::Nobody, |r| r.owner());
            self.bus.publish_changes(R::TYPE, vec![(id.to_owned(), owner)], |_| {});
            return;
        };
        let mut items = old.items.clone();
        let mut stamps = old.stamps.clone();
        let mut deleted = Vec::new();
        let mut changed = Vec::new();
        let at = match (items.iter().position(|r| r.id() == id), record) {
            (Some(at), Some(record)) if *items[at] != *record => {
                owners_of_change(&mut changed, Some(&*items[at]), &*record);
                items[at] = record;
                Some(at)
            }
            (Some(at), None) => {
                let gone = R::clone(&items.remove(at));
                changed.push((id.to_owned(), gone.owner()));
                deleted.push(gone);
                stamps.remove(at);
                None
            }
            (None, Some(record)) => {
                owners_of_change::<R>(&mut changed, None, &record);
                items.push(record);
                stamps.push(0);
                Some(items.len() - 1)
            }
            _ => return,
        };
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let mut log = old.log.clone();
        self.bus.publish_changes(R::TYPE, changed, |seq| {
            if let Some(at) = at {
                stamps[at] = seq;
            }
            let floor = remember(&mut log, old.floor, Change { seq, deleted });
            // The collection as a whole was confirmed when it was last fetched, not now.
            slot.set(Arc::new(Snapshot { items, stamps, log, floor, version, fetched_at: old.fetched_at }));
        });
    }

    /// The body of a refresh; the caller holds the type's fetch lock.
    async fn fetch_and_store<R: Fetch>(&self) -> Result<Arc<Snapshot<R>>, UpstreamError> {
        self.begin_fetch::<R>();
        let last = R::slot(&self.slots).known().clone();
        let fetched = R::fetch(&self.client, last).await.map(|(items, known)| {
            *R::slot(&self.slots).known() = Arc::new(known);
            items
        });
        match self.relay.get() {
            Some(relay) => self.land_relayed(fetched, relay.as_ref()).await,
            None => self.land(fetched),
        }
    }

    /// [`land`](Self::land) in a cluster: a first load is stored here (nothing to
    /// announce); a change is sent to the cluster and stored when this node applies it.
    /// When it cannot be sent (the cluster's log unreachable, the lease lost) the stored
    /// value stays, and the next poll finds the change again.
    async fn land_relayed<R: Fetch>(
        &self,
        fetched: Result<Vec<Arc<R>>, UpstreamError>,
        relay: &dyn Relay,
    ) -> Result<Arc<Snapshot<R>>, UpstreamError> {
        let slot = R::slot(&self.slots);
        let (old, changed) = {
            let mut w = slot.writes();
            w.fetch_began = None;
            let refreshed = std::mem::take(&mut w.refreshed);
            let items = match fetched {
                Ok(items) => keep_refreshed(items, refreshed),
                Err(e) => {
                    self.record(R::TYPE, Err(&e));
                    return Err(e);
                }
            };
            self.record(R::TYPE, Ok(()));
            let Some(old) = self.cached::<R>() else {
                return Ok(self.store(items));
            };
            match self.diff(&old, items) {
                Diffed::Same(snapshot) => {
                    slot.set(snapshot.clone());
                    return Ok(snapshot);
                }
                Diffed::Changed(changed) => (old, changed),
            }
        };
        let ids = changed.ids();
        let relayed = Relayed {
            upserts: changed.changed.iter().map(|at| R::clone(&changed.items[*at])).collect(),
            deletes: changed.deleted.iter().map(|r| r.id().to_owned()).collect(),
        };
        if self.send(relay, Some(ids), &relayed, Origin::Poll).await.is_err() {
            // Said once per state change by the cluster; the next poll sends it again.
            return Ok(old);
        }
        // Applied by now: the value is as fresh as this fetch.
        let _w = slot.writes();
        let current = self.cached::<R>().unwrap_or(old);
        let snapshot = Arc::new(Snapshot {
            items: current.items.clone(),
            stamps: current.stamps.clone(),
            log: current.log.clone(),
            floor: current.floor,
            version: current.version,
            fetched_at: changed.fetched_at,
        });
        slot.set(snapshot.clone());
        Ok(snapshot)
    }

    /// Notes that a full fetch of the collection begins now: records refreshed one by
    /// one from here on keep their state when it lands.
    fn begin_fetch<R: Fetch>(&self) {
        let mut w = R::slot(&self.slots).writes();
        w.fetch_began = Some(self.ticks.fetch_add(1, Ordering::Relaxed));
        w.refreshed.clear();
    }

    /// Stores what the fetch begun by [`begin_fetch`](Self::begin_fetch) answered.
    fn land<R: Fetch>(&self, fetched: Result<Vec<Arc<R>>, UpstreamError>) -> Result<Arc<Snapshot<R>>, UpstreamError> {
        let mut w = R::slot(&self.slots).writes();
        w.fetch_began = None;
        let refreshed = std::mem::take(&mut w.refreshed);
        match fetched {
            Ok(items) => {
                self.record(R::TYPE, Ok(()));
                Ok(self.store(keep_refreshed(items, refreshed)))
            }
            Err(e) => {
                self.record(R::TYPE, Err(&e));
                Err(e)
            }
        }
    }

    /// Stores `items` as the collection's value: a new version when they differ from the
    /// stored ones, and an update naming the changed ids, each stamped with its seq
    /// (nothing is announced on the first load: nobody can have seen older data from
    /// this process). Answers the snapshot stored.
    ///
    /// A record the listing took from the last one ([`super::known`]) is the very value
    /// stored, and is seen unchanged by its pointer; one decoded anew is compared whole,
    /// and when equal the fetched value is kept, so that the next listing finds it by
    /// pointer too. Records are matched by position until the first one that differs; a
    /// map of the stored ids from there on (foldhash) is built only then.
    fn store<R: Fetch>(&self, fetched: Vec<Arc<R>>) -> Arc<Snapshot<R>> {
        let slot = R::slot(&self.slots);
        let Some(old) = self.cached::<R>() else {
            let items = fetched;
            let floor = self.bus.seq();
            let version = self.next_version.fetch_add(1, Ordering::Relaxed);
            let stamps = vec![floor; items.len()];
            let snapshot = Arc::new(Snapshot {
                items,
                stamps,
                log: VecDeque::new(),
                floor,
                version,
                fetched_at: SystemTime::now(),
            });
            slot.set(snapshot.clone());
            return snapshot;
        };
        match self.diff(&old, fetched) {
            Diffed::Same(snapshot) => {
                slot.set(snapshot.clone());
                snapshot
            }
            Diffed::Changed(changed) => {
                let Changed { items, mut stamps, changed, deleted, fetched_at, announced } = changed;
                let version = self.next_version.fetch_add(1, Ordering::Relaxed);
                let mut log = old.log.clone();
                let mut stored = None;
                self.bus.publish_changes(R::TYPE, announced, |seq| {
                    for at in &changed {
                        stamps[*at] = seq;
                    }
                    let floor = remember(&mut log, old.floor, Change { seq, deleted });
                    let snapshot = Arc::new(Snapshot { items, stamps, log, floor, version, fetched_at });
                    slot.set(snapshot.clone());
                    stored = Some(snapshot);
                });
                // `publish_changes` always runs the stamp; should it ever not, the old value stays.
                stored.unwrap_or(old)
            }
        }
    }

    /// What `fetched` changes in the stored `old`: nothing (the snapshot to store, only
    /// fresher), or the records that changed and those deleted.
    fn diff<R: Fetch>(&self, old: &Snapshot<R>, fetched: Vec<Arc<R>>) -> Diffed<R> {
        // Records are matched by position while the listing holds the stored ids in the
        // stored order; from the first difference on, by id (a map of the stored records
        // from there: those before it are matched already).
        let mut before: Option<FastMap<&str, usize>> = None;
        let mut items = Vec::with_capacity(fetched.len());
        let mut stamps = Vec::with_capacity(fetched.len());
        let mut changed = Vec::new();
        // Who hears of each change (see `owners_of_change`).
        let mut announced = Vec::new();
        let mut moved = false;
        // Which stored records the listing still has: the others were deleted.
        let mut kept = vec![false; old.items.len()];
        for (at, record) in fetched.into_iter().enumerate() {
            let was = match (&mut before, old.items.get(at)) {
                (None, Some(stored)) if stored.id() == record.id() => Some(at),
                (before, _) => {
                    let stored = before.get_or_insert_with(|| {
                        old.items.iter().enumerate().skip(at).map(|(i, r)| (r.id(), i)).collect()
                    });
                    stored.get(record.id()).copied()
                }
            };
            if let Some(was) = was {
                kept[was] = true;
            }
            match was {
                // Unchanged: keep its stamp.
                Some(was) if Arc::ptr_eq(&old.items[was], &record) || *old.items[was] == *record => {
                    moved |= was != at;
                    items.push(record);
                    stamps.push(old.stamps[was]);
                }
                _ => {
                    owners_of_change(&mut announced, was.map(|was| &*old.items[was]), &*record);
                    items.push(record);
                    stamps.push(0);
                    changed.push(at);
                }
            }
        }
        drop(before);
        let deleted: Vec<R> =
            old.items.iter().zip(&kept).filter(|(_, kept)| !**kept).map(|(r, _)| R::clone(r)).collect();
        let fetched_at = SystemTime::now();
        if changed.is_empty() && deleted.is_empty() {
            // The same records: the same version (unless only the order changed), only fresher.
            let version = if moved || old.items.len() != items.len() {
                self.next_version.fetch_add(1, Ordering::Relaxed)
            } else {
                old.version
            };
            return Diffed::Same(Arc::new(Snapshot {
                items,
                stamps,
                log: old.log.clone(),
                floor: old.floor,
                version,
                fetched_at,
            }));
        }
        announced.extend(deleted.iter().map(|r| (r.id().to_owned(), r.owner())));
        Diffed::Changed(Changed { items, stamps, changed, deleted, fetched_at, announced })
    }

    /// Stores a collection without asking upstream, announcing nothing: for tests of
    /// the layers above that run with no upstream at all.
    #[cfg(test)]
    pub(crate) fn seed<R: Fetch>(&self, items: Vec<R>) {
        self.store(items.into_iter().map(Arc::new).collect());
    }

    fn record(&self, kind: UpdateType, outcome: Result<(), &UpstreamError>) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let entry = &mut health[kind as usize];
        match outcome {
            Ok(()) => {
                entry.last_success = Some(SystemTime::now());
                entry.failures = 0;
                entry.last_error = None;
            }
            Err(e) => {
                entry.failures = entry.failures.saturating_add(1);
                entry.last_error = Some(e.to_string());
            }
        }
    }

    /// How each collection's fetches went lately.
    pub fn health(&self) -> Vec<(UpdateType, TypeHealth)> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        UpdateType::COLLECTIONS.iter().map(|t| (*t, health[*t as usize].clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: &str, name: &str) -> Project {
        Project { id: id.into(), name: name.into(), description: String::new(), enabled: true }
    }

    fn store() -> Store {
        // Nothing listens on port 9 (discard): these tests never reach upstream.
        let config = super::super::client::UpstreamConfig::password(
            "http://127.0.0.1:9",
            "u",
            "p",
            "p",
            std::time::Duration::from_secs(1),
        );
        let client = Arc::new(OpenStackClient::new(config).expect("client"));
        Store::new(client, Arc::new(UpdateBus::starting_at(100, crate::updates::BusConfig::default())))
    }

    fn changes(store: &Store, since: u64) -> Since<Project> {
        let snapshot = store.cached::<Project>().expect("stored");
        snapshot.changes_since(Some(since), store.bus.seq(), |_| true)
    }

    fn upserted(ids: &[&str], seq: u64, projects: &[Project]) -> Since<Project> {
        let upserts = projects.iter().filter(|p| ids.contains(&p.id.as_str())).cloned().collect();
        Since::Changes { seq, upserts, deletes: Vec::new() }
    }

    #[test]
    fn changes_name_what_each_update_changed_stamped_with_its_seq() {
        let store = store();
        let (_start, mut live) = store.bus.subscribe(None);
        let first = vec![project("a", "A"), project("b", "B"), project("c", "C")];
        store.seed(first.clone());
        let floor = store.bus.seq();
        assert_eq!(changes(&store, floor), Since::Changes { seq: floor, upserts: vec![], deletes: vec![] });

        // A refresh that changes b, adds d and drops c: one update, and its seq on both.
        let second = vec![project("a", "A"), project("b", "B2"), project("d", "D")];
        store.seed(second.clone());
        let update = live.try_recv().expect("published").update.clone();
        assert_eq!(update.ids.as_deref(), Some(&["b".to_owned(), "d".to_owned(), "c".to_owned()][..]));
        let after_second = update.seq;
        assert_eq!(
            changes(&store, floor),
            Since::Changes {
                seq: after_second,
                upserts: vec![project("b", "B2"), project("d", "D")],
                deletes: vec!["c".into()]
            }
        );
        // Up to date: nothing; the same refresh again: no update, the same version.
        assert_eq!(changes(&store, after_second), upserted(&[], after_second, &second));
        let version = store.cached::<Project>().expect("stored").version;
        store.seed(second.clone());
        assert!(live.try_recv().is_err());
        assert_eq!(store.cached::<Project>().expect("stored").version, version);

        // One record changed by a mutation; every seq between two changes has one answer.
        store.store_one("a", Some(project("a", "A2")), 0);
        let after_one = store.bus.seq();
        let third = vec![project("a", "A2"), project("b", "B2"), project("d", "D")];
        assert_eq!(changes(&store, after_second), upserted(&["a"], after_one, &third));
        let snapshot = store.cached::<Project>().expect("stored");
        assert_eq!(snapshot.point(after_second), snapshot.point(after_one - 1));
        assert_ne!(snapshot.point(after_second), snapshot.point(after_one));
    }

    #[test]
    fn a_seq_the_store_cannot_answer_for_is_a_resync() {
        let store = store();
        store.seed(vec![project("a", "A")]);
        let floor = store.bus.seq();
        store.store_one("a", Some(project("a", "A2")), 0);
        let seq = store.bus.seq();
        let snapshot = store.cached::<Project>().expect("stored");
        let ask = |since| snapshot.changes_since(since, store.bus.seq(), |_| true);
        assert_eq!(ask(None), Since::Resync { seq });
        assert_eq!(ask(Some(floor - 1)), Since::Resync { seq });
        assert_eq!(ask(Some(seq + 1)), Since::Resync { seq });
        assert!(matches!(ask(Some(floor)), Since::Changes { .. }));

        // Past the log's length, the oldest changes are forgotten: asking from before them
        // is a resync, from after them still an answer.
        for n in 0..CHANGE_LOG + 2 {
            store.store_one("a", Some(project("a", &format!("A{n}"))), 0);
        }
        let snapshot = store.cached::<Project>().expect("stored");
        assert_eq!(snapshot.log.len(), CHANGE_LOG);
        assert!(snapshot.floor > seq);
        assert!(matches!(snapshot.changes_since(Some(seq), store.bus.seq(), |_| true), Since::Resync { .. }));
        let recent = snapshot.changes_since(Some(snapshot.floor), store.bus.seq(), |_| true);
        assert!(matches!(recent, Since::Changes { ref upserts, .. } if upserts.len() == 1), "{recent:?}");
    }

    #[test]
    fn deleted_then_made_again_is_an_upsert_not_a_delete() {
        let store = store();
        store.seed(vec![project("a", "A"), project("b", "B")]);
        let floor = store.bus.seq();
        store.store_one::<Project>("b", None, 0);
        store.store_one("b", Some(project("b", "B again")), 0);
        store.store_one::<Project>("a", None, 0);
        let seq = store.bus.seq();
        assert_eq!(
            changes(&store, floor),
            Since::Changes { seq, upserts: vec![project("b", "B again")], deletes: vec!["a".into()] }
        );
        // Filtered to what the caller keeps, deletes included.
        let snapshot = store.cached::<Project>().expect("stored");
        let only_b = snapshot.changes_since(Some(floor), seq, |p| p.id == "b");
        assert_eq!(only_b, Since::Changes { seq, upserts: vec![project("b", "B again")], deletes: vec![] });
    }

    #[test]
    fn a_record_refreshed_during_the_first_load_is_announced_and_kept() {
        let store = store();
        let (_start, mut live) = store.bus.subscribe(None);
        // The first load began, then a mutation made "b" and changed "a", then the load
        // landed with what it read before them.
        store.begin_fetch::<Project>();
        store.store_one("b", Some(project("b", "B")), store.ticks.fetch_add(1, Ordering::Relaxed));
        store.store_one("a", Some(project("a", "A2")), store.ticks.fetch_add(1, Ordering::Relaxed));
        let heard: Vec<_> = std::iter::from_fn(|| live.try_recv().ok()).map(|p| p.update.ids.clone()).collect();
        assert_eq!(heard, vec![Some(vec!["b".to_owned()]), Some(vec!["a".to_owned()])], "each announced at once");
        let landed = store.land(Ok(vec![Arc::new(project("a", "A")), Arc::new(project("c", "C"))])).expect("stored");
        let items: Vec<Project> = landed.items.iter().map(|p| Project::clone(p)).collect();
        assert_eq!(items, vec![project("a", "A2"), project("c", "C"), project("b", "B")]);
        assert!(landed.floor >= store.bus.seq(), "a client that heard of b and asks reads it");

        // The next load sees them anyway; a record deleted during a load stays deleted.
        store.begin_fetch::<Project>();
        store.store_one::<Project>("c", None, store.ticks.fetch_add(1, Ordering::Relaxed));
        let landed = store
            .land(Ok([project("a", "A2"), project("b", "B"), project("c", "C")].into_iter().map(Arc::new).collect()))
            .expect("stored");
        let ids: Vec<&str> = landed.items.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b"]);
    }
}
