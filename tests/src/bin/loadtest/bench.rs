//! `loadtest bench`: the standard matrix, one fresh server (or cluster) per scenario,
//! written to `tests/load/RESULTS.md` with the machine it ran on and whether each target
//! was met. The cluster scenarios are compared with a single node's run of the same
//! bench, so that before and after come from one session on one machine.
//!
//! Only the part between the `bench:begin` and `bench:end` markers is rewritten; notes
//! written by hand around it (profiling findings) stay.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;

use crate::report::{self, RunReport};
use crate::{Mutation, RunArgs, StormMode};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where the results go.
    #[arg(long, default_value = "tests/load/RESULTS.md")]
    pub results: PathBuf,
    /// How long each scenario sends mutations.
    #[arg(long, value_parser = crate::duration, default_value = "30s")]
    pub duration: Duration,
    /// Only the scenarios whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// The stalecast binary to start [the release build next to this tool].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Where the JSON, plots and logs go.
    #[arg(long, default_value = "tests/load/out")]
    pub out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

/// A target a scenario must meet.
#[derive(Default)]
struct Targets {
    /// Notification delivery p99.
    p99_ms: Option<f64>,
    kib_per_connection: Option<f64>,
    cpu_us: Option<f64>,
    /// Storms: change applied (publish → at the client) p99.
    applied_p99_ms: Option<f64>,
    /// Storms: response bytes per client per change.
    wire_kib_per_change: Option<f64>,
    /// Mutation latency p99 during the run.
    mutation_p99_ms: Option<f64>,
    /// Clusters: how much later than in this single-node scenario of the same bench the
    /// median notification may arrive (ms): the cost of the Redis hop.
    redis_hop: Option<(&'static str, f64)>,
}

struct Scenario {
    name: &'static str,
    clients: usize,
    rate: f64,
    storm: Option<StormMode>,
    /// Clients signed in as these users in turn (`user:password`), each notification
    /// checked against what its user may see; none: every client is the admin.
    audience: &'static [&'static str],
    /// Nodes on one Redis (1: a single server without Redis).
    nodes: u16,
    /// Restart the nodes one at a time during the run.
    rolling_restart: bool,
    targets: Targets,
}

/// The simulator's three users over its three projects: admin (every project), alice
/// (member of web-team), bob (reader of data-team).
const THREE_USERS: &[&str] = &["admin:stalecast", "alice:alice", "bob:bob"];

/// The scenario the filtered one is compared with, and the filtered one: the same load,
/// every client the admin, then clients of three users.
const UNFILTERED: &str = "fanout-2000c-10ps";
const FILTERED: &str = "fanout-2000c-10ps-3users";
/// The rolling restart's pause before each node: three nodes restart within a 30 s run.
const ROLLING_RESTART_PAUSE: Duration = Duration::from_secs(5);

/// How much more server CPU per notification the filtered run may cost.
const FILTER_OVERHEAD: f64 = 0.10;
/// The unfiltered load at the rate alice's and bob's clients hear of updates in the
/// filtered run (one project of three: one update every 300 ms).
///
/// Why it is run: on loopback the server's CPU per notification depends on how often
/// each stream hears of one. A stream that hears nothing for longer than the client's
/// minimum retransmission timeout (200 ms on Linux) gets the next notification
/// acknowledged at once ("quick ACK") instead of by the delayed-ACK timer, and on
/// loopback that acknowledgement, the client's kernel work and the server's, runs inside
/// the server's `write`. Measured back to back (2,000 admin clients, 30 s, release
/// build, per delivered notification): 6.7 µs at 10/s, 7.1 at 6/s, 6.6 at 5.56/s, 8.3 at
/// 4/s, 10.8 at 3.33/s; `perf` shows `tcp_ack` and `__release_sock` (acknowledgements
/// that arrived while the server held the socket) growing from 0.7 % to 15 % of the
/// server's samples between 10/s and 3.33/s. So the filtered run, where two thirds of
/// the streams hear 3.33 updates a second, is also compared with what unfiltered streams
/// at the same rates cost: that difference is what deciding by rooms costs.
const SPARSE: &str = "fanout-2000c-3.3ps";

