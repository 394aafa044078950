//! One HTTP/1.1 connection by hand: requests written as text on a single `TcpStream`,
//! responses read with `httparse` (content-length or chunked bodies). For tests that
//! must know which connection carries what, e.g. a stream opened after a query on the
//! same keep-alive connection.

use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::SseClient;

/// One client connection, kept open across requests.
pub struct RawConnection {
    socket: TcpStream,
    /// Bytes read but not consumed yet.
    buffer: BytesMut,
    /// `Cookie` sent with every request (a signed-in client's session).
    cookie: Option<String>,
}

/// A whole response read from a [`RawConnection`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How a response's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl RawConnection {
    pub async fn connect(addr: SocketAddr) -> Self {
        let socket = TcpStream::connect(addr).await.expect("connect");
        RawConnection { socket, buffer: BytesMut::new(), cookie: None }
    }

    /// Sends `client`'s session cookie with every request from now on.
    pub fn as_client(mut self, client: &crate::Client) -> Self {
        self.cookie = client.cookie.clone();
        self
    }

    /// A connection whose receive buffer is `bytes` small, so that a reader that stops
    /// reading pushes back on the server soon.
    pub async fn connect_with_small_buffer(addr: SocketAddr, bytes: u32) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("receive buffer size");
        let socket = socket.connect(addr).await.expect("connect");
        RawConnection { socket, buffer: BytesMut::new(), cookie: None }
    }

    /// Writes `GET path HTTP/1.1` with `headers` (a `host` header is added).
    pub async fn send_get(&mut self, path: &str, headers: &[(&str, &str)]) {
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n");
        if let Some(cookie) = &self.cookie {
            request.push_str(&format!("cookie: {cookie}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.socket.write_all(request.as_bytes()).await.expect("write request");
    }

    /// Reads one whole response.
    pub async fn response(&mut self) -> RawResponse {
        let (status, headers) = self.head().await;
        let body = match framing(&headers) {
            Framing::Length(length) => {
                while self.buffer.len() < length {
                    assert!(self.fill().await.expect("read body") > 0, "closed inside the body");
                }
                self.buffer.split_to(length).freeze()
            }
            Framing::Chunked => {
                let mut body = BytesMut::new();
                while let Some(chunk) = self.chunk().await.expect("chunked body") {
                    body.extend_from_slice(&chunk);
                }
                body.freeze()
            }
            Framing::UntilClose => {
                while self.fill().await.expect("read body") > 0 {}
                self.buffer.split().freeze()
            }
        };
        RawResponse { status, headers, body }
    }

    /// `GET path` and its whole response.
    pub async fn get(&mut self, path: &str) -> RawResponse {
        self.send_get(path, &[]).await;
        self.response().await
    }

    /// Opens `updates.onUpdate?query` (`query` may be empty) on this connection and
    /// answers it as a stream. Nothing is read from the socket while the stream is not
    /// polled.
    pub async fn open_stream(mut self, query: &str, headers: &[(&str, &str)]) -> SseClient {
        let path = if query.is_empty() {
            "/trpc/updates.onUpdate".to_owned()
        } else {
            format!("/trpc/updates.onUpdate?{query}")
        };
        let mut all = vec![("accept", "text/event-stream")];
        all.extend_from_slice(headers);
        self.send_get(&path, &all).await;
        let (status, headers) = self.head().await;
        assert_eq!(status, StatusCode::OK, "{headers:?}");
        let chunked = matches!(framing(&headers), Framing::Chunked);
        let body = futures_util::stream::unfold(Some(self), move |state| async move {
            let mut connection = state?;
            let next = if chunked { connection.chunk().await } else { connection.until_close().await };
            match next {
                Ok(Some(bytes)) => Some((Ok(bytes), Some(connection))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        });
        SseClient::from_body(headers, body)
    }

    /// Reads more bytes into the buffer: how many (0 at the end of the connection).
    async fn fill(&mut self) -> Result<usize, String> {
        self.socket.read_buf(&mut self.buffer).await.map_err(|e| format!("read: {e}"))
    }

    /// Reads and consumes a response head.
    async fn head(&mut self) -> (StatusCode, HeaderMap) {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut slots);
            match response.parse(&self.buffer).expect("a well-formed response head") {
                httparse::Status::Complete(length) => {
                    let status = StatusCode::from_u16(response.code.expect("status")).expect("status code");
                    let mut headers = HeaderMap::new();
                    for header in response.headers.iter() {
                        let name = HeaderName::from_bytes(header.name.as_bytes()).expect("header name");
                        headers.append(name, HeaderValue::from_bytes(header.value).expect("header value"));
                    }
                    self.buffer.advance(length);
                    return (status, headers);
                }
                httparse::Status::Partial => {
                    let read = self.fill().await.expect("read response head");
                    assert!(read > 0, "closed before a whole response head: {:?}", self.buffer);
                }
            }
        }
    }

    /// The next chunk of a chunked body; `None` after the terminating chunk.
    async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            match httparse::parse_chunk_size(&self.buffer) {
                Ok(httparse::Status::Complete((start, size))) => {
                    let size = usize::try_from(size).map_err(|_| "chunk too large".to_owned())?;
                    // The data, then its CRLF (for the last chunk: the CRLF ending the
                    // empty trailer section; tests send and expect no trailers).
                    while self.buffer.len() < start + size + 2 {
                        if self.fill().await? == 0 {
                            return Err("connection closed inside a chunk".into());
                        }
                    }
                    if &self.buffer[start + size..start + size + 2] != b"\r\n" {
                        return Err(format!("chunk not followed by CRLF: {:?}", self.buffer));
                    }
                    self.buffer.advance(start);
                    let data = self.buffer.split_to(size).freeze();
                    self.buffer.advance(2);
                    return Ok((size > 0).then_some(data));
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill().await? == 0 {
                        return Err("connection closed before the chunked terminator".into());
                    }
                }
                Err(_) => return Err(format!("bad chunk size line: {:?}", self.buffer)),
            }
        }
    }

    /// The next bytes of a body that ends with the connection.
    async fn until_close(&mut self) -> Result<Option<Bytes>, String> {
        if self.buffer.is_empty() && self.fill().await? == 0 {
            return Ok(None);
        }
        Ok(Some(self.buffer.split().freeze()))
    }
}

fn framing(headers: &HeaderMap) -> Framing {
    let chunked = headers
        .get_all("transfer-encoding")
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("chunked")));
    if chunked {
        return Framing::Chunked;
    }
    match headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()) {
        Some(length) => Framing::Length(length),
        None => Framing::UntilClose,
    }
}
