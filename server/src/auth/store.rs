//! Where sessions are kept, behind a narrow interface: find one by id, keep one, drop
//! one, list them all (for the sweeper). [`MemoryStore`] keeps them in this process; a
//! store shared by several nodes (Redis) implements the same four calls, which is why
//! they are asynchronous although the memory store never waits.
//!
//! A session's live parts (the channel its event streams follow, the token of each of
//! its projects) are in the [`Session`] itself; a shared store would keep what a node
//! needs to rebuild it and tell the others when one ends.

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
    /// Keeps `session` under its id.
    fn keep(&self, session: Arc<Session>) -> Pending<'_, ()>;
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

    fn keep(&self, session: Arc<Session>) -> Pending<'_, ()> {
        self.sessions.write().unwrap_or_else(|p| p.into_inner()).insert(session.id().to_owned(), session);
        Box::pin(std::future::ready(()))
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
