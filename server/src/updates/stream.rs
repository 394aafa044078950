//! One stream's frames from a broadcast receiver of its own: what the response body
//! sends on connections hyper serves (HTTP/2, or a keep-alive connection whose first
//! request was not the stream). The server's own writer delivers the same frames
//! through the fan-out instead; both follow one [`Cursor`].
//!
//! The stream subscribes on its first poll (a body that is never polled costs
//! nothing), then writes `connected`, a resync if needed, the replay, live updates and
//! keep-alive pings, all as its listener's room may see them, until the bus closes,
//! `shutdown` fires, or the listener's session ends (then its last frame says so). Each
//! stream here is its own task anyway, so it reports each update it writes to the bus's
//! figures as a delivery batch of one.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::Watcher;
use super::{BusMetrics, Cursor, Pings, Published, ResyncReason, StreamRequest, UpdateBus, UpdateType, now_micros};

/// What woke a stream up.
enum Wake {
    Shutdown,
    /// What the listener may see changed (`false`: its session is gone).
    Access(bool),
    Received(Result<Arc<Published>, RecvError>),
    Tick(watch::Receiver<u64>),
}

/// Resolves on the next tick, handing the receiver back (never, once the clock stopped).
async fn next_tick(mut ticks: watch::Receiver<u64>) -> watch::Receiver<u64> {
    if ticks.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    ticks
}

/// The frames of one stream, in order.
pub fn frames(
    bus: Arc<UpdateBus>,
    request: StreamRequest,
    pings: Pings,
    shutdown: CancellationToken,
) -> impl Stream<Item = Bytes> + Send + 'static {
    async_stream::stream! {
        let mut access = request.access.clone();
        let current = access.borrow_and_update().clone();
        let Some(mut room) = current else {
            yield request.ended.clone();
            return;
        };
        let (start, mut live) = bus.subscribe(request.after);
        let (mut cursor, opening) = Cursor::open(&start, request.types, &room, pings.connected());
        let _open = Opened::new(&request, &start, bus.metrics());
        let _subscriber = start.subscriber;
        for frame in opening {
            yield frame;
        }
        // Created once: re-registering with the token on every event would contend on
        // its lock across thousands of streams.
        let mut cancelled = std::pin::pin!(shutdown.cancelled_owned());
        let mut tick = Box::pin(next_tick(pings.receiver()));
        loop {
            let wake = tokio::select! {
                biased;
                _ = &mut cancelled => Wake::Shutdown,
                changed = access.changed() => Wake::Access(changed.is_ok()),
                received = live.recv() => Wake::Received(received),
                ticks = &mut tick => Wake::Tick(ticks),
            };
            match wake {
                Wake::Shutdown | Wake::Received(Err(RecvError::Closed)) => break,
                Wake::Access(alive) => {
                    let now = if alive { access.borrow_and_update().clone() } else { None };
                    match now {
                        None => {
                            yield request.ended.clone();
                            break;
                        }
                        Some(now) if now.id() != room.id() => {
                            room = now;
                            cursor.access_changed(bus.seq());
                            if let Some(frame) = cursor.take_resync() {
                                yield frame;
                            }
                        }
                        Some(_) => {}
                    }
                }
                Wake::Received(Ok(published)) => {
                    if let Some(frame) = cursor.frame_of(&published, &room) {
                        let update = &published.update;
                        bus.metrics().written(update.kind, 1, update.ts, now_micros());
                        yield frame;
                    } else if let Some(frame) = cursor.take_resync() {
                        // The bus jumped past updates that will never come.
                        yield frame;
                    }
                }
                Wake::Received(Err(RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, "subscriber lagged; sending resync");
                    cursor.lagged(bus.seq());
                    if let Some(frame) = cursor.take_resync() {
                        bus.metrics().resync(ResyncReason::Lagged);
                        yield frame;
                    }
                }
                Wake::Tick(ticks) => {
                    tick = Box::pin(next_tick(ticks));
                    if let Some(ping) = cursor.tick() {
                        yield ping;
                    }
                }
            }
        }
    }
}

/// A stream's opening and its end however it ends (the client left, shutdown): logged,
/// and counted — a `gap` resync and the updates replayed to it, and, for as long as it is
/// open, whether it wants the server's own figures ([`BusMetrics::stats_watchers`]).
#[derive(Debug)]
pub struct Opened {
    /// Held, not read: dropping it stops counting the stream as a watcher.
    _watcher: Option<Watcher>,
}