/// The volumes every storm runs over (realistic records, seeded through the simulator).
const STORM_VOLUMES: usize = 36_000;

const NO_TARGETS: Targets = Targets {
    p99_ms: None,
    kib_per_connection: None,
    cpu_us: None,
    applied_p99_ms: None,
    wire_kib_per_change: None,
    mutation_p99_ms: None,
    redis_hop: None,
};

/// The single node the clusters are compared with: 6,000 clients at 10/s, one node's
/// share of `cluster-3n-18000c-10ps` and all of `cluster-3n-6000c-10ps`.
const SINGLE_NODE: &str = "fanout-6000c-10ps";
/// The light single node `cluster-3n-600c-10ps` is compared with.
const LIGHT_SINGLE_NODE: &str = "fanout-600c-10ps";
/// What the Redis hop may add to the median delivery.
const REDIS_HOP_P50_MS: f64 = 2.0;

const MATRIX: [Scenario; 14] = [
    Scenario {
        name: UNFILTERED,
        clients: 2000,
        rate: 10.0,
        storm: None,
        audience: &[],
        nodes: 1,
        rolling_restart: false,
        targets: Targets { p99_ms: Some(15.0), kib_per_connection: Some(10.0), cpu_us: Some(8.0), ..NO_TARGETS },
    },
    // The same, clients signed in as three users: each hears only of its user's projects.
    Scenario {
        name: FILTERED,
        clients: 2000,
        rate: 10.0,
        storm: None,
        audience: THREE_USERS,
        nodes: 1,
        rolling_restart: false,
        targets: Targets { p99_ms: Some(15.0), kib_per_connection: Some(10.0), ..NO_TARGETS },
    },
    Scenario {
        name: SPARSE,
        clients: 2000,
        rate: 10.0 / 3.0,
        storm: None,
        audience: &[],
        nodes: 1,
        rolling_restart: false,
        targets: NO_TARGETS,
    },
    Scenario {
        name: "fanout-10000c-2ps",
        clients: 10_000,
        rate: 2.0,
        storm: None,
        audience: &[],
        nodes: 1,
        rolling_restart: false,
        targets: Targets { p99_ms: Some(80.0), ..NO_TARGETS },
    },
    Scenario {
        name: "fanout-19000c-1ps",
        clients: 19_000,
        rate: 1.0,
        storm: None,
        audience: &[],
        nodes: 1,
        rolling_restart: false,
        targets: NO_TARGETS,
    },
    Scenario {
        name: "storm-full-2000c-1ps",
        clients: 2000,
        rate: 1.0,
        audience: &[],
        nodes: 1,
        rolling_restart: false,
        storm: Some(StormMode::Full),
        targets: Targets { mutation_p99_ms: Some(300.0), ..NO_TARGETS },
    },
    Scenario {
        name: "storm-delta-2000c-10ps",
        clients: 2000,
        rate: 10.0,
        audience: &[],
        nodes: 1,
        rolling_restart: false,
        storm: Some(StormMode::Delta),
        targets: Targets {
            p99_ms: Some(50.0),
            applied_p99_ms: Some(300.0),
            wire_kib_per_change: Some(4.0),
            mutation_p99_ms: Some(150.0),
            ..NO_TARGETS
        },
    },
    Scenario {
        name: "storm-paged-2000c-10ps",
        clients: 2000,
        rate: 10.0,
        audience: &[],
        nodes: 1,
        rolling_restart: false,
        storm: Some(StormMode::Paged),
        targets: Targets { applied_p99_ms: Some(300.0), wire_kib_per_change: Some(40.0), ..NO_TARGETS },
    },
    // A light load, one node then three: the fan-out costs little, so the difference
    // is the Redis hop itself (publish script, the nodes' blocking read, applying).
    Scenario {
        name: LIGHT_SINGLE_NODE,
        clients: 600,
        rate: 10.0,
        storm: None,
        audience: &[],
        nodes: 1,
        rolling_restart: false,
        targets: NO_TARGETS,
    },
    Scenario {
        name: "cluster-3n-600c-10ps",
        clients: 600,
        rate: 10.0,
        storm: None,
        audience: &[],
        nodes: 3,
        rolling_restart: false,
        targets: Targets { redis_hop: Some((LIGHT_SINGLE_NODE, REDIS_HOP_P50_MS)), ..NO_TARGETS },
    },
    // One node's share of the cluster's load, alone: what the clusters are compared with.
    Scenario {
        name: SINGLE_NODE,
        clients: 6000,
        rate: 10.0,
        storm: None,
        audience: &[],
        nodes: 1,
        rolling_restart: false,
        targets: NO_TARGETS,
    },
    // The same 6,000 clients over three nodes on one Redis: the same work in all as the
    // single node, so that on a machine whose CPUs every node shares the difference is
    // the Redis hop rather than three times the fan-out.
    Scenario {
        name: "cluster-3n-6000c-10ps",
        clients: 6000,
        rate: 10.0,
        storm: None,
        audience: &[],
        nodes: 3,
        rolling_restart: false,
        targets: Targets { redis_hop: Some((SINGLE_NODE, REDIS_HOP_P50_MS)), ..NO_TARGETS },
    },
    // Three nodes each carrying the single node's load: 18,000 clients in one load
    // generator (one process may hold 20,000 descriptors).
    Scenario {
        name: "cluster-3n-18000c-10ps",
        clients: 18_000,
        rate: 10.0,
        storm: None,
        audience: &[],
        nodes: 3,
        rolling_restart: false,
        targets: Targets { redis_hop: Some((SINGLE_NODE, REDIS_HOP_P50_MS)), ..NO_TARGETS },
    },
    // The nodes restarted one at a time while the mutations flow: every client of a
    // stopping node resumes on the next one with its Last-Event-ID. The run's verdict
    // holds the targets: 0 lost, 0 resync, every node back.
    Scenario {
        name: "cluster-rolling-restart",
        clients: 6000,
        rate: 10.0,
        storm: None,
        audience: &[],
        nodes: 3,
        rolling_restart: true,
        targets: NO_TARGETS,
    },
];

