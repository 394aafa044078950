//! Failed sign-ins counted by the whole cluster (`serve --redis`). Each node's own
//! [`Limiter`](super::limiter::Limiter) sees only the attempts that reach it: behind a
//! balancer that spreads requests, N nodes would allow N times the attempts per user the
//! limits say. With Redis the limits hold across the cluster.
//!
//! The rules are the local limiter's: a user (any address) or an address (any user) is
//! blocked while it has `max` failures within the window, until the oldest of those is
//! older than the window (what `Retry-After` says); a success clears the user's
//! failures, not the address's. Redis keeps, per user and per address, a sorted set of
//! the failures' times, trimmed to the limit and expiring with the window; one script
//! either checks or records, in one round trip, on Redis's clock (the nodes' clocks need
//! not agree). The keys are digests ([`shared::keyed`]): a dump of Redis shows no user
//! name and no address in clear.

use std::net::IpAddr;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::limiter::Limits;
use super::shared;

/// Checks (`check`) or records a failure (`fail`) for each key: the user's, then the
/// address's when there is one. Answers how many milliseconds are left until every key
/// may try again (0: they may now). ARGV: mode, window (ms), the limit of each key, then
/// (`fail`) the member that names this failure.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local max = tonumber(ARGV[2 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if ARGV[1] == 'fail' then
    redis.call('ZADD', key, now, ARGV[3 + #KEYS])
    redis.call('ZREMRANGEBYRANK', key, 0, -(max + 1))
    redis.call('PEXPIRE', key, window)
  else
    local n = redis.call('ZCARD', key)
    if n >= max then
      local oldest = redis.call('ZRANGE', key, n - max, n - max, 'WITHSCORES')
      local free = tonumber(oldest[2]) + window - now
      if free > wait then wait = free end
    end
  end
end
return wait
";

/// The cluster's count of failed sign-ins.
#[derive(Debug)]
pub struct SharedLimiter {
    conn: ConnectionManager,
    prefix: String,
    limits: Limits,
    script: redis::Script,
}

impl SharedLimiter {
    /// Failures counted on the Redis behind `conn`, under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str, limits: Limits) -> SharedLimiter {
        SharedLimiter { conn, prefix: prefix.to_owned(), limits, script: redis::Script::new(SCRIPT) }
    }

    /// Where `user` of `domain` (case does not matter, as locally) is counted.
    fn user_key(&self, user: &str, domain: &str) -> String {
        let name = format!("{}\u{0}{}", domain.to_lowercase(), user.to_lowercase());
        format!("{}signin-failures:{}", self.prefix, shared::hex(&shared::keyed(b"stalecast sign-in user", &name)))
    }

    fn address_key(&self, address: IpAddr) -> String {
        let address = address.to_string();
        format!(
            "{}signin-failures:{}",
            self.prefix,
            shared::hex(&shared::keyed(b"stalecast sign-in address", &address))
        )
    }

    /// The script's keys and the limit of each.
    fn keys(&self, user: &str, domain: &str, address: Option<IpAddr>) -> Vec<(String, u32)> {
        let mut keys = vec![(self.user_key(user, domain), self.limits.per_user)];
        keys.extend(address.map(|a| (self.address_key(a), self.limits.per_address)));
        keys
    }

    async fn run(&self, mode: &str, keys: &[(String, u32)], member: Option<String>) -> redis::RedisResult<u64> {
        let mut invocation = self.script.prepare_invoke();
        for (key, _) in keys {
            invocation.key(key);
        }
        invocation.arg(mode).arg(self.limits.window.as_millis().max(1) as u64);
        for (_, max) in keys {
            invocation.arg(*max);
        }
        if let Some(member) = member {
            invocation.arg(member);
        }
        let mut conn = self.conn.clone();
        invocation.invoke_async(&mut conn).await
    }

    /// `Ok(Some(retry after))` when the user or the address may not try now, across the
    /// cluster; an error when Redis cannot say.
    pub async fn check(
        &self,
        user: &str,
        domain: &str,
        address: Option<IpAddr>,
    ) -> redis::RedisResult<Option<Duration>> {
        let wait = self.run("check", &self.keys(user, domain, address), None).await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }

    /// A failed sign-in of `user` from `address`, for every node to count.
    pub async fn failed(&self, user: &str, domain: &str, address: Option<IpAddr>) -> redis::RedisResult<()> {
        // Two failures in one millisecond are two: each is its own member.
        let member = format!("{:016x}", rand::random::<u64>());
        self.run("fail", &self.keys(user, domain, address), Some(member)).await.map(|_| ())
    }

    /// `user` signed in: their failures are forgotten on every node.
    pub async fn succeeded(&self, user: &str, domain: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL").arg(self.user_key(user, domain)).query_async(&mut conn).await
    }
}
