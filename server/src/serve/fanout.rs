//! The fan-out: writes each update straight to every event stream's socket.
//!
//! A few shard tasks (one per core) each receive every update from the bus and, for each
//! stream in their share, write the update's pre-encoded frame to its socket with one
//! non-blocking `write`. No per-stream task wakes up for an update, which is most of
//! what a notification cost besides the `write` itself.
//!
//! Each shard keeps its streams grouped by their listener's room (the projects the
//! signed-in user may see). Per update, each group asks once whether its room sees the
//! update and which frame it writes ([`Published::frame_for`], made once per update and
//! room for every shard): a group that may not see it costs nothing more, one that sees
//! only some of its ids shares one frame naming those. So filtering costs a few
//! decisions per update, not one per socket. A stream whose room changes moves to its
//! new group and resyncs; one whose session ends writes its last frame and closes.
//!
//! A stream whose socket does not take the whole frame is *detached*: the shard queues
//! what is left (and later frames) for the stream's own task, which waits until the
//! socket is writable, writes the queue in order and attaches the stream again once it
//! is empty. So one slow client never delays the shard or anyone else; one that falls
//! more than the channel's capacity behind gets a `resync` instead of an unbounded
//! queue. A stream also starts detached, with its `connected` event and replay queued,
//! and is registered under the bus's lock, so the shard delivers exactly the updates
//! after its replay. What each stream writes, and when, is its [`Cursor`]'s decision,
//! the same rules the response body follows on connections hyper serves.
//!
//! What it counts ([`BusMetrics`]) it counts per shard and update, never per socket: a
//! shard adds up the streams it wrote an update to as it goes (a local integer) and
//! reports the total, with the time its pass ended, once. Measured with `loadtest
//! --clients 2000 --rate 10 --duration 20s` (release build) against the same code
//! without the counting: the CPU per delivered notification stayed within the run-to-run
//! noise (figures in the commit that added it).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::updates::stream::Opened;
use crate::updates::{
    Access, BusMetrics, Cursor, Pings, Published, ResyncReason, Room, StreamRequest, Subscriber, UpdateBus, now_micros,
};

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
    /// The shard's streams, by the id of their room.
    groups: Mutex<HashMap<u64, Group>>,
}

/// The streams of one room.
#[derive(Debug)]
struct Group {
    room: Arc<Room>,
    streams: HashMap<u64, Arc<Entry>>,
}

/// One stream on the fan-out.
#[derive(Debug)]
struct Entry {
    /// The id of the room whose group holds the stream.
    room: AtomicU64,
    socket: Arc<TcpStream>,
    /// HTTP/1.1 chunked framing (HTTP/1.0: raw bytes until the connection closes).
    chunked: bool,
    /// Frames a detached stream may queue before it must resync instead.
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the stream's task when it has bytes to write.
    detached: Notify,
}

#[derive(Debug)]
struct State {
    /// What the stream has written and owes.
    cursor: Cursor,
    /// The shard writes to the socket itself; otherwise it queues for the task.
    attached: bool,
    /// Encoded bytes (chunks framed) waiting for the socket, in order.
    queue: VecDeque<Bytes>,
    /// Frames in `queue`; past the channel's capacity the stream gets a resync instead.
    queued_frames: usize,
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
                        Ok(published) => shard.deliver(&published, bus.metrics()),
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

