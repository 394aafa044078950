//! `siege`: hostile clients against the real `stalecast` binary, with figures.
//!
//! Three scenarios, each against a fresh release server on loopback, each stopping by
//! itself:
//!
//! - `slow`: `--connections` clients of one kind hold connections the way slowloris
//!   does — a request body trickled a byte at a time (`slow-body`), a second request
//!   head trickled after a first answer (`slow-head`), a keep-alive connection left idle
//!   after its first answer (`idle`) — while one real client asks `projects.list` twice a
//!   second on fresh connections. Prints how many of its requests were answered and how
//!   fast, how long the server let the hostile connections live, and its memory.
//! - `shutdown`: `--streams` event streams, `--stalled` of them on sockets that stop
//!   reading, a burst of mutations to fill their buffers, then SIGTERM: prints how long
//!   the process took to exit and how the healthy streams ended.
//! - `fanout` ([`fanout`]): `--streams` event streams over one `--transport` — `plain`
//!   HTTP/1.1 (the lean event-stream writer), `tls-h1` (one TLS connection each) or `h2`
//!   (`--streams-per-connection` to an HTTP/2 connection), both TLS ones served by hyper
//!   — then `--rate` mutations a second for `--duration`: prints notifications expected,
//!   received and lost, delivery latency, the server's memory per stream and CPU per
//!   delivered notification, and the generator's own CPU.
//!
//! Nothing here asserts: it measures. `make siege` runs the standard set.

// A measuring tool: its figures are its output.
#![allow(clippy::print_stdout)]

mod fanout;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;
use stalecast_tests::child::ChildServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Hostile clients against the real stalecast binary, with figures")]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Slow or idle connections while a real client is served.
    Slow {
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long, default_value_t = 3000)]
        connections: usize,
        /// The server's --max-connections (0: its default, from the descriptor limit).
        #[arg(long, default_value_t = 0)]
        max_connections: usize,
        /// How long the real client keeps asking.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "45s")]
        duration: Duration,
    },
    /// SIGTERM with open streams, some of whose readers stopped reading.
    Shutdown {
        #[arg(long, default_value_t = 2000)]
        streams: usize,
        #[arg(long, default_value_t = 1000)]
        stalled: usize,
        #[arg(long, default_value_t = 600)]
        mutations: usize,
    },
    /// Event streams over plain HTTP/1.1, TLS HTTP/1.1 or HTTP/2: cost and latency.
    Fanout {
        #[arg(long, default_value_t = 2000)]
        streams: usize,
        #[arg(long, value_enum, default_value = "plain")]
        transport: fanout::Transport,
        /// Streams per HTTP/2 connection (1 for the HTTP/1.1 transports).
        #[arg(long, default_value_t = 1)]
        streams_per_connection: usize,
        /// Mutations per second during the window.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// How long the mutations run.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
        duration: Duration,
        /// How long to wait after the window for the last notifications.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        drain: Duration,
        /// How long one stream may take to open and see its `connected` event.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        connect_timeout: Duration,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    SlowBody,
    SlowHead,
    Idle,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // This tool holds thousands of sockets: raise its descriptor limit as the server does.
    stalecast::serve::raise_nofile_limit();
    match Args::parse().scenario {
        Scenario::Slow { kind, connections, max_connections, duration } => {
            slow(kind, connections, max_connections, duration).await
        }
        Scenario::Shutdown { streams, stalled, mutations } => shutdown(streams, stalled, mutations).await,
        Scenario::Fanout { streams, transport, streams_per_connection, rate, duration, drain, connect_timeout } => {
            let per_connection = streams_per_connection;
            fanout::fanout(fanout::FanoutArgs {
                streams,
                transport,
                per_connection,
                rate,
                duration,
                drain,
                connect_timeout,
            })
            .await
        }
    }
}

const GET_HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n";

