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
//! A client resumes with the `Last-Event-ID` header (what browsers send when they
//! reconnect), `?lastEventId=` or `input.lastEventId`, in that order of precedence, and
//! gets every update after that id from the replay ring, then live ones. When that is
//! impossible — the id is older than the ring, or this subscriber fell behind the
//! broadcast channel — it gets `{"kind":"resync",…}` and carries on: never a silent gap.
//! Every data event, resync included, carries its `seq` as the SSE id, which is what
//! tRPC's `tracked()` events look like to the stock client.
//! Every stream ends when the server's cancellation token fires, so graceful shutdown
//! never waits on open streams.
//!
//! The answer carries two ways to deliver the events. Connections the server's own
//! writer serves (`crate::serve`) take the [`DirectStream`] extension and are written by
//! the fan-out: each update's frame, encoded once at publish time, goes straight to every
//! socket. Any other connection (HTTP/2, a reused keep-alive connection) polls the body:
//! the same ready-made frames, from the bus's broadcast channel. Both send keep-alive
//! pings from one shared clock rather than a timer per stream. Either is much cheaper
//! per notification than axum's `Sse` (see `tests/load/RESULTS.md`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use ts_rs::TS;
use utoipa::ToSchema;

use super::{Published, ResyncReason, StreamEvent, UpdateBus, UpdateType};
use crate::app::AppState;
use crate::rpc::{RpcError, decode_input};
use crate::serve::fanout::DirectStream;

/// The procedure path of the stream.
pub const PATH: &str = "updates.onUpdate";

/// Input of `updates.onUpdate`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnUpdateInput {
    /// Only these types (absent or empty: all).
    #[serde(default)]
    #[ts(optional)]
    pub types: Option<Vec<UpdateType>>,
    /// Resume after this event id.
    #[serde(default)]
    #[ts(optional)]
    pub last_event_id: Option<String>,
}

impl crate::rpc::Wire for OnUpdateInput {}

/// How streams behave.
#[derive(Clone, Copy, Debug)]
pub struct StreamConfig {
    /// A `ping` event after this long without any other event.
    pub ping_interval: Duration,
}

impl StreamConfig {
    /// What the `connected` event tells clients: reconnect when nothing (not even a
    /// ping) arrived for this long. Three pings' worth, so one late ping is harmless.
    pub fn reconnect_after_inactivity(&self) -> Duration {
        self.ping_interval * 3
    }
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    input: Option<String>,
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// `GET /trpc/updates.onUpdate`.
pub async fn handler(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return RpcError::bad_request("malformed query string").with_path(PATH).into_response();
    };
    let input: OnUpdateInput = match query.input.as_deref() {
        None | Some("") => OnUpdateInput::default(),
        Some(raw) => match serde_json::from_str::<serde_json::Value>(raw)
            .map_err(|e| RpcError::parse(format!("input is not valid JSON: {e}")))
            .and_then(|v| if v.is_null() { Ok(OnUpdateInput::default()) } else { decode_input(v) })
        {
            Ok(input) => input,
            Err(e) => return e.with_path(PATH).into_response(),
        },
    };
    let header_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let resume = header_id.or(query.last_event_id).or(input.last_event_id);
    // An id we cannot read is treated like one we no longer have: the client resyncs.
    // Refusing it with a 400 would end the subscription for good in the stock client.
    let after = resume.map(|id| id.trim().parse::<u64>().unwrap_or(u64::MAX));
    let filter =
        input.types.filter(|t| !t.is_empty()).map_or(u8::MAX, |types| types.iter().fold(0u8, |mask, t| mask | t.bit()));

    let config = app.stream_config();
    let connected = format!(
        "event: connected\ndata: {{\"reconnectAfterInactivityMs\":{}}}\n\n",
        config.reconnect_after_inactivity().as_millis()
    );
    let connected = Bytes::from(connected);
    let events = updates(
        app.bus().clone(),
        after,
        filter,
        app.shutdown_token().clone(),
        app.pings().receiver(),
        connected.clone(),
    );
    let mut response = Body::from_stream(events).into_response();
    // The server's own writer takes the stream from here when it serves the connection
    // (and then never polls the body); any other connection gets the body.
    response.extensions_mut().insert(DirectStream { fanout: app.fanout().clone(), after, filter, connected });
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The keep-alive clock shared by every stream: one task ticks every ping interval and
/// each idle stream sends a `ping` on the tick. One timer for all streams, rather than
/// one per stream reset on every event.
#[derive(Clone, Debug)]
pub struct Pings(watch::Receiver<u64>);

impl Pings {
    /// Starts the clock; it stops when `shutdown` fires.
    pub fn start(interval: Duration, shutdown: CancellationToken, tasks: &mut JoinSet<()>) -> Pings {
        let (tx, rx) = watch::channel(0u64);
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticker.tick() => tx.send_modify(|n| *n = n.wrapping_add(1)),
                }
            }
        });
        Pings(rx)
    }

    pub fn receiver(&self) -> watch::Receiver<u64> {
        self.0.clone()
    }
}