    /// Writes one event stream to `socket` (its response head already written) until
    /// the client leaves or `shutdown` fires.
    pub async fn write_stream(
        &self,
        socket: TcpStream,
        chunked: bool,
        request: StreamRequest,
        write_timeout: Duration,
        shutdown: &CancellationToken,
    ) -> io::Result<()> {
        let socket = Arc::new(socket);
        let mut access = request.access.clone();
        let current = access.borrow_and_update().clone();
        let Some(room) = current else {
            // The session ended between the request and now: its last frame, and the end.
            write_all(&socket, &frame(chunked, &request.ended), write_timeout, shutdown).await?;
            if chunked {
                let _ = socket.try_write(b"0\r\n\r\n");
            }
            return Ok(());
        };
        let shard = &self.shards[self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len()];
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let capacity = self.bus.channel_capacity();
        // Registered under the bus lock: the shard delivers exactly what follows the replay.
        let (entry, _subscriber, _open): (Arc<Entry>, Subscriber, Opened) = self.bus.attach(request.after, |start| {
            let (cursor, opening) = Cursor::open(&start, request.types, &room, self.pings.connected());
            let mut queue = VecDeque::new();
            for event in &opening {
                queue_event(&mut queue, chunked, event);
            }
            let opened = Opened::new(&request, &start, self.bus.metrics());
            let entry = Arc::new(Entry {
                room: AtomicU64::new(room.id()),
                socket: socket.clone(),
                chunked,
                capacity,
                state: Mutex::new(State {
                    cursor,
                    attached: false,
                    // The replay is bounded by the ring; the limit counts what follows it.
                    queued_frames: 0,
                    queue,
                    closed: false,
                }),
                detached: Notify::new(),
            });
            shard.join(id, entry.clone(), room.clone());
            (entry, start.subscriber, opened)
        });
        let ended = &request.ended;
        let life = Life { shard, id, bus: &self.bus, access, ended };
        let result = entry.run(life, &self.pings, self.bus.metrics(), write_timeout, shutdown).await;
        shard.leave(id, entry.room.load(Ordering::Relaxed));
        lock(&entry.state).closed = true;
        if result.is_ok() && chunked {
            // The end of the chunked body, if the socket takes it now; nobody waits for it.
            let _ = socket.try_write(b"0\r\n\r\n");
        }
        result
    }
}

/// What a stream's task needs to follow its session: where it is registered, and the
/// session's room as it changes.
struct Life<'a> {
    shard: &'a Shard,
    id: u64,
    bus: &'a UpdateBus,
    access: Access,
    ended: &'a Bytes,
}

impl Shard {
    fn deliver(&self, published: &Published, metrics: &BusMetrics) {
        if published.missed {
            // The bus jumped: every stream owes a resync, written by its own task.
            return self.owe_resync(|cursor| {
                cursor.published(published);
            });
        }
        let mut written = 0;
        for group in lock(&self.groups).values() {
            // Decided once per room (and made once per update and room, whichever shard
            // asks first); framed once for every HTTP/1.1 stream of the group.
            let Some(event) = published.frame_for(&group.room) else { continue };
            let chunk = frame(true, &event);
            for entry in group.streams.values() {
                written += u64::from(entry.deliver(published, &event, &chunk));
            }
        }
        let update = &published.update;
        metrics.written(update.kind, written, update.ts, now_micros());
    }

    /// The shard missed updates up to `seq`: every stream owes a resync.
    fn lagged(&self, seq: u64) {
        self.owe_resync(|cursor| cursor.lagged(seq));
    }

    /// Tells every stream's cursor what it missed (`owe`), and hands the streams that
    /// now owe a resync to their own tasks, which write it.
    fn owe_resync(&self, owe: impl Fn(&mut Cursor)) {
        for entry in lock(&self.groups).values().flat_map(|g| g.streams.values()) {
            let mut state = lock(&entry.state);
            owe(&mut state.cursor);
            if state.attached && state.cursor.owes_resync() {
                state.attached = false;
                entry.detached.notify_one();
            }
        }
    }

    /// Adds stream `id` to the group of `room`.
    fn join(&self, id: u64, entry: Arc<Entry>, room: Arc<Room>) {
        let mut groups = lock(&self.groups);
        let group = groups.entry(room.id()).or_insert_with(|| Group { room, streams: HashMap::new() });
        group.streams.insert(id, entry);
    }

    /// Removes stream `id` from the group of room `room`, and the group when it is empty.
    fn leave(&self, id: u64, room: u64) -> Option<Arc<Entry>> {
        let mut groups = lock(&self.groups);
        let group = groups.get_mut(&room)?;
        let entry = group.streams.remove(&id);
        if group.streams.is_empty() {
            groups.remove(&room);
        }
        entry
    }
}

