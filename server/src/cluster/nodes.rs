//! The cluster's roster: every live node, its figures as it last announced them, and
//! which one polls (the Server page's nodes table).
//!
//! Every [`tick`] (a third of the lease, at most a second) each node writes its latest
//! announcement under a key of its own (`stalecast:node:<name>`, expiring after
//! [`EXPIRY`]), adds its name to the set `stalecast:nodes`, and reads back every name
//! of the set, their announcements and the lease's holder: two round trips a tick per
//! node, no Redis work per client. A name whose key expired (the node stopped
//! announcing: killed, or cut off from Redis) leaves the set; a node that shuts down
//! removes itself at once. The poller is the node the lease names ([`super::lease`]),
//! read in the same pass as the announcements, so at most one node is marked.
//!
//! What a node announces is opaque here: the domain's figures as JSON, bounded in size
//! ([`MAX_ANNOUNCEMENT`]), beside when it wrote them. Names are bounded too
//! ([`node_name`]), and nothing else tells the nodes apart: no address, no URL. When the
//! lineup changes (a node joins or leaves, or the poller moves), [`Roster::lineup`] says
//! so, so that a page can be told at once rather than at its next sample.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Shared, lock};

/// How long a node's announcement lives in Redis: three of the Server page's sampling
/// intervals (3 s), many announcements. A node that stopped announcing leaves every
/// roster this long after its last one.
pub const EXPIRY: Duration = Duration::from_secs(9);

/// The longest announcement read from Redis; anything longer is ignored.
pub const MAX_ANNOUNCEMENT: usize = 4096;

/// The most nodes a roster lists.
pub const MAX_NODES: usize = 64;

/// The longest node name.
pub const MAX_NAME: usize = 64;

/// How often a node announces itself and reads the roster: a third of the lease (as the
/// lease task ticks), at most a second, so that a new poller shows within a tick of
/// taking the lease.
pub fn tick(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Checks a node name (`--node-name`): 1 to [`MAX_NAME`] ASCII letters, digits and `.`,
/// `_`, `-`, `:`. Short and plain, so that it can be shown and logged as it is and
/// cannot carry a URL or its credentials.
pub fn node_name(name: &str) -> Result<String, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(plain) {
        return Err(format!("a node name is 1 to {MAX_NAME} letters, digits and . _ - : (e.g. web-1:3000)"));
    }
    Ok(name.to_owned())
}

/// The default node name: this host's name (its first label, made plain) and `port`.
pub fn default_node_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(MAX_NAME - 6)
        .collect();
    let host = if host.is_empty() { "stalecast" } else { &host };
    format!("{host}:{port}")
}

/// What a node writes under its key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Announcement {
    /// When it was written, in milliseconds since the Unix epoch (the writer's clock).
    seen_at: u64,
    /// The node's figures, as the domain made them.
    figures: serde_json::Value,
}

/// One live node, as it last announced itself.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    /// When it last announced itself, in milliseconds since the Unix epoch.
    pub seen_at: u64,
    pub figures: serde_json::Value,
}

/// The roster as last read from Redis.
#[derive(Debug, Default)]
pub struct Members {
    /// By name.
    pub nodes: Vec<Member>,
    /// The node the lease names, if any holds it.
    pub poller: Option<String>,
}

/// Who is in the cluster and who polls: what changes the nodes table's rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lineup {
    /// The live nodes' names, sorted.
    pub names: Vec<String>,
    pub poller: Option<String>,
}

/// This node's view of the roster, and what it announces. Written by the roster task
/// and the domain's sampler, read by anyone.
#[derive(Debug)]
pub struct Roster {
    name: String,
    /// This node's latest figures, announced on every tick.
    own: Mutex<Option<serde_json::Value>>,
    /// The last roster read, and when.
    members: Mutex<(Arc<Members>, Option<Instant>)>,
    lineup: watch::Sender<Lineup>,
}