/// Resolves on the next tick, handing the receiver back (never, once the clock stopped).
async fn next_tick(mut ticks: watch::Receiver<u64>) -> watch::Receiver<u64> {
    if ticks.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    ticks
}

/// What woke a stream up.
enum Wake {
    Shutdown,
    Received(Result<Arc<Published>, RecvError>),
    Tick(watch::Receiver<u64>),
}

/// The events of one subscriber, as encoded SSE frames: `connected`, a resync if
/// needed, the replay, then live updates (each update's frame is shared by every
/// stream), a `ping` on each tick of the shared clock when nothing else was sent since
/// the previous one, until shutdown.
fn updates(
    bus: Arc<UpdateBus>,
    after: Option<u64>,
    filter: u8,
    shutdown: CancellationToken,
    ticks: watch::Receiver<u64>,
    connected: Bytes,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    async_stream::stream! {
        // Subscribed on the first poll: a body that is never polled costs nothing.
        let subscription = bus.subscribe(after);
        let _subscriber = subscription.subscriber;
        tracing::debug!(?after, types = filter, gap = subscription.gap, replay = subscription.replay.len(), "event stream opened");
        let _open = OpenStream;
        for frame in opening(connected, subscription.gap, subscription.seq, &subscription.replay, filter) {
            yield Ok(frame);
        }
        let mut live = subscription.live;
        // Created once: re-registering with the token on every event would contend on
        // its lock across thousands of streams.
        let mut cancelled = std::pin::pin!(shutdown.cancelled_owned());
        let mut tick = Box::pin(next_tick(ticks));
        // Whether anything was sent since the last tick (`connected` was).
        let mut sent = true;
        // After a `lagged` resync, what the channel still holds up to the resync's seq is
        // covered by the refetch it asks for: skipped, so ids only ever increase.
        let mut covered = 0;
        loop {
            let wake = tokio::select! {
                biased;
                _ = &mut cancelled => Wake::Shutdown,
                received = live.recv() => Wake::Received(received),
                ticks = &mut tick => Wake::Tick(ticks),
            };
            match wake {
                Wake::Shutdown | Wake::Received(Err(RecvError::Closed)) => break,
                Wake::Received(Ok(published)) => {
                    if published.update.seq > covered && wanted(&published, filter) {
                        sent = true;
                        yield Ok(published.frame.clone());
                    }
                }
                Wake::Received(Err(RecvError::Lagged(missed))) => {
                    covered = bus.seq();
                    tracing::debug!(missed, "subscriber lagged; sending resync");
                    sent = true;
                    yield Ok(resync(covered, ResyncReason::Lagged));
                }
                Wake::Tick(ticks) => {
                    tick = Box::pin(next_tick(ticks));
                    if !sent {
                        yield Ok(Bytes::from_static(PING));
                    }
                    sent = false;
                }
            }
        }
    }
}

/// Logs when a stream ends, however it ends (the client left, shutdown).
pub(crate) struct OpenStream;

impl Drop for OpenStream {
    fn drop(&mut self) {
        tracing::debug!("event stream closed");
    }
}

/// What a stream sends before any live update: `connected`, a resync when the resume id
/// is no longer kept (`gap`), then the replay's wanted updates. `seq` is the bus's seq at
/// subscription time.
pub(crate) fn opening(connected: Bytes, gap: bool, seq: u64, replay: &[Arc<Published>], filter: u8) -> Vec<Bytes> {
    let mut frames = vec![connected];
    if gap {
        // Live updates continue right after `seq`, so that is the id to resume from.
        frames.push(resync(seq, ResyncReason::Gap));
    }
    frames.extend(replay.iter().filter(|p| wanted(p, filter)).map(|p| p.frame.clone()));
    frames
}

pub(crate) fn wanted(published: &Published, filter: u8) -> bool {
    filter & published.update.kind.bit() != 0
}

/// A resync carries `seq` as its SSE id, like every data event: a client that resumes
/// from it gets what followed, and the stock client's `tracked()` events always have an id.
pub(crate) fn resync(seq: u64, reason: ResyncReason) -> Bytes {
    let json = serde_json::to_string(&StreamEvent::Resync { seq, reason })
        .unwrap_or_else(|_| String::from(r#"{"kind":"resync","seq":0,"reason":"gap"}"#));
    Bytes::from(format!("id: {seq}\ndata: {json}\n\n"))
}

/// The keep-alive event. tRPC's client resets its inactivity timer only on a dispatched
/// `ping` event, and browsers dispatch no event without a `data:` line, so the ping
/// carries an empty JSON object.
pub(crate) const PING: &[u8] = b"event: ping\ndata: {}\n\n";
