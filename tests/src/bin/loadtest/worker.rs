//! A worker process: holds its share of the SSE clients, records what they receive, and
//! reports to the coordinator as JSON lines on stdout.
//!
//! One process may hold only so many file descriptors, so the coordinator splits the
//! clients over as many workers as it needs. Protocol: the worker prints
//! [`ToCoordinator`] lines (progress, then `ready` once every client connected or gave
//! up, then `done`); it reads [`ToWorker`] lines on stdin (`window`, `windowEnd`,
//! `stop`, and `cookie` when a restarted node was signed in to again). End of stdin means
//! stop.
//!
//! With several nodes, client `i` streams from node `i mod N`; with `reconnect`, a client
//! whose stream the server ended connects to the next node of its list with the last
//! event id it saw as `Last-Event-ID`, as a browser's `EventSource` would, and goes on
//! counting: whatever the new node did not replay shows as lost.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use stalecast::updates::now_micros;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::StormMode;
use crate::client::{SseConn, SseEvent, UpdateKind, connect_from, source_addr};
use crate::nodes::{home_node, next_node};
use crate::stats::{self, Pairs};

/// What a worker is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerConfig {
    pub worker: usize,
    /// Every node's address; clients are spread over them round robin.
    pub servers: Vec<SocketAddr>,
    /// The cookie of a session on each node (`servers[i]`'s is `cookies[i]`).
    pub cookies: Vec<String>,
    /// Reconnect (to the next node) when the server ends a stream.
    pub reconnect: bool,
    /// `/trpc/updates.onUpdate`, with a query string if any.
    pub path: String,
    pub clients: usize,
    /// Global index of this worker's first client (for source-address round-robin).
    pub first_index: usize,
    pub source_addrs: u8,
    pub connect_concurrency: usize,
    pub connect_timeout_ms: u64,
    /// Clients that stop reading once connected, until the window closed.
    pub slow_clients: usize,
    pub storm: Option<StormConfig>,
    /// The session cookie (`name=value`) of the first node: the storm's refetches carry
    /// it (storms run on one node).
    pub cookie: String,
    /// Clients signed in as several users, each notification judged by what its user may
    /// see.
    pub audience: Option<Audience>,
}

/// The users clients sign in as (client `i` as `users[i % len]`), and whose each resource
/// the run changes is.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Audience {
    pub users: Vec<AudienceUser>,
    /// The project of every resource the run changes, by id.
    pub owners: HashMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudienceUser {
    pub name: String,
    pub cookie: String,
    /// The projects they may see; `None`: every one (an admin, whose clients' streams are
    /// what the others' are judged against).
    pub projects: Option<Vec<String>>,
}

impl AudienceUser {
    /// Whether this user may hear of an update naming `ids` (none: the whole collection,
    /// which names nothing of anyone's): every id must be of one of their projects.
    pub fn may_see(&self, owners: &HashMap<String, String>, ids: Option<&[String]>) -> bool {
        let (Some(projects), Some(ids)) = (&self.projects, ids) else { return true };
        ids.iter().all(|id| owners.get(id).is_some_and(|p| projects.contains(p)))
    }

    /// Whether an update naming `ids` concerns this user (they should receive it).
    fn concerned(&self, owners: &HashMap<String, String>, ids: Option<&[String]>) -> bool {
        let (Some(projects), Some(ids)) = (&self.projects, ids) else { return true };
        ids.iter().any(|id| owners.get(id).is_some_and(|p| projects.contains(p)))
    }
}

/// Refetch-storm settings: what every client fetches on each `volumes` notification.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StormConfig {
    pub mode: StormMode,
    /// The page size in [`StormMode::Paged`].
    pub page_size: u32,
    /// Sent as `Accept-Encoding` (empty: none).
    pub accept_encoding: String,
    /// Send `If-None-Match` with the last ETag, as a browser's HTTP cache would.
    pub conditional: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "camelCase")]
pub enum ToCoordinator {
    Progress { connected: u64, failed: u64, in_window: u64, refetches: u64, slow_done: u64 },
    Ready { connected: u64, failed: u64 },
    Done(Box<WorkerReport>),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "camelCase")]
pub enum ToWorker {
    /// Count updates after `seq0`; bucket latencies by seconds since `startUs`.
    #[serde(rename_all = "camelCase")]
    Window {
        seq0: u64,
        start_us: u64,
    },
    /// The last update that belongs to the measurement.
    #[serde(rename_all = "camelCase")]
    WindowEnd {
        seq1: u64,
    },
    /// Node `node` was restarted: its sessions are gone, this is a new one.
    Cookie {
        node: usize,
        cookie: String,
    },
    Stop,
}

