//! tRPC v11's HTTP wire format over the procedure [`Registry`].
//!
//! - Query: `GET /trpc/<path>?input=<url-encoded JSON>` → `{"result":{"data":…}}`.
//! - Mutation: `POST /trpc/<path>` with the JSON input as body.
//! - Batch: `/trpc/<p1>,<p2>?batch=1` with `input={"0":…,"1":…}` (or that object as the
//!   body) → an array of envelopes, `207` when their statuses differ.
//! - Errors: the envelope of [`error`], with the matching HTTP status, for everything —
//!   unknown paths, wrong methods, malformed input, oversized bodies — because tRPC
//!   clients read only the body.
//! - Query answers carry an `ETag`; `If-None-Match` with it gives `304` ([`encoded`]).
//! - The event stream `updates.onUpdate` ([`stream`]).
//! - Every call is counted, by procedure and status, with its latency ([`metrics`]).
//! - Who calls: the session the request's cookie names ([`cookie`]); every procedure but
//!   `auth.login`, and the stream, answer `401` without one.
//!
//! Every procedure is a function of the domain named in [`procedures`]; this layer
//! decodes its input (naming the offending field), encodes its answer and maps its
//! error onto the envelope.

pub mod cookie;
pub mod encoded;
mod error;
pub mod metrics;
pub mod procedures;
pub mod registry;
pub mod stream;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use cookie::Cookies;
pub use encoded::Encoded;
pub use error::{ErrorCode, ErrorData, ErrorEnvelope, ErrorShape, RpcError};
pub use metrics::RpcMetrics;
pub use procedures::registry;
pub use registry::{Answer, Gate, Kind, NoInput, Output, Presence, Procedure, Registry, Wire, WireType};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Extensions;
use axum::routing::{any, get};
use tokio_util::sync::CancellationToken;

use crate::auth::Session;
use crate::domain::Ctx;
use crate::updates::Pings;

/// The most calls one batch may hold.
pub const MAX_BATCH: usize = 64;

/// What the tRPC endpoints run with.
#[derive(Debug)]
pub struct Api {
    /// The server's parts, with no caller: each request names its own.
    pub ctx: Ctx,
    /// How the session cookie is read and written.
    pub cookies: Cookies,
    pub registry: Registry,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// Calls by procedure and status, with their latency.
    pub metrics: RpcMetrics,
    answers: encoded::Answers,
    pings: Pings,
    /// Ends every stream.
    shutdown: CancellationToken,
}

impl Api {
    pub fn new(
        ctx: Ctx,
        cookies: Cookies,
        max_body_bytes: usize,
        body_timeout: Duration,
        pings: Pings,
        shutdown: CancellationToken,
    ) -> Arc<Api> {
        let answers = Default::default();
        let metrics = RpcMetrics::default();
        Arc::new(Api {
            ctx,
            cookies,
            registry: registry(),
            max_body_bytes,
            body_timeout,
            metrics,
            answers,
            pings,
            shutdown,
        })
    }

    /// The running session the request's cookie names, if any; `503` when that cannot be
    /// told right now (with `--redis`, a session this node does not hold while Redis or
    /// Keystone cannot be asked): the cookie is not cleared, the session may go on.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<Arc<Session>>, RpcError> {
        let Some(id) = self.cookies.session_id(headers) else { return Ok(None) };
        self.ctx.sessions.find(id).await.map_err(|_| {
            RpcError::new(ErrorCode::ServiceUnavailable, "the session cannot be checked right now; try again shortly")
        })
    }

    /// The context of one request: the server's parts, its caller and its address.
    async fn context(&self, headers: &HeaderMap, extensions: &Extensions) -> Result<Ctx, RpcError> {
        let caller = self.session(headers).await?;
        let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(Ctx { caller, peer, ..self.ctx.clone() })
    }

    /// Adds what an answer does to the session cookie to `response`.
    fn cookie(&self, response: &mut Response, set: Option<&cookie::SessionCookie>) {
        if let Some(set) = set {
            response.headers_mut().append(header::SET_COOKIE, self.cookies.header(set));
        }
    }
}

/// The procedures under `/trpc` (the stream aside: [`stream_routes`]).
pub fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/trpc/{*paths}", any(handler))
        .route("/trpc", any(not_found))
        .route("/trpc/", any(not_found))
        .with_state(api)
}

/// The event stream's route, to be kept out of layers that wrap bodies (compression,
/// tracing): an open stream would carry their state for its whole life.
pub fn stream_routes(api: Arc<Api>) -> Router {
    Router::new()
        .route(&format!("/trpc/{}", stream::PATH), get(stream::handler).fallback(stream::wrong_method))
        .with_state(api)
}

