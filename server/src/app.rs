//! The application: wires the bus, the upstream store and poller, the procedures and the
//! stream into one axum router, and runs it until a cancellation token fires.
//!
//! [`start`] binds, spawns everything and returns a [`RunningApp`]; the binary and the
//! integration tests both use it, so tests run the real server on port 0. Shutdown is
//! one [`CancellationToken`]: it ends every SSE stream (axum's graceful shutdown would
//! otherwise wait on them forever), stops the poller and the embedded simulator, and
//! lets in-flight requests finish.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderName, Method, header};
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::config::ServeConfig;
use crate::rpc::{self, ErrorCode, Registry, RpcError};
use crate::serve::fanout::Fanout;
use crate::sim::{self, Sim, SimConfig};
use crate::updates::stream::{self, StreamConfig};
use crate::updates::{BusConfig, UpdateBus};
use crate::upstream::client::{OpenStackClient, UpstreamConfig};
use crate::upstream::poller;
use crate::upstream::store::Store;
use crate::{domain, health, openapi, web};

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: ServeConfig,
    upstream_url: String,
    bus: Arc<UpdateBus>,
    store: Arc<Store>,
    registry: Registry,
    shutdown: CancellationToken,
    pings: stream::Pings,
    fanout: Arc<Fanout>,
}

impl AppState {
    pub fn config(&self) -> &ServeConfig {
        &self.0.config
    }
    pub fn bus(&self) -> &Arc<UpdateBus> {
        &self.0.bus
    }
    pub fn store(&self) -> &Arc<Store> {
        &self.0.store
    }
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.0.shutdown
    }
    pub fn upstream_url(&self) -> &str {
        &self.0.upstream_url
    }
    /// The keep-alive clock every stream shares.
    pub fn pings(&self) -> &stream::Pings {
        &self.0.pings
    }
    /// The fan-out that writes updates to the streams the server's own writer serves.
    pub fn fanout(&self) -> &Arc<Fanout> {
        &self.0.fanout
    }
    pub fn stream_config(&self) -> StreamConfig {
        StreamConfig { ping_interval: self.0.config.ping_interval }
    }
}

/// The HTTP routes, with their middleware.
pub fn router(state: AppState) -> Router {
    // Compress JSON answers, never the event stream (events would sit in a buffer).
    let compress = DefaultPredicate::new().and(NotForContentType::const_new("text/event-stream"));
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, HeaderName::from_static("last-event-id")]);
    Router::new()
        .route("/trpc/{*paths}", any(rpc::handler))
        .route("/trpc", any(rpc::not_found))
        .route("/trpc/", any(rpc::not_found))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        // The OpenAPI document and its explorer.
        .merge(openapi::explorer(openapi::document(state.registry())))
        // The web app answers whatever no route claims, so it never shadows the API.
        .fallback(web::serve)
        // Everything above, not the stream below: tower-http's compression body keeps
        // every encoder's state inline (≈ 5.8 KiB), which each open event stream would
        // carry for its whole life (and events would sit in the encoder's buffer).
        .layer(CompressionLayer::new().compress_when(compress))
        // Upstream trouble answers 502/503 on purpose and is logged where it happens.
        // Not the stream either: its body wrapper reads the clock on every event; the
        // stream logs its own opening and end.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)))
        .route(
            &format!("/trpc/{}", stream::PATH),
            get(stream::handler).fallback(|| async {
                RpcError::new(ErrorCode::MethodNotSupported, format!("{} is a subscription: use GET", stream::PATH))
                    .with_path(stream::PATH)
            }),
        )
        .layer(cors)
        .with_state(state)
}

/// A started server.
#[derive(Debug)]
pub struct RunningApp {
    /// Where the API and the stream listen.
    pub addr: SocketAddr,
    /// Where the embedded simulator listens, when there is one.
    pub sim_addr: Option<SocketAddr>,
    /// The embedded simulator, for tests that change it out of band.
    pub sim: Option<Arc<Sim>>,
    pub state: AppState,
    shutdown: CancellationToken,
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
        while self.tasks.join_next().await.is_some() {}
        served.context("serving HTTP")
    }
}

