//! `loadtest bench`: the standard matrix, one fresh server per scenario, written to
//! `tests/load/RESULTS.md` with the machine it ran on and whether each target was met.
//!
//! Only the part between the `bench:begin` and `bench:end` markers is rewritten; notes
//! written by hand around it (profiling findings) stay.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;

use crate::report::{self, RunReport};
use crate::{Mutation, RunArgs};

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
struct Targets {
    p99_ms: Option<f64>,
    kib_per_connection: Option<f64>,
    cpu_us: Option<f64>,
}

struct Scenario {
    name: &'static str,
    clients: usize,
    rate: f64,
    storm: bool,
    targets: Targets,
}

const MATRIX: [Scenario; 4] = [
    Scenario {
        name: "fanout-2000c-10ps",
        clients: 2000,
        rate: 10.0,
        storm: false,
        targets: Targets { p99_ms: Some(15.0), kib_per_connection: Some(10.0), cpu_us: Some(8.0) },
    },
    Scenario {
        name: "fanout-10000c-2ps",
        clients: 10_000,
        rate: 2.0,
        storm: false,
        targets: Targets { p99_ms: Some(80.0), kib_per_connection: None, cpu_us: None },
    },
    Scenario {
        name: "fanout-19000c-1ps",
        clients: 19_000,
        rate: 1.0,
        storm: false,
        targets: Targets { p99_ms: None, kib_per_connection: None, cpu_us: None },
    },
    Scenario {
        name: "storm-2000c",
        clients: 2000,
        rate: 0.5,
        storm: true,
        targets: Targets { p99_ms: None, kib_per_connection: None, cpu_us: None },
    },
];

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = SystemTime::now();
    let mut results = Vec::new();
    for scenario in MATRIX.iter().filter(|s| args.only.as_ref().is_none_or(|o| s.name.contains(o.as_str()))) {
        tracing::info!(scenario = scenario.name, "bench scenario");
        let run = RunArgs {
            clients: scenario.clients,
            rate: scenario.rate,
            duration: args.duration,
            mutation: if scenario.storm { Mutation::Volumes } else { Mutation::Servers },
            storm: scenario.storm,
            payload_bytes: 10_000_000,
            accept_encoding: String::from("br, gzip"),
            no_conditional: false,
            target: None,
            server_pid: None,
            sim_url: None,
            server_bin: args.server_bin.clone(),
            server_nofile: None,
            server_args: Vec::new(),
            source_addrs: 8,
            clients_per_worker: None,
            connect_concurrency: 512,
            connect_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(if scenario.storm { 120 } else { 15 }),
            slow_clients: if scenario.storm { 0 } else { 10 },
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
    let markdown = render(&results, started, &load_before);
    write_results(&args.results, &markdown)?;
    tracing::info!(path = %args.results.display(), "results written");
    Ok(())
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
        let missed = missed_targets(scenario, r, failures);
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
            "- {} mutations ({} failed) → {} updates published in {:.1} s; {} notifications expected, {} received, \
             {} lost, {} duplicates, {} resyncs; {}.",
            r.mutations.sent,
            r.mutations.failed,
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
        if let Some(u) = &r.upstream {
            let by: Vec<String> = u.requests.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(md, "- Upstream requests in the window: {} ({}).", u.total, by.join(", "));
        }
        if let Some(s) = &r.storm {
            let _ = writeln!(
                md,
                "- Refetches of `storage.volumes.list` (~{} MB): {} ({} × 200, {} × 304, {} failed), \
                 {:.1} MiB over the wire ({} B mean, encodings {:?}); refetch latency p50 {:.1} ms, \
                 p99 {:.1} ms, max {:.1} ms.",
                r.knobs.payload_bytes.unwrap_or(0) / 1_000_000,
                s.refetches,
                s.ok,
                s.not_modified,
                s.errors,
                s.body_bytes as f64 / (1u64 << 20) as f64,
                s.mean_body_bytes,
                s.encodings,
                s.latency.p50_ms,
                s.latency.p99_ms,
                s.latency.max_ms
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

/// The targets of issue "the load test" that this run missed.
fn missed_targets(scenario: &Scenario, r: &RunReport, failures: &[String]) -> Vec<String> {
    let mut missed: Vec<String> = failures.to_vec();
    let t = &scenario.targets;
    if let Some(max) = t.p99_ms
        && r.latency.p99_ms >= max
    {
        missed.push(format!("p99 {:.1} ≥ {max} ms", r.latency.p99_ms));
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