/// Reads one answer to a `GET /healthz` (small, `content-length` framed).
async fn read_answer(socket: &mut TcpStream) -> std::io::Result<()> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return Ok(());
            }
        }
    }
}

/// One hostile connection: opens, behaves as `kind`, and answers how long the server
/// kept it open (`None`: still open at `until`, or never opened).
async fn hostile(addr: SocketAddr, kind: Kind, until: Instant) -> Option<Duration> {
    let mut socket = TcpStream::connect(addr).await.ok()?;
    let opened = Instant::now();
    let trickle: &[u8] = match kind {
        Kind::SlowBody => {
            let head = "POST /trpc/storage.volumes.create HTTP/1.1\r\nhost: localhost\r\n\
                        content-type: application/json\r\ncontent-length: 100000\r\n\r\n{";
            socket.write_all(head.as_bytes()).await.ok()?;
            b" "
        }
        Kind::SlowHead => {
            socket.write_all(GET_HEALTH).await.ok()?;
            read_answer(&mut socket).await.ok()?;
            socket.write_all(b"GET /trpc/projects.list HTTP/1.1\r\n").await.ok()?;
            b"x"
        }
        Kind::Idle => {
            socket.write_all(GET_HEALTH).await.ok()?;
            read_answer(&mut socket).await.ok()?;
            b""
        }
    };
    let mut buf = [0u8; 4096];
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        let step = left.min(Duration::from_secs(2));
        match tokio::time::timeout(step, socket.read(&mut buf)).await {
            // Closed (or answered and then closed): the server ended it.
            Ok(Ok(0)) | Ok(Err(_)) => return Some(opened.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => {
                if !trickle.is_empty() && socket.write_all(trickle).await.is_err() {
                    return Some(opened.elapsed());
                }
            }
        }
    }
}

