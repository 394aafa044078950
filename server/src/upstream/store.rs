//! The last known value of every collection, and the one place that turns a fresh
//! upstream answer into an [`Update`](crate::updates::Update).
//!
//! [`Store::refresh`] fetches a collection, compares it with the stored one, stores it
//! and publishes the changed ids; the poller goes through it. A mutation changes one
//! record and refreshes only that one: [`Store::refresh_one`] shows it upstream and
//! stores it in its collection, [`Store::forget`] removes a deleted one. All of them
//! hold the type's refresh lock (one at a time per type) and publish only what differs
//! from the stored value, so every change is announced exactly once. Queries read
//! the stored value and reach upstream only when there is none yet; when the upstream
//! fails, they keep answering from it while [`Store::health`] reports how stale it is.
//!
//! Each collection has a typed slot of its own (five, never evicted: a stale value beats
//! no value), and each stored value a version that changes only when its content does,
//! so the layers above can keep one encoded answer per version.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::UpstreamError;
use super::client::OpenStackClient;
use super::model::{Image, Network, Project, Resource, Server, Volume};
use crate::updates::{UpdateBus, UpdateType};

/// A resource kind the store can fetch from upstream, and where the store keeps it.
pub trait Fetch: Resource {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send;
    fn slot(slots: &Slots) -> &Slot<Self>;
}

impl Fetch for Project {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.projects()
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.projects
    }
}
impl Fetch for Server {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.servers()
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.servers
    }
}
impl Fetch for Volume {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.volumes()
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.volumes
    }
}
impl Fetch for Image {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.images()
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.images
    }
}
impl Fetch for Network {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.networks()
    }
    fn slot(slots: &Slots) -> &Slot<Self> {
        &slots.networks
    }
}

/// A resource kind the upstream can also show one at a time (`GET /servers/{id}`).
pub trait Show: Fetch {
    fn show(client: &OpenStackClient, id: &str) -> impl Future<Output = Result<Self, UpstreamError>> + Send;
}

impl Show for Server {
    fn show(client: &OpenStackClient, id: &str) -> impl Future<Output = Result<Self, UpstreamError>> + Send {
        client.server(id)
    }
}
impl Show for Volume {
    fn show(client: &OpenStackClient, id: &str) -> impl Future<Output = Result<Self, UpstreamError>> + Send {
        client.volume(id)
    }
}

/// One collection as last fetched.
#[derive(Debug)]
pub struct Snapshot<R> {
    pub items: Vec<R>,
    /// Changes when, and only when, `items` does (unique across every collection).
    pub version: u64,
    /// When upstream last confirmed this value.
    pub fetched_at: SystemTime,
}

impl<R: Resource> Snapshot<R> {
    pub fn find(&self, id: &str) -> Option<&R> {
        self.items.iter().find(|r| r.id() == id)
    }
}

/// Where one collection's last value is kept. Read far more often than written, and
/// only ever held for a pointer copy.
#[derive(Debug)]
pub struct Slot<R>(RwLock<Option<Arc<Snapshot<R>>>>);

impl<R> Default for Slot<R> {
    fn default() -> Self {
        Slot(RwLock::new(None))
    }
}