impl Opened {
    pub fn new(request: &StreamRequest, start: &super::Start, metrics: &BusMetrics) -> Opened {
        tracing::debug!(after = ?request.after, types = ?request.types, gap = start.gap,
            replay = start.replay.len(), "event stream opened");
        if start.gap {
            metrics.resync(ResyncReason::Gap);
        }
        metrics.replayed(start.replay.iter().filter(|p| request.types.wants(p.update.kind)).count());
        Opened { _watcher: request.types.wants(UpdateType::ServerStats).then(|| Watcher::new(metrics)) }
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        tracing::debug!("event stream closed");
    }
}

#[cfg(test)]
mod tests {
    //! The stream's rules, driven through a real bus and keep-alive clock with tokio's
    //! clock paused: time moves only when every task is idle, so each step is exact.

    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::task::JoinSet;

    use super::*;
    use crate::updates::{BusConfig, Owner, Room, Rooms, TypeFilter, UpdateType, frame};

    const PING_EVERY: Duration = Duration::from_secs(10);

    struct Rig {
        bus: Arc<UpdateBus>,
        pings: Pings,
        shutdown: CancellationToken,
        rooms: Rooms,
        /// The listener's session: its room, `None` once it ended.
        session: watch::Sender<Option<Arc<Room>>>,
        _tasks: JoinSet<()>,
    }

    const ENDED: &[u8] = b"event: serialized-error\ndata: {}\n\n";

    fn rig(channel_capacity: usize) -> Rig {
        let bus = Arc::new(UpdateBus::starting_at(1, BusConfig { ring_size: 8, channel_capacity }));
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let pings = Pings::start(PING_EVERY, shutdown.clone(), &mut tasks);
        let rooms = Rooms::default();
        let (session, _) = watch::channel(Some(rooms.room(["prj-web"])));
        Rig { bus, pings, shutdown, rooms, session, _tasks: tasks }
    }

    impl Rig {
        fn open(&self, after: Option<u64>, types: TypeFilter) -> impl Stream<Item = Bytes> + use<> {
            let request =
                StreamRequest { after, types, access: self.session.subscribe(), ended: Bytes::from_static(ENDED) };
            frames(self.bus.clone(), request, self.pings.clone(), self.shutdown.clone())
        }

        fn publish(&self, project: &str, id: &str) -> u64 {
            self.bus.publish_changes(UpdateType::Volumes, vec![(id.into(), Owner::project(project))], |_| {}).update.seq
        }
    }

    /// The next frame as text, or why there is none: `"quiet"` when nothing comes within
    /// `within` (virtual time), `"end"` when the stream ended.
    async fn next(stream: &mut (impl Stream<Item = Bytes> + Unpin), within: Duration) -> String {
        match tokio::time::timeout(within, stream.next()).await {
            Ok(Some(frame)) => String::from_utf8(frame.to_vec()).expect("utf-8"),
            Ok(None) => "end".into(),
            Err(_) => "quiet".into(),
        }
    }

    fn is_update(frame: &str, seq: u64) -> bool {
        frame.starts_with(&format!("id: {seq}\ndata: {{\"kind\":\"update\""))
    }