/// One request of the real client, on a fresh connection: its latency if answered 200.
async fn real_request(http: &reqwest::Client, base: &str) -> Option<Duration> {
    let started = Instant::now();
    let response = http.get(format!("{base}/trpc/projects.list")).send().await.ok()?;
    let ok = response.status().is_success();
    response.bytes().await.ok()?;
    ok.then(|| started.elapsed())
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| stalecast_tests::vm_rss_kib(&s))
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn slow(kind: Kind, connections: usize, max_connections: usize, duration: Duration) -> anyhow::Result<()> {
    let limit = max_connections.to_string();
    let mut args = vec!["serve", "--port", "0"];
    if max_connections > 0 {
        args.extend(["--max-connections", &limit]);
    }
    let server = ChildServer::start(&args, &[]).await;
    let pid = server.pid().unwrap_or(0);
    let base = server.client.base.clone();
    let addr: SocketAddr = SocketAddr::new([127, 0, 0, 1].into(), server.addr.port());
    let idle_kib = resident_kib(pid);

    let until = Instant::now() + duration + Duration::from_secs(5);
    let started = Instant::now();
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        attackers.spawn(hostile(addr, kind, until));
    }
    // Let them connect before the real client starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak_kib = Arc::new(AtomicU64::new(resident_kib(pid)));

    let http = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(60)).build()?;
    let mut latencies = Histogram::<u64>::new(3)?;
    let (mut asked, mut answered, mut first_ok) = (0u64, 0u64, None);
    let real_until = Instant::now() + duration;
    let mut requests = tokio::task::JoinSet::new();
    while Instant::now() < real_until {
        let (http, base) = (http.clone(), base.clone());
        let asked_at = started.elapsed();
        requests.spawn(async move { (asked_at, real_request(&http, &base).await) });
        asked += 1;
        peak_kib.fetch_max(resident_kib(pid), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    while let Some(done) = requests.join_next().await {
        if let (asked_at, Some(latency)) = done? {
            answered += 1;
            latencies.record(latency.as_micros() as u64)?;
            first_ok = Some(first_ok.map_or(asked_at, |t: Duration| t.min(asked_at)));
        }
    }
    let mut held = Histogram::<u64>::new(3)?;
    let (mut closed, mut open) = (0u64, 0u64);
    while let Some(done) = attackers.join_next().await {
        match done? {
            Some(lived) => {
                closed += 1;
                held.record(lived.as_millis() as u64)?;
            }
            None => open += 1,
        }
    }
    println!("siege slow --kind {kind:?} --connections {connections} --max-connections {max_connections}");
    println!(
        "  real client   {answered} of {asked} requests answered 200; first answered request sent at {}; latency p50 {}, p99 {}, max {}",
        first_ok.map(|t| format!("{:.1} s", t.as_secs_f64())).unwrap_or_else(|| "never".into()),
        ms(Duration::from_micros(latencies.value_at_quantile(0.5))),
        ms(Duration::from_micros(latencies.value_at_quantile(0.99))),
        ms(Duration::from_micros(latencies.max())),
    );
    println!(
        "  hostile       {closed} closed by the server (lived p50 {:.1} s, max {:.1} s), {open} still open or never connected",
        held.value_at_quantile(0.5) as f64 / 1000.0,
        held.max() as f64 / 1000.0
    );
    println!("  server        {} KiB resident idle, {} KiB at the peak", idle_kib, peak_kib.load(Ordering::Relaxed));
    drop(server);
    Ok(())
}

async fn shutdown(streams: usize, stalled: usize, mutations: usize) -> anyhow::Result<()> {
    let mut server = ChildServer::start(&["serve", "--port", "0"], &[]).await;
    let addr: SocketAddr = SocketAddr::new([127, 0, 0, 1].into(), server.addr.port());
    let request = b"GET /trpc/updates.onUpdate HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n";
    // Stalled readers: small receive buffers, never read after the request.
    let mut stalled_sockets = Vec::new();
    for _ in 0..stalled {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let mut socket = socket.connect(addr).await?;
        socket.write_all(request).await?;
        stalled_sockets.push(socket);
    }
    // Healthy readers: read until the stream ends, and say how.
    let ended_cleanly = Arc::new(AtomicU64::new(0));
    let mut healthy = tokio::task::JoinSet::new();
    for _ in 0..streams.saturating_sub(stalled) {
        let mut socket = TcpStream::connect(addr).await?;
        socket.write_all(request).await?;
        let ended_cleanly = ended_cleanly.clone();
        healthy.spawn(async move {
            let mut tail = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        tail.extend_from_slice(&buf[..n]);
                        let keep = tail.len().saturating_sub(16);
                        tail.drain(..keep);
                    }
                    Err(_) => return,
                }
            }
            // A chunked body that ended with its terminator ended cleanly.
            if tail.ends_with(b"0\r\n\r\n") {
                ended_cleanly.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Updates with long names, so that the stalled sockets' buffers fill.
    let client = server.client.clone();
    let name = "n".repeat(200);
    let burst = Instant::now();
    let mut ok = 0;
    for i in 0..mutations {
        let (status, _) = client
            .mutate(
                "storage.volumes.create",
                json!({"projectId": "prj-web", "name": format!("{name}-{i}"), "sizeGb": 1}),
            )
            .await;
        ok += u64::from(status.is_success());
    }
    let burst = burst.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signalled = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(30)).await;
    let took = signalled.elapsed();
    let healthy_count = healthy.len();
    while healthy.join_next().await.is_some() {}
    drop(stalled_sockets);
    println!("siege shutdown --streams {streams} --stalled {stalled} --mutations {mutations}");
    println!("  burst         {ok} of {mutations} mutations answered 200 in {:.1} s", burst.as_secs_f64());
    println!("  SIGTERM       exited {status} after {}", ms(took));
    println!(
        "  healthy       {} of {healthy_count} streams ended with the chunked terminator",
        ended_cleanly.load(Ordering::Relaxed)
    );
    Ok(())
}
