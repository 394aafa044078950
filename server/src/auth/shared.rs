//! Sign-in sessions shared by the nodes of a cluster through its Redis (`serve --redis`):
//! a user who signed in on one node is recognised on every other, and a session that
//! ends on one ends on all of them.
//!
//! A [`Session`](super::Session) itself cannot travel: it holds the channel its event
//! streams follow and a token of each project, issued by the node that holds it. Redis
//! keeps, per session, what another node needs to rebuild one ([`Record`]): the user,
//! the secret of the Keystone token they signed in with, when the session ends at the
//! latest and its idle timeout. Each node keeps its own copy of the sessions it served in
//! its memory ([`super::store::MemoryStore`]), rebuilt from the record the first time
//! their cookie reaches it ([`super::Sessions`] does that).
//!
//! - **What a Redis dump gives away: nothing a browser holds, and no usable token.** A
//!   record is stored under a SHA-256 digest of the session id ([`RecordKey`]), never
//!   under the id, so a dump cannot be replayed as cookies. Its content is sealed with
//!   AES-256-GCM under a second digest of the id, so the Keystone token inside can be
//!   read only by a node presented with the cookie. A plain digest is enough (no secret
//!   key shared by the nodes): the id is 32 random bytes, which no dictionary reaches.
//! - **Idle and lifetime across nodes.** The record's Redis TTL is the session's idle
//!   clock: every node that serves the session pushes it back to the idle timeout (at
//!   most once a second per session, never past the session's end). A session in use on
//!   one node is therefore not idle on another; when nobody uses it, Redis drops the
//!   record, and every node ends its copy.
//! - **Ending everywhere.** The node that ends a session deletes the record and publishes
//!   its key on a channel every node is subscribed to (each on a connection of its own,
//!   [`listen`]), and each ends its copy at once. The sweeper also asks Redis whether
//!   the records of its sessions still exist ([`Shared::existing`]), every second, and
//!   every sweep while the subscription is down: a record dropped by its TTL, or whose
//!   message was missed, still ends the session.
//! - **Redis losing its data** (restarted without persistence, flushed) is not a
//!   sign-out: a marker beside the records ([`Shared::lost`]), set once and never
//!   expiring, tells the two apart. When it is gone or replaced, each node writes back
//!   the records of the sessions it holds ([`Shared::restore`], only where none is),
//!   instead of ending them. A sign-out made while Redis was unreachable was not
//!   published, but its token was revoked: each node ends its copy at its next reading
//!   of the memberships (at most a minute).
//! - **Redis unreachable.** A sign-in fails (`503`) rather than making a session that
//!   only one node knows; sessions a node holds already go on serving it; a cookie whose
//!   session it does not hold cannot be checked, and is answered `503` (not `401`, which
//!   would clear the cookie).
//!
//! Nothing here logs a session id or a token (a record's key is a digest).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use futures_util::StreamExt as _;
use rand::TryRng;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Ending;

/// How long a connection to Redis (the subscription's) may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The wait between two attempts to subscribe again.
const RETRY: Duration = Duration::from_millis(250);
/// After Redis lost its data, how long a record found missing may still be one that a
/// node has yet to write back: every node looks at least every second and a quarter.
const RECOVERY: Duration = Duration::from_secs(3);

/// What Redis keeps of a session: what another node needs to rebuild it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub user_id: String,
    pub user_name: String,
    pub user_domain: String,
    /// The secret of the Keystone token the user signed in with (unscoped): another node
    /// validates it and scopes it to each of the user's projects.
    pub token: String,
    /// When the session ends at the latest, in milliseconds since the Unix epoch.
    pub ends_ms: u64,
    pub idle_ms: u64,
}

/// Where a session's record is kept in Redis: the hex SHA-256 digest of its id, under
/// the cluster's prefix. Also what is published when the session ends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordKey(String);

