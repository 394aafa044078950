//! The Server page's figures (`server.stats`): open streams, notifications per second,
//! delivery p99, the cloud's services and collections, and the nodes (which one polls),
//! sampled every [`INTERVAL`] by one task and published as a `serverStats` update when
//! they changed, so that the page is kept fresh by the stream it watches, never by polling.
//!
//! One sampler owns the recent windows the lower layers keep (the delivery latencies of
//! [`BusMetrics`](crate::updates::BusMetrics), each service's requests in
//! [`UpstreamMetrics`](crate::upstream::metrics::UpstreamMetrics)): it takes them once per
//! tick, so every figure here is over the same window, and every tab that asks gets the
//! same answer, the one the notification announced.
//!
//! Nothing here names an id, a project, a user or a URL: services, update types, counts,
//! rates and durations only. A sign-in requirement on every procedure applies to this
//! query as to the others.
//!
//! The nodes: a single node lists itself ("this node"), and always polls. In a cluster
//! (`--redis`) each node announces its own figures in the roster at every sample
//! ([`Roster`], in [`crate::cluster::nodes`]) and lists every live node: its own figures
//! fresh, the others' as they last announced them, the one the poller's lease names
//! marked. A change of the lineup (a node joins or leaves, or the poller moves) is
//! published at once, not at the next sample.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use ts_rs::TS;
use utoipa::ToSchema;

use super::Ctx;
use crate::cluster::nodes::Roster;
use crate::updates::{UpdateBus, UpdateType};
use crate::upstream::client::OpenStackClient;
use crate::upstream::metrics::Recent;
use crate::upstream::store::Store;

/// How often the figures are sampled, and so at most how often `serverStats` is published:
/// often enough that the page feels live, rare enough that thousands of open tabs on other
/// pages pay one small write each per interval (2,000 streams: about 700 writes a second,
/// against the 20,000 of ten changes a second).
pub const INTERVAL: Duration = Duration::from_secs(3);

/// What this node is called on the page. A single node has no other to tell apart from.
const NODE_NAME: &str = "this node";

/// Output of `server.stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerStats {
    /// When these figures were sampled, in milliseconds since the Unix epoch.
    #[ts(type = "number")]
    pub sampled_at: u64,
    /// The window rates and percentiles are over, in milliseconds (the time since the
    /// sample before; 0 in the first sample after the start).
    #[ts(type = "number")]
    pub window_ms: u64,
    /// The nodes serving this dashboard's streams, by name: this one alone, or every live
    /// node of the cluster.
    pub nodes: Vec<NodeStats>,
    /// The cloud's services as the polling node saw them in the window.
    pub services: Vec<ServiceHealth>,
    /// Each collection the store keeps.
    pub collections: Vec<CollectionHealth>,
}

/// One node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// `this node` on a single node; in a cluster, the node's name (`--node-name`).
    pub name: String,
    /// Whether this is the node that answered (the one this dashboard talks to).
    pub this_node: bool,
    /// When its figures were last sampled (this node) or announced (the others), in
    /// milliseconds since the Unix epoch.
    #[ts(type = "number")]
    pub last_seen_at: u64,
    /// Stalecast's version on that node.
    pub version: String,
    /// When it started, in milliseconds since the Unix epoch.
    #[ts(type = "number")]
    pub started_at: u64,
    /// Whether this node polls the cloud (exactly one does).
    pub polls: bool,
    /// Event streams open on it now.
    #[ts(type = "number")]
    pub streams: u64,
    /// Changes of the cloud's collections it published, per second over the window.
    pub notifications_per_second: f64,
    /// Notifications of the cloud's collections published since the start.
    #[ts(type = "number")]
    pub notifications_total: u64,
    /// Notifications written to its streams, per second over the window (every type).
    pub writes_per_second: f64,
    /// From publication to the write to sockets, 99th percentile over the window, in
    /// milliseconds; absent when nothing was delivered in it.
    pub delivery_p99_ms: Option<f64>,
    /// Resyncs sent since the start.
    #[ts(type = "number")]
    pub resyncs_total: u64,
}

