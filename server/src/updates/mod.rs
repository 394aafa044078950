//! The update bus: what changed, in order, for everyone who listens.
//!
//! Every change Stalecast learns about — a mutation it performed, or a difference the
//! poller found upstream — becomes one [`Update`]: a few dozen bytes naming the
//! [`UpdateType`] that went stale and, when known, the ids that changed. The bus stamps
//! each update with a strictly increasing `seq`, encodes its SSE event once ([`frame`]),
//! keeps the latest ones in a bounded replay ring for clients that reconnect, and sends
//! them over a `tokio::sync::broadcast` channel to whoever delivers them.
//!
//! Each update also knows whom it concerns ([`audience`]): the owner of every changed
//! resource, kept beside its ids but never sent. A stream listens for one signed-in user
//! and writes only what that user's [`Room`] may see ([`Published::frame_for`]).
//!
//! What one stream writes, and when, is decided by its [`Cursor`] (shared by both
//! delivery paths); the keep-alive clock all streams share is [`Pings`]; [`stream`]
//! turns a broadcast receiver into the stream's frames; what they all count is
//! [`BusMetrics`]. Nothing here knows HTTP.

pub mod audience;
pub mod cursor;
pub mod frame;
pub mod metrics;
mod pings;
pub mod stream;

pub use audience::{Owner, Room, Rooms};
pub use cursor::Cursor;
pub use metrics::BusMetrics;
pub use pings::Pings;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use ts_rs::TS;
use utoipa::ToSchema;

/// The most ids one update names; a larger change is announced for the whole collection.
pub const MAX_IDS: usize = 64;

/// A kind of data that can go stale. Each maps to the queries it invalidates
/// (`domain::INVALIDATION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum UpdateType {
    Projects,
    Servers,
    Volumes,
    Images,
    Networks,
    Snapshots,
    Subnets,
    Flavors,
    /// The server's own figures (streams, notifications, upstream health: the `server.stats`
    /// query), published at most every few seconds when they changed.
    ServerStats,
}

impl UpdateType {
    /// Every update type, in a stable order.
    pub const ALL: [UpdateType; 9] = [
        UpdateType::Projects,
        UpdateType::Servers,
        UpdateType::Volumes,
        UpdateType::Images,
        UpdateType::Networks,
        UpdateType::Snapshots,
        UpdateType::Subnets,
        UpdateType::Flavors,
        UpdateType::ServerStats,
    ];

    /// The cloud's collections, which the poller fetches and the store keeps: every type
    /// but the server's own figures.
    pub const COLLECTIONS: [UpdateType; 8] = [
        UpdateType::Projects,
        UpdateType::Servers,
        UpdateType::Volumes,
        UpdateType::Images,
        UpdateType::Networks,
        UpdateType::Snapshots,
        UpdateType::Subnets,
        UpdateType::Flavors,
    ];

    /// The wire name (`"volumes"`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateType::Projects => "projects",
            UpdateType::Servers => "servers",
            UpdateType::Volumes => "volumes",
            UpdateType::Images => "images",
            UpdateType::Networks => "networks",
            UpdateType::Snapshots => "snapshots",
            UpdateType::Subnets => "subnets",
            UpdateType::Flavors => "flavors",
            UpdateType::ServerStats => "serverStats",
        }
    }

    /// A bit for type filters (`1 << index`).
    const fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// The update types one stream wants: a bit per type (room for 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeFilter(u16);

impl TypeFilter {
    /// Every type.
    pub const ALL: TypeFilter = TypeFilter(u16::MAX);

    /// What a stream that names no types gets: every collection of the cloud. The
    /// server's own figures (`serverStats`, every few seconds) go only to streams that
    /// name them (the dashboard does): a client that never shows them, or a load test,
    /// pays nothing for them.
    pub const COLLECTIONS: TypeFilter = TypeFilter(!UpdateType::ServerStats.bit());

    /// Only `types` (none given: [`COLLECTIONS`](Self::COLLECTIONS)).
    pub fn only(types: &[UpdateType]) -> TypeFilter {
        if types.is_empty() {
            return TypeFilter::COLLECTIONS;
        }
        TypeFilter(types.iter().fold(0, |mask, t| mask | t.bit()))
    }

