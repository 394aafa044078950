//! The reader: one blocking `XREAD` loop per node, on a connection of its own, that
//! applies each entry of the log to the store and hands it to the local bus, in seq
//! order.
//!
//! The blocking read has its own connection because redis-rs times responses out (half
//! a second by default, on blocking commands too) and because a shared connection would
//! queue every other command behind it. Its timeout is the block's plus a margin, so a
//! Redis that stops answering is noticed too. When no entry came for a second it checks
//! the epoch ([`scripts::EPOCH`]): a log lost while nobody publishes is noticed within
//! about a second.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::updates::{Update, UpdateBus, UpdateType, now_micros};
use crate::upstream::store::Store;

/// How long one `XREAD` blocks.
const BLOCK: Duration = Duration::from_secs(1);
/// Entries read at most per `XREAD`.
const BATCH: usize = 1024;
/// The wait between two attempts to reach a Redis that does not answer.
const RETRY: Duration = Duration::from_millis(250);

/// The reader's position: the epoch it follows and the last seq it applied.
pub struct Reader {
    shared: Arc<Shared>,
    bus: Arc<UpdateBus>,
    store: Arc<Store>,
    epoch: String,
    last: u64,
    /// When the epoch was last checked.
    checked: tokio::time::Instant,
}

/// One entry of the log, read.
struct Entry {
    epoch: String,
    update: Update,
    records: String,
}

fn parse(entry: &StreamId) -> Option<Entry> {
    let seq: u64 = entry.id.split('-').next()?.parse().ok()?;
    let kind: String = entry.get("k")?;
    let kind = UpdateType::ALL.into_iter().find(|t| t.as_str() == kind)?;
    let ids: String = entry.get("i").unwrap_or_default();
    let ids: Option<Vec<String>> = if ids.is_empty() { None } else { serde_json::from_str(&ids).ok()? };
    let ts: u64 = entry.get("t")?;
    Some(Entry { epoch: entry.get("e")?, update: Update { seq, kind, ids, ts }, records: entry.get("r")? })
}

impl Reader {
    pub(super) fn new(shared: Arc<Shared>, bus: Arc<UpdateBus>, store: Arc<Store>) -> Reader {
        Reader { shared, bus, store, epoch: String::new(), last: 0, checked: tokio::time::Instant::now() }
    }

    /// A connection of the reader's own, whose responses may take as long as a block.
    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(BLOCK + Duration::from_secs(2)));
        self.shared.client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// At start: the current epoch, and the ring filled with the stream's latest entries
    /// (at most the ring's size), so that ids handed out by other nodes resume here.
    pub(super) async fn fill(&mut self) -> redis::RedisResult<()> {
        let mut conn = self.connect().await?;
        // Nothing seen from the log yet (the local bus's seq is only its clock seed).
        let (epoch, seq) = self.shared.current_epoch(&mut conn, 0).await?;
        let ring = self.shared.config.ring_size;
        let latest: StreamRangeReply = conn.xrevrange_count(&self.shared.keys.stream, "+", "-", ring).await?;
        let entries: Vec<Entry> =
            latest.ids.iter().rev().filter_map(parse).filter(|e| e.epoch == epoch && e.update.seq <= seq).collect();
        self.epoch = epoch;
        match entries.first() {
            Some(first) => self.bus.skip_to(first.update.seq - 1),
            None => self.bus.skip_to(seq),
        }
        self.last = self.bus.seq();
        for entry in entries {
            self.apply(entry);
        }
        // Whatever came between the two reads comes with the first `XREAD`.
        self.last = self.last.max(self.bus.seq());
        self.shared.applied.send_replace(self.last);
        tracing::debug!(epoch = %self.epoch, seq = self.last, "update log read");
        Ok(())
    }

    /// Reads until `shutdown`, reconnecting whenever Redis is lost.
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let mut first = true;
        loop {
            let conn = tokio::select! {
                _ = shutdown.cancelled() => return,
                conn = self.connect() => conn,
            };
            let error = match conn {
                Ok(mut conn) => {
                    if !first {
                        self.shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    first = false;
                    match self.follow(&mut conn, &shutdown).await {
                        Ok(()) => return,
                        Err(error) => error,
                    }
                }
                Err(error) => error,
            };
            self.shared.mark(false, Some(&error));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// Follows the log on `conn` until an error (answered) or `shutdown` (`Ok`).
    async fn follow(
        &mut self,
        conn: &mut MultiplexedConnection,
        shutdown: &CancellationToken,
    ) -> redis::RedisResult<()> {
        // After a break, Redis may have lost the log: check before reading on.
        self.check_epoch(conn).await?;
        let options = StreamReadOptions::default().block(BLOCK.as_millis() as usize).count(BATCH);
        loop {
            let after = [format!("{}-0", self.last)];
            let streams = [self.shared.keys.stream.as_str()];
            let read: Option<StreamReadReply> = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                read = conn.xread_options(&streams, &after, &options) => read?,
            };
            self.shared.mark(true, None);
            let entries: Vec<Entry> =
                read.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids).filter_map(|e| parse(&e)).collect();
            let idle = entries.is_empty();
            for entry in entries {
                if entry.epoch != self.epoch {
                    // Another node found the log lost and started a new epoch.
                    self.new_epoch(entry.epoch.clone(), entry.update.seq - 1);
                }
                self.apply(entry);
            }
            self.shared.applied.send_replace(self.last);
            if idle || self.checked.elapsed() >= BLOCK {
                self.check_epoch(conn).await?;
            }
        }
    }

    /// Asks Redis for the epoch (starting a new one when the log was lost); a different
    /// one than followed resyncs every stream.
    async fn check_epoch(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        self.checked = tokio::time::Instant::now();
        let (epoch, seq) = self.shared.current_epoch(conn, self.last).await?;
        if epoch != self.epoch {
            self.new_epoch(epoch, seq);
            self.shared.applied.send_replace(self.last);
        }
        Ok(())
    }

    /// The log this node followed is gone: every stream resyncs, and reading goes on
    /// in `epoch`, after `seq`.
    fn new_epoch(&mut self, epoch: String, seq: u64) {
        tracing::warn!(from = %self.epoch, to = %epoch, seq, "the update log was lost (new epoch); every stream resyncs");
        self.shared.stats.epoch_changes.fetch_add(1, Ordering::Relaxed);
        *super::lock(&self.shared.epoch) = epoch.clone();
        self.epoch = epoch;
        self.bus.skip_to(seq);
        self.last = self.bus.seq();
    }

    /// Applies one entry to the store and the bus. An entry after a hole (trimmed while
    /// this node was away) makes the bus jump first: a resync, never a silent gap.
    fn apply(&mut self, entry: Entry) {
        let seq = entry.update.seq;
        if seq <= self.last {
            return;
        }
        if seq > self.last + 1 {
            tracing::warn!(after = self.last, next = seq, "updates missing from the log; every stream resyncs");
            self.shared.stats.gaps.fetch_add(1, Ordering::Relaxed);
        }
        let ts = entry.update.ts;
        if let Err(error) = self.store.apply(entry.update.clone(), &entry.records) {
            // Not this version's records: announce the update all the same, as a change of
            // the whole collection (its ids' owners are in the records: naming the ids to
            // everyone could tell a user of another project's resources). Every client
            // refetches; this node's copy catches up at the next change.
            tracing::warn!(seq, %error, "an update's records do not decode; announced without them");
            self.bus.ingest(entry.update, Vec::new(), |_| {});
        }
        self.last = seq;
        self.shared.stats.applied.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.bus_lag_micros.store(now_micros().saturating_sub(ts), Ordering::Relaxed);
    }
}