/// Everything one worker measured.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    pub connected: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    /// Streams the server closed during the run.
    pub disconnected: u64,
    /// Client tasks that panicked (what they saw is lost).
    pub panicked: u64,
    pub connect_us: Pairs,
    pub latency_us: Pairs,
    /// Latency per second of the run (seconds since the window start).
    pub per_second: Vec<(u64, Pairs)>,
    /// Σ over connected clients of the updates in the window.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub resyncs: u64,
    /// The resyncs by their reason (`lagged`, `gap`, …).
    pub resync_reasons: BTreeMap<String, u64>,
    /// Streams that ended and were opened again on another node.
    pub reconnects: u64,
    /// From a stream's end to `connected` on the next node.
    pub reconnect_us: Pairs,
    /// Failed attempts to reconnect, by error (each was retried on the next node).
    pub reconnect_errors: BTreeMap<String, u64>,
    pub slow: Vec<SlowReport>,
    pub storm: Option<StormReport>,
    /// With an audience: notifications checked against what their client's user may see,
    /// and those it may not have seen (each one a leak).
    pub audience_checked: u64,
    pub audience_violations: u64,
    /// The first few leaks, as `user: seq ids`.
    pub violation_examples: Vec<String>,
}

/// How a slow client's stream accounted for the window's updates once it read again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SlowOutcome {
    /// Every update arrived: the server's buffers and queue held them all.
    Complete,
    /// A `lagged` resync stood for every update that did not arrive.
    Lagged,
    /// Updates neither arrived nor were covered by a resync: a silent gap.
    Gap,
    /// It did not connect, or did not catch up before the run ended.
    #[default]
    Failed,
}

/// What one slow client saw.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlowReport {
    pub outcome: SlowOutcome,
    /// Updates of the window that arrived.
    pub received: u64,
    /// Updates of the window that neither arrived nor were covered by a `lagged` resync.
    pub missing: u64,
    /// Updates that arrived before its first `lagged` resync: what the kernel's buffers
    /// and the server's queue held for it.
    pub before_resync: Option<u64>,
    pub error: Option<String>,
}

/// An event of a slow client's stream, as far as judging it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Update(u64),
    /// A resync (`lagged` or not) up to this seq.
    Resync {
        seq: u64,
        lagged: bool,
    },
}

/// Judges a slow client's events (in arrival order) for the window `(seq0, seq1]`.
fn judge_slow(events: &[Seen], seq0: u64, seq1: u64) -> SlowReport {
    let received: std::collections::BTreeSet<u64> = events
        .iter()
        .filter_map(|e| match e {
            Seen::Update(seq) if *seq > seq0 && *seq <= seq1 => Some(*seq),
            _ => None,
        })
        .collect();
    let lagged_up_to = events
        .iter()
        .filter_map(|e| match e {
            Seen::Resync { seq, lagged: true } => Some(*seq),
            _ => None,
        })
        .max();
    let missing = (seq0.saturating_add(1)..=seq1)
        .filter(|seq| !received.contains(seq) && lagged_up_to.is_none_or(|covered| *seq > covered))
        .count() as u64;
    let before_resync = events
        .iter()
        .position(|e| matches!(e, Seen::Resync { lagged: true, .. }))
        .map(|at| events[..at].iter().filter(|e| matches!(e, Seen::Update(_))).count() as u64);
    let outcome = match (missing, lagged_up_to) {
        (0, None) => SlowOutcome::Complete,
        (0, Some(_)) => SlowOutcome::Lagged,
        _ => SlowOutcome::Gap,
    };
    SlowReport { outcome, received: received.len() as u64, missing, before_resync, error: None }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StormReport {
    pub refetches: u64,
    pub ok: u64,
    pub not_modified: u64,
    pub errors: u64,
    /// Response body bytes as they came over the wire (compressed when compressed).
    pub body_bytes: u64,
    /// Response bytes on the wire: the status line and headers, and the body.
    pub wire_bytes: u64,
    pub encodings: BTreeMap<String, u64>,
    /// From the notification's arrival to the refetch's last body byte.
    pub latency_us: Pairs,
    /// From the notification's `ts` (published) to the answer applied: the change is
    /// visible at the client.
    pub applied_us: Pairs,
    /// Delta mode: `changes` answers that said `resync` (the client would read the whole
    /// list again), and records received as upserts.
    pub resync_answers: u64,
    pub upserts: u64,
}

/// State shared by the worker's clients.
struct Shared {
    connected: AtomicU64,
    failed: AtomicU64,
    in_window: AtomicU64,
    refetches: AtomicU64,
    /// Slow clients that connected or gave up, and those that are done.
    slow_started: AtomicU64,
    slow_done: AtomicU64,
    /// Fires when the window closed: the slow clients read again.
    resume: CancellationToken,
    /// Updates with a larger seq are measured (`u64::MAX`: not yet).
    seq0: AtomicU64,
    /// Updates up to this seq belong to the window (`u64::MAX`: still open).
    seq1: AtomicU64,
    start_us: AtomicU64,
    /// The current session cookie of each node.
    cookies: Mutex<Vec<String>>,
    recorded: Mutex<Recorded>,
}

struct Recorded {
    errors: BTreeMap<String, u64>,
    connect: Histogram<u64>,
    latency: Histogram<u64>,
    per_second: Vec<Histogram<u64>>,
    resyncs: u64,
    resync_reasons: BTreeMap<String, u64>,
    disconnected: u64,
    reconnects: u64,
    reconnect: Histogram<u64>,
    reconnect_errors: BTreeMap<String, u64>,
    storm: StormRecorded,
}

#[derive(Default)]
struct StormRecorded {
    refetches: u64,
    ok: u64,
    not_modified: u64,
    errors: u64,
    body_bytes: u64,
    wire_bytes: u64,
    encodings: BTreeMap<String, u64>,
    latency: Option<Histogram<u64>>,
    applied: Option<Histogram<u64>>,
    resync_answers: u64,
    upserts: u64,
}

impl Shared {
    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.recorded().errors.entry(what).or_default() += 1;
    }

    fn cookie(&self, node: usize) -> String {
        self.cookies.lock().unwrap_or_else(|p| p.into_inner()).get(node).cloned().unwrap_or_default()
    }
}

