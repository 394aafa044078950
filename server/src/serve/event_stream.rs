//! The lean path for event streams: the router answers `GET /trpc/updates.onUpdate` as it
//! answers everything else; this module writes that answer to the socket itself.
//!
//! The response head is written once; then the stream the answer names (its
//! [`StreamRequest`] extension) goes to the [`fanout`], which writes every update
//! straight to the socket (HTTP/1.1 chunked coding, or raw bytes until the connection
//! closes for HTTP/1.0) and keeps no buffer between events. The response body the
//! handler built is never polled; it exists for connections hyper serves. An error
//! answer (bad input) is written whole and the connection closed.
//!
//! [`fanout`]: super::fanout

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, Response, Version, header};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::fanout::{Fanout, write_all};
use crate::rpc::stream::PATH;
use crate::updates::StreamRequest;

/// The most bytes of a non-stream answer (an error envelope) this path writes.
const MAX_PLAIN_BODY: usize = 1024 * 1024;

/// The request, when it opens the event stream: `GET` on the stream's path, HTTP/1.x,
/// no request body. `None` sends the connection to hyper.
pub(super) fn request(parsed: &httparse::Request<'_, '_>) -> Option<Request<Body>> {
    if parsed.method != Some("GET") {
        return None;
    }
    let path = parsed.path?;
    let route = path.split('?').next().unwrap_or_default();
    if route.strip_prefix("/trpc/") != Some(PATH) {
        return None;
    }
    let version = match parsed.version? {
        1 => Version::HTTP_11,
        0 => Version::HTTP_10,
        _ => return None,
    };
    let mut builder = Request::builder().method(Method::GET).uri(path).version(version);
    for h in parsed.headers.iter() {
        let body_follows = h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0");
        // `Connection: upgrade` and bodies are hyper's business.
        let upgrade = h.name.eq_ignore_ascii_case("upgrade");
        if body_follows || upgrade {
            return None;
        }
        builder = builder.header(h.name, h.value);
    }
    builder.body(Body::empty()).ok()
}

/// Answers `request` through `router` and writes the answer to `stream`, the event
/// stream itself through `fanout`.
pub(super) async fn answer(
    mut stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    fanout: &Fanout,
    mut request: Request<Body>,
    write_timeout: Duration,
    shutdown: CancellationToken,
) {
    let version = request.version();
    request.extensions_mut().insert(ConnectInfo(remote));
    // Boxed: the router's future is needed only until the answer's head is known.
    let Ok(response) = Box::pin(router.oneshot(request)).await;
    let direct = response.extensions().get::<StreamRequest>().cloned().filter(|_| response.status().is_success());
    let Some(direct) = direct else {
        // Not a stream: an error envelope, written whole.
        if let Err(error) = plain(&stream, response, version, write_timeout, &shutdown).await {
            tracing::trace!(%error, %remote, "answer not delivered");
        }
        let _ = stream.shutdown().await;
        return;
    };
    let chunked = version == Version::HTTP_11;
    let extra: &[(&str, &str)] = if chunked { &[("transfer-encoding", "chunked")] } else { &[("connection", "close")] };
    let head = head(&response, version, extra);
    // The fan-out writes the stream; the response body is never polled.
    drop(response);
    if let Err(error) = write_all(&stream, &head, write_timeout, &shutdown).await {
        tracing::trace!(%error, %remote, "event stream closed");
        return;
    }
    drop(head);
    // The fan-out owns the socket from here and closes it when done.
    if let Err(error) = fanout.write_stream(stream, chunked, direct, write_timeout, &shutdown).await {
        tracing::trace!(%error, %remote, "event stream closed");
    }
}

/// The status line and headers, with the framing headers this writer decides.
fn head(response: &Response<Body>, version: Version, extra: &[(&str, &str)]) -> Vec<u8> {
    let status = response.status();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(if version == Version::HTTP_10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for (name, value) in extra {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A whole answer (an error envelope): `Content-Length`, then the connection closes.
async fn plain(
    stream: &TcpStream,
    response: Response<Body>,
    version: Version,
    write_timeout: Duration,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_PLAIN_BODY).await.map_err(io::Error::other)?;
    let response = Response::from_parts(parts, Body::empty());
    let length = bytes.len().to_string();
    let mut answer = head(&response, version, &[("content-length", &length), ("connection", "close")]);
    answer.extend_from_slice(&bytes);
    write_all(stream, &answer, write_timeout, shutdown).await
}