    pub fn wants(self, kind: UpdateType) -> bool {
        self.0 & kind.bit() != 0
    }
}

/// What a client asked of the stream (where to resume, which types) and for whom it is:
/// handed from the endpoint that parsed the request to whichever path delivers the stream.
#[derive(Clone, Debug)]
pub struct StreamRequest {
    /// Resume after this seq (`u64::MAX` for an id that cannot be read: a resync).
    pub after: Option<u64>,
    pub types: TypeFilter,
    /// What the listener may see, as it changes: its room, or `None` once its session
    /// ended (signed out, expired), which ends the stream with [`StreamRequest::ended`].
    pub access: Access,
    /// The last frame of a stream whose session ended (tRPC's `serialized-error`).
    pub ended: Bytes,
}

/// What a listener may see, as it changes: the room of its session, `None` once the
/// session is over. The session holds the sender.
pub type Access = watch::Receiver<Option<Arc<Room>>>;

impl std::fmt::Display for UpdateType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification: `type` went stale at `ts`; `ids`, when present, names what changed
/// (absent means the whole collection).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS, ToSchema)]
pub struct Update {
    /// Strictly increasing within a process; also the SSE event id.
    #[ts(type = "number")]
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: UpdateType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ids: Option<Vec<String>>,
    /// Microseconds since the Unix epoch when the update was published.
    #[ts(type = "number")]
    pub ts: u64,
}

/// What the stream sends as an event's data: an update, or an instruction to refetch
/// everything because updates were missed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS, ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum StreamEvent {
    Update(Update),
    Resync {
        /// The bus's latest `seq` when the resync was sent.
        #[ts(type = "number")]
        seq: u64,
        reason: ResyncReason,
    },
}

/// Why a client must refetch everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResyncReason {
    /// The resume id is older than the replay ring (or from another server process).
    Gap,
    /// The client read too slowly and the broadcast channel overtook it.
    Lagged,
    /// What the client may see changed (a project was granted or taken away): what it
    /// holds may show too much or too little.
    Access,
}

impl ResyncReason {
    /// The wire name (`"gap"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::Gap => "gap",
            ResyncReason::Lagged => "lagged",
            ResyncReason::Access => "access",
        }
    }
}

/// An update as it travels the bus: the value plus its whole SSE event, encoded once at
/// publish time rather than once per subscriber, and whom it concerns.
#[derive(Debug)]
pub struct Published {
    pub update: Update,
    /// `id: <seq>\ndata: {"kind":"update",...}\n\n`: what a stream that may see every id
    /// writes, shared, never copied.
    pub frame: Bytes,
    /// Not an update but a jump ([`UpdateBus::skip_to`]): updates up to `update.seq` may
    /// never arrive, so every stream owes a `gap` resync covering them.
    pub missed: bool,
    /// The owner of each id in `update.ids`, in the same order; when the update names no
    /// ids, the owners of everything it covers, each once. Never sent.
    owners: Vec<Owner>,
    /// Further owners of some ids (by index into `update.ids`): a record that moved from
    /// one project to another concerns both.
    also: Vec<(usize, Owner)>,
    /// [`Published::frame_for`]'s answers so far, by room id: each room's frame is made
    /// once, however many streams (and shards, and replays) ask.
    frames: Mutex<Vec<(u64, Option<Bytes>)>>,
}

/// Rooms whose frame of one update is remembered; past them a frame is made per request
/// (thousands of users with different project sets, each on their own).
const REMEMBERED_ROOMS: usize = 64;

