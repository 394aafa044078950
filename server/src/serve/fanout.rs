//! The fan-out: writes each update straight to every event stream's socket.
//!
//! A few shard tasks (one per core) each receive every update from the bus and, for each
//! stream in their share, write the update's pre-encoded frame to its socket with one
//! non-blocking `write`. No per-stream task wakes up for an update, which is most of
//! what a notification cost besides the `write` itself.
//!
//! A stream whose socket does not take the whole frame is *detached*: the shard queues
//! what is left (and later frames) for the stream's own task, which waits until the
//! socket is writable, writes the queue in order and attaches the stream again once it
//! is empty. So one slow client never delays the shard or anyone else; one that falls
//! more than the channel's capacity behind gets a `resync` instead of an unbounded
//! queue. A stream also starts detached, with its `connected` event and replay queued,
//! and is registered under the bus's lock, so the shard delivers exactly the updates
//! after its replay.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::updates::stream::{OpenStream, PING, Pings, opening, resync, wanted};
use crate::updates::{Published, ResyncReason, Subscriber, UpdateBus};

/// What the stream handler hands the server's own writer: enough to start the stream
/// on the fan-out instead of polling the response body.
#[derive(Clone, Debug)]
pub struct DirectStream {
    pub fanout: Arc<Fanout>,
    /// Resume after this seq (`u64::MAX`: an unreadable id, resync).
    pub after: Option<u64>,
    /// Update types wanted, as a bit mask.
    pub filter: u8,
    /// The `connected` event.
    pub connected: Bytes,
}