/// Binds, starts the embedded simulator (unless `--upstream` is set), the poller and the
/// HTTP server, and returns at once. Everything stops when `shutdown` fires.
pub async fn start(config: ServeConfig, shutdown: CancellationToken) -> anyhow::Result<RunningApp> {
    let listener = crate::serve::bind(SocketAddr::new(config.host, config.port))
        .with_context(|| format!("binding {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;
    let mut tasks = JoinSet::new();

    let (upstream_url, sim, sim_addr) = match &config.upstream {
        Some(url) => (url.trim_end_matches('/').to_owned(), None, None),
        None => {
            let sim_listener = TcpListener::bind(("127.0.0.1", config.sim_port))
                .await
                .with_context(|| format!("binding the simulator on 127.0.0.1:{}", config.sim_port))?;
            let sim_addr = sim_listener.local_addr()?;
            let sim = Sim::new(SimConfig {
                user: config.os_user.clone(),
                password: config.os_password.clone(),
                project: config.os_project.clone(),
                churn_interval: config.sim_churn,
                ..SimConfig::default()
            });
            let token = shutdown.clone();
            let serving = sim.clone();
            tasks.spawn(async move {
                if let Err(error) = sim::serve(sim_listener, serving, token).await {
                    tracing::error!(%error, "embedded simulator stopped");
                }
            });
            tracing::info!(%sim_addr, "embedded OpenStack simulator listening");
            (format!("http://{sim_addr}"), Some(sim), Some(sim_addr))
        }
    };

    let client = OpenStackClient::new(UpstreamConfig {
        auth_url: upstream_url.clone(),
        user: config.os_user.clone(),
        password: config.os_password.clone(),
        project: config.os_project.clone(),
        timeout: config.upstream_timeout,
    })?;
    let bus = Arc::new(UpdateBus::new(BusConfig {
        ring_size: config.ring_size as usize,
        channel_capacity: config.channel_capacity as usize,
    }));
    let store = Arc::new(Store::new(Arc::new(client), bus.clone()));
    poller::spawn(store.clone(), config.poll_interval, shutdown.clone(), &mut tasks);
    let pings = stream::Pings::start(config.ping_interval, shutdown.clone(), &mut tasks);
    // One shard per core: the fan-out of one update runs on every core at once.
    let shards = std::thread::available_parallelism().map_or(2, |n| n.get());
    let fanout = Fanout::start(bus.clone(), pings.clone(), shards, shutdown.clone(), &mut tasks);

    let state = AppState(Arc::new(Inner {
        config,
        upstream_url,
        bus,
        store,
        registry: domain::registry(),
        shutdown: shutdown.clone(),
        pings,
        fanout,
    }));
    web::check(&state.config().web_dir);
    let app = router(state.clone());
    let max_connections = match state.config().max_connections {
        0 => crate::serve::default_max_connections(),
        n => n,
    };
    let server = tokio::spawn(crate::serve::serve(listener, app, max_connections, shutdown.clone()));
    tracing::info!(%addr, upstream = %state.upstream_url(), max_connections, "stalecast listening");
    if let Some(path) = &state.config().ready_file {
        let sim_addr = sim_addr.map(|a| a.to_string());
        write_ready_file(path, &serde_json::json!({"addr": addr.to_string(), "simAddr": sim_addr}))?;
    }
    Ok(RunningApp { addr, sim_addr, sim, state, shutdown, tasks, server })
}

/// Writes `what` to `path` as JSON, whole: to a temporary file beside it, then renamed,
/// so a reader polling for the file never sees half of it (`--ready-file`).
pub fn write_ready_file(path: &std::path::Path, what: &serde_json::Value) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, what.to_string()).with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}