    #[tokio::test(start_paused = true)]
    async fn pings_only_when_idle_for_a_whole_tick() {
        let rig = rig(16);
        let mut stream = Box::pin(rig.open(None, TypeFilter::ALL));
        assert!(next(&mut stream, Duration::ZERO).await.starts_with("event: connected"));
        // The first tick follows `connected`, which counts as activity: no ping yet.
        assert_eq!(next(&mut stream, PING_EVERY + Duration::from_secs(1)).await, "quiet");
        // A whole idle interval later: a ping.
        assert_eq!(next(&mut stream, PING_EVERY).await, String::from_utf8_lossy(frame::PING));
        // An update in the next interval: the tick after it sends nothing.
        tokio::time::sleep(Duration::from_secs(2)).await;
        rig.bus.publish(UpdateType::Volumes, None);
        assert!(is_update(&next(&mut stream, Duration::ZERO).await, 1));
        // The tick at 30 s follows the update: nothing; the one at 40 s: a ping.
        assert_eq!(next(&mut stream, Duration::from_secs(17)).await, "quiet");
        assert_eq!(next(&mut stream, Duration::from_secs(2)).await, String::from_utf8_lossy(frame::PING));
        rig.shutdown.cancel();
        assert_eq!(next(&mut stream, Duration::from_secs(1)).await, "end");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_reader_gets_one_resync_then_only_newer_updates() {
        let rig = rig(4);
        let mut stream = Box::pin(rig.open(None, TypeFilter::ALL));
        assert!(next(&mut stream, Duration::ZERO).await.starts_with("event: connected"));
        // Ten updates while the reader reads nothing: the channel (4) overflows.
        for _ in 0..10 {
            rig.bus.publish(UpdateType::Servers, None);
        }
        let resync = next(&mut stream, Duration::ZERO).await;
        assert!(resync.starts_with("id: 10\ndata: {\"kind\":\"resync\",\"seq\":10,\"reason\":\"lagged\""), "{resync}");
        // What the channel still held (7..=10) is covered by the resync: skipped.
        assert_eq!(next(&mut stream, Duration::from_secs(1)).await, "quiet");
        rig.bus.publish(UpdateType::Servers, None);
        assert!(is_update(&next(&mut stream, Duration::ZERO).await, 11));
    }

    #[tokio::test(start_paused = true)]
    async fn resume_replays_the_wanted_types_and_a_lost_id_resyncs_first() {
        let rig = rig(16);
        for kind in [UpdateType::Volumes, UpdateType::Servers, UpdateType::Volumes] {
            rig.bus.publish(kind, None);
        }
        let mut stream = Box::pin(rig.open(Some(1), TypeFilter::only(&[UpdateType::Volumes])));
        assert!(next(&mut stream, Duration::ZERO).await.starts_with("event: connected"));
        assert!(is_update(&next(&mut stream, Duration::ZERO).await, 3), "seq 2 is a server update: filtered");
        rig.bus.publish(UpdateType::Servers, None);
        rig.bus.publish(UpdateType::Volumes, None);
        assert!(is_update(&next(&mut stream, Duration::ZERO).await, 5));

        // An id this bus never handed out: resync (gap) at the current seq, then live.
        let mut stream = Box::pin(rig.open(Some(99), TypeFilter::ALL));
        assert!(next(&mut stream, Duration::ZERO).await.starts_with("event: connected"));
        let resync = next(&mut stream, Duration::ZERO).await;
        assert!(resync.starts_with("id: 5\ndata: {\"kind\":\"resync\",\"seq\":5,\"reason\":\"gap\""), "{resync}");
        rig.bus.publish(UpdateType::Images, None);
        assert!(is_update(&next(&mut stream, Duration::ZERO).await, 6));
    }

    #[tokio::test(start_paused = true)]
    async fn only_what_the_room_sees_and_a_changed_room_resyncs() {
        let rig = rig(16);
        let mut stream = Box::pin(rig.open(None, TypeFilter::ALL));
        assert!(next(&mut stream, Duration::ZERO).await.starts_with("event: connected"));
        rig.publish("prj-data", "v-data");
        let web = rig.publish("prj-web", "v-web");
        let frame = next(&mut stream, Duration::ZERO).await;
        assert!(is_update(&frame, web) && frame.contains("v-web"), "{frame}");
        assert_eq!(next(&mut stream, Duration::from_secs(1)).await, "quiet", "the data-team update never comes");

        // Granted data-team: one access resync, then its updates.
        rig.session.send_replace(Some(rig.rooms.room(["prj-web", "prj-data"])));
        let resync = next(&mut stream, Duration::ZERO).await;
        assert!(resync.contains(r#""reason":"access""#), "{resync}");
        let data = rig.publish("prj-data", "v-data-2");
        assert!(is_update(&next(&mut stream, Duration::ZERO).await, data));
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_session_ends_the_stream_with_its_last_frame() {
        let rig = rig(16);
        let mut stream = Box::pin(rig.open(None, TypeFilter::ALL));
        assert!(next(&mut stream, Duration::ZERO).await.starts_with("event: connected"));
        rig.session.send_replace(None);
        assert_eq!(next(&mut stream, Duration::ZERO).await, String::from_utf8_lossy(ENDED));
        assert_eq!(next(&mut stream, Duration::ZERO).await, "end");
        // A stream opened after the end says so at once.
        let mut late = Box::pin(rig.open(None, TypeFilter::ALL));
        assert_eq!(next(&mut late, Duration::ZERO).await, String::from_utf8_lossy(ENDED));
        assert_eq!(next(&mut late, Duration::ZERO).await, "end");
    }
}