/// Whether the bench runs `scenario`: it was asked for (`--only`), or a scenario that
/// was is compared with it.
fn selected(scenario: &Scenario, only: Option<&str>) -> bool {
    let Some(only) = only else { return true };
    scenario.name.contains(only)
        || MATRIX
            .iter()
            .any(|s| s.name.contains(only) && s.targets.redis_hop.is_some_and(|(base, _)| base == scenario.name))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = SystemTime::now();
    let mut results = Vec::new();
    for scenario in MATRIX.iter().filter(|s| selected(s, args.only.as_deref())) {
        tracing::info!(scenario = scenario.name, "bench scenario");
        let run = RunArgs {
            user: String::from("admin"),
            password: String::from("stalecast"),
            audience: scenario.audience.iter().map(|u| u.to_string()).collect(),
            clients: scenario.clients,
            rate: scenario.rate,
            duration: args.duration,
            mutation: if scenario.storm.is_some() { Mutation::Volumes } else { Mutation::Servers },
            storm: scenario.storm.is_some(),
            storm_mode: scenario.storm.unwrap_or(StormMode::Full),
            page_size: 50,
            volumes: STORM_VOLUMES,
            accept_encoding: String::from("br, gzip"),
            no_conditional: false,
            targets: Vec::new(),
            nodes: scenario.nodes,
            rolling_restart: scenario.rolling_restart,
            restart_pause: ROLLING_RESTART_PAUSE,
            server_pid: None,
            sim_url: None,
            server_bin: args.server_bin.clone(),
            server_nofile: None,
            server_args: Vec::new(),
            source_addrs: 8,
            clients_per_worker: None,
            connect_concurrency: 512,
            connect_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(if scenario.storm.is_some() { 120 } else { 15 }),
            // A stalled client's stream ends in a restart: it could not be judged.
            slow_clients: if scenario.storm.is_some() || scenario.rolling_restart { 0 } else { 10 },
            expect_lagged: false,
            out: args.out.clone(),
            name: Some(scenario.name.to_owned()),
            assert: false,
            no_progress: args.no_progress,
        };
        let report = crate::run::run(&run).await.with_context(|| format!("scenario {}", scenario.name))?;
        report::print(&report);
        let failures = report::verdict(&run, &report);
        results.push((scenario, report, failures));
        // Let the kernel settle the previous run's sockets.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if let Some(line) = filtering_cost(&results) {
        println!("{line}");
    }
    // The clusters against the single node, with their verdicts, as RESULTS.md gets them.
    let mut clusters = String::new();
    render_clusters(&mut clusters, &results);
    if !clusters.is_empty() {
        println!("{clusters}");
    }
    let markdown = render(&results, started, &load_before);
    write_results(&args.results, &markdown)?;
    tracing::info!(path = %args.results.display(), "results written");
    Ok(())
}