impl<R> Slot<R> {
    fn get(&self) -> Option<Arc<Snapshot<R>>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set(&self, snapshot: Arc<Snapshot<R>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
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

/// The last value of every collection.
#[derive(Debug)]
pub struct Store {
    client: Arc<OpenStackClient>,
    bus: Arc<UpdateBus>,
    slots: Slots,
    next_version: AtomicU64,
    refresh_locks: [tokio::sync::Mutex<()>; UpdateType::ALL.len()],
    health: Mutex<[TypeHealth; UpdateType::ALL.len()]>,
}

impl Store {
    pub fn new(client: Arc<OpenStackClient>, bus: Arc<UpdateBus>) -> Self {
        Store {
            client,
            bus,
            slots: Slots::default(),
            next_version: AtomicU64::new(1),
            refresh_locks: Default::default(),
            health: Mutex::new(Default::default()),
        }
    }

    pub fn client(&self) -> &OpenStackClient {
        &self.client
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
        let _guard = self.refresh_locks[R::TYPE as usize].lock().await;
        if let Some(snapshot) = self.cached::<R>() {
            return Ok(snapshot);
        }
        self.fetch_and_store::<R>().await
    }

    /// Fetches the collection, stores it and publishes the ids that changed since the
    /// stored value (nothing on the first load: nobody can have seen older data from
    /// this process). Answers the new snapshot.
    pub async fn refresh<R: Fetch>(&self) -> Result<Arc<Snapshot<R>>, UpstreamError> {
        let _guard = self.refresh_locks[R::TYPE as usize].lock().await;
        self.fetch_and_store::<R>().await
    }

    /// Shows one record upstream and stores it in its collection (replaced, or added at
    /// the end), or removes it when upstream says it does not exist; publishes its id
    /// when that changed the stored collection. Answers the record, `None` when it does
    /// not exist. A collection never fetched is left alone: its first load will hold the
    /// record, and nobody can have seen it without.
    pub async fn refresh_one<R: Show>(&self, id: &str) -> Result<Option<R>, UpstreamError> {
        let _guard = self.refresh_locks[R::TYPE as usize].lock().await;
        let record = match R::show(&self.client, id).await {
            Ok(record) => Some(record),
            Err(UpstreamError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        self.store_one(id, record.clone());
        Ok(record)
    }

    /// Removes a record deleted upstream from its collection, publishing its id if it
    /// was stored.
    pub async fn forget<R: Fetch>(&self, id: &str) {
        let _guard = self.refresh_locks[R::TYPE as usize].lock().await;
        self.store_one::<R>(id, None);
    }

    /// Puts `record` (or its absence) into the stored collection as record `id`: a new
    /// version and its id published when that changes anything. The caller holds the
    /// type's refresh lock.
    fn store_one<R: Fetch>(&self, id: &str, record: Option<R>) {
        let Some(old) = self.cached::<R>() else { return };
        let mut items = old.items.clone();
        match (items.iter().position(|r| r.id() == id), record) {
            (Some(at), Some(record)) if items[at] != record => items[at] = record,
            (Some(at), None) => {
                items.remove(at);
            }
            (None, Some(record)) => items.push(record),
            _ => return,
        }
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        // The collection as a whole was confirmed when it was last fetched, not now.
        R::slot(&self.slots).set(Arc::new(Snapshot { items, version, fetched_at: old.fetched_at }));
        self.bus.publish(R::TYPE, Some(vec![id.to_owned()]));
    }

    /// The body of a refresh; the caller holds the type's refresh lock.
    async fn fetch_and_store<R: Fetch>(&self) -> Result<Arc<Snapshot<R>>, UpstreamError> {
        let items = match R::fetch(&self.client).await {
            Ok(items) => items,
            Err(e) => {
                self.record(R::TYPE, Err(&e));
                return Err(e);
            }
        };
        self.record(R::TYPE, Ok(()));
        let (snapshot, changed) = self.store(items);
        if let Some(ids) = changed.filter(|ids| !ids.is_empty()) {
            self.bus.publish(R::TYPE, Some(ids));
        }
        Ok(snapshot)
    }

    /// Stores `items` as the collection's value: a new version when they differ from the
    /// stored ones. Answers the snapshot and the changed ids (`None` on the first load).
    fn store<R: Fetch>(&self, items: Vec<R>) -> (Arc<Snapshot<R>>, Option<Vec<String>>) {
        let old = self.cached::<R>();
        let changed = old.as_ref().map(|old| changed_ids(&old.items, &items));
        let version = match (&old, &changed) {
            // Unchanged (in order too: a record stored alone was added at the end): the same
            // version, only fresher.
            (Some(old), Some(ids)) if ids.is_empty() && old.items == items => old.version,
            _ => self.next_version.fetch_add(1, Ordering::Relaxed),
        };
        let snapshot = Arc::new(Snapshot { items, version, fetched_at: SystemTime::now() });
        R::slot(&self.slots).set(snapshot.clone());
        (snapshot, changed)
    }

    /// Stores a collection without asking upstream, announcing nothing: for tests of
    /// the layers above that run with no upstream at all.
    #[cfg(test)]
    pub(crate) fn seed<R: Fetch>(&self, items: Vec<R>) {
        self.store(items);
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

    /// How each type's fetches went lately.
    pub fn health(&self) -> Vec<(UpdateType, TypeHealth)> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        UpdateType::ALL.iter().map(|t| (*t, health[*t as usize].clone())).collect()
    }
}

/// Ids added, changed or removed between two versions of a collection, in the new
/// collection's order, then the removed ones.
pub fn changed_ids<R: Resource>(old: &[R], new: &[R]) -> Vec<String> {
    let before: HashMap<&str, &R> = old.iter().map(|r| (r.id(), r)).collect();
    let mut ids: Vec<String> =
        new.iter().filter(|r| before.get(r.id()).is_none_or(|old| *old != *r)).map(|r| r.id().to_owned()).collect();
    let after: std::collections::HashSet<&str> = new.iter().map(|r| r.id()).collect();
    ids.extend(old.iter().filter(|r| !after.contains(r.id())).map(|r| r.id().to_owned()));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: &str, name: &str) -> Project {
        Project { id: id.into(), name: name.into(), description: String::new(), enabled: true }
    }

    #[test]
    fn changed_ids_names_added_modified_and_removed() {
        let old = vec![project("a", "A"), project("b", "B"), project("c", "C")];
        let new = vec![project("a", "A"), project("b", "B2"), project("d", "D")];
        assert_eq!(changed_ids(&old, &new), vec!["b", "d", "c"]);
        assert!(changed_ids(&new, &new).is_empty());
    }
}