impl Published {
    /// What a stream for `room` writes of this update: the frame as it is when the room
    /// sees every id, one naming only the ids it sees, or `None` when it sees none (for an
    /// update without ids: none of the owners it covers).
    pub fn frame_for(&self, room: &Room) -> Option<Bytes> {
        let mut frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, frame)) = frames.iter().find(|(id, _)| *id == room.id()) {
            return frame.clone();
        }
        let frame = self.make_frame_for(room);
        if frames.len() < REMEMBERED_ROOMS {
            frames.push((room.id(), frame.clone()));
        }
        frame
    }

    fn make_frame_for(&self, room: &Room) -> Option<Bytes> {
        let Some(ids) = &self.update.ids else {
            return self.owners.iter().any(|o| room.sees(o)).then(|| self.frame.clone());
        };
        let seen: Vec<String> = ids
            .iter()
            .zip(&self.owners)
            .enumerate()
            .filter(|(at, (_, owner))| room.sees(owner) || self.also.iter().any(|(i, o)| i == at && room.sees(o)))
            .map(|(_, (id, _))| id.clone())
            .collect();
        if seen.is_empty() {
            return None;
        }
        if seen.len() == ids.len() {
            return Some(self.frame.clone());
        }
        let update = Update { ids: Some(seen), ..self.update.clone() };
        Some(frame::event(update.seq, &StreamEvent::Update(update)))
    }
}

/// Whom an update concerns: the owner of each id it names, in the same order (when it
/// names none, the owners of everything it covers, each once), and further owners of
/// some ids (by index): a record that moved from one project to another concerns both.
#[derive(Debug)]
struct Audience {
    owners: Vec<Owner>,
    also: Vec<(usize, Owner)>,
}

impl Audience {
    /// The ids an update of `changed` names, and whom it concerns.
    fn of(changed: Vec<(String, Owner)>) -> (Option<Vec<String>>, Audience) {
        let mut ids: Vec<String> = Vec::with_capacity(changed.len().min(MAX_IDS + 1));
        let mut owners: Vec<Owner> = Vec::with_capacity(ids.capacity());
        let mut also = Vec::new();
        for (id, owner) in changed {
            if ids.len() > MAX_IDS {
                // The whole collection, for its owners: the ids no longer matter.
                owners.push(owner);
                continue;
            }
            match ids.iter().position(|known| *known == id) {
                Some(at) => also.push((at, owner)),
                None => {
                    ids.push(id);
                    owners.push(owner);
                }
            }
        }
        let ids = if ids.is_empty() {
            owners.push(Owner::Everyone);
            None
        } else if ids.len() > MAX_IDS {
            owners.extend(also.drain(..).map(|(_, owner)| owner));
            owners.sort_unstable();
            owners.dedup();
            None
        } else {
            Some(ids)
        };
        (ids, Audience { owners, also })
    }
}

/// Per-type state for `updates.state` ("room state"): the last update of each type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeState {
    pub seq: u64,
    pub ts: u64,
}

/// Sizes of the bus's buffers.
#[derive(Clone, Copy, Debug)]
pub struct BusConfig {
    /// Updates kept for resuming clients.
    pub ring_size: usize,
    /// Updates a subscriber may fall behind the live channel before it is told to resync;
    /// also the longest replay a resuming subscriber gets (beyond it: a resync).
    pub channel_capacity: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig { ring_size: 4096, channel_capacity: 1024 }
    }
}

/// The broadcast bus plus its replay ring. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct UpdateBus {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Published>>,
    ring_size: usize,
    channel_capacity: usize,
    metrics: BusMetrics,
}

/// Counts one open subscription (in the open-streams gauge) for as long as it lives.
#[derive(Debug)]
pub struct Subscriber(prometheus_client::metrics::gauge::Gauge);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Where a subscriber starts: what to send before any live update.
#[derive(Debug)]
pub struct Start {
    /// Updates after the resume id, oldest first.
    pub replay: Vec<Arc<Published>>,
    /// Set when the resume id could not be honoured: the client must resync first.
    pub gap: bool,
    /// The bus's latest seq at subscription time: live updates are those after it.
    pub seq: u64,
    pub subscriber: Subscriber,
}

#[derive(Debug)]
struct Inner {
    /// The seq the next update gets.
    next_seq: u64,
    ring: VecDeque<Arc<Published>>,
    last: [TypeState; UpdateType::ALL.len()],
    /// The last update of each type that concerned each owner (`updates.state` for a room).
    by_owner: HashMap<Owner, [TypeState; UpdateType::ALL.len()]>,
}

