//! An OpenStack-shaped cloud API, served by the same binary: the default upstream of
//! `stalecast serve` and of the tests, or alone with `stalecast sim`.
//!
//! It speaks just enough of Keystone, Nova, Cinder, Glance and Neutron for Stalecast:
//! password tokens with a service catalog, listings in OpenStack's envelopes, server and
//! volume creation, shows, deletion and power actions. Resources move through real status
//! transitions (`BUILD`→`ACTIVE`, `creating`→`available`) after a delay, optional churn
//! changes things on its own, and fault knobs (`PUT /_sim/faults`) add latency, errors
//! and malformed bodies for tests, and `POST /_sim/seed` (or `SimConfig::seed`) grows the
//! cloud with realistic records ([`seed`]). `/_sim/*` is the simulator's own control surface,
//! without authentication: it binds to loopback by default.

pub mod records;
pub mod seed;
pub mod world;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use records::Records;
use seed::Seed;
use world::World;

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub user: String,
    pub password: String,
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

/// Fault injection, adjustable at run time through `PUT /_sim/faults`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Added to every API answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of API requests answered with a 500 (0.0 to 1.0).
    #[serde(default)]
    pub error_rate: f64,
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
    tokens: Mutex<HashMap<String, SystemTime>>,
    /// Requests per API call (`GET volumes` a listing, `GET volume` a show, `POST volumes`
    /// a create, …), for tests and the load test.
    requests: Mutex<HashMap<String, u64>>,
    next_token: AtomicU64,
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
        Arc::new(Sim {
            config,
            world: Mutex::new(world),
            faults: Mutex::new(Faults::default()),
            tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
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
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).clear();
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
        self.next_token.load(Ordering::Relaxed) - 1
    }

    fn token_valid(&self, token: &str) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.get(token).is_some_and(|expiry| *expiry > SystemTime::now())
    }
}

/// The simulator's routes.
pub fn router(sim: Arc<Sim>) -> Router {
    let api = Router::new()
        .route("/identity/v3/projects", get(projects))
        .route("/compute/v2.1/servers/detail", get(servers))
        .route("/compute/v2.1/servers", post(create_server))
        .route("/compute/v2.1/servers/{id}", get(server).delete(delete_server))
        .route("/compute/v2.1/servers/{id}/action", post(server_action))
        .route("/volume/v3/volumes/detail", get(volumes))
        .route("/volume/v3/volumes", post(create_volume))
        .route("/volume/v3/volumes/{id}", get(volume).delete(delete_volume))
        .route("/image/v2/images", get(images))
        .route("/network/v2.0/networks", get(networks))
        .route_layer(middleware::from_fn_with_state(sim.clone(), authenticated));
    Router::new()
        .route("/v3/auth/tokens", post(issue_token))
        .merge(api)
        .layer(middleware::from_fn_with_state(sim.clone(), faulty))
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
    let served = axum::serve(listener, router(sim.clone()).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    sim.stopping.cancel();
    sim.tasks.close();
    sim.tasks.wait().await;
    served
}

/// Applies the fault knobs to every API request (not to `/_sim`).
async fn faulty(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    let faults = sim.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let roll: f64 = rand::rng().random();
    let failed_read = faults.fail_reads && request.method() == axum::http::Method::GET;
    if failed_read || roll < faults.error_rate {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"computeFault": {"code": 500,
            "message": "simulated failure"}})),
        )
            .into_response();
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

async fn authenticated(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    let token = request.headers().get("x-auth-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !sim.token_valid(token) {
        return fault(StatusCode::UNAUTHORIZED, "The request you have made requires authentication.");
    }
    next.run(request).await
}

fn fault(status: StatusCode, message: &str) -> Response {
    let key = match status {
        StatusCode::NOT_FOUND => "itemNotFound",
        StatusCode::BAD_REQUEST => "badRequest",
        StatusCode::CONFLICT => "conflictingRequest",
        _ => "error",
    };
    (status, Json(json!({ key: {"code": status.as_u16(), "message": message} }))).into_response()
}

#[derive(Deserialize)]
struct AuthRequest {
    auth: AuthBody,
}
#[derive(Deserialize)]
struct AuthBody {
    identity: Identity,
}
#[derive(Deserialize)]
struct Identity {
    password: PasswordAuth,
}
#[derive(Deserialize)]
struct PasswordAuth {
    user: UserAuth,
}
#[derive(Deserialize)]
struct UserAuth {
    name: String,
    password: String,
}

