//! Several nodes on one Redis (`serve --redis URL`): one seq, one log of updates, one
//! poller, whichever node a browser reaches.
//!
//! - **The log.** Every update is allocated its seq and appended to a Redis Stream in
//!   one server-side script ([`scripts::PUBLISH`]), with the changed records themselves.
//!   Each node reads the stream with one blocking `XREAD` loop on a connection of its
//!   own ([`reader`]), applies each entry to its store, then hands it to its local bus
//!   (the replay ring and the fan-out, as without Redis). No Redis work per client: a
//!   resume id is answered from the local ring, which a node fills from the stream
//!   (`XREVRANGE`) before it serves, and keeps as long as the stream (`MAXLEN ≈
//!   --ring-size`), so an id delivered by any node resumes on any other.
//! - **Read your notification.** A node applies an entry's records to its own store
//!   before its streams hear of it, and the node that sent a change answers only once it
//!   applied it ([`Publisher`]): a refetch on the node that delivered a notification sees
//!   the change. Followers never poll: the records travel in the entry (only the changed
//!   ones), so the upstream is asked once per type per interval across the cluster.
//! - **The epoch.** A random epoch beside the seq names the log. When Redis loses it
//!   (flushed, restarted without persistence, failed over to a replica that is behind),
//!   the next node to look starts a new one above every seq it saw ([`scripts::EPOCH`]);
//!   every node notices within a second (a changed epoch in an entry, or its idle check),
//!   and its streams get a `gap` resync.
//! - **One poller.** A lease with a fencing token ([`lease`]); the publish script refuses
//!   a poll's change whose token is not the lease's, so a paused former leader cannot
//!   publish.
//! - **Faults.** Redis unreachable: the node is not ready, mutations answer 503 before
//!   they write upstream ([`Publisher::ready`]), the poller stops, open streams stay open
//!   (pings are local). On its return the reader resumes after the last seq it applied;
//!   entries trimmed meanwhile, or a new epoch, mean a resync, never a silent gap. Each
//!   change of state is logged once.
//!
//! - **The roster.** Each node announces itself and its figures under a key of its own
//!   that expires, and reads every other's with the lease's holder ([`nodes`]): the
//!   Server page lists every live node, the poller marked.
//!
//! Figures for monitoring are kept in [`ClusterStats`], read-only atomics.

pub mod lease;
pub mod nodes;
pub mod reader;
pub mod scripts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::updates::{UpdateBus, now_micros};
use crate::upstream::relay::{Origin, Outgoing, Relay, RelayError, Sending};
use crate::upstream::store::Store;
use scripts::Keys;

/// A `--redis` URL: `redis://` or `rediss://` (TLS). Shown only with its password
/// replaced by `***`.
#[derive(Clone)]
pub struct RedisUrl {
    url: String,
    info: redis::ConnectionInfo,
}

impl RedisUrl {
    /// Checks `url`; the error names the flag and never repeats a password.
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let shown = redact(url);
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(format!(
                "--redis {shown}: a Redis URL is redis://[user:password@]host[:port][/db] or rediss://… (TLS)"
            ));
        }
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| format!("--redis {shown}: not a Redis URL ({:?})", e.kind()))?;
        Ok(RedisUrl { url: url.to_owned(), info })
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// `url` with the password of its user information replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_owned() };
    let user = rest[..at].split(':').next().unwrap_or_default();
    let password = if rest[..at].contains(':') { ":***" } else { "" };
    format!("{}{user}{password}{}", &url[..scheme_end + 3], &rest[at..])
}

/// How a node joins the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub url: RedisUrl,
    /// The poller's lease: renewed every third of it; another node polls within two of
    /// them after the holder dies.
    pub lease: Duration,
    /// Entries the stream keeps (approximately, at least): the replay ring's size.
    pub ring_size: usize,
    /// This node's name in the lease and the roster ([`nodes::node_name`]).
    pub node: String,
    /// Where the keys live (`stalecast:`).
    pub prefix: String,
}

/// What monitoring may read about this node's place in the cluster. Written by the
/// cluster's tasks, read by anyone; never reset.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Redis answers.
    pub redis_up: AtomicBool,
    /// This node holds the poller's lease.
    pub leader: AtomicBool,
    /// Times the reader connected again after losing Redis.
    pub reconnects: AtomicU64,
    /// Times the log's epoch changed under this node (every stream resynced).
    pub epoch_changes: AtomicU64,
    /// Times entries were missing from the log (every stream resynced).
    pub gaps: AtomicU64,
    /// Entries applied from the log.
    pub applied: AtomicU64,
    /// Microseconds from the last applied entry's publication to its application here.
    pub bus_lag_micros: AtomicU64,
    /// A poll's change refused because this node no longer held the lease.
    pub fenced: AtomicU64,
}

