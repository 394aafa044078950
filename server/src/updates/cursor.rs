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
    /// A resync is owed, for this reason: written by [`Cursor::take_resync`].
    resync_owed: Option<ResyncReason>,
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
        let cursor = Cursor { filter, covered: start.seq, resync_owed: None, active: true };
        (cursor, frames)
    }

    /// An update was published: its frame when this stream writes it, else `None`.
    /// A jump of the bus ([`Published::missed`]) is never written itself: it owes a `gap`
    /// resync covering it, when the stream has not covered its seq yet.
    pub fn published<'p>(&mut self, published: &'p Published) -> Option<&'p Bytes> {
        let seq = published.update.seq;
        if published.missed {
            if seq > self.covered {
                self.covered = seq;
                self.resync_owed.get_or_insert(ResyncReason::Gap);
            }
            return None;
        }
        if seq <= self.covered || !self.filter.wants(published.update.kind) {
            return None;
        }
        self.covered = seq;
        if self.resync_owed.is_some() {
            // The owed resync will cover it.
            return None;
        }
        self.active = true;
        Some(&published.frame)
    }

    /// The stream's receiver lagged while the bus was at `latest`: a resync is owed,
    /// covering everything up to it — unless everything up to it was already written or
    /// covered. A receiver can report a lag again after the resync for it (the channel
    /// overwrote updates that resync already covered); a second resync with the same id
    /// would only make the client refetch twice.
    pub fn lagged(&mut self, latest: u64) {
        if latest > self.covered {
            self.covered = latest;
            self.resync_owed.get_or_insert(ResyncReason::Lagged);
        }
    }

    /// The frame [`Cursor::published`] just answered could not be queued: a resync is
    /// owed, covering it.
    pub fn dropped(&mut self) {
        self.resync_owed.get_or_insert(ResyncReason::Lagged);
    }

    /// Whether a resync is owed.
    pub fn owes_resync(&self) -> bool {
        self.resync_owed.is_some()
    }

    /// The owed resync, once: it carries the highest seq it covers as its id.
    pub fn take_resync(&mut self) -> Option<Bytes> {
        let reason = self.resync_owed.take()?;
        self.active = true;
        Some(frame::resync(self.covered, reason))
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
        // Seq 2 is missed: the receiver lags while the bus is at 2.
        bus.publish(UpdateType::Volumes, None);
        cursor.lagged(bus.seq());
        let third = bus.publish(UpdateType::Volumes, None);
        assert!(cursor.published(&third).is_none(), "covered by the owed resync");
        let resync = cursor.take_resync().expect("owed");
        assert!(resync.starts_with(b"id: 3\n"), "the resync covers seq 3");
        assert!(cursor.take_resync().is_none(), "owed once");
        assert!(cursor.tick().is_none(), "the resync was activity");
        assert!(cursor.tick().is_some(), "a whole idle tick: ping");
    }

    #[test]
    fn a_lag_reported_again_after_its_resync_owes_nothing_more() {
        let bus = UpdateBus::starting_at(1, BusConfig::default());
        let (start, _live) = bus.subscribe(None);
        let (mut cursor, _) = Cursor::open(&start, TypeFilter::ALL, &Bytes::from_static(b"connected"));
        cursor.lagged(7);
        assert!(cursor.take_resync().is_some_and(|r| r.starts_with(b"id: 7\n")));
        cursor.lagged(7);
        assert!(cursor.take_resync().is_none(), "updates up to 7 are covered already");
        cursor.lagged(9);
        assert!(cursor.take_resync().is_some_and(|r| r.starts_with(b"id: 9\n")), "8 and 9 were missed");
    }

    #[test]
    fn an_update_that_could_not_be_queued_owes_a_resync_covering_it() {
        let bus = UpdateBus::starting_at(1, BusConfig::default());
        let (start, _live) = bus.subscribe(None);
        let (mut cursor, _) = Cursor::open(&start, TypeFilter::ALL, &Bytes::from_static(b"connected"));
        let first = bus.publish(UpdateType::Volumes, None);
        assert!(cursor.published(&first).is_some());
        cursor.dropped();
        let resync = cursor.take_resync().expect("owed");
        assert!(resync.starts_with(format!("id: {}\n", first.update.seq).as_bytes()), "covers the dropped one");
    }
}
