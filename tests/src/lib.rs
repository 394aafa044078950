//! Test support: start the real Stalecast (with its embedded simulator) on port 0, in
//! process ([`spawn_app`]) or as the real binary ([`child::ChildServer`]), and talk to it
//! over HTTP as a browser or the stock tRPC client would ([`Client`], [`SseClient`],
//! [`raw::RawConnection`]).
//!
//! A [`TestApp`] is signed in: its client holds the session cookie of the simulator's
//! service account (`admin`, admin of every project), as a browser would after
//! `auth.login`. [`Client::sign_in`] gives a client of another user, [`Client::anonymous`]
//! one without a session.
//!
//! Every use of the server crate's internals (its module paths, the bus, the simulator,
//! the upstream client, the code generators) is in this file, so that the tests follow a
//! reorganisation of the server in one place. Nothing here reads a `STALECAST_*`
//! variable but `STALECAST_BIN` (which binary to run): the tests are hermetic.

pub mod child;
pub mod cluster;
pub mod raw;
pub mod redis;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast::app::RunningApp;
use stalecast::config::ServeConfig;
use stalecast::sim::{Sim, SimConfig};
use stalecast::updates::{Owner, UpdateType};
use stalecast::upstream::client::{Acting, OpenStackClient, UpstreamConfig};
use tokio_util::sync::CancellationToken;

/// A server started in this process, plus a [`Client`] for it (through `Deref`).
pub struct TestApp {
    client: Client,
    app: RunningApp,
}

/// The configuration tests start from: any free ports, a fast poller.
pub fn test_config() -> ServeConfig {
    ServeConfig {
        port: 0,
        sim_port: 0,
        poll_interval: Duration::from_millis(200),
        upstream_timeout: Duration::from_secs(2),
        ping_interval: Duration::from_secs(5),
        // Readiness reacts within a second to an upstream that stopped answering.
        max_staleness: Duration::from_secs(1),
        ..ServeConfig::default()
    }
}

/// Starts the app with [`test_config`].
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app with [`test_config`] changed by `adjust`, and signs its client in as
/// the service account (`admin`/`stalecast`, admin of every project).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    init_tracing();
    let mut config = test_config();
    adjust(&mut config);
    let app = stalecast::app::start(config, CancellationToken::new()).await.expect("app starts");
    let client = Client::new(&format!("http://{}", app.addr), &app.upstream_url).sign_in("admin", "stalecast").await;
    TestApp { client, app }
}

/// Starts the app with [`test_config`] changed by `adjust`, and signs its client in as
/// `user` with `password` (a real Keystone's user).
pub async fn spawn_app_signed_in_as(adjust: impl FnOnce(&mut ServeConfig), user: &str, password: &str) -> TestApp {
    let TestApp { client, app } = spawn_app_anonymous(adjust).await;
    let client = client.sign_in(user, password).await;
    TestApp { client, app }
}