/// What the cluster's tasks share.
#[derive(Debug)]
struct Shared {
    keys: Keys,
    /// Commands other than the blocking read: reconnects by itself.
    conn: ConnectionManager,
    client: redis::Client,
    config: ClusterConfig,
    /// The epoch publishes are made in (the one this node last saw).
    epoch: Mutex<String>,
    /// The highest seq this node applied or skipped.
    applied: watch::Sender<u64>,
    /// The fencing token while this node holds the lease.
    token: Mutex<Option<String>>,
    stats: Arc<ClusterStats>,
}

/// Whether `error` means Redis could not be reached (rather than that it answered no).
fn unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_timeout() || error.is_connection_dropped() || error.is_connection_refusal()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Notes whether Redis answered, logging each change once. An error Redis answered
    /// with (a script's refusal, a wrong type) is not unreachability: logged as it is.
    fn mark(&self, up: bool, error: Option<&redis::RedisError>) {
        if let Some(error) = error.filter(|e| !unreachable(e)) {
            tracing::warn!(%error, "Redis refused a command");
            return;
        }
        let was = self.stats.redis_up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!(redis = %self.config.url, "Redis answers: publishing again");
            } else {
                let error = error.map(|e| e.to_string()).unwrap_or_default();
                tracing::warn!(redis = %self.config.url, %error, "Redis unreachable: mutations answer 503 and the poller stops until it is back");
            }
        }
    }

    fn epoch(&self) -> String {
        lock(&self.epoch).clone()
    }

    /// The current epoch and seq, starting a new epoch if the log was lost
    /// ([`scripts::EPOCH`]), on `conn`.
    async fn current_epoch(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
        seen: u64,
    ) -> redis::RedisResult<(String, u64)> {
        let candidate = format!("{:016x}", rand::random::<u64>());
        let (epoch, seq): (String, u64) = scripts::EPOCH
            .key(&self.keys.epoch)
            .key(&self.keys.seq)
            .arg(candidate)
            .arg(now_micros())
            .arg(seen)
            .invoke_async(conn)
            .await?;
        *lock(&self.epoch) = epoch.clone();
        Ok((epoch, seq))
    }
}

/// A node's membership: publishes for the store ([`Publisher`], its relay), the
/// reader and the lease tasks, and the gate the poller waits at.
#[derive(Debug)]
pub struct Cluster {
    pub stats: Arc<ClusterStats>,
    /// True while this node may poll: it holds the lease and Redis answers.
    pub polling: watch::Receiver<bool>,
    /// Every live node and which one polls, as this node last read them.
    pub roster: Arc<nodes::Roster>,
    /// The cluster's Redis, for connections of one's own (the sign-in sessions'
    /// subscription).
    pub client: redis::Client,
    /// The shared command connection (the sign-in sessions' records use it too).
    pub conn: ConnectionManager,
}

/// How long a command on the shared connection may take before it counts as failed (and
/// the node as cut off from Redis: not ready, mutations 503). On loopback a publish takes
/// ≈ 0.1 ms; but with three nodes, Redis and 18,000 clients on two cores
/// (`loadtest bench`'s `cluster-3n-18000c-10ps`), 500 ms fired while Redis was well: the
/// nodes' own tasks waited that long for a CPU, and 26 of 300 mutations answered 503.
/// Two seconds still notices a hung Redis well within the poller's lease (3 s, renewed
/// every second); a stopped or unreachable one fails at once (connection refused or reset).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to Redis, fills the local ring from the stream, and starts the reader and
/// the lease tasks (they stop when `shutdown` fires). The store sends its changes
/// through the cluster from then on. Fails when Redis cannot be reached at start.
pub async fn start(
    config: ClusterConfig,
    bus: Arc<UpdateBus>,
    store: Arc<Store>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Cluster> {
    let client = redis::Client::open(config.url.info.clone())
        .map_err(|e| anyhow::anyhow!("--redis {}: {:?}", config.url, e.kind()))?;
    let manager = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    let conn = client
        .get_connection_manager_with_config(manager)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Redis at {} (--redis): {e}", config.url))?;
    let stats = Arc::new(ClusterStats::default());
    stats.redis_up.store(true, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        keys: Keys::new(&config.prefix),
        conn,
        client,
        config,
        epoch: Mutex::new(String::new()),
        applied: watch::Sender::new(0),
        token: Mutex::new(None),
        stats: stats.clone(),
    });
    let mut reader = reader::Reader::new(shared.clone(), bus.clone(), store.clone());
    reader
        .fill()
        .await
        .map_err(|e| anyhow::anyhow!("reading the update log from Redis ({}): {e}", shared.config.url))?;
    store
        .set_relay(Arc::new(Publisher { shared: shared.clone(), bus }))
        .map_err(|e| anyhow::anyhow!("joining the cluster: {e}"))?;
    tasks.spawn(reader.run(shutdown.clone()));
    let (gate, polling) = watch::channel(false);
    tasks.spawn(lease::run(shared.clone(), store, gate, shutdown.clone()));
    let roster = Arc::new(nodes::Roster::new(&shared.config.node));
    tasks.spawn(nodes::run(shared.clone(), roster.clone(), shutdown));
    tracing::info!(redis = %shared.config.url, node = %shared.config.node, lease = ?shared.config.lease, "joined the cluster");
    Ok(Cluster { stats, polling, roster, client: shared.client.clone(), conn: shared.conn.clone() })
}