/// What one client saw: the seqs it received after the window opened.
struct ClientOutcome {
    seqs: Vec<u64>,
    /// Its user, with an audience.
    user: Option<usize>,
    /// An all-seeing client's updates with their ids: what the others are judged against.
    witnessed: Vec<(u64, Option<Vec<String>>)>,
    checked: u64,
    violations: Vec<String>,
}

pub async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    let soft = crate::raise_fd_limit();
    tracing::debug!(worker = config.worker, soft, clients = config.clients, "worker starting");
    let shared = Arc::new(Shared {
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        in_window: AtomicU64::new(0),
        refetches: AtomicU64::new(0),
        slow_started: AtomicU64::new(0),
        slow_done: AtomicU64::new(0),
        resume: CancellationToken::new(),
        seq0: AtomicU64::new(u64::MAX),
        seq1: AtomicU64::new(u64::MAX),
        start_us: AtomicU64::new(0),
        cookies: Mutex::new(config.cookies.clone()),
        recorded: Mutex::new(Recorded {
            errors: BTreeMap::new(),
            connect: stats::histogram(),
            latency: stats::histogram(),
            per_second: Vec::new(),
            resyncs: 0,
            resync_reasons: BTreeMap::new(),
            disconnected: 0,
            reconnects: 0,
            reconnect: stats::histogram(),
            reconnect_errors: BTreeMap::new(),
            storm: StormRecorded {
                latency: Some(stats::histogram()),
                applied: Some(stats::histogram()),
                ..Default::default()
            },
        }),
    });
    let stop = CancellationToken::new();
    let gate = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let storm_http = config.storm.as_ref().map(|_| storm_clients(config.source_addrs, &config.cookie)).transpose()?;
    // The refetches run on a runtime of their own. Each simulated client is one browser,
    // whose notification is read as soon as it arrives; on one shared runtime, a client's
    // notification waited in the task queue behind the other 1,999 clients' refetches, and
    // that wait was counted as the server's delivery latency.
    let refetch_runtime = match &config.storm {
        Some(_) => Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("refetch")
                .enable_all()
                .build()?,
        ),
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..config.clients {
        let index = config.first_index + i;
        let client = Client {
            config: config.clone(),
            index,
            shared: shared.clone(),
            stop: stop.clone(),
            gate: gate.clone(),
            storm_http: storm_http.as_ref().map(|all| all[index % all.len()].clone()),
            refetch_runtime: refetch_runtime.as_ref().map(|r| r.handle().clone()),
        };
        tasks.spawn(client.run());
    }
    let mut slow_tasks = tokio::task::JoinSet::new();
    for i in 0..config.slow_clients {
        let client = Client {
            config: config.clone(),
            index: config.first_index + config.clients + i,
            shared: shared.clone(),
            stop: stop.clone(),
            gate: gate.clone(),
            storm_http: None,
            refetch_runtime: None,
        };
        slow_tasks.spawn(client.run_slow());
    }

    let out = Arc::new(tokio::sync::Mutex::new(tokio::io::stdout()));
    // Progress every 100 ms until stopped.
    let progress = {
        let (shared, out, stop) = (shared.clone(), out.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let msg = ToCoordinator::Progress {
                    connected: shared.connected.load(Ordering::Relaxed),
                    failed: shared.failed.load(Ordering::Relaxed),
                    in_window: shared.in_window.load(Ordering::Relaxed),
                    refetches: shared.refetches.load(Ordering::Relaxed),
                    slow_done: shared.slow_done.load(Ordering::Relaxed),
                };
                if send(&out, &msg).await.is_err() {
                    return;
                }
            }
        })
    };
    // Ready once every client connected or gave up.
    {
        let (shared, out) = (shared.clone(), out.clone());
        let (total, slow) = (config.clients as u64, config.slow_clients as u64);
        tokio::spawn(async move {
            loop {
                let (c, f) = (shared.connected.load(Ordering::Relaxed), shared.failed.load(Ordering::Relaxed));
                if c + f >= total && shared.slow_started.load(Ordering::Relaxed) >= slow {
                    let _ = send(&out, &ToCoordinator::Ready { connected: c, failed: f }).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    // Commands from the coordinator.
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<ToWorker>(&line) {
            Ok(ToWorker::Window { seq0, start_us }) => {
                shared.start_us.store(start_us, Ordering::Relaxed);
                shared.seq0.store(seq0, Ordering::Release);
            }
            Ok(ToWorker::WindowEnd { seq1 }) => {
                shared.seq1.store(seq1, Ordering::Release);
                shared.resume.cancel();
            }
            Ok(ToWorker::Cookie { node, cookie }) => {
                if let Some(slot) = shared.cookies.lock().unwrap_or_else(|p| p.into_inner()).get_mut(node) {
                    *slot = cookie;
                }
            }
            Ok(ToWorker::Stop) => break,
            Err(e) => tracing::warn!(%e, %line, "unreadable command"),
        }
    }
    stop.cancel();
    if let Err(e) = progress.await {
        tracing::warn!(%e, "the progress task failed");
    }

    let seq0 = shared.seq0.load(Ordering::Acquire);
    let seq1 = shared.seq1.load(Ordering::Acquire);
    let window = if seq0 != u64::MAX && seq1 != u64::MAX && seq1 >= seq0 { seq1 - seq0 } else { 0 };
    let mut report = WorkerReport::default();
    let mut panics = Vec::new();
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let outcome = match joined {
            Ok(Some(outcome)) => outcome,
            // It failed to connect: counted as failed, with its error.
            Ok(None) => continue,
            Err(e) => {
                panics.push(format!("client task: {e}"));
                continue;
            }
        };
        outcomes.push(outcome);
    }
    // What every update of the window named, as the all-seeing clients received it.
    let witnessed: BTreeMap<u64, Option<Vec<String>>> =
        outcomes.iter().flat_map(|o| o.witnessed.iter().filter(|(s, _)| *s > seq0 && *s <= seq1).cloned()).collect();
    for outcome in outcomes {
        let user = outcome.user.and_then(|u| config.audience.as_ref().map(|a| (&a.users[u], &a.owners)));
        let expected = match user {
            Some((user, owners)) if user.projects.is_some() => {
                witnessed.values().filter(|ids| user.concerned(owners, ids.as_deref())).count() as u64
            }
            _ => window,
        };
        report.expected += expected;
        report.audience_checked += outcome.checked;
        report.audience_violations += outcome.violations.len() as u64;
        for example in outcome.violations {
            if report.violation_examples.len() < 5 {
                report.violation_examples.push(example);
            }
        }
        let mut seen: Vec<u64> = outcome.seqs.iter().copied().filter(|s| *s > seq0 && *s <= seq1).collect();
        report.out_of_order += seen.windows(2).filter(|w| w[1] < w[0]).count() as u64;
        let all = seen.len() as u64;
        seen.sort_unstable();
        seen.dedup();
        report.duplicates += all - seen.len() as u64;
        report.received += seen.len() as u64;
        report.lost += expected.saturating_sub(seen.len() as u64);
    }
    while let Some(joined) = slow_tasks.join_next().await {
        match joined {
            Ok(slow) => report.slow.push(slow),
            Err(e) => panics.push(format!("slow client task: {e}")),
        }
    }
    report.panicked = panics.len() as u64;
    {
        let recorded = shared.recorded();
        report.connected = shared.connected.load(Ordering::Relaxed);
        report.failed = shared.failed.load(Ordering::Relaxed);
        report.errors = recorded.errors.clone();
        for panic in panics {
            *report.errors.entry(panic).or_default() += 1;
        }
        report.disconnected = recorded.disconnected;
        report.connect_us = Pairs::of(&recorded.connect);
        report.latency_us = Pairs::of(&recorded.latency);
        report.per_second = recorded
            .per_second
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(s, h)| (s as u64, Pairs::of(h)))
            .collect();
        report.resyncs = recorded.resyncs;
        report.resync_reasons = recorded.resync_reasons.clone();
        report.reconnects = recorded.reconnects;
        report.reconnect_us = Pairs::of(&recorded.reconnect);
        report.reconnect_errors = recorded.reconnect_errors.clone();
        if config.storm.is_some() {
            let s = &recorded.storm;
            report.storm = Some(StormReport {
                refetches: s.refetches,
                ok: s.ok,
                not_modified: s.not_modified,
                errors: s.errors,
                body_bytes: s.body_bytes,
                wire_bytes: s.wire_bytes,
                encodings: s.encodings.clone(),
                latency_us: s.latency.as_ref().map(Pairs::of).unwrap_or_default(),
                applied_us: s.applied.as_ref().map(Pairs::of).unwrap_or_default(),
                resync_answers: s.resync_answers,
                upserts: s.upserts,
            });
        }
    }
    send(&out, &ToCoordinator::Done(Box::new(report))).await?;
    // Dropping a runtime blocks until its tasks end, which an async context must not.
    if let Some(runtime) = refetch_runtime {
        runtime.shutdown_background();
    }
    Ok(())
}

async fn send(out: &tokio::sync::Mutex<tokio::io::Stdout>, msg: &ToCoordinator) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut out = out.lock().await;
    out.write_all(&line).await?;
    out.flush().await
}

