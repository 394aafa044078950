//! The HTTP server loop: accepts connections within a descriptor budget and serves each
//! one with the router — event streams on a lean path ([`event_stream`], written by the
//! [`fanout`]), everything else with hyper.
//!
//! Why not `axum::serve`:
//! - **Descriptor budget.** When the process runs out of file descriptors, `accept`
//!   fails with `EMFILE`; axum logs that at error level and retries every second, and
//!   meanwhile the poller cannot open upstream connections either. Here at most
//!   `max_connections` connections are open at once (default: the descriptor limit less
//!   a reserve for upstream connections and files). At the limit, the connection that
//!   has waited on its client the longest is closed to make room ([`budget`]), else new
//!   connections wait in the listen backlog until one closes, with one warning in the
//!   log; requests being answered and event streams are served as before. Should `accept` fail anyway, it backs off (100 ms up to 1 s)
//!   and says so at most every 10 s — never a spin, never a crash.
//! - **Memory per stream.** hyper keeps two 8 KiB buffers per HTTP/1 connection (read
//!   buffer, response-head buffer) for the connection's whole life: with thousands of
//!   long-lived event streams that was most of the server's memory (22 KiB per idle
//!   stream measured by the load test). A connection whose first request is
//!   `GET /trpc/updates.onUpdate` is answered by the same router and handler, but its
//!   response is written by [`event_stream`] with no buffer kept between events.
//! - **CPU per notification.** On that path the [`fanout`] writes each update to every
//!   stream's socket from one task per core, instead of waking one task per stream.
//!
//! With `--tls-cert/--tls-key` ([`tls`]) every connection first does its TLS handshake
//! and is then served by hyper, HTTP/2 or HTTP/1.1 as ALPN chose; the lean path is for
//! plain HTTP only (over HTTP/2 a browser's streams share one connection anyway).
//!
//! Graceful shutdown: when the token fires, accepting stops, hyper connections finish
//! their requests, event streams end (the fan-out and the stream bodies watch the same
//! token), and [`run`] returns once every connection is closed.

mod budget;
mod event_stream;
pub mod fanout;
pub mod tls;

pub use fanout::Fanout;
pub use tls::Tls;

use budget::{Budget, Conn, Tracked};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Descriptors kept free for upstream connections, log files and the runtime itself.
fn reserve(limit: u64) -> u64 {
    if limit >= 1024 { 128 } else { (limit / 8).max(8) }
}

/// Raises this process's soft descriptor limit to its hard one; answers the soft limit
/// now in force.
pub fn raise_nofile_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024)
}

/// Raises the descriptor limit and answers how many connections fit in it (all but a
/// reserve).
pub fn default_max_connections() -> usize {
    let limit = raise_nofile_limit();
    limit.saturating_sub(reserve(limit)).max(1) as usize
}

/// Connections the kernel queues before `accept` (capped by `net.core.somaxconn`). When
/// thousands of tabs reconnect at once, a short queue drops SYNs and each dropped client
/// waits a full second before it retries.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket with a deep accept queue (`SO_REUSEADDR`, as `axum::serve` users
/// get from tokio's own `bind`).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The largest first request head read before handing the connection to hyper.
const MAX_PEEK: usize = 16 * 1024;