async fn issue_token(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<AuthRequest>(&body) else {
        return fault(StatusCode::BAD_REQUEST, "Expecting to find identity.password.user in auth");
    };
    let user = request.auth.identity.password.user;
    if user.name != sim.config.user || user.password != sim.config.password {
        return fault(StatusCode::UNAUTHORIZED, "The request you have made requires authentication.");
    }
    let n = sim.next_token.fetch_add(1, Ordering::Relaxed);
    let token = format!("gAAAA-sim-{n:08}-{:016x}", rand::rng().random::<u64>());
    let expires = SystemTime::now() + sim.config.token_ttl;
    sim.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(token.clone(), expires);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let base = format!("http://{host}");
    let endpoint = |kind: &str, path: &str| {
        json!({"type": kind, "name": kind, "endpoints": [{"interface": "public", "region": "RegionOne",
               "url": format!("{base}{path}")}]})
    };
    let body = json!({"token": {
        "methods": ["password"],
        "expires_at": humantime::format_rfc3339_seconds(expires).to_string(),
        "user": {"name": sim.config.user, "domain": {"id": "default"}},
        "project": {"id": "prj-admin", "name": sim.config.project},
        "catalog": [
            endpoint("identity", "/identity/v3"),
            endpoint("compute", "/compute/v2.1"),
            endpoint("volumev3", "/volume/v3"),
            endpoint("image", "/image/v2"),
            endpoint("network", "/network/v2.0"),
        ],
    }});
    (StatusCode::CREATED, [("x-subject-token", token)], Json(body)).into_response()
}

async fn projects(State(sim): State<Arc<Sim>>) -> Response {
    sim.count("GET projects");
    listing(sim, "projects", |w| &w.projects).await
}

async fn servers(State(sim): State<Arc<Sim>>) -> Response {
    sim.count("GET servers");
    listing(sim, "servers", |w| &w.servers).await
}

async fn server(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    sim.count("GET server");
    match sim.world().servers.get(&id) {
        Some(server) => Json(json!({ "server": server })).into_response(),
        None => fault(StatusCode::NOT_FOUND, &format!("Instance {id} could not be found.")),
    }
}

async fn volumes(State(sim): State<Arc<Sim>>) -> Response {
    sim.count("GET volumes");
    listing(sim, "volumes", |w| &w.volumes).await
}

async fn volume(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    sim.count("GET volume");
    let found = sim.world().volumes.get(&id).cloned();
    match found {
        Some(volume) => Json(json!({ "volume": volume })).into_response(),
        None => fault(StatusCode::NOT_FOUND, &format!("Volume {id} could not be found.")),
    }
}

async fn images(State(sim): State<Arc<Sim>>) -> Response {
    sim.count("GET images");
    listing(sim, "images", |w| &w.images).await
}

async fn networks(State(sim): State<Arc<Sim>>) -> Response {
    sim.count("GET networks");
    listing(sim, "networks", |w| &w.networks).await
}

/// A listing in OpenStack's envelope, `{"<key>": [records]}`: a snapshot of the records
/// taken under the world's lock (a pointer per record), serialized on the blocking pool
/// after letting go of it. When a listing of 36,000 seeded volumes (35 MB) was serialized
/// under the lock, every show, create and delete waited for it (100–150 ms with nothing
/// else running, seconds with the machine busy); and when it was cloned and serialized on
/// an async worker, with `Json`, the requests queued behind it stalled by 0.6–4.3 s.
async fn listing(sim: Arc<Sim>, key: &'static str, records: fn(&World) -> &Records) -> Response {
    let snapshot = records(&sim.world()).snapshot();
    let body = tokio::task::spawn_blocking(move || {
        // About what the listing weighs, so that the buffer grows once or twice, not twenty times.
        let mut out = Vec::with_capacity(64 + snapshot.len() * 1024);
        out.extend_from_slice(format!("{{\"{key}\":").as_bytes());
        serde_json::to_writer(&mut out, &snapshot).map(|()| {
            out.push(b'}');
            out
        })
    })
    .await;
    let delay = sim.faults().listing_latency_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    match body {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Ok(Err(e)) => fault(StatusCode::INTERNAL_SERVER_ERROR, &format!("serializing {key}: {e}")),
        Err(e) => fault(StatusCode::INTERNAL_SERVER_ERROR, &format!("serializing {key}: {e}")),
    }
}

#[derive(Deserialize)]
struct CreateServerBody {
    server: NewServer,
}
#[derive(Deserialize)]
struct NewServer {
    name: String,
    #[serde(rename = "flavorRef", default)]
    flavor: Option<String>,
    #[serde(rename = "imageRef", default)]
    image: Option<String>,
    /// Not in Nova's API (the token's project is used there); lets one admin token create
    /// servers in any project.
    #[serde(default)]
    project_id: Option<String>,
}

