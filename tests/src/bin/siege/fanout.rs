//! `siege fanout`: what one event stream costs the server over each transport, and how
//! fast a notification reaches every stream.
//!
//! A fresh server per run, with `--tls-cert/--tls-key` from a throwaway certificate for
//! the TLS transports. `plain` opens each stream on its own TCP connection with a
//! hand-written HTTP/1.1 request (so the server's lean event-stream writer serves it);
//! `tls-h1` opens each on its own TLS connection that offers only `http/1.1`; `h2`
//! opens `--streams-per-connection` streams on each HTTP/2 connection (one
//! `reqwest::Client` per connection: a client multiplexes everything for a host over one
//! HTTP/2 connection, so connections are counted by clients). Once every stream saw its
//! `connected` event the server's memory is sampled; then `--rate` mutations a second
//! (servers stopped and started in turn, over the transport's own protocol) run for
//! `--duration`, every notification's delivery latency is taken from its `ts` (µs since
//! the epoch, stamped by the server at publication, on this machine's clock), and the
//! run drains until every stream saw every update of the window or `--drain` passed.
//!
//! The clients are deliberately unequal: the plain ones parse chunked SSE from raw
//! sockets, the TLS ones go through reqwest, hyper and rustls, so the generator's own
//! CPU is printed beside the server's (both share the machine's cores).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use clap::ValueEnum;
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{Value, json};
use stalecast::updates::now_micros;
use stalecast_tests::child::ChildServer;
use stalecast_tests::tls::TestCert;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How the streams reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Plain HTTP/1.1, one TCP connection per stream: the lean event-stream writer.
    Plain,
    /// HTTP/1.1 over TLS, one TLS connection per stream: hyper.
    TlsH1,
    /// HTTP/2 over TLS, `--streams-per-connection` streams per connection: hyper.
    H2,
}

/// The knobs of one run.
#[derive(Clone, Debug)]
pub struct FanoutArgs {
    pub streams: usize,
    pub transport: Transport,
    pub per_connection: usize,
    pub rate: f64,
    pub duration: Duration,
    pub drain: Duration,
    pub connect_timeout: Duration,
}

const STREAM_PATH: &str = "/trpc/updates.onUpdate";
/// Connections being opened at once: TLS handshakes cost the server CPU, and a burst of
/// thousands would only measure the listen backlog.
const CONNECT_CONCURRENCY: usize = 64;
/// Longest any one request of the mutation driver (or a control query) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The stream tasks' last chance to hand in their figures once told to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What every stream task shares with the coordinator.
struct Shared {
    /// The last seq before the window (`u64::MAX`: the window has not opened).
    seq0: AtomicU64,
    /// The last seq of the window (`u64::MAX`: still open).
    seq1: AtomicU64,
    /// Notifications of the window received so far, for the drain.
    in_window: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    stop: CancellationToken,
}

/// What one stream saw.
#[derive(Default)]
struct StreamReport {
    /// Updates after `seq0`, as (seq, delivery latency in µs).
    updates: Vec<(u64, u64)>,
    resyncs: u64,
    /// The server ended the stream (or the connection failed) before the run did.
    ended_early: bool,
    /// Why the stream never connected.
    open_error: Option<String>,
}

