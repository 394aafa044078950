//! `loadtest`: thousands of Server-Sent-Events clients against Stalecast's
//! `updates.onUpdate`, a steady stream of mutations, and a report a person can read.
//!
//! Knobs (each also in `--help`; defaults in brackets):
//! - `--clients N` [2000] SSE clients, bound round-robin to `--source-addrs K` [8]
//!   loopback source addresses (127.0.0.1 … 127.0.0.K), so tens of thousands fit.
//! - `--rate M` [10] mutations per second, for `--duration D` [10s]; `--mutation`
//!   [servers] toggles servers on/off, `volumes` creates and deletes volumes.
//! - `--storm`: refetch storm — every client acts on each `volumes` notification as
//!   `--storm-mode` says: `full` [default] refetches `storage.volumes.list`, `delta` asks
//!   `storage.volumes.changes` since the seq it stands at and applies the answer, `paged`
//!   refetches page 1 of `storage.volumes.page` (`--page-size` [50]). `--volumes`
//!   [36000] seeds the simulator with that many realistic volumes first
//!   (`POST /_sim/seed`); `--accept-encoding` ["br, gzip"], `--no-conditional`.
//! - `--target URL` drives an already running server instead of starting one
//!   (`--server-pid` to still measure it, `--sim-url` for upstream counts); repeated, the
//!   nodes of a running cluster, which the clients and mutations are spread over.
//! - `--nodes N` [1]: start a cluster: a `redis-server` (on a free loopback port, no
//!   persistence) and N `stalecast serve --redis` nodes against one simulator; client `i`
//!   streams from node `i mod N`, mutations go round robin. `--rolling-restart`: during
//!   the run, restart the nodes one at a time (`--restart-pause` [5s] before each); a
//!   client whose stream ended reconnects to the next node with its `Last-Event-ID`, and
//!   must get what it missed replayed: any loss or `resync` fails `--assert`.
//! - `--server-bin PATH` [the release `stalecast` next to this tool], `--server-nofile N`
//!   (start the server under `ulimit -n N`), `--server-arg ARG` (extra `serve` flags).
//! - `--clients-per-worker N` [fd limit − 256]: clients are split over worker processes
//!   when one process may not hold them all; `--connect-concurrency` [512],
//!   `--connect-timeout` [15s], `--drain` [10s], `--slow-clients K` [0] clients that
//!   read nothing until the mutations stopped, then must show every update or a
//!   `lagged` resync (`--expect-lagged`: the resync, for all of them).
//! - `--out DIR` [tests/load/out], `--name`, `--assert` (exit 1 on loss, failed
//!   connections, panicked clients, a slow client's silent gap), `--no-progress`.
//!
//! Outputs under `--out`: `<name>.json`, `<name>-latency.svg` (latency over time),
//! `<name>-histogram.svg`, `<name>-server.log`, `<name>-sim.log`.
//!
//! `loadtest bench` runs the standard matrix and writes `tests/load/RESULTS.md`.
//! Loopback only; every run stops by itself.

// A command-line tool: the table on stdout is its output.
#![allow(clippy::print_stdout)]

mod bench;
mod client;
mod cluster;
mod drive;
mod nodes;
mod procs;
mod report;
mod run;
mod stats;
mod worker;

/// Headers that carry the session `cookie` (`name=value`) on every request of a client.
fn signed_in(cookie: &str) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, reqwest::header::HeaderValue::from_str(cookie)?);
    Ok(headers)
}

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    about = "Load test for Stalecast: N SSE clients on updates.onUpdate, M mutations per second, \
             delivery latency, loss, and server cost.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the standard matrix and write tests/load/RESULTS.md.
    Bench(bench::BenchArgs),
    /// (internal) One worker process holding a share of the clients.
    #[command(hide = true)]
    Worker {
        /// The worker's configuration, as JSON.
        config: String,
    },
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// What a storm client does on each `volumes` notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StormMode {
    /// Refetch the whole list (conditionally: `If-None-Match`).
    Full,
    /// Ask `changes` since the seq it stands at, and apply the answer.
    Delta,
    /// Refetch page 1 of the paged query (conditionally).
    Paged,
}

impl std::fmt::Display for StormMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StormMode::Full => "full",
            StormMode::Delta => "delta",
            StormMode::Paged => "paged",
        })
    }
}

/// What changes the mutations make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mutation {
    /// Stop and start servers in turn (one `servers` update each).
    Servers,
    /// Create a volume, then delete it (one `volumes` update each).
    Volumes,
}

