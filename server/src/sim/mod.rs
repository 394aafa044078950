//! An OpenStack cloud, simulated, served by the same binary: the default upstream of
//! `stalecast serve` and of the tests, or alone with `stalecast sim`.
//!
//! It speaks Keystone ([`identity`]), Nova ([`compute`]), Cinder ([`volume`]), Glance
//! ([`image`]) and Neutron ([`network`]) as deployments do, faithfully enough for the
//! stock `openstack` CLI: version discovery documents; the catalog URLs real deployments
//! register (Keystone, Glance and Neutron unversioned, Cinder with the project in its
//! URL); tokens scoped per project, with users, roles and role assignments deciding what
//! each may see and do; query filters, `all_tenants` for admins only, pages of the real
//! services' sizes with `limit` and `marker` ([`listing`]). Resources move through real
//! status transitions (`BUILD`→`ACTIVE`, `creating`→`available`) after a delay, optional
//! churn changes things on its own, fault knobs (`PUT /_sim/faults`) add latency, errors
//! and malformed bodies for tests, and `POST /_sim/seed` (or `SimConfig::seed`) grows
//! the cloud with realistic records ([`seed`]). `/_sim/*` is the simulator's own control
//! surface, without authentication: it binds to loopback by default.
//!
//! Beside a real Keystone (`stalecast sim --keystone URL`, [`Sim::with_keystone`]) it
//! plays only Nova and Neutron for that Keystone's users: it validates their tokens
//! against it, starts empty, and is registered in that Keystone's catalog by whoever
//! runs it.

pub mod cidr;
pub mod compute;
pub mod identity;
pub mod image;
pub mod listing;
pub mod network;
pub mod records;
pub mod seed;
pub mod volume;
pub mod world;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router, ServiceExt};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer;

use identity::Identity;
use seed::Seed;
use world::World;

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The service account: admin of every project (see [`identity`]).
    pub user: String,
    pub password: String,
    /// The service account's usual project (by name).
    pub project: String,
    /// How long a token lives.
    pub token_ttl: Duration,
    /// How long a new server stays `BUILD` and a new volume `creating`.
    pub transition_delay: Duration,
    /// When set, a random server changes power state this often.
    pub churn_interval: Option<Duration>,
    /// Realistic records added to the seeded world at start.
    pub seed: Seed,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            user: "admin".into(),
            password: "stalecast".into(),
            project: "admin".into(),
            token_ttl: Duration::from_secs(3600),
            transition_delay: Duration::from_secs(2),
            churn_interval: None,
            seed: Seed::default(),
        }
    }
}

/// Fault injection, adjustable at run time through `PUT /_sim/faults`, on the API calls
/// (authentication, `/v3/auth/tokens`, and the version documents keep answering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Added to every API answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of API requests answered with an error (0.0 to 1.0), a 500 unless
    /// `errorStatus` says otherwise.
    #[serde(default)]
    pub error_rate: f64,
    /// The status of those errors (400 to 599), with the fault body the services send
    /// for it (`{"overLimit": …}` for a 413 or a 429, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_status: Option<u16>,
    /// Share of API requests answered with a 200 whose body is not JSON (0.0 to 1.0).
    #[serde(default)]
    pub garbage_rate: f64,
    /// Answer every API read (`GET`: listings and shows) with a 500, while writes and
    /// authentication keep working: a write that succeeds and the read after it fails.
    #[serde(default)]
    pub fail_reads: bool,
    /// Added to every listing (a `GET` of a whole collection) after the world was read:
    /// its answer says how the cloud was when the request arrived, and arrives this much
    /// later, as a large listing from a busy cloud does. Shows and writes stay fast.
    #[serde(default)]
    pub listing_latency_ms: u64,
}

/// The simulator's state. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    world: Mutex<World>,
    faults: Mutex<Faults>,
    identity: Identity,
    /// Requests per API call (`GET volumes` a listing, `GET volume` a show, `POST volumes`
    /// a create, …), for tests and the load test.
    requests: Mutex<HashMap<String, u64>>,
    /// The simulator's own tasks (churn, delayed status transitions), stopped with it.
    tasks: TaskTracker,
    stopping: CancellationToken,
}

impl Sim {
    pub fn new(config: SimConfig) -> Arc<Self> {
        let mut world = World::seeded();
        if !config.seed.is_empty() {
            let started = Instant::now();
            world.populate(&config.seed);
            let totals = world.totals();
            tracing::info!(?totals, took = ?started.elapsed(), "simulator seeded");
        }
        let identity = Identity::local(&config.user, &config.password, config.token_ttl, &world);
        Self::build(config, world, identity)
    }

    /// A simulator that plays only Nova and Neutron beside the real Keystone at
    /// `keystone`, whose tokens it validates there; it starts with no records.
    pub fn with_keystone(config: SimConfig, keystone: &str) -> Result<Arc<Self>, String> {
        let identity = Identity::external(keystone)?;
        Ok(Self::build(config, World::empty(), identity))
    }

