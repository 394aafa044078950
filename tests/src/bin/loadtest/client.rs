//! One SSE client as lean as a load generator needs: a raw TCP socket bound to a chosen
//! loopback source address, a hand-written HTTP/1.1 request, chunked-transfer decoding and
//! SSE framing, and just enough JSON parsing to read `seq`, `ts` and the `ids` (which the
//! audience check judges). Like a browser's `EventSource` it remembers the last event id
//! it saw, which a reconnecting client sends back as `Last-Event-ID`.
//!
//! A full HTTP client per connection would cost the load generator more CPU than the
//! server it measures; on a 2-core machine that would show up as the server's latency.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What one SSE event carried, as far as the load test cares.
#[derive(Debug, PartialEq)]
pub enum SseEvent {
    Connected,
    Ping,
    /// `ids`: the changed resources it names (`None`: the whole collection).
    Update {
        seq: u64,
        ts: u64,
        kind: UpdateKind,
        ids: Option<Vec<String>>,
    },
    /// `reason`: `lagged`, `gap`, … as the server gave it.
    Resync {
        seq: u64,
        reason: String,
    },
    Other(String),
}

/// The update types the refetch storm reacts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    Volumes,
    Other,
}

#[derive(Deserialize)]
struct Data<'a> {
    kind: &'a str,
    #[serde(default)]
    reason: &'a str,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    ts: u64,
    #[serde(rename = "type", default)]
    update_type: &'a str,
    #[serde(default)]
    ids: Option<Vec<String>>,
}

/// The receive buffer a stalled client asks for (the kernel's minimum is about this).
const STALLED_RECV_BUFFER: u32 = 4096;
/// The segment size a stalled client announces: Linux's minimum.
const STALLED_MSS: u32 = 88;

/// Opens a TCP connection from `source` (port chosen by the kernel) to `server`.
///
/// `stalled`: for a client that will stop reading, keep what the kernel buffers for it
/// small, so that the server's socket buffer fills after some 200 notifications instead
/// of some 20,000. The kernel sizes the server's send buffer from the segment size the
/// client announces (64 KiB on loopback, for a send buffer of about 4 MB), so the client
/// announces the smallest one, and asks for the smallest receive buffer too.
pub async fn connect_from(source: IpAddr, server: SocketAddr, stalled: bool) -> io::Result<TcpStream> {
    let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if stalled {
        socket.set_recv_buffer_size(STALLED_RECV_BUFFER)?;
        socket2::SockRef::from(&socket).set_tcp_mss(STALLED_MSS)?;
    }
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// An open `updates.onUpdate` stream.
pub struct SseConn {
    stream: TcpStream,
    decoder: Decoder,
    /// Events already read but handed back ([`SseConn::unread`]): returned first.
    pending: Vec<SseEvent>,
}

impl SseConn {
    /// Sends the request (with `cookie`, the signed-in session's `name=value`, and
    /// `last_event_id` as `Last-Event-ID` when resuming) and reads the response head;
    /// fails unless it is `200 text/event-stream`.
    pub async fn open(
        mut stream: TcpStream,
        host: &str,
        path: &str,
        cookie: &str,
        last_event_id: Option<&str>,
    ) -> io::Result<SseConn> {
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n{resume}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = BytesMut::with_capacity(2048);
        let head_end = loop {
            if stream.read_buf(&mut raw).await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the response head"));
            }
            if let Some(end) = find(&raw, b"\r\n\r\n") {
                break end;
            }
            if raw.len() > 16 * 1024 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too large"));
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let status_ok = head.starts_with("http/1.1 200");
        if !status_ok || !head.contains("content-type: text/event-stream") {
            let first = head.lines().next().unwrap_or_default().to_owned();
            return Err(io::Error::other(format!("not an event stream: {first}")));
        }
        let chunked = head.contains("transfer-encoding: chunked");
        raw.advance(head_end + 4);
        let mut decoder = Decoder::new(raw, chunked);
        // As `EventSource`, the last event id outlives the connection it came on.
        decoder.last_id = last_event_id.map(str::to_owned);
        Ok(SseConn { stream, decoder, pending: Vec::new() })
    }

    /// The id of the last event seen (on this connection or, until one arrives here, the
    /// one it resumed from): what a reconnect sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> Option<&str> {
        self.decoder.last_id.as_deref()
    }

    /// Hands events back: the next [`SseConn::read_events`] returns them first.
    pub fn unread(&mut self, events: impl IntoIterator<Item = SseEvent>) {
        self.pending.extend(events);
    }

    /// Waits for bytes and appends every complete event to `out`. `Ok(false)` when the
    /// server closed the stream.
    pub async fn read_events(&mut self, out: &mut Vec<SseEvent>) -> io::Result<bool> {
        out.append(&mut self.pending);
        // Events already buffered with the response head come first.
        self.decoder.drain(out)?;
        if !out.is_empty() {
            return Ok(true);
        }
        loop {
            if self.decoder.raw.capacity() - self.decoder.raw.len() < 1024 {
                self.decoder.raw.reserve(4096);
            }
            let n = self.stream.read_buf(&mut self.decoder.raw).await?;
            if n == 0 {
                return Ok(false);
            }
            self.decoder.drain(out)?;
            if !out.is_empty() || self.decoder.ended {
                return Ok(!self.decoder.ended);
            }
        }
    }
}