/// Decodes a procedure's input, naming the offending field on failure
/// (`input.sizeGb: invalid type: string "x", expected u32`).
pub fn decode_input<I: DeserializeOwned>(raw: serde_json::Value) -> Result<I, RpcError> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::from("input") } else { format!("input.{path}") };
        RpcError::bad_request(format!("{field}: {}", e.inner()))
    })
}

#[derive(Debug, Deserialize)]
pub struct TrpcQuery {
    batch: Option<String>,
    input: Option<String>,
}

/// `GET|POST /trpc/<paths>`. Counts each call ([`RpcMetrics`]): a single call, or a
/// request refused before any of its calls ran, once under its (first) path with the
/// answer's status; each call of a batch that ran with its own.
pub async fn handler(
    State(api): State<Arc<Api>>,
    method: Method,
    Path(paths): Path<String>,
    query: Result<Query<TrpcQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Response {
    let started = Instant::now();
    let paths: Vec<&str> = paths.split(',').collect();
    let first_path = paths.first().copied().unwrap_or_default();
    let (mut response, counted) = answer(&api, &method, &paths, query, &headers, &extensions, body).await;
    if !counted {
        api.metrics.call(&api.registry, first_path, response.status().as_u16(), started.elapsed());
    }
    // A cookie that names no running session (expired, signed out elsewhere) is cleared
    // with the `401`, so the browser forgets it.
    if response.status() == StatusCode::UNAUTHORIZED && api.cookies.present(&headers) {
        api.cookie(&mut response, Some(&cookie::SessionCookie::Clear));
    }
    response
}

/// The answer, and whether its calls were counted already (each call of a batch is
/// counted on its own).
async fn answer(
    api: &Arc<Api>,
    method: &Method,
    paths: &[&str],
    query: Result<Query<TrpcQuery>, axum::extract::rejection::QueryRejection>,
    headers: &HeaderMap,
    extensions: &Extensions,
    body: Body,
) -> (Response, bool) {
    let first_path = paths.first().copied().unwrap_or_default();
    let Ok(Query(query)) = query else {
        return (RpcError::bad_request("malformed query string").with_path(first_path).into_response(), false);
    };
    let batch = matches!(query.batch.as_deref(), Some("1" | "true"));
    let inputs = match read_inputs(api, method, &query, headers, body, batch, paths.len()).await {
        Ok(inputs) => inputs,
        Err(e) => return (e.with_path(first_path).into_response(), false),
    };
    let ctx = match api.context(headers, extensions).await {
        Ok(ctx) => ctx,
        Err(e) => return (e.with_path(first_path).into_response(), false),
    };

    if !batch {
        if paths.len() > 1 {
            return (RpcError::bad_request("several procedures need ?batch=1").into_response(), false);
        }
        let input = inputs.into_iter().next().unwrap_or(serde_json::Value::Null);
        let response = match call(api, &ctx, method, first_path, input).await {
            Ok(Answer::Shared(encoded)) if method == Method::GET => encoded.respond(headers).await,
            Ok(answer) => {
                let body = encoded::envelope(&answer.json());
                let mut response =
                    if method == Method::GET { tagged(headers, body) } else { ok_response(StatusCode::OK, body) };
                api.cookie(&mut response, answer.cookie());
                response
            }
            Err(e) => e.into_response(),
        };
        return (response, false);
    }

    let calls = paths.iter().zip(inputs).map(|(path, input)| {
        let ctx = &ctx;
        async move {
            let started = Instant::now();
            let result = call(api, ctx, method, path, input).await;
            let status = result.as_ref().map_or_else(RpcError::status, |_| StatusCode::OK);
            api.metrics.call(&api.registry, path, status.as_u16(), started.elapsed());
            result
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let cookies: Vec<cookie::SessionCookie> =
        results.iter().filter_map(|r| r.as_ref().ok()?.cookie().cloned()).collect();
    let statuses: Vec<StatusCode> =
        results.iter().map(|r| r.as_ref().map_or_else(RpcError::status, |_| StatusCode::OK)).collect();
    let status = if statuses.windows(2).all(|w| w[0] == w[1]) {
        statuses.first().copied().unwrap_or(StatusCode::OK)
    } else {
        StatusCode::MULTI_STATUS
    };
    let mut body = BytesMut::new();
    body.put_u8(b'[');
    for (i, result) in results.into_iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        match result {
            Ok(answer) => body.extend_from_slice(&encoded::envelope(&answer.json())),
            Err(e) => body.extend_from_slice(&serde_json::to_vec(&e.envelope()).unwrap_or_default()),
        }
    }
    body.put_u8(b']');
    let mut response = if *method == Method::GET && status == StatusCode::OK {
        tagged(headers, body.freeze())
    } else {
        ok_response(status, body.freeze())
    };
    // A batch that signs in and out sets the cookie as its calls did, in their order.
    for set in &cookies {
        api.cookie(&mut response, Some(set));
    }
    (response, true)
}

/// A query's `200` answer with its `ETag`, or `304` when the client already holds it.
fn tagged(request: &HeaderMap, body: Bytes) -> Response {
    let etag = encoded::etag(&body);
    if encoded::not_modified(request, &etag) {
        return encoded::not_modified_response(&etag);
    }
    let mut response = ok_response(StatusCode::OK, body);
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Runs one call for `ctx`'s caller after checking that it exists and that the method
/// fits its kind.
async fn call(
    api: &Arc<Api>,
    ctx: &Ctx,
    method: &Method,
    path: &str,
    input: serde_json::Value,
) -> Result<Answer, RpcError> {
    let Some(procedure) = api.registry.get(path) else {
        return Err(RpcError::not_found(format!("no procedure named \"{path}\"")).with_path(path));
    };
    let expected = match procedure.kind {
        Kind::Query | Kind::Subscription => Method::GET,
        Kind::Mutation => Method::POST,
    };
    if *method != expected {
        let (kind, allow) = match procedure.kind {
            Kind::Query => ("query", "GET"),
            Kind::Mutation => ("mutation", "POST"),
            Kind::Subscription => ("subscription", "GET"),
        };
        return Err(RpcError::wrong_method(format!("{path} is a {kind}: use {expected}"), allow).with_path(path));
    }
    procedure.call(api.clone(), ctx.clone(), input).await.map_err(|e| e.with_path(path))
}

/// The raw inputs, one per call (`null` where absent).
async fn read_inputs(
    api: &Api,
    method: &Method,
    query: &TrpcQuery,
    headers: &HeaderMap,
    body: Body,
    batch: bool,
    count: usize,
) -> Result<Vec<serde_json::Value>, RpcError> {
    if batch && count > MAX_BATCH {
        return Err(RpcError::bad_request(format!("a batch holds at most {MAX_BATCH} calls, not {count}")));
    }
    let raw: Option<Bytes> = if *method == Method::POST {
        check_json(headers)?;
        let read = tokio::time::timeout(api.body_timeout, read_body(body, headers, api.max_body_bytes));
        let bytes = read.await.map_err(|_| {
            RpcError::new(ErrorCode::Timeout, format!("the request body did not arrive within {:?}", api.body_timeout))
        })??;
        (!bytes.iter().all(u8::is_ascii_whitespace)).then_some(bytes)
    } else if *method == Method::GET {
        query.input.as_ref().filter(|s| !s.is_empty()).map(|s| Bytes::copy_from_slice(s.as_bytes()))
    } else {
        return Err(RpcError::wrong_method(format!("method {method} is not supported: use GET or POST"), "GET, POST"));
    };
    let value = match raw {
        None => serde_json::Value::Null,
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| RpcError::parse(format!("input is not valid JSON: {e}")))?
        }
    };
    if !batch {
        return Ok(vec![value]);
    }
    let mut by_index = match value {
        serde_json::Value::Null => serde_json::Map::new(),
        serde_json::Value::Object(map) => map,
        _ => return Err(RpcError::bad_request("input: a batch's input must be an object keyed by call index")),
    };
    Ok((0..count).map(|i| by_index.remove(&i.to_string()).unwrap_or(serde_json::Value::Null)).collect())
}

/// Mutations take JSON only: a plain HTML form on another site can send
/// `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data` without any
/// CORS check, but never `application/json`.
fn check_json(headers: &HeaderMap) -> Result<(), RpcError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media_type.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(RpcError::new(
            ErrorCode::UnsupportedMediaType,
            format!("a mutation's body must be application/json, not {other}"),
        )),
        None => Err(RpcError::new(ErrorCode::UnsupportedMediaType, "a mutation's body must be application/json")),
    }
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, RpcError> {
    let too_large = || RpcError::new(ErrorCode::PayloadTooLarge, format!("request body is larger than {limit} bytes"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = err.source();
        }
        RpcError::bad_request(format!("could not read the request body: {e}"))
    })
}

fn ok_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Anything under `/trpc` the router does not know.
pub async fn not_found() -> Response {
    RpcError::not_found("no such route").into_response()
}