impl RecordKey {
    /// The key of the session whose id is `id`.
    pub fn of(prefix: &str, id: &str) -> RecordKey {
        RecordKey(format!("{prefix}session:{}", hex(&keyed(b"stalecast session record", id))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 of `purpose`, a zero byte and `id`: one digest per use, so the key a record
/// is found under says nothing of the key it is sealed with.
pub(super) fn keyed(purpose: &[u8], id: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(purpose.len() + 1 + id.len());
    input.extend_from_slice(purpose);
    input.push(0);
    input.extend_from_slice(id.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &input).as_ref());
    out
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The AES-256-GCM key that seals the record of session `id`.
fn sealing_key(id: &str) -> Result<LessSafeKey, String> {
    let key = UnboundKey::new(&AES_256_GCM, &keyed(b"stalecast session seal", id))
        .map_err(|_| String::from("no sealing key"))?;
    Ok(LessSafeKey::new(key))
}

/// `record`, sealed for session `id`: a random nonce, then the ciphertext and its tag.
/// The record's key is authenticated with it, so a record copied under another key does
/// not open.
fn seal(id: &str, key: &RecordKey, record: &Record) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::SysRng.try_fill_bytes(&mut nonce).map_err(|e| format!("no random bytes for a nonce: {e}"))?;
    let mut sealed = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    sealing_key(id)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(key.as_str()), &mut sealed)
        .map_err(|_| String::from("sealing failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The record sealed in `bytes` for session `id`; `None` if it does not open (not
/// sealed for this id and key, or damaged).
fn open(id: &str, key: &RecordKey, bytes: &[u8]) -> Option<Record> {
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut sealed = sealed.to_vec();
    let opened = sealing_key(id).ok()?.open_in_place(nonce, Aad::from(key.as_str()), &mut sealed).ok()?;
    serde_json::from_slice(opened).ok()
}

/// How an ending is written in a published message.
fn ending_name(why: Ending) -> &'static str {
    match why {
        Ending::SignedOut => "signed-out",
        Ending::Idle => "idle",
        Ending::Lifetime => "lifetime",
        Ending::Revoked => "revoked",
    }
}

/// A published message: the record's key and why the session ended.
fn parse_message(payload: &str) -> Option<(RecordKey, Ending)> {
    let (key, why) = payload.split_once(' ')?;
    let why = match why {
        "signed-out" => Ending::SignedOut,
        "idle" => Ending::Idle,
        "lifetime" => Ending::Lifetime,
        "revoked" => Ending::Revoked,
        _ => return None,
    };
    Some((RecordKey(key.to_owned()), why))
}

/// Whether `error` means Redis could not be reached (rather than that it answered no).
fn unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_timeout() || error.is_connection_dropped() || error.is_connection_refusal()
}

/// The sessions' part of the cluster's Redis.
#[derive(Debug)]
pub struct Shared {
    /// Commands (the cluster's connection: multiplexed, reconnects by itself, answers
    /// within half a second or fails).
    conn: ConnectionManager,
    /// For the subscription's connection of its own.
    client: redis::Client,
    prefix: String,
    /// Where endings are published.
    channel: String,
    /// Redis answered the last command.
    up: AtomicBool,
    /// The subscription is in place: endings published now reach this node.
    listening: AtomicBool,
    /// A record was found gone while pushing its expiry back: the sweeper looks at once
    /// whether it ended or Redis lost it.
    suspect: AtomicBool,
    /// Where the marker of the records' generation is kept ([`Shared::lost`]).
    marker: String,
    /// The marker as this node last saw it.
    known: std::sync::Mutex<Option<String>>,
    /// Redis lost its data, and this node has yet to write its records back.
    restore_pending: AtomicBool,
    /// Until when a missing record may be one not written back yet.
    recovering_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Shared {
    /// Sessions on the Redis of `client` (commands on `conn`), under `prefix`.
    pub fn new(client: redis::Client, conn: ConnectionManager, prefix: &str) -> Arc<Shared> {
        Arc::new(Shared {
            conn,
            client,
            prefix: prefix.to_owned(),
            channel: format!("{prefix}sessions:ended"),
            up: AtomicBool::new(true),
            listening: AtomicBool::new(false),
            suspect: AtomicBool::new(false),
            marker: format!("{prefix}sessions:generation"),
            known: std::sync::Mutex::new(None),
            restore_pending: AtomicBool::new(false),
            recovering_until: std::sync::Mutex::new(None),
        })
    }

    /// The cluster's count of failed sign-ins, on the same Redis and prefix.
    pub fn limiter(&self, limits: super::Limits) -> super::shared_limiter::SharedLimiter {
        super::shared_limiter::SharedLimiter::new(self.conn.clone(), &self.prefix, limits)
    }

    /// Where the record of session `id` is kept.
    pub fn key(&self, id: &str) -> RecordKey {
        RecordKey::of(&self.prefix, id)
    }

    /// Whether Redis answered the last command.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether endings published now reach this node.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Notes that a record was found gone: the sweeper looks at every record next.
    pub fn suspect(&self) {
        self.suspect.store(true, Ordering::Relaxed);
    }

    /// Whether a record was found gone since the last call.
    pub fn take_suspect(&self) -> bool {
        self.suspect.swap(false, Ordering::Relaxed)
    }

    /// Whether this node has records to write back (Redis lost its data since it last
    /// wrote them); asking clears it.
    pub fn take_restore(&self) -> bool {
        self.restore_pending.swap(false, Ordering::Relaxed)
    }

    /// Whether Redis lost its data a moment ago: a record missing now may be one that a
    /// node has yet to write back.
    pub fn recovering(&self) -> bool {
        let until = *self.recovering_until.lock().unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|until| std::time::Instant::now() < until)
    }

    /// Whether Redis lost its data since this node last looked: the marker of the
    /// records' generation is gone (then set anew) or another than the one seen before.
    /// The first look sees nothing lost. A loss seen leaves [`Shared::take_restore`] and
    /// [`Shared::recovering`] saying so.
    pub async fn lost(&self) -> redis::RedisResult<bool> {
        let candidate = format!("{:016x}", rand::random::<u64>());
        let mut conn = self.conn.clone();
        let read: redis::RedisResult<(String,)> = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&self.marker)
            .arg(&candidate)
            .arg("NX")
            .ignore()
            .get(&self.marker)
            .query_async(&mut conn)
            .await;
        self.mark(&read);
        let (current,) = read?;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let lost = known.as_ref().is_some_and(|k| *k != current);
        *known = Some(current);
        if lost {
            self.restore_pending.store(true, Ordering::Relaxed);
            *self.recovering_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now() + RECOVERY);
        }
        Ok(lost)
    }

    /// Writes back the records of `sessions` (id, record, TTL) where Redis has none; on a
    /// failure the next look tries again.
    pub async fn restore(&self, sessions: &[(String, Record, Duration)]) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for (id, record, ttl) in sessions {
            let key = self.key(id);
            let sealed = seal(id, &key, record)?;
            pipe.cmd("SET")
                .arg(key.as_str())
                .arg(sealed)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .arg("NX")
                .ignore();
        }
        let mut conn = self.conn.clone();
        let restored: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        self.mark(&restored);
        if restored.is_err() {
            self.restore_pending.store(true, Ordering::Relaxed);
            self.suspect();
        }
        restored.map_err(|e| e.to_string())
    }