/// What no connection may exceed, so that slow or idle clients cannot hold the
/// connection budget (or shutdown) for long.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// For each request head to arrive, the first and every later one, so also how long
    /// an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// For a blocked write to make progress (a client that stopped reading).
    pub write_timeout: Duration,
    /// After shutdown starts, for open connections to finish; then they are closed.
    pub shutdown_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` fires and every connection closed (or
/// was closed at the shutdown deadline); event streams on the lean path are written by
/// `fanout`. With `tls`, every connection is TLS (and served by hyper).
pub async fn run(
    listener: TcpListener,
    router: Router,
    fanout: Arc<Fanout>,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let max_connections = limits.max_connections;
    // Fires at the shutdown deadline: every connection still open drops its socket.
    let hard_stop = CancellationToken::new();
    let budget = Budget::new(max_connections);
    let tracker = TaskTracker::new();
    let mut saturated = false;
    let mut failures: u32 = 0;
    let mut last_warning: Option<Instant> = None;
    tracing::debug!(max_connections, "accepting connections");
    'accept: loop {
        let slot = loop {
            if let Some(slot) = budget.try_acquire() {
                break slot;
            }
            if !saturated {
                saturated = true;
                tracing::warn!(
                    max_connections,
                    "connection limit reached: closing connections that wait on their clients to make room, \
                     else new connections wait in the listen backlog"
                );
            }
            // Make room; when no connection may be closed yet, look again shortly.
            let evicted = budget.evict_longest_waiting();
            let retry = if evicted { Duration::from_secs(1) } else { Duration::from_millis(100) };
            tokio::select! {
                _ = shutdown.cancelled() => break 'accept,
                slot = budget.acquire() => break slot,
                _ = tokio::time::sleep(retry) => {}
            }
        };
        if saturated && !budget.nearly_spent() {
            saturated = false;
            tracing::info!(open = budget.open(), "accepting connections again");
        }
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break 'accept,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                if failures > 0 {
                    tracing::info!(failures, "accepting connections again");
                    failures = 0;
                }
                let conn = slot.conn.clone();
                let tls = tls.clone();
                let served =
                    connection(stream, remote, router.clone(), fanout.clone(), conn, limits, tls, shutdown.clone());
                let hard_stop = hard_stop.clone();
                tracker.spawn(async move {
                    let slot = slot;
                    tokio::select! {
                        _ = served => {}
                        _ = hard_stop.cancelled() => {}
                        // Closed to make room: it was waiting on its client, so no answer is lost.
                        _ = slot.conn.evicted() => {}
                    }
                });
            }
            // The peer gave up before we accepted: nothing to do.
            Err(e) if is_connection_error(&e) => {}
            Err(error) => {
                failures = failures.saturating_add(1);
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(
                        %error,
                        failures,
                        open = budget.open(),
                        "cannot accept connections (out of file descriptors?); open connections are still served, \
                         retrying with backoff"
                    );
                }
                drop(slot);
                let wait =
                    Duration::from_millis(100u64 << failures.min(4).saturating_sub(1)).min(Duration::from_secs(1));
                tokio::select! {
                    _ = shutdown.cancelled() => break 'accept,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracing::debug!(open = tracker.len(), "waiting for connections to close");
    if tokio::time::timeout(limits.shutdown_timeout, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            deadline = ?limits.shutdown_timeout,
            "connections still open at the shutdown deadline: closing them"
        );
        hard_stop.cancel();
        tracker.wait().await;
    }
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One connection: read the first request head, then serve it on the lean path when it
/// opens the event stream, with hyper otherwise. With `tls`: the handshake, then hyper.
#[allow(clippy::too_many_arguments)]
async fn connection(
    mut stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    fanout: Arc<Fanout>,
    conn: Arc<Conn>,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: CancellationToken,
) {
    if let Some(tls) = tls {
        // Boxed, as the paths below: a plain connection's task stays as small as before.
        return Box::pin(tls_connection(stream, remote, router, tls, conn, limits, shutdown)).await;
    }
    let _ = stream.set_nodelay(true);
    let mut head = BytesMut::with_capacity(1024);
    let first = tokio::select! {
        _ = shutdown.cancelled() => return,
        first = tokio::time::timeout(limits.header_timeout, first_request(&mut stream, &mut head)) => first,
    };
    let request = match first {
        Ok(Ok(request)) => request,
        // Closed, failed or silent before sending a request: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    // Each path boxed: a task is as large as its largest state, and an event stream
    // should not carry the size of hyper's connection state for its whole life.
    match request {
        Some(request) => {
            drop(head);
            let _streaming = conn.streaming();
            Box::pin(event_stream::answer(stream, remote, router, &fanout, request, limits.write_timeout, shutdown))
                .await;
        }
        None => {
            let io = Rewind::new(head.freeze(), stream, limits.write_timeout);
            Box::pin(serve_hyper(io, remote, router, conn, limits, None, shutdown)).await
        }
    }
}

/// One TLS connection: the handshake (under the head deadline, cancelled by shutdown),
/// then hyper, by ALPN. The write deadline is kept below TLS, on the TCP stream.
async fn tls_connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    tls: Tls,
    conn: Arc<Conn>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let io = Rewind::new(Bytes::new(), stream, limits.write_timeout);
    let Some((io, alpn)) = tls::handshake(&tls, io, limits.header_timeout, &shutdown).await else { return };
    serve_hyper(io, remote, router, conn, limits, Some(alpn), shutdown).await
}

/// Reads until the first request head is complete. Answers the request when it opens the
/// event stream (`GET`, the stream's path, no body), `None` when hyper should serve the
/// connection (the bytes read so far stay in `buf`).
async fn first_request(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Option<axum::http::Request<Body>>> {
    loop {
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(_)) => return Ok(event_stream::request(&parsed)),
            Ok(httparse::Status::Partial) if buf.len() < MAX_PEEK => {
                if buf.capacity() - buf.len() < 512 {
                    buf.reserve(buf.len());
                }
            }
            // Too large, malformed or HTTP/2: hyper answers it as it would anyway.
            _ => return Ok(None),
        }
    }
}

/// Serves one connection with hyper. `alpn`: what the TLS handshake settled on (`None`:
/// plain HTTP, served exactly as before TLS existed).
async fn serve_hyper<IO>(
    io: IO,
    remote: SocketAddr,
    router: Router,
    conn: Arc<Conn>,
    limits: Limits,
    alpn: Option<tls::Alpn>,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // With TLS, watched for the idle deadline below.
    let watched = alpn.map(|_| conn.clone());
    // The budget sees each request from its head to the end of its answer as busy, and
    // a body still arriving as waiting on the client.
    let service = tower::service_fn(move |request: axum::http::Request<Incoming>| {
        let (answering, receiving) = conn.answering(!hyper::body::Body::is_end_stream(request.body()));
        let mut request = request.map(|body| Body::new(Tracked::new(body, receiving)));
        request.extensions_mut().insert(ConnectInfo(remote));
        let answer = router.clone().oneshot(request);
        async move {
            let response = answer.await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Tracked::new(body, Some(answering)))))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Every later request head (and the wait for it) has the same deadline as the first.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    // An HTTP/2 connection has no request-head deadline of its own: with TLS it is
    // closed (GOAWAY) once it has had nothing to answer for `header_timeout`, the
    // deadline an idle HTTP/1.1 keep-alive connection has.
    let idle_deadline = alpn.map(|_| limits.header_timeout);
    if let Some(alpn) = alpn {
        builder = match alpn {
            tls::Alpn::H2 => builder.http2_only(),
            tls::Alpn::Http11 => builder.http1_only(),
            tls::Alpn::None => builder,
        };
        configure_http2(&mut builder);
    }
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    let mut shutting_down = false;
    let idle_check = tokio::time::sleep(idle_deadline.unwrap_or(Duration::MAX / 4));
    let mut idle_check = std::pin::pin!(idle_check);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!(%error, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle_check.as_mut(), if idle_deadline.is_some() && !shutting_down => {
                let deadline = idle_deadline.unwrap_or_default();
                match watched.as_ref().and_then(|conn| conn.idle_for()) {
                    Some(idle) if idle >= deadline => {
                        tracing::trace!(?idle, "closing a connection that had nothing to answer");
                        shutting_down = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    // Busy, or idle for less: look again when it could first be due.
                    idle => {
                        let next = deadline.saturating_sub(idle.unwrap_or_default()).max(Duration::from_millis(100));
                        idle_check.as_mut().reset(tokio::time::Instant::now() + next);
                    }
                }
            }
        }
    }
}

/// HTTP/2 limits for TLS connections (plain HTTP keeps hyper's defaults, as before).
///
/// - `max_concurrent_streams(250)`: a browser with many tabs holds one event stream per
///   tab, plus a few queries in flight; 250 is ample for that (Chrome caps its own at
///   its server's setting, nginx's default is 128) and bounds what one connection can
///   make the server hold (hyper's default is 200).
/// - Keep-alive pings every 30 s, and the connection closed when a ping is not answered
///   within 20 s: a peer that vanished (laptop lid shut, NAT entry dropped) is noticed
///   even on a connection whose streams only get a ping event every 10 s, whose writes
///   the kernel would buffer for minutes.
/// - Idle connections: closed after `header_timeout` with nothing to answer (see
///   [`serve_hyper`]); a stream being answered is not idle.
fn configure_http2(builder: &mut auto::Builder<TokioExecutor>) {
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(250)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
}

/// A TCP stream whose first bytes were already read: they are read again first. A write
/// that makes no progress for `write_timeout` fails, which ends the connection.
struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
    write_timeout: Duration,
    /// Running while a write waits for the client to read.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Rewind {
    fn new(prefix: Bytes, inner: TcpStream, write_timeout: Duration) -> Rewind {
        Rewind { prefix, inner, write_timeout, stalled: None }
    }

    /// Passes a write's outcome through, timing how long it has been blocked.
    fn deadline<T>(&mut self, cx: &mut Context<'_>, outcome: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let timeout = self.write_timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.deadline(cx, outcome)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.deadline(cx, outcome)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.deadline(cx, outcome)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_leaves_room_for_upstream_and_files() {
        assert_eq!(reserve(20_000), 128);
        assert_eq!(reserve(256), 32);
        assert_eq!(reserve(16), 8);
    }
}