/// One HTTP client per source address for the refetches (each pools its connections).
fn storm_clients(source_addrs: u8, cookie: &str) -> anyhow::Result<Vec<reqwest::Client>> {
    (0..source_addrs.max(1) as usize)
        .map(|i| {
            Ok(reqwest::Client::builder()
                .default_headers(crate::signed_in(cookie)?)
                .local_address(source_addr(i, source_addrs))
                .timeout(Duration::from_secs(120))
                .build()?)
        })
        .collect()
}

struct Client {
    config: WorkerConfig,
    index: usize,
    shared: Arc<Shared>,
    stop: CancellationToken,
    gate: Arc<Semaphore>,
    storm_http: Option<reqwest::Client>,
    /// Where the refetches run (storms only).
    refetch_runtime: Option<tokio::runtime::Handle>,
}

impl Client {
    /// The index of the user this client signs in as, with an audience.
    fn user(&self) -> Option<usize> {
        self.config.audience.as_ref().map(|a| self.index % a.users.len())
    }

    /// The session cookie its stream on `node` carries.
    fn cookie(&self, node: usize) -> String {
        match (&self.config.audience, self.user()) {
            (Some(audience), Some(user)) => audience.users[user].cookie.clone(),
            _ => self.shared.cookie(node),
        }
    }

