//! Sign-in through the cloud's own Keystone, and the sessions that follow it.
//!
//! A user signs in with their Keystone user name and password ([`Sessions::sign_in`]):
//! Keystone issues them a token, says which projects they have a role on
//! (`/v3/auth/projects`), and issues a token scoped to each (its roles are the user's
//! roles there, implied ones included). The session keeps those tokens on the server;
//! the browser holds only the session's id, 32 random bytes from the operating system,
//! which is worth nothing once the session ends. The password is never kept.
//!
//! A session ends when the user signs out (its tokens are revoked at Keystone), when it
//! was idle for `idle_timeout`, when it is `lifetime` old, or when the Keystone token it
//! stands on expires or is revoked, whichever comes first. The sweeper ([`Sessions::run`])
//! notices within [`SWEEP`]; every event stream of the session then ends with its last
//! frame (each follows the session's room through [`Session::access`]). It also re-reads
//! each session's projects and roles every `refresh_every` (at most a minute): a role
//! granted or taken away changes what the user sees and may do, and their streams
//! resync.
//!
//! With `--redis` the sessions are the cluster's ([`shared`]): a node that does not
//! know a cookie rebuilds its session from the record Redis keeps (the Keystone token
//! the user signed in with, validated again, and their projects read again, each scoped
//! with a token of this node's own); a session that ends on one node ends on every node;
//! the idle clock is the record's Redis TTL, which every node that serves the session
//! pushes back. Failed sign-ins are then counted by the whole cluster too
//! ([`shared_limiter`]).
//!
//! What each layer does with a session: the domain filters by its room and acts with the
//! token of a project ([`Membership`]); the wire layer reads the cookie and sets it.

pub mod limiter;
pub mod shared;
pub mod shared_limiter;
pub mod store;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{StreamExt as _, TryStreamExt as _};
use rand::TryRng;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use limiter::Limiter;
pub use limiter::Limits;
use shared::{Record, RecordKey, Shared};
use shared_limiter::SharedLimiter;
use store::{MemoryStore, SessionStore};

use crate::updates::{Access, Room, Rooms};
use crate::upstream::UpstreamError;
use crate::upstream::auth::{Named, Token};
use crate::upstream::client::OpenStackClient;
use crate::upstream::model::Project;

/// How often the sweeper looks for sessions that ended or whose memberships are due:
/// a session that expires ends its streams within this (the issue asks for a second).
pub const SWEEP: Duration = Duration::from_millis(250);

/// With `--redis`: how often a session's record has its expiry pushed back, at most,
/// while the session is in use on this node.
const TOUCH_EVERY: Duration = Duration::from_secs(1);

/// With `--redis`, while endings are followed: the sweeper asks whether its sessions'
/// records still exist every this many sweeps (every sweep while they are not).
const CHECK_RECORDS_EVERY: u32 = 4;

/// How many of a user's projects are read (token rescoped or validated) at once.
const MEMBERSHIP_READS: usize = 4;

/// The longest `refresh_every` may be: memberships are re-read at least every minute.
pub const MAX_REFRESH: Duration = Duration::from_secs(60);

/// How sessions behave.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// A session with no request for this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in at the latest (sooner when its Keystone
    /// token expires).
    pub lifetime: Duration,
    /// How often a session's projects and roles are read again (at most [`MAX_REFRESH`]).
    pub refresh_every: Duration,
    /// Failed sign-ins that block a user or an address for a while.
    pub limits: Limits,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(12 * 3600),
            refresh_every: MAX_REFRESH,
            limits: Limits::default(),
        }
    }
}

/// Who signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    /// The name of the user's domain.
    pub domain: String,
}

/// The user's part in one project: their roles there, and their token scoped to it.
#[derive(Clone, Debug)]
pub struct Membership {
    pub project: Project,
    /// Role names, implied ones included (`member` also says `reader`).
    pub roles: Vec<String>,
    pub token: Token,
}

impl Membership {
    /// Whether the user may change things in the project: any role but `reader` (the
    /// read-only role of Keystone's defaults). The cloud's policy still has the last word
    /// on every write; this only spares the cloud a write that cannot succeed, and tells
    /// the dashboard which buttons to disable.
    pub fn may_write(&self) -> bool {
        self.roles.iter().any(|r| !r.eq_ignore_ascii_case("reader"))
    }
}

/// A session's projects, as last read, and the room they make.
#[derive(Debug)]
pub struct Memberships {
    pub projects: Vec<Membership>,
    pub room: Arc<Room>,
}

