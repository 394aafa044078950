//! Where a node keeps its sessions, behind a narrow interface: find one by id, keep
//! one, drop one, list them all (for the sweeper). [`MemoryStore`] keeps them in this
//! process. The calls are asynchronous so that a store may wait, although this one never
//! does.
//!
//! A session's live parts (the channel its event streams follow, the token of each of
//! its projects) are in the [`Session`] itself, so every node keeps its own copies here,
//! with or without `--redis`. What the nodes share (the record another node rebuilds a
//! session from, and the news that one ended) is [`super::shared`]'s, beside this store
//! rather than behind its interface: a node's copy and the cluster's record live and end
//! differently.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use super::Session;

/// A store's answer, later.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where sessions are kept.
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// The session with this id, if it is kept.
    fn find<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Arc<Session>>>;
    /// Keeps `session` under its id, unless one is kept there already (two requests
    /// rebuilt it at once); answers the one kept.
    fn keep(&self, session: Arc<Session>) -> Pending<'_, Arc<Session>>;
    /// Drops the session with this id; answers it, if it was kept.
    fn drop_session<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Arc<Session>>>;
    /// Every session kept.
    fn all(&self) -> Pending<'_, Vec<Arc<Session>>>;
}

/// Sessions in this process's memory: lost on restart (every user signs in again).
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: RwLock<HashMap<String, Arc<Session>>>,
}

impl SessionStore for MemoryStore {
    fn find<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Arc<Session>>> {
        let found = self.sessions.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        Box::pin(std::future::ready(found))
    }

    fn keep(&self, session: Arc<Session>) -> Pending<'_, Arc<Session>> {
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let kept = sessions.entry(session.id().to_owned()).or_insert(session).clone();
        Box::pin(std::future::ready(kept))
    }

    fn drop_session<'a>(&'a self, id: &'a str) -> Pending<'a, Option<Arc<Session>>> {
        let dropped = self.sessions.write().unwrap_or_else(|p| p.into_inner()).remove(id);
        Box::pin(std::future::ready(dropped))
    }

    fn all(&self) -> Pending<'_, Vec<Arc<Session>>> {
        let all = self.sessions.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        Box::pin(std::future::ready(all))
    }
}
