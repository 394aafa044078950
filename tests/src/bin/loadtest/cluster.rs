//! The processes under test when the load tool starts them itself: one simulator, and
//! either one Stalecast node on its own (no Redis: the single-node figures) or `--nodes
//! N` nodes joined on one `redis-server` (Debian's, on a free loopback port, without
//! persistence), all watching that simulator; and the rolling restart of those nodes.
//! Every process is stopped by its process id when the run ends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use stalecast_tests::redis::RedisServer;
use tokio::sync::mpsc::UnboundedSender;

use crate::nodes::Nodes;
use crate::procs::{self, Logged};

/// How long a node may take to exit after SIGTERM (its `--shutdown-timeout` is 5 s)
/// before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// How long a node is left out of the mutations' rotation before its SIGTERM, so that
/// the mutations already sent to it are answered (their p99 is tens of milliseconds):
/// a mutation cut off by the restart would be the tool's fault, not the server's.
const DRAIN_BEFORE_STOP: Duration = Duration::from_millis(500);

/// One node: how it was started (to start it again the same way), and what its runs
/// logged.
pub struct Node {
    pub index: usize,
    pub addr: SocketAddr,
    bin: PathBuf,
    /// `serve` flags after the upstream: the caller's, and `--redis` in a cluster.
    extra: Vec<String>,
    upstream: String,
    nofile: Option<u64>,
    /// Log file name without `.log`; restarts add `-restart<k>`.
    log_stem: PathBuf,
    pub process: Option<Logged>,
    /// Every process id it ran as, in order.
    pub pids: Vec<u32>,
    /// Warnings and errors its earlier runs logged, and the first few of them.
    past_warnings: u64,
    past_errors: u64,
    past_samples: Vec<String>,
    /// Whether each run that was stopped exited cleanly.
    pub clean_exits: Vec<bool>,
}

impl Node {
    /// The log of its `run`th process (0: the first, 1: after its first restart, …).
    pub fn log_path(&self, run: usize) -> PathBuf {
        let stem = self.log_stem.display();
        PathBuf::from(if run == 0 { format!("{stem}.log") } else { format!("{stem}-restart{run}.log") })
    }

    /// Starts it on `port` (0: a free one; a restart: the port it had).
    async fn start(&mut self, port: u16) -> anyhow::Result<()> {
        let log = self.log_path(self.pids.len());
        let (process, addr) =
            procs::start_server(&self.bin, &self.upstream, port, self.nofile, &self.extra, &log).await?;
        self.addr = addr;
        self.pids.push(process.pid);
        self.process = Some(process);
        Ok(())
    }

    /// SIGTERM, and waits for it to exit (SIGKILL after `grace`). Its log's counts are
    /// kept. Answers whether it exited cleanly (`None`: it was not running).
    async fn stop(&mut self, grace: Duration) -> Option<bool> {
        let process = self.process.take()?;
        self.past_warnings += process.warnings.load(Ordering::Relaxed);
        self.past_errors += process.errors.load(Ordering::Relaxed);
        let samples = process.samples.lock().map(|s| s.clone()).unwrap_or_default();
        for sample in samples {
            if self.past_samples.len() < 5 {
                self.past_samples.push(sample);
            }
        }
        let clean = process.stop(grace).await;
        self.clean_exits.push(clean);
        Some(clean)
    }

    /// Warnings and errors its runs logged so far, and the first few.
    pub fn log_counts(&self) -> (u64, u64, Vec<String>) {
        let (mut warnings, mut errors, mut samples) = (self.past_warnings, self.past_errors, self.past_samples.clone());
        if let Some(p) = &self.process {
            warnings += p.warnings.load(Ordering::Relaxed);
            errors += p.errors.load(Ordering::Relaxed);
            for sample in p.samples.lock().map(|s| s.clone()).unwrap_or_default() {
                if samples.len() < 5 {
                    samples.push(sample);
                }
            }
        }
        (warnings, errors, samples)
    }

    /// Forgets the warnings logged so far (those before readiness are not the run's).
    pub fn forget_warnings(&self) {
        if let Some(p) = &self.process {
            p.warnings.store(0, Ordering::Relaxed);
            p.samples.lock().map(|mut s| s.clear()).unwrap_or_default();
        }
    }

    pub fn alive(&mut self) -> bool {
        self.process.as_mut().is_some_and(Logged::alive)
    }
}

/// The simulator, Redis (with several nodes) and the nodes.
pub struct Started {
    pub redis: Option<RedisServer>,
    sim: Option<Logged>,
    pub sim_url: String,
    pub nodes: Vec<Node>,
}