impl Memberships {
    pub fn get(&self, project: &str) -> Option<&Membership> {
        self.projects.iter().find(|m| m.project.id == project)
    }
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    SignedOut,
    Idle,
    Lifetime,
    /// Keystone no longer accepts the session's token (expired, revoked).
    Revoked,
}

impl Ending {
    /// What the user is told.
    pub fn message(self) -> &'static str {
        match self {
            Ending::SignedOut => "signed out",
            Ending::Idle => "the session expired after a while without use: sign in again",
            Ending::Lifetime => "the session reached its end of life: sign in again",
            Ending::Revoked => "the cloud no longer accepts this sign-in: sign in again",
        }
    }
}

/// One signed-in user, on the server. The browser knows only [`Session::id`].
#[derive(Debug)]
pub struct Session {
    id: String,
    user: User,
    /// The token the user signed in with: it lists their projects and is rescoped to
    /// each. Never leaves the server.
    token: Token,
    started: Instant,
    /// When it ends at the latest: `lifetime` after sign-in, or the token's expiry.
    ends: Instant,
    ends_at: SystemTime,
    idle_timeout: Duration,
    /// Milliseconds after `started` of the last request.
    last_seen: AtomicU64,
    memberships: RwLock<Arc<Memberships>>,
    /// When the memberships were last read.
    read_at: RwLock<Instant>,
    refreshing: AtomicBool,
    /// What its event streams follow: the room, `None` once the session ended.
    access: watch::Sender<Option<Arc<Room>>>,
    ending: RwLock<Option<Ending>>,
    /// With `--redis`: where its record is kept.
    record: Option<RecordKey>,
    /// Milliseconds after `started` when its record's expiry was last pushed back.
    touched: AtomicU64,
    /// With `--redis`: its record is gone (expired, or deleted by a node that ended it)
    /// while Redis kept its data: the sweeper ends it.
    gone: AtomicBool,
}

impl Session {
    /// The id the browser holds in its cookie.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn user(&self) -> &User {
        &self.user
    }

    /// The projects and roles as last read.
    pub fn memberships(&self) -> Arc<Memberships> {
        self.memberships.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The projects the user may see.
    pub fn room(&self) -> Arc<Room> {
        self.memberships().room.clone()
    }

    /// What an event stream of this session follows.
    pub fn access(&self) -> Access {
        self.access.subscribe()
    }

    /// When it ends at the latest (if it stays in use).
    pub fn ends_at(&self) -> SystemTime {
        self.ends_at
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Why it ended, once it did.
    pub fn ending(&self) -> Option<Ending> {
        *self.ending.read().unwrap_or_else(|p| p.into_inner())
    }

    fn seen(&self, now: Instant) {
        let at = now.saturating_duration_since(self.started).as_millis() as u64;
        self.last_seen.fetch_max(at, Ordering::Relaxed);
    }

    /// Whether it had no request on this node for its idle timeout, at `now`.
    fn idle_here(&self, now: Instant) -> bool {
        let last_seen = self.started + Duration::from_millis(self.last_seen.load(Ordering::Relaxed));
        now.saturating_duration_since(last_seen) >= self.idle_timeout
    }

    /// Why a session whose record vanished ended: its lifetime, or else its idle timeout
    /// (Redis dropped the record when nobody used it on any node).
    fn vanished(&self, now: Instant) -> Ending {
        if now >= self.ends { Ending::Lifetime } else { Ending::Idle }
    }

    /// Marks it ended and ends its streams; answers whether it was still running.
    fn end(&self, why: Ending) -> bool {
        let mut ending = self.ending.write().unwrap_or_else(|p| p.into_inner());
        if ending.is_some() {
            return false;
        }
        *ending = Some(why);
        drop(ending);
        self.access.send_replace(None);
        true
    }

    /// Every token the session holds.
    fn tokens(&self) -> Vec<Token> {
        std::iter::once(self.token.clone()).chain(self.project_tokens()).collect()
    }

    /// The tokens of its projects: those this node issued.
    fn project_tokens(&self) -> Vec<Token> {
        self.memberships().projects.iter().map(|m| m.token.clone()).collect()
    }
}

/// How far the end of a session reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// It ends here: on every node (its record deleted, the others told), with every
    /// token it holds revoked.
    Everywhere,
    /// Another node ended it and revoked the token the user signed in with: this node
    /// revokes the tokens it issued.
    Told,
    /// Its record vanished (expired, or deleted while this node was not listening):
    /// nobody may have revoked anything yet, so every token is.
    Gone,
    /// Only this node's copy ends (idle here while Redis cannot say whether another node
    /// served it meanwhile): the record and the token the user signed in with stay, for
    /// the nodes that may still serve it.
    Here,
}

