//! `/metrics`: every figure Stalecast counts, in the Prometheus text format (0.0.4), for
//! the operator's scraper.
//!
//! Each layer owns and updates its own figures — the bus and the streams
//! ([`BusMetrics`]), the cloud's client and the poller ([`UpstreamMetrics`]), the tRPC
//! endpoint ([`RpcMetrics`]) — and [`registry`] gathers them into one
//! `prometheus_client` registry, beside the node's own (`stalecast_build_info`,
//! `stalecast_start_time_seconds`). Every label value is one of a fixed set (update
//! types, procedures of the registry, services, HTTP statuses, resync reasons): never an
//! id, a user name or a URL.
//!
//! Figures that other parts add when they exist register here too, from [`Sources`]:
//! - sessions (`stalecast_sessions`, a gauge of open sign-in sessions read from the
//!   session store at each scrape) once sign-in exists;
//! - the Redis bus's lag and reconnects, beside the bus's own ([`BusMetrics`]), and the
//!   poller lease deciding `stalecast_leader` (1 on a single node, which always polls).
//!
//! **Who may call.** Operational figures are for the operator's scraper, not for anyone
//! who can reach the app: they are served only on a listener of their own, and only when
//! `--metrics-addr` names one (off by default: nothing listens that nobody asked for, and
//! several servers on one host never fight over a port). The operator decides who
//! reaches that address (loopback, or a network only the scraper is on). Requests there
//! pass the same [`guard`](crate::guard) as the app's: a `Host` that is not this listener's
//! address, a loopback name or an `--allowed-host` is refused, so a web page cannot read
//! the figures through the browser of someone on the same host (DNS rebinding). Never
//! compressed, never cached.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::rpc::RpcMetrics;
use crate::updates::{BusMetrics, UpdateBus};
use crate::upstream::metrics::UpstreamMetrics;
use crate::upstream::store::Store;

/// The path the figures are served at.
pub const PATH: &str = "/metrics";

/// Whose figures `/metrics` shows.
#[derive(Debug)]
pub struct Sources<'a> {
    pub bus: &'a UpdateBus,
    /// The store (for each collection's age at scrape time); its client counts the
    /// cloud's requests and the poller's polls.
    pub store: Arc<Store>,
    pub rpc: &'a RpcMetrics,
    /// When this server started.
    pub started: SystemTime,
}

/// One registry holding every figure of `sources`.
pub fn registry(sources: Sources<'_>) -> Registry {
    let mut registry = Registry::default();
    let bus: &BusMetrics = sources.bus.metrics();
    bus.register(&mut registry);
    let upstream: &UpstreamMetrics = sources.store.client().metrics();
    upstream.register(&mut registry, sources.store.clone());
    sources.rpc.register(&mut registry);
    registry.register(
        "stalecast_build",
        "The running Stalecast's version",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    let started: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    started.set(sources.started.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
    registry.register_with_unit(
        "stalecast_start_time",
        "When this server started, in seconds since the Unix epoch",
        Unit::Seconds,
        started,
    );
    registry
}

/// `GET /metrics` (and nothing else) over `registry`.
pub fn routes(registry: Arc<Registry>) -> Router {
    Router::new().route(PATH, get(scrape)).fallback(not_found).with_state(registry)
}

async fn scrape(State(registry): State<Arc<Registry>>) -> Response {
    let mut text = String::with_capacity(32 * 1024);
    if let Err(error) = prometheus_text::encode(&mut text, &registry) {
        // Writing to a String fails only if an encoder does: a bug, said in the log.
        tracing::error!(%error, "encoding the metrics failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = text.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(prometheus_text::CONTENT_TYPE));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "only /metrics is served here\n").into_response()
}
