//! The application: wires the bus, the upstream store and poller, the procedures, the
//! stream, the health endpoints and the web app into one router, and runs it on the
//! server's own accept loop until a cancellation token fires.
//!
//! [`start`] binds, spawns everything and returns a [`RunningApp`]; the binary and the
//! integration tests both use it, so tests run the real server on port 0. Shutdown is
//! one [`CancellationToken`]: the accept loop stops accepting and lets in-flight requests
//! finish, every event stream ends (on either delivery path), and the poller, the
//! keep-alive clock, the figures' sampler and the fan-out stop; the embedded simulator (with its own tasks)
//! stops last, once the server has drained, so that a mutation in flight is answered;
//! [`RunningApp::wait`] returns when all of them have. With `--metrics-addr`, `/metrics`
//! is served on a listener of its own ([`crate::metrics`]), and stops with the rest.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::auth::{self, Limits, SessionConfig, Sessions};
use crate::cluster;
use crate::config::ServeConfig;
use crate::config::cloud::Upstream;
use crate::domain::Ctx;
use crate::guard::{self, Guard};
use crate::health::{self, Health};
use crate::rpc::{self, Api, Cookies};
use crate::serve::Fanout;
use crate::sim::{self, Sim, SimConfig};
use crate::updates::{BusConfig, Pings, UpdateBus};
use crate::upstream::client::{OpenStackClient, UpstreamConfig};
use crate::upstream::poller;
use crate::upstream::store::Store;
use crate::web::{DemoUser, SignInHints};
use crate::{domain, metrics, openapi, web};

/// Where the cluster's keys live in Redis (`--redis`).
const CLUSTER_PREFIX: &str = "stalecast:";

/// The HTTP routes, with their middleware.
pub fn router(
    api: Arc<Api>,
    health: Arc<Health>,
    guard: Arc<Guard>,
    cors_origins: &[String],
    web_dir: &Path,
    hints: SignInHints,
) -> Router {
    // Compress answers made per request (a shared answer comes compressed already, or is
    // too small to gain: `rpc::encoded`), never the event stream (events would sit in a
    // buffer). tower-http's default compresses anything over 32 bytes; below a kilobyte
    // brotli's per-request setup costs more CPU than the bytes it saves are worth.
    let compress = SizeAbove::new(1024)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::const_new("text/event-stream"));
    let router = Router::new()
        .merge(rpc::routes(api.clone()))
        // The OpenAPI document and its explorer.
        .merge(openapi::explorer(openapi::document(&api.registry)))
        // The web app answers whatever no route claims, so it never shadows the API.
        .merge(web::routes(web_dir.to_owned(), hints))
        // Everything above, not the stream below: tower-http's compression body keeps
        // every encoder's state inline (≈ 5.8 KiB), which each open event stream would
        // carry for its whole life (and events would sit in the encoder's buffer).
        .layer(CompressionLayer::new().compress_when(compress))
        // Upstream trouble answers 502/503 on purpose and is logged where it happens.
        // Not the stream either: its body wrapper reads the clock on every event; the
        // stream logs its own opening and end. Nor the health endpoints: a load balancer
        // probing an unready node every second would fill the log (readiness logs its
        // own changes).
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)))
        .merge(rpc::stream_routes(api))
        .merge(health::routes(health));
    // No CORS headers at all unless an origin is named.
    let router = if cors_origins.is_empty() {
        router
    } else {
        let origins: Vec<HeaderValue> = cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE, HeaderName::from_static("last-event-id")]),
        )
    };
    router.layer(axum::middleware::from_fn_with_state(guard, guard::check))
}

/// A started server.
#[derive(Debug)]
pub struct RunningApp {
    /// Where the API and the stream listen.
    pub addr: SocketAddr,
    /// `http://addr`, or `https://addr` with TLS.
    pub url: String,
    /// The upstream's Keystone URL (the embedded simulator's, when there is one).
    pub upstream_url: String,
    /// Where the embedded simulator listens, when there is one.
    pub sim_addr: Option<SocketAddr>,
    /// Where `/metrics` is served, with `--metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// The embedded simulator, for tests that change it out of band.
    pub sim: Option<Arc<Sim>>,
    /// The update bus, for tests that count subscribers.
    pub bus: Arc<UpdateBus>,
    /// With `--redis`: this node's figures in the cluster.
    pub cluster: Option<Arc<cluster::ClusterStats>>,
    /// The sessions, for tests that count them.
    pub sessions: Arc<Sessions>,
    shutdown: CancellationToken,
    /// Stops the embedded simulator, once the server has drained: a mutation still in
    /// flight at shutdown needs its upstream to answer it.
    sim_stop: CancellationToken,
    tasks: JoinSet<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningApp {
    /// Fires the cancellation token and waits until the server, the poller and the
    /// simulator have stopped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server stops (after the token fired).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let served = self.server.await.context("server task panicked")?;
        self.shutdown.cancel();
        self.sim_stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        served.context("serving HTTP")
    }
}