/// Sends the store's changes to the log: the store's [`Relay`].
#[derive(Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
    bus: Arc<UpdateBus>,
}

/// How long a sender waits for its own node to apply its change. The reader applies an
/// entry within milliseconds of its append; past this Redis is in trouble, and the
/// sender answers anyway (the change is in the log).
const APPLY_WAIT: Duration = Duration::from_secs(5);

impl Publisher {
    async fn publish(&self, change: Outgoing) -> Result<u64, RelayError> {
        let shared = &self.shared;
        let token = match change.origin {
            Origin::Mutation => String::new(),
            Origin::Poll => lock(&shared.token).clone().ok_or(RelayError::Fenced)?,
        };
        let ids = match &change.ids {
            Some(ids) => serde_json::to_string(ids).unwrap_or_default(),
            None => String::new(),
        };
        let mut conn = shared.conn.clone();
        // A second try only after finding the epoch gone or replaced.
        for _ in 0..2 {
            let published: redis::RedisResult<u64> = scripts::PUBLISH
                .key(&shared.keys.epoch)
                .key(&shared.keys.seq)
                .key(&shared.keys.stream)
                .key(&shared.keys.lease)
                .arg(shared.epoch())
                .arg(&token)
                .arg(shared.config.ring_size)
                .arg(change.kind.as_str())
                .arg(&ids)
                .arg(now_micros())
                .arg(&change.records)
                .invoke_async(&mut conn)
                .await;
            match published {
                Ok(seq) => {
                    shared.mark(true, None);
                    let mut applied = shared.applied.subscribe();
                    let waited = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|a| *a >= seq)).await;
                    if !matches!(waited, Ok(Ok(_))) {
                        tracing::warn!(seq, "published, but this node did not apply it within {APPLY_WAIT:?}");
                    }
                    return Ok(seq);
                }
                Err(e) if e.code() == Some("FENCED") => {
                    shared.stats.fenced.fetch_add(1, Ordering::Relaxed);
                    return Err(RelayError::Fenced);
                }
                Err(e) if e.code() == Some("EPOCH") => {
                    let seen = self.bus.seq().max(*shared.applied.borrow());
                    if let Err(e) = shared.current_epoch(&mut conn, seen).await {
                        shared.mark(false, Some(&e));
                        return Err(RelayError::Unavailable(e.to_string()));
                    }
                }
                Err(e) => {
                    shared.mark(false, Some(&e));
                    return Err(RelayError::Unavailable(e.to_string()));
                }
            }
        }
        // Two epochs in a row: another node keeps starting new ones.
        Err(RelayError::Unavailable("the log's epoch keeps changing".into()))
    }
}

impl Relay for Publisher {
    fn send(&self, change: Outgoing) -> Sending<'_> {
        Box::pin(self.publish(change))
    }

    fn ready(&self) -> bool {
        self.shared.stats.redis_up.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(redact("redis://user:s3cret@host:6379/0"), "redis://user:***@host:6379/0");
        assert_eq!(redact("rediss://:s3cret@host"), "rediss://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://user@host/"), "redis://user@host/");
        let url = RedisUrl::parse("redis://u:pw@127.0.0.1:6379").expect("valid");
        assert_eq!(format!("{url} {url:?}"), "redis://u:***@127.0.0.1:6379 RedisUrl(redis://u:***@127.0.0.1:6379)");
    }

    #[test]
    fn a_malformed_url_names_the_flag_and_hides_the_password() {
        for bad in ["http://u:pw@host", "localhost:6379", "redis://u:pw@host:notaport"] {
            let error = RedisUrl::parse(bad).expect_err(bad);
            assert!(error.starts_with("--redis "), "{error}");
            assert!(!error.contains("pw@"), "{error}");
        }
    }
}
