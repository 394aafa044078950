//! What the upstream layer counts: requests to the cloud by service and status with their
//! latency, polls and failed polls by update type, whether this node polls, and (read at
//! each scrape from the store) how old each cached collection is.
//!
//! The client owns one [`UpstreamMetrics`] (every request goes through it) and the poller
//! reports to the same one. Label values are the services Stalecast calls, HTTP statuses
//! and update types: never a URL, a project or an id.
//!
//! Beside the cumulative figures, each service keeps what the Server page shows over its
//! last seconds: requests, failures (5xx, timeouts, no answer: the service's trouble, not
//! the caller's 4xx) and the latencies, taken by [`UpstreamMetrics::take_recent`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::catalog::Service;
use super::store::Store;
use crate::updates::UpdateType;
use crate::updates::metrics::{TypeLabels, recent_histogram};

/// Latency buckets (seconds) of upstream requests: a show call answers in milliseconds,
/// a listing of 36,000 volumes in about a second, a timeout after `--upstream-timeout`.
const REQUEST_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Every service Stalecast calls, in a stable order.
pub const SERVICES: [Service; 5] =
    [Service::Identity, Service::Compute, Service::Volume, Service::Image, Service::Network];

impl EncodeLabelValue for Service {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.catalog_types()[0])
    }
}

/// How a request to the cloud ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Status {
    /// An answer with this HTTP status.
    Code(u16),
    /// No answer within `--upstream-timeout`.
    Timeout,
    /// No (whole) answer: the connection could not be made or broke.
    Failed,
}

impl Status {
    /// Whether the service is in trouble (rather than refusing the caller's request).
    pub fn is_failure(self) -> bool {
        match self {
            Status::Code(code) => code >= 500,
            Status::Timeout | Status::Failed => true,
        }
    }

    /// How a request that got no answer failed.
    pub fn of_error(error: &reqwest::Error) -> Status {
        if error.is_timeout() { Status::Timeout } else { Status::Failed }
    }
}

/// `404`, `timeout` or `failed`.
impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Code(code) => write!(f, "{code}"),
            Status::Timeout => f.write_str("timeout"),
            Status::Failed => f.write_str("failed"),
        }
    }
}

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_fmt(encoder, format_args!("{self}"))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: Service,
    status: Status,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: Service,
}

/// What one service did since the Server page last looked.
#[derive(Debug)]
pub struct Recent {
    pub requests: u64,
    pub failures: u64,
    /// Latencies, µs.
    pub latency: hdrhistogram::Histogram<u64>,
    /// How the last request ended.
    pub last: Option<Status>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent { requests: 0, failures: 0, latency: recent_histogram(), last: None }
    }
}

/// The upstream layer's figures. Cheap to update from any task.
#[derive(Debug)]
pub struct UpstreamMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<ServiceLabels, Histogram>,
    recent: [Mutex<Recent>; SERVICES.len()],
    polls: Family<TypeLabels, Counter>,
    poll_failures: Family<TypeLabels, Counter>,
    leader: Gauge,
    /// Requests since the start, by service (the Server page's rates come from these).
    totals: [AtomicU64; SERVICES.len()],
}

impl Default for UpstreamMetrics {
    fn default() -> Self {
        let polls = Family::<TypeLabels, Counter>::default();
        let poll_failures = Family::<TypeLabels, Counter>::default();
        // Every collection's series from the start, at 0: the first failure is then an
        // increase Prometheus sees, not the appearance of a series.
        for kind in UpdateType::COLLECTIONS {
            drop(polls.get_or_create_owned(&TypeLabels { r#type: kind }));
            drop(poll_failures.get_or_create_owned(&TypeLabels { r#type: kind }));
        }
        UpstreamMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS)),
            recent: Default::default(),
            polls,
            poll_failures,
            leader: Gauge::default(),
            totals: Default::default(),
        }
    }
}

fn index(service: Service) -> usize {
    SERVICES.iter().position(|s| *s == service).unwrap_or_default()
}

impl UpstreamMetrics {
    /// Adds these figures to `registry`, with the age of `store`'s collections read at
    /// each scrape.
    pub fn register(&self, registry: &mut Registry, store: Arc<Store>) {
        registry.register(
            "stalecast_upstream_requests",
            "Requests to the cloud, by service and HTTP status (timeout: none within --upstream-timeout; \
             failed: no whole answer)",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "stalecast_upstream_request_duration",
            "How long requests to the cloud took, to the end of the answer's body, by service",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register("stalecast_polls", "Polls of the cloud, by update type", self.polls.clone());
        registry.register(
            "stalecast_poll_failures",
            "Polls that failed (the cached value is served meanwhile), by update type",
            self.poll_failures.clone(),
        );
        registry.register(
            "stalecast_leader",
            "1 while this node polls the cloud for every node (a single node always does), else 0",
            self.leader.clone(),
        );
        registry.register_collector(Box::new(CacheAge(store)));
    }

    /// A request to `service` ended with `status` after `took`.
    pub fn request(&self, service: Service, status: Status, took: Duration) {
        self.requests.get_or_create(&RequestLabels { service, status }).inc();
        self.duration.get_or_create(&ServiceLabels { service }).observe(took.as_secs_f64());
        let at = index(service);
        self.totals[at].fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent[at].lock().unwrap_or_else(|p| p.into_inner());
        recent.requests += 1;
        recent.failures += u64::from(status.is_failure());
        recent.latency.saturating_record((took.as_micros() as u64).max(1));
        recent.last = Some(status);
    }

    /// The poller asked the cloud for `kind`; `ok` says whether it answered.
    pub fn polled(&self, kind: UpdateType, ok: bool) {
        let labels = TypeLabels { r#type: kind };
        self.polls.get_or_create(&labels).inc();
        if !ok {
            self.poll_failures.get_or_create(&labels).inc();
        }
    }

    /// Whether this node polls the cloud (see `stalecast_leader`).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// What each service did since the last call (in [`SERVICES`] order), leaving each
    /// window empty but for how its last request ended.
    pub fn take_recent(&self) -> Vec<(Service, Recent)> {
        SERVICES
            .iter()
            .zip(&self.recent)
            .map(|(service, recent)| {
                let mut recent = recent.lock().unwrap_or_else(|p| p.into_inner());
                let last = recent.last;
                (*service, std::mem::replace(&mut *recent, Recent { last, ..Recent::default() }))
            })
            .collect()
    }

    /// Requests to `service` since the start.
    pub fn requests_total(&self, service: Service) -> u64 {
        self.totals[index(service)].load(Ordering::Relaxed)
    }
}

/// `stalecast_cache_age_seconds{type}`: how long ago the cloud last confirmed each stored
/// collection, read from the store at each scrape (a collection never loaded has none).
#[derive(Debug)]
struct CacheAge(Arc<Store>);

impl Collector for CacheAge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = SystemTime::now();
        let ages: Vec<(UpdateType, f64)> = self
            .0
            .health()
            .into_iter()
            .filter_map(|(kind, health)| {
                let at = health.last_success?;
                Some((kind, now.duration_since(at).unwrap_or_default().as_secs_f64()))
            })
            .collect();
        let mut family = encoder.encode_descriptor(
            "stalecast_cache_age",
            // Written as is (the registry adds the final period to the others' help).
            "How long ago the cloud last confirmed each cached collection, by update type.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (kind, age) in ages {
            ConstGauge::new(age).encode(family.encode_family(&TypeLabels { r#type: kind })?)?;
        }
        Ok(())
    }
}
