//! The stream cursor: where one stream stands, and what it must write next.
//!
//! Both delivery paths use it — the fan-out that writes to sockets itself
//! (`crate::serve`) and the response body that hyper polls (`crate::rpc::stream`) — so the
//! stream's rules are written once:
//!
//! - a stream opens with `connected`, a `resync` when its resume id is no longer kept
//!   (reason `gap`), then the replay of the types it wants;
//! - an update is written when the stream wants its type and has not covered its seq yet
//!   (ids only ever increase on one stream);
//! - a stream that fell behind gets one `resync` (reason `lagged`) that covers every
//!   update up to the bus's latest seq at that moment and any that arrive before the
//!   resync is written: those are skipped, the refetch it asks for includes them;
//! - a `ping` goes out on a tick of the shared keep-alive clock only when nothing else
//!   was written since the previous tick.
//!
//! The cursor does no I/O and keeps no clock: callers feed it what happened and write the
//! bytes it answers, which is what lets both paths share it and tests drive it directly.

use bytes::Bytes;

use super::frame::{self, PING};
use super::{Published, ResyncReason, Start, TypeFilter};

/// One stream's position and its keep-alive state.
#[derive(Debug)]
pub struct Cursor {
    filter: TypeFilter,
    /// The highest seq written or covered by a resync: nothing at or below it is written.
    covered: u64,
    /// A `lagged` resync is owed: written by [`Cursor::take_resync`].
    resync_owed: bool,
    /// Something was written since the last keep-alive tick.
    active: bool,
}

impl Cursor {
    /// Opens a stream at `start` (from the bus): the cursor, and the frames to write first.
    pub fn open(start: &Start, filter: TypeFilter, connected: &Bytes) -> (Cursor, Vec<Bytes>) {
        let mut frames = vec![connected.clone()];
        if start.gap {
            // Live updates continue right after `seq`, so that is the id to resume from.
            frames.push(frame::resync(start.seq, ResyncReason::Gap));
        }
        frames.extend(start.replay.iter().filter(|p| filter.wants(p.update.kind)).map(|p| p.frame.clone()));
        let cursor = Cursor { filter, covered: start.seq, resync_owed: false, active: true };
        (cursor, frames)
    }

    /// An update was published: its frame when this stream writes it, else `None`.
    pub fn published<'p>(&mut self, published: &'p Published) -> Option<&'p Bytes> {
        let seq = published.update.seq;
        if seq <= self.covered || !self.filter.wants(published.update.kind) {
            return None;
        }
        self.covered = seq;
        if self.resync_owed {
            // The owed resync will cover it.
            return None;
        }
        self.active = true;
        Some(&published.frame)
    }

    /// The stream missed updates up to `latest` (the receiver lagged, or its queue is
    /// full): a resync is owed, covering them.
    pub fn lagged(&mut self, latest: u64) {
        self.covered = self.covered.max(latest);
        self.resync_owed = true;
    }

    /// Whether a resync is owed.
    pub fn owes_resync(&self) -> bool {
        self.resync_owed
    }

    /// The owed `lagged` resync, once: it carries the highest seq it covers as its id.
    pub fn take_resync(&mut self) -> Option<Bytes> {
        if !std::mem::take(&mut self.resync_owed) {
            return None;
        }
        self.active = true;
        Some(frame::resync(self.covered, ResyncReason::Lagged))
    }

    /// The keep-alive clock ticked: a `ping` when nothing was written since the last tick.
    pub fn tick(&mut self) -> Option<Bytes> {
        if std::mem::take(&mut self.active) {
            return None;
        }
        Some(Bytes::from_static(PING))
    }

    /// Notes that something the cursor did not produce was written (a queued ping).
    pub fn note_written(&mut self) {
        self.active = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::updates::{BusConfig, UpdateBus, UpdateType};

    #[test]
    fn an_owed_resync_covers_what_arrives_before_it_is_written() {
        let bus = UpdateBus::starting_at(1, BusConfig::default());
        let (start, _live) = bus.subscribe(None);
        let (mut cursor, opening) = Cursor::open(&start, TypeFilter::ALL, &Bytes::from_static(b"connected"));
        assert_eq!(opening.len(), 1);
        let first = bus.publish(UpdateType::Volumes, None);
        assert!(cursor.published(&first).is_some());
        assert!(cursor.published(&first).is_none(), "never the same seq twice");
        cursor.lagged(1);
        let second = bus.publish(UpdateType::Volumes, None);
        assert!(cursor.published(&second).is_none(), "covered by the owed resync");
        let resync = cursor.take_resync().expect("owed");
        assert!(resync.starts_with(b"id: 2\n"), "the resync covers seq 2");
        assert!(cursor.take_resync().is_none(), "owed once");
        assert!(cursor.tick().is_none(), "the resync was activity");
        assert!(cursor.tick().is_some(), "a whole idle tick: ping");
    }
}
