//! The keep-alive clock shared by every stream: one task ticks every ping interval and
//! each idle stream sends a `ping` on the tick. One timer for all streams, rather than
//! one per stream reset on every event.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::frame;

/// The clock, and the `connected` event that tells clients how long to wait for it.
#[derive(Clone, Debug)]
pub struct Pings {
    ticks: watch::Receiver<u64>,
    connected: Bytes,
}

impl Pings {
    /// Starts the clock; it stops when `shutdown` fires.
    pub fn start(interval: Duration, shutdown: CancellationToken, tasks: &mut JoinSet<()>) -> Pings {
        let (tx, ticks) = watch::channel(0u64);
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticker.tick() => tx.send_modify(|n| *n = n.wrapping_add(1)),
                }
            }
        });
        Pings { ticks, connected: frame::connected(Self::reconnect_after(interval)) }
    }

    /// What the `connected` event tells clients: reconnect when nothing (not even a
    /// ping) arrived for this long. Three pings' worth, so one late ping is harmless.
    pub fn reconnect_after(interval: Duration) -> Duration {
        interval * 3
    }

    /// A receiver of the ticks: `changed()` resolves on each one, and fails once the
    /// clock stopped (the server is shutting down).
    pub fn receiver(&self) -> watch::Receiver<u64> {
        self.ticks.clone()
    }

    /// The `connected` event, shared by every stream.
    pub fn connected(&self) -> &Bytes {
        &self.connected
    }
}