pub async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    if args.streams == 0 || args.per_connection == 0 {
        bail!("--streams and --streams-per-connection must be at least 1");
    }
    if args.transport != Transport::H2 && args.per_connection != 1 {
        bail!("--streams-per-connection above 1 needs --transport h2 (HTTP/1.1 carries one stream per connection)");
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number of mutations per second");
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg = loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ");

    // The server, TLS from a throwaway certificate for the TLS transports.
    let cert = (args.transport != Transport::Plain).then(TestCert::localhost);
    let paths = cert.as_ref().map(TestCert::paths);
    let mut server_args = vec!["serve", "--host", "127.0.0.1", "--port", "0"];
    if let Some((cert_path, key_path)) = &paths {
        server_args.extend(["--tls-cert", cert_path, "--tls-key", key_path]);
    }
    let server = ChildServer::start(&server_args, &[]).await;
    let pid = server.pid().context("the server's pid")?;
    let addr = SocketAddr::new([127, 0, 0, 1].into(), server.addr.port());
    let root = match &cert {
        Some(cert) => Some(reqwest::Certificate::from_pem(cert.cert_pem.as_bytes())?),
        None => None,
    };
    let target = Target { transport: args.transport, addr, root };
    let control = target.client(Some(REQUEST_TIMEOUT))?;
    let base = target.base();

    // Warm the paths the run uses, so lazy initialisation is not counted per stream.
    let mut servers = toggleable_servers(&control, &base).await?;
    let _ = bus_seq(&control, &base).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = Sample::of(pid)?;

    // Every stream, `per_connection` to a connection.
    let shared = Arc::new(Shared {
        seq0: AtomicU64::new(u64::MAX),
        seq1: AtomicU64::new(u64::MAX),
        in_window: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: CancellationToken::new(),
    });
    let target = Arc::new(target);
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut connections = JoinSet::new();
    let connect_started = Instant::now();
    let mut left = args.streams;
    while left > 0 {
        let streams = left.min(args.per_connection);
        left -= streams;
        let (target, shared, gate) = (target.clone(), shared.clone(), gate.clone());
        connections.spawn(connection(target, shared, gate, streams, args.connect_timeout));
    }
    // Every stream connected or gave up: each open is bounded by the connect timeout,
    // the last ones wait for the gate behind at most streams / concurrency others.
    let connect_deadline =
        connect_started + args.connect_timeout * (args.streams.div_ceil(CONNECT_CONCURRENCY) as u32 + 1);
    while shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < args.streams as u64
        && Instant::now() < connect_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_wall = connect_started.elapsed();
    let connected = shared.connected.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);

    // Idle for a moment with every stream open: memory per stream.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = Sample::of(pid)?;

    // The window: mutations at the rate, then the drain.
    let seq0 = bus_seq(&control, &base).await?;
    shared.seq0.store(seq0, Ordering::Release);
    let before = Sample::of(pid)?;
    let generator_before = cpu_seconds("self")?;
    let window_started = Instant::now();
    let driven = drive(&control, &base, &mut servers, args.rate, args.duration).await;
    let seq1 = bus_seq(&control, &base).await?;
    shared.seq1.store(seq1, Ordering::Release);
    let updates = seq1.saturating_sub(seq0);
    let expected = updates * connected;
    let drain_started = Instant::now();
    while shared.in_window.load(Ordering::Relaxed) < expected && drain_started.elapsed() < args.drain {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let window = window_started.elapsed();
    let after = Sample::of(pid)?;
    let generator_cpu = cpu_seconds("self")? - generator_before;

    // Stop the streams and collect what they saw.
    shared.stop.cancel();
    let mut reports = Vec::new();
    let collect = async {
        while let Some(joined) = connections.join_next().await {
            if let Ok(streams) = joined {
                reports.extend(streams);
            }
        }
    };
    let collected = tokio::time::timeout(STOP_TIMEOUT, collect).await.is_ok();
    drop(server);

    let mut latency = Histogram::<u64>::new(3)?;
    let (mut received, mut resyncs, mut ended_early) = (0u64, 0u64, 0u64);
    let mut first_open_error = None;
    for report in &reports {
        for &(seq, us) in &report.updates {
            if seq > seq0 && seq <= seq1 {
                received += 1;
                latency.record(us.max(1))?;
            }
        }
        resyncs += report.resyncs;
        ended_early += u64::from(report.ended_early);
        if first_open_error.is_none() {
            first_open_error.clone_from(&report.open_error);
        }
    }
    let lost = expected.saturating_sub(received);
    let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
    let per_stream_kib = open.rss_kib.saturating_sub(idle.rss_kib) as f64 / connected.max(1) as f64;
    let server_cpu = after.cpu_s - before.cpu_s;
    let per_notification =
        |cpu: f64| if received > 0 { format!("{:.1}", cpu * 1e6 / received as f64) } else { "-".into() };

    println!(
        "siege fanout --transport {} --streams {} --streams-per-connection {} --rate {} --duration {}",
        args.transport.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default(),
        args.streams,
        args.per_connection,
        args.rate,
        humantime::format_duration(args.duration),
    );
    println!("  load average  {loadavg} (1, 5, 15 min, before the server started; the machine is shared)");
    println!(
        "  streams       {connected} of {} connected in {:.1} s ({failed} failed{}); server descriptors {} idle → {} connected",
        args.streams,
        connect_wall.as_secs_f64(),
        first_open_error.map(|e| format!(", first: {e}")).unwrap_or_default(),
        idle.fds,
        open.fds,
    );
    println!(
        "  mutations     {} of {} answered 200{}",
        driven.ok,
        driven.sent,
        driven.first_error.map(|e| format!(" (first failure: {e})")).unwrap_or_default()
    );
    println!(
        "  notifications {updates} updates × {connected} streams: {expected} expected, {received} received, {lost} lost; {resyncs} resyncs, {ended_early} streams ended early{}",
        if collected { "" } else { " (some streams did not report within 30 s)" }
    );
    println!(
        "  latency       p50 {}, p99 {}, max {} (from each notification's ts to its arrival)",
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max())
    );
    println!(
        "  server memory {} KiB idle → {} KiB with the streams open: {per_stream_kib:.1} KiB per stream; {} KiB after the window",
        idle.rss_kib, open.rss_kib, after.rss_kib
    );
    println!(
        "  server CPU    {server_cpu:.2} s in the {:.1} s window: {} µs per delivered notification",
        window.as_secs_f64(),
        per_notification(server_cpu)
    );
    println!(
        "  generator CPU {generator_cpu:.2} s in the window: {} µs per delivered notification",
        per_notification(generator_cpu)
    );
    Ok(())
}

