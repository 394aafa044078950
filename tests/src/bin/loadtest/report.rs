//! Turns what a run measured into a report: JSON, a table on stdout, and two plots
//! (latency over time, latency histogram) as SVG.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use crate::cluster::Restart;
use crate::drive::Driven;
use crate::procs::{self, Sample, ThreadCpu};
use crate::stats::{self, Percentiles};
use crate::worker::{SlowOutcome, SlowReport, WorkerReport};
use crate::{Mutation, RunArgs, StormMode};

/// Everything `run` collected, before it is summarised.
pub struct Measured {
    /// Storms: the poller's cost before the clients came.
    pub poll: Option<PollCost>,
    pub name: String,
    pub args: RunArgs,
    pub mutation: Mutation,
    pub started_at: SystemTime,
    pub worker_count: usize,
    pub per_worker: usize,
    pub connect_wall: Duration,
    pub window: Duration,
    pub seq0: u64,
    pub seq1: u64,
    pub driven: Driven,
    pub reports: Vec<WorkerReport>,
    /// With `--audience`: the users clients signed in as.
    pub audience: Option<Vec<String>>,
    /// Workers that did not exit cleanly after their report.
    pub worker_failures: Vec<String>,
    pub idle: Option<Sample>,
    pub connected_sample: Option<Sample>,
    pub before: Option<Sample>,
    pub after: Option<Sample>,
    /// CPU seconds the load generator used in the window.
    pub generator_cpu_s: f64,
    pub upstream: Option<(BTreeMap<String, u64>, BTreeMap<String, u64>)>,
    pub server_alive: bool,
    pub clean_exit: Option<bool>,
    pub server_warnings: u64,
    pub server_errors: u64,
    pub server_log_samples: Vec<String>,
    pub server_log: Option<PathBuf>,
    /// With several nodes started by the tool: each node, the rolling restart, Redis.
    pub cluster: Option<ClusterMeasured>,
}

/// The nodes of a cluster the tool started, and what happened to them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMeasured {
    pub nodes: Vec<NodeMeasured>,
    /// One per node restarted (`--rolling-restart`), in order.
    pub restarts: Vec<Restart>,
    /// CPU seconds `redis-server` used in the window.
    pub redis_cpu_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMeasured {
    pub addr: String,
    /// Every process id it ran as (one more per restart).
    pub pids: Vec<u32>,
    pub warnings: u64,
    pub errors: u64,
    /// Whether each of its processes exited cleanly on SIGTERM.
    pub clean_exits: Vec<bool>,
}

