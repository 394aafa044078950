//! The poller's lease: exactly one node polls the upstream.
//!
//! Every node tries every third of the lease to take it (set-if-absent with the
//! lease's expiry and a new fencing token, [`scripts::ACQUIRE`]); the holder extends it
//! at the same pace, only while it still holds its own token ([`scripts::EXTEND`]). The
//! holder polls; when it dies the key expires within one lease and another node takes
//! it within a third more, so polling resumes within two lease periods. A holder that
//! cannot renew (Redis unreachable, or its token gone) stops polling at once, and the
//! publish script refuses any change it still sends with the old token
//! ([`scripts::PUBLISH`]). A node that shuts down gives the lease up.
//!
//! The same tick carries readiness across nodes: the holder writes when the upstream
//! last confirmed each collection, and the others read it into their store, so that a
//! node that does not poll is ready while the one that does is.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Shared, lock, scripts};
use crate::updates::UpdateType;
use crate::upstream::store::Store;

/// Runs until `shutdown`: holds or seeks the lease, and opens `gate` (the poller's)
/// while this node holds it.
pub(super) async fn run(
    shared: Arc<Shared>,
    store: Arc<Store>,
    gate: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let lease = shared.config.lease;
    let lease_ms = lease.as_millis().max(1) as u64;
    let mut conn = shared.conn.clone();
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let held = lock(&shared.token).clone();
        let outcome: redis::RedisResult<Option<String>> = match &held {
            Some(token) => {
                let extended: redis::RedisResult<i64> =
                    scripts::EXTEND.key(&shared.keys.lease).arg(token).arg(lease_ms).invoke_async(&mut conn).await;
                extended.map(|kept| (kept == 1).then(|| token.clone()))
            }
            None => {
                scripts::ACQUIRE
                    .key(&shared.keys.lease)
                    .key(&shared.keys.fence)
                    .arg(&shared.config.node)
                    .arg(lease_ms)
                    .invoke_async(&mut conn)
                    .await
            }
        };
        let now_held = match outcome {
            Ok(token) => {
                shared.mark(true, None);
                token
            }
            Err(error) => {
                shared.mark(false, Some(&error));
                None
            }
        };
        match (&held, &now_held) {
            (None, Some(token)) => tracing::info!(token = %token, "this node holds the poller's lease: polling"),
            (Some(_), None) => tracing::warn!("this node lost the poller's lease: not polling"),
            _ => {}
        }
        *lock(&shared.token) = now_held.clone();
        shared.stats.leader.store(now_held.is_some(), Ordering::Relaxed);
        gate.send_replace(now_held.is_some());
        if shared.stats.redis_up.load(Ordering::Relaxed) {
            let shared_freshness = if now_held.is_some() {
                write_confirmed(&shared, &store, &mut conn).await
            } else {
                read_confirmed(&shared, &store, &mut conn).await
            };
            if let Err(error) = shared_freshness {
                shared.mark(false, Some(&error));
            }
        }
    }
    gate.send_replace(false);
    let held = lock(&shared.token).take();
    if let Some(token) = held {
        let released: redis::RedisResult<i64> =
            scripts::RELEASE.key(&shared.keys.lease).arg(&token).invoke_async(&mut conn).await;
        if released.is_ok() {
            tracing::info!("gave the poller's lease up");
        }
    }
}

fn micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The holder: when the upstream last confirmed each collection here.
async fn write_confirmed(
    shared: &Shared,
    store: &Store,
    conn: &mut redis::aio::ConnectionManager,
) -> redis::RedisResult<()> {
    let confirmed: Vec<(&str, u64)> = store
        .health()
        .into_iter()
        .filter_map(|(kind, health)| health.last_success.map(|at| (kind.as_str(), micros(at))))
        .collect();
    if confirmed.is_empty() {
        return Ok(());
    }
    conn.hset_multiple(&shared.keys.confirmed, &confirmed).await
}

/// The others: the holder's confirmations, into this node's store.
async fn read_confirmed(
    shared: &Shared,
    store: &Store,
    conn: &mut redis::aio::ConnectionManager,
) -> redis::RedisResult<()> {
    let confirmed: HashMap<String, u64> = conn.hgetall(&shared.keys.confirmed).await?;
    for kind in UpdateType::ALL {
        if let Some(at) = confirmed.get(kind.as_str()) {
            store.confirmed(kind, UNIX_EPOCH + Duration::from_micros(*at));
        }
    }
    Ok(())
}
