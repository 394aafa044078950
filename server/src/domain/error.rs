//! Why a procedure failed, in the domain's terms. The wire layer maps each kind onto a
//! status and decides what the client reads: the message of a client error as it is,
//! only a generic sentence for an upstream or internal failure (whose detail is logged).

use crate::upstream::UpstreamError;

/// A procedure's failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is not acceptable: `field` is its camelCase name (`sizeGb`).
    #[error("input.{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The resource is not in a state that allows the request.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this: the cloud's policy or role assignments say no.
    #[error("{0}")]
    Forbidden(String),
    /// The cloud does not accept the credentials the request was made with.
    #[error("{0}")]
    Unauthorized(String),
    /// The request asks for more than the cloud allows (a quota, a size limit).
    #[error("{0}")]
    TooLarge(String),
    /// The cloud is limiting the request rate; the caller should slow down.
    #[error("{0}")]
    TooManyRequests(String),
    /// Too many failed sign-ins lately, for this user or from this address: the next
    /// attempt is taken after this long.
    #[error("too many failed sign-ins: try again in {} s", .0.as_secs_f64().ceil())]
    SignInLimited(std::time::Duration),
    /// The upstream refused the request as invalid; the message is the cloud's own.
    #[error("{0}")]
    Rejected(String),
    /// The upstream cannot be reached, and nothing was changed (connection refused, a read
    /// timed out). For operators only.
    #[error("upstream unreachable: {0}")]
    Unavailable(String),
    /// A write reached the upstream but its outcome is unknown (no answer in time, the
    /// connection lost): the client must check before it retries, or it may make the
    /// change twice. The detail is for operators only.
    #[error("upstream outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A change made now could not be announced (the cluster's Redis is unreachable):
    /// nothing was written upstream.
    #[error("updates cannot be published")]
    Unpublishable,
    /// A sign-in could not be shared with the cluster's other nodes (its Redis is
    /// unreachable), so no session was made. The detail is for operators only.
    #[error("sign-in sessions cannot be shared: {0}")]
    SignInUnavailable(String),
    /// The upstream failed (a 5xx, a malformed body, our own credentials refused). For
    /// operators only.
    #[error("upstream failed: {0}")]
    Upstream(String),
    /// Stalecast itself failed. For operators only.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid { field, message: message.into() }
    }
}

impl From<UpstreamError> for Error {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Unreachable(detail) => Error::Unavailable(detail),
            UpstreamError::OutcomeUnknown(detail) => Error::OutcomeUnknown(detail),
            UpstreamError::Failed(detail) => Error::Upstream(detail),
            UpstreamError::NotFound(message) => Error::NotFound(message),
            UpstreamError::Rejected(message) => Error::Rejected(message),
            UpstreamError::Conflict(message) => Error::Conflict(message),
            UpstreamError::Unauthorized(message) => Error::Unauthorized(message),
            UpstreamError::Forbidden(message) => Error::Forbidden(message),
            UpstreamError::TooLarge(message) => Error::TooLarge(message),
            UpstreamError::RateLimited(message) => Error::TooManyRequests(message),
        }
    }
}
