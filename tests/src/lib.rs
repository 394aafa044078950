//! Test support: start the real Stalecast (with its embedded simulator) on port 0 and
//! talk to it over HTTP, as a browser or the stock tRPC client would.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use stalecast::app::RunningApp;
use stalecast::config::ServeConfig;
use stalecast::sim::Sim;
use stalecast::upstream::client::{OpenStackClient, UpstreamConfig};
use tokio_util::sync::CancellationToken;

/// A running server plus helpers to call it.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// The embedded simulator (absent when the test points `upstream` elsewhere).
    pub sim: Option<Arc<Sim>>,
    /// Where the upstream (normally the embedded simulator) listens.
    pub sim_url: String,
    pub app: RunningApp,
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

/// Starts the app with [`test_config`] changed by `adjust`.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    init_tracing();
    let mut config = test_config();
    adjust(&mut config);
    let app = stalecast::app::start(config, CancellationToken::new()).await.expect("app starts");
    let sim = app.sim.clone();
    let sim_url = app.upstream_url.clone();
    TestApp { base: format!("http://{}", app.addr), http: reqwest::Client::new(), sim, sim_url, app }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// Percent-encodes a query-string value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl TestApp {
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
        let (status, body) = self
            .mutate("storage.volumes.create", serde_json::json!({"projectId": "prj-web", "name": name, "sizeGb": 1}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["result"]["data"]["id"].as_str().expect("volume id").to_owned()
    }

    /// Opens `updates.onUpdate` with `query` (e.g. `input=…`) and optional headers.
    pub async fn stream(&self, query: &str, last_event_id: Option<&str>) -> SseClient {
        let url = if query.is_empty() {
            self.url("/trpc/updates.onUpdate")
        } else {
            self.url(&format!("/trpc/updates.onUpdate?{query}"))
        };
        let mut request = self.http.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("stream request");
        assert_eq!(response.status(), StatusCode::OK);
        SseClient::new(response)
    }

    /// A client for the simulator's own API, to change the cloud out of band.
    pub fn sim_client(&self) -> OpenStackClient {
        OpenStackClient::new(UpstreamConfig {
            auth_url: self.sim_url.clone(),
            user: "admin".into(),
            password: "stalecast".into(),
            project: "admin".into(),
            timeout: Duration::from_secs(5),
        })
        .expect("simulator client")
    }

    /// Sets the simulator's fault knobs.
    pub async fn set_faults(&self, faults: Value) {
        let response =
            self.http.put(format!("{}/_sim/faults", self.sim_url)).json(&faults).send().await.expect("faults");
        assert!(response.status().is_success());
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.app.shutdown().await.expect("clean shutdown");
    }
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"));
    (status, value)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// One open `updates.onUpdate` stream.
pub struct SseClient {
    pub headers: reqwest::header::HeaderMap,
    events: EventStream,
}

impl SseClient {
    pub fn new(response: reqwest::Response) -> Self {
        let headers = response.headers().clone();
        let events = response.bytes_stream().eventsource().map(|r| r.map_err(|e| e.to_string())).boxed();
        SseClient { headers, events }
    }

    /// The next event of any kind, or `None` if none came within `wait` or the stream ended.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Event> {
        match tokio::time::timeout(wait, self.events.next()).await {
            Ok(Some(Ok(event))) => Some(event),
            _ => None,
        }
    }

    /// The next data event (update or resync), skipping `connected` and `ping`.
    pub async fn next_data(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next_event(left).await?;
            if event.event == "message" {
                let data = serde_json::from_str(&event.data).expect("event data is JSON");
                return Some((event.id, data));
            }
        }
    }

    /// Waits for the `connected` event that opens every stream.
    pub async fn connected(&mut self) -> Value {
        let event = self.next_event(Duration::from_secs(5)).await.expect("connected event");
        assert_eq!(event.event, "connected");
        serde_json::from_str(&event.data).expect("connected data is JSON")
    }
}
