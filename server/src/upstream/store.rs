//! The last known value of every collection, kept in a moka cache, and the one place
//! that turns a fresh upstream answer into an [`Update`](crate::updates::Update).
//!
//! [`Store::refresh`] fetches a collection, compares it with the cached one, stores it
//! and publishes the changed ids. The poller and the mutations both go through it (one
//! refresh per type at a time), so every change is announced exactly once. Queries read
//! the cache and reach upstream only when it is empty; when the upstream fails, they
//! keep answering from the cache while [`Store::health`] reports how stale it is.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::UpstreamError;
use super::client::OpenStackClient;
use crate::domain::model::{Image, Network, Project, Resource, Server, Volume};
use crate::rpc::{Encoded, Reply};
use crate::updates::{UpdateBus, UpdateType};

/// A resource kind the store can fetch from upstream.
pub trait Fetch: Resource {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send;
}

impl Fetch for Project {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.projects()
    }
}
impl Fetch for Server {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.servers()
    }
}
impl Fetch for Volume {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.volumes()
    }
}
impl Fetch for Image {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.images()
    }
}
impl Fetch for Network {
    fn fetch(client: &OpenStackClient) -> impl Future<Output = Result<Vec<Self>, UpstreamError>> + Send {
        client.networks()
    }
}

/// One collection as last fetched, with its JSON serialized once for every reader.
#[derive(Debug)]
pub struct Snapshot<R> {
    pub items: Vec<R>,
    /// `items` as the answer to a list query, encoded once per value.
    pub answer: Arc<Encoded>,
    /// When upstream last confirmed this value.
    pub fetched_at: SystemTime,
}

impl<R: Resource> Snapshot<R> {
    fn new(items: Vec<R>) -> Result<Self, UpstreamError> {
        let answer = Encoded::of(&items).map_err(|e| UpstreamError::Failed(format!("serializing {}: {e}", R::TYPE)))?;
        Ok(Snapshot { items, answer, fetched_at: SystemTime::now() })
    }

    /// The whole collection as a procedure's answer, without serializing again.
    pub fn reply(&self) -> Reply<Vec<R>> {
        Reply::from_encoded(self.answer.clone())
    }

    pub fn find(&self, id: &str) -> Option<&R> {
        self.items.iter().find(|r| r.id() == id)
    }
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

/// The cache of every collection.
pub struct Store {
    client: Arc<OpenStackClient>,
    bus: Arc<UpdateBus>,
    cache: moka::future::Cache<UpdateType, Arc<dyn Any + Send + Sync>>,
    refresh_locks: [tokio::sync::Mutex<()>; UpdateType::ALL.len()],
    health: Mutex<[TypeHealth; UpdateType::ALL.len()]>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("upstream", &self.client.auth_url()).finish()
    }
}

impl Store {
    pub fn new(client: Arc<OpenStackClient>, bus: Arc<UpdateBus>) -> Self {
        Store {
            client,
            bus,
            // One entry per update type, never evicted: a stale value beats no value.
            cache: moka::future::Cache::builder().max_capacity(UpdateType::ALL.len() as u64 * 2).build(),
            refresh_locks: Default::default(),
            health: Mutex::new(Default::default()),
        }
    }

    pub fn client(&self) -> &OpenStackClient {
        &self.client
    }

    /// The cached collection, if it was ever fetched.
    pub async fn cached<R: Fetch>(&self) -> Option<Arc<Snapshot<R>>> {
        self.cache.get(&R::TYPE).await.and_then(|any| any.downcast::<Snapshot<R>>().ok())
    }

    /// The cached collection, fetching it (once, however many callers wait) when the
    /// cache is empty.
    pub async fn get<R: Fetch>(&self) -> Result<Arc<Snapshot<R>>, UpstreamError> {
        if let Some(snapshot) = self.cached::<R>().await {
            return Ok(snapshot);
        }
        let _guard = self.refresh_locks[R::TYPE as usize].lock().await;
        if let Some(snapshot) = self.cached::<R>().await {
            return Ok(snapshot);
        }
        self.fetch_and_store::<R>().await
    }

    /// Fetches the collection, stores it and publishes the ids that changed since the
    /// cached value (nothing on the first load: nobody can have seen older data from
    /// this process). Answers the new snapshot.
    pub async fn refresh<R: Fetch>(&self) -> Result<Arc<Snapshot<R>>, UpstreamError> {
        let _guard = self.refresh_locks[R::TYPE as usize].lock().await;
        self.fetch_and_store::<R>().await
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
        let old = self.cached::<R>().await;
        let changed = old.as_ref().map(|old| changed_ids(&old.items, &items));
        let snapshot = match (&old, &changed) {
            (Some(old), Some(ids)) if ids.is_empty() => {
                // Unchanged: keep the serialized bytes, only note that they are fresh.
                Arc::new(Snapshot { items, answer: old.answer.clone(), fetched_at: SystemTime::now() })
            }
            _ => Arc::new(Snapshot::new(items)?),
        };
        self.cache.insert(R::TYPE, snapshot.clone() as Arc<dyn Any + Send + Sync>).await;
        if let Some(ids) = changed.filter(|ids| !ids.is_empty()) {
            self.bus.publish(R::TYPE, Some(ids));
        }
        Ok(snapshot)
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