/// One service of the cloud, over the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealth {
    /// Its catalog type (`compute`, `block-storage`, …).
    pub service: String,
    pub requests_per_second: f64,
    /// Requests that failed in the window: 5xx, timeouts, no answer.
    #[ts(type = "number")]
    pub failures: u64,
    /// The 99th percentile of its answers' latency, in milliseconds; absent when it was
    /// not asked in the window.
    pub p99_ms: Option<f64>,
    /// How its last request ended: an HTTP status, `timeout` or `failed`; absent before
    /// the first.
    pub last_status: Option<String>,
}

/// One collection of the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectionHealth {
    #[serde(rename = "type")]
    pub kind: UpdateType,
    /// When the cloud last confirmed it, in milliseconds since the Unix epoch; absent
    /// before the first successful fetch.
    #[ts(type = "number | null")]
    pub confirmed_at: Option<u64>,
    /// Failed fetches since the last success.
    pub failures: u32,
}

/// The latest figures, and the counts the next sample's rates start from.
#[derive(Debug)]
pub struct Figures {
    started: SystemTime,
    /// In a cluster: the other nodes, and where this one announces itself.
    roster: Option<Arc<Roster>>,
    latest: Mutex<Arc<ServerStats>>,
    last: Mutex<Totals>,
    /// This node's own figures at the last sample.
    own: Mutex<Option<NodeStats>>,
}

/// Counters at the previous sample.
#[derive(Debug, Clone, Copy)]
struct Totals {
    at: Instant,
    published: u64,
    written: u64,
    requests: [u64; crate::upstream::metrics::SERVICES.len()],
}

impl Figures {
    /// Figures of a single node started at `started`, sampled once right away (rates 0).
    pub fn new(bus: &UpdateBus, store: &Store, started: SystemTime) -> Arc<Figures> {
        Figures::build(bus, store, started, None)
    }

    /// Figures of a node of a cluster, which announces its own in `roster` and lists
    /// every live node's.
    pub fn in_cluster(bus: &UpdateBus, store: &Store, started: SystemTime, roster: Arc<Roster>) -> Arc<Figures> {
        Figures::build(bus, store, started, Some(roster))
    }

    fn build(bus: &UpdateBus, store: &Store, started: SystemTime, roster: Option<Arc<Roster>>) -> Arc<Figures> {
        let totals = totals(bus, store.client());
        let figures = Figures {
            started,
            roster,
            latest: Mutex::new(Arc::new(placeholder())),
            last: Mutex::new(totals),
            own: Mutex::new(None),
        };
        figures.sample(bus, store);
        Arc::new(figures)
    }

    /// The latest sample.
    pub fn latest(&self) -> Arc<ServerStats> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes a new sample; answers whether any figure differs from the one before.
    fn sample(&self, bus: &UpdateBus, store: &Store) -> bool {
        let client = store.client();
        let now = totals(bus, client);
        let before = std::mem::replace(&mut *self.last.lock().unwrap_or_else(|p| p.into_inner()), now);
        let window = now.at.duration_since(before.at);
        let per_second = |count: u64| rate(count, window);
        let metrics = bus.metrics();
        let delivery = metrics.take_recent_delivery();
        let sampled_at = millis(SystemTime::now());
        let node = NodeStats {
            name: self.roster.as_ref().map_or(NODE_NAME, |roster| roster.name()).into(),
            this_node: true,
            last_seen_at: sampled_at,
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: millis(self.started),
            polls: client.metrics().is_leader(),
            streams: bus.subscriber_count() as u64,
            notifications_per_second: per_second(now.published - before.published),
            notifications_total: now.published,
            writes_per_second: per_second(now.written - before.written),
            delivery_p99_ms: p99_ms(&delivery),
            resyncs_total: metrics.resyncs_total(),
        };
        let services = client
            .metrics()
            .take_recent()
            .into_iter()
            .zip(now.requests.iter().zip(before.requests))
            .map(|((service, recent), (now, before))| {
                service_health(service.catalog_types()[0], &recent, per_second(now - before))
            })
            .collect();
        let collections = store
            .health()
            .into_iter()
            .map(|(kind, health)| CollectionHealth {
                kind,
                confirmed_at: health.last_success.map(millis),
                failures: health.failures,
            })
            .collect();
        if let Some(roster) = &self.roster {
            match serde_json::to_value(&node) {
                Ok(figures) => roster.announce(figures),
                Err(error) => tracing::warn!(%error, "cannot announce this node's figures"),
            }
        }
        let nodes = self.nodes(&node);
        *self.own.lock().unwrap_or_else(|p| p.into_inner()) = Some(node);
        let stats = ServerStats { sampled_at, window_ms: window.as_millis() as u64, nodes, services, collections };
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let changed = !same_figures(&latest, &stats);
        *latest = Arc::new(stats);
        changed
    }