/// A snapshot of the bus for `updates.state`.
#[derive(Clone, Debug)]
pub struct BusState {
    pub seq: u64,
    pub ring_size: usize,
    pub types: Vec<(UpdateType, TypeState)>,
}

impl UpdateBus {
    /// A bus whose first seq is the current time in microseconds, so that a resume id
    /// handed out by an earlier process is always older than this process's ring and
    /// gets a resync, never a wrong replay. Values stay far below 2^53.
    pub fn new(config: BusConfig) -> Self {
        Self::starting_at(now_micros(), config)
    }

    /// A bus whose first update gets `first_seq` (tests use small numbers).
    pub fn starting_at(first_seq: u64, config: BusConfig) -> Self {
        let ring_size = config.ring_size.max(1);
        let (tx, _) = broadcast::channel(config.channel_capacity.max(1));
        UpdateBus {
            inner: Mutex::new(Inner {
                next_seq: first_seq.max(1),
                ring: VecDeque::with_capacity(ring_size),
                last: Default::default(),
                by_owner: HashMap::new(),
            }),
            tx,
            ring_size,
            channel_capacity: config.channel_capacity.max(1),
            metrics: BusMetrics::default(),
        }
    }

    /// What the bus and its streams count.
    pub fn metrics(&self) -> &BusMetrics {
        &self.metrics
    }