    /// The node it streams from first.
    fn home(&self) -> usize {
        home_node(self.index, self.config.servers.len())
    }

    async fn run(self) -> Option<ClientOutcome> {
        let source = source_addr(self.index, self.config.source_addrs);
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let started = Instant::now();
        let mut node = self.home();
        let opened = {
            let _permit = self.gate.acquire().await.ok()?;
            let cookie = self.cookie(node);
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                opened = tokio::time::timeout(timeout, self.open(node, source, false, &cookie, None)) => opened,
            }
        };
        let mut conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                self.shared.error(e);
                return None;
            }
            Err(_) => {
                self.shared.error(String::from("timeout"));
                return None;
            }
        };
        stats::record(&mut self.shared.recorded().connect, started.elapsed().as_micros() as u64);
        self.shared.connected.fetch_add(1, Ordering::Relaxed);

        let refetch = match (&self.storm_http, &self.config.storm, &self.refetch_runtime) {
            (Some(http), Some(storm), Some(runtime)) => Some(Refetcher::spawn(
                runtime,
                http.clone(),
                format!("http://{}", self.config.servers[0]),
                storm.clone(),
                self.shared.clone(),
                self.stop.clone(),
            )),
            _ => None,
        };

        let mut seqs = Vec::new();
        let user = self.user();
        let audience = self.config.audience.as_ref().zip(user).map(|(a, u)| (&a.users[u], &a.owners));
        let witness = audience.is_some_and(|(user, _)| user.projects.is_none());
        let (mut witnessed, mut checked, mut violations) = (Vec::new(), 0, Vec::new());
        let mut events = Vec::with_capacity(4);
        loop {
            let read = tokio::select! {
                _ = self.stop.cancelled() => break,
                read = conn.read_events(&mut events) => read,
            };
            let arrived = now_micros();
            match read {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    self.shared.recorded().disconnected += 1;
                    if !self.config.reconnect {
                        break;
                    }
                    let resume = conn.last_event_id().map(str::to_owned);
                    match self.reconnect(&mut node, source, resume).await {
                        Some(again) => {
                            conn = again;
                            continue;
                        }
                        None => break,
                    }
                }
            }
            for event in events.drain(..) {
                match event {
                    SseEvent::Update { seq, ts, kind, ids } => {
                        // Every notification is judged, in the window or not: a leak is one.
                        if let Some((user, owners)) = audience {
                            checked += 1;
                            if !user.may_see(owners, ids.as_deref()) {
                                violations.push(format!("{}: {seq} {ids:?}", user.name));
                            }
                        }
                        if seq <= self.shared.seq0.load(Ordering::Acquire) {
                            continue;
                        }
                        seqs.push(seq);
                        if witness {
                            witnessed.push((seq, ids));
                        }
                        if seq <= self.shared.seq1.load(Ordering::Acquire) {
                            self.shared.in_window.fetch_add(1, Ordering::Relaxed);
                        }
                        let latency = arrived.saturating_sub(ts);
                        let second =
                            (arrived.saturating_sub(self.shared.start_us.load(Ordering::Relaxed)) / 1_000_000) as usize;
                        let mut recorded = self.shared.recorded();
                        stats::record(&mut recorded.latency, latency);
                        if second < 3600 {
                            if recorded.per_second.len() <= second {
                                recorded.per_second.resize_with(second + 1, stats::histogram);
                            }
                            stats::record(&mut recorded.per_second[second], latency);
                        }
                        drop(recorded);
                        if let (Some(refetch), UpdateKind::Volumes) = (&refetch, kind) {
                            refetch.notify(arrived, ts);
                        }
                    }
                    SseEvent::Resync { reason, .. } => {
                        let mut recorded = self.shared.recorded();
                        recorded.resyncs += 1;
                        *recorded.resync_reasons.entry(reason).or_default() += 1;
                    }
                    SseEvent::Connected | SseEvent::Ping | SseEvent::Other(_) => {}
                }
            }
        }
        Some(ClientOutcome { seqs, user, witnessed, checked, violations })
    }

    /// After its stream on `node` ended: connects to the next node of its list, resuming
    /// after `resume` (the last event id it saw), and again to the one after that while
    /// an attempt fails, until one streams or the run stops (`None`). Reconnects at once,
    /// as `EventSource` does when the server closes a stream cleanly; a failed attempt
    /// waits a little longer each time.
    async fn reconnect(&self, node: &mut usize, source: std::net::IpAddr, resume: Option<String>) -> Option<SseConn> {
        let ended = Instant::now();
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        for attempt in 1u64.. {
            *node = next_node(*node, self.config.servers.len());
            let opened = {
                let _permit = self.gate.acquire().await.ok()?;
                let cookie = self.cookie(*node);
                let open = self.open(*node, source, false, &cookie, resume.as_deref());
                tokio::select! {
                    _ = self.stop.cancelled() => return None,
                    opened = tokio::time::timeout(timeout, open) => opened,
                }
            };
            let error = match opened {
                Ok(Ok(conn)) => {
                    let mut recorded = self.shared.recorded();
                    recorded.reconnects += 1;
                    stats::record(&mut recorded.reconnect, ended.elapsed().as_micros() as u64);
                    return Some(conn);
                }
                Ok(Err(e)) => e,
                Err(_) => String::from("timeout"),
            };
            *self.shared.recorded().reconnect_errors.entry(error).or_default() += 1;
            let backoff = Duration::from_millis(50 * attempt.min(20));
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
        None
    }

    /// A stalled tab: opens its stream, then reads nothing until the window closed, so
    /// that its socket buffers fill and the server must queue for it and, once it is
    /// `--channel-capacity` updates behind, send a `lagged` resync. Then it reads until
    /// its stream accounts for the whole window, and is judged.
    async fn run_slow(self) -> SlowReport {
        let report = self.slow().await.unwrap_or_else(|error| SlowReport { error: Some(error), ..Default::default() });
        self.shared.slow_done.fetch_add(1, Ordering::Relaxed);
        report
    }

    async fn slow(&self) -> Result<SlowReport, String> {
        let source = source_addr(self.index, self.config.source_addrs);
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let opened = {
            let _permit = self.gate.acquire().await.map_err(|e| e.to_string())?;
            // The run's user (who sees every update), not an audience's: the slow client
            // is judged against the whole window.
            let node = self.home();
            tokio::time::timeout(timeout, self.open(node, source, true, &self.shared.cookie(node), None)).await
        };
        self.shared.slow_started.fetch_add(1, Ordering::Relaxed);
        let mut conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(format!("slow client: {e}")),
            Err(_) => return Err(String::from("slow client: connect timeout")),
        };
        tokio::select! {
            _ = self.shared.resume.cancelled() => {}
            _ = self.stop.cancelled() => return Err(String::from("the window never closed")),
        }
        let (seq0, seq1) = (self.shared.seq0.load(Ordering::Acquire), self.shared.seq1.load(Ordering::Acquire));
        let mut seen = Vec::new();
        let mut events = Vec::new();
        // Everything up to seq1 arrived, or a resync stood for it.
        let mut covered = seq0;
        while covered < seq1 {
            let read = tokio::select! {
                _ = self.stop.cancelled() => {
                    return Err(format!("had not caught up when the run ended ({} of {} updates)", covered - seq0, seq1 - seq0));
                }
                read = conn.read_events(&mut events) => read,
            };
            match read {
                Ok(true) => {}
                Ok(false) => return Err(String::from("the server closed the stream")),
                Err(e) => return Err(format!("read: {}", e.kind())),
            }
            for event in events.drain(..) {
                let event = match event {
                    SseEvent::Update { seq, .. } => Seen::Update(seq),
                    SseEvent::Resync { seq, reason } => Seen::Resync { seq, lagged: reason == "lagged" },
                    SseEvent::Connected | SseEvent::Ping | SseEvent::Other(_) => continue,
                };
                let (Seen::Update(seq) | Seen::Resync { seq, .. }) = event;
                covered = covered.max(seq);
                seen.push(event);
            }
        }
        Ok(judge_slow(&seen, seq0, seq1))
    }

    /// Connects to `node` (`stalled`: with small socket buffers), sends the request
    /// (resuming after `resume`, if any) and waits for the `connected` event. Events that
    /// came with it (a resumed stream's replay) stay for the next read.
    async fn open(
        &self,
        node: usize,
        source: std::net::IpAddr,
        stalled: bool,
        cookie: &str,
        resume: Option<&str>,
    ) -> Result<SseConn, String> {
        let server = self.config.servers[node];
        let stream = connect_from(source, server, stalled).await.map_err(|e| format!("connect: {e}"))?;
        let mut conn =
            SseConn::open(stream, "127.0.0.1", &self.config.path, cookie, resume).await.map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        loop {
            match conn.read_events(&mut events).await {
                Ok(true) => {}
                Ok(false) => return Err(String::from("closed before connected")),
                Err(e) => return Err(format!("read: {}", e.kind())),
            }
            if let Some(at) = events.iter().position(|e| *e == SseEvent::Connected) {
                conn.unread(events.drain(at + 1..));
                return Ok(conn);
            }
            events.clear();
        }
    }
}

