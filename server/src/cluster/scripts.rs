//! The server-side scripts every node runs against Redis, and the keys they work on.
//!
//! Each step that must not be split — allocate a seq and append the update, acquire the
//! lease with a new fencing token, extend it only while it is still ours, start a new
//! epoch only when the old one is gone — is one Lua script: Redis runs a script alone,
//! so no other node sees half of it. `redis::Script` sends each by its SHA-1 (`EVALSHA`)
//! and loads it on a miss.

use std::sync::LazyLock;

use redis::Script;

/// Where the cluster's state lives in Redis, under one prefix (`stalecast:`).
#[derive(Clone, Debug)]
pub struct Keys {
    /// The last seq handed out (a counter).
    pub seq: String,
    /// The epoch that the seq and the stream belong to (random; gone when Redis loses
    /// its data, and then replaced).
    pub epoch: String,
    /// The Redis Stream of updates, one entry per seq, its id `<seq>-0`.
    pub stream: String,
    /// The poller's lease: its fencing token while a node holds it.
    pub lease: String,
    /// The counter fencing tokens are drawn from.
    pub fence: String,
    /// When the poller last confirmed each collection (microseconds since the epoch).
    pub confirmed: String,
    /// The names of the nodes that announced themselves ([`super::nodes`]).
    pub nodes: String,
    /// The prefix of each node's announcement key (`node:<name>`).
    node_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            seq: format!("{prefix}seq"),
            epoch: format!("{prefix}epoch"),
            stream: format!("{prefix}updates"),
            lease: format!("{prefix}lease"),
            fence: format!("{prefix}fence"),
            confirmed: format!("{prefix}confirmed"),
            nodes: format!("{prefix}nodes"),
            node_prefix: format!("{prefix}node:"),
        }
    }

    /// The key of the announcement of the node called `name` (expiring).
    pub fn node(&self, name: &str) -> String {
        format!("{}{name}", self.node_prefix)
    }
}

/// Allocates the next seq and appends the update under it, in the epoch the caller
/// follows, and, for a poll, only with the current lease's fencing token.
///
/// KEYS: epoch, seq, stream, lease. ARGV: epoch, fencing token (empty: a mutation, not
/// fenced), MAXLEN (approximate), type, ids (JSON, empty: the whole collection), ts,
/// records (JSON). Answers the seq; errors `EPOCH` (the epoch is not the caller's: gone
/// or replaced) and `FENCED` (the token is not the lease's).
pub static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH_LUA));

/// [`PUBLISH`]'s source.
pub const PUBLISH_LUA: &str = r"
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then
  return redis.error_reply('EPOCH the log belongs to another epoch')
end
if ARGV[2] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[2] then
  return redis.error_reply('FENCED the lease is not held with this token')
end
local seq = redis.call('INCR', KEYS[2])
-- An integer reply is a Lua number (a double): written out whole, not as 1.7e+15.
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], string.format('%.0f', seq) .. '-0',
  'e', epoch, 'k', ARGV[4], 'i', ARGV[5], 't', ARGV[6], 'r', ARGV[7])
return seq
";

/// The current epoch and seq, starting a new epoch when there is none, or when the seq
/// went back below what the caller has seen already (Redis restarted from an old
/// snapshot, or failed over to a replica that was behind, keeping an old epoch). A new
/// epoch's seq starts above the caller's clock and above every seq it has seen (the
/// in-memory bus seeds from the clock the same way), so that no id handed out before is
/// handed out again.
///
/// KEYS: epoch, seq. ARGV: a new random epoch, the clock in microseconds, the highest
/// seq the caller has seen. Answers `{epoch, seq}`.
pub static EPOCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local epoch = redis.call('GET', KEYS[1])
local stored = redis.call('GET', KEYS[2]) or '0'
local seq = tonumber(stored)
local seen = tonumber(ARGV[3])
if epoch and seq >= seen then
  return {epoch, stored}
end
-- Seqs stay below 2^53 (microseconds since 1970 are about 2^51): exact as Lua numbers.
local seed = string.format('%.0f', math.max(tonumber(ARGV[2]), seen, seq))
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], seed)
return {ARGV[1], seed}
",
    )
});

/// Takes the lease when nobody holds it: a new fencing token, set with the lease's
/// expiry. KEYS: lease, fence. ARGV: this node's name, the lease in milliseconds.
/// Answers the token, or nil when another node holds the lease.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
",
    )
});

/// Extends the lease while it still holds the caller's token (compare and extend).
/// KEYS: lease. ARGV: token, the lease in milliseconds. Answers 1, or 0 when lost.
pub static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// Gives the lease up, when it still holds the caller's token (a node shutting down,
/// so that another polls at once rather than after the expiry). KEYS: lease. ARGV:
/// token.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});
