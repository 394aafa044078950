//! Failed sign-ins, counted per user and per client address, so that nobody can try
//! passwords faster than a few a minute against one account, nor many accounts from one
//! address.
//!
//! A key (a user, an address) is blocked while it has `max` failures within the last
//! `window`; it is free again once the oldest of those is older than the window, which
//! is what `Retry-After` says. A success clears the user's failures (not the address's:
//! one good password must not reset an address that is trying many accounts). Only
//! failures are counted, so users who sign in correctly are never slowed down. A blocked
//! attempt is refused before Keystone is asked, and does not count again.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most keys remembered at once. Past it the oldest are forgotten first: an attacker
/// spraying addresses cannot grow the map without bound (a forgotten address starts
/// over, which costs it nothing it did not have).
const MAX_KEYS: usize = 100_000;

/// How many failures block, and for how long they count.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Failures of one user (any address) within the window that block the user.
    pub per_user: u32,
    /// Failures from one address (any user) within the window that block the address.
    pub per_address: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { per_user: 5, per_address: 20, window: Duration::from_secs(300) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A user name within its domain, lowercased (Keystone's names do not differ by case
    /// only in a usual deployment, and counting them apart would let `Alice` and `alice`
    /// each have their own attempts).
    User(String),
    Address(IpAddr),
}

/// The failures of every key, oldest first.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: Limits,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter { limits, failures: Mutex::new(HashMap::new()) }
    }

    fn keys(user: &str, domain: &str, address: Option<IpAddr>) -> impl Iterator<Item = Key> {
        let user = Key::User(format!("{}\u{0}{}", domain.to_lowercase(), user.to_lowercase()));
        std::iter::once(user).chain(address.map(Key::Address))
    }

    fn max(&self, key: &Key) -> usize {
        match key {
            Key::User(_) => self.limits.per_user as usize,
            Key::Address(_) => self.limits.per_address as usize,
        }
    }

    /// `Err(retry after)` when the user or the address may not try now.
    pub fn check(&self, user: &str, domain: &str, address: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for key in Self::keys(user, domain, address) {
            let Some(times) = failures.get_mut(&key) else { continue };
            forget_older(times, now, self.limits.window);
            if times.len() >= self.max(&key) {
                // Free once enough of the failures aged out of the window.
                let freeing = times[times.len() - self.max(&key)];
                wait = wait.max((freeing + self.limits.window).saturating_duration_since(now));
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// A failed sign-in of `user` from `address`.
    pub fn failed(&self, user: &str, domain: &str, address: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_KEYS {
            prune(&mut failures, now, self.limits.window);
        }
        while failures.len() >= MAX_KEYS {
            let oldest = failures.iter().min_by_key(|(_, t)| t.back().copied()).map(|(k, _)| k.clone());
            match oldest {
                Some(key) => failures.remove(&key),
                None => break,
            };
        }
        for key in Self::keys(user, domain, address) {
            let max = self.max(&key);
            let times = failures.entry(key).or_default();
            times.push_back(now);
            while times.len() > max {
                times.pop_front();
            }
        }
    }

    /// `user` signed in: their failures are forgotten.
    pub fn succeeded(&self, user: &str, domain: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in Self::keys(user, domain, None) {
            failures.remove(&key);
        }
    }

    /// Forgets failures older than the window (the session sweeper calls this).
    pub fn prune(&self, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut failures, now, self.limits.window);
    }
}

fn forget_older(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
        times.pop_front();
    }
}

fn prune(failures: &mut HashMap<Key, VecDeque<Instant>>, now: Instant, window: Duration) {
    failures.retain(|_, times| {
        forget_older(times, now, window);
        !times.is_empty()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Limiter {
        Limiter::new(Limits { per_user: 3, per_address: 5, window: Duration::from_secs(60) })
    }

    #[test]
    fn a_user_is_blocked_after_its_failures_until_the_oldest_ages_out() {
        let limiter = limiter();
        let t0 = Instant::now();
        let address: Option<IpAddr> = "192.0.2.1".parse().ok();
        for n in 0..3 {
            assert_eq!(limiter.check("alice", "Default", address, t0), Ok(()));
            limiter.failed("alice", "Default", address, t0 + Duration::from_secs(n * 10));
        }
        let now = t0 + Duration::from_secs(25);
        // The first failure (at 0 s) frees the user at 60 s.
        assert_eq!(limiter.check("alice", "Default", address, now), Err(Duration::from_secs(35)));
        assert_eq!(limiter.check("ALICE", "default", None, now), Err(Duration::from_secs(35)), "case does not matter");
        assert_eq!(limiter.check("bob", "Default", None, now), Ok(()), "another user");
        assert_eq!(limiter.check("alice", "Default", None, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn an_address_is_blocked_across_users_and_a_success_clears_only_the_user() {
        let limiter = limiter();
        let t0 = Instant::now();
        let address: Option<IpAddr> = "192.0.2.7".parse().ok();
        for user in ["u1", "u2", "u3", "u4", "u5"] {
            limiter.failed(user, "Default", address, t0);
        }
        assert!(limiter.check("u6", "Default", address, t0).is_err(), "five users from one address");
        assert_eq!(limiter.check("u6", "Default", "192.0.2.8".parse().ok(), t0), Ok(()));
        limiter.failed("carol", "Default", None, t0);
        limiter.failed("carol", "Default", None, t0);
        limiter.succeeded("carol", "Default");
        limiter.failed("carol", "Default", None, t0);
        limiter.failed("carol", "Default", None, t0);
        assert_eq!(limiter.check("carol", "Default", None, t0), Ok(()), "counting started over");
        limiter.prune(t0 + Duration::from_secs(61));
        assert!(limiter.failures.lock().expect("lock").is_empty());
    }
}
