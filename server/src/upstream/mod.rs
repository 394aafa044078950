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
    /// No answer: connection refused, timeout.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
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