/// Why a sign-in failed.
#[derive(Debug)]
pub enum SignInError {
    /// Keystone said no (the user, the password or the domain is wrong; which, nobody
    /// learns).
    Refused,
    /// Too many failures lately, for this user or this address: try again after this.
    Limited(Duration),
    /// Keystone could not be asked, or answered something unexpected.
    Upstream(UpstreamError),
    /// No random id could be made.
    Internal(String),
    /// With `--redis`: the session could not be shared with the other nodes (Redis is
    /// unreachable), so none was made.
    Unavailable(String),
}

/// With `--redis`: whether a cookie names a session cannot be told right now (Redis or
/// Keystone cannot be asked). Not the same as no session: the cookie is kept, and the
/// request is answered `503`, since the session may well go on.
#[derive(Debug)]
pub struct Unknown(pub String);

/// Every session, and the sign-in rules.
#[derive(Debug)]
pub struct Sessions {
    client: Arc<OpenStackClient>,
    rooms: Rooms,
    store: Box<dyn SessionStore>,
    /// With `--redis`: the records every node shares.
    shared: Option<Arc<Shared>>,
    limiter: Limiter,
    /// With `--redis`: failed sign-ins counted by every node, beside this node's count.
    shared_limiter: Option<SharedLimiter>,
    config: SessionConfig,
    /// Sessions open, as of the last sweep (`stalecast_sessions`).
    open: prometheus_client::metrics::gauge::Gauge,
}

impl Sessions {
    /// Sessions kept in memory, signing users in at `client`'s Keystone; shared with the
    /// cluster's other nodes through `shared` (with `--redis`).
    pub fn new(client: Arc<OpenStackClient>, config: SessionConfig, shared: Option<Arc<Shared>>) -> Arc<Sessions> {
        let config = SessionConfig { refresh_every: config.refresh_every.min(MAX_REFRESH), ..config };
        Arc::new(Sessions {
            client,
            rooms: Rooms::default(),
            store: Box::new(MemoryStore::default()),
            shared_limiter: shared.as_ref().map(|shared| shared.limiter(config.limits)),
            shared,
            limiter: Limiter::new(config.limits),
            config,
            open: Default::default(),
        })
    }

    /// The number of open sessions, as of the last sweep (every [`SWEEP`]): what
    /// `/metrics` shows as `stalecast_sessions`.
    pub fn open_gauge(&self) -> prometheus_client::metrics::gauge::Gauge {
        self.open.clone()
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Starts the sweeper (and, with `--redis`, the follower of endings published by
    /// other nodes); they stop when `shutdown` fires.
    pub fn run(self: &Arc<Self>, shutdown: CancellationToken, tasks: &mut JoinSet<()>) {
        let sessions = self.clone();
        let (told, mut endings) = mpsc::unbounded_channel();
        let resubscribed = Arc::new(Notify::new());
        let mut told = Some(told);
        if let Some(shared) = &self.shared
            && let Some(told) = told.take()
        {
            tasks.spawn(shared::listen(shared.clone(), told, resubscribed.clone(), shutdown.clone()));
        }
        tasks.spawn(async move {
            // Without Redis nothing is ever told: the channel stays open and quiet.
            let _told = told;
            let mut ticks = tokio::time::interval(SWEEP);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sweeps: u32 = 0;
            let mut check_now = false;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    Some((key, why)) = endings.recv() => sessions.told(&key, why).await,
                    // Endings published while the subscription was down were missed.
                    _ = resubscribed.notified() => check_now = true,
                    _ = ticks.tick() => {
                        sweeps = sweeps.wrapping_add(1);
                        let check = sessions.shared.as_ref().is_some_and(|shared| {
                            shared.take_suspect()
                                || check_now
                                || !shared.listening()
                                || sweeps.is_multiple_of(CHECK_RECORDS_EVERY)
                        });
                        check_now = false;
                        sessions.sweep(check).await;
                    }
                }
            }
        });
    }