/// A client's refetch loop: one request at a time, the latest notification wins.
struct Refetcher {
    wake: Arc<Notify>,
    /// The oldest notification not yet answered by a refetch: when it arrived (µs) and
    /// its `ts` (when the server published it). One lock, so that the refetch loop, on
    /// another thread, never takes one without the other.
    pending: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
}

impl Refetcher {
    fn spawn(
        runtime: &tokio::runtime::Handle,
        http: reqwest::Client,
        base: String,
        storm: StormConfig,
        shared: Arc<Shared>,
        stop: CancellationToken,
    ) -> Refetcher {
        let wake = Arc::new(Notify::new());
        let pending = Arc::new(std::sync::Mutex::new(None));
        let (w, p) = (wake.clone(), pending.clone());
        runtime.spawn(async move {
            let mut etag: Option<String> = None;
            // Delta mode: the seq this client's copy of the list is current to. It held
            // the list as of the window's start (loading it is not part of the storm).
            let mut since: Option<u64> = None;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = w.notified() => {}
                }
                let taken = p.lock().unwrap_or_else(|e| e.into_inner()).take();
                let Some((arrived, published)) = taken else { continue };
                let url = match storm.mode {
                    StormMode::Full => format!("{base}/trpc/storage.volumes.list"),
                    StormMode::Delta => {
                        let since = *since.get_or_insert_with(|| shared.seq0.load(Ordering::Acquire));
                        format!("{base}/trpc/storage.volumes.changes?input=%7B%22since%22%3A{since}%7D")
                    }
                    StormMode::Paged => {
                        format!("{base}/trpc/storage.volumes.page?input=%7B%22limit%22%3A{}%7D", storm.page_size)
                    }
                };
                shared.refetches.fetch_add(1, Ordering::Relaxed);
                let outcome = tokio::select! {
                    _ = stop.cancelled() => return,
                    outcome = refetch(&http, &url, &storm, etag.as_deref()) => outcome,
                };
                let done = now_micros();
                let mut recorded = shared.recorded();
                let s = &mut recorded.storm;
                s.refetches += 1;
                match outcome {
                    Ok(answer) => {
                        s.body_bytes += answer.body_bytes;
                        s.wire_bytes += answer.wire_bytes;
                        *s.encodings.entry(answer.encoding).or_default() += 1;
                        match answer.status {
                            200 => s.ok += 1,
                            304 => s.not_modified += 1,
                            _ => s.errors += 1,
                        }
                        if answer.etag.is_some() {
                            etag = answer.etag;
                        }
                        if let Some(delta) = answer.delta {
                            if delta.resync {
                                s.resync_answers += 1;
                            }
                            s.upserts += delta.upserts;
                            since = Some(delta.seq);
                        }
                        if let Some(h) = s.latency.as_mut() {
                            stats::record(h, done.saturating_sub(arrived));
                        }
                        if let (Some(h), true) = (s.applied.as_mut(), answer.status == 200 || answer.status == 304) {
                            stats::record(h, done.saturating_sub(published));
                        }
                    }
                    Err(e) => {
                        s.errors += 1;
                        tracing::debug!(%e, "refetch failed");
                    }
                }
            }
        });
        Refetcher { wake, pending }
    }

    fn notify(&self, arrived: u64, published: u64) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert((arrived, published));
        self.wake.notify_one();
    }
}