/// Where the streams and the control requests go, and how.
struct Target {
    transport: Transport,
    addr: SocketAddr,
    /// The throwaway certificate, the only root the TLS clients trust.
    root: Option<reqwest::Certificate>,
}

impl Target {
    fn base(&self) -> String {
        match self.transport {
            Transport::Plain => format!("http://{}", self.addr),
            Transport::TlsH1 | Transport::H2 => format!("https://localhost:{}", self.addr.port()),
        }
    }

    /// A client for this transport: its own connection pool, `localhost` pinned to the
    /// server's loopback address (nothing is resolved), `timeout` over a whole request
    /// (none for streams: they last the run).
    fn client(&self, timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
        let mut builder =
            reqwest::Client::builder().connect_timeout(REQUEST_TIMEOUT).no_proxy().resolve("localhost", self.addr);
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        builder = match (self.transport, &self.root) {
            (Transport::Plain, _) => builder.http1_only(),
            (Transport::TlsH1, Some(root)) => builder.tls_certs_only([root.clone()]).http1_only(),
            // ALPN offers h2 first; the server picks it.
            (Transport::H2, Some(root)) => builder.tls_certs_only([root.clone()]),
            (_, None) => bail!("a TLS transport without its certificate"),
        };
        Ok(builder.build()?)
    }
}

/// One connection's streams: opened one after the other under the gate (the first alone,
/// so that the others find its HTTP/2 connection in the client's pool), then read until
/// the run stops.
async fn connection(
    target: Arc<Target>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    streams: usize,
    timeout: Duration,
) -> Vec<StreamReport> {
    let permit = gate.acquire_owned().await;
    let client = match target.transport {
        Transport::Plain => None,
        Transport::TlsH1 | Transport::H2 => match target.client(None) {
            Ok(client) => Some(client),
            Err(e) => {
                shared.failed.fetch_add(streams as u64, Ordering::Relaxed);
                let why = format!("{e:#}");
                return (0..streams)
                    .map(|_| StreamReport { open_error: Some(why.clone()), ..Default::default() })
                    .collect();
            }
        },
    };
    let open_one = || async {
        let opened = tokio::time::timeout(timeout, open(&target, client.as_ref())).await;
        let result = match opened {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!("not connected within {}", humantime::format_duration(timeout))),
        };
        let counter = if result.is_ok() { &shared.connected } else { &shared.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    };
    let mut opened = vec![open_one().await];
    opened.extend(join_all((1..streams).map(|_| open_one())).await);
    drop(permit);
    join_all(opened.into_iter().map(|stream| async {
        match stream {
            Ok(stream) => read(stream, &shared).await,
            Err(e) => StreamReport { open_error: Some(e), ..StreamReport::default() },
        }
    }))
    .await
}

