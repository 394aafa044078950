//! tRPC's error envelope and the codes Stalecast answers with.
//!
//! ```json
//! {"error":{"code":-32600,"message":"input.sizeGb: invalid type …",
//!           "data":{"code":"BAD_REQUEST","httpStatus":400,"path":"storage.volumes.create"}}}
//! ```
//! A 5xx never says anything internal: the detail goes to the log, the client reads a
//! generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::domain;

/// tRPC's error codes, with their JSON-RPC number and HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, TS, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ParseError,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotSupported,
    Timeout,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    UnprocessableContent,
    TooManyRequests,
    InternalServerError,
    BadGateway,
    ServiceUnavailable,
    GatewayTimeout,
}

impl ErrorCode {
    /// The JSON-RPC 2.0 number tRPC puts in `error.code`.
    pub fn json_rpc(self) -> i32 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::BadRequest => -32600,
            ErrorCode::Unauthorized => -32001,
            ErrorCode::Forbidden => -32003,
            ErrorCode::NotFound => -32004,
            ErrorCode::MethodNotSupported => -32005,
            ErrorCode::Timeout => -32008,
            ErrorCode::Conflict => -32009,
            ErrorCode::PayloadTooLarge => -32013,
            ErrorCode::UnsupportedMediaType => -32015,
            ErrorCode::UnprocessableContent => -32022,
            ErrorCode::TooManyRequests => -32029,
            ErrorCode::InternalServerError
            | ErrorCode::BadGateway
            | ErrorCode::ServiceUnavailable
            | ErrorCode::GatewayTimeout => -32603,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ParseError | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotSupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnprocessableContent => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// An error a procedure answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
    pub path: Option<String>,
    /// For `405`: the methods the path does take (the `Allow` header).
    pub allow: Option<&'static str>,
    /// For `429`: seconds until the next attempt is taken (the `Retry-After` header).
    pub retry_after: Option<u64>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into(), path: None, allow: None, retry_after: None }
    }
    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ParseError, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    /// An internal failure: `detail` is logged, the client gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(ErrorCode::InternalServerError, "internal server error")
    }
    /// A `405` naming the methods that work.
    pub fn wrong_method(message: impl Into<String>, allow: &'static str) -> Self {
        RpcError { allow: Some(allow), ..Self::new(ErrorCode::MethodNotSupported, message) }
    }
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The tRPC envelope as a JSON value.
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorShape {
                code: self.code.json_rpc(),
                message: self.message.clone(),
                data: ErrorData { code: self.code, http_status: self.status().as_u16(), path: self.path.clone() },
            },
        }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for RpcError {}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.envelope())).into_response();
        if let Some(allow) = self.allow {
            response.headers_mut().insert(axum::http::header::ALLOW, axum::http::HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

/// `{"error": …}` as tRPC clients read it.
#[derive(Clone, Debug, Serialize, TS, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorShape,
}

impl super::Wire for ErrorEnvelope {}

#[derive(Clone, Debug, Serialize, TS, ToSchema)]
pub struct ErrorShape {
    pub code: i32,
    pub message: String,
    pub data: ErrorData,
}

#[derive(Clone, Debug, Serialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData {
    pub code: ErrorCode,
    pub http_status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub path: Option<String>,
}

/// The one mapping of the domain's failures onto tRPC codes. Client errors keep their
/// message; upstream failures are logged with their detail and answer a generic one.
impl From<domain::Error> for RpcError {
    fn from(e: domain::Error) -> Self {
        match e {
            domain::Error::Invalid { .. } => RpcError::bad_request(e.to_string()),
            domain::Error::NotFound(message) => RpcError::not_found(message),
            domain::Error::Conflict(message) => RpcError::new(ErrorCode::Conflict, message),
            domain::Error::Forbidden(message) => RpcError::new(ErrorCode::Forbidden, message),
            domain::Error::Unauthorized(message) => RpcError::new(ErrorCode::Unauthorized, message),
            domain::Error::TooLarge(message) => RpcError::new(ErrorCode::PayloadTooLarge, message),
            domain::Error::TooManyRequests(message) => RpcError::new(ErrorCode::TooManyRequests, message),
            domain::Error::SignInLimited(wait) => {
                // Whole seconds, rounded up: a client that waits that long is let in.
                let seconds = wait.as_millis().div_ceil(1000).max(1) as u64;
                RpcError {
                    retry_after: Some(seconds),
                    ..RpcError::new(
                        ErrorCode::TooManyRequests,
                        format!("too many failed sign-ins: try again in {seconds} s"),
                    )
                }
            }
            domain::Error::Rejected(message) => RpcError::bad_request(message),
            domain::Error::Unavailable(detail) => {
                tracing::warn!(%detail, "upstream unreachable");
                RpcError::new(ErrorCode::ServiceUnavailable, "the cloud API is unreachable; try again shortly")
            }
            domain::Error::Unpublishable => RpcError::new(
                ErrorCode::ServiceUnavailable,
                "changes cannot be announced right now, so nothing was changed; try again shortly",
            ),
            domain::Error::SignInUnavailable(detail) => {
                tracing::warn!(%detail, "sign-in refused: sessions cannot be shared");
                RpcError::new(
                    ErrorCode::ServiceUnavailable,
                    "signing in is not possible right now (the servers cannot share the session); try again shortly",
                )
            }
            domain::Error::OutcomeUnknown(detail) => {
                tracing::warn!(%detail, "upstream outcome unknown");
                RpcError::new(
                    ErrorCode::GatewayTimeout,
                    "the cloud API did not confirm the change, which may or may not have been made: \
                     check before retrying",
                )
            }
            domain::Error::Upstream(detail) => {
                tracing::warn!(%detail, "upstream failed");
                RpcError::new(ErrorCode::BadGateway, "the cloud API answered with an error")
            }
            domain::Error::Internal(detail) => RpcError::internal(detail),
        }
    }
}