/// Binds, starts the embedded simulator (unless `--upstream` is set), the poller and the
/// HTTP server, and returns at once. Everything stops when `shutdown` fires.
pub async fn start(config: ServeConfig, shutdown: CancellationToken) -> anyhow::Result<RunningApp> {
    let started = SystemTime::now();
    // Before anything listens: a bad certificate or key stops the start, naming the file.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::serve::Tls::load(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together: give both or neither"),
    };
    let listener = crate::serve::bind(SocketAddr::new(config.host, config.port))
        .with_context(|| format!("binding {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_addr {
        Some(at) => Some(crate::serve::bind(at).with_context(|| format!("binding --metrics-addr {at}"))?),
        None => None,
    };
    let mut tasks = JoinSet::new();
    let sim_stop = CancellationToken::new();

    // Which cloud, and how to log in: clouds.yaml, OS_* variables, flags (config::cloud).
    let upstream =
        crate::config::cloud::resolve(&config.cloud_flags(), &config.os_environment, config.upstream_timeout)
            .map_err(anyhow::Error::msg)?;
    let mut hints = SignInHints::default();
    let (upstream_config, sim, sim_addr) = match upstream {
        Upstream::Cloud(cloud) => (*cloud, None, None),
        Upstream::Simulator { user, password, project } => {
            hints = demo_users(&user, &password);
            let sim_listener = TcpListener::bind(("127.0.0.1", config.sim_port))
                .await
                .with_context(|| format!("binding the simulator on 127.0.0.1:{}", config.sim_port))?;
            let sim_addr = sim_listener.local_addr()?;
            let sim = Sim::new(SimConfig {
                user: user.clone(),
                password: password.clone(),
                project: project.clone(),
                churn_interval: config.sim_churn,
                seed: config.sim_seed,
                ..SimConfig::default()
            });
            let token = sim_stop.clone();
            let serving = sim.clone();
            tasks.spawn(async move {
                if let Err(error) = sim::run(sim_listener, serving, token).await {
                    tracing::error!(%error, "embedded simulator stopped");
                }
            });
            tracing::info!(%sim_addr, "embedded OpenStack simulator listening");
            let url = format!("http://{sim_addr}");
            let upstream = UpstreamConfig::password(&url, &user, &password, &project, config.upstream_timeout);
            (upstream, Some(sim), Some(sim_addr))
        }
    };
    let upstream_url = upstream_config.auth_url.clone();
    tracing::info!(auth_url = %upstream_url, region = ?upstream_config.region, interface = upstream_config.interface.as_str(),
        credentials = ?upstream_config.credentials, "cloud");
    let client = Arc::new(OpenStackClient::new(upstream_config)?);
    let bus_config =
        BusConfig { ring_size: config.ring_size as usize, channel_capacity: config.channel_capacity as usize };
    // In a cluster the seq is the shared log's: the bus starts low and jumps to it.
    let bus = Arc::new(match config.redis {
        None => UpdateBus::new(bus_config),
        Some(_) => UpdateBus::starting_at(1, bus_config),
    });
    let store = Arc::new(Store::new(client.clone(), bus.clone()));
    let mut roster = None;
    let cluster = match &config.redis {
        None => {
            poller::spawn(store.clone(), config.poll_interval, shutdown.clone(), &mut tasks);
            None
        }
        Some(url) => {
            let cluster = join_cluster(&config, url, addr, &bus, &store, &shutdown, &mut tasks).await?;
            poller::spawn_gated(
                store.clone(),
                config.poll_interval,
                cluster.polling.clone(),
                shutdown.clone(),
                &mut tasks,
            );
            roster = Some(cluster.roster.clone());
            Some(cluster)
        }
    };
    let pings = Pings::start(config.ping_interval, shutdown.clone(), &mut tasks);
    // One shard per core: the fan-out of one update runs on every core at once.
    let shards = std::thread::available_parallelism().map_or(2, |n| n.get());
    let fanout = Fanout::start(bus.clone(), pings.clone(), shards, shutdown.clone(), &mut tasks);

    // With `--redis` the sessions are the cluster's: a user signed in on one node is
    // recognised on every other, and signing out anywhere ends the session everywhere.
    let shared_sessions =
        cluster.as_ref().map(|c| auth::shared::Shared::new(c.client.clone(), c.conn.clone(), CLUSTER_PREFIX));
    let cluster = cluster.map(|c| c.stats);
    let sessions = Sessions::new(
        client.clone(),
        SessionConfig {
            idle_timeout: config.session_idle_timeout,
            lifetime: config.session_lifetime,
            refresh_every: config.membership_refresh,
            limits: Limits {
                per_user: config.signin_failures_per_user,
                per_address: config.signin_failures_per_address,
                window: config.signin_window,
            },
        },
        shared_sessions,
    );
    sessions.run(shutdown.clone(), &mut tasks);
    let stats = match roster {
        None => domain::stats::Figures::new(&bus, &store, started),
        Some(roster) => domain::stats::Figures::in_cluster(&bus, &store, started, roster),
    };
    let ctx = Ctx {
        client,
        store: store.clone(),
        bus: bus.clone(),
        stats,
        sessions: sessions.clone(),
        caller: None,
        peer: None,
    };
    domain::stats::spawn(ctx.clone(), shutdown.clone(), &mut tasks);
    // Over HTTPS (served here, or by a proxy in front) the cookie is `Secure`.
    let cookies = Cookies { secure: config.secure_cookie || tls.is_some() };
    let api = Api::new(ctx, cookies, config.max_body_bytes, config.body_timeout, pings, shutdown.clone());
    let registry = metrics::registry(metrics::Sources {
        bus: &bus,
        store: store.clone(),
        rpc: &api.metrics,
        started,
        cluster: cluster.clone(),
        sessions: sessions.open_gauge(),
    });
    let health =
        Arc::new(Health { store, bus: bus.clone(), max_staleness: config.max_staleness, ready: Default::default() });
    web::check(&config.web_dir);
    let guard = Arc::new(Guard::new(config.host, &config.allowed_hosts, &config.cors_origins));
    let app = router(api, health, guard, &config.cors_origins, &config.web_dir, hints);
    let max_connections = match config.max_connections {
        0 => crate::serve::default_max_connections(),
        n => n,
    };
    let limits = crate::serve::Limits {
        max_connections,
        header_timeout: config.header_timeout,
        write_timeout: config.write_timeout,
        shutdown_timeout: config.shutdown_timeout,
    };
    let url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    let metrics_addr = match metrics_listener {
        Some(listener) => {
            let at = listener.local_addr()?;
            // No CORS: no web page has any business reading these.
            let guard = Arc::new(Guard::new(at.ip(), &config.allowed_hosts, &[]));
            let router =
                metrics::routes(Arc::new(registry)).layer(axum::middleware::from_fn_with_state(guard, guard::check));
            // A scraper or two: a small budget, the app's deadlines.
            let limits = crate::serve::Limits { max_connections: 64, ..limits };
            let serving = crate::serve::run(listener, router, fanout.clone(), limits, None, shutdown.clone());
            tasks.spawn(async move {
                if let Err(error) = serving.await {
                    tracing::error!(%error, "the metrics listener stopped");
                }
            });
            tracing::info!(metrics_addr = %at, "metrics listening at /metrics");
            Some(at)
        }
        None => None,
    };
    let server = tokio::spawn(crate::serve::run(listener, app, fanout, limits, tls, shutdown.clone()));
    tracing::info!(%addr, %url, upstream = %upstream_url, max_connections, "stalecast listening");
    if let Some(path) = &config.ready_file {
        let sim_addr = sim_addr.map(|a| a.to_string());
        let metrics_addr = metrics_addr.map(|a| a.to_string());
        let ready =
            serde_json::json!({"addr": addr.to_string(), "url": url, "simAddr": sim_addr, "metricsAddr": metrics_addr});
        write_ready_file(path, &ready)?;
    }
    Ok(RunningApp {
        addr,
        url,
        upstream_url,
        sim_addr,
        metrics_addr,
        sim,
        bus,
        cluster,
        sessions,
        shutdown,
        sim_stop,
        tasks,
        server,
    })
}