/// An open stream, past its `connected` event.
struct Stream {
    body: Body,
    /// Decoded body bytes not yet framed into events.
    pending: Vec<u8>,
}

enum Body {
    /// A raw socket and the chunked decoder of its body.
    Plain(TcpStream, Dechunker),
    /// A response read through reqwest (which decoded the framing).
    Http(reqwest::Response),
}

/// Opens one stream and reads until its `connected` event.
async fn open(target: &Target, client: Option<&reqwest::Client>) -> anyhow::Result<Stream> {
    let body = match client {
        None => {
            let mut socket = TcpStream::connect(target.addr).await?;
            socket.set_nodelay(true)?;
            let request = format!("GET {STREAM_PATH} HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n");
            socket.write_all(request.as_bytes()).await?;
            let mut raw = BytesMut::with_capacity(4096);
            let head_len = loop {
                if socket.read_buf(&mut raw).await? == 0 {
                    bail!("closed before the response head");
                }
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                if let httparse::Status::Complete(len) = response.parse(&raw)? {
                    let header = |name: &str| {
                        response
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
                            .unwrap_or_default()
                    };
                    if response.code != Some(200) || !header("content-type").starts_with("text/event-stream") {
                        bail!("not an event stream: {:?} {}", response.code, header("content-type"));
                    }
                    if header("transfer-encoding") != "chunked" {
                        bail!("the event stream is not chunked");
                    }
                    break len;
                }
                if raw.len() > 16 * 1024 {
                    bail!("response head too large");
                }
            };
            raw.advance(head_len);
            Body::Plain(socket, Dechunker::new(raw))
        }
        Some(client) => {
            let response = client
                .get(format!("{}{STREAM_PATH}", target.base()))
                .header("accept", "text/event-stream")
                .send()
                .await?;
            let content_type =
                response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            if !response.status().is_success() || !content_type.starts_with("text/event-stream") {
                bail!("not an event stream: {} {content_type}", response.status());
            }
            let wanted = match target.transport {
                Transport::H2 => reqwest::Version::HTTP_2,
                _ => reqwest::Version::HTTP_11,
            };
            if response.version() != wanted {
                bail!("the stream came over {:?}, not {wanted:?}", response.version());
            }
            Body::Http(response)
        }
    };
    let mut stream = Stream { body, pending: Vec::with_capacity(1024) };
    let mut events = Vec::new();
    loop {
        if !stream.next_events(&mut events).await? {
            bail!("the stream ended before its connected event");
        }
        match events.first() {
            Some(Event::Connected) => return Ok(stream),
            Some(other) => bail!("the stream opened with {other:?}, not connected"),
            None => {}
        }
    }
}

impl Stream {
    /// Waits for bytes and appends every complete event to `out`; `Ok(false)` once the
    /// server ended the stream.
    async fn next_events(&mut self, out: &mut Vec<Event>) -> anyhow::Result<bool> {
        loop {
            // What was read already (with the response head, say) comes first.
            let ended = match &mut self.body {
                Body::Plain(_, dechunker) => {
                    dechunker.decode(&mut self.pending)?;
                    dechunker.ended
                }
                Body::Http(_) => false,
            };
            let mut start = 0;
            while let Some(end) = find(&self.pending[start..], b"\n\n") {
                out.push(parse_event(&self.pending[start..start + end]));
                start += end + 2;
            }
            self.pending.drain(..start);
            if !out.is_empty() || ended {
                return Ok(!ended);
            }
            match &mut self.body {
                Body::Plain(socket, dechunker) => {
                    if dechunker.raw.capacity() - dechunker.raw.len() < 1024 {
                        dechunker.raw.reserve(4096);
                    }
                    if socket.read_buf(&mut dechunker.raw).await? == 0 {
                        return Ok(false);
                    }
                }
                Body::Http(response) => match response.chunk().await? {
                    Some(bytes) => self.pending.extend_from_slice(&bytes),
                    None => return Ok(false),
                },
            }
        }
    }
}

