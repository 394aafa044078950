//! One load-test run, from starting the server to the report: the coordinator.
//!
//! 1. Start the simulator and the server, or Redis and several nodes (or use
//!    `--target`), wait until ready, sign in on each node.
//! 2. Measure the server idle, start the worker processes, wait until every client
//!    streams (or gave up), measure again: memory per connection.
//! 3. Open the window (bus seq, CPU, upstream counts), drive mutations for the duration
//!    (and restart the nodes one at a time, with `--rolling-restart`), close the window,
//!    wait until every notification arrived (or `--drain` passed).
//! 4. Measure, stop everything, build the report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use stalecast::updates::now_micros;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};

use crate::cluster::{self, RestartPlan, Started};
use crate::drive::{self, Counters};
use crate::nodes::Nodes;
use crate::procs;
use crate::report::{self, ClusterMeasured, NodeMeasured, RunReport};
use crate::worker::{Audience, AudienceUser, StormConfig, ToCoordinator, ToWorker, WorkerConfig, WorkerReport};
use crate::{Mutation, RunArgs};

/// Descriptors a worker keeps for itself (runtime, stdio, the refetch pool's spares).
const FD_RESERVE: u64 = 256;

/// What the coordinator knows about one worker while it runs.
struct WorkerHandle {
    stdin: ChildStdin,
    child: tokio::process::Child,
    progress: Arc<Progress>,
    ready: Option<tokio::sync::oneshot::Receiver<()>>,
    done: Option<tokio::sync::oneshot::Receiver<WorkerReport>>,
}

#[derive(Default)]
struct Progress {
    connected: AtomicU64,
    failed: AtomicU64,
    in_window: AtomicU64,
    refetches: AtomicU64,
    slow_done: AtomicU64,
}

/// Sums a counter over all workers.
fn total(workers: &[WorkerHandle], f: impl Fn(&Progress) -> &AtomicU64) -> u64 {
    workers.iter().map(|w| f(&w.progress).load(Ordering::Relaxed)).sum()
}

