//! `/metrics`: served on its own listener only, in a text that Prometheus's own `promtool`
//! accepts (syntax and naming), whose counters move with what the server does, and whose
//! labels never name an id, a name or a project. And `server.stats`, the dashboard's
//! figures: announced on the streams that name `serverStats`, moving with what happens.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use stalecast::domain::stats::INTERVAL;
use stalecast::updates::UpdateType;
use stalecast_tests::{Next, spawn_app, spawn_app_with, types_query};

/// The Prometheus project's checker: `PROMTOOL`, else `promtool` on the `PATH`.
fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into())
}

/// Fails unless `promtool check metrics` accepts `text` without a problem.
fn promtool_accepts(text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {} ({e}): `make promtool` installs it (from Debian's prometheus package)", promtool())
        });
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {}\n{said}", out.status);
}

/// The value of the sample written exactly as `series` (`name{label="value",…}`), if any.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every sample of `name` whose labels contain each of `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labelled, value) = rest.rsplit_once(' ')?;
            let matches = if labelled.is_empty() {
                labels.is_empty()
            } else {
                labelled.starts_with('{') && labels.iter().all(|l| labelled.contains(l))
            };
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("text").to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.text().await.expect("body")
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_their_counters_move() {
    let app = spawn_app_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let url = app.metrics_url().expect("a metrics listener");
    let http = reqwest::Client::new();
    // The first poll of every collection has landed: the cache has an age.
    app.wait_for_readiness(200).await;
    let before = scrape(&http, &url).await;
    promtool_accepts(&before);
    assert_eq!(value(&before, "stalecast_leader"), Some(1.0), "a single node polls: {before}");
    assert_eq!(value(&before, "stalecast_streams_open"), Some(0.0));
    assert!(value(&before, "stalecast_build_info{version=\"0.1.0\"}").is_some(), "{before}");

    // A stream, a mutation it hears of, a query, a bad input and an unknown procedure.
    let mut stream = app.stream("", None).await;
    let name = format!("metrics-{}", std::process::id());
    let id = app.create_volume(&name).await;
    let (_, update) = stream.next_data(Duration::from_secs(5)).await;
    assert_eq!(update["type"], "volumes");
    let (status, _) = app.query("storage.volumes.list", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.mutate("storage.volumes.create", json!({"projectId": "prj-web", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.query(&format!("no.such.{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A poll or two of every type after the change.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let after = scrape(&http, &url).await;
    promtool_accepts(&after);
    let moved = |name: &str, labels: &[&str]| sum(&after, name, labels) - sum(&before, name, labels);
    assert_eq!(value(&after, "stalecast_streams_open"), Some(1.0));
    // The test's client signed in once: one session (the sweeper counts every 250 ms).
    assert_eq!(value(&after, "stalecast_sessions"), Some(1.0), "{after}");
    let create = ["procedure=\"storage.volumes.create\"", "kind=\"mutation\""];
    assert_eq!(moved("stalecast_rpc_calls_total", &[create[0], create[1], "status=\"200\""]), 1.0);
    assert_eq!(moved("stalecast_rpc_calls_total", &[create[0], create[1], "status=\"400\""]), 1.0);
    assert_eq!(moved("stalecast_rpc_call_duration_seconds_count", &create), 2.0);
    let list = ["procedure=\"storage.volumes.list\"", "kind=\"query\"", "status=\"200\""];
    assert!(moved("stalecast_rpc_calls_total", &list) >= 1.0);
    assert_eq!(moved("stalecast_rpc_calls_total", &["procedure=\"unknown\"", "status=\"404\""]), 1.0);
    assert!(moved("stalecast_notifications_published_total", &["type=\"volumes\""]) >= 1.0);
    assert!(moved("stalecast_notifications_written_total", &["type=\"volumes\""]) >= 1.0, "the stream got it");
    assert!(moved("stalecast_notification_delivery_seconds_count", &[]) >= 1.0);
    // Cinder's create answers 202, its show 200; Keystone and the rest answered the polls.
    assert_eq!(moved("stalecast_upstream_requests_total", &["service=\"block-storage\"", "status=\"202\""]), 1.0);
    assert!(moved("stalecast_upstream_request_duration_seconds_count", &["service=\"compute\""]) >= 1.0);
    assert!(moved("stalecast_polls_total", &["type=\"volumes\""]) >= 1.0);
    assert_eq!(moved("stalecast_poll_failures_total", &[]), 0.0);
    let age = value(&after, "stalecast_cache_age_seconds{type=\"volumes\"}").expect("volumes' age");
    assert!((0.0..5.0).contains(&age), "{age}");
    // What the server acted on never becomes a label.
    for needle in [id.as_str(), name.as_str(), "prj-web", "no.such"] {
        assert!(!after.contains(needle), "{needle} in the metrics:\n{after}");
    }

    // A failing upstream shows as failed polls and 5xx answers.
    app.set_faults(json!({"errorRate": 1.0})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let failing = scrape(&http, &url).await;
    assert!(sum(&failing, "stalecast_poll_failures_total", &["type=\"volumes\""]) >= 1.0, "{failing}");
    assert!(sum(&failing, "stalecast_upstream_requests_total", &["status=\"500\""]) >= 1.0);
    app.set_faults(json!({})).await;

    drop(stream);
    app.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served_only_on_their_own_listener_and_only_to_this_host() {
    let app = spawn_app_with(|c| c.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let url = app.metrics_url().expect("a metrics listener");
    let http = reqwest::Client::new();
    // The app's port answers /metrics as any path the API does not claim (the dashboard),
    // never with the figures.
    let public = http.get(app.url("/metrics")).send().await.expect("public port");
    assert!(!public.text().await.expect("body").contains("stalecast_"));
    // A page whose name resolves to this host (DNS rebinding) is refused.
    let rebound = http.get(&url).header("host", "evil.example:9464").send().await.expect("request");
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let foreign = http.get(&url).header("origin", "https://evil.example").send().await.expect("request");
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    // Nothing else is served there.
    let other = http.get(url.replace("/metrics", "/trpc/projects.list")).send().await.expect("request");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let post = http.post(&url).send().await.expect("request");
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    app.shutdown().await;

    // Off unless asked for.
    let app = spawn_app_with(|_| {}).await;
    assert_eq!(app.metrics_url(), None);
    app.shutdown().await;
}

/// The `result.data` of `server.stats`.
async fn stats(app: &stalecast_tests::TestApp) -> serde_json::Value {
    let (status, body) = app.query("server.stats", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["result"]["data"].clone()
}

#[tokio::test]
async fn server_stats_are_announced_to_streams_that_name_them_and_move_with_mutations() {
    let app = spawn_app().await;
    app.wait_for_readiness(200).await;
    let mut watching = app.stream(&types_query(&["serverStats", "volumes"]), None).await;
    watching.connected().await;
    let mut plain = app.stream("", None).await;
    plain.connected().await;
    let before = stats(&app).await;
    let total_before = before["nodes"][0]["notificationsTotal"].as_u64().expect("a total");

    let name = format!("stats-{}", std::process::id());
    app.create_volume(&name).await;
    // The stream that names the figures hears of the volume, then of new figures within
    // an interval or two; the one that names nothing hears of the volume only.
    let wait = INTERVAL * 3;
    let mut heard_stats = false;
    let deadline = tokio::time::Instant::now() + wait;
    while !heard_stats {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (_, data) = watching.next_data(left).await;
        heard_stats = data["type"] == "serverStats";
    }
    let after = stats(&app).await;
    let node = &after["nodes"][0];
    assert!(node["notificationsTotal"].as_u64().expect("a total") > total_before, "{before}\n{after}");
    assert_eq!(node["streams"], 2, "{after}");
    assert_eq!(node["polls"], true, "a single node polls");
    assert!(after["windowMs"].as_u64().expect("a window") > 0);
    assert!(node["deliveryP99Ms"].as_f64().is_some(), "the volume's update was delivered: {after}");
    let compute = after["services"].as_array().expect("services").iter().find(|s| s["service"] == "compute");
    assert_eq!(compute.expect("compute")["lastStatus"], "200", "{after}");
    let collections = after["collections"].as_array().expect("collections");
    assert_eq!(
        collections.len(),
        UpdateType::COLLECTIONS.len(),
        "every collection, not the figures themselves: {after}"
    );
    assert!(collections.iter().all(|c| c["confirmedAt"].as_u64().is_some() && c["failures"] == 0), "{after}");
    // Nothing in the answer names what the server acted on.
    assert!(!after.to_string().contains(&name), "{after}");

    // Two intervals of what the stream that names nothing hears: the volume (created, then
    // available), never the figures.
    let mut heard = Vec::new();
    let deadline = tokio::time::Instant::now() + INTERVAL * 2;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match plain.next(left).await {
            Next::Event(event) if event.event == "message" => {
                let data: serde_json::Value = serde_json::from_str(&event.data).expect("JSON");
                heard.push(data["type"].as_str().unwrap_or_default().to_owned());
            }
            Next::Event(_) => {}
            Next::Quiet => break,
            other => panic!("the stream broke: {other:?}"),
        }
    }
    assert!(heard.first().is_some_and(|t| t == "volumes") && heard.iter().all(|t| t == "volumes"), "{heard:?}");

    // A failing upstream shows in the figures: failed polls and a 5xx last answer.
    app.set_faults(json!({"errorRate": 1.0})).await;
    let deadline = tokio::time::Instant::now() + INTERVAL * 4;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (_, data) = watching.next_data(left).await;
        if data["type"] != "serverStats" {
            continue;
        }
        let failing = stats(&app).await;
        let collections = failing["collections"].as_array().expect("collections");
        if collections.iter().any(|c| c["failures"].as_u64() > Some(0)) {
            let failed =
                failing["services"].as_array().expect("services").iter().any(|s| s["failures"].as_u64() > Some(0));
            assert!(failed, "{failing}");
            break;
        }
    }
    app.set_faults(json!({})).await;
    drop((watching, plain));
    app.shutdown().await;
}