impl Started {
    /// Starts the simulator, then Redis and `count` nodes with `--redis` (or, for one
    /// node, the node alone), each on a free loopback port; returns once every node
    /// wrote its ready file.
    pub async fn start(
        bin: &Path,
        count: usize,
        nofile: Option<u64>,
        server_args: &[String],
        out: &Path,
        name: &str,
    ) -> anyhow::Result<Started> {
        let (sim, sim_addr) = procs::start_sim(bin, &out.join(format!("{name}-sim.log"))).await?;
        let sim_url = format!("http://{sim_addr}");
        // One node is the single-server setup the other figures are measured on: no Redis.
        let redis = if count > 1 {
            let redis = RedisServer::try_start().await.context("starting redis-server for the cluster")?;
            tracing::info!(url = %redis.url(), pid = ?redis.pid(), "redis-server started");
            Some(redis)
        } else {
            None
        };
        let mut extra = server_args.to_vec();
        if let Some(redis) = &redis {
            extra.push(String::from("--redis"));
            extra.push(redis.url());
        }
        let mut started = Started { redis, sim: Some(sim), sim_url, nodes: Vec::new() };
        for index in 0..count.max(1) {
            // The single server's log keeps its name from before there were clusters.
            let log_stem = if count > 1 {
                out.join(format!("{name}-node{}", index + 1))
            } else {
                out.join(format!("{name}-server"))
            };
            let mut node = Node {
                index,
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                bin: bin.to_owned(),
                extra: extra.clone(),
                upstream: started.sim_url.clone(),
                nofile,
                log_stem,
                process: None,
                pids: Vec::new(),
                past_warnings: 0,
                past_errors: 0,
                past_samples: Vec::new(),
                clean_exits: Vec::new(),
            };
            node.start(0).await.with_context(|| format!("starting node {}", index + 1))?;
            tracing::info!(node = index + 1, addr = %node.addr, pid = ?node.pids.last(), "node started");
            started.nodes.push(node);
        }
        Ok(started)
    }

    /// The process ids of the nodes now.
    pub fn node_pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(|n| n.process.as_ref().map(|p| p.pid)).collect()
    }

    /// Stops the nodes (SIGTERM, by process id). Answers whether every one exited
    /// cleanly.
    pub async fn stop_nodes(&mut self) -> bool {
        let mut clean = true;
        for node in &mut self.nodes {
            clean &= node.stop(STOP_GRACE).await.unwrap_or(false);
        }
        clean
    }

    /// Stops what still runs: the nodes, the simulator, Redis (each by process id).
    pub async fn stop(mut self) {
        self.stop_nodes().await;
        if let Some(sim) = self.sim.take() {
            sim.stop(Duration::from_secs(5)).await;
        }
        if let Some(redis) = self.redis.as_mut() {
            redis.stop().await;
        }
    }
}

/// How one node's restart went.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restart {
    /// 1-based, as in the log file names.
    pub node: usize,
    /// Seconds since the measurement window opened, when its SIGTERM was sent.
    pub at_s: f64,
    /// SIGTERM → exited.
    pub stop_ms: f64,
    pub clean_exit: bool,
    /// Started again → `/readyz` 200 and signed in: serving.
    pub start_ms: f64,
    /// SIGTERM → serving again.
    pub total_ms: f64,
    pub error: Option<String>,
}

/// What the rolling restart needs besides the nodes.
pub struct RestartPlan {
    pub nodes: Arc<Nodes>,
    pub http: reqwest::Client,
    pub user: String,
    pub password: String,
    /// Before the first node and between two.
    pub pause: Duration,
    /// When the measurement window opened.
    pub window_started: Instant,
    /// Each restarted node's new session cookie, for the clients.
    pub cookies: UnboundedSender<(usize, String)>,
}

/// Restarts the nodes one at a time: out of the mutations' rotation, SIGTERM (its
/// streams end and their clients reconnect to the next node), wait until it exited,
/// start it on the same port with the same flags, wait until ready, sign in there again
/// (it forgot its sessions), hand the new cookie out, back into the rotation; then a
/// pause, then the next. Stops at the first node that does not come back.
pub async fn rolling_restart(mut nodes: Vec<Node>, plan: RestartPlan) -> (Vec<Node>, Vec<Restart>) {
    let mut restarts = Vec::new();
    for node in nodes.iter_mut() {
        tokio::time::sleep(plan.pause).await;
        let mut restart = Restart { node: node.index + 1, ..Default::default() };
        plan.nodes.set_up(node.index, false);
        tokio::time::sleep(DRAIN_BEFORE_STOP).await;
        let stopping = Instant::now();
        restart.at_s = plan.window_started.elapsed().as_secs_f64();
        restart.clean_exit = node.stop(STOP_GRACE).await.unwrap_or(false);
        restart.stop_ms = stopping.elapsed().as_secs_f64() * 1e3;
        let starting = Instant::now();
        let outcome = async {
            node.start(node.addr.port()).await?;
            let base = plan.nodes.base(node.index);
            crate::run::wait_ready(&plan.http, &base).await?;
            node.forget_warnings();
            crate::run::sign_in(&plan.http, &base, &plan.user, &plan.password).await
        }
        .await;
        restart.start_ms = starting.elapsed().as_secs_f64() * 1e3;
        restart.total_ms = stopping.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Ok(cookie) => {
                plan.nodes.set_cookie(node.index, cookie.clone());
                let _ = plan.cookies.send((node.index, cookie));
                plan.nodes.set_up(node.index, true);
                tracing::info!(
                    node = restart.node,
                    stop_ms = restart.stop_ms as u64,
                    start_ms = restart.start_ms as u64,
                    "node restarted"
                );
                restarts.push(restart);
            }
            Err(e) => {
                tracing::error!(node = restart.node, error = %e, "a node did not come back; the rolling restart stops");
                restart.error = Some(format!("{e:#}"));
                restarts.push(restart);
                break;
            }
        }
    }
    (nodes, restarts)
}
