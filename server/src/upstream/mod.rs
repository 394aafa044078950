//! Everything about the OpenStack-style API Stalecast watches: the HTTP client
//! ([`client`]), the last known values ([`store`], a moka cache that also detects and
//! publishes changes) and the background [`poller`].

pub mod client;
pub mod poller;
pub mod store;

use crate::rpc::{ErrorCode, RpcError};

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

impl From<UpstreamError> for RpcError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Unreachable(detail) => {
                tracing::warn!(%detail, "upstream unreachable");
                RpcError::new(ErrorCode::ServiceUnavailable, "the cloud API is unreachable; try again shortly")
            }
            UpstreamError::Failed(detail) => {
                tracing::warn!(%detail, "upstream failed");
                RpcError::new(ErrorCode::BadGateway, "the cloud API answered with an error")
            }
            UpstreamError::NotFound(message) => RpcError::not_found(message),
            UpstreamError::Rejected(message) => RpcError::bad_request(message),
            UpstreamError::Conflict(message) => RpcError::new(ErrorCode::Conflict, message),
        }
    }
}