fn bar(hidden: bool, len: u64, template: &str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub async fn run(args: &RunArgs) -> anyhow::Result<RunReport> {
    let name = args.name();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let soft_limit = crate::raise_fd_limit();
    let started_at = SystemTime::now();
    let mutation = if args.storm { Mutation::Volumes } else { args.mutation };
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    check_knobs(args)?;

    // 1. The processes under test.
    let (mut started, addrs, sim_url) = if args.targets.is_empty() {
        let bin = procs::server_binary(args.server_bin.as_deref())?;
        let started =
            Started::start(&bin, args.nodes.into(), args.server_nofile, &args.server_args, &args.out, &name).await?;
        let addrs: Vec<SocketAddr> = started.nodes.iter().map(|n| n.addr).collect();
        tracing::info!(?addrs, sim_url = %started.sim_url, pids = ?started.node_pids(), "servers started");
        let sim_url = Some(started.sim_url.clone());
        (Some(started), addrs, sim_url)
    } else {
        let addrs = args.targets.iter().map(|t| target_addr(t)).collect::<anyhow::Result<Vec<_>>>()?;
        (None, addrs, args.sim_url.clone())
    };
    // The processes whose memory and CPU the report gives: every node's, summed. Not
    // across a rolling restart, whose new processes start from nothing.
    let pids = match &started {
        Some(s) if !args.rolling_restart => s.node_pids(),
        Some(_) => Vec::new(),
        None => args.server_pid.into_iter().collect(),
    };
    let pid = pids.first().copied().filter(|_| pids.len() == 1);
    // Every request from here on is signed in, as a browser's would be: on each node, as
    // sessions are each node's own.
    let mut signed_in = Vec::new();
    for addr in &addrs {
        let base = format!("http://{addr}");
        wait_ready(&plain, &base).await?;
        signed_in.push((*addr, sign_in(&plain, &base, &args.user, &args.password).await?));
    }
    let cookie = signed_in[0].1.clone();
    let nodes = Arc::new(Nodes::new(signed_in));
    let base = nodes.base(0);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(crate::signed_in(&cookie)?)
        .build()?;
    // Warnings before readiness (`/readyz` answering 503 while the cache fills) are not the run's.
    for node in started.iter().flat_map(|s| &s.nodes) {
        node.forget_warnings();
    }

    if args.storm {
        let sim_url = sim_url.as_deref().context("--storm needs the simulator (--sim-url with --target)")?;
        seed_volumes(&http, &base, sim_url, args.volumes).await?;
    }
    let poll = match (args.storm, pid, sim_url.as_deref()) {
        (true, Some(pid), Some(sim_url)) => Some(poll_cost(&http, pid, sim_url).await?),
        _ => None,
    };
    // Warm the paths the run uses, so lazy initialisation is not counted per connection.
    for node in 0..nodes.len() {
        let _ = bus_seq(&plain, &nodes.base(node), &nodes.cookie(node)).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = procs::sample_all(&pids)?;
    let redis_pid = started.as_ref().and_then(|s| s.redis.as_ref()).and_then(|r| r.pid());

    // 2. Workers and their clients.
    let fds_per_client = if args.storm { 2 } else { 1 };
    let per_worker = args
        .clients_per_worker
        .unwrap_or((soft_limit.saturating_sub(FD_RESERVE) / fds_per_client) as usize)
        .max(1)
        .min(args.clients.max(1));
    let storm = args.storm.then(|| StormConfig {
        mode: args.storm_mode,
        page_size: args.page_size,
        accept_encoding: args.accept_encoding.clone(),
        conditional: !args.no_conditional,
    });
    let audience = if args.audience.is_empty() { None } else { Some(audience_of(&http, &base, args).await?) };
    // With an audience every worker holds a client of each user, its all-seeing ones
    // among them: what the others are judged against.
    let per_worker = match &audience {
        Some(a) => per_worker.max(a.users.len().min(args.clients)),
        None => per_worker,
    };
    let worker_count = args.clients.div_ceil(per_worker).max(1);
    let mut workers = Vec::new();
    let mut first_index = 0;
    for w in 0..worker_count {
        let clients = per_worker.min(args.clients - first_index);
        let config = WorkerConfig {
            worker: w,
            servers: addrs.clone(),
            cookies: nodes.cookies(),
            reconnect: args.rolling_restart,
            path: String::from("/trpc/updates.onUpdate"),
            clients,
            first_index,
            source_addrs: args.source_addrs,
            connect_concurrency: args.connect_concurrency,
            connect_timeout_ms: args.connect_timeout.as_millis() as u64,
            slow_clients: if w == 0 { args.slow_clients } else { 0 },
            storm: storm.clone(),
            cookie: cookie.clone(),
            audience: audience.clone(),
        };
        first_index += clients;
        workers.push(spawn_worker(&config).await?);
    }
    tracing::info!(clients = args.clients, workers = worker_count, per_worker, soft_limit, "clients connecting");

    let connecting =
        bar(args.no_progress, args.clients as u64, "connecting {bar:40} {pos}/{len} clients ({msg}) {elapsed}");
    let connect_started = Instant::now();
    let mut ready: Vec<_> = workers.iter_mut().filter_map(|w| w.ready.take()).collect();
    while !ready.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut pending = Vec::new();
        for mut rx in ready {
            match rx.try_recv() {
                Ok(()) => {}
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => pending.push(rx),
                Err(_) => bail!("a worker exited before all its clients connected"),
            }
        }
        ready = pending;
        connecting.set_position(total(&workers, |p| &p.connected));
        connecting.set_message(format!("{} failed", total(&workers, |p| &p.failed)));
    }
    let connected = total(&workers, |p| &p.connected);
    let failed = total(&workers, |p| &p.failed);
    connecting.set_position(connected);
    connecting.finish_with_message(format!("{failed} failed"));
    let connect_wall = connect_started.elapsed();

    // Idle for a moment with every client connected: memory per connection.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connected_sample = procs::sample_all(&pids)?;

    // 3. The measurement window.
    let seq0 = any_seq(&plain, &nodes).await?;
    let start_us = now_micros();
    for worker in &mut workers {
        send(&mut worker.stdin, &ToWorker::Window { seq0, start_us }).await?;
    }
    let upstream0 = match &sim_url {
        Some(url) => Some(sim_stats(&http, url).await?),
        None => None,
    };
    let window_started = Instant::now();
    let before = procs::sample_all(&pids)?;
    let redis_before = redis_pid.and_then(|p| procs::sample(p).ok());
    let generator_before = generator_cpu(&workers);

    let counters = Arc::new(Counters::default());
    let driving = bar(args.no_progress, args.duration.as_secs().max(1), "running    {bar:40} {pos}/{len} s  {msg}");
    let driver = {
        let (http, nodes, counters) = (plain.clone(), nodes.clone(), counters.clone());
        let (rate, duration) = (args.rate, args.duration);
        tokio::spawn(async move { drive::drive(&http, nodes, mutation, rate, duration, counters).await })
    };
    // The rolling restart runs beside the mutations; it has the nodes until it is done,
    // and sends each restarted node's new session cookie here, for the workers.
    let (cookies_tx, mut cookies_rx) = tokio::sync::mpsc::unbounded_channel();
    let restarter = {
        let nodes_to_restart = match started.as_mut() {
            Some(s) if args.rolling_restart => std::mem::take(&mut s.nodes),
            _ => Vec::new(),
        };
        let plan = RestartPlan {
            nodes: nodes.clone(),
            http: plain.clone(),
            user: args.user.clone(),
            password: args.password.clone(),
            pause: args.restart_pause,
            window_started,
            cookies: cookies_tx,
        };
        tokio::spawn(cluster::rolling_restart(nodes_to_restart, plan))
    };
    let mut driver = std::pin::pin!(driver);
    let mut restarter = std::pin::pin!(restarter);
    let (mut driven, mut restarts) = (None, None);
    while driven.is_none() || restarts.is_none() {
        tokio::select! {
            d = &mut driver, if driven.is_none() => driven = Some(d.context("driver panicked")??),
            r = &mut restarter, if restarts.is_none() => {
                let (back, done) = r.context("the rolling restart panicked")?;
                if let Some(s) = started.as_mut() && !back.is_empty() {
                    s.nodes = back;
                }
                restarts = Some(done);
            }
            Some((node, cookie)) = cookies_rx.recv() => {
                for worker in &mut workers {
                    send(&mut worker.stdin, &ToWorker::Cookie { node, cookie: cookie.clone() }).await?;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        driving.set_position(window_started.elapsed().as_secs());
        driving.set_message(format!(
            "{} mutations ({} failed), {} notifications received{}",
            counters.sent.load(Ordering::Relaxed),
            counters.failed.load(Ordering::Relaxed),
            total(&workers, |p| &p.in_window),
            if driven.is_some() { ", waiting for the rolling restart" } else { "" }
        ));
    }
    let (Some(driven), Some(restarts)) = (driven, restarts) else { bail!("the run ended without its mutations") };
    driving.finish();
    let seq1 = any_seq(&plain, &nodes).await?;
    for worker in &mut workers {
        send(&mut worker.stdin, &ToWorker::WindowEnd { seq1 }).await?;
    }
    let updates = seq1.saturating_sub(seq0);
    let expected = updates * connected;
    let draining = bar(args.no_progress, expected, "delivering {bar:40} {pos}/{len} notifications {msg}");
    let drain_started = Instant::now();
    let mut last_refetches = u64::MAX;
    let mut quiet_since = Instant::now();
    let (mut last_received, mut received_since) = (u64::MAX, Instant::now());
    loop {
        let received = total(&workers, |p| &p.in_window);
        let refetches = total(&workers, |p| &p.refetches);
        draining.set_position(received.min(expected));
        if refetches != last_refetches {
            last_refetches = refetches;
            quiet_since = Instant::now();
        }
        // In a storm, refetches still running are part of the run: wait until they stop.
        let storm_settled = !args.storm || quiet_since.elapsed() > Duration::from_secs(2);
        // The slow clients read again now; each is done once its stream covers the window.
        let slow_done = total(&workers, |p| &p.slow_done) >= args.slow_clients as u64;
        // With an audience each client expects only its user's share, which only the
        // workers know: done once nothing more arrived for a second.
        if received != last_received {
            last_received = received;
            received_since = Instant::now();
        }
        let delivered = received >= expected
            || (audience.is_some() && received > 0 && received_since.elapsed() > Duration::from_secs(1));
        if (delivered && storm_settled && slow_done) || drain_started.elapsed() > args.drain {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    draining.finish();
    let window = window_started.elapsed();
    let after = procs::sample_all(&pids)?;
    let redis_cpu_s = match (redis_before, redis_pid.and_then(|p| procs::sample(p).ok())) {
        (Some(before), Some(after)) => Some(after.cpu_s - before.cpu_s),
        _ => None,
    };
    let generator_cpu_s = generator_cpu(&workers) - generator_before;
    let upstream1 = match &sim_url {
        Some(url) => Some(sim_stats(&http, url).await?),
        None => None,
    };
    let mut alive = true;
    for node in 0..nodes.len() {
        let healthz = plain.get(format!("{}/healthz", nodes.base(node))).send().await;
        alive &= healthz.is_ok_and(|r| r.status().is_success());
    }

    // 4. Stop the workers, collect their reports, stop the server.
    let mut reports = Vec::new();
    let mut worker_failures = Vec::new();
    for worker in &mut workers {
        let _ = send(&mut worker.stdin, &ToWorker::Stop).await;
    }
    for mut worker in workers {
        let done = worker.done.take().context("done channel")?;
        match tokio::time::timeout(Duration::from_secs(60), done).await {
            Ok(Ok(report)) => reports.push(report),
            _ => bail!("a worker sent no report"),
        }
        match tokio::time::timeout(Duration::from_secs(10), worker.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => worker_failures.push(format!("a worker exited with {status}")),
            Ok(Err(e)) => worker_failures.push(format!("waiting for a worker: {e}")),
            Err(_) => worker_failures.push(String::from("a worker did not exit within 10 s of its report")),
        }
    }
    let server_alive_process = started.as_mut().is_none_or(|s| s.nodes.iter_mut().all(|n| n.alive()));
    let (mut warnings, mut errors, mut samples) = (0, 0, Vec::new());
    for node in started.iter().flat_map(|s| &s.nodes) {
        let (w, e, s) = node.log_counts();
        warnings += w;
        errors += e;
        samples.extend(s.into_iter().take(5usize.saturating_sub(samples.len())));
    }
    let server_log = started.as_ref().and_then(|s| s.nodes.first()).map(|n| n.log_path(0));
    let clean_exit = match started.take() {
        Some(mut s) => {
            let clean = s.stop_nodes().await;
            let cluster = (s.nodes.len() > 1).then(|| ClusterMeasured {
                nodes: s
                    .nodes
                    .iter()
                    .map(|n| {
                        let (warnings, errors, _) = n.log_counts();
                        NodeMeasured {
                            addr: n.addr.to_string(),
                            pids: n.pids.clone(),
                            warnings,
                            errors,
                            clean_exits: n.clean_exits.clone(),
                        }
                    })
                    .collect(),
                restarts: restarts.clone(),
                redis_cpu_s,
            });
            s.stop().await;
            Some((clean, cluster))
        }
        None => None,
    };
    let (clean_exit, cluster) = match clean_exit {
        Some((clean, cluster)) => (Some(clean), cluster),
        None => (None, None),
    };

    let measured = report::Measured {
        poll,
        name,
        args: args.clone(),
        mutation,
        started_at,
        worker_count,
        per_worker,
        connect_wall,
        window,
        seq0,
        seq1,
        driven,
        reports,
        audience: audience.as_ref().map(|a| a.users.iter().map(|u| u.name.clone()).collect()),
        worker_failures,
        idle,
        connected_sample,
        before,
        after,
        generator_cpu_s,
        upstream: upstream0.zip(upstream1),
        server_alive: alive && server_alive_process,
        clean_exit,
        server_warnings: warnings,
        server_errors: errors,
        server_log_samples: samples,
        server_log,
        cluster,
    };
    report::build(measured)
}

/// CPU seconds the load generator itself (this process and its workers) has used: it
/// shares the machine with the server, so its cost shows in the latency.
fn generator_cpu(workers: &[WorkerHandle]) -> f64 {
    let own = procs::sample(std::process::id()).map_or(0.0, |s| s.cpu_s);
    own + workers
        .iter()
        .filter_map(|w| w.child.id())
        .filter_map(|pid| procs::sample(pid).ok())
        .map(|s| s.cpu_s)
        .sum::<f64>()
}

/// Knob combinations a run cannot honour, refused before anything starts.
fn check_knobs(args: &RunArgs) -> anyhow::Result<()> {
    let several = args.nodes > 1 || args.targets.len() > 1;
    anyhow::ensure!(args.targets.is_empty() || args.nodes == 1, "--nodes starts a cluster; --target drives one");
    anyhow::ensure!(!(several && args.storm), "--storm runs against one node");
    anyhow::ensure!(!several || args.audience.is_empty(), "--audience runs against one node");
    anyhow::ensure!(
        !args.rolling_restart || (args.nodes > 1 && args.targets.is_empty()),
        "--rolling-restart restarts the nodes the tool started: it needs --nodes 2 or more"
    );
    anyhow::ensure!(
        !(args.rolling_restart && args.slow_clients > 0),
        "--slow-clients cannot be judged across a rolling restart (their stream ends)"
    );
    Ok(())
}

/// The address of a `--target` URL (`http://<ip>:<port>`, on loopback).
fn target_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let base = url.trim_end_matches('/');
    let addr: SocketAddr = base
        .trim_start_matches("http://")
        .parse()
        .with_context(|| format!("{base}: the target must be http://<ip>:<port> on loopback"))?;
    anyhow::ensure!(addr.ip().is_loopback(), "{addr}: the load test only targets loopback addresses");
    Ok(addr)
}

async fn spawn_worker(config: &WorkerConfig) -> anyhow::Result<WorkerHandle> {
    let exe = std::env::current_exe().context("own executable")?;
    let mut child = Command::new(exe)
        .arg("worker")
        .arg(serde_json::to_string(config)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting a worker")?;
    let stdin = child.stdin.take().context("worker stdin")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let progress = Arc::new(Progress::default());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let p = progress.clone();
    tokio::spawn(async move {
        let (mut ready_tx, mut done_tx) = (Some(ready_tx), Some(done_tx));
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<ToCoordinator>(&line) {
                Ok(ToCoordinator::Progress { connected, failed, in_window, refetches, slow_done }) => {
                    p.slow_done.store(slow_done, Ordering::Relaxed);
                    p.connected.store(connected, Ordering::Relaxed);
                    p.failed.store(failed, Ordering::Relaxed);
                    p.in_window.store(in_window, Ordering::Relaxed);
                    p.refetches.store(refetches, Ordering::Relaxed);
                }
                Ok(ToCoordinator::Ready { connected, failed }) => {
                    p.connected.store(connected, Ordering::Relaxed);
                    p.failed.store(failed, Ordering::Relaxed);
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(ToCoordinator::Done(report)) => {
                    if let Some(tx) = done_tx.take() {
                        let _ = tx.send(*report);
                    }
                }
                Err(e) => tracing::warn!(%e, "unreadable worker line"),
            }
        }
    });
    Ok(WorkerHandle { stdin, child, progress, ready: Some(ready_rx), done: Some(done_rx) })
}

async fn send(stdin: &mut ChildStdin, msg: &ToWorker) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    stdin.write_all(&line).await?;
    stdin.flush().await?;
    Ok(())
}

/// Waits until `/readyz` answers 200 (every collection fetched).
/// The `--audience` users signed in, with the projects each may see, and the project of
/// every server (what the run toggles).
async fn audience_of(http: &reqwest::Client, base: &str, args: &RunArgs) -> anyhow::Result<Audience> {
    anyhow::ensure!(!args.storm && args.mutation == Mutation::Servers, "--audience judges servers mutations only");
    let servers: serde_json::Value =
        http.get(format!("{base}/trpc/compute.servers.list")).send().await?.error_for_status()?.json().await?;
    let owners: HashMap<String, String> = servers["result"]["data"]
        .as_array()
        .context("compute.servers.list answered no array")?
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?.to_owned(), s["projectId"].as_str()?.to_owned())))
        .collect();
    let all: HashSet<&String> = owners.values().collect();
    let mut users = Vec::new();
    for spec in &args.audience {
        let (name, password) = spec.split_once(':').with_context(|| format!("--audience {spec}: user:password"))?;
        // A request of its own, without the coordinator's cookie: a sign-in ends the
        // session its request came with.
        let cookie = sign_in(&reqwest::Client::new(), base, name, password).await?;
        let me: serde_json::Value = http
            .get(format!("{base}/trpc/auth.me"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let projects: Vec<String> = me["result"]["data"]["projects"]
            .as_array()
            .context("auth.me answered no projects")?
            .iter()
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect();
        // A user who sees every project the run touches sees everything: a witness.
        let sees_all = all.iter().all(|p| projects.contains(p));
        tracing::info!(user = name, ?projects, sees_all, "audience user signed in");
        users.push(AudienceUser { name: name.to_owned(), cookie, projects: (!sees_all).then_some(projects) });
    }
    anyhow::ensure!(users.iter().any(|u| u.projects.is_none()), "--audience needs a user who sees every project");
    Ok(Audience { users, owners })
}

/// Signs `user` in (`auth.login`); answers the session cookie as `name=value`.
pub async fn sign_in(http: &reqwest::Client, base: &str, user: &str, password: &str) -> anyhow::Result<String> {
    let response = http
        .post(format!("{base}/trpc/auth.login"))
        .json(&serde_json::json!({"user": user, "password": password}))
        .send()
        .await
        .context("signing in")?;
    let status = response.status();
    let cookie = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .find(|pair| pair.contains("stalecast_session="))
        .map(str::to_owned);
    let body = response.text().await.unwrap_or_default();
    match cookie {
        Some(cookie) if status.is_success() => Ok(cookie),
        _ => bail!("signing in as {user}: {status} {body}"),
    }
}

pub async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{base}/readyz did not answer 200 within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bus's latest seq (`updates.state`) as the node at `base` knows it.
async fn bus_seq(http: &reqwest::Client, base: &str, cookie: &str) -> anyhow::Result<u64> {
    let response =
        http.get(format!("{base}/trpc/updates.state")).header(reqwest::header::COOKIE, cookie).send().await?;
    let body: Value = response.json().await?;
    body["result"]["data"]["seq"].as_u64().with_context(|| format!("updates.state has no seq: {body}"))
}

/// The latest seq: the highest any node knows (they share one, but a node may not have
/// applied the last entry another published yet).
async fn any_seq(http: &reqwest::Client, nodes: &Nodes) -> anyhow::Result<u64> {
    let mut seq = None;
    for node in 0..nodes.len() {
        let at = bus_seq(http, &nodes.base(node), &nodes.cookie(node)).await?;
        seq = Some(seq.map_or(at, |s: u64| s.max(at)));
    }
    seq.context("no node to ask")
}

/// Requests the simulator served so far, by kind (`GET volumes`, …).
pub async fn sim_stats(http: &reqwest::Client, sim_url: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let body: Value = http.get(format!("{sim_url}/_sim/stats")).send().await?.json().await?;
    let requests = body["requests"].as_object().context("/_sim/stats has no requests")?;
    Ok(requests.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
}

/// What the poller costs the server with nothing else going on: its CPU over 10 s, per
/// poll interval (all five collections; the volumes are read in pages of Cinder's 1,000,
/// so the intervals are counted by the projects' listing, one page each).
async fn poll_cost(http: &reqwest::Client, pid: u32, sim_url: &str) -> anyhow::Result<report::PollCost> {
    let polls = |stats: &BTreeMap<String, u64>| stats.get("GET projects").copied().unwrap_or(0);
    let (before, asked) = (procs::sample(pid)?, sim_stats(http, sim_url).await?);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (after, answered) = (procs::sample(pid)?, sim_stats(http, sim_url).await?);
    let polls = polls(&answered).saturating_sub(polls(&asked));
    let cpu_s = after.cpu_s - before.cpu_s;
    Ok(report::PollCost {
        window_s: started.elapsed().as_secs_f64(),
        polls,
        cpu_s,
        cpu_ms_per_poll: if polls > 0 { cpu_s * 1e3 / polls as f64 } else { 0.0 },
    })
}

/// Seeds the simulator until it holds at least `volumes` volumes (`POST /_sim/seed`:
/// realistic records), and waits until Stalecast serves them all.
async fn seed_volumes(http: &reqwest::Client, base: &str, sim_url: &str, volumes: usize) -> anyhow::Result<()> {
    let list = |http: reqwest::Client| async move {
        let r = http.get(format!("{base}/trpc/storage.volumes.list")).send().await?;
        let text = r.bytes().await?;
        let body: Value = serde_json::from_slice(&text)?;
        let count = body["result"]["data"].as_array().map_or(0, Vec::len);
        anyhow::Ok((text.len(), count))
    };
    let (_, count) = list(http.clone()).await?;
    if count < volumes {
        let started = Instant::now();
        let r = http
            .post(format!("{sim_url}/_sim/seed"))
            .json(&serde_json::json!({ "volumes": volumes - count }))
            .send()
            .await?;
        let status = r.status();
        anyhow::ensure!(status.is_success(), "seeding the simulator: {status} {}", r.text().await.unwrap_or_default());
        tracing::info!(added = volumes - count, took_ms = started.elapsed().as_millis() as u64, "simulator seeded");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (len, count) = list(http.clone()).await?;
        if count >= volumes {
            tracing::info!(bytes = len, volumes = count, "storage.volumes.list seeded");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("storage.volumes.list holds {count} volumes after 60 s, expected {volumes}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