    fn build(config: SimConfig, world: World, identity: Identity) -> Arc<Self> {
        Arc::new(Sim {
            config,
            world: Mutex::new(world),
            faults: Mutex::new(Faults::default()),
            identity,
            requests: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
        })
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Invalidates every token, as a Keystone restart or revocation would.
    pub fn revoke_tokens(&self) {
        self.identity.revoke_all();
    }

    fn count(&self, what: &str) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()).entry(what.to_owned()).or_default() += 1;
    }

    /// Requests served so far, by what they asked for (`GET servers`, …).
    pub fn request_counts(&self) -> HashMap<String, u64> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many tokens Keystone has issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.identity.tokens_issued()
    }
}

/// The simulator's routes (before [`strip_project`], which [`run`] puts in front).
pub fn router(sim: Arc<Sim>) -> Router {
    // The fault knobs act on the API calls; authentication and the version documents
    // keep answering, so that a test's faults hit the call it is about (not the token a
    // write in another project needs first).
    let services = Router::new()
        .merge(identity::guarded_routes())
        .nest("/identity", identity::guarded_routes())
        .merge(compute::routes())
        .merge(volume::routes())
        .merge(image::routes())
        .merge(network::routes())
        .route_layer(middleware::from_fn_with_state(sim.clone(), authenticated))
        .layer(middleware::from_fn_with_state(sim.clone(), faulty));
    let open = Router::new()
        .merge(identity::open_routes())
        .nest("/identity", identity::open_routes())
        .merge(compute::open_routes())
        .merge(volume::open_routes())
        .merge(image::open_routes())
        .merge(network::open_routes());
    Router::new()
        .merge(open)
        .merge(services)
        .route("/_sim/faults", put(put_faults).get(get_faults))
        .route("/_sim/seed", post(post_seed))
        .route("/_sim/revoke-tokens", post(revoke))
        .route("/_sim/stats", get(stats))
        .with_state(sim)
}

/// Serves the simulator on `listener` until `shutdown` fires; starts churn if configured.
/// Returns once its connections and its own tasks have ended.
pub async fn run(listener: TcpListener, sim: Arc<Sim>, shutdown: CancellationToken) -> std::io::Result<()> {
    if let Some(every) = sim.config.churn_interval {
        sim.tasks.spawn(churn(sim.clone(), every, sim.stopping.clone()));
    }
    // Before routing: the project segment of a URL is taken out of the path.
    let app = middleware::from_fn(strip_project).layer(router(sim.clone()));
    let served = axum::serve(listener, ServiceExt::<Request>::into_make_service(app))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    sim.stopping.cancel();
    sim.tasks.close();
    sim.tasks.wait().await;
    served
}

/// The project a request's URL names (`/volume/v3/{project_id}/volumes`), which must be
/// the token's, and whether it is Nova's (whose refusal says more than Cinder's).
#[derive(Clone, Debug)]
struct UrlProject {
    project: String,
    nova: bool,
}

/// What may follow the version in a Nova or Cinder URL besides a project id.
const COLLECTIONS: &[&str] = &[
    "servers",
    "flavors",
    "volumes",
    "types",
    "snapshots",
    "backups",
    "attachments",
    "limits",
    "extensions",
    "images",
    "messages",
    "groups",
    "os-keypairs",
    "os-quota-sets",
    "os-availability-zone",
    "os-hypervisors",
    "os-services",
    "os-aggregates",
    "os-server-groups",
    "os-instance-actions",
    "os-simple-tenant-usage",
];

/// Takes the project id out of a Cinder (or legacy Nova) URL, so that one set of routes
/// serves both forms, and remembers it for [`authenticated`] to compare with the token's.
async fn strip_project(mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    for prefix in ["/volume/v3/", "/compute/v2.1/"] {
        let Some(rest) = path.strip_prefix(prefix) else { continue };
        let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if first.is_empty() || COLLECTIONS.contains(&first) {
            break;
        }
        let stripped = match request.uri().query() {
            Some(query) => format!("{}{tail}?{query}", prefix),
            None => format!("{}{tail}", prefix),
        };
        let stripped =
            if tail.is_empty() { stripped.replacen(prefix, prefix.trim_end_matches('/'), 1) } else { stripped };
        if let Ok(uri) = stripped.parse::<Uri>() {
            *request.uri_mut() = uri;
            request
                .extensions_mut()
                .insert(UrlProject { project: first.to_owned(), nova: prefix.starts_with("/compute") });
        }
        break;
    }
    next.run(request).await
}

/// Applies the fault knobs to an API call.
async fn faulty(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    let faults = sim.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let roll: f64 = rand::rng().random();
    let failed_read = faults.fail_reads && request.method() == axum::http::Method::GET;
    if failed_read || roll < faults.error_rate {
        let status = faults.error_status.and_then(|s| StatusCode::from_u16(s).ok());
        return fault(status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "simulated failure");
    }
    if roll < faults.error_rate + faults.garbage_rate {
        // A proxy that mangles answers: a write still reaches the API and takes effect,
        // only its answer is lost.
        if request.method() != axum::http::Method::GET {
            next.run(request).await;
        }
        return ([(header::CONTENT_TYPE, "application/json")], "<html>proxy error: this is not JSON").into_response();
    }
    next.run(request).await
}

