//! What the store needs from a cluster: somewhere to send a change so that every node,
//! this one included, applies it in one order.
//!
//! Without a relay the store changes its collections itself and allocates each update's
//! seq on the local bus. With one (`crate::cluster`, `serve --redis`), a change found by
//! the poller or made by a mutation is not applied where it was found: it is sent, with
//! the changed records themselves, to the cluster's shared log, and every node applies
//! it from there ([`Store::apply`](super::store::Store::apply)) under the seq the log gave
//! it, before its streams hear of it. The sender waits until its own node has applied
//! it, so a mutation still answers only once its change is stored and published.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::updates::UpdateType;

/// A change of one collection as it travels between nodes: the records added or changed,
/// whole, as the store keeps them, and the ids removed. Only what changed, never the
/// collection.
#[derive(Debug, Serialize, Deserialize)]
pub struct Relayed<R> {
    pub upserts: Vec<R>,
    pub deletes: Vec<String>,
}

/// Who found a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The poller: only the cluster's one poller (the lease holder) may send it.
    Poll,
    /// A mutation this node made: any node may send it.
    Mutation,
}

/// One change to send.
#[derive(Debug)]
pub struct Outgoing {
    pub kind: UpdateType,
    /// What the notification names (`None`: the whole collection).
    pub ids: Option<Vec<String>>,
    /// The [`Relayed`] records, as JSON.
    pub records: String,
    pub origin: Origin,
}

/// Why a change could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The shared log cannot be reached: nothing was sent.
    #[error("the cluster's log is unreachable: {0}")]
    Unavailable(String),
    /// A poll's change from a node that does not hold the poller's lease (any more).
    #[error("this node does not hold the poller's lease")]
    Fenced,
}

/// A future the relay answers.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<u64, RelayError>> + Send + 'a>>;

/// Where changes go in a cluster.
pub trait Relay: Send + Sync + Debug + 'static {
    /// Appends `change` to the shared log; resolves with its seq once this node's store
    /// has applied it (or, should this node have to skip it, once it has moved past it).
    fn send(&self, change: Outgoing) -> Sending<'_>;
    /// Whether a change could be sent now: mutations ask before they write upstream, so
    /// that no write is made whose notification cannot be published.
    fn ready(&self) -> bool;
}
