//! The background poller: one task per update type, one upstream request per type per
//! interval however many clients are connected.
//!
//! Each step is a [`Store::refresh`]: fetch, diff against the cache, store, publish.
//! When the upstream fails the cache keeps its last value, the task retries a few times
//! at the interval, then backs off exponentially with jitter (never a tight loop), and
//! the log says so once when the
//! type starts failing and once when it recovers — not on every tick.
//!
//! In a cluster only the node holding the poller's lease polls: [`spawn_gated`] waits
//! while its gate is closed, and stops between two polls once it closes.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::model::{Flavor, Image, Network, Project, Server, Subnet, Volume, VolumeSnapshot};
use super::store::{Fetch, Store};

/// The longest a failing type waits between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts one polling task per update type; they stop when `shutdown` fires.
pub fn spawn(store: Arc<Store>, interval: Duration, shutdown: CancellationToken, tasks: &mut JoinSet<()>) {
    spawn_gated(store, interval, watch::channel(true).1, shutdown, tasks);
}

/// [`spawn`], polling only while `gate` is open.
pub fn spawn_gated(
    store: Arc<Store>,
    interval: Duration,
    gate: watch::Receiver<bool>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    // The leader gauge follows the gate: always 1 on a single node, which polls for itself;
    // in a cluster, 1 on the node holding the poller's lease.
    let follower = store.clone();
    let mut leading = gate.clone();
    follower.client().metrics().set_leader(*leading.borrow_and_update());
    let stop = shutdown.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = leading.changed() => if changed.is_err() { return },
            }
            follower.client().metrics().set_leader(*leading.borrow_and_update());
        }
    });
    tasks.spawn(poll::<Project>(store.clone(), interval, gate.clone(), shutdown.clone()));
    tasks.spawn(poll::<Server>(store.clone(), interval, gate.clone(), shutdown.clone()));
    tasks.spawn(poll::<Volume>(store.clone(), interval, gate.clone(), shutdown.clone()));
    tasks.spawn(poll::<Image>(store.clone(), interval, gate.clone(), shutdown.clone()));
    tasks.spawn(poll::<Network>(store.clone(), interval, gate.clone(), shutdown.clone()));
    tasks.spawn(poll::<VolumeSnapshot>(store.clone(), interval, gate.clone(), shutdown.clone()));
    tasks.spawn(poll::<Subnet>(store.clone(), interval, gate.clone(), shutdown.clone()));
    tasks.spawn(poll::<Flavor>(store, interval, gate, shutdown));
}

async fn poll<R: Fetch>(
    store: Arc<Store>,
    interval: Duration,
    mut gate: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let kind = R::TYPE;
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            open = gate.wait_for(|open| *open) => if open.is_err() { return },
        }
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = store.refresh::<R>() => outcome,
        };
        store.client().metrics().polled(kind, outcome.is_ok());
        let wait = match outcome {
            Ok(_) => {
                if failures > 0 {
                    tracing::info!(%kind, after_failures = failures, "upstream answers again");
                }
                failures = 0;
                interval
            }
            Err(error) => {
                if failures == 0 {
                    tracing::warn!(%kind, %error, "upstream poll failed; serving cached values");
                }
                failures = failures.saturating_add(1);
                backoff(interval, failures)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(started + wait) => {}
        }
    }
}

/// Failures retried at the normal interval before the wait starts to grow: a flaky
/// upstream (one request in two failing) then keeps the data fresh enough for readiness,
/// and only one that keeps failing is backed off from.
pub const RETRIES_BEFORE_BACKOFF: u32 = 3;

/// The wait after `failures` consecutive failures: the interval for the first
/// [`RETRIES_BEFORE_BACKOFF`], then doubled per failure up to [`MAX_BACKOFF`]; ±20 %
/// jitter so that many types (or nodes) do not retry in step.
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(RETRIES_BEFORE_BACKOFF).min(16);
    let base = interval.saturating_mul(1u32 << exponent).min(MAX_BACKOFF.max(interval));
    let jitter = rand::rng().random_range(0.8..1.2);
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_bounded_and_jittered() {
        let interval = Duration::from_secs(2);
        for failures in 1..=RETRIES_BEFORE_BACKOFF {
            let wait = backoff(interval, failures);
            assert!(wait >= Duration::from_millis(1600) && wait <= Duration::from_millis(2400), "{failures}: {wait:?}");
        }
        let fifth = backoff(interval, 5);
        assert!(fifth >= Duration::from_millis(6400) && fifth <= Duration::from_millis(9600));
        for failures in [10, 100, u32::MAX] {
            assert!(backoff(interval, failures) <= MAX_BACKOFF.mul_f64(1.2));
        }
    }
}