/// Every service's token check, as keystonemiddleware does it: the caller goes into the
/// request's extensions for the handler; a project in the URL that is not the token's is
/// refused as real Nova and Cinder refuse it: with a `400` (measured against Cinder 29:
/// `Malformed request url`), not a `403`.
async fn authenticated(State(sim): State<Arc<Sim>>, mut request: Request, next: Next) -> Response {
    let token = request.headers().get("x-auth-token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let caller = if token.is_empty() { None } else { sim.identity.caller(&token).await };
    let Some(caller) = caller else {
        return identity::keystone_error(
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        );
    };
    if let Some(UrlProject { project, nova }) = request.extensions().get::<UrlProject>()
        && caller.project_id.as_deref() != Some(project.as_str())
    {
        let message = if *nova {
            format!(
                "Malformed request URL: URL's project_id '{project}' doesn't match Context's project_id '{}'",
                caller.project()
            )
        } else {
            "Malformed request url".to_owned()
        };
        return fault(StatusCode::BAD_REQUEST, &message);
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// A Nova- or Cinder-style fault body (`{"itemNotFound": {"code": 404, "message": …}}`).
pub fn fault(status: StatusCode, message: &str) -> Response {
    let key = match status {
        StatusCode::NOT_FOUND => "itemNotFound",
        StatusCode::BAD_REQUEST => "badRequest",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::CONFLICT => "conflictingRequest",
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => "overLimit",
        StatusCode::NOT_ACCEPTABLE => "notAcceptable",
        _ => "computeFault",
    };
    (status, Json(json!({ key: {"code": status.as_u16(), "message": message} }))).into_response()
}

/// Runs a status transition after the configured delay.
pub(crate) fn transition_later(sim: Arc<Sim>, id: String, apply: fn(&mut World, &str) -> bool) {
    let delay = sim.config.transition_delay;
    let stopping = sim.stopping.clone();
    sim.tasks.clone().spawn(async move {
        tokio::select! {
            _ = stopping.cancelled() => {}
            _ = tokio::time::sleep(delay) => {
                apply(&mut sim.world(), &id);
            }
        }
    });
}

/// Every `every`, a random server switches power state (ACTIVE ↔ SHUTOFF).
async fn churn(sim: Arc<Sim>, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let mut world = sim.world();
        let candidates: Vec<(String, &str)> = world
            .servers
            .iter()
            .filter_map(|s| match s["status"].as_str() {
                Some("ACTIVE") => Some((s["id"].as_str()?.to_owned(), "SHUTOFF")),
                Some("SHUTOFF") => Some((s["id"].as_str()?.to_owned(), "ACTIVE")),
                _ => None,
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let (id, to) = &candidates[rand::rng().random_range(0..candidates.len())];
        World::set_status(&mut world.servers, id, to);
        tracing::debug!(server = %id, status = to, "churn");
    }
}

async fn put_faults(State(sim): State<Arc<Sim>>, Json(faults): Json<Faults>) -> Response {
    let valid = |r: f64| (0.0..=1.0).contains(&r);
    if !valid(faults.error_rate) || !valid(faults.garbage_rate) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "errorRate and garbageRate must be between 0 and 1"})))
            .into_response();
    }
    if faults.error_status.is_some_and(|s| !(400..=599).contains(&s)) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "errorStatus must be between 400 and 599"})))
            .into_response();
    }
    sim.set_faults(faults);
    tracing::info!(?faults, "simulator faults set");
    Json(faults).into_response()
}

async fn get_faults(State(sim): State<Arc<Sim>>) -> Json<Faults> {
    Json(sim.faults())
}

/// `POST /_sim/seed {"servers":N,"volumes":N,"images":N,"networks":N,"snapshots":N,
/// "subnets":N,"seed":u64?}`: adds
/// that many realistic records, answers the totals. The batch is generated off the
/// runtime and outside the world's lock, so the simulator keeps answering meanwhile.
async fn post_seed(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    let bad = |message: String| (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response();
    let request: Seed = match serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body)) {
        Ok(request) => request,
        Err(error) if error.path().to_string() == "." => return bad(error.inner().to_string()),
        Err(error) => return bad(format!("{}: {}", error.path(), error.inner())),
    };
    if let Err(message) = request.check() {
        return bad(message);
    }
    let started = Instant::now();
    let context = sim.world().seed_context(SystemTime::now());
    let batch = match tokio::task::spawn_blocking(move || seed::generate(&context, &request)).await {
        Ok(batch) => batch,
        Err(error) => {
            tracing::error!(%error, "seeding failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "seeding failed"}))).into_response();
        }
    };
    let totals = {
        let mut world = sim.world();
        world.absorb(batch);
        world.totals()
    };
    tracing::info!(?request, ?totals, took = ?started.elapsed(), "simulator seeded");
    Json(totals).into_response()
}

async fn revoke(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.revoke_tokens();
    StatusCode::NO_CONTENT
}

async fn stats(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(json!({ "requests": sim.request_counts() }))
}
