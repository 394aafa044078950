//! What the bus and the event streams count: notifications published (by update type),
//! written to streams live and replayed on resume, resyncs by reason, open streams, and
//! how long a notification takes from its publication to a stream's socket.
//!
//! The bus owns one [`BusMetrics`]; both delivery paths (the fan-out, the response body
//! hyper polls) and the stream cursors' callers report to it, and the `/metrics`
//! endpoint registers it ([`BusMetrics::register`]). Label values are update types and
//! resync reasons, so a series can never name an id.
//!
//! The fan-out writes each update to thousands of sockets, so nothing here is per socket:
//! a delivery path reports once per *delivery batch* (a fan-out shard's pass over its
//! streams for one update, or one stream served by hyper), with the number of streams
//! written and the time the batch ended. That is one counter addition, one histogram
//! observation and one short lock (the recent window below) per update and shard.
//!
//! Besides the cumulative figures Prometheus scrapes, the delivery latencies of the last
//! few seconds are kept in an HDR histogram ([`BusMetrics::take_recent_delivery`]): the
//! Server page shows a p99 over a window, and a Prometheus histogram's buckets cannot be
//! read back.
//!
//! A bus relayed through Redis adds its own figures beside these: the lag from the
//! publishing node's append to this node's read (`stalecast_bus_lag_seconds`) and the
//! reconnects of its reader (`stalecast_bus_reconnects_total`).

use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{ResyncReason, UpdateType};

/// Latency buckets (seconds) of notification delivery: on loopback a fan-out pass over
/// 2,000 streams ends within a few milliseconds; a busy or overloaded server shows in the
/// tail, up to the seconds a client would notice.
const DELIVERY_BUCKETS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The longest latency the recent window tells apart (µs); longer ones count as this.
const RECENT_MAX_MICROS: u64 = 60_000_000;

impl EncodeLabelValue for UpdateType {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for ResyncReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// `{type="volumes"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: UpdateType,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: ResyncReason,
}

/// A histogram of microseconds for the recent window: 1 µs to a minute, two significant
/// digits (a few KiB).
pub fn recent_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, RECENT_MAX_MICROS, 2)
        .unwrap_or_else(|_| hdrhistogram::Histogram::new(2).unwrap_or_else(|_| unreachable!("2 digits are valid")))
}