/// Starts the app with [`test_config`] changed by `adjust`; its client is not signed in.
pub async fn spawn_app_anonymous(adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    init_tracing();
    let mut config = test_config();
    adjust(&mut config);
    let app = stalecast::app::start(config, CancellationToken::new()).await.expect("app starts");
    let client = Client::new(&format!("http://{}", app.addr), &app.upstream_url);
    TestApp { client, app }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

impl Deref for TestApp {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

fn update_type(kind: &str) -> UpdateType {
    serde_json::from_value(json!(kind)).unwrap_or_else(|e| panic!("{kind} is not an update type: {e}"))
}

impl TestApp {
    /// Where the API and the stream listen.
    pub fn addr(&self) -> SocketAddr {
        self.app.addr
    }

    /// Publishes an update of `kind` (`"volumes"`, …) on the bus directly, as a mutation
    /// or the poller would; answers its seq.
    pub fn publish(&self, kind: &str, ids: Option<Vec<String>>) -> u64 {
        self.app.bus.publish(update_type(kind), ids).update.seq
    }

    /// Publishes an update of `kind` naming `changed`, each `(id, project)` owned by its
    /// project, as the store does; answers its seq.
    pub fn publish_owned(&self, kind: &str, changed: &[(&str, &str)]) -> u64 {
        let changed = changed.iter().map(|(id, project)| (id.to_string(), Owner::project(project))).collect();
        self.app.bus.publish_changes(update_type(kind), changed, |_| {}).update.seq
    }

    /// Streams subscribed to the bus right now.
    pub fn subscriber_count(&self) -> usize {
        self.app.bus.subscriber_count()
    }

    /// `http://…/metrics` on the metrics listener, when the app was started with one.
    pub fn metrics_url(&self) -> Option<String> {
        self.app.metrics_addr.map(|addr| format!("http://{addr}/metrics"))
    }

    /// The user (by id) who created the simulated server `id`, as the cloud recorded it.
    pub fn server_creator(&self, id: &str) -> Option<String> {
        let world = self.sim().expect("the embedded simulator").world();
        let server = world.servers.iter().find(|s| s["id"] == id)?;
        server["user_id"].as_str().map(str::to_owned)
    }

    /// Sessions running right now.
    pub async fn session_count(&self) -> usize {
        self.app.sessions.count().await
    }

    /// Creates a volume in the simulator directly, behind Stalecast's back; answers its id.
    pub async fn create_volume_out_of_band(&self, project: &str, name: &str, size_gb: u32) -> String {
        let sim = OpenStackClient::new(upstream_config(&self.sim_url, "stalecast")).expect("simulator client");
        sim.create_volume(Acting::Service, project, name, size_gb, "").await.expect("direct create")
    }

    /// Snapshots a volume of `project` in the simulator directly, as another OpenStack
    /// client would; answers the snapshot's id.
    pub async fn create_snapshot_out_of_band(&self, project: &str, volume: &str, name: &str) -> String {
        let sim = OpenStackClient::new(upstream_config(&self.sim_url, "stalecast")).expect("simulator client");
        sim.create_snapshot(Acting::Service, project, volume, name, "", false).await.expect("direct snapshot")
    }

    /// Adds a subnet to a network of `project` in the simulator directly; answers its id.
    pub async fn create_subnet_out_of_band(&self, project: &str, network: &str, cidr: &str) -> String {
        let sim = OpenStackClient::new(upstream_config(&self.sim_url, "stalecast")).expect("simulator client");
        sim.create_subnet(Acting::Service, project, network, cidr, 4, "made-elsewhere").await.expect("direct subnet")
    }

    /// The embedded simulator (absent when the test points `upstream` elsewhere).
    pub fn sim(&self) -> Option<&Arc<Sim>> {
        self.app.sim.as_ref()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.app.shutdown().await.expect("clean shutdown");
    }
}

/// What `stalecast serve` reads of its environment for the cloud: these `OS_*`
/// variables, and `clouds.yaml` looked for in `dir` (as the working directory).
pub fn os_environment(vars: &[(&str, &str)], dir: Option<&std::path::Path>) -> stalecast::config::cloud::OsEnvironment {
    stalecast::config::cloud::OsEnvironment {
        vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        cwd: dir.map(std::path::Path::to_path_buf),
        ..Default::default()
    }
}

/// The OpenAPI document the code generates.
pub fn generated_openapi() -> Value {
    serde_json::to_value(stalecast::openapi::document(&stalecast::rpc::registry())).expect("document")
}

/// Every registered procedure: its path, its kind (`query`, `mutation`, `subscription`)
/// and whether anyone may call it without a session (`auth.login`).
pub fn procedures() -> Vec<(String, String, bool)> {
    use stalecast::rpc::{Gate, Kind};
    stalecast::rpc::registry()
        .iter()
        .map(|p| {
            let kind = match p.kind {
                Kind::Query => "query",
                Kind::Mutation => "mutation",
                Kind::Subscription => "subscription",
            };
            (p.path.to_owned(), kind.to_owned(), p.gate == Gate::Open)
        })
        .collect()
}

/// The files of the bindings package the code generates, by path relative to `bindings/`.
pub fn generated_bindings() -> BTreeMap<String, String> {
    stalecast::bindings::generate(&stalecast::rpc::registry()).expect("bindings generate")
}

/// The resident memory (`VmRSS`) in a `/proc/<pid>/status` text, in KiB.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// The files under `dir`, relative and `/`-separated, without `node_modules`, as the
/// code generator's check walks them.
pub fn files_under(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    stalecast::bindings::files_under(dir, &["node_modules"]).expect("read dir").into_keys().collect()
}

/// Creates a volume in the simulator at `sim_url` directly, behind Stalecast's back;
/// answers its id.
pub async fn create_volume_in_sim(sim_url: &str, project: &str, name: &str) -> String {
    let sim = OpenStackClient::new(upstream_config(sim_url, "stalecast")).expect("simulator client");
    sim.create_volume(Acting::Service, project, name, 1, "").await.expect("direct create")
}

/// The Lua source of the cluster's publish script, as the server runs it.
pub fn publish_script() -> &'static str {
    stalecast::cluster::scripts::PUBLISH_LUA
}

fn upstream_config(auth_url: &str, password: &str) -> UpstreamConfig {
    UpstreamConfig::password(auth_url, "admin", password, "admin", Duration::from_secs(5))
}

/// A simulator alone on a free port, for tests of the upstream client itself.
pub struct StandaloneSim {
    pub url: String,
    sim: Arc<Sim>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl StandaloneSim {
    /// Starts a simulator whose tokens live `token_ttl`.
    pub async fn start(token_ttl: Duration) -> Self {
        let sim = Sim::new(SimConfig { token_ttl, ..SimConfig::default() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(stalecast::sim::run(listener, sim.clone(), shutdown.clone()));
        StandaloneSim { url, sim, shutdown, server }
    }

    /// Keystone tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.sim.tokens_issued()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("join").expect("serve");
    }
}

/// Stalecast's upstream client, as the poller and the mutations use it.
pub struct UpstreamClient(OpenStackClient);

impl UpstreamClient {
    /// A client logging in as `admin` with `password`.
    pub fn new(auth_url: &str, password: &str) -> Self {
        UpstreamClient(OpenStackClient::new(upstream_config(auth_url, password)).expect("upstream client"))
    }

    /// Lists the projects; answers how many, or the error's text.
    pub async fn projects(&self) -> Result<usize, String> {
        self.0.projects().await.map(|p| p.len()).map_err(|e| e.to_string())
    }

    /// Lists the servers; answers how many, or the error's text.
    pub async fn servers(&self) -> Result<usize, String> {
        self.0.servers(Default::default()).await.map(|(s, _)| s.len()).map_err(|e| e.to_string())
    }

    /// Lists the images; answers how many, or the error's text.
    pub async fn images(&self) -> Result<usize, String> {
        self.0.images(Default::default()).await.map(|(i, _)| i.len()).map_err(|e| e.to_string())
    }
}

/// Percent-encodes a query-string value (everything but RFC 3986's unreserved
/// characters, as `encodeURIComponent` nearly does).
pub fn encode(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// `input=…` for a stream that only wants `types`.
pub fn types_query(types: &[&str]) -> String {
    format!("input={}", encode(&json!({ "types": types }).to_string()))
}

/// Calls a running Stalecast (and its upstream's `/_sim` knobs) over HTTP, as one
/// browser would: with its session cookie on every request (the stream's too), once
/// signed in.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    /// Sends the session cookie with every request (a default header).
    pub http: reqwest::Client,
    /// Where the upstream (normally the embedded simulator) listens.
    pub sim_url: String,
    /// `stalecast_session=<id>`, once signed in.
    pub cookie: Option<String>,
    /// How its HTTP clients are built (a TLS test's trusts its certificate).
    pub builder: Arc<dyn Fn() -> reqwest::ClientBuilder + Send + Sync>,
}

/// The name of the session cookie over plain HTTP.
pub const SESSION_COOKIE: &str = "stalecast_session";
/// Its name over HTTPS.
pub const SECURE_SESSION_COOKIE: &str = "__Host-stalecast_session";

impl Client {
    /// A client without a session.
    pub fn new(base: &str, sim_url: &str) -> Self {
        Client {
            base: base.to_owned(),
            http: reqwest::Client::new(),
            sim_url: sim_url.trim_end_matches('/').to_owned(),
            cookie: None,
            builder: Arc::new(reqwest::Client::builder),
        }
    }

    /// The same server, its HTTP clients made by `builder` (the session is dropped).
    pub fn built_by(&self, builder: impl Fn() -> reqwest::ClientBuilder + Send + Sync + 'static) -> Self {
        let builder: Arc<dyn Fn() -> reqwest::ClientBuilder + Send + Sync> = Arc::new(builder);
        Client { http: builder().build().expect("http client"), cookie: None, builder, ..self.clone() }
    }

    /// The same server, with `cookie` (`name=value`) on every request.
    pub fn with_cookie(&self, cookie: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::COOKIE, reqwest::header::HeaderValue::from_str(cookie).expect("cookie"));
        let http = (self.builder)().default_headers(headers).build().expect("http client");
        Client { http, cookie: Some(cookie.to_owned()), ..self.clone() }
    }

    /// A new HTTP client (its own connections) with this client's session cookie: another
    /// connection of the same browser.
    pub fn new_http(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(cookie) = &self.cookie {
            headers.insert(reqwest::header::COOKIE, reqwest::header::HeaderValue::from_str(cookie).expect("cookie"));
        }
        (self.builder)().default_headers(headers).build().expect("http client")
    }

    /// The same server, without a session.
    pub fn anonymous(&self) -> Self {
        Client { http: (self.builder)().build().expect("http client"), cookie: None, ..self.clone() }
    }

    /// `auth.login` as `user`: the answer as it came (its headers: `Retry-After`).
    pub async fn login_response(&self, user: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/trpc/auth.login"))
            .header("content-type", "application/json")
            .body(json!({"user": user, "password": password}).to_string())
            .send()
            .await
            .expect("auth.login")
    }

    /// `auth.login` as `user`: status, body and the `Set-Cookie` headers of the answer.
    pub async fn login(&self, user: &str, password: &str) -> (StatusCode, Value, Vec<String>) {
        let response = self.login_response(user, password).await;
        let cookies = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let (status, body) = json_of(response).await;
        (status, body, cookies)
    }

    /// A client of the same server signed in as `user`: a browser of theirs. Panics when
    /// the sign-in fails.
    pub async fn sign_in(&self, user: &str, password: &str) -> Client {
        let (status, body, cookies) = self.anonymous().login(user, password).await;
        assert_eq!(status, StatusCode::OK, "sign-in of {user}: {body}");
        let cookie = cookies
            .iter()
            .filter_map(|c| c.split(';').next())
            .find(|pair| {
                [SESSION_COOKIE, SECURE_SESSION_COOKIE].iter().any(|name| pair.starts_with(&format!("{name}=")))
            })
            .unwrap_or_else(|| panic!("sign-in of {user} set no session cookie: {cookies:?}"));
        self.with_cookie(cookie)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /trpc/<path>?input=…`: status and JSON body.
    pub async fn query(&self, path: &str, input: Option<Value>) -> (StatusCode, Value) {
        let mut url = self.url(&format!("/trpc/{path}"));
        if let Some(input) = input {
            url.push_str(&format!("?input={}", encode(&input.to_string())));
        }
        json_of(self.http.get(url).send().await.expect("request")).await
    }

    /// `POST /trpc/<path>` with `input` as body: status and JSON body.
    pub async fn mutate(&self, path: &str, input: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(&format!("/trpc/{path}")))
            .header("content-type", "application/json")
            .body(input.to_string())
            .send()
            .await
            .expect("request");
        json_of(response).await
    }

    /// Creates a volume through Stalecast; answers its id.
    pub async fn create_volume(&self, name: &str) -> String {
        let (status, body) =
            self.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": name, "sizeGb": 1})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["result"]["data"]["id"].as_str().expect("volume id").to_owned()
    }

    /// `GET /readyz`: status and JSON body.
    pub async fn readyz(&self) -> (StatusCode, Value) {
        json_of(self.http.get(self.url("/readyz")).send().await.expect("readyz")).await
    }

    /// Polls `/readyz` until it answers `want`; answers its body. Panics after 15 s.
    pub async fn wait_for_readiness(&self, want: u16) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self.readyz().await;
            if status == want {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "readyz stayed {status}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens `updates.onUpdate` with `query` (e.g. `input=…`) and optional headers.
    pub async fn stream(&self, query: &str, last_event_id: Option<&str>) -> SseClient {
        let response = self.open_stream(query, last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK);
        SseClient::new(response)
    }

    /// Asks for `updates.onUpdate` with `query` and answers the response as it comes (a
    /// stream, or an error envelope).
    pub async fn open_stream(&self, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let url = if query.is_empty() {
            self.url("/trpc/updates.onUpdate")
        } else {
            self.url(&format!("/trpc/updates.onUpdate?{query}"))
        };
        let mut request = self.http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.expect("stream request")
    }

    /// Sets the simulator's fault knobs (`{"errorRate":1.0}`, `{"latencyMs":…}`, `{}`).
    pub async fn set_faults(&self, faults: Value) {
        let response =
            self.http.put(format!("{}/_sim/faults", self.sim_url)).json(&faults).send().await.expect("faults");
        assert!(response.status().is_success());
    }

    /// `POST /_sim/seed` with `body` (`{"volumes":N,…}`): status and JSON answer (the
    /// simulator's totals, or `{"error":…}`).
    pub async fn seed(&self, body: Value) -> (StatusCode, Value) {
        json_of(self.http.post(format!("{}/_sim/seed", self.sim_url)).json(&body).send().await.expect("seed")).await
    }

    /// Waits (up to `wait`) until `storage.volumes.list` holds at least `count` volumes;
    /// answers how many it holds.
    pub async fn wait_for_volumes(&self, count: usize, wait: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (status, body) = self.query("storage.volumes.list", None).await;
            let have = body["result"]["data"].as_array().map_or(0, Vec::len);
            if status == StatusCode::OK && have >= count {
                return have;
            }
            assert!(tokio::time::Instant::now() < deadline, "storage.volumes.list holds {have} volumes, not {count}");
            // A large list takes a while to read: do not ask again at once.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// How many requests the simulator served, by `"GET volumes"` and the like. Requests
    /// its fault knobs answered are not counted.
    pub async fn sim_requests(&self) -> BTreeMap<String, u64> {
        let stats: Value = self
            .http
            .get(format!("{}/_sim/stats", self.sim_url))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json");
        serde_json::from_value(stats["requests"].clone()).expect("request counts")
    }
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"));
    (status, value)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// What an open stream did next.
#[derive(Debug)]
pub enum Next {
    /// An event of any kind (`connected`, `ping`, or a data message).
    Event(Event),
    /// The body ended cleanly: the chunked terminator, or the end of a body delimited
    /// by the connection's close.
    End,
    /// The body broke: a reset, a connection closed inside the chunked coding, a
    /// malformed event.
    Failed(String),
    /// Nothing within the wait: the stream is still open.
    Quiet,
}

/// A stream's raw bytes, recorded as they arrive until it ends or is dropped: to assert
/// on everything a stream carried, every frame and comment included.
pub struct Recorder {
    bytes: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Opens `updates.onUpdate` on `client` (with `query` and `last_event_id`, as
    /// [`Client::open_stream`]) and records it.
    pub async fn start(client: &Client, query: &str, last_event_id: Option<&str>) -> Recorder {
        let response = client.open_stream(query, last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let bytes = bytes.clone();
            async move {
                let mut body = response.bytes_stream();
                while let Some(Ok(chunk)) = body.next().await {
                    bytes.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&chunk);
                }
            }
        });
        Recorder { bytes, task }
    }

    /// Everything recorded so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Waits until the recording holds `needle`, at most `within`.
    pub async fn wait_for(&self, needle: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.text().contains(needle) {
            assert!(tokio::time::Instant::now() < deadline, "{needle} never came; the stream so far:\n{}", self.text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops recording; answers everything recorded.
    pub fn stop(self) -> String {
        self.task.abort();
        self.text()
    }
}

/// One open `updates.onUpdate` stream.
pub struct SseClient {
    pub headers: reqwest::header::HeaderMap,
    events: EventStream,
}

impl SseClient {
    pub fn new(response: reqwest::Response) -> Self {
        let headers = response.headers().clone();
        Self::from_body(headers, response.bytes_stream().map(|r| r.map_err(|e| format!("{e:?}"))))
    }

    /// A stream over any body: its decoded bytes, or why it broke.
    pub fn from_body(
        headers: reqwest::header::HeaderMap,
        body: impl Stream<Item = Result<bytes::Bytes, String>> + Send + 'static,
    ) -> Self {
        let events = body.eventsource().map(|r| r.map_err(|e| e.to_string())).boxed();
        SseClient { headers, events }
    }

    /// What happens next, within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Next {
        match tokio::time::timeout(wait, self.events.next()).await {
            Ok(Some(Ok(event))) => Next::Event(event),
            Ok(Some(Err(error))) => Next::Failed(error),
            Ok(None) => Next::End,
            Err(_) => Next::Quiet,
        }
    }

    /// The next event of any kind; panics if the stream ends, breaks or stays quiet.
    pub async fn next_event(&mut self, wait: Duration) -> Event {
        match self.next(wait).await {
            Next::Event(event) => event,
            other => panic!("expected an event within {wait:?}, got {other:?}"),
        }
    }

    /// The next data event (update or resync) as its id and JSON, skipping `connected`
    /// and `ping`; panics if the stream ends, breaks or has none within `wait`.
    pub async fn next_data(&mut self, wait: Duration) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Event(event) if event.event == "message" => {
                    let data = serde_json::from_str(&event.data)
                        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", event.data));
                    return (event.id, data);
                }
                Next::Event(_) => {}
                other => panic!("expected a data event within {wait:?}, got {other:?}"),
            }
        }
    }

    /// What happens next within `wait`, skipping pings.
    async fn next_but_pings(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Event(event) if event.event == "ping" => {}
                other => return other,
            }
        }
    }

    /// Asserts that for `wait` the stream stays open and sends no data event (pings are
    /// fine).
    pub async fn assert_no_data(&mut self, wait: Duration) {
        match self.next_but_pings(wait).await {
            Next::Quiet => {}
            other => panic!("expected an open, quiet stream for {wait:?}, got {other:?}"),
        }
    }

    /// Asserts that the stream ends cleanly within `wait`, with no data event first
    /// (pings are fine).
    pub async fn assert_ends(&mut self, wait: Duration) {
        match self.next_but_pings(wait).await {
            Next::End => {}
            other => panic!("expected a clean end of the stream within {wait:?}, got {other:?}"),
        }
    }

    /// Waits for the `connected` event that opens every stream.
    pub async fn connected(&mut self) -> Value {
        let event = self.next_event(Duration::from_secs(10)).await;
        assert_eq!(event.event, "connected");
        serde_json::from_str(&event.data).expect("connected data is JSON")
    }
}
