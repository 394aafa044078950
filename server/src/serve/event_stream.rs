//! The lean path for event streams: the router answers `GET /trpc/updates.onUpdate` as it
//! answers everything else; this module writes that answer to the socket itself.
//!
//! The response head is written once; then each body frame becomes one chunk of the
//! chunked transfer coding, framed on the stack and sent with one `write` (no buffer
//! kept between events). The socket is also watched for the client
//! closing, so a closed tab frees its subscription at once rather than at the next
//! write. A slow client only ever blocks its own task; on shutdown a write that cannot
//! finish is abandoned.

use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, Response, Version, header};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::updates::stream::PATH;

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

/// Answers `request` through `router` and writes the answer to `stream`.
pub(super) async fn serve(
    mut stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    mut request: Request<Body>,
    shutdown: CancellationToken,
) {
    let version = request.version();
    request.extensions_mut().insert(ConnectInfo(remote));
    // Boxed: the router's future is needed only until the answer's head is known.
    let Ok(response) = Box::pin(router.oneshot(request)).await;
    let streaming = response.status().is_success()
        && response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let result = if streaming {
        stream_body(&mut stream, response, version, &shutdown).await
    } else {
        plain(&mut stream, response, version).await
    };
    if let Err(error) = result {
        tracing::trace!(%error, %remote, "event stream closed");
    }
    let _ = stream.shutdown().await;
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
async fn plain(stream: &mut TcpStream, response: Response<Body>, version: Version) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_PLAIN_BODY).await.map_err(io::Error::other)?;
    let response = Response::from_parts(parts, Body::empty());
    let length = bytes.len().to_string();
    let head = head(&response, version, &[("content-length", &length), ("connection", "close")]);
    stream.write_all(&head).await?;
    stream.write_all(&bytes).await?;
    stream.flush().await
}

/// The event stream: head, then one chunk per frame until the body ends, the client
/// leaves, or shutdown.
async fn stream_body(
    stream: &mut TcpStream,
    response: Response<Body>,
    version: Version,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let chunked = version == Version::HTTP_11;
    let extra: &[(&str, &str)] = if chunked { &[("transfer-encoding", "chunked")] } else { &[("connection", "close")] };
    let head = head(&response, version, extra);
    let mut body = response.into_body();
    let stream = &*stream;
    write_all(stream, &head, shutdown).await?;
    drop(head);
    // Registered once and kept: watching for the client closing costs nothing per event.
    let mut closed = std::pin::pin!(stream.readable());
    loop {
        let frame = tokio::select! {
            biased;
            frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)) => frame,
            readable = &mut closed => {
                readable?;
                match stream.try_read(&mut [0u8; 64]) {
                    // The client closed its side: the tab is gone.
                    Ok(0) => return Ok(()),
                    // Anything else it sends (a pipelined request) is not for this path.
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                closed.set(stream.readable());
                continue;
            }
        };
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => break,
        };
        if !chunked {
            write_all(stream, &data, shutdown).await?;
            continue;
        }
        let mut size = [0u8; 18];
        let size = chunk_size(data.len(), &mut size);
        if let Some(rest) = send_now(stream, &[size, &data, b"\r\n"])? {
            write_all(stream, &rest, shutdown).await?;
        }
    }
    if chunked {
        write_all(stream, b"0\r\n\r\n", shutdown).await?;
    }
    Ok(())
}

/// Sends `parts` with one `write` when the socket takes them (the usual case, framed in
/// a stack buffer that is not part of the task's state); answers what is left to send.
fn send_now(stream: &TcpStream, parts: &[&[u8]]) -> io::Result<Option<Vec<u8>>> {
    let mut buf = [0u8; 2048];
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total > buf.len() {
        return Ok(Some(parts.concat()));
    }
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    match stream.try_write(&buf[..total]) {
        Ok(n) if n == total => Ok(None),
        Ok(n) => Ok(Some(buf[n..total].to_vec())),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(buf[..total].to_vec())),
        Err(e) => Err(e),
    }
}

/// `len` in hex followed by CRLF: a chunk's size line.
fn chunk_size(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = 16;
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    &buf[i..]
}

/// Writes all of `bytes`; a full socket buffer waits for this client alone, and is
/// given up when the server shuts down.
async fn write_all(stream: &TcpStream, mut bytes: &[u8], shutdown: &CancellationToken) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    writable = stream.writable() => writable?,
                    _ = shutdown.cancelled() => return Err(io::ErrorKind::Interrupted.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_lowercase_hex_lines() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_size(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_size(0x1a3, &mut buf), b"1a3\r\n");
        assert_eq!(chunk_size(usize::MAX, &mut buf), b"ffffffffffffffff\r\n");
    }
}