    /// Lists the nodes again from the roster, this node's figures as last sampled (a
    /// node joined or left, or the poller moved); answers whether the list changed.
    fn relist(&self) -> bool {
        let Some(own) = self.own.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return false };
        let nodes = self.nodes(&own);
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if same_nodes(&latest.nodes, &nodes) {
            return false;
        }
        *latest = Arc::new(ServerStats { nodes, ..(**latest).clone() });
        true
    }

    /// This node alone, or every live node of the roster (this one's figures `own`, the
    /// others' as announced), by name, the poller the lease names marked.
    fn nodes(&self, own: &NodeStats) -> Vec<NodeStats> {
        let Some(roster) = &self.roster else { return vec![own.clone()] };
        let members = roster.members();
        let polls = |name: &str| members.poller.as_deref() == Some(name);
        let mut nodes = vec![NodeStats { polls: polls(&own.name), ..own.clone() }];
        for member in members.nodes.iter().filter(|m| m.name != own.name) {
            match NodeStats::deserialize(&member.figures) {
                Ok(figures) => nodes.push(NodeStats {
                    name: member.name.clone(),
                    this_node: false,
                    polls: polls(&member.name),
                    last_seen_at: member.seen_at,
                    ..figures
                }),
                Err(error) => tracing::debug!(node = %member.name, %error, "ignored a node's figures"),
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes
    }
}

/// Whether two samples show the same figures (when and over how long they were taken aside).
fn same_figures(a: &ServerStats, b: &ServerStats) -> bool {
    same_nodes(&a.nodes, &b.nodes) && a.services == b.services && a.collections == b.collections
}

/// Whether two lists show the same nodes with the same figures (when each was last seen
/// aside: that alone is no news).
fn same_nodes(a: &[NodeStats], b: &[NodeStats]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| *a == NodeStats { last_seen_at: a.last_seen_at, ..b.clone() })
}

fn placeholder() -> ServerStats {
    ServerStats { sampled_at: 0, window_ms: 0, nodes: Vec::new(), services: Vec::new(), collections: Vec::new() }
}

fn totals(bus: &UpdateBus, client: &OpenStackClient) -> Totals {
    let metrics = bus.metrics();
    Totals {
        at: Instant::now(),
        // The page's own notifications are not the cloud's changes.
        published: UpdateType::COLLECTIONS.iter().map(|kind| metrics.published_total(*kind)).sum(),
        written: metrics.written_total(),
        requests: crate::upstream::metrics::SERVICES.map(|service| client.metrics().requests_total(service)),
    }
}

fn service_health(service: &str, recent: &Recent, requests_per_second: f64) -> ServiceHealth {
    ServiceHealth {
        service: service.to_owned(),
        requests_per_second,
        failures: recent.failures,
        p99_ms: p99_ms(&recent.latency),
        last_status: recent.last.map(|status| status.to_string()),
    }
}

