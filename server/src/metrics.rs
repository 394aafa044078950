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
//! - sessions (`stalecast_sessions`, open sign-in sessions as the session sweeper last
//!   counted them);
//! - with `--redis`, the node's place in the cluster ([`ClusterStats`], read at each
//!   scrape): whether Redis answers, reconnects, epoch changes, gaps, entries applied,
//!   the shared log's lag, fenced publishes; `stalecast_leader` follows the poller's
//!   lease (1 on a single node, which always polls).
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

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::cluster::ClusterStats;
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
    /// With `--redis`: this node's figures in the cluster.
    pub cluster: Option<Arc<ClusterStats>>,
    /// Sign-in sessions open on this node ([`Sessions::open_gauge`](crate::auth::Sessions::open_gauge)).
    pub sessions: Gauge,
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
    registry.register(
        "stalecast_sessions",
        "Sign-in sessions open on this node (counted every quarter of a second)",
        sources.sessions,
    );
    if let Some(cluster) = sources.cluster {
        registry.register_collector(Box::new(Cluster(cluster)));
    }
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

/// A cluster node's figures, read from its [`ClusterStats`] at each scrape.
#[derive(Debug)]
struct Cluster(Arc<ClusterStats>);

impl Collector for Cluster {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.0;
        let gauges = [
            (
                "stalecast_redis_up",
                "1 while Redis answers this node.",
                None,
                u64::from(stats.redis_up.load(Relaxed)) as f64,
            ),
            (
                "stalecast_bus_lag",
                "From the publication of the last entry of the shared log this node applied to its application here.",
                Some(Unit::Seconds),
                stats.bus_lag_micros.load(Relaxed) as f64 / 1e6,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        let counters = [
            (
                "stalecast_redis_reconnects",
                "Times the log's reader connected again after losing Redis.",
                &stats.reconnects,
            ),
            (
                "stalecast_bus_epoch_changes",
                "Times the shared log's epoch changed (every stream resynced).",
                &stats.epoch_changes,
            ),
            (
                "stalecast_bus_gaps",
                "Times entries were missing from the shared log (every stream resynced).",
                &stats.gaps,
            ),
            ("stalecast_bus_applied", "Entries of the shared log applied on this node.", &stats.applied),
            (
                "stalecast_publishes_fenced",
                "Poll changes refused because this node no longer held the lease.",
                &stats.fenced,
            ),
        ];
        for (name, help, value) in counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value.load(Relaxed)).encode(metric)?;
        }
        Ok(())
    }
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
