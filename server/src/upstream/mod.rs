//! Everything about the OpenStack-style API Stalecast watches: the HTTP client
//! ([`client`]), the resources it answers with ([`model`]), their last known values
//! ([`store`], which also detects and publishes changes) and the background [`poller`].
//!
//! This layer speaks OpenStack and the bus, nothing else: no wire format, no HTTP
//! answers. A stored collection carries a version; encoding answers happens above.

pub mod client;
pub mod model;
pub mod poller;
pub mod store;

/// Why a call to the upstream API failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No answer, and nothing can have changed: the connection could not be made, or a
    /// read (`GET`) timed out.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// A write was sent but its answer never came (a timeout, the connection lost): it
    /// may or may not have taken effect.
    #[error("upstream outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A 5xx, a body that is not what the API promises, or our own credentials refused.
    #[error("upstream failed: {0}")]
    Failed(String),
    /// The upstream says the resource does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The upstream refused the request as invalid (4xx); the message is the API's.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The resource is not in a state that allows the request.
    #[error("conflict: {0}")]
    Conflict(String),
}