async fn create_server(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    sim.count("POST servers");
    let Ok(CreateServerBody { server }) = serde_json::from_slice(&body) else {
        return fault(StatusCode::BAD_REQUEST, "Invalid input for field/attribute server.");
    };
    let project = server.project_id.unwrap_or_else(|| "prj-admin".into());
    let id = {
        let mut world = sim.world();
        if !world.has_project(&project) {
            return fault(StatusCode::BAD_REQUEST, &format!("Project {project} could not be found."));
        }
        let image = server.image.filter(|i| !i.is_empty());
        if let Some(image) = &image
            && world.images.get(image).is_none()
        {
            return fault(StatusCode::BAD_REQUEST, &format!("Image {image} could not be found."));
        }
        world.new_server(
            &project,
            &server.name,
            server.flavor.as_deref().unwrap_or("m1.small"),
            image.as_deref(),
            "BUILD",
        )
    };
    transition_later(sim.clone(), id.clone(), |world, id| World::set_status(&mut world.servers, id, "ACTIVE"));
    (StatusCode::ACCEPTED, Json(json!({"server": {"id": id, "adminPass": "simulated"}}))).into_response()
}

async fn delete_server(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    sim.count("DELETE servers");
    let mut world = sim.world();
    if world.servers.remove(&id).is_none() {
        return fault(StatusCode::NOT_FOUND, &format!("Instance {id} could not be found."));
    }
    let attached: Vec<String> = world
        .volumes
        .iter()
        .filter(|v| v["attachments"].as_array().is_some_and(|a| a.iter().any(|a| a["server_id"] == id.as_str())))
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    for volume in &attached {
        if let Some(volume) = world.volumes.get_mut(volume) {
            volume["attachments"] = json!([]);
            volume["status"] = json!("available");
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn server_action(State(sim): State<Arc<Sim>>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    sim.count("POST servers action");
    let Ok(Value::Object(action)) = serde_json::from_slice::<Value>(&body) else {
        return fault(StatusCode::BAD_REQUEST, "Malformed request body");
    };
    let (from, to) = if action.contains_key("os-start") {
        ("SHUTOFF", "ACTIVE")
    } else if action.contains_key("os-stop") {
        ("ACTIVE", "SHUTOFF")
    } else {
        return fault(StatusCode::BAD_REQUEST, "There is no such action");
    };
    let mut world = sim.world();
    let Some(server) = world.servers.get(&id) else {
        return fault(StatusCode::NOT_FOUND, &format!("Instance {id} could not be found."));
    };
    if server["status"] != from {
        let status = server["status"].as_str().unwrap_or_default().to_owned();
        return fault(
            StatusCode::CONFLICT,
            &format!("Cannot change the power state of instance {id} while it is {status}"),
        );
    }
    World::set_status(&mut world.servers, &id, to);
    StatusCode::ACCEPTED.into_response()
}

#[derive(Deserialize)]
struct CreateVolumeBody {
    volume: NewVolume,
}
#[derive(Deserialize)]
struct NewVolume {
    #[serde(default)]
    name: Option<String>,
    size: u32,
    #[serde(default)]
    description: Option<String>,
    /// Not in Cinder's API (the URL's project is used there); see `NewServer`.
    #[serde(default)]
    project_id: Option<String>,
}

async fn create_volume(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> Response {
    sim.count("POST volumes");
    let Ok(CreateVolumeBody { volume }) = serde_json::from_slice(&body) else {
        return fault(StatusCode::BAD_REQUEST, "Invalid input for field/attribute volume.");
    };
    if volume.size == 0 {
        return fault(StatusCode::BAD_REQUEST, "Invalid input received: size must be greater than 0");
    }
    let project = volume.project_id.unwrap_or_else(|| "prj-admin".into());
    let id = {
        let mut world = sim.world();
        if !world.has_project(&project) {
            return fault(StatusCode::BAD_REQUEST, &format!("Project {project} could not be found."));
        }
        world.new_volume(
            &project,
            volume.name.as_deref().unwrap_or_default(),
            volume.size,
            volume.description.as_deref().unwrap_or_default(),
            "creating",
        )
    };
    transition_later(sim.clone(), id.clone(), |world, id| World::set_status(&mut world.volumes, id, "available"));
    (StatusCode::ACCEPTED, Json(json!({"volume": {"id": id, "status": "creating"}}))).into_response()
}

async fn delete_volume(State(sim): State<Arc<Sim>>, Path(id): Path<String>) -> Response {
    sim.count("DELETE volumes");
    let mut world = sim.world();
    let Some(volume) = world.volumes.get(&id) else {
        return fault(StatusCode::NOT_FOUND, &format!("Volume {id} could not be found."));
    };
    if volume["status"] == "in-use" {
        return fault(
            StatusCode::BAD_REQUEST,
            "Volume status must be available or error, but current status is: in-use",
        );
    }
    world.volumes.remove(&id);
    StatusCode::ACCEPTED.into_response()
}

/// Runs a status transition after the configured delay.
fn transition_later(sim: Arc<Sim>, id: String, apply: fn(&mut World, &str) -> bool) {
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
    sim.set_faults(faults);
    tracing::info!(?faults, "simulator faults set");
    Json(faults).into_response()
}

async fn get_faults(State(sim): State<Arc<Sim>>) -> Json<Faults> {
    Json(sim.faults())
}

/// `POST /_sim/seed {"servers":N,"volumes":N,"images":N,"networks":N,"seed":u64?}`: adds
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
