//! The poller and the cache: out-of-band changes become updates, one upstream request per
//! type per interval, cached answers while the upstream fails, then recovery.

use std::time::Duration;

use serde_json::{Value, json};
use stalecast_tests::{spawn_app, spawn_app_with};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn an_out_of_band_change_becomes_an_update_within_a_poll_interval() {
    let app = spawn_app().await;
    let mut stream = app.stream("", None).await;
    stream.connected().await;
    // Make sure the cache holds the volumes before the change.
    let (status, _) = app.query("storage.volumes.list", None).await;
    assert_eq!(status, 200);

    let id = app.sim_client().create_volume("prj-data", "made-elsewhere", 3, "").await.expect("direct create");
    let (_, data) = stream.next_data(Duration::from_secs(2)).await.expect("update from the poller");
    assert_eq!(data["type"], "volumes");
    assert_eq!(data["ids"], json!([id]));
    let (_, body) = app.query("storage.volumes.get", Some(json!({"id": id}))).await;
    assert_eq!(body["result"]["data"]["name"], "made-elsewhere");

    // The simulator moves it to "available" later: another update for the same id.
    let (_, data) = stream.next_data(WAIT).await.expect("status transition");
    assert_eq!(data["ids"], json!([id]));
    let (_, body) = app.query("storage.volumes.get", Some(json!({"id": id}))).await;
    assert_eq!(body["result"]["data"]["status"], "available");
    app.shutdown().await;
}

fn upstream_gets(counts: &Value, what: &str) -> u64 {
    counts["requests"][format!("GET {what}")].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn one_upstream_request_per_type_per_interval_however_many_clients() {
    let app = spawn_app_with(|c| c.poll_interval = Duration::from_millis(500)).await;
    let stats = || async {
        app.http
            .get(format!("{}/_sim/stats", app.sim_url))
            .send()
            .await
            .expect("stats")
            .json::<Value>()
            .await
            .expect("json")
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = stats().await;
    let mut streams = Vec::new();
    for _ in 0..50 {
        streams.push(app.stream("", None).await);
    }
    let started = std::time::Instant::now();
    let queries = (0..200).map(|_| app.query("storage.volumes.list", None));
    for (status, _) in futures_util::future::join_all(queries).await {
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(2000).saturating_sub(started.elapsed())).await;
    let elapsed = started.elapsed();
    let after = stats().await;
    let polls = upstream_gets(&after, "volumes") - upstream_gets(&before, "volumes");
    let intervals = (elapsed.as_millis() / 500) as u64;
    assert!(polls <= intervals + 1, "{polls} upstream requests in {elapsed:?} (200 queries, 50 streams)");
    assert!(polls >= intervals.saturating_sub(1), "the poller kept polling: {polls} in {elapsed:?}");
    drop(streams);
    app.shutdown().await;
}

async fn readyz(app: &stalecast_tests::TestApp) -> (u16, Value) {
    let r = app.http.get(app.url("/readyz")).send().await.expect("readyz");
    (r.status().as_u16(), r.json().await.expect("json"))
}

async fn wait_for_readiness(app: &stalecast_tests::TestApp, want: u16) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, body) = readyz(app).await;
        if status == want {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "readyz stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn when_the_upstream_fails_queries_answer_from_the_cache_until_it_recovers() {
    let app = spawn_app().await;
    wait_for_readiness(&app, 200).await;
    let (_, before) = app.query("compute.servers.list", None).await;

    for faults in [json!({"errorRate": 1.0}), json!({"garbageRate": 1.0})] {
        app.set_faults(faults.clone()).await;
        let body = wait_for_readiness(&app, 503).await;
        assert_eq!(body["ready"], false);
        assert!(body["types"].as_array().expect("types").iter().any(|t| t["failures"].as_u64() > Some(0)), "{body}");

        let (status, during) = app.query("compute.servers.list", None).await;
        assert_eq!(status, 200, "{faults}: cached answer");
        assert_eq!(during, before);
        let (status, body) = app.mutate("compute.servers.create", json!({"projectId": "prj-web", "name": "x"})).await;
        assert_eq!(status, 502, "{faults}: {body}");
        assert_eq!(body["error"]["data"]["code"], "BAD_GATEWAY");
        assert!(!body.to_string().contains("simulated"), "a 5xx says nothing internal: {body}");

        app.set_faults(json!({})).await;
        wait_for_readiness(&app, 200).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_503_and_the_server_keeps_running() {
    // A port nothing listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let app = spawn_app_with(|c| c.upstream = Some(format!("http://{closed}"))).await;
    let (status, body) = app.query("projects.list", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["data"]["code"], "SERVICE_UNAVAILABLE");
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    let r = app.http.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_revoked_token_is_renewed_without_the_clients_noticing() {
    let app = spawn_app().await;
    wait_for_readiness(&app, 200).await;
    let r = app.http.post(format!("{}/_sim/revoke-tokens", app.sim_url)).send().await.expect("revoke");
    assert!(r.status().is_success());
    let volume = app.create_volume("after-revocation").await;
    assert!(volume.starts_with("vol-"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200, "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn the_client_renews_its_token_before_keystone_says_it_expires() {
    use stalecast::sim::{Sim, SimConfig};
    use stalecast::upstream::client::{OpenStackClient, UpstreamConfig};

    // Tokens live 31 s; the client renews when less than 30 s are left.
    let sim = Sim::new(SimConfig { token_ttl: Duration::from_secs(31), ..SimConfig::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(stalecast::sim::run(listener, sim.clone(), shutdown.clone()));
    let client = OpenStackClient::new(UpstreamConfig {
        auth_url: format!("http://{addr}"),
        user: "admin".into(),
        password: "stalecast".into(),
        project: "admin".into(),
        timeout: Duration::from_secs(5),
    })
    .expect("client");
    client.projects().await.expect("first call");
    client.servers().await.expect("same token");
    assert_eq!(sim.tokens_issued(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client.projects().await.expect("after renewal");
    assert_eq!(sim.tokens_issued(), 2, "the token was renewed ahead of its expiry");

    // Wrong credentials: a clear upstream failure, not a hang or a panic.
    let wrong = OpenStackClient::new(UpstreamConfig {
        auth_url: format!("http://{addr}"),
        user: "admin".into(),
        password: "wrong".into(),
        project: "admin".into(),
        timeout: Duration::from_secs(5),
    })
    .expect("client");
    let error = wrong.projects().await.expect_err("refused");
    assert!(error.to_string().contains("Keystone refused"), "{error}");
    shutdown.cancel();
    server.await.expect("join").expect("serve");
}
