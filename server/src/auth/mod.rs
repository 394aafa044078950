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
//! What each layer does with a session: the domain filters by its room and acts with the
//! token of a project ([`Membership`]); the wire layer reads the cookie and sets it.

pub mod limiter;
pub mod shared;
pub mod store;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{StreamExt as _, TryStreamExt as _};
use rand::TryRng;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use limiter::Limiter;
pub use limiter::Limits;
use store::{MemoryStore, SessionStore};

use crate::updates::{Access, Room, Rooms};
use crate::upstream::UpstreamError;
use crate::upstream::auth::{Named, Token};
use crate::upstream::client::OpenStackClient;
use crate::upstream::model::Project;

/// How often the sweeper looks for sessions that ended or whose memberships are due:
/// a session that expires ends its streams within this (the issue asks for a second).
pub const SWEEP: Duration = Duration::from_millis(250);

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

    /// Why it is over at `now`, if it is.
    fn over(&self, now: Instant) -> Option<Ending> {
        if let Some(ending) = self.ending() {
            return Some(ending);
        }
        let last_seen = self.started + Duration::from_millis(self.last_seen.load(Ordering::Relaxed));
        if now.saturating_duration_since(last_seen) >= self.idle_timeout {
            return Some(Ending::Idle);
        }
        (now >= self.ends).then_some(Ending::Lifetime)
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
        let memberships = self.memberships();
        std::iter::once(self.token.clone()).chain(memberships.projects.iter().map(|m| m.token.clone())).collect()
    }
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
}

/// Every session, and the sign-in rules.
#[derive(Debug)]
pub struct Sessions {
    client: Arc<OpenStackClient>,
    rooms: Rooms,
    store: Box<dyn SessionStore>,
    limiter: Limiter,
    config: SessionConfig,
    /// Sessions open, as of the last sweep (`stalecast_sessions`).
    open: prometheus_client::metrics::gauge::Gauge,
}

impl Sessions {
    /// Sessions kept in memory, signing users in at `client`'s Keystone.
    pub fn new(client: Arc<OpenStackClient>, config: SessionConfig) -> Arc<Sessions> {
        let config = SessionConfig { refresh_every: config.refresh_every.min(MAX_REFRESH), ..config };
        Arc::new(Sessions {
            client,
            rooms: Rooms::default(),
            store: Box::new(MemoryStore::default()),
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

    /// Starts the sweeper; it stops when `shutdown` fires.
    pub fn run(self: &Arc<Self>, shutdown: CancellationToken, tasks: &mut JoinSet<()>) {
        let sessions = self.clone();
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => sessions.sweep().await,
                }
            }
        });
    }

    /// Ends the sessions that are over, starts the re-reading of memberships that are
    /// due, forgets old sign-in failures.
    async fn sweep(self: &Arc<Self>) {
        let now = Instant::now();
        let all = self.store.all().await;
        let mut open = all.len();
        for session in all {
            if let Some(why) = session.over(now) {
                self.finish(&session, why).await;
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
        let named = Named { name: Some(user.to_owned()), domain_name: domain.map(str::to_owned), ..Named::default() };
        let token = match self.client.sign_in(&named, password).await {
            Ok(token) => token,
            Err(UpstreamError::Unauthorized(_)) => {
                self.limiter.failed(user, domain_key, address, Instant::now());
                tracing::info!(user, ?address, "sign-in refused");
                return Err(SignInError::Refused);
            }
            Err(e) => return Err(SignInError::Upstream(e)),
        };
        self.limiter.succeeded(user, domain_key);
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
        let session = self.open(id, user, token, projects, life);
        self.store.keep(session.clone()).await;
        tracing::info!(user = %session.user.name, domain = %session.user.domain, projects = session.memberships().projects.len(),
            "signed in");
        Ok(session)
    }

    /// A new session of `user`, who signed in with `token` and has `projects`, ending
    /// `life` from now at the latest.
    fn open(&self, id: String, user: User, token: Token, projects: Vec<Membership>, life: Duration) -> Arc<Session> {
        let room = self.rooms.room(projects.iter().map(|m| m.project.id.as_str()));
        let now = Instant::now();
        Arc::new(Session {
            id,
            user,
            token,
            started: now,
            ends: now + life,
            ends_at: SystemTime::now() + life,
            idle_timeout: self.config.idle_timeout,
            last_seen: AtomicU64::new(0),
            memberships: RwLock::new(Arc::new(Memberships { projects, room: room.clone() })),
            read_at: RwLock::new(now),
            refreshing: AtomicBool::new(false),
            access: watch::channel(Some(room)).0,
            ending: RwLock::new(None),
        })
    }

    /// The running session with id `id`, marked as used now.
    pub async fn find(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.store.find(id).await?;
        let now = Instant::now();
        if let Some(why) = session.over(now) {
            self.finish(&session, why).await;
            return None;
        }
        session.seen(now);
        Some(session)
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

    /// Ends `session` at the user's request: its streams end and its tokens are revoked.
    pub async fn sign_out(&self, session: &Session) {
        self.finish(session, Ending::SignedOut).await;
    }

    /// Ends a session for `why`, once: drops it, ends its streams, revokes its tokens.
    async fn finish(&self, session: &Session, why: Ending) {
        self.store.drop_session(session.id()).await;
        if !session.end(why) {
            return;
        }
        tracing::info!(user = %session.user.name, ?why, "session ended");
        self.revoke(session.tokens()).await;
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
                self.store.drop_session(session.id()).await;
                if session.end(Ending::Revoked) {
                    tracing::info!(user = %session.user.name, "Keystone no longer accepts the session's token");
                    self.revoke(session.tokens()).await;
                }
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
        self.open(session_id().expect("random id"), user, token(None, &[]), projects, self.config.lifetime)
    }
}

/// A new session id: 32 bytes from the operating system's random source, as URL-safe
/// base64 (43 characters).
fn session_id() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng.try_fill_bytes(&mut bytes).map_err(|e| format!("no random bytes for a session id: {e}"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
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