impl Roster {
    pub fn new(name: &str) -> Roster {
        Roster {
            name: name.to_owned(),
            own: Mutex::new(None),
            members: Mutex::new((Arc::default(), None)),
            lineup: watch::Sender::new(Lineup::default()),
        }
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets what this node announces from its next tick on.
    pub fn announce(&self, figures: serde_json::Value) {
        *lock(&self.own) = Some(figures);
    }

    /// The roster as last read; empty once the last successful read is older than
    /// [`EXPIRY`] (Redis unreachable: nothing here is known any more).
    pub fn members(&self) -> Arc<Members> {
        let members = lock(&self.members);
        match members.1 {
            Some(at) if at.elapsed() <= EXPIRY => members.0.clone(),
            _ => Arc::default(),
        }
    }

    /// Changes whenever a node joins or leaves, or the poller moves.
    pub fn lineup(&self) -> watch::Receiver<Lineup> {
        self.lineup.subscribe()
    }

    fn update(&self, members: Members) {
        let lineup =
            Lineup { names: members.nodes.iter().map(|m| m.name.clone()).collect(), poller: members.poller.clone() };
        *lock(&self.members) = (Arc::new(members), Some(Instant::now()));
        self.changed(lineup);
    }

    /// Nothing read for longer than [`EXPIRY`]: an empty lineup.
    fn lost(&self) {
        let read_at = lock(&self.members).1;
        if read_at.is_none_or(|at| at.elapsed() > EXPIRY) {
            self.changed(Lineup::default());
        }
    }

    fn changed(&self, lineup: Lineup) {
        self.lineup.send_if_modified(|current| {
            let changed = *current != lineup;
            if changed {
                tracing::info!(nodes = ?lineup.names, poller = ?lineup.poller, "the cluster's nodes changed");
                *current = lineup;
            }
            changed
        });
    }
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Runs until `shutdown`: announces this node and reads the roster every [`tick`]; on
/// shutdown, removes this node from it.
pub(super) async fn run(shared: Arc<Shared>, roster: Arc<Roster>, shutdown: CancellationToken) {
    let mut conn = shared.conn.clone();
    let mut ticks = tokio::time::interval(tick(shared.config.lease));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match pass(&shared, &roster, &mut conn).await {
            Ok(members) => {
                if failing {
                    tracing::info!("reading the cluster's nodes again");
                    failing = false;
                }
                roster.update(members);
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot read the cluster's nodes: the Server page lists the last known until they expire");
                    failing = true;
                }
                roster.lost();
            }
        }
    }
    let key = shared.keys.node(&roster.name);
    let left: redis::RedisResult<()> = redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg(&key)
        .ignore()
        .cmd("SREM")
        .arg(&shared.keys.nodes)
        .arg(&roster.name)
        .ignore()
        .query_async(&mut conn)
        .await;
    if let Err(error) = left {
        tracing::debug!(%error, "could not remove this node from the cluster's nodes");
    }
}