/// `count` over `window`, per second, to one decimal (0 over an empty window).
fn rate(count: u64, window: Duration) -> f64 {
    if window.is_zero() {
        return 0.0;
    }
    (count as f64 / window.as_secs_f64() * 10.0).round() / 10.0
}

/// The 99th percentile of latencies in µs, in milliseconds to 0.01 ms.
fn p99_ms(latencies: &hdrhistogram::Histogram<u64>) -> Option<f64> {
    if latencies.is_empty() {
        return None;
    }
    Some((latencies.value_at_quantile(0.99) as f64 / 10.0).round() / 100.0)
}

fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `server.stats`: the latest sample.
pub fn stats(ctx: &Ctx) -> ServerStats {
    (*ctx.stats.latest()).clone()
}

/// Starts the sampler: every [`INTERVAL`], a new sample, published as a `serverStats`
/// update when its figures changed and a stream wants them (a stream that names no types
/// does not: publishing for nobody would only leave gaps in every other stream's seqs).
/// In a cluster, a change of the lineup lists the nodes again at once, and publishes the
/// same way. Stops when `shutdown` fires.
pub fn spawn(ctx: Ctx, shutdown: CancellationToken, tasks: &mut JoinSet<()>) {
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lineup = ctx.stats.roster.as_ref().map(|roster| roster.lineup());
        loop {
            let lineup_changed = async {
                match lineup.as_mut() {
                    Some(lineup) => {
                        if lineup.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let changed = tokio::select! {
                _ = shutdown.cancelled() => return,
                // Sampled either way, so that `server.stats` is at most an interval old.
                _ = ticks.tick() => ctx.stats.sample(&ctx.bus, &ctx.store),
                _ = lineup_changed => ctx.stats.relist(),
            };
            if changed && ctx.bus.metrics().stats_watchers() > 0 {
                ctx.store.announce(UpdateType::ServerStats).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_percentiles_are_rounded_and_empty_windows_have_none() {
        assert_eq!(rate(7, Duration::from_secs(2)), 3.5);
        assert_eq!(rate(1, Duration::from_secs(3)), 0.3);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
        let mut latencies = crate::updates::metrics::recent_histogram();
        assert_eq!(p99_ms(&latencies), None);
        for micros in [100, 200, 4_000] {
            latencies.record(micros).expect("in range");
        }
        // 4 ms, to the histogram's two significant digits.
        let p99 = p99_ms(&latencies).expect("a p99");
        assert!((4.0..4.05).contains(&p99), "{p99}");
    }

    #[test]
    fn when_a_node_was_last_seen_is_no_news_by_itself() {
        let node = |name: &str, last_seen_at, streams| NodeStats {
            name: name.into(),
            this_node: false,
            last_seen_at,
            version: "0.1.0".into(),
            started_at: 0,
            polls: false,
            streams,
            notifications_per_second: 0.0,
            notifications_total: 0,
            writes_per_second: 0.0,
            delivery_p99_ms: None,
            resyncs_total: 0,
        };
        let before = [node("a:1", 1, 2), node("b:2", 1, 0)];
        assert!(same_nodes(&before, &[node("a:1", 5, 2), node("b:2", 6, 0)]));
        assert!(!same_nodes(&before, &[node("a:1", 5, 3), node("b:2", 6, 0)]), "a figure moved");
        assert!(!same_nodes(&before, &[node("a:1", 5, 2)]), "a node left");
        let moved = [node("a:1", 1, 2), NodeStats { polls: true, ..node("b:2", 1, 0) }];
        assert!(!same_nodes(&before, &moved), "the poller moved");
        // Another node's figures as announced: the roster's JSON is the domain's.
        let announced = serde_json::to_value(&before[1]).expect("JSON");
        assert_eq!(NodeStats::deserialize(&announced).expect("read back"), before[1]);
    }
}