/// The server's CPU while only the poller works (no clients, no mutations).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PollCost {
    pub window_s: f64,
    /// Polls of the volumes in the window (one upstream listing each).
    pub polls: u64,
    pub cpu_s: f64,
    pub cpu_ms_per_poll: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub poll: Option<PollCost>,
    pub name: String,
    pub started_at: String,
    pub knobs: Knobs,
    pub clients: Clients,
    pub notifications: Notifications,
    /// From the notification's `ts` to its arrival at the client.
    pub latency: Percentiles,
    pub per_second: Vec<Second>,
    /// The clients that stopped reading through the window (`--slow-clients`).
    pub slow_clients: Option<SlowClients>,
    pub mutations: Mutations,
    pub server: Option<ServerCost>,
    pub upstream: Option<Upstream>,
    pub storm: Option<Storm>,
    pub cluster: Option<ClusterMeasured>,
    pub outputs: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Knobs {
    pub clients: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub mutation: Mutation,
    pub storm: bool,
    pub storm_mode: Option<StormMode>,
    pub volumes: Option<usize>,
    pub page_size: u32,
    pub accept_encoding: Option<String>,
    pub source_addrs: u8,
    pub workers: usize,
    pub clients_per_worker: usize,
    pub server_nofile: Option<u64>,
    pub slow_clients: usize,
    pub targets: Vec<String>,
    pub nodes: u16,
    pub rolling_restart: bool,
    pub server_args: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Clients {
    pub requested: usize,
    pub connected: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    /// Streams the server closed during the run.
    pub disconnected: u64,
    /// Streams opened again on the next node after the server ended them.
    pub reconnects: u64,
    /// From a stream's end to `connected` on the next node.
    pub reconnect: Percentiles,
    /// Failed reconnect attempts (each retried on the node after), by error.
    pub reconnect_errors: BTreeMap<String, u64>,
    /// Client tasks that panicked, and workers that did not exit cleanly.
    pub panicked: u64,
    pub worker_failures: Vec<String>,
    pub connect: Percentiles,
    pub connect_wall_s: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    /// Updates the bus published during the window (seq1 − seq0).
    pub published: u64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub resyncs: u64,
    /// The resyncs by reason (`lagged`, `gap`, …).
    pub resync_reasons: BTreeMap<String, u64>,
    pub window_s: f64,
    /// With `--audience`: the users clients signed in as, notifications checked against
    /// what their user may see, those delivered to a client that may not see them, and
    /// the first few of those.
    pub audience: Option<Vec<String>>,
    pub audience_checked: u64,
    pub leaked: u64,
    pub leak_examples: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlowClients {
    pub requested: usize,
    /// Every update of the window arrived once they read again.
    pub complete: u64,
    /// A `lagged` resync stood for every update that did not arrive.
    pub lagged: u64,
    /// Updates neither arrived nor were covered by a resync.
    pub gap: u64,
    /// Did not connect or did not catch up.
    pub failed: u64,
    /// The fewest and most updates a lagged client received before its resync: what the
    /// kernel's buffers and the server's queue held for it.
    pub before_resync: Option<(u64, u64)>,
    pub errors: BTreeMap<String, u64>,
    pub clients: Vec<SlowReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Second {
    pub second: u64,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mutations {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Tries sent again after a `503` (refused, nothing changed).
    pub retried: u64,
    pub first_error: Option<String>,
    pub latency: Percentiles,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerCost {
    pub rss_idle_kib: u64,
    pub rss_connected_kib: u64,
    pub rss_end_kib: u64,
    pub kib_per_connection: f64,
    pub fds_connected: u64,
    pub cpu_s: f64,
    /// Server CPU over the window divided by the notifications delivered in it.
    pub cpu_us_per_notification: f64,
    /// Busiest threads during the window: the fan-out should use every worker thread.
    pub threads: Vec<ThreadCpu>,
    /// The load generator's own CPU in the window (it shares the machine).
    pub generator_cpu_s: f64,
    pub generator_cpu_us_per_notification: f64,
    pub bytes_written: u64,
    pub alive_at_end: bool,
    pub clean_exit: Option<bool>,
    pub log_warnings: u64,
    pub log_errors: u64,
    pub log_samples: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upstream {
    /// Requests the upstream served during the window, by kind.
    pub requests: BTreeMap<String, u64>,
    pub total: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Storm {
    pub mode: StormMode,
    pub refetches: u64,
    pub ok: u64,
    pub not_modified: u64,
    pub errors: u64,
    pub body_bytes: u64,
    pub mean_body_bytes: u64,
    /// Response bytes (status line, headers, body) over the window.
    pub wire_bytes: u64,
    /// `wire_bytes` per client per change published in the window.
    pub wire_bytes_per_client_change: f64,
    pub encodings: BTreeMap<String, u64>,
    /// From the notification's arrival to the refetch's last byte.
    pub latency: Percentiles,
    /// From the notification's `ts` (published) to the answer at the client: the change
    /// visible (applied, in delta mode).
    pub applied: Percentiles,
    /// Delta mode: `changes` answers that said resync; records received as upserts.
    pub resync_answers: u64,
    pub upserts: u64,
    /// Server CPU over the window per change published.
    pub cpu_ms_per_change: Option<f64>,
}

pub fn build(m: Measured) -> anyhow::Result<RunReport> {
    let mut latency = stats::histogram();
    let mut connect = stats::histogram();
    let mut reconnect = stats::histogram();
    let mut per_second: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
    let mut storm_latency = stats::histogram();
    let mut storm_applied = stats::histogram();
    let mut clients = Clients {
        requested: m.args.clients,
        connected: 0,
        failed: 0,
        errors: BTreeMap::new(),
        disconnected: 0,
        reconnects: 0,
        reconnect: Percentiles::default(),
        reconnect_errors: BTreeMap::new(),
        panicked: 0,
        worker_failures: m.worker_failures.clone(),
        connect: Percentiles::default(),
        connect_wall_s: m.connect_wall.as_secs_f64(),
    };
    let mut n = Notifications {
        published: m.seq1.saturating_sub(m.seq0),
        expected: 0,
        received: 0,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        resyncs: 0,
        resync_reasons: BTreeMap::new(),
        window_s: m.window.as_secs_f64(),
        audience: m.audience.clone(),
        audience_checked: 0,
        leaked: 0,
        leak_examples: Vec::new(),
    };
    let mut slow = (m.args.slow_clients > 0).then(|| SlowClients {
        requested: m.args.slow_clients,
        complete: 0,
        lagged: 0,
        gap: 0,
        failed: 0,
        before_resync: None,
        errors: BTreeMap::new(),
        clients: Vec::new(),
    });
    let mut storm = m.args.storm.then(|| Storm {
        mode: m.args.storm_mode,
        refetches: 0,
        ok: 0,
        not_modified: 0,
        errors: 0,
        body_bytes: 0,
        mean_body_bytes: 0,
        wire_bytes: 0,
        wire_bytes_per_client_change: 0.0,
        encodings: BTreeMap::new(),
        latency: Percentiles::default(),
        applied: Percentiles::default(),
        resync_answers: 0,
        upserts: 0,
        cpu_ms_per_change: None,
    });
    for r in &m.reports {
        clients.connected += r.connected;
        clients.failed += r.failed;
        clients.disconnected += r.disconnected;
        clients.reconnects += r.reconnects;
        r.reconnect_us.add_to(&mut reconnect);
        for (k, v) in &r.reconnect_errors {
            *clients.reconnect_errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &r.resync_reasons {
            *n.resync_reasons.entry(k.clone()).or_default() += v;
        }
        clients.panicked += r.panicked;
        for (k, v) in &r.errors {
            *clients.errors.entry(k.clone()).or_default() += v;
        }
        r.connect_us.add_to(&mut connect);
        r.latency_us.add_to(&mut latency);
        for (second, pairs) in &r.per_second {
            pairs.add_to(per_second.entry(*second).or_insert_with(stats::histogram));
        }
        n.expected += r.expected;
        n.received += r.received;
        n.lost += r.lost;
        n.duplicates += r.duplicates;
        n.out_of_order += r.out_of_order;
        n.resyncs += r.resyncs;
        n.audience_checked += r.audience_checked;
        n.leaked += r.audience_violations;
        for example in &r.violation_examples {
            if n.leak_examples.len() < 5 {
                n.leak_examples.push(example.clone());
            }
        }
        if let Some(slow) = slow.as_mut() {
            for client in &r.slow {
                match client.outcome {
                    SlowOutcome::Complete => slow.complete += 1,
                    SlowOutcome::Lagged => slow.lagged += 1,
                    SlowOutcome::Gap => slow.gap += 1,
                    SlowOutcome::Failed => slow.failed += 1,
                }
                if let Some(error) = &client.error {
                    *slow.errors.entry(error.clone()).or_default() += 1;
                }
                if let Some(n) = client.before_resync {
                    slow.before_resync = Some(slow.before_resync.map_or((n, n), |(lo, hi)| (lo.min(n), hi.max(n))));
                }
            }
            slow.clients.extend(r.slow.iter().cloned());
        }
        if let (Some(s), Some(w)) = (storm.as_mut(), &r.storm) {
            s.refetches += w.refetches;
            s.ok += w.ok;
            s.not_modified += w.not_modified;
            s.errors += w.errors;
            s.body_bytes += w.body_bytes;
            s.wire_bytes += w.wire_bytes;
            s.resync_answers += w.resync_answers;
            s.upserts += w.upserts;
            for (k, v) in &w.encodings {
                *s.encodings.entry(k.clone()).or_default() += v;
            }
            w.latency_us.add_to(&mut storm_latency);
            w.applied_us.add_to(&mut storm_applied);
        }
    }
    clients.connect = Percentiles::of(&connect);
    clients.reconnect = Percentiles::of(&reconnect);
    if let Some(s) = storm.as_mut() {
        s.latency = Percentiles::of(&storm_latency);
        s.applied = Percentiles::of(&storm_applied);
        s.mean_body_bytes = s.body_bytes.checked_div(s.refetches).unwrap_or(0);
        let client_changes = clients.connected as f64 * n.published as f64;
        if client_changes > 0.0 {
            s.wire_bytes_per_client_change = s.wire_bytes as f64 / client_changes;
        }
    }

    let server = match (&m.idle, &m.connected_sample, &m.before, &m.after) {
        (Some(idle), Some(connected), Some(before), Some(after)) => {
            let cpu_s = after.cpu_s - before.cpu_s;
            Some(ServerCost {
                rss_idle_kib: idle.rss_kib,
                rss_connected_kib: connected.rss_kib,
                rss_end_kib: after.rss_kib,
                kib_per_connection: if clients.connected > 0 {
                    (connected.rss_kib as f64 - idle.rss_kib as f64) / clients.connected as f64
                } else {
                    0.0
                },
                fds_connected: connected.fds,
                cpu_s,
                cpu_us_per_notification: if n.received > 0 { cpu_s * 1e6 / n.received as f64 } else { 0.0 },
                threads: procs::thread_delta(before, after),
                generator_cpu_s: m.generator_cpu_s,
                generator_cpu_us_per_notification: if n.received > 0 {
                    m.generator_cpu_s * 1e6 / n.received as f64
                } else {
                    0.0
                },
                bytes_written: after.wchar.saturating_sub(before.wchar),
                alive_at_end: m.server_alive,
                clean_exit: m.clean_exit,
                log_warnings: m.server_warnings,
                log_errors: m.server_errors,
                log_samples: m.server_log_samples.clone(),
            })
        }
        _ => None,
    };
    if let (Some(s), Some(cost)) = (storm.as_mut(), &server)
        && n.published > 0
    {
        s.cpu_ms_per_change = Some(cost.cpu_s * 1e3 / n.published as f64);
    }
    let upstream = m.upstream.as_ref().map(|(before, after)| {
        let requests: BTreeMap<String, u64> = after
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0))))
            .filter(|(_, v)| *v > 0)
            .collect();
        let total = requests.values().sum();
        Upstream { requests, total }
    });

    let mut outputs = BTreeMap::new();
    let json_path = m.args.out.join(format!("{}.json", m.name));
    let latency_svg = m.args.out.join(format!("{}-latency.svg", m.name));
    let histogram_svg = m.args.out.join(format!("{}-histogram.svg", m.name));
    for (key, path) in [("json", &json_path), ("latencySvg", &latency_svg), ("histogramSvg", &histogram_svg)] {
        outputs.insert(key.to_owned(), path.display().to_string());
    }
    if let Some(log) = &m.server_log {
        outputs.insert("serverLog".to_owned(), log.display().to_string());
    }
    let report = RunReport {
        name: m.name.clone(),
        started_at: humantime::format_rfc3339_seconds(m.started_at).to_string(),
        knobs: Knobs {
            clients: m.args.clients,
            rate: m.args.rate,
            duration_s: m.args.duration.as_secs_f64(),
            mutation: m.mutation,
            storm: m.args.storm,
            storm_mode: m.args.storm.then_some(m.args.storm_mode),
            volumes: m.args.storm.then_some(m.args.volumes),
            page_size: m.args.page_size,
            accept_encoding: m.args.storm.then(|| m.args.accept_encoding.clone()),
            source_addrs: m.args.source_addrs,
            workers: m.worker_count,
            clients_per_worker: m.per_worker,
            server_nofile: m.args.server_nofile,
            slow_clients: m.args.slow_clients,
            targets: m.args.targets.clone(),
            nodes: m.args.nodes,
            rolling_restart: m.args.rolling_restart,
            server_args: m.args.server_args.clone(),
        },
        clients,
        notifications: n,
        slow_clients: slow,
        latency: Percentiles::of(&latency),
        per_second: per_second
            .iter()
            .map(|(second, h)| {
                let p = Percentiles::of(h);
                Second { second: *second, count: p.count, p50_ms: p.p50_ms, p99_ms: p.p99_ms, max_ms: p.max_ms }
            })
            .collect(),
        mutations: Mutations {
            sent: m.driven.sent,
            ok: m.driven.ok,
            failed: m.driven.failed,
            retried: m.driven.retried,
            first_error: m.driven.first_error.clone(),
            latency: Percentiles::of(&m.driven.latency),
        },
        server,
        upstream,
        storm,
        cluster: m.cluster.clone(),
        poll: m.poll.clone(),
        outputs,
    };
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    plot_over_time(&report, &latency_svg)?;
    plot_histogram(&report.name, &latency, &histogram_svg)?;
    Ok(report)
}

/// What the run failed to show (empty: everything held). With `--server-nofile`, clients
/// beyond the server's limit are expected to be refused or delayed.
pub fn verdict(args: &RunArgs, r: &RunReport) -> Vec<String> {
    let mut failed = Vec::new();
    if r.notifications.lost > 0 {
        failed.push(format!("{} notifications lost", r.notifications.lost));
    }
    if r.notifications.leaked > 0 {
        failed.push(format!(
            "{} notifications delivered to a client whose user may not see them: {:?}",
            r.notifications.leaked, r.notifications.leak_examples
        ));
    }
    if !args.audience.is_empty() && r.notifications.audience_checked == 0 {
        failed.push(String::from("no notification was checked against its audience"));
    }
    if r.notifications.published == 0 {
        failed.push(String::from("no update was published"));
    }
    if r.notifications.duplicates > 0 || r.notifications.out_of_order > 0 {
        failed.push(String::from("duplicates or reordering"));
    }
    if r.clients.panicked > 0 {
        failed.push(format!("{} client tasks panicked", r.clients.panicked));
    }
    failed.extend(r.clients.worker_failures.iter().cloned());
    if let Some(slow) = &r.slow_clients {
        if slow.gap > 0 {
            failed.push(format!("{} slow clients missed updates without a resync", slow.gap));
        }
        let judged = slow.complete + slow.lagged + slow.gap + slow.failed;
        if slow.failed > 0 || judged < slow.requested as u64 {
            failed.push(format!(
                "{} of {} slow clients failed or were not judged: {:?}",
                slow.requested as u64 - (slow.complete + slow.lagged + slow.gap),
                slow.requested,
                slow.errors
            ));
        }
        if args.expect_lagged && slow.lagged < slow.requested as u64 {
            failed.push(format!(
                "{} of {} slow clients got a lagged resync (--expect-lagged): their buffers did not fill; \
                 more updates or a smaller --channel-capacity",
                slow.lagged, slow.requested
            ));
        }
    }
    // In a rolling restart the streams of each stopping node end, and their clients must
    // resume elsewhere with nothing missing and no resync; otherwise no stream may end.
    if args.rolling_restart {
        if r.notifications.resyncs > 0 {
            failed.push(format!("{} resyncs {:?}", r.notifications.resyncs, r.notifications.resync_reasons));
        }
        match &r.cluster {
            Some(c) => {
                for restart in &c.restarts {
                    if let Some(e) = &restart.error {
                        failed.push(format!("node {} did not come back: {e}", restart.node));
                    } else if !restart.clean_exit {
                        failed.push(format!("node {} did not shut down cleanly on SIGTERM", restart.node));
                    }
                }
                if c.restarts.len() < c.nodes.len() {
                    failed.push(format!("{} of {} nodes were restarted", c.restarts.len(), c.nodes.len()));
                }
            }
            None => failed.push(String::from("no cluster to restart")),
        }
        if r.clients.disconnected == 0 {
            failed.push(String::from("no stream ended: the restarts reached no client"));
        }
    } else if r.clients.disconnected > 0 {
        failed.push(format!("{} streams closed by the server", r.clients.disconnected));
    }
    if r.mutations.failed > 0 {
        failed.push(format!("{} mutations failed", r.mutations.failed));
    }
    if let Some(server) = &r.server {
        if !server.alive_at_end {
            failed.push(String::from("the server died"));
        }
        if server.clean_exit == Some(false) {
            failed.push(String::from("the server did not shut down cleanly"));
        }
    }
    if let Some(c) = &r.cluster
        && !args.rolling_restart
        && let Some(node) = c.nodes.iter().find(|n| n.clean_exits.iter().any(|clean| !clean))
    {
        failed.push(format!("node {} did not shut down cleanly", node.addr));
    }
    if args.server_nofile.is_none() {
        if r.clients.connected < r.clients.requested as u64 {
            failed.push(format!("{} of {} clients connected", r.clients.connected, r.clients.requested));
        }
    } else if r.clients.connected == 0 {
        failed.push(String::from("no client connected"));
    }
    if let Some(storm) = &r.storm
        && (storm.errors > 0 || storm.refetches == 0)
    {
        failed.push(format!("{} of {} refetches failed", storm.errors, storm.refetches));
    }
    failed
}

fn fmt_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The table on stdout.
pub fn print(r: &RunReport) {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
    let k = &r.knobs;
    row(
        "scenario",
        format!(
            "{} clients × {}/s for {} s ({:?}{}), {} worker process(es), {} source addresses",
            k.clients,
            k.rate,
            k.duration_s,
            k.mutation,
            match k.storm_mode {
                Some(mode) => format!(", {mode} storm over {} volumes", k.volumes.unwrap_or(0)),
                None => String::new(),
            },
            k.workers,
            k.source_addrs
        ),
    );
    let c = &r.clients;
    row(
        "clients",
        format!(
            "{} connected, {} failed{}, {} disconnected, {} panicked{}",
            c.connected,
            c.failed,
            if c.errors.is_empty() { String::new() } else { format!(" {:?}", c.errors) },
            c.disconnected,
            c.panicked,
            if c.worker_failures.is_empty() { String::new() } else { format!(" ({})", c.worker_failures.join("; ")) }
        ),
    );
    row(
        "connect time",
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; all in {:.1} s",
            c.connect.p50_ms, c.connect.p99_ms, c.connect.max_ms, c.connect_wall_s
        ),
    );
    if c.disconnected > 0 || c.reconnects > 0 {
        row(
            "reconnects",
            format!(
                "{} streams ended by the server, {} opened again on the next node (end → connected p50 {:.1} ms, \
                 p99 {:.1} ms, max {:.1} ms){}",
                c.disconnected,
                c.reconnects,
                c.reconnect.p50_ms,
                c.reconnect.p99_ms,
                c.reconnect.max_ms,
                if c.reconnect_errors.is_empty() {
                    String::new()
                } else {
                    format!("; failed attempts {:?}", c.reconnect_errors)
                }
            ),
        );
    }
    let n = &r.notifications;
    row(
        "notifications",
        format!(
            "{} published; {} expected, {} received, {} LOST, {} duplicates, {} resyncs{}",
            n.published,
            n.expected,
            n.received,
            n.lost,
            n.duplicates,
            n.resyncs,
            if n.resync_reasons.is_empty() { String::new() } else { format!(" {:?}", n.resync_reasons) }
        ),
    );
    if let Some(cluster) = &r.cluster {
        let nodes: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("{} (pids {:?}, {} warnings, {} errors)", n.addr, n.pids, n.warnings, n.errors))
            .collect();
        row(
            "cluster",
            format!(
                "{} nodes on one Redis: {}; redis-server {}",
                cluster.nodes.len(),
                nodes.join(", "),
                cluster.redis_cpu_s.map_or(String::from("–"), |c| format!("{c:.2} CPU-s in the window"))
            ),
        );
        for restart in &cluster.restarts {
            row(
                "restart",
                format!(
                    "node {} at {:.1} s: SIGTERM → exited {:.0} ms ({}), started → ready {:.0} ms, {:.0} ms in all{}",
                    restart.node,
                    restart.at_s,
                    restart.stop_ms,
                    if restart.clean_exit { "clean" } else { "UNCLEAN" },
                    restart.start_ms,
                    restart.total_ms,
                    restart.error.as_ref().map(|e| format!(": FAILED {e}")).unwrap_or_default()
                ),
            );
        }
    }
    if let Some(users) = &n.audience {
        row(
            "audience",
            format!(
                "clients signed in as {}: {} notifications checked against what their user may see, {} LEAKED",
                users.join(", "),
                n.audience_checked,
                n.leaked
            ),
        );
    }
    if let Some(s) = &r.slow_clients {
        row(
            "slow clients",
            format!(
                "{} stalled through the window: {} got everything, {} a lagged resync{}, {} a SILENT GAP, {} failed{}",
                s.requested,
                s.complete,
                s.lagged,
                s.before_resync.map(|(lo, hi)| format!(" (after {lo}–{hi} updates)")).unwrap_or_default(),
                s.gap,
                s.failed,
                if s.errors.is_empty() { String::new() } else { format!(" {:?}", s.errors) }
            ),
        );
    }
    let l = &r.latency;
    row(
        "delivery latency",
        format!(
            "p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2} ms",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        ),
    );
    let mu = &r.mutations;
    row(
        "mutations",
        format!(
            "{} sent, {} ok, {} failed, {} retries after a 503; p50 {:.1} ms, p99 {:.1} ms{}",
            mu.sent,
            mu.ok,
            mu.failed,
            mu.retried,
            mu.latency.p50_ms,
            mu.latency.p99_ms,
            mu.first_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    );
    if let Some(s) = &r.server {
        row(
            "server memory",
            format!(
                "{} idle → {} with clients ({:.2} KiB per connection), {} at the end; {} fds",
                fmt_bytes(s.rss_idle_kib * 1024),
                fmt_bytes(s.rss_connected_kib * 1024),
                s.kib_per_connection,
                fmt_bytes(s.rss_end_kib * 1024),
                s.fds_connected
            ),
        );
        let threads: Vec<String> =
            s.threads.iter().take(4).map(|t| format!("{} {:.2} s", t.name.trim(), t.cpu_s)).collect();
        row(
            "server CPU",
            format!(
                "{:.2} s in the window, {:.2} µs per delivered notification; threads: {}",
                s.cpu_s,
                s.cpu_us_per_notification,
                threads.join(", ")
            ),
        );
        row(
            "generator CPU",
            format!(
                "{:.2} s in the window, {:.2} µs per received notification (the load generator's own cost)",
                s.generator_cpu_s, s.generator_cpu_us_per_notification
            ),
        );
        row(
            "server health",
            format!(
                "{}, {} warnings, {} errors in its log{}",
                if s.alive_at_end { "alive" } else { "DEAD" },
                s.log_warnings,
                s.log_errors,
                match s.clean_exit {
                    Some(true) => ", clean shutdown",
                    Some(false) => ", UNCLEAN shutdown",
                    None => "",
                }
            ),
        );
        if !s.log_samples.is_empty() {
            row("server log", s.log_samples.join(" | "));
        }
        row("bytes written", fmt_bytes(s.bytes_written));
    }
    if let Some(u) = &r.upstream {
        let by: Vec<String> = u.requests.iter().map(|(k, v)| format!("{k} {v}")).collect();
        row("upstream requests", format!("{} in the window: {}", u.total, by.join(", ")));
    }
    if let Some(p) = &r.poll {
        row(
            "poller alone",
            format!(
                "{:.2} CPU-s in {:.1} s for {} polls = {:.1} ms per poll interval",
                p.cpu_s, p.window_s, p.polls, p.cpu_ms_per_poll
            ),
        );
    }
    if let Some(s) = &r.storm {
        row(
            "refetches",
            format!(
                "{} ({} × 200, {} × 304, {} failed), {} of bodies ({} mean), {} with headers = {:.0} B per client per change, encodings {:?}",
                s.refetches,
                s.ok,
                s.not_modified,
                s.errors,
                fmt_bytes(s.body_bytes),
                fmt_bytes(s.mean_body_bytes),
                fmt_bytes(s.wire_bytes),
                s.wire_bytes_per_client_change,
                s.encodings
            ),
        );
        if s.mode == StormMode::Delta {
            row("changes answers", format!("{} records as upserts, {} resync answers", s.upserts, s.resync_answers));
        }
        let a = &s.applied;
        row(
            "change applied",
            format!(
                "publish → at the client: p50 {:.1} ms, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1} ms",
                a.p50_ms, a.p90_ms, a.p99_ms, a.p999_ms, a.max_ms
            ),
        );
        if let Some(cpu) = s.cpu_ms_per_change {
            row("server CPU per change", format!("{cpu:.1} ms"));
        }
        let l = &s.latency;
        row(
            "refetch latency",
            format!(
                "p50 {:.1} ms, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            ),
        );
    }
    for (key, path) in &r.outputs {
        row(key, path.clone());
    }
    let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    println!("\n{}", r.name);
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
}

fn plot_over_time(r: &RunReport, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = r.per_second.last().map_or(1, |s| s.second + 1) as f64;
    let y_max = r.per_second.iter().map(|s| s.max_ms).fold(1.0f64, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: delivery latency per second", r.name), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart.configure_mesh().x_desc("seconds since the first mutation").y_desc("latency (ms)").draw()?;
    type Series = (&'static str, RGBColor, fn(&Second) -> f64);
    let series: [Series; 3] = [("max", RED, |s| s.max_ms), ("p99", BLUE, |s| s.p99_ms), ("p50", GREEN, |s| s.p50_ms)];
    for (label, color, value) in series {
        chart
            .draw_series(LineSeries::new(r.per_second.iter().map(|s| (s.second as f64 + 0.5, value(s))), &color))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

fn plot_histogram(name: &str, h: &Histogram<u64>, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    // Up to p99.9 (and a bit), in 60 equal bins; the tail beyond is one last bin.
    let top_us = (h.value_at_quantile(0.999) as f64 * 1.2).max(100.0);
    let bins = 60usize;
    let width_us = top_us / bins as f64;
    let mut counts = vec![0u64; bins + 1];
    for v in h.iter_recorded() {
        let i = ((v.value_iterated_to() as f64 / width_us) as usize).min(bins);
        counts[i] += v.count_at_value();
    }
    let y_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let x_max = (bins + 1) as f64 * width_us / 1000.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: delivery latency histogram (last bin: ≥ {:.1} ms)", top_us / 1000.0),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart.configure_mesh().x_desc("latency (ms)").y_desc("notifications").draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, count)| {
        let x0 = i as f64 * width_us / 1000.0;
        let x1 = (i + 1) as f64 * width_us / 1000.0;
        Rectangle::new([(x0, 0.0), (x1, *count as f64)], BLUE.mix(0.7).filled())
    }))?;
    root.present()?;
    Ok(())
}
