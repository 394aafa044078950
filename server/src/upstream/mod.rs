//! Everything about the OpenStack cloud Stalecast watches: the HTTP client ([`client`],
//! with Keystone authentication in [`auth`], endpoints and versions in [`catalog`],
//! pagination in [`paging`], OpenStack's JSON in [`os`], records decoded once per change
//! in [`known`]), the resources it answers
//! with ([`model`]), their last known values ([`store`], which also detects and
//! publishes changes), the background [`poller`], and what they count ([`metrics`]).
//!
//! This layer speaks OpenStack and the bus, nothing else: no wire format, no HTTP
//! answers. A stored collection carries a version; encoding answers happens above.

pub mod auth;
pub mod catalog;
pub mod client;
pub mod known;
pub mod metrics;
pub mod model;
mod os;
pub mod paging;
pub mod poller;
pub mod relay;
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
    /// The service rejects the request's token even after a fresh one (401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The cloud's policy does not let the user do this (403), or the user has no role
    /// on the project it would act in.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request asks for more than the service takes: a quota, a size limit (413).
    #[error("too large: {0}")]
    TooLarge(String),
    /// The service is limiting the request rate (429).
    #[error("rate limited: {0}")]
    RateLimited(String),
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