/// The bus's and the streams' figures. Cheap to update from any thread.
#[derive(Debug)]
pub struct BusMetrics {
    published: Family<TypeLabels, Counter>,
    /// `published`'s counter of each type, resolved once (the family looks each label
    /// set up under a lock).
    published_by_type: [Counter; UpdateType::ALL.len()],
    written: Family<TypeLabels, Counter>,
    written_by_type: [Counter; UpdateType::ALL.len()],
    replayed: Counter,
    resyncs: Family<ReasonLabels, Counter>,
    resyncs_by_reason: [Counter; 3],
    /// Open event streams, on either delivery path.
    streams: Gauge,
    /// Open event streams that named `serverStats` (not exported: the sampler's to read).
    stats_watchers: Gauge,
    delivery: Histogram,
    recent_delivery: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for BusMetrics {
    fn default() -> Self {
        let published = Family::<TypeLabels, Counter>::default();
        let written = Family::<TypeLabels, Counter>::default();
        let resyncs = Family::<ReasonLabels, Counter>::default();
        let by_type = |family: &Family<TypeLabels, Counter>| {
            UpdateType::ALL.map(|kind| family.get_or_create_owned(&TypeLabels { r#type: kind }))
        };
        BusMetrics {
            published_by_type: by_type(&published),
            written_by_type: by_type(&written),
            resyncs_by_reason: [ResyncReason::Gap, ResyncReason::Lagged, ResyncReason::Access]
                .map(|reason| resyncs.get_or_create_owned(&ReasonLabels { reason })),
            published,
            written,
            replayed: Counter::default(),
            resyncs,
            streams: Gauge::default(),
            stats_watchers: Gauge::default(),
            delivery: Histogram::new(DELIVERY_BUCKETS),
            recent_delivery: Mutex::new(recent_histogram()),
        }
    }
}

impl BusMetrics {
    /// Adds these figures to `registry` (names prefixed `stalecast_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "stalecast_notifications_published",
            "Notifications published on the update bus, by update type",
            self.published.clone(),
        );
        registry.register(
            "stalecast_notifications_written",
            "Notifications written to event streams as they were published, by update type (a stream that is \
             behind queues them in order, or gets a resync instead)",
            self.written.clone(),
        );
        registry.register(
            "stalecast_notifications_replayed",
            "Notifications replayed to streams that resumed with Last-Event-ID",
            self.replayed.clone(),
        );
        registry.register(
            "stalecast_stream_resyncs",
            "Resyncs sent to event streams, by reason: gap (the resume id is no longer kept), access (what the user may see changed) or lagged (the \
             stream fell behind)",
            self.resyncs.clone(),
        );
        registry.register("stalecast_streams_open", "Event streams open now", self.streams.clone());
        registry.register_with_unit(
            "stalecast_notification_delivery",
            "From a notification's publication to its write to streams' sockets, one observation per \
             delivery batch (a fan-out shard's pass over its streams, or one stream served by hyper)",
            Unit::Seconds,
            self.delivery.clone(),
        );
    }

    /// An update of `kind` was published.
    pub fn published(&self, kind: UpdateType) {
        self.published_by_type[kind as usize].inc();
    }

    /// A delivery batch ended: `streams` streams were written (or queued) an update of
    /// `kind` published at `published_at` (µs since the epoch), the last of them at
    /// `now` (µs since the epoch).
    pub fn written(&self, kind: UpdateType, streams: u64, published_at: u64, now: u64) {
        if streams == 0 {
            return;
        }
        self.written_by_type[kind as usize].inc_by(streams);
        let micros = now.saturating_sub(published_at);
        self.delivery.observe(micros as f64 / 1e6);
        let mut recent = self.recent_delivery.lock().unwrap_or_else(|p| p.into_inner());
        recent.saturating_record(micros.clamp(1, RECENT_MAX_MICROS));
    }

    /// `n` updates were replayed to a stream that resumed.
    pub fn replayed(&self, n: usize) {
        if n > 0 {
            self.replayed.inc_by(n as u64);
        }
    }

    /// A resync was sent to a stream.
    pub fn resync(&self, reason: ResyncReason) {
        let at = match reason {
            ResyncReason::Gap => 0,
            ResyncReason::Lagged => 1,
            ResyncReason::Access => 2,
        };
        self.resyncs_by_reason[at].inc();
    }

    /// The open-streams gauge (a [`Subscriber`](super::Subscriber) holds it while it lives).
    pub(super) fn streams(&self) -> &Gauge {
        &self.streams
    }

    /// How many open streams want the server's own figures (`serverStats`): while none
    /// does, publishing them would only take seqs that every other stream then skips.
    pub fn stats_watchers(&self) -> i64 {
        self.stats_watchers.get()
    }

    /// Updates of `kind` published so far.
    pub fn published_total(&self, kind: UpdateType) -> u64 {
        self.published_by_type[kind as usize].get()
    }

    /// Notifications written to streams so far, every type.
    pub fn written_total(&self) -> u64 {
        self.written_by_type.iter().map(Counter::get).sum()
    }

    /// Resyncs sent so far, every reason.
    pub fn resyncs_total(&self) -> u64 {
        self.resyncs_by_reason.iter().map(Counter::get).sum()
    }

    /// The delivery latencies (µs) recorded since the last call, leaving an empty window.
    pub fn take_recent_delivery(&self) -> hdrhistogram::Histogram<u64> {
        let fresh = recent_histogram();
        std::mem::replace(&mut *self.recent_delivery.lock().unwrap_or_else(|p| p.into_inner()), fresh)
    }
}

/// Counts one open stream that wants `serverStats` for as long as it lives.
#[derive(Debug)]
pub struct Watcher(Gauge);

impl Watcher {
    pub fn new(metrics: &BusMetrics) -> Watcher {
        metrics.stats_watchers.inc();
        Watcher(metrics.stats_watchers.clone())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_the_labelled_series() {
        let metrics = BusMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.published(UpdateType::Volumes);
        metrics.written(UpdateType::Volumes, 3, 1_000_000, 1_004_000);
        metrics.written(UpdateType::Servers, 0, 0, 0);
        metrics.resync(ResyncReason::Lagged);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains("stalecast_notifications_published_total{type=\"volumes\"} 1\n"), "{text}");
        assert!(text.contains("stalecast_notifications_written_total{type=\"volumes\"} 3\n"), "{text}");
        assert!(text.contains("stalecast_notifications_written_total{type=\"servers\"} 0\n"), "{text}");
        assert!(text.contains("stalecast_stream_resyncs_total{reason=\"lagged\"} 1\n"), "{text}");
        assert!(text.contains("stalecast_notification_delivery_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("stalecast_notification_delivery_seconds_bucket{le=\"0.0025\"} 0\n"), "{text}");
        let recent = metrics.take_recent_delivery();
        assert_eq!((recent.len(), recent.value_at_quantile(0.99) / 100), (1, 40), "4 ms, to two digits");
        assert_eq!(metrics.take_recent_delivery().len(), 0, "taken");
        assert_eq!((metrics.published_total(UpdateType::Volumes), metrics.written_total()), (1, 3));
    }
}