/// Chunked transfer decoding followed by SSE framing.
struct Decoder {
    raw: BytesMut,
    chunked: bool,
    /// Bytes left in the current chunk.
    chunk_left: usize,
    /// The CRLF after a chunk's data is still to be skipped.
    chunk_crlf: bool,
    ended: bool,
    /// Decoded body bytes not yet framed into events.
    body: Vec<u8>,
    /// The last `id:` field seen.
    last_id: Option<String>,
}

impl Decoder {
    fn new(raw: BytesMut, chunked: bool) -> Self {
        Decoder {
            raw,
            chunked,
            chunk_left: 0,
            chunk_crlf: false,
            ended: false,
            body: Vec::with_capacity(512),
            last_id: None,
        }
    }

    fn drain(&mut self, out: &mut Vec<SseEvent>) -> io::Result<()> {
        self.dechunk()?;
        while let Some(end) = find(&self.body, b"\n\n") {
            let (event, id) = parse_event(&self.body[..end]);
            if let Some(id) = id {
                self.last_id = Some(id);
            }
            out.push(event);
            self.body.drain(..end + 2);
        }
        Ok(())
    }

    fn dechunk(&mut self) -> io::Result<()> {
        if !self.chunked {
            self.body.extend_from_slice(&self.raw);
            self.raw.clear();
            return Ok(());
        }
        loop {
            if self.chunk_left > 0 {
                let n = self.chunk_left.min(self.raw.len());
                if n == 0 {
                    return Ok(());
                }
                self.body.extend_from_slice(&self.raw[..n]);
                self.raw.advance(n);
                self.chunk_left -= n;
                if self.chunk_left == 0 {
                    self.chunk_crlf = true;
                }
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
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {hex:?}")))?;
            self.raw.advance(line_end + 2);
            if size == 0 {
                self.ended = true;
                return Ok(());
            }
            self.chunk_left = size;
        }
    }
}

/// One event block: the event, and its `id:` field if it had one.
fn parse_event(block: &[u8]) -> (SseEvent, Option<String>) {
    let text = String::from_utf8_lossy(block);
    let mut event = "message";
    let mut data = String::new();
    let mut id = None;
    for line in text.split('\n') {
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event = value,
            "id" => id = Some(value.to_owned()),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    let event = match event {
        "connected" => SseEvent::Connected,
        "ping" => SseEvent::Ping,
        "message" => match serde_json::from_str::<Data>(&data) {
            Ok(d) if d.kind == "update" => SseEvent::Update {
                seq: d.seq,
                ts: d.ts,
                kind: if d.update_type == "volumes" { UpdateKind::Volumes } else { UpdateKind::Other },
                ids: d.ids,
            },
            Ok(d) if d.kind == "resync" => SseEvent::Resync { seq: d.seq, reason: d.reason.to_owned() },
            _ => SseEvent::Other(data),
        },
        other => SseEvent::Other(other.to_owned()),
    };
    (event, id)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The source address of client `index`: round-robin over 127.0.0.1 … 127.0.0.`count`.
pub fn source_addr(index: usize, count: u8) -> IpAddr {
    let count = count.max(1) as usize;
    IpAddr::from([127, 0, 0, (index % count) as u8 + 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(raw: &[u8], chunked: bool) -> Vec<SseEvent> {
        let mut decoder = Decoder::new(BytesMut::from(raw), chunked);
        let mut out = Vec::new();
        decoder.drain(&mut out).expect("decodes");
        out
    }

    #[test]
    fn decodes_chunked_sse_split_anywhere() {
        let body = "event: connected\ndata: {\"reconnectAfterInactivityMs\":30000}\n\n\
                    id: 7\ndata: {\"kind\":\"update\",\"seq\":7,\"type\":\"volumes\",\"ids\":[\"v-1\"],\"ts\":99}\n\n\
                    event: ping\ndata: {}\n\n\
                    data: {\"kind\":\"resync\",\"seq\":9,\"reason\":\"lagged\"}\n\n";
        let mut chunked = Vec::new();
        for piece in body.as_bytes().chunks(13) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        let expected = vec![
            SseEvent::Connected,
            SseEvent::Update { seq: 7, ts: 99, kind: UpdateKind::Volumes, ids: Some(vec!["v-1".into()]) },
            SseEvent::Ping,
            SseEvent::Resync { seq: 9, reason: String::from("lagged") },
        ];
        assert_eq!(decode(&chunked, true), expected);
        // Fed one byte at a time, the same events come out.
        let mut decoder = Decoder::new(BytesMut::new(), true);
        let mut out = Vec::new();
        for byte in &chunked {
            decoder.raw.extend_from_slice(&[*byte]);
            decoder.drain(&mut out).expect("decodes");
        }
        assert_eq!(out, expected);
        assert_eq!(decode(body.as_bytes(), false), expected);
    }

    #[test]
    fn remembers_the_last_event_id_as_eventsource_does() {
        let mut decoder = Decoder::new(BytesMut::new(), false);
        decoder.last_id = Some(String::from("5"));
        let mut out = Vec::new();
        // Events without an id (connected, ping) leave it as it was.
        decoder.raw.extend_from_slice(b"event: connected\ndata: {}\n\nevent: ping\ndata: {}\n\n");
        decoder.drain(&mut out).expect("decodes");
        assert_eq!(decoder.last_id.as_deref(), Some("5"));
        decoder.raw.extend_from_slice(b"id: 7\ndata: {\"kind\":\"update\",\"seq\":7}\n\nid: 8\ndata: {\"kind\":\"res");
        decoder.drain(&mut out).expect("decodes");
        assert_eq!(decoder.last_id.as_deref(), Some("7"), "an event counts once it is complete");
        decoder.raw.extend_from_slice(b"ync\",\"seq\":8,\"reason\":\"gap\"}\n\n");
        decoder.drain(&mut out).expect("decodes");
        assert_eq!(decoder.last_id.as_deref(), Some("8"));
        assert_eq!(out.last(), Some(&SseEvent::Resync { seq: 8, reason: String::from("gap") }));
    }

    #[test]
    fn source_addresses_rotate_over_loopback() {
        assert_eq!(source_addr(0, 4), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(source_addr(5, 4), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(source_addr(9, 1), IpAddr::from([127, 0, 0, 1]));
    }
}