/// Joins the cluster on `--redis` (`crate::cluster`), and loads each collection once in
/// the background: a node that does not poll still answers its first queries from a
/// stored value, and changes reach it through the log from then on.
async fn join_cluster(
    config: &ServeConfig,
    url: &str,
    addr: SocketAddr,
    bus: &Arc<UpdateBus>,
    store: &Arc<Store>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<cluster::Cluster> {
    let url = cluster::RedisUrl::parse(url).map_err(anyhow::Error::msg)?;
    let config = cluster::ClusterConfig {
        url,
        lease: config.lease,
        ring_size: config.ring_size as usize,
        node: config.node_name.clone().unwrap_or_else(|| cluster::nodes::default_node_name(addr.port())),
        prefix: CLUSTER_PREFIX.into(),
    };
    let joined = cluster::start(config, bus.clone(), store.clone(), shutdown.clone(), tasks).await?;
    let loading = store.clone();
    tasks.spawn(async move { loading.load_all().await });
    Ok(joined)
}

/// The embedded simulator's users, for the sign-in page: the service account `user` (admin
/// of every project) and the simulator's own users, each with their project and role.
fn demo_users(user: &str, password: &str) -> SignInHints {
    let project_name = |id: &str| sim::world::PROJECTS.iter().find(|p| p.0 == id).map_or(id, |p| p.1).to_owned();
    let mut demo_users =
        vec![DemoUser { user: user.into(), password: password.into(), about: "admin of every project".into() }];
    demo_users.extend(sim::identity::USERS.iter().filter(|(name, _, _)| *name != user).map(|(name, project, role)| {
        DemoUser {
            user: (*name).into(),
            password: (*name).into(),
            about: format!("{role} of {}", project_name(project)),
        }
    }));
    SignInHints { demo_users }
}

/// Writes `what` to `path` as JSON, whole: to a temporary file beside it, then renamed,
/// so a reader polling for the file never sees half of it (`--ready-file`).
pub fn write_ready_file(path: &Path, what: &serde_json::Value) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, what.to_string()).with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}