    /// Updates a subscriber may fall behind before it must resync.
    pub fn channel_capacity(&self) -> usize {
        self.channel_capacity
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The lock guards plain data that is always left consistent; a panic elsewhere
        // while holding it cannot corrupt it, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes that `kind` changed, in a way that concerns every signed-in user (a
    /// change without an owner). `ids` names the changed resources (`None` or more than
    /// [`MAX_IDS`] ids: the whole collection). Returns the stamped update.
    pub fn publish(&self, kind: UpdateType, ids: Option<Vec<String>>) -> Arc<Published> {
        let changed = match ids {
            Some(ids) if !ids.is_empty() => ids.into_iter().map(|id| (id, Owner::Everyone)).collect(),
            _ => Vec::new(),
        };
        self.publish_changes(kind, changed, |_| {})
    }

    /// Publishes that the resources in `changed` (each with its owner; an id may come
    /// twice, with each of two owners) of `kind` changed; none: the whole collection, for
    /// everyone. More than [`MAX_IDS`] ids: the whole collection, for their owners. `stamp` is called with the update's seq before
    /// anyone can receive it: the store puts the changed records in place, stamped with
    /// that seq, so a client that hears of the update and asks reads the change. `stamp`
    /// runs under the bus's lock: it must be quick and must not publish.
    pub fn publish_changes(
        &self,
        kind: UpdateType,
        changed: Vec<(String, Owner)>,
        stamp: impl FnOnce(u64),
    ) -> Arc<Published> {
        let (ids, audience) = Audience::of(changed);
        let inner = self.lock();
        let seq = inner.next_seq;
        // A clock step backwards must not make `ts` go backwards within one type.
        let ts = now_micros().max(inner.last[kind as usize].ts);
        self.commit(inner, Update { seq, kind, ids, ts }, audience, stamp)
    }

    /// Publishes an update whose seq and `ts` were given elsewhere (the cluster's shared
    /// log, `crate::cluster`), calling `stamp` as [`publish_with`](Self::publish_with)
    /// does. Its seq must be above the latest (a jump past seqs that will never arrive is
    /// [`skip_to`](Self::skip_to) first); an older one is ignored (`None`): every stream
    /// has it already, or was told to resync past it.
    ///
    /// `changed` names whom it concerns as [`publish_changes`](Self::publish_changes)
    /// takes it; its ids are the ones the update names.
    pub fn ingest(
        &self,
        update: Update,
        changed: Vec<(String, Owner)>,
        stamp: impl FnOnce(u64),
    ) -> Option<Arc<Published>> {
        let (ids, audience) = Audience::of(changed);
        let update = Update { ids, ..update };
        let mut inner = self.lock();
        if update.seq < inner.next_seq {
            return None;
        }
        if update.seq > inner.next_seq {
            // Seqs in between never came: never a silent gap.
            self.jump(&mut inner, update.seq - 1);
        }
        Some(self.commit(inner, update, audience, stamp))
    }

    /// Stamps, rings and sends `update` (its seq at or above `next_seq`), under the lock.
    fn commit(
        &self,
        mut inner: MutexGuard<'_, Inner>,
        update: Update,
        audience: Audience,
        stamp: impl FnOnce(u64),
    ) -> Arc<Published> {
        let Update { seq, kind, ids, ts } = update;
        let ids = ids.filter(|ids| !ids.is_empty() && ids.len() <= MAX_IDS);
        inner.next_seq = seq + 1;
        stamp(seq);
        let update = Update { seq, kind, ids, ts };
        let frame = frame::event(seq, &StreamEvent::Update(update.clone()));
        for owner in audience.owners.iter().chain(audience.also.iter().map(|(_, owner)| owner)) {
            let last = inner.by_owner.entry(owner.clone()).or_default();
            last[kind as usize] = TypeState { seq, ts };
        }
        let Audience { owners, also } = audience;
        let published =
            Arc::new(Published { update, frame, missed: false, owners, also, frames: Mutex::new(Vec::new()) });
        if inner.ring.len() == self.ring_size {
            inner.ring.pop_front();
        }
        inner.ring.push_back(published.clone());
        inner.last[kind as usize] = TypeState { seq, ts };
        // Sent under the lock so that the channel's order is the seq order and a
        // concurrent `subscribe` sees each update either in the ring or live, never both
        // and never neither. `send` fails only when nobody listens, which is fine.
        let _ = self.tx.send(published.clone());
        drop(inner);
        self.metrics.published(kind);
        tracing::debug!(seq, %kind, "update published");
        published
    }

    /// Jumps to `seq`: the updates between the latest and `seq` (or, when the log they
    /// came from was lost, any of them) will never arrive. The ring is emptied, so that
    /// no resume id from before the jump is answered with a replay that misses them, and
    /// every open stream is sent a `gap` resync with `seq` as its id. The next update
    /// must come after `seq`. A `seq` below the latest jumps to the latest instead: ids
    /// only ever increase on one stream.
    pub fn skip_to(&self, seq: u64) {
        let mut inner = self.lock();
        self.jump(&mut inner, seq);
    }

    fn jump(&self, inner: &mut Inner, seq: u64) {
        let seq = seq.max(inner.next_seq - 1);
        inner.next_seq = seq + 1;
        inner.ring.clear();
        let frame = frame::resync(seq, ResyncReason::Gap);
        // The update is a placeholder: streams read only `missed` and the seq.
        let update = Update { seq, kind: UpdateType::Projects, ids: None, ts: now_micros() };
        let (owners, also, frames) = (vec![Owner::Everyone], Vec::new(), Mutex::new(Vec::new()));
        let _ = self.tx.send(Arc::new(Published { update, frame, missed: true, owners, also, frames }));
        tracing::debug!(seq, "bus jumped; every stream resyncs");
    }

    /// Subscribes with a receiver of its own: where to start after `after` (a resume
    /// id; `None`: live updates only), and everything published after that start.
    pub fn subscribe(&self, after: Option<u64>) -> (Start, broadcast::Receiver<Arc<Published>>) {
        let inner = self.lock();
        let live = self.tx.subscribe();
        (self.start(&inner, after), live)
    }

    /// Starts a subscriber that receives live updates through someone else's receiver
    /// (the fan-out): `register` runs under the bus lock, so every update after
    /// `Start::seq` is published after it returns and none is missed or seen twice.
    pub fn attach<T>(&self, after: Option<u64>, register: impl FnOnce(Start) -> T) -> T {
        let inner = self.lock();
        let start = self.start(&inner, after);
        register(start)
    }

    fn start(&self, inner: &Inner, after: Option<u64>) -> Start {
        let latest = inner.next_seq - 1;
        let oldest = inner.ring.front().map_or(inner.next_seq, |p| p.update.seq);
        let (replay, gap) = match after {
            None => (Vec::new(), false),
            Some(after) if after > latest => (Vec::new(), true),
            Some(after) if after + 1 < oldest => (Vec::new(), true),
            // More missed than a live stream may fall behind: a resync too, so that what
            // one stream holds for its client is bounded the same way either way.
            Some(after) if latest - after > self.channel_capacity as u64 => (Vec::new(), true),
            Some(after) => {
                let skip = (after + 1 - oldest) as usize;
                (inner.ring.iter().skip(skip).cloned().collect(), false)
            }
        };
        let streams = self.metrics.streams();
        streams.inc();
        Start { replay, gap, seq: latest, subscriber: Subscriber(streams.clone()) }
    }

    /// A receiver of every update published from now on, not counted as a subscriber
    /// (the fan-out's own).
    pub fn receiver(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    /// The latest seq handed out (0 before the first update of a bus started at 1).
    pub fn seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// The latest seq, the ring's capacity and the last update of every type.
    pub fn state(&self) -> BusState {
        let inner = self.lock();
        BusState {
            seq: inner.next_seq - 1,
            ring_size: self.ring_size,
            types: UpdateType::ALL.iter().map(|t| (*t, inner.last[*t as usize])).collect(),
        }
    }

    /// [`state`](Self::state) as `room` may see it: the last update of each type that
    /// concerned something the room sees (updates about other projects move none of it),
    /// and the bus's latest seq, the point a client asks `changes` from (a number that
    /// says nothing of whose update it was: the stream's resyncs carry it too).
    pub fn state_for(&self, room: &Room) -> BusState {
        let inner = self.lock();
        let mut types = [TypeState::default(); UpdateType::ALL.len()];
        for (owner, last) in &inner.by_owner {
            if !room.sees(owner) {
                continue;
            }
            for (kept, seen) in types.iter_mut().zip(last) {
                if seen.seq > kept.seq {
                    *kept = *seen;
                }
            }
        }
        BusState {
            seq: inner.next_seq - 1,
            ring_size: self.ring_size,
            types: UpdateType::ALL.iter().map(|t| (*t, types[*t as usize])).collect(),
        }
    }

    /// How many streams are subscribed right now.
    pub fn subscriber_count(&self) -> usize {
        self.metrics.streams().get().max(0) as usize
    }
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(ring: usize) -> UpdateBus {
        UpdateBus::starting_at(1, BusConfig { ring_size: ring, channel_capacity: 16 })
    }

    fn seqs(s: &(Start, broadcast::Receiver<Arc<Published>>)) -> Vec<u64> {
        s.0.replay.iter().map(|p| p.update.seq).collect()
    }

    #[test]
    fn seq_increases_and_resume_replays_exactly_what_follows() {
        let bus = bus(8);
        for _ in 0..5 {
            bus.publish(UpdateType::Volumes, None);
        }
        let sub = bus.subscribe(Some(2));
        assert_eq!(seqs(&sub), vec![3, 4, 5]);
        assert!(!sub.0.gap);
        assert!(seqs(&bus.subscribe(Some(5))).is_empty());
        assert!(!bus.subscribe(Some(5)).0.gap);
    }

    #[test]
    fn resume_older_than_ring_or_from_the_future_is_a_gap() {
        let bus = bus(3);
        for _ in 0..10 {
            bus.publish(UpdateType::Servers, None);
        }
        // Ring holds 8, 9, 10: resuming after 7 is still complete, after 6 is not.
        assert_eq!(seqs(&bus.subscribe(Some(7))), vec![8, 9, 10]);
        assert!(bus.subscribe(Some(6)).0.gap);
        assert!(bus.subscribe(Some(11)).0.gap);
    }

    #[test]
    fn a_replay_longer_than_the_channel_capacity_is_a_gap() {
        let bus = UpdateBus::starting_at(1, BusConfig { ring_size: 64, channel_capacity: 4 });
        for _ in 0..10 {
            bus.publish(UpdateType::Volumes, None);
        }
        assert_eq!(seqs(&bus.subscribe(Some(6))), vec![7, 8, 9, 10]);
        assert!(!bus.subscribe(Some(6)).0.gap);
        let (start, _) = bus.subscribe(Some(5));
        assert!(start.gap && start.replay.is_empty(), "5 missed, 4 allowed");
    }

    #[test]
    fn empty_bus_resume_from_before_start_is_a_gap() {
        let bus = UpdateBus::starting_at(100, BusConfig::default());
        assert!(!bus.subscribe(Some(99)).0.gap);
        assert!(bus.subscribe(Some(42)).0.gap);
    }

    #[tokio::test]
    async fn live_follows_replay_without_duplicate() {
        let bus = bus(8);
        bus.publish(UpdateType::Images, None);
        let mut sub = bus.subscribe(Some(0));
        bus.publish(UpdateType::Images, Some(vec!["i-1".into()]));
        assert_eq!(seqs(&sub), vec![1]);
        let live = sub.1.recv().await.expect("live update");
        assert_eq!(live.update.seq, 2);
        assert_eq!(live.update.ids.as_deref(), Some(&["i-1".to_string()][..]));
    }

    #[test]
    fn state_tracks_last_update_per_type_and_too_many_ids_mean_all() {
        let bus = bus(8);
        bus.publish(UpdateType::Volumes, None);
        let p = bus.publish(UpdateType::Servers, Some((0..100).map(|i| i.to_string()).collect()));
        assert_eq!(p.update.ids, None);
        let state = bus.state();
        assert_eq!(state.seq, 2);
        let servers = state.types.iter().find(|(t, _)| *t == UpdateType::Servers).expect("servers");
        assert_eq!(servers.1.seq, 2);
        let projects = state.types.iter().find(|(t, _)| *t == UpdateType::Projects).expect("projects");
        assert_eq!(projects.1.seq, 0);
    }

    #[tokio::test]
    async fn ingested_updates_keep_their_seq_and_a_jump_resyncs_every_stream() {
        let bus = bus(8);
        let (_start, mut live) = bus.subscribe(None);
        let ingest = |seq| bus.ingest(Update { seq, kind: UpdateType::Volumes, ids: None, ts: 7 }, Vec::new(), |_| {});
        assert_eq!(ingest(1).expect("next").update.seq, 1);
        assert!(ingest(1).is_none(), "an old seq is ignored");
        assert_eq!(live.recv().await.expect("live").update.ts, 7, "the given ts");
        // Seq 2 and 3 never come: a jump, then 4.
        assert_eq!(ingest(4).expect("after a jump").update.seq, 4);
        let jump = live.recv().await.expect("the jump");
        assert!(jump.missed && jump.update.seq == 3, "{jump:?}");
        assert!(jump.frame.starts_with(b"id: 3\ndata: {\"kind\":\"resync\",\"seq\":3,\"reason\":\"gap\""));
        assert_eq!(live.recv().await.expect("live").update.seq, 4);
        // The ring restarted at the jump: resuming from before it is a gap.
        assert!(bus.subscribe(Some(1)).0.gap);
        assert!(!bus.subscribe(Some(3)).0.gap);
        bus.skip_to(100);
        assert_eq!(bus.seq(), 100);
        assert_eq!(bus.publish(UpdateType::Images, None).update.seq, 101);
    }

    #[test]
    fn wire_json_is_the_documented_shape() {
        let bus = bus(8);
        let p = bus.publish(UpdateType::Volumes, Some(vec!["v-7".into()]));
        let frame = std::str::from_utf8(&p.frame).expect("utf-8");
        let json = frame.strip_prefix("id: 1\ndata: ").and_then(|f| f.strip_suffix("\n\n")).expect("one SSE event");
        assert!(!json.contains('\n'), "one data line");
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        assert_eq!(v["kind"], "update");
        assert_eq!(v["type"], "volumes");
        assert_eq!(v["ids"][0], "v-7");
        assert_eq!(v["seq"], 1);
        assert!(v["ts"].as_u64().expect("ts") > 1_600_000_000_000_000);
    }
}