/// One tick: writes this node's announcement, then reads every node's and the lease.
async fn pass(
    shared: &Shared,
    roster: &Roster,
    conn: &mut redis::aio::ConnectionManager,
) -> redis::RedisResult<Members> {
    let keys = &shared.keys;
    let own = lock(&roster.own).clone();
    let mut pipe = redis::pipe();
    pipe.atomic();
    if let Some(figures) = own {
        let announcement = Announcement { seen_at: now_millis(), figures };
        let value = serde_json::to_string(&announcement).unwrap_or_default();
        pipe.cmd("SET")
            .arg(keys.node(&roster.name))
            .arg(value)
            .arg("PX")
            .arg(EXPIRY.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(&keys.nodes)
            .arg(&roster.name)
            .ignore();
    }
    pipe.cmd("SMEMBERS").arg(&keys.nodes).cmd("GET").arg(&keys.lease);
    let (mut names, lease): (Vec<String>, Option<String>) = pipe.query_async(conn).await?;
    names.retain(|name| node_name(name).is_ok());
    names.sort();
    names.truncate(MAX_NODES);
    let values: Vec<Option<String>> = if names.is_empty() {
        Vec::new()
    } else {
        let node_keys: Vec<String> = names.iter().map(|name| keys.node(name)).collect();
        redis::cmd("MGET").arg(&node_keys).query_async(conn).await?
    };
    let mut nodes = Vec::with_capacity(names.len());
    let mut expired = Vec::new();
    for (name, value) in names.into_iter().zip(values) {
        let Some(value) = value else {
            expired.push(name);
            continue;
        };
        match read(&value) {
            Some(announcement) => {
                nodes.push(Member { name, seen_at: announcement.seen_at, figures: announcement.figures })
            }
            None => tracing::debug!(node = %name, "ignored an unreadable node announcement"),
        }
    }
    if !expired.is_empty() {
        let removed: redis::RedisResult<()> = redis::cmd("SREM").arg(&keys.nodes).arg(&expired).query_async(conn).await;
        if let Err(error) = removed {
            tracing::debug!(%error, "could not remove expired nodes");
        }
    }
    Ok(Members { nodes, poller: lease.as_deref().and_then(holder) })
}

/// An announcement as read from Redis, when it is one.
fn read(value: &str) -> Option<Announcement> {
    if value.len() > MAX_ANNOUNCEMENT {
        return None;
    }
    serde_json::from_str(value).ok()
}

/// The node a lease's value names (`<fencing token>:<node name>`).
fn holder(lease: &str) -> Option<String> {
    let (_, name) = lease.split_once(':')?;
    node_name(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        assert_eq!(node_name("web-1:3000").as_deref(), Ok("web-1:3000"));
        for bad in ["", "a b", "redis://u:pw@host:6379", "ü", &"n".repeat(MAX_NAME + 1)] {
            assert!(node_name(bad).is_err(), "{bad}");
        }
        let default = default_node_name(3000);
        assert!(default.ends_with(":3000"), "{default}");
        assert_eq!(node_name(&default).as_deref(), Ok(default.as_str()));
    }

    #[test]
    fn the_lease_names_its_holder() {
        assert_eq!(holder("17:web-1:3000").as_deref(), Some("web-1:3000"));
        assert_eq!(holder("17"), None);
        assert_eq!(holder("17:not a name"), None);
    }

    #[test]
    fn announcements_are_read_only_when_whole_and_small() {
        assert_eq!(read(r#"{"seenAt":5,"figures":{"streams":2}}"#).map(|a| a.seen_at), Some(5));
        assert!(read("{").is_none());
        let long = format!(r#"{{"seenAt":5,"figures":"{}"}}"#, "x".repeat(MAX_ANNOUNCEMENT));
        assert!(read(&long).is_none());
    }

    #[test]
    fn the_tick_is_a_third_of_the_lease_at_most_a_second() {
        assert_eq!(tick(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(tick(Duration::from_millis(900)), Duration::from_millis(300));
        assert_eq!(tick(Duration::from_secs(30)), Duration::from_secs(1));
        assert!(EXPIRY >= tick(Duration::from_secs(30)) * 3);
    }

    #[test]
    fn the_lineup_changes_only_when_nodes_or_the_poller_do() {
        let roster = Roster::new("a:1");
        let mut lineup = roster.lineup();
        let member = |name: &str, seen_at| Member { name: name.into(), seen_at, figures: serde_json::json!({}) };
        roster.update(Members { nodes: vec![member("a:1", 1)], poller: Some("a:1".into()) });
        assert!(lineup.has_changed().expect("open"));
        lineup.borrow_and_update();
        roster.update(Members { nodes: vec![member("a:1", 2)], poller: Some("a:1".into()) });
        assert!(!lineup.has_changed().expect("open"), "new figures, same lineup");
        roster.update(Members { nodes: vec![member("a:1", 3), member("b:2", 3)], poller: Some("a:1".into()) });
        assert!(lineup.has_changed().expect("open"));
        assert_eq!(lineup.borrow_and_update().names, ["a:1", "b:2"]);
        assert_eq!(roster.members().nodes.len(), 2);
    }
}