struct Answer {
    status: u16,
    body_bytes: u64,
    wire_bytes: u64,
    encoding: String,
    etag: Option<String>,
    /// A `changes` answer, read.
    delta: Option<DeltaRead>,
}

struct DeltaRead {
    seq: u64,
    resync: bool,
    upserts: u64,
}

#[derive(Debug)]
struct RefetchError(String);

impl std::fmt::Display for RefetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<reqwest::Error> for RefetchError {
    fn from(e: reqwest::Error) -> Self {
        RefetchError(e.to_string())
    }
}

async fn refetch(
    http: &reqwest::Client,
    url: &str,
    storm: &StormConfig,
    etag: Option<&str>,
) -> Result<Answer, RefetchError> {
    let mut request = http.get(url);
    if !storm.accept_encoding.is_empty() {
        request = request.header("accept-encoding", &storm.accept_encoding);
    }
    // A delta client asks a new question each time (its since moves): no ETag to send.
    if let (true, Some(etag), false) = (storm.conditional, etag, storm.mode == StormMode::Delta) {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let encoding = header("content-encoding").unwrap_or_else(|| String::from("identity"));
    let etag = header("etag");
    // "HTTP/1.1 200 OK\r\n", each "name: value\r\n", the blank line.
    let head_bytes =
        17 + response.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>() as u64 + 2;
    // Counted and dropped chunk by chunk: 2,000 clients holding 10 MB each would not fit.
    // A delta answer is small, and read: the client applies it.
    let keep = storm.mode == StormMode::Delta && status == 200;
    let mut kept = Vec::new();
    let mut body_bytes = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        body_bytes += chunk.len() as u64;
        if keep {
            kept.extend_from_slice(&chunk);
        }
    }
    let delta = if keep { Some(read_delta(&kept, &encoding)?) } else { None };
    Ok(Answer { status, body_bytes, wire_bytes: head_bytes + body_bytes, encoding, etag, delta })
}