/// Reads a stream until the run stops or the server ends it.
async fn read(mut stream: Stream, shared: &Shared) -> StreamReport {
    let mut report = StreamReport::default();
    let mut events = Vec::new();
    loop {
        let next = tokio::select! {
            next = stream.next_events(&mut events) => next,
            _ = shared.stop.cancelled() => return report,
        };
        let arrived = now_micros();
        let seq0 = shared.seq0.load(Ordering::Acquire);
        for event in events.drain(..) {
            match event {
                Event::Update { seq, ts } if seq0 != u64::MAX && seq > seq0 => {
                    report.updates.push((seq, arrived.saturating_sub(ts)));
                    if seq <= shared.seq1.load(Ordering::Acquire) {
                        shared.in_window.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::Resync => report.resyncs += 1,
                _ => {}
            }
        }
        if !matches!(next, Ok(true)) {
            report.ended_early = true;
            return report;
        }
    }
}

/// Chunked transfer decoding of a raw socket's bytes.
struct Dechunker {
    raw: BytesMut,
    /// Bytes left in the current chunk.
    chunk_left: usize,
    /// The CRLF after a chunk's data is still to be skipped.
    chunk_crlf: bool,
    ended: bool,
}

impl Dechunker {
    fn new(raw: BytesMut) -> Self {
        Dechunker { raw, chunk_left: 0, chunk_crlf: false, ended: false }
    }

    /// Moves every decoded body byte of `raw` to `body`.
    fn decode(&mut self, body: &mut Vec<u8>) -> anyhow::Result<()> {
        while !self.ended {
            if self.chunk_left > 0 {
                let n = self.chunk_left.min(self.raw.len());
                if n == 0 {
                    return Ok(());
                }
                body.extend_from_slice(&self.raw[..n]);
                self.raw.advance(n);
                self.chunk_left -= n;
                self.chunk_crlf = self.chunk_left == 0;
                continue;
            }
            if self.chunk_crlf {
                if self.raw.len() < 2 {
                    return Ok(());
                }
                self.raw.advance(2);
                self.chunk_crlf = false;
            }
            let Some(line_end) = find(&self.raw, b"\r\n") else { return Ok(()) };
            let line = std::str::from_utf8(&self.raw[..line_end]).unwrap_or_default();
            let hex = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(hex, 16).with_context(|| format!("bad chunk size {hex:?}"))?;
            self.raw.advance(line_end + 2);
            self.ended = size == 0;
            self.chunk_left = size;
        }
        Ok(())
    }
}

/// What one SSE event carried, as far as fan-out cares.
#[derive(Debug, PartialEq)]
enum Event {
    Connected,
    Update { seq: u64, ts: u64 },
    Resync,
    Other,
}

#[derive(Deserialize)]
struct Data<'a> {
    kind: &'a str,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    ts: u64,
}

fn parse_event(block: &[u8]) -> Event {
    let text = String::from_utf8_lossy(block);
    let mut event = "message";
    let mut data = String::new();
    for line in text.split('\n') {
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event = value,
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    match event {
        "connected" => Event::Connected,
        "message" => match serde_json::from_str::<Data>(&data) {
            Ok(d) if d.kind == "update" => Event::Update { seq: d.seq, ts: d.ts },
            Ok(d) if d.kind == "resync" => Event::Resync,
            _ => Event::Other,
        },
        _ => Event::Other,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the mutation driver did.
struct Driven {
    sent: u64,
    ok: u64,
    first_error: Option<String>,
}

/// `rate` mutations a second for `duration`, each stopping or starting the next server in
/// turn (each publishes an update); then waits for the last answers (each bounded by the
/// client's timeout).
async fn drive(
    http: &reqwest::Client,
    base: &str,
    servers: &mut [(String, bool)],
    rate: f64,
    duration: Duration,
) -> Driven {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = JoinSet::new();
    let mut driven = Driven { sent: 0, ok: 0, first_error: None };
    for tick in 0..total {
        ticker.tick().await;
        let (id, active) = &mut servers[tick as usize % servers.len()];
        let path = if *active { "compute.servers.stop" } else { "compute.servers.start" };
        *active = !*active;
        let (http, url, input) = (http.clone(), format!("{base}/trpc/{path}"), json!({ "id": id }));
        in_flight.spawn(async move { mutate(&http, &url, &input).await });
        driven.sent += 1;
    }
    while let Some(joined) = in_flight.join_next().await {
        match joined {
            Ok(Ok(())) => driven.ok += 1,
            Ok(Err(e)) => {
                driven.first_error.get_or_insert(e);
            }
            Err(e) => {
                driven.first_error.get_or_insert(e.to_string());
            }
        }
    }
    driven
}

/// `POST /trpc/<path>`: `Ok` on a 2xx answer, else why not.
async fn mutate(http: &reqwest::Client, url: &str, input: &Value) -> Result<(), String> {
    let response = http.post(url).json(input).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{url}: {status} {body}"));
    }
    response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    Ok(())
}

/// The servers that are ACTIVE (→ stop) or SHUTOFF (→ start), as (id, active).
async fn toggleable_servers(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<(String, bool)>> {
    let body: Value = http
        .get(format!("{base}/trpc/compute.servers.list"))
        .send()
        .await
        .context("listing servers")?
        .json()
        .await
        .context("listing servers")?;
    let servers: Vec<(String, bool)> = body["result"]["data"]
        .as_array()
        .context("compute.servers.list answered no array")?
        .iter()
        .filter_map(|s| {
            let id = s["id"].as_str()?.to_owned();
            match s["status"].as_str()? {
                "ACTIVE" => Some((id, true)),
                "SHUTOFF" => Some((id, false)),
                _ => None,
            }
        })
        .collect();
    anyhow::ensure!(!servers.is_empty(), "no server can be started or stopped");
    Ok(servers)
}

/// The bus's latest seq (`updates.state`).
async fn bus_seq(http: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let body: Value = http.get(format!("{base}/trpc/updates.state")).send().await?.json().await?;
    body["result"]["data"]["seq"].as_u64().context("updates.state has no seq")
}

/// The server's resource use at one moment.
struct Sample {
    rss_kib: u64,
    cpu_s: f64,
    /// Open descriptors: the listeners, the upstream's, and one per connection.
    fds: u64,
}

impl Sample {
    fn of(pid: u32) -> anyhow::Result<Sample> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("the server's status")?;
        let rss_kib = stalecast_tests::vm_rss_kib(&status).context("VmRSS")?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0);
        Ok(Sample { rss_kib, cpu_s: cpu_seconds(&pid.to_string())?, fds })
    }
}

/// User + system CPU seconds of `/proc/<pid>` (`self` for this process) since it started.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    // Clock ticks of `/proc/*/stat` (USER_HZ): 100 on Linux.
    const TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
    // After the name (which may hold spaces, so split after its closing parenthesis):
    // state is field 3, utime 14, stime 15 (1-based, proc(5)).
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok()).context("a short stat line");
    Ok((ticks(14)? + ticks(15)?) / TICKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_chunked_sse_split_anywhere() {
        let body = "event: connected\ndata: {\"reconnectAfterInactivityMs\":30000}\n\n\
                    id: 7\ndata: {\"kind\":\"update\",\"seq\":7,\"type\":\"volumes\",\"ts\":99}\n\n\
                    event: ping\ndata: {}\n\n\
                    data: {\"kind\":\"resync\",\"seq\":9,\"reason\":\"lagged\"}\n\n";
        let mut chunked = Vec::new();
        for piece in body.as_bytes().chunks(13) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        // Fed one byte at a time, the whole body comes out, and the end only with the
        // terminating chunk.
        let mut dechunker = Dechunker::new(BytesMut::new());
        let mut decoded = Vec::new();
        let terminator = chunked.len() - b"0\r\n\r\n".len();
        for (i, byte) in chunked.iter().enumerate() {
            assert_eq!(dechunker.ended, i > terminator + 2, "after {i} bytes");
            dechunker.raw.extend_from_slice(&[*byte]);
            dechunker.decode(&mut decoded).expect("decodes");
        }
        assert!(dechunker.ended);
        assert_eq!(decoded, body.as_bytes());
        let events: Vec<Event> = body.trim_end().split("\n\n").map(|b| parse_event(b.as_bytes())).collect();
        assert_eq!(events, [Event::Connected, Event::Update { seq: 7, ts: 99 }, Event::Other, Event::Resync]);
    }

    #[test]
    fn reads_this_process_cpu() {
        assert!(cpu_seconds("self").is_ok());
        assert!(Sample::of(std::process::id()).expect("own /proc").rss_kib > 0);
    }
}