    /// Marks the sessions whose record is gone, for the sweep to end them. When Redis
    /// lost its data rather (the records' marker changed), writes back the records of
    /// every session this node holds instead. Unreachable: nothing is known, the
    /// sessions go on (and idle ones end here).
    async fn check_records(&self, shared: &Shared, all: &[Arc<Session>]) -> redis::RedisResult<()> {
        let held: Vec<&Arc<Session>> = all.iter().filter(|s| s.record.is_some() && s.ending().is_none()).collect();
        let lost = shared.lost().await?;
        if shared.take_restore() {
            let now = Instant::now();
            let records: Vec<(String, Record, Duration)> = held
                .iter()
                .map(|s| (s.id.clone(), self.record_of(s), s.idle_timeout.min(s.ends.saturating_duration_since(now))))
                .filter(|(_, _, ttl)| !ttl.is_zero())
                .collect();
            tracing::warn!(
                sessions = records.len(),
                "Redis lost the sessions' records (restarted empty, or flushed): writing back those this node holds"
            );
            if let Err(error) = shared.restore(&records).await {
                tracing::warn!(%error, "could not write the sessions' records back; trying again");
            }
            return Ok(());
        }
        if lost {
            return Ok(());
        }
        let keys: Vec<RecordKey> = held.iter().filter_map(|s| s.record.clone()).collect();
        let found = shared.existing(&keys).await?;
        for (session, exists) in held.iter().zip(found) {
            if !exists {
                session.gone.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// What Redis keeps of `session`.
    fn record_of(&self, session: &Session) -> Record {
        Record {
            user_id: session.user.id.clone(),
            user_name: session.user.name.clone(),
            user_domain: session.user.domain.clone(),
            token: session.token.secret.clone(),
            ends_ms: unix_ms(session.ends_at),
            idle_ms: session.idle_timeout.as_millis() as u64,
        }
    }

    /// Another node ended the session of `key`: this node's copy ends too.
    async fn told(&self, key: &RecordKey, why: Ending) {
        let all = self.store.all().await;
        if let Some(session) = all.into_iter().find(|s| s.record.as_ref() == Some(key)) {
            self.finish(&session, why, Reach::Told).await;
        }
    }

    /// Why `session` is over at `now`, if it is, and how far its end reaches.
    fn over(&self, session: &Session, now: Instant) -> Option<(Ending, Reach)> {
        if session.gone.load(Ordering::Relaxed) {
            return Some((session.vanished(now), Reach::Gone));
        }
        if let Some(ending) = session.ending() {
            return Some((ending, Reach::Everywhere));
        }
        if now >= session.ends {
            return Some((Ending::Lifetime, Reach::Everywhere));
        }
        if session.idle_here(now) {
            // A shared session's idle clock is its record's TTL, which any node that
            // serves it pushes back: idle here is not idle while Redis says otherwise.
            // When Redis cannot say, this node's copy ends (the others may go on).
            return match (&session.record, &self.shared) {
                (Some(_), Some(shared)) if shared.up() => None,
                (Some(_), Some(_)) => Some((Ending::Idle, Reach::Here)),
                _ => Some((Ending::Idle, Reach::Everywhere)),
            };
        }
        None
    }

    /// Ends the sessions that are over (with `check_records`, also those whose record
    /// vanished from Redis), starts the re-reading of memberships that are due, forgets
    /// old sign-in failures.
    async fn sweep(self: &Arc<Self>, check_records: bool) {
        let all = self.store.all().await;
        if check_records && let Some(shared) = &self.shared {
            // Bounded, so that a Redis in trouble does not hold up the rest of the sweep.
            let checked = tokio::time::timeout(SWEEP * 2, self.check_records(shared, &all)).await;
            if let Ok(Err(error)) = checked {
                tracing::debug!(%error, "could not check the sessions' records");
            }
        }
        let now = Instant::now();
        let mut open = all.len();
        for session in all {
            if let Some((why, reach)) = self.over(&session, now) {
                self.finish(&session, why, reach).await;
                open -= 1;
                continue;
            }
            let due = *session.read_at.read().unwrap_or_else(|p| p.into_inner()) + self.config.refresh_every <= now;
            if due && !session.refreshing.swap(true, Ordering::AcqRel) {
                let sessions = self.clone();
                tokio::spawn(async move {
                    sessions.refresh(&session).await;
                    session.refreshing.store(false, Ordering::Release);
                });
            }
        }
        self.open.set(open as i64);
        self.limiter.prune(now);
    }

    /// Signs `user` of `domain` (by name; the default domain when absent) in with
    /// `password`, coming from `address`.
    pub async fn sign_in(
        &self,
        user: &str,
        password: &str,
        domain: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Arc<Session>, SignInError> {
        let domain_key = domain.unwrap_or("default");
        self.limiter.check(user, domain_key, address, Instant::now()).map_err(SignInError::Limited)?;
        if let Some(shared) = &self.shared_limiter {
            // Refused before Keystone is asked when the cluster cannot count: no node may
            // become the one where the limits do not hold.
            match shared.check(user, domain_key, address).await {
                Ok(None) => {}
                Ok(Some(wait)) => return Err(SignInError::Limited(wait)),
                Err(e) => return Err(SignInError::Unavailable(format!("counting failed sign-ins in Redis: {e}"))),
            }
        }
        let named = Named { name: Some(user.to_owned()), domain_name: domain.map(str::to_owned), ..Named::default() };
        let token = match self.client.sign_in(&named, password).await {
            Ok(token) => token,
            Err(UpstreamError::Unauthorized(_)) => {
                self.limiter.failed(user, domain_key, address, Instant::now());
                if let Some(shared) = &self.shared_limiter
                    && let Err(error) = shared.failed(user, domain_key, address).await
                {
                    // This node counted it; the others will not.
                    tracing::warn!(%error, "a failed sign-in could not be counted in Redis");
                }
                tracing::info!(user, ?address, "sign-in refused");
                return Err(SignInError::Refused);
            }
            Err(e) => return Err(SignInError::Upstream(e)),
        };
        self.limiter.succeeded(user, domain_key);
        if let Some(shared) = &self.shared_limiter
            && let Err(error) = shared.succeeded(user, domain_key).await
        {
            tracing::warn!(%error, "a sign-in's earlier failures could not be cleared in Redis");
        }
        let projects = match self.memberships_of(&token, &[]).await {
            Ok(projects) => projects,
            Err(e) => {
                self.revoke(vec![token]).await;
                return Err(SignInError::Upstream(e));
            }
        };
        let id = session_id().map_err(SignInError::Internal)?;
        let until_token = token.expires_at.and_then(|at| at.duration_since(SystemTime::now()).ok());
        let life = until_token.map_or(self.config.lifetime, |t| t.min(self.config.lifetime));
        let user = User {
            id: token.user_id.clone().unwrap_or_default(),
            name: token.user_name.clone().unwrap_or_else(|| user.to_owned()),
            domain: token.user_domain.clone().or_else(|| domain.map(str::to_owned)).unwrap_or_else(|| "Default".into()),
        };
        let record = self.shared.as_ref().map(|shared| shared.key(&id));
        let session = self.open(id, user, token, projects, life, self.config.idle_timeout, record);
        if let Some(shared) = &self.shared {
            // Shared before anyone holds the cookie: a session only this node knew would
            // fail the user on the next node, and outlive a sign-out made there.
            let record = self.record_of(&session);
            if let Err(detail) = shared.save(&session.id, &record, self.config.idle_timeout.min(life)).await {
                self.revoke(session.tokens()).await;
                return Err(SignInError::Unavailable(detail));
            }
        }
        self.store.keep(session.clone()).await;
        tracing::info!(user = %session.user.name, domain = %session.user.domain, projects = session.memberships().projects.len(),
            "signed in");
        Ok(session)
    }

    /// A new session of `user`, who signed in with `token` and has `projects`, ending
    /// `life` from now at the latest, or after `idle_timeout` without a request; its
    /// record is kept under `record` with `--redis`.
    #[allow(clippy::too_many_arguments)]
    fn open(
        &self,
        id: String,
        user: User,
        token: Token,
        projects: Vec<Membership>,
        life: Duration,
        idle_timeout: Duration,
        record: Option<RecordKey>,
    ) -> Arc<Session> {
        let room = self.rooms.room(projects.iter().map(|m| m.project.id.as_str()));
        let now = Instant::now();
        Arc::new(Session {
            id,
            user,
            token,
            started: now,
            ends: now + life,
            ends_at: SystemTime::now() + life,
            idle_timeout,
            last_seen: AtomicU64::new(0),
            memberships: RwLock::new(Arc::new(Memberships { projects, room: room.clone() })),
            read_at: RwLock::new(now),
            refreshing: AtomicBool::new(false),
            access: watch::channel(Some(room)).0,
            ending: RwLock::new(None),
            record,
            touched: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        })
    }

    /// The running session with id `id`, marked as used now. With `--redis`, a session
    /// this node does not hold is rebuilt from its record ([`Unknown`] when that cannot
    /// be done right now).
    pub async fn find(&self, id: &str) -> Result<Option<Arc<Session>>, Unknown> {
        let session = match self.store.find(id).await {
            Some(session) => session,
            None => match self.rebuild(id).await? {
                Some(session) => session,
                None => return Ok(None),
            },
        };
        let now = Instant::now();
        if let Some((why, reach)) = self.over(&session, now) {
            self.finish(&session, why, reach).await;
            return Ok(None);
        }
        session.seen(now);
        self.touch(&session, now);
        Ok(Some(session))
    }

    /// With `--redis`: pushes `session`'s record's expiry back to its idle timeout (never
    /// past its end), at most once per [`TOUCH_EVERY`], in the background so that no
    /// request waits on Redis. A record found gone has the next sweep look at every record
    /// (the session ended elsewhere or expired, or Redis lost it).
    fn touch(&self, session: &Arc<Session>, now: Instant) {
        let (Some(shared), Some(key)) = (&self.shared, &session.record) else { return };
        let at = now.saturating_duration_since(session.started).as_millis() as u64;
        let last = session.touched.load(Ordering::Relaxed);
        if at < last + TOUCH_EVERY.as_millis() as u64
            || session.touched.compare_exchange(last, at, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return;
        }
        let ttl = session.idle_timeout.min(session.ends.saturating_duration_since(now));
        if ttl.is_zero() {
            return;
        }
        let (shared, key) = (shared.clone(), key.clone());
        tokio::spawn(async move {
            if let Ok(false) = shared.touch(&key, ttl).await {
                shared.suspect();
            }
        });
    }

    /// With `--redis`: the session `id` from its record, if Redis has one, kept on this
    /// node from now on. The token the user signed in with is validated at Keystone (a
    /// token it refuses ends the session everywhere) and scoped to each of their projects
    /// with tokens of this node's own. [`Unknown`] when Redis or Keystone cannot be asked.
    async fn rebuild(&self, id: &str) -> Result<Option<Arc<Session>>, Unknown> {
        let Some(shared) = self.shared.as_ref() else { return Ok(None) };
        let unknown = |what: &str, error: &dyn std::fmt::Display| {
            tracing::warn!(%error, "{what}");
            Unknown(what.to_owned())
        };
        let record = match shared.load(id).await {
            Ok(Some(record)) => record,
            // Missing just after Redis lost its data: maybe not written back yet.
            Ok(None) if shared.lost().await.unwrap_or(false) || shared.recovering() => {
                shared.suspect();
                return Err(Unknown("Redis lost the sessions' records; they are being written back".into()));
            }
            Ok(None) => return Ok(None),
            Err(error) => return Err(unknown("could not read a session's record from Redis", &error)),
        };
        let key = shared.key(id);
        let Ok(life) = (UNIX_EPOCH + Duration::from_millis(record.ends_ms)).duration_since(SystemTime::now()) else {
            return Ok(None);
        };
        let idle_timeout = Duration::from_millis(record.idle_ms);
        // This request uses it: its idle clock starts again, on every node.
        match shared.touch(&key, idle_timeout.min(life)).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(error) => return Err(unknown("could not read a session's record from Redis", &error)),
        }
        let held = Token {
            secret: record.token.clone(),
            expires_at: None,
            renew_at: None,
            user_id: Some(record.user_id.clone()),
            user_name: Some(record.user_name.clone()),
            user_domain: Some(record.user_domain.clone()),
            project_id: None,
            project_name: None,
            roles: Vec::new(),
            catalog: Default::default(),
        };
        let refused = |why: &str| {
            tracing::info!(user = %record.user_name, why, "a shared session cannot be taken over: it ends");
        };
        let token = match self.client.validate(&held).await {
            Ok(token) if token.user_id.as_deref() == Some(record.user_id.as_str()) => token,
            Ok(_) => {
                refused("its token names another user");
                self.end_record(shared, &key, Ending::Revoked).await;
                return Ok(None);
            }
            Err(UpstreamError::Unauthorized(_)) => {
                refused("Keystone no longer accepts its token");
                self.end_record(shared, &key, Ending::Revoked).await;
                return Ok(None);
            }
            Err(error) => return Err(unknown("could not validate a shared session's token at Keystone", &error)),
        };
        let projects = match self.memberships_of(&token, &[]).await {
            Ok(projects) => projects,
            Err(UpstreamError::Unauthorized(_)) => {
                refused("Keystone no longer accepts its token");
                self.end_record(shared, &key, Ending::Revoked).await;
                return Ok(None);
            }
            Err(error) => return Err(unknown("could not read a shared session's projects at Keystone", &error)),
        };
        let life =
            token.expires_at.and_then(|at| at.duration_since(SystemTime::now()).ok()).map_or(life, |t| t.min(life));
        let user = User { id: record.user_id, name: record.user_name, domain: record.user_domain };
        let session = self.open(id.to_owned(), user, token, projects, life, idle_timeout, Some(key));
        // Two requests may have rebuilt it at once: the first kept is the one.
        let kept = self.store.keep(session.clone()).await;
        if Arc::ptr_eq(&kept, &session) {
            tracing::info!(user = %session.user.name, projects = session.memberships().projects.len(),
                "took over a session signed in on another node");
        } else {
            self.revoke(session.project_tokens()).await;
        }
        Ok(Some(kept))
    }

    /// Ends the session of `key` on every node; a failure is logged (the record expires on
    /// its own, and each node's copy ends when it finds the token refused).
    async fn end_record(&self, shared: &Shared, key: &RecordKey, why: Ending) {
        if let Err(error) = shared.end(key, why).await {
            tracing::warn!(%error, "could not end a session in Redis; it ends at its next check on each node");
        }
    }

    /// Reads `session`'s memberships again now (the cloud refused one of its tokens):
    /// it ends at once if Keystone no longer accepts the token it stands on. Nothing
    /// happens if a re-reading is under way already.
    pub async fn recheck(&self, session: &Session) {
        if !session.refreshing.swap(true, Ordering::AcqRel) {
            self.refresh(session).await;
            session.refreshing.store(false, Ordering::Release);
        }
    }

    /// Ends `session` at the user's request: its streams end (on every node, with
    /// `--redis`) and its tokens are revoked.
    pub async fn sign_out(&self, session: &Session) {
        self.finish(session, Ending::SignedOut, Reach::Everywhere).await;
    }

    /// Ends a session for `why`, once: drops it, ends its streams, tells the other nodes
    /// when it ends `Everywhere`, revokes its tokens (those `reach` says).
    async fn finish(&self, session: &Session, why: Ending, reach: Reach) {
        self.store.drop_session(session.id()).await;
        if !session.end(why) {
            return;
        }
        tracing::info!(user = %session.user.name, ?why, ?reach, "session ended");
        let tokens = match reach {
            Reach::Everywhere => {
                if let (Some(shared), Some(key)) = (&self.shared, &session.record) {
                    self.end_record(shared, key, why).await;
                }
                session.tokens()
            }
            Reach::Gone => session.tokens(),
            Reach::Told | Reach::Here => session.project_tokens(),
        };
        self.revoke(tokens).await;
    }

    /// Revokes `tokens` at Keystone; a failure is logged (the session is over either way,
    /// and each token expires on its own).
    async fn revoke(&self, tokens: Vec<Token>) {
        let revoked = futures_util::future::join_all(tokens.iter().map(|t| self.client.revoke(t))).await;
        for error in revoked.into_iter().filter_map(Result::err) {
            tracing::warn!(%error, "could not revoke a token of an ended session");
        }
    }

    /// Reads `session`'s projects and roles again; its room changes (and its streams
    /// resync) when they did. A token Keystone no longer accepts ends the session; a
    /// Keystone that cannot be reached leaves them as they were until the next try.
    async fn refresh(&self, session: &Session) {
        let held = session.memberships();
        match self.memberships_of(&session.token, &held.projects).await {
            Ok(projects) => {
                *session.read_at.write().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                let room = self.rooms.room(projects.iter().map(|m| m.project.id.as_str()));
                let changed = room.id() != held.room.id();
                *session.memberships.write().unwrap_or_else(|p| p.into_inner()) =
                    Arc::new(Memberships { projects, room: room.clone() });
                if changed && session.ending().is_none() {
                    tracing::info!(user = %session.user.name, projects = ?room.projects(), "the user's projects changed");
                    session.access.send_replace(Some(room));
                }
                // Tokens no longer held (projects lost, tokens replaced) are revoked.
                let kept = session.memberships();
                let gone: Vec<Token> = held
                    .projects
                    .iter()
                    .filter(|m| !kept.projects.iter().any(|k| k.token.secret == m.token.secret))
                    .map(|m| m.token.clone())
                    .collect();
                self.revoke(gone).await;
            }
            Err(UpstreamError::Unauthorized(_)) => {
                if session.ending().is_none() {
                    tracing::info!(user = %session.user.name, "Keystone no longer accepts the session's token");
                }
                self.finish(session, Ending::Revoked, Reach::Everywhere).await;
            }
            Err(error) => {
                tracing::warn!(user = %session.user.name, %error, "could not read the user's projects again; keeping them");
            }
        }
    }

    /// The projects `token`'s user has a role on, each with the user's roles there and a
    /// token scoped to it: a token in `held` still valid is kept (its roles read again),
    /// else one is issued. A project whose token Keystone refuses is left out (the role
    /// was taken away meanwhile). `Unauthorized`: `token` itself is no longer valid.
    async fn memberships_of(&self, token: &Token, held: &[Membership]) -> Result<Vec<Membership>, UpstreamError> {
        let projects = self.client.projects_of(token).await?;
        let read = projects.into_iter().map(|project| async move {
            if let Some(kept) = held.iter().find(|m| m.project.id == project.id) {
                match self.client.validate(&kept.token).await {
                    Ok(now) => return Ok(Some(Membership { project, roles: now.roles, token: kept.token.clone() })),
                    Err(UpstreamError::Unauthorized(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            match self.client.rescope(token, &project.id).await {
                Ok(scoped) => Ok(Some(Membership { project, roles: scoped.roles.clone(), token: scoped })),
                Err(UpstreamError::Unauthorized(_)) => Ok(None),
                Err(e) => Err(e),
            }
        });
        // A few at a time: an admin of many projects signs in without a burst of requests
        // that a small Keystone (sqlite) answers with "database is locked".
        let read: Vec<Option<Membership>> =
            futures_util::stream::iter(read).buffer_unordered(MEMBERSHIP_READS).try_collect().await?;
        Ok(read.into_iter().flatten().collect())
    }

    /// How many sessions are running.
    pub async fn count(&self) -> usize {
        self.store.all().await.len()
    }

    /// A session of `user` with `role` in each project of `projects`, made without
    /// Keystone (for tests of the layers above).
    #[cfg(test)]
    pub(crate) fn made_by_hand(&self, user: &str, projects: &[(&str, &str)]) -> Arc<Session> {
        let token = |project: Option<&str>, roles: &[&str]| {
            // Every service at the discard port: a call with the token fails at once.
            let catalog: Vec<serde_json::Value> = ["compute", "volumev3", "image", "network"]
                .iter()
                .map(|kind| {
                    serde_json::json!({"type": kind, "endpoints": [
                        {"interface": "public", "region": "RegionOne", "url": "http://127.0.0.1:9/v2.1"}]})
                })
                .collect();
            let body = serde_json::json!({"token": {"expires_at": "2100-01-01T00:00:00Z",
                "project": project.map(|p| serde_json::json!({"id": p, "name": p})),
                "roles": roles.iter().map(|r| serde_json::json!({"name": r})).collect::<Vec<_>>(),
                "catalog": catalog}});
            Token::read(format!("token-of-{user}"), body.to_string().as_bytes(), SystemTime::now()).expect("token")
        };
        let projects: Vec<Membership> = projects
            .iter()
            .map(|(id, role)| {
                let roles: &[&str] = if *role == "member" { &["member", "reader"] } else { &[role] };
                Membership {
                    project: Project {
                        id: (*id).into(),
                        name: (*id).into(),
                        description: String::new(),
                        enabled: true,
                    },
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    token: token(Some(id), roles),
                }
            })
            .collect();
        let user = User { id: format!("usr-{user}"), name: user.into(), domain: "Default".into() };
        let (life, idle) = (self.config.lifetime, self.config.idle_timeout);
        self.open(session_id().expect("random id"), user, token(None, &[]), projects, life, idle, None)
    }
}

/// A new session id: 32 bytes from the operating system's random source, as URL-safe
/// base64 (43 characters).
fn session_id() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng.try_fill_bytes(&mut bytes).map_err(|e| format!("no random bytes for a session id: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `at` in milliseconds since the Unix epoch.
fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Whether `id` could be a session id at all: what a cookie carries is checked before
/// any store is asked.
pub fn plausible_id(id: &str) -> bool {
    id.len() == 43 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_long_random_and_url_safe() {
        let a = session_id().expect("id");
        let b = session_id().expect("id");
        assert_ne!(a, b);
        assert!(plausible_id(&a) && plausible_id(&b), "{a}");
        assert!(!plausible_id("") && !plausible_id(&format!("{}!", &a[..42])) && !plausible_id(&format!("{a}x")));
    }

    #[test]
    fn a_reader_may_not_write_and_any_other_role_may() {
        let token = Token::read("t".into(), br#"{"token": {"expires_at": "2030-01-01T00:00:00Z"}}"#, SystemTime::now())
            .expect("token");
        let member = |roles: &[&str]| Membership {
            project: Project { id: "p".into(), name: "p".into(), description: String::new(), enabled: true },
            roles: roles.iter().map(|r| r.to_string()).collect(),
            token: token.clone(),
        };
        assert!(!member(&["reader"]).may_write());
        assert!(!member(&[]).may_write());
        assert!(member(&["member", "reader"]).may_write());
        assert!(member(&["admin", "member", "reader"]).may_write());
    }
}