/// The knobs of one run.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// The user every client signs in as (the simulator's admin by default).
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// Their password.
    #[arg(long, default_value = "stalecast", env = "LOADTEST_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Clients sign in as these users in turn (`user:password`, comma-separated), and the
    /// load tool checks every notification against what its client's user may see (the
    /// servers each user's projects hold); mutations stay the `--user`'s. Servers only.
    #[arg(long, value_delimiter = ',')]
    pub audience: Vec<String>,
    /// SSE clients to open.
    #[arg(long, short = 'n', default_value_t = 2000)]
    pub clients: usize,
    /// Mutations per second.
    #[arg(long, short = 'r', default_value_t = 10.0)]
    pub rate: f64,
    /// How long mutations are sent.
    #[arg(long, short = 'd', value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// What the mutations change (`--storm` implies volumes).
    #[arg(long, value_enum, default_value_t = Mutation::Servers)]
    pub mutation: Mutation,
    /// Refetch storm: every client refetches storage.volumes.list on each volumes notification.
    #[arg(long)]
    pub storm: bool,
    /// Storm: what each client does on a volumes notification.
    #[arg(long, value_enum, default_value_t = StormMode::Full)]
    pub storm_mode: StormMode,
    /// Storm, paged mode: the page size clients hold.
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Storm: seed the simulator until it holds at least this many volumes (realistic
    /// records: UUIDs, varied names, descriptions and metadata).
    #[arg(long, default_value_t = 36_000)]
    pub volumes: usize,
    /// Storm: the Accept-Encoding refetches send ("" for none).
    #[arg(long, default_value = "br, gzip")]
    pub accept_encoding: String,
    /// Storm: do not send If-None-Match with the last ETag.
    #[arg(long)]
    pub no_conditional: bool,
    /// Drive this running server (http://127.0.0.1:3000) instead of starting one; repeat
    /// for the nodes of a running cluster (clients and mutations spread over them).
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// Start this many nodes on one Redis (1: a single server, no Redis).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub nodes: u16,
    /// Restart the nodes one at a time during the run (SIGTERM, wait, start again on the
    /// same port); clients whose stream ended reconnect to the next node.
    #[arg(long)]
    pub rolling_restart: bool,
    /// With --rolling-restart: the pause before each node's restart.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub restart_pause: Duration,
    /// With --target: the server's pid, to measure its memory and CPU.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// With --target: the upstream simulator's URL, to count upstream requests.
    #[arg(long)]
    pub sim_url: Option<String>,
    /// The stalecast binary to start [the release build next to this tool].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Start the server with this file-descriptor limit (ulimit -n).
    #[arg(long)]
    pub server_nofile: Option<u64>,
    /// An extra flag for `stalecast serve` (repeatable), e.g. --server-arg=--ping-interval=5s.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Loopback source addresses to spread clients over (127.0.0.1 … 127.0.0.K).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=250))]
    pub source_addrs: u8,
    /// Clients per worker process [the fd limit less 256, halved for --storm].
    #[arg(long)]
    pub clients_per_worker: Option<usize>,
    /// Connection attempts in flight at once, per worker.
    #[arg(long, default_value_t = 512)]
    pub connect_concurrency: usize,
    /// Give up on a client that is not streaming after this long.
    #[arg(long, value_parser = duration, default_value = "15s")]
    pub connect_timeout: Duration,
    /// After the last mutation, wait at most this long for deliveries.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub drain: Duration,
    /// Extra clients that open a stream and read nothing until the mutations stopped
    /// (stalled tabs); then each must get every update or a `lagged` resync.
    #[arg(long, default_value_t = 0)]
    pub slow_clients: usize,
    /// With --assert: also fail unless every slow client fell far enough behind to get a
    /// `lagged` resync (proof that its socket buffers filled).
    #[arg(long)]
    pub expect_lagged: bool,
    /// Where the JSON, plots and logs go.
    #[arg(long, default_value = "tests/load/out")]
    pub out: PathBuf,
    /// The run's name (file names) [derived from the knobs].
    #[arg(long)]
    pub name: Option<String>,
    /// Exit with status 1 when a notification was lost, a client failed to connect or its
    /// task panicked, or a slow client saw a silent gap (with --server-nofile: when the
    /// server died or a connected client lost anything; with --rolling-restart: also on
    /// any resync, or a node that did not shut down cleanly or come back).
    #[arg(long)]
    pub assert: bool,
    /// No progress bars (logs and CI).
    #[arg(long)]
    pub no_progress: bool,
}

impl RunArgs {
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let rate =
                if self.rate.fract() == 0.0 { format!("{}", self.rate as u64) } else { format!("{}", self.rate) };
            if self.storm {
                format!("storm-{}-{}c-{rate}ps", self.storm_mode, self.clients)
            } else if self.nodes > 1 {
                let restart = if self.rolling_restart { "-rolling-restart" } else { "" };
                format!("cluster-{}n-{}c-{rate}ps{restart}", self.nodes, self.clients)
            } else {
                format!("fanout-{}c-{rate}ps", self.clients)
            }
        })
    }
}

/// Raises this process's soft descriptor limit to its hard limit; answers the soft limit.
pub fn raise_fd_limit() -> u64 {
    stalecast::serve::raise_nofile_limit()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let worker = matches!(cli.command, Some(Command::Worker { .. }));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| if worker { "warn".into() } else { "info".into() }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Some(Command::Worker { config }) => worker::run(serde_json::from_str(&config)?).await,
            Some(Command::Bench(args)) => bench::run(args).await,
            None => {
                let report = run::run(&cli.run).await?;
                report::print(&report);
                let verdict = report::verdict(&cli.run, &report);
                if cli.run.assert && !verdict.is_empty() {
                    anyhow::bail!("assertion failed: {}", verdict.join("; "));
                }
                Ok(())
            }
        }
    })
}