impl Entry {
    /// One update the stream's room sees (`event`: the room's frame of it, `chunk`: the
    /// same in chunked coding): written now when the stream wants it and the socket takes
    /// it, else queued. Answers whether it was either.
    fn deliver(&self, published: &Published, event: &Bytes, chunk: &Bytes) -> bool {
        let mut state = lock(&self.state);
        if state.closed || !state.cursor.published(published) {
            return false;
        }
        let wire = if self.chunked { chunk } else { event };
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
                    return false;
                }
            }
        } else if state.queued_frames >= self.capacity {
            state.cursor.dropped();
            return false;
        } else {
            state.queue.push_back(wire.clone());
            state.queued_frames += 1;
        }
        true
    }

    /// The stream's own task: writes what the shard queued, sends keep-alive pings,
    /// follows its session (a new room, or its end), and watches for the client leaving.
    async fn run(
        &self,
        mut life: Life<'_>,
        pings: &Pings,
        metrics: &BusMetrics,
        write_timeout: Duration,
        shutdown: &CancellationToken,
    ) -> io::Result<()> {
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
                // At most a batch at a time: a long replay is written from the shared
                // frames, never copied whole.
                let mut pending = BytesMut::new();
                while pending.len() < WRITE_BATCH {
                    let Some(bytes) = state.queue.pop_front() else { break };
                    pending.extend_from_slice(&bytes);
                }
                if state.queue.is_empty() {
                    state.queued_frames = 0;
                    if let Some(resync) = state.cursor.take_resync() {
                        metrics.resync(ResyncReason::Lagged);
                        tracing::debug!("stream fell behind; sending resync");
                        pending.extend_from_slice(&frame(self.chunked, &resync));
                    }
                    if pending.is_empty() {
                        state.attached = true;
                    }
                }
                pending
            };
            if !pending.is_empty() {
                write_all(&self.socket, &pending, write_timeout, shutdown).await?;
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
                changed = life.access.changed() => {
                    let now = if changed.is_ok() { life.access.borrow_and_update().clone() } else { None };
                    let Some(room) = now else {
                        // Signed out or expired: what is queued, the last frame, the end.
                        let mut last = BytesMut::new();
                        {
                            let mut state = lock(&self.state);
                            state.closed = true;
                            while let Some(bytes) = state.queue.pop_front() {
                                last.extend_from_slice(&bytes);
                            }
                        }
                        last.extend_from_slice(&frame(self.chunked, life.ended));
                        return write_all(&self.socket, &last, write_timeout, shutdown).await;
                    };
                    let was = self.room.load(Ordering::Relaxed);
                    if room.id() != was {
                        if let Some(entry) = life.shard.leave(life.id, was) {
                            self.room.store(room.id(), Ordering::Relaxed);
                            life.shard.join(life.id, entry, room);
                        }
                        let mut state = lock(&self.state);
                        state.cursor.access_changed(life.bus.seq());
                        // The task writes the resync (top of the loop), not the shard.
                        state.attached = false;
                    }
                }
                changed = ticks.changed() => {
                    if changed.is_err() {
                        // The clock stopped: the server is shutting down.
                        return Ok(());
                    }
                    let mut state = lock(&self.state);
                    // A detached stream is writing already: no ping needed.
                    if let Some(ping) = state.cursor.tick().filter(|_| state.attached) {
                        match write_now(&self.socket, &frame(self.chunked, &ping)) {
                            Ok(None) => {}
                            Ok(Some(rest)) => {
                                state.queue.push_back(rest);
                                state.attached = false;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
    }
}

/// The most bytes a stream's task copies together for one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Queues `event` as it goes on the wire without copying it: as is, or between the
/// chunked coding's size line and CRLF.
fn queue_event(queue: &mut VecDeque<Bytes>, chunked: bool, event: &Bytes) {
    if chunked {
        queue.push_back(Bytes::from(chunk_head(event.len())));
        queue.push_back(event.clone());
        queue.push_back(Bytes::from_static(b"\r\n"));
    } else {
        queue.push_back(event.clone());
    }
}

/// `event` as it goes on the wire: a chunk of the chunked coding, or as is.
fn frame(chunked: bool, event: &[u8]) -> Bytes {
    if !chunked {
        return Bytes::copy_from_slice(event);
    }
    let mut out = BytesMut::with_capacity(event.len() + 20);
    out.extend_from_slice(chunk_head(event.len()).as_bytes());
    out.extend_from_slice(event);
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// The chunked coding's size line for a chunk of `len` bytes.
fn chunk_head(len: usize) -> String {
    format!("{len:x}\r\n")
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

/// Writes all of `bytes`, waiting for this socket alone; gives up on shutdown, or when
/// the socket takes nothing for `write_timeout` (the client stopped reading).
pub(super) async fn write_all(
    socket: &TcpStream,
    mut bytes: &[u8],
    write_timeout: Duration,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    writable = socket.writable() => writable?,
                    _ = shutdown.cancelled() => return Err(io::ErrorKind::Interrupted.into()),
                    _ = tokio::time::sleep(write_timeout) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