/// The server's CPU per notification with and without rooms, side by side, from the runs
/// of this bench (`None` unless both ran): against the unfiltered run as is, and, when
/// [`SPARSE`] ran too, against unfiltered streams that hear of updates as often as each
/// filtered stream does (admin's clients every update, the others' one in three).
fn filtering_cost(results: &[(&Scenario, RunReport, Vec<String>)]) -> Option<String> {
    let of = |name: &str| results.iter().find(|(s, _, _)| s.name == name).map(|(_, r, _)| r);
    let (plain, filtered) = (of(UNFILTERED)?, of(FILTERED)?);
    let cpu = |r: &RunReport| r.server.as_ref().map(|s| s.cpu_us_per_notification);
    let (a, b) = (cpu(plain)?, cpu(filtered)?);
    let verdict = |change: f64| if change <= FILTER_OVERHEAD { "met" } else { "**missed**" };
    let change = if a > 0.0 { b / a - 1.0 } else { 0.0 };
    let mut line = format!(
        "Rooms: server CPU per delivered notification {a:.2} µs unfiltered ({UNFILTERED}) vs {b:.2} µs with clients of \
         three users over three projects ({FILTERED}): {:+.1} % (target: within {:.0} %, {}); {} notifications \
         checked against their audience, {} leaked, {} lost.",
        change * 100.0,
        FILTER_OVERHEAD * 100.0,
        verdict(change),
        filtered.notifications.audience_checked,
        filtered.notifications.leaked,
        filtered.notifications.lost
    );
    if let Some(c) = of(SPARSE).and_then(cpu) {
        // The admin is the first of the users clients sign in as in turn, and hears of
        // every update; the rest of the notifications went to the others' clients.
        let n = &filtered.notifications;
        let admin_clients = filtered.knobs.clients.div_ceil(THREE_USERS.len()) as f64;
        let admin_share = (admin_clients * n.published as f64 / n.received.max(1) as f64).min(1.0);
        let expected = admin_share * a + (1.0 - admin_share) * c;
        let change = if expected > 0.0 { b / expected - 1.0 } else { 0.0 };
        let _ = write!(
            line,
            " At the same rates per stream ({:.0} % of the notifications to streams hearing every update at {a:.2} µs, \
             the rest to streams hearing one in three, {c:.2} µs unfiltered in {SPARSE}): {expected:.2} µs expected, \
             {b:.2} µs measured, {:+.1} % ({}).",
            admin_share * 100.0,
            change * 100.0,
            verdict(change)
        );
    }
    Some(line)
}