/// A `changes` answer's seq, kind and upserts, from its body as it came.
fn read_delta(body: &[u8], encoding: &str) -> Result<DeltaRead, RefetchError> {
    use std::io::Read as _;
    let mut plain = Vec::new();
    let decoded = match encoding {
        "br" => brotli::Decompressor::new(body, 4096).read_to_end(&mut plain).map(|_| &plain[..]),
        "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut plain).map(|_| &plain[..]),
        _ => Ok(body),
    };
    let json = decoded.map_err(|e| RefetchError(format!("decoding a changes answer: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| RefetchError(format!("a changes answer: {e}")))?;
    let data = &value["result"]["data"];
    let seq = data["seq"].as_u64().ok_or_else(|| RefetchError(format!("a changes answer without seq: {data}")))?;
    Ok(DeltaRead {
        seq,
        resync: data["kind"] == "resync",
        upserts: data["upserts"].as_array().map_or(0, |u| u.len() as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: fn(u64) -> Seen = Seen::Update;

    #[test]
    fn a_user_may_hear_only_of_their_projects_resources_and_is_concerned_by_any_of_them() {
        let owners: HashMap<String, String> = [("srv-web", "prj-web"), ("srv-data", "prj-data")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let alice =
            AudienceUser { name: "alice".into(), cookie: String::new(), projects: Some(vec!["prj-web".into()]) };
        let ids = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(alice.may_see(&owners, Some(&ids(&["srv-web"]))));
        assert!(!alice.may_see(&owners, Some(&ids(&["srv-data"]))));
        assert!(!alice.may_see(&owners, Some(&ids(&["srv-web", "srv-data"]))), "one foreign id is a leak");
        assert!(!alice.may_see(&owners, Some(&ids(&["srv-unknown"]))), "what cannot be placed is a leak");
        assert!(alice.may_see(&owners, None), "the whole collection names nothing of anyone's");
        assert!(alice.concerned(&owners, Some(&ids(&["srv-web", "srv-data"]))));
        assert!(!alice.concerned(&owners, Some(&ids(&["srv-data"]))));
        let admin = AudienceUser { name: "admin".into(), cookie: String::new(), projects: None };
        assert!(
            admin.may_see(&owners, Some(&ids(&["srv-data"]))) && admin.concerned(&owners, Some(&ids(&["srv-data"])))
        );
    }

    fn lagged(seq: u64) -> Seen {
        Seen::Resync { seq, lagged: true }
    }

    #[test]
    fn a_slow_client_that_got_everything_is_complete() {
        // Updates before the window (10) do not count; the window is (10, 13].
        let report = judge_slow(&[U(10), U(11), U(12), U(13)], 10, 13);
        assert_eq!(
            (report.outcome, report.received, report.missing, report.before_resync),
            (SlowOutcome::Complete, 3, 0, None)
        );
    }

    #[test]
    fn a_lagged_resync_stands_for_what_did_not_arrive() {
        // 11 and 12 arrived, 13 and 14 were dropped, the resync covers them, 15 follows it.
        let report = judge_slow(&[U(11), U(12), lagged(14), U(15)], 10, 15);
        assert_eq!((report.outcome, report.received, report.missing), (SlowOutcome::Lagged, 3, 0));
        assert_eq!(report.before_resync, Some(2));
    }

    #[test]
    fn a_missing_update_no_resync_covers_is_a_gap() {
        assert_eq!(judge_slow(&[U(11), U(13)], 10, 13).missing, 1);
        assert_eq!(judge_slow(&[U(11), U(13)], 10, 13).outcome, SlowOutcome::Gap);
        // A resync covers only up to its seq: 16 is still missing.
        let after = judge_slow(&[U(11), lagged(14), U(15), U(17)], 10, 17);
        assert_eq!((after.outcome, after.missing), (SlowOutcome::Gap, 1));
        // Only a `lagged` resync counts for a client that read too slowly.
        let gap_resync = judge_slow(&[U(11), Seen::Resync { seq: 13, lagged: false }], 10, 13);
        assert_eq!((gap_resync.outcome, gap_resync.missing), (SlowOutcome::Gap, 2));
    }
}
