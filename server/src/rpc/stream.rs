//! The SSE endpoint `updates.onUpdate`: one stream per browser tab.
//!
//! Speaks tRPC's `httpSubscriptionLink` format, so the stock `@trpc/client` and a bare
//! `EventSource` can both read it:
//!
//! ```text
//! event: connected
//! data: {"reconnectAfterInactivityMs":30000}
//!
//! id: 42
//! data: {"kind":"update","seq":42,"type":"volumes","ids":["v-7"],"ts":1763800000123456}
//!
//! event: ping
//! data: {}
//! ```
//!
//! This module reads the request: the session its cookie names (none: `401` before any
//! event), the input (`types`), and the resume id from the `Last-Event-ID` header (what
//! browsers send when they reconnect), `?lastEventId=` or `input.lastEventId`, in that
//! order of precedence. What the stream then writes is the bus's business
//! (`crate::updates`): the replay after that id and live updates, as the session's room
//! may see them, a `resync` instead of any gap, pings, the end on shutdown, and when the
//! session ends (signed out in any tab, expired), `event: serialized-error` with tRPC's
//! `UNAUTHORIZED` error, which the stock client raises to the subscriber instead of
//! reconnecting.
//!
//! The answer carries the stream two ways. Its body is the stream's frames, for
//! connections hyper serves (HTTP/2, a keep-alive connection whose first request was
//! something else). It also carries the [`StreamRequest`] as an extension: a connection
//! the server's own writer serves (`crate::serve`) takes it and has the fan-out write the
//! same frames straight to the socket, never polling the body.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use super::{Api, ErrorCode, RpcError, decode_input};
use crate::updates::{self, Access, StreamRequest, TypeFilter, UpdateType};

/// The procedure path of the stream.
pub const PATH: &str = "updates.onUpdate";

/// Input of `updates.onUpdate`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnUpdateInput {
    /// Only these types (absent or empty: every collection of the cloud; `serverStats`,
    /// the server's own figures, only when named).
    #[serde(default)]
    #[ts(optional)]
    pub types: Option<Vec<UpdateType>>,
    /// Resume after this event id (a decimal seq: at most 20 digits). An id that is not
    /// one starts the stream with a `resync`, as an id too old to replay does.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "1733234567000001", max_length = 20)]
    pub last_event_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    input: Option<String>,
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// `GET /trpc/updates.onUpdate`.
pub async fn handler(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let session = match api.session(&headers).await {
        Ok(session) => session,
        Err(e) => return e.with_path(PATH).into_response(),
    };
    let Some(session) = session else {
        let mut response =
            RpcError::new(ErrorCode::Unauthorized, "sign in first (auth.login): the stream needs a session")
                .with_path(PATH)
                .into_response();
        if api.cookies.present(&headers) {
            response.headers_mut().append(header::SET_COOKIE, api.cookies.header(&super::cookie::SessionCookie::Clear));
        }
        return response;
    };
    let request = match read_request(&headers, query, session.access()) {
        Ok(request) => request,
        Err(e) => return e.with_path(PATH).into_response(),
    };
    let frames = updates::stream::frames(api.ctx.bus.clone(), request.clone(), api.pings.clone(), api.shutdown.clone());
    let mut response = Body::from_stream(frames.map(Ok::<_, Infallible>)).into_response();
    response.extensions_mut().insert(request);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Any other method on the stream's path.
pub async fn wrong_method() -> RpcError {
    RpcError::wrong_method(format!("{PATH} is a subscription: use GET"), "GET").with_path(PATH)
}

/// The last frame of a stream whose session ended: tRPC's `serialized-error` event with
/// the `UNAUTHORIZED` error shape, which the stock client does not retry.
pub fn ended() -> bytes::Bytes {
    let error = RpcError::new(ErrorCode::Unauthorized, "the session ended (signed out, or expired): sign in again")
        .with_path(PATH)
        .envelope()
        .error;
    updates::frame::serialized_error(&serde_json::to_string(&error).unwrap_or_default())
}

fn read_request(
    headers: &HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    access: Access,
) -> Result<StreamRequest, RpcError> {
    let Ok(Query(query)) = query else {
        return Err(RpcError::bad_request("malformed query string"));
    };
    let input: OnUpdateInput = match query.input.as_deref() {
        None | Some("") => OnUpdateInput::default(),
        Some(raw) => {
            let value: serde_json::Value =
                serde_json::from_str(raw).map_err(|e| RpcError::parse(format!("input is not valid JSON: {e}")))?;
            if value.is_null() { OnUpdateInput::default() } else { decode_input(value)? }
        }
    };
    let header_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // An empty id (what `EventSource` would send for an empty `id:`) means none.
    let resume =
        [header_id, query.last_event_id, input.last_event_id].into_iter().flatten().find(|id| !id.trim().is_empty());
    // An id we cannot read is treated like one we no longer have: the client resyncs.
    // Refusing it with a 400 would end the subscription for good in the stock client.
    let after = resume.map(|id| id.trim().parse::<u64>().unwrap_or(u64::MAX));
    let types = TypeFilter::only(input.types.as_deref().unwrap_or_default());
    Ok(StreamRequest { after, types, access, ended: ended() })
}
