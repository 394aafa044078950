//! The stream cursor: where one stream stands, and what it must write next.
//!
//! Both delivery paths use it — the fan-out that writes to sockets itself
//! (`crate::serve`) and the response body that hyper polls (`crate::rpc::stream`) — so the
//! stream's rules are written once:
//!
//! - a stream opens with `connected`, a `resync` when its resume id is no longer kept
//!   (reason `gap`), then the replay of the types it wants, as its room may see it;
//! - an update is written when its room sees it (the caller asks the update,
//!   [`Published::frame_for`]), the stream wants its type and has not covered its seq yet
//!   (ids only ever increase on one stream);
//! - a stream whose room changed gets one `resync` (reason `access`), as one that fell
//!   behind does;
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
use super::{Published, ResyncReason, Room, Start, TypeFilter};

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
    /// Opens a stream for `room` at `start` (from the bus): the cursor, and the frames to
    /// write first.
    pub fn open(start: &Start, filter: TypeFilter, room: &Room, connected: &Bytes) -> (Cursor, Vec<Bytes>) {
        let mut frames = vec![connected.clone()];
        if start.gap {
            // Live updates continue right after `seq`, so that is the id to resume from.
            frames.push(frame::resync(start.seq, ResyncReason::Gap));
        }
        frames.extend(start.replay.iter().filter(|p| filter.wants(p.update.kind)).filter_map(|p| p.frame_for(room)));
        let cursor = Cursor { filter, covered: start.seq, resync_owed: None, active: true };
        (cursor, frames)
    }

    /// An update the stream's room sees was published: whether the stream writes it now
    /// (the room's frame of it, [`Published::frame_for`]). A jump of the bus
    /// ([`Published::missed`]) is never written itself: it owes a `gap` resync covering
    /// it, when the stream has not covered its seq yet.
    pub fn published(&mut self, published: &Published) -> bool {
        let update = &published.update;
        let seq = update.seq;
        if published.missed {
            if seq > self.covered {
                self.covered = seq;
                self.resync_owed.get_or_insert(ResyncReason::Gap);
            }
            return false;
        }
        if seq <= self.covered || !self.filter.wants(update.kind) {
            return false;
        }
        self.covered = seq;
        if self.resync_owed.is_some() {
            // The owed resync will cover it.
            return false;
        }
        self.active = true;
        true
    }

    /// [`Cursor::published`] and the frame to write, for a path that asks the update
    /// itself (one stream at a time).
    pub fn frame_of(&mut self, published: &Published, room: &Room) -> Option<Bytes> {
        if published.missed {
            self.published(published);
            return None;
        }
        let frame = published.frame_for(room)?;
        self.published(published).then_some(frame)
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

    /// What the stream may see changed while the bus was at `latest`: a resync is owed,
    /// covering everything up to it (the client refetches what it may now see).
    pub fn access_changed(&mut self, latest: u64) {
        self.covered = self.covered.max(latest);
        self.resync_owed = Some(ResyncReason::Access);
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
    use crate::updates::{BusConfig, Owner, Rooms, UpdateBus, UpdateType};

    fn a_room() -> std::sync::Arc<Room> {
        Rooms::default().room(["prj-a"])
    }

    #[test]
    fn an_owed_resync_covers_what_arrives_before_it_is_written() {
        let bus = UpdateBus::starting_at(1, BusConfig::default());
        let (start, _live) = bus.subscribe(None);
        let room = a_room();
        let (mut cursor, opening) = Cursor::open(&start, TypeFilter::ALL, &room, &Bytes::from_static(b"connected"));
        assert_eq!(opening.len(), 1);
        let first = bus.publish(UpdateType::Volumes, None);
        assert!(cursor.frame_of(&first, &room).is_some());
        assert!(cursor.frame_of(&first, &room).is_none(), "never the same seq twice");
        // Seq 2 is missed: the receiver lags while the bus is at 2.
        bus.publish(UpdateType::Volumes, None);
        cursor.lagged(bus.seq());
        let third = bus.publish(UpdateType::Volumes, None);
        assert!(cursor.frame_of(&third, &room).is_none(), "covered by the owed resync");
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
        let (mut cursor, _) = Cursor::open(&start, TypeFilter::ALL, &a_room(), &Bytes::from_static(b"connected"));
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
        let room = a_room();
        let (mut cursor, _) = Cursor::open(&start, TypeFilter::ALL, &room, &Bytes::from_static(b"connected"));
        let first = bus.publish(UpdateType::Volumes, None);
        assert!(cursor.frame_of(&first, &room).is_some());
        cursor.dropped();
        let resync = cursor.take_resync().expect("owed");
        assert!(resync.starts_with(format!("id: {}\n", first.update.seq).as_bytes()), "covers the dropped one");
    }

    #[test]
    fn a_replay_holds_only_what_the_room_sees_with_only_its_ids() {
        let bus = UpdateBus::starting_at(1, BusConfig::default());
        let rooms = Rooms::default();
        let web = rooms.room(["prj-web"]);
        let changed = |ids: &[(&str, &str)]| ids.iter().map(|(id, p)| (id.to_string(), Owner::project(p))).collect();
        bus.publish_changes(UpdateType::Volumes, changed(&[("v-1", "prj-data")]), |_| {});
        bus.publish_changes(UpdateType::Volumes, changed(&[("v-2", "prj-data"), ("v-3", "prj-web")]), |_| {});
        bus.publish_changes(UpdateType::Volumes, changed(&[("v-4", "prj-web")]), |_| {});
        let (start, _live) = bus.subscribe(Some(0));
        let (_, opening) = Cursor::open(&start, TypeFilter::ALL, &web, &Bytes::from_static(b"connected"));
        let text: Vec<String> = opening.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[1].starts_with("id: 2\n") && text[1].contains(r#""ids":["v-3"]"#), "{}", text[1]);
        assert!(text[2].starts_with("id: 3\n") && text[2].contains(r#""ids":["v-4"]"#), "{}", text[2]);
        assert!(!text.concat().contains("v-1") && !text.concat().contains("v-2"));
    }

    #[test]
    fn a_changed_room_owes_an_access_resync_covering_the_bus() {
        let bus = UpdateBus::starting_at(1, BusConfig::default());
        let (start, _live) = bus.subscribe(None);
        let (mut cursor, _) = Cursor::open(&start, TypeFilter::ALL, &a_room(), &Bytes::from_static(b"connected"));
        bus.publish(UpdateType::Volumes, None);
        cursor.access_changed(bus.seq());
        let resync = cursor.take_resync().expect("owed");
        assert_eq!(&resync[..], &b"id: 1\ndata: {\"kind\":\"resync\",\"seq\":1,\"reason\":\"access\"}\n\n"[..]);
    }
}