/// The shards and what every stream needs from the server.
#[derive(Debug)]
pub struct Fanout {
    bus: Arc<UpdateBus>,
    pings: Pings,
    shards: Vec<Arc<Shard>>,
    next_shard: AtomicUsize,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct Shard {
    streams: Mutex<HashMap<u64, Arc<Entry>>>,
}

/// One stream on the fan-out.
#[derive(Debug)]
struct Entry {
    socket: Arc<TcpStream>,
    /// HTTP/1.1 chunked framing (HTTP/1.0: raw bytes until the connection closes).
    chunked: bool,
    filter: u8,
    /// Frames a detached stream may queue before it must resync instead.
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the stream's task when it has bytes to write.
    detached: Notify,
}

#[derive(Debug)]
struct State {
    /// The shard writes to the socket itself; otherwise it queues for the task.
    attached: bool,
    /// The last seq written or queued; the shard skips anything not after it.
    last_seq: u64,
    /// Encoded bytes (chunks framed) waiting for the socket, in order.
    queue: VecDeque<Bytes>,
    /// Frames in `queue`; past the channel's capacity the stream gets a resync instead.
    queued_frames: usize,
    /// The stream fell too far behind: resync from this seq once the queue is written.
    lagged: Option<u64>,
    /// Whether anything was sent since the last keep-alive tick.
    sent: bool,
    /// The stream ended: deliver nothing more.
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data, always left consistent: a panic elsewhere cannot corrupt it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Fanout {
    /// Starts `shards` shard tasks (at least one); they stop when `shutdown` fires.
    pub fn start(
        bus: Arc<UpdateBus>,
        pings: Pings,
        shards: usize,
        shutdown: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) -> Arc<Fanout> {
        let shards: Vec<Arc<Shard>> = (0..shards.max(1)).map(|_| Arc::default()).collect();
        for shard in &shards {
            let (shard, bus, shutdown) = (shard.clone(), bus.clone(), shutdown.clone());
            let mut updates = bus.receiver();
            tasks.spawn(async move {
                loop {
                    let received = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        received = updates.recv() => received,
                    };
                    match received {
                        Ok(published) => shard.deliver(&published),
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "fan-out fell behind the bus; its streams resync");
                            shard.lagged(bus.seq());
                        }
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        }
        Arc::new(Fanout { bus, pings, shards, next_shard: AtomicUsize::new(0), next_id: AtomicU64::new(0) })
    }

    /// Serves one event stream on `socket` (its response head already written) until
    /// the client leaves or `shutdown` fires.
    pub async fn serve(
        &self,
        socket: TcpStream,
        chunked: bool,
        stream: DirectStream,
        shutdown: &CancellationToken,
    ) -> io::Result<()> {
        let socket = Arc::new(socket);
        let shard = &self.shards[self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len()];
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let capacity = self.bus.channel_capacity();
        // Registered under the bus lock: the shard delivers exactly what follows the replay.
        let (entry, _subscriber): (Arc<Entry>, Subscriber) = self.bus.attach(stream.after, |start| {
            let opening = opening(stream.connected.clone(), start.gap, start.seq, &start.replay, stream.filter);
            let queue: VecDeque<Bytes> = opening.iter().map(|event| frame(chunked, event)).collect();
            tracing::debug!(after = ?stream.after, types = stream.filter, gap = start.gap,
                replay = start.replay.len(), "event stream opened");
            let entry = Arc::new(Entry {
                socket: socket.clone(),
                chunked,
                filter: stream.filter,
                capacity,
                state: Mutex::new(State {
                    attached: false,
                    last_seq: start.seq,
                    // The replay is bounded by the ring; the limit counts what follows it.
                    queued_frames: 0,
                    queue,
                    lagged: None,
                    sent: true,
                    closed: false,
                }),
                detached: Notify::new(),
            });
            lock(&shard.streams).insert(id, entry.clone());
            (entry, start.subscriber)
        });
        let _open = OpenStream;
        let result = entry.run(&self.pings, shutdown).await;
        lock(&shard.streams).remove(&id);
        lock(&entry.state).closed = true;
        if result.is_ok() && chunked {
            // The end of the chunked body, if the socket takes it now; nobody waits for it.
            let _ = socket.try_write(b"0\r\n\r\n");
        }
        result
    }
}

impl Shard {
    fn deliver(&self, published: &Published) {
        let seq = published.update.seq;
        // Framed once for every HTTP/1.1 stream of the shard, not once per socket.
        let chunk = frame(true, &published.frame);
        for entry in lock(&self.streams).values() {
            if wanted(published, entry.filter) {
                entry.deliver(seq, if entry.chunked { &chunk } else { &published.frame });
            }
        }
    }

    /// The shard missed updates: every stream resyncs from `seq`.
    fn lagged(&self, seq: u64) {
        for entry in lock(&self.streams).values() {
            let mut state = lock(&entry.state);
            state.lagged = Some(state.lagged.map_or(seq, |l| l.max(seq)));
            if state.attached {
                state.attached = false;
                entry.detached.notify_one();
            }
        }
    }
}

impl Entry {
    /// One update for this stream (`wire`: its bytes as framed for this stream): written
    /// now when the socket takes it, else queued.
    fn deliver(&self, seq: u64, wire: &Bytes) {
        let mut state = lock(&self.state);
        if state.closed || seq <= state.last_seq {
            return;
        }
        if let Some(lagged) = state.lagged.as_mut() {
            *lagged = (*lagged).max(seq);
            return;
        }
        state.last_seq = seq;
        state.sent = true;
        if state.attached {
            match write_now(&self.socket, wire) {
                Ok(None) => {}
                Ok(Some(rest)) => {
                    state.queue.push_back(rest);
                    state.queued_frames = 1;
                    state.attached = false;
                    self.detached.notify_one();
                }
                // A broken socket: the stream's task sees it too and ends the stream.
                Err(_) => {
                    state.closed = true;
                    self.detached.notify_one();
                }
            }
        } else if state.queued_frames >= self.capacity {
            state.lagged = Some(seq);
        } else {
            state.queue.push_back(wire.clone());
            state.queued_frames += 1;
        }
    }

    /// The stream's own task: writes what the shard queued, sends keep-alive pings, and
    /// watches for the client leaving.
    async fn run(&self, pings: &Pings, shutdown: &CancellationToken) -> io::Result<()> {
        let mut closed = std::pin::pin!(self.socket.readable());
        let mut cancelled = std::pin::pin!(shutdown.cancelled());
        let mut ticks = pings.receiver();
        loop {
            // Take everything queued, or attach the stream to its shard when nothing is.
            let pending = {
                let mut state = lock(&self.state);
                if state.closed {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                let mut pending = BytesMut::new();
                for bytes in state.queue.drain(..) {
                    pending.extend_from_slice(&bytes);
                }
                state.queued_frames = 0;
                if let Some(seq) = state.lagged.take() {
                    tracing::debug!(seq, "stream fell behind; sending resync");
                    pending.extend_from_slice(&frame(self.chunked, &resync(seq, ResyncReason::Lagged)));
                    state.last_seq = state.last_seq.max(seq);
                }
                if pending.is_empty() {
                    state.attached = true;
                }
                pending
            };
            if !pending.is_empty() {
                write_all(&self.socket, &pending, shutdown).await?;
                continue;
            }
            tokio::select! {
                biased;
                _ = &mut cancelled => return Ok(()),
                readable = &mut closed => {
                    readable?;
                    match self.socket.try_read(&mut [0u8; 64]) {
                        // The client closed its side: the tab is gone.
                        Ok(0) => return Ok(()),
                        // Anything else it sends (a pipelined request) is not for this path.
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                    closed.set(self.socket.readable());
                }
                _ = self.detached.notified() => {}
                changed = ticks.changed() => {
                    if changed.is_err() {
                        // The clock stopped: the server is shutting down.
                        return Ok(());
                    }
                    let mut state = lock(&self.state);
                    if state.attached && !state.sent {
                        match write_now(&self.socket, &frame(self.chunked, PING)) {
                            Ok(None) => {}
                            Ok(Some(rest)) => {
                                state.queue.push_back(rest);
                                state.attached = false;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    state.sent = false;
                }
            }
        }
    }
}

/// `event` as it goes on the wire: a chunk of the chunked coding, or as is.
fn frame(chunked: bool, event: &[u8]) -> Bytes {
    if !chunked {
        return Bytes::copy_from_slice(event);
    }
    let mut out = BytesMut::with_capacity(event.len() + 20);
    out.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
    out.extend_from_slice(event);
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// Writes `wire` with one non-blocking `write`; answers what the socket did not take.
fn write_now(socket: &TcpStream, wire: &Bytes) -> io::Result<Option<Bytes>> {
    match socket.try_write(wire) {
        Ok(n) if n == wire.len() => Ok(None),
        Ok(n) => Ok(Some(wire.slice(n..))),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(wire.clone())),
        Err(e) => Err(e),
    }
}

/// Writes all of `bytes`, waiting for this socket alone; gives up on shutdown.
pub(super) async fn write_all(socket: &TcpStream, mut bytes: &[u8], shutdown: &CancellationToken) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    writable = socket.writable() => writable?,
                    _ = shutdown.cancelled() => return Err(io::ErrorKind::Interrupted.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