fn render(results: &[(&Scenario, RunReport, Vec<String>)], started: SystemTime, load_before: &str) -> String {
    let mut md = String::new();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| String::from("unknown"));
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned())))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(md, "Generated by `make bench` on {}.\n", humantime::format_rfc3339_seconds(started));
    let _ = writeln!(
        md,
        "Machine: {nproc} CPUs ({cpu_model}), {mem} memory, Linux {}, load average before the run {}. \
         Server, simulator and load generator share these CPUs.\n",
        kernel.trim(),
        load_before.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let _ = writeln!(
        md,
        "| scenario | connected | lost | p50 ms | p99 ms | p99.9 ms | max ms | KiB/conn | µs CPU/notification | upstream requests | targets |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (scenario, r, failures) in results {
        let (kib, cpu) = r.server.as_ref().map_or((String::from("–"), String::from("–")), |s| {
            (format!("{:.2}", s.kib_per_connection), format!("{:.2}", s.cpu_us_per_notification))
        });
        let upstream = r.upstream.as_ref().map_or(String::from("–"), |u| u.total.to_string());
        let missed = missed_targets(scenario, r, failures, results);
        let _ = writeln!(
            md,
            "| {} | {}/{} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {kib} | {cpu} | {upstream} | {} |",
            scenario.name,
            r.clients.connected,
            r.clients.requested,
            r.notifications.lost,
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.latency.p999_ms,
            r.latency.max_ms,
            if missed.is_empty() { String::from("met") } else { format!("**missed**: {}", missed.join("; ")) }
        );
    }
    if let Some(line) = filtering_cost(results) {
        let _ = writeln!(md, "\n{line}");
    }
    let storms: Vec<_> = results.iter().filter(|(_, r, _)| r.storm.is_some()).collect();
    if !storms.is_empty() {
        let _ = writeln!(
            md,
            "\nThe storms side by side ({STORM_VOLUMES} realistic volumes; every client shows the volumes):\n\n\
             | scenario | B per client per change | change applied p50 / p99 ms | notification p99 ms | \
             mutation p50 / p99 ms | server CPU per change | poller CPU per interval | upstream requests | targets |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for (scenario, r, failures) in storms {
            let Some(s) = &r.storm else { continue };
            let missed = missed_targets(scenario, r, failures, results);
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.1} / {:.1} | {:.1} | {:.1} / {:.1} | {} | {} | {} | {} |",
                scenario.name,
                s.wire_bytes_per_client_change,
                s.applied.p50_ms,
                s.applied.p99_ms,
                r.latency.p99_ms,
                r.mutations.latency.p50_ms,
                r.mutations.latency.p99_ms,
                s.cpu_ms_per_change.map_or(String::from("–"), |c| format!("{c:.1} ms")),
                r.poll.as_ref().map_or(String::from("–"), |p| format!("{:.1} ms", p.cpu_ms_per_poll)),
                r.upstream.as_ref().map_or(String::from("–"), |u| u.total.to_string()),
                if missed.is_empty() { String::from("met") } else { format!("**missed**: {}", missed.join("; ")) }
            );
        }
    }
    render_clusters(&mut md, results);
    for (scenario, r, _) in results {
        let _ = writeln!(md, "\n### {}\n", scenario.name);
        let _ = writeln!(
            md,
            "- {} clients ({} connected, {} failed) over {} worker process(es) and {} source addresses; \
             connect p50 {:.1} ms, p99 {:.1} ms, all in {:.1} s.",
            r.clients.requested,
            r.clients.connected,
            r.clients.failed,
            r.knobs.workers,
            r.knobs.source_addrs,
            r.clients.connect.p50_ms,
            r.clients.connect.p99_ms,
            r.clients.connect_wall_s
        );
        let n = &r.notifications;
        let _ = writeln!(
            md,
            "- {} mutations ({} failed, {} retries after a 503) → {} updates published in {:.1} s; {} notifications \
             expected, {} received, {} lost, {} duplicates, {} resyncs; {}.",
            r.mutations.sent,
            r.mutations.failed,
            r.mutations.retried,
            n.published,
            n.window_s,
            n.expected,
            n.received,
            n.lost,
            n.duplicates,
            n.resyncs,
            r.slow_clients.as_ref().map_or(String::from("no stalled clients"), |s| format!(
                "{} clients stalled through the window: {} then got every update, {} a lagged resync, {} a silent gap, \
                 {} failed",
                s.requested, s.complete, s.lagged, s.gap, s.failed
            ))
        );
        let l = &r.latency;
        let _ = writeln!(
            md,
            "- Delivery latency (publish `ts` → arrival): p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2} ms.",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
        if let Some(s) = &r.server {
            let threads: Vec<String> =
                s.threads.iter().take(4).map(|t| format!("{} {:.2} s", t.name.trim(), t.cpu_s)).collect();
            let _ = writeln!(
                md,
                "- Server: RSS {} KiB idle → {} KiB connected ({:.2} KiB per connection), {} KiB at the end; \
                 {:.2} CPU-s in the window = {:.2} µs per delivered notification (busiest threads: {}); \
                 {} log warnings; {}.",
                s.rss_idle_kib,
                s.rss_connected_kib,
                s.kib_per_connection,
                s.rss_end_kib,
                s.cpu_s,
                s.cpu_us_per_notification,
                threads.join(", "),
                s.log_warnings,
                if s.clean_exit == Some(true) { "clean shutdown" } else { "no clean shutdown" }
            );
            let _ = writeln!(
                md,
                "- Load generator (same CPUs): {:.2} CPU-s in the window = {:.2} µs per received notification.",
                s.generator_cpu_s, s.generator_cpu_us_per_notification
            );
        }
        if let Some(c) = &r.cluster {
            let _ = writeln!(
                md,
                "- Cluster: {} nodes on one redis-server ({} CPU-s in the window); clients spread round robin, \
                 mutations through the nodes in turn; the server figures above are the nodes' summed.",
                c.nodes.len(),
                c.redis_cpu_s.map_or(String::from("–"), |s| format!("{s:.2}"))
            );
        }
        if r.clients.disconnected > 0 || r.clients.reconnects > 0 {
            let c = &r.clients;
            let _ = writeln!(
                md,
                "- Reconnects: {} streams ended by the server, {} opened again on the next node with their \
                 Last-Event-ID (end → connected p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms); failed attempts {:?}; \
                 resyncs {:?}.",
                c.disconnected,
                c.reconnects,
                c.reconnect.p50_ms,
                c.reconnect.p99_ms,
                c.reconnect.max_ms,
                c.reconnect_errors,
                r.notifications.resync_reasons
            );
        }
        if let Some(u) = &r.upstream {
            let by: Vec<String> = u.requests.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(md, "- Upstream requests in the window: {} ({}).", u.total, by.join(", "));
        }
        if let Some(p) = &r.poll {
            let _ = writeln!(
                md,
                "- Poller alone, before the clients came: {:.2} CPU-s in {:.1} s for {} poll intervals = {:.1} ms \
                 of server CPU per poll interval (all five collections; the volumes in pages of 1,000).",
                p.cpu_s, p.window_s, p.polls, p.cpu_ms_per_poll
            );
        }
        if let Some(s) = &r.storm {
            let what = match s.mode {
                StormMode::Full => String::from("refetch of `storage.volumes.list`"),
                StormMode::Delta => String::from("`storage.volumes.changes` since the client's seq, applied"),
                StormMode::Paged => format!("refetch of page 1 of `storage.volumes.page` ({} rows)", r.knobs.page_size),
            };
            let m = &r.mutations.latency;
            let _ = writeln!(
                md,
                "- Storm ({} mode, {} volumes): each client's {what} on every `volumes` notification: {} requests \
                 ({} × 200, {} × 304, {} failed), {:.1} MiB of bodies ({} B mean, encodings {:?}), {:.1} MiB with \
                 headers = **{:.0} B per client per change**; change applied (publish → at the client) p50 {:.1} ms, \
                 p99 **{:.1} ms**, max {:.1} ms; request latency (arrival → answer) p99 {:.1} ms; mutations p50 \
                 {:.1} ms, p99 **{:.1} ms**; server CPU {} per change.{}",
                s.mode,
                r.knobs.volumes.unwrap_or(0),
                s.refetches,
                s.ok,
                s.not_modified,
                s.errors,
                s.body_bytes as f64 / (1u64 << 20) as f64,
                s.mean_body_bytes,
                s.encodings,
                s.wire_bytes as f64 / (1u64 << 20) as f64,
                s.wire_bytes_per_client_change,
                s.applied.p50_ms,
                s.applied.p99_ms,
                s.applied.max_ms,
                s.latency.p99_ms,
                m.p50_ms,
                m.p99_ms,
                s.cpu_ms_per_change.map_or(String::from("–"), |c| format!("{c:.1} ms")),
                if s.mode == StormMode::Delta {
                    format!(" {} records came as upserts, {} answers were resyncs.", s.upserts, s.resync_answers)
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(
            md,
            "- Plots: `out/{0}-latency.svg`, `out/{0}-histogram.svg` (not committed; `make bench` writes them).",
            scenario.name
        );
    }
    md
}

/// A cluster's median delivery against its single-node scenario's of the same bench:
/// (that scenario's report, the hop: how much later the median notification arrived).
fn redis_hop<'a>(
    scenario: &Scenario,
    r: &RunReport,
    results: &'a [(&Scenario, RunReport, Vec<String>)],
) -> Option<(&'a RunReport, f64)> {
    let (base, _) = scenario.targets.redis_hop?;
    let single = results.iter().find(|(s, _, _)| s.name == base).map(|(_, r, _)| r)?;
    Some((single, r.latency.p50_ms - single.latency.p50_ms))
}

/// The clusters beside the single node, and the rolling restart node by node.
fn render_clusters(md: &mut String, results: &[(&Scenario, RunReport, Vec<String>)]) {
    let clusters: Vec<_> = results.iter().filter(|(s, _, _)| s.nodes > 1).collect();
    if clusters.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nClusters: nodes on one Redis, each client streaming from one node (round robin), mutations through the \
         nodes in turn; delivery beside a single node's in this bench: {SINGLE_NODE} carries one node's share of \
         cluster-3n-18000c-10ps and all of cluster-3n-6000c-10ps, {LIGHT_SINGLE_NODE} all of cluster-3n-600c-10ps \
         (a load light enough that what differs is the Redis hop). The Redis hop may add {REDIS_HOP_P50_MS} ms at \
         p50. Every node, Redis, the simulator and the load generator share the machine's CPUs.\n\n\
         | scenario | nodes | clients | lost | resyncs | p50 / p99 ms | single node p50 / p99 ms | Redis hop at p50 | \
         reconnects | targets |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (scenario, r, failures) in &clusters {
        let (single, hop) = match redis_hop(scenario, r, results) {
            Some((single, hop)) => (
                format!("{:.2} / {:.2} ({})", single.latency.p50_ms, single.latency.p99_ms, single.name),
                format!("{hop:+.2} ms"),
            ),
            None => (String::from("–"), String::from("–")),
        };
        let missed = missed_targets(scenario, r, failures, results);
        let _ = writeln!(
            md,
            "| {} | {} | {}/{} | {} | {} | {:.2} / {:.2} | {single} | {hop} | {} | {} |",
            scenario.name,
            scenario.nodes,
            r.clients.connected,
            r.clients.requested,
            r.notifications.lost,
            r.notifications.resyncs,
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.clients.reconnects,
            if missed.is_empty() { String::from("met") } else { format!("**missed**: {}", missed.join("; ")) }
        );
    }
    for (scenario, r, _) in &clusters {
        let Some(c) = r.cluster.as_ref().filter(|c| !c.restarts.is_empty()) else { continue };
        let nodes: Vec<String> = c
            .restarts
            .iter()
            .map(|x| match &x.error {
                Some(e) => format!("node {} at {:.1} s did not come back ({e})", x.node, x.at_s),
                None => format!(
                    "node {} at {:.1} s: SIGTERM → exited {:.0} ms{}, started → ready {:.0} ms ({:.0} ms in all)",
                    x.node,
                    x.at_s,
                    x.stop_ms,
                    if x.clean_exit { "" } else { " (not cleanly)" },
                    x.start_ms,
                    x.total_ms
                ),
            })
            .collect();
        let _ = writeln!(
            md,
            "\nRolling restart ({}): {}. {} streams ended, {} resumed on the next node (end → connected p50 {:.1} ms, \
             p99 {:.1} ms); {} lost, {} resyncs{} (target: 0 lost, 0 resync).",
            scenario.name,
            nodes.join("; "),
            r.clients.disconnected,
            r.clients.reconnects,
            r.clients.reconnect.p50_ms,
            r.clients.reconnect.p99_ms,
            r.notifications.lost,
            r.notifications.resyncs,
            if r.notifications.resync_reasons.is_empty() {
                String::new()
            } else {
                format!(" {:?}", r.notifications.resync_reasons)
            }
        );
    }
}

/// The targets of issue "the load test" that this run missed.
fn missed_targets(
    scenario: &Scenario,
    r: &RunReport,
    failures: &[String],
    results: &[(&Scenario, RunReport, Vec<String>)],
) -> Vec<String> {
    let mut missed: Vec<String> = failures.to_vec();
    let t = &scenario.targets;
    if let Some((base, max)) = t.redis_hop {
        match redis_hop(scenario, r, results) {
            Some((_, hop)) if hop > max => missed.push(format!("Redis hop {hop:+.2} ms at p50 > {max} ms")),
            Some(_) => {}
            None => missed.push(format!("no {base} run in this bench to compare with")),
        }
    }
    if let Some(max) = t.p99_ms
        && r.latency.p99_ms >= max
    {
        missed.push(format!("p99 {:.1} ≥ {max} ms", r.latency.p99_ms));
    }
    if let Some(max) = t.mutation_p99_ms
        && r.mutations.latency.p99_ms > max
    {
        missed.push(format!("mutation p99 {:.1} > {max} ms", r.mutations.latency.p99_ms));
    }
    if let Some(s) = &r.storm {
        if let Some(max) = t.applied_p99_ms
            && s.applied.p99_ms > max
        {
            missed.push(format!("applied p99 {:.1} > {max} ms", s.applied.p99_ms));
        }
        if let Some(max) = t.wire_kib_per_change
            && s.wire_bytes_per_client_change > max * 1024.0
        {
            missed.push(format!("{:.1} > {max} KiB per client per change", s.wire_bytes_per_client_change / 1024.0));
        }
        if s.resync_answers > 0 {
            missed.push(format!("{} changes answers were resyncs", s.resync_answers));
        }
    }
    if let Some(s) = &r.server {
        if let Some(max) = t.kib_per_connection
            && s.kib_per_connection > max
        {
            missed.push(format!("{:.1} > {max} KiB/conn", s.kib_per_connection));
        }
        if let Some(max) = t.cpu_us
            && s.cpu_us_per_notification >= max
        {
            missed.push(format!("{:.1} ≥ {max} µs CPU", s.cpu_us_per_notification));
        }
    }
    missed
}

const BEGIN: &str = "<!-- bench:begin (written by `make bench`; do not edit between these markers) -->";
const END: &str = "<!-- bench:end -->";

fn write_results(path: &PathBuf, generated: &str) -> anyhow::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{generated}{END}");
    let text = match (existing.find("<!-- bench:begin"), existing.find(END)) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{block}{}", &existing[..start], &existing[end + END.len()..])
        }
        _ => format!("# Load-test results\n\n{block}\n"),
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> &'static Scenario {
        MATRIX.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no scenario {name}"))
    }

    #[test]
    fn a_cluster_scenario_brings_the_single_node_it_is_compared_with() {
        let chosen =
            |only: &str| -> Vec<&str> { MATRIX.iter().filter(|s| selected(s, Some(only))).map(|s| s.name).collect() };
        assert_eq!(chosen("cluster-3n-18000c"), [SINGLE_NODE, "cluster-3n-18000c-10ps"]);
        assert_eq!(chosen("cluster-3n-600c"), [LIGHT_SINGLE_NODE, "cluster-3n-600c-10ps"]);
        assert_eq!(chosen("cluster-rolling-restart"), ["cluster-rolling-restart"]);
        assert_eq!(chosen("fanout-2000c-10ps-3users"), [FILTERED]);
        assert!(MATRIX.iter().all(|s| selected(s, None)));
        // Every baseline named is a single node of the matrix.
        for s in &MATRIX {
            if let Some((base, _)) = s.targets.redis_hop {
                assert_eq!(named(base).nodes, 1, "{} is compared with {base}", s.name);
                assert!(s.nodes > 1);
            }
        }
        assert_eq!(named("cluster-3n-18000c-10ps").clients / 3, named(SINGLE_NODE).clients, "one node's share");
    }
}