    /// Notes how a command went, logging each change of state once.
    fn mark<T>(&self, result: &redis::RedisResult<T>) {
        let up = match result {
            Ok(_) => true,
            Err(error) if unreachable(error) => false,
            Err(error) => {
                tracing::warn!(%error, "Redis refused a session command");
                return;
            }
        };
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("Redis answers again: sign-in sessions are shared again");
            } else {
                tracing::warn!("Redis unreachable: sign-in answers 503; sessions this node holds go on");
            }
        }
    }

    /// Keeps `record` for session `id`, for `ttl` (the idle timeout, or less when the
    /// session ends sooner).
    pub async fn save(&self, id: &str, record: &Record, ttl: Duration) -> Result<(), String> {
        let key = self.key(id);
        let sealed = seal(id, &key, record)?;
        let mut conn = self.conn.clone();
        let saved: redis::RedisResult<()> = redis::cmd("SET")
            .arg(key.as_str())
            .arg(sealed)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await;
        self.mark(&saved);
        saved.map_err(|e| format!("keeping the session in Redis: {e}"))
    }

    /// The record of session `id`: `Ok(None)` when Redis has none (or one that does not
    /// open for this id).
    pub async fn load(&self, id: &str) -> redis::RedisResult<Option<Record>> {
        let key = self.key(id);
        let mut conn = self.conn.clone();
        let found: redis::RedisResult<Option<Vec<u8>>> =
            redis::cmd("GET").arg(key.as_str()).query_async(&mut conn).await;
        self.mark(&found);
        Ok(found?.and_then(|bytes| open(id, &key, &bytes)))
    }

    /// Pushes the record's expiry back to `ttl` from now; answers whether the record is
    /// still there.
    pub async fn touch(&self, key: &RecordKey, ttl: Duration) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let kept: redis::RedisResult<i64> =
            redis::cmd("PEXPIRE").arg(key.as_str()).arg(ttl.as_millis().max(1) as u64).query_async(&mut conn).await;
        self.mark(&kept);
        Ok(kept? == 1)
    }

    /// Ends the session of `key` on every node: drops its record and tells the others
    /// why, in one transaction.
    pub async fn end(&self, key: &RecordKey, why: Ending) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let ended: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .del(key.as_str())
            .ignore()
            .publish(&self.channel, format!("{} {}", key.as_str(), ending_name(why)))
            .ignore()
            .query_async(&mut conn)
            .await;
        self.mark(&ended);
        ended
    }

    /// Whether each of `keys` still has its record, asked in one round trip.
    pub async fn existing(&self, keys: &[RecordKey]) -> redis::RedisResult<Vec<bool>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.exists(key.as_str());
        }
        let mut conn = self.conn.clone();
        let found: redis::RedisResult<Vec<bool>> = pipe.query_async(&mut conn).await;
        self.mark(&found);
        found
    }
}

/// Follows the endings other nodes publish until `shutdown`, sending each to `ended`;
/// subscribes again whenever the connection is lost. The subscription has a connection
/// of its own: it waits for messages indefinitely, which the command connection's
/// response timeout (half a second) would cut, and it cannot send other commands.
/// `resubscribed` fires each time the subscription is in place again, so the sweeper
/// can look for endings it may have missed meanwhile.
pub async fn listen(
    shared: Arc<Shared>,
    ended: mpsc::UnboundedSender<(RecordKey, Ending)>,
    resubscribed: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut lost_logged = false;
    loop {
        // Connecting and subscribing are bounded; waiting for messages is not.
        let subscribed = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut pubsub = shared.client.get_async_pubsub().await?;
            pubsub.subscribe(&shared.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        });
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            subscribed = subscribed => match subscribed {
                Ok(Ok(pubsub)) => Ok(pubsub),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
            },
        };
        match pubsub {
            Ok(pubsub) => {
                shared.listening.store(true, Ordering::Relaxed);
                resubscribed.notify_one();
                if lost_logged {
                    tracing::info!("following session endings again");
                    lost_logged = false;
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        message = messages.next() => message,
                    };
                    let Some(message) = message else { break };
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    match parse_message(&payload) {
                        Some(ending) => {
                            if ended.send(ending).is_err() {
                                return;
                            }
                        }
                        None => tracing::warn!("an unreadable session ending was published; ignored"),
                    }
                }
                shared.listening.store(false, Ordering::Relaxed);
                if !lost_logged {
                    tracing::warn!(
                        "lost the subscription to session endings; checking every session's record each sweep until it is back"
                    );
                    lost_logged = true;
                }
            }
            Err(error) => {
                shared.listening.store(false, Ordering::Relaxed);
                if !lost_logged {
                    tracing::warn!(%error, "cannot follow session endings; checking every session's record each sweep until it is back");
                    lost_logged = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            user_id: "usr-alice".into(),
            user_name: "alice".into(),
            user_domain: "Default".into(),
            token: "gAAAA-secret-token".into(),
            ends_ms: 1_900_000_000_000,
            idle_ms: 1_800_000,
        }
    }

    #[test]
    fn a_record_is_kept_under_a_digest_and_sealed_so_neither_id_nor_token_shows() {
        let id = "A".repeat(43);
        let key = RecordKey::of("stalecast:", &id);
        assert!(key.as_str().starts_with("stalecast:session:") && !key.as_str().contains(&id), "{key:?}");
        assert_eq!(key.as_str().len(), "stalecast:session:".len() + 64);
        assert_ne!(key, RecordKey::of("stalecast:", &"B".repeat(43)));
        let sealed = seal(&id, &key, &record()).expect("sealed");
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains("secret-token") && !text.contains("alice") && !text.contains(&id), "{text}");
        assert_eq!(open(&id, &key, &sealed), Some(record()));
        // Another id, another key, a damaged record: nothing opens.
        assert_eq!(open(&"B".repeat(43), &key, &sealed), None);
        assert_eq!(open(&id, &RecordKey::of("stalecast:", &"B".repeat(43)), &sealed), None);
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(open(&id, &key, &damaged), None);
        assert_eq!(open(&id, &key, &sealed[..5]), None);
        // Two seals of one record differ (a fresh nonce each).
        assert_ne!(seal(&id, &key, &record()).expect("sealed"), sealed);
    }

    #[test]
    fn endings_are_published_as_the_key_and_a_word() {
        let key = RecordKey::of("stalecast:", &"A".repeat(43));
        for why in [Ending::SignedOut, Ending::Idle, Ending::Lifetime, Ending::Revoked] {
            let message = format!("{} {}", key.as_str(), ending_name(why));
            assert_eq!(parse_message(&message), Some((key.clone(), why)));
        }
        assert_eq!(parse_message("nonsense"), None);
        assert_eq!(parse_message("key gone-fishing"), None);
    }
}
