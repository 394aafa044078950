//! Mutations tell the truth and cost what they change: a write that succeeded answers
//! success even when reading it back fails, a write without an answer says its outcome
//! is unknown, a mutation reads back only its one record, every string input has a
//! limit, and a volume in use cannot be deleted (409, with the cloud's own message).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stalecast_tests::{SseClient, TestApp, spawn_app, spawn_app_with};

/// Generous bound for what the poller must eventually do (its backoff after failures
/// reaches 30 s at most).
const CATCH_UP: Duration = Duration::from_secs(45);

fn error_code(body: &Value) -> &str {
    body["error"]["data"]["code"].as_str().unwrap_or_else(|| panic!("not an error envelope: {body}"))
}

/// The upstream requests made between two stats readings.
fn made_between(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, n)| {
            let made = n - before.get(k).copied().unwrap_or(0);
            (made > 0).then(|| (k.clone(), made))
        })
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Waits until the poller's first round has asked for every collection.
async fn first_poll_done(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let listings = ["projects", "servers", "volumes", "images", "networks"].map(|t| format!("GET {t}"));
    loop {
        let stats = app.sim_requests().await;
        if listings.iter().all(|l| stats.get(l).is_some_and(|n| *n > 0)) {
            return;
        }
        assert!(Instant::now() < deadline, "the first poll never finished: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stream of the updates of one type, past its `connected` event.
async fn stream_of(app: &TestApp, kind: &str) -> SseClient {
    let input = json!({ "types": [kind] }).to_string();
    let mut stream = app.stream(&format!("input={}", stalecast_tests::encode(&input)), None).await;
    stream.connected().await;
    stream
}

/// The id of the first resource `list` (a list query) answers with `status`.
async fn first_with_status(app: &TestApp, list: &str, input: Value, status: &str) -> String {
    let (_, body) = app.query(list, Some(input)).await;
    let items = body["result"]["data"].as_array().unwrap_or_else(|| panic!("{list}: {body}"));
    let found = items.iter().find(|r| r["status"] == status).unwrap_or_else(|| panic!("{list}: none {status}"));
    found["id"].as_str().expect("id").to_owned()
}

/// The id of a running server of `project`.
async fn running_server(app: &TestApp, project: &str) -> String {
    first_with_status(app, "compute.servers.list", json!({ "projectId": project }), "ACTIVE").await
}

/// Starts the app once its volumes (and so the projects) are stored.
async fn spawn_loaded() -> TestApp {
    let app = spawn_app().await;
    let (status, body) = app.query("storage.volumes.list", None).await;
    assert_eq!(status, 200, "{body}");
    app
}

/// The next update on `stream`: its type and ids.
async fn next_update(stream: &mut SseClient, what: &str) -> (String, Value) {
    let (_, data) = stream.next_data(Duration::from_secs(10)).await;
    assert_eq!(data["kind"], "update", "{what}: {data}");
    (data["type"].as_str().expect("type").to_owned(), data["ids"].clone())
}

#[tokio::test]
async fn a_write_that_succeeded_answers_success_when_reading_it_back_fails() {
    let app = spawn_loaded().await;
    let mut stream = stream_of(&app, "volumes").await;

    app.set_faults(json!({"failReads": true})).await;
    let (status, body) = app
        .mutate(
            "storage.volumes.create",
            json!({"projectId": "prj-data", "name": "unread", "sizeGb": 3, "description": "kept"}),
        )
        .await;
    app.set_faults(json!({})).await;
    assert_eq!(status, 200, "the create succeeded upstream: {body}");
    let volume = &body["result"]["data"];
    assert_eq!(
        (&volume["name"], &volume["projectId"], &volume["sizeGb"], &volume["status"], &volume["description"]),
        (&json!("unread"), &json!("prj-data"), &json!(3), &json!("creating"), &json!("kept")),
        "what the write told: {volume}"
    );
    let id = volume["id"].as_str().expect("id").to_owned();
    assert!(app.sim().expect("sim").world().volumes.iter().any(|v| v["id"] == id.as_str()));

    // The poller catches up: the new volume is announced, then served.
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, data) = stream.next_data(left).await;
        if data["ids"].as_array().is_some_and(|ids| ids.contains(&json!(id))) {
            break;
        }
    }
    let (status, body) = app.query("storage.volumes.get", Some(json!({"id": id}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["data"]["name"], "unread");
    app.shutdown().await;
}

#[tokio::test]
async fn creates_at_half_errors_leave_no_volume_that_was_not_answered_200() {
    let app = spawn_loaded().await;
    app.set_faults(json!({"errorRate": 0.5})).await;
    let mut answered_ok = BTreeMap::new();
    let mut failed = 0;
    for i in 0..30 {
        let name = format!("half-{i:02}");
        let input = json!({"projectId": "prj-web", "name": name, "sizeGb": 1});
        let (status, body) = app.mutate("storage.volumes.create", input).await;
        if status == 200 {
            answered_ok.insert(name, body["result"]["data"]["id"].as_str().expect("id").to_owned());
        } else {
            // A definite upstream error (nothing was written), or an unknown outcome.
            assert!(matches!(error_code(&body), "BAD_GATEWAY" | "GATEWAY_TIMEOUT"), "{status}: {body}");
            failed += 1;
        }
    }
    app.set_faults(json!({})).await;
    assert!(failed > 0 && !answered_ok.is_empty(), "{failed} failed, {} answered 200", answered_ok.len());

    // What exists in the cloud is exactly what was answered 200, with the same ids.
    let existing: BTreeMap<String, String> = app
        .sim()
        .expect("sim")
        .world()
        .volumes
        .iter()
        .filter_map(|v| {
            let name = v["name"].as_str()?;
            name.starts_with("half-").then(|| (name.to_owned(), v["id"].as_str().unwrap_or_default().to_owned()))
        })
        .collect();
    assert_eq!(existing, answered_ok, "volumes in the cloud vs. creates answered 200 ({failed} answered an error)");

    // And Stalecast serves every one of them once the poller has caught up.
    let wanted: BTreeSet<&String> = answered_ok.values().collect();
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let (_, body) = app.query("storage.volumes.list", Some(json!({"projectId": "prj-web"}))).await;
        let listed: BTreeSet<String> = body["result"]["data"]
            .as_array()
            .map(|vs| vs.iter().filter_map(|v| v["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let missing: Vec<_> = wanted.iter().filter(|id| !listed.contains(id.as_str())).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "answered 200 but never listed: {missing:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_write_without_an_answer_is_an_unknown_outcome() {
    let app = spawn_app_with(|c| c.upstream_timeout = Duration::from_secs(1)).await;
    let (status, _) = app.query("projects.list", None).await;
    assert_eq!(status, 200);
    // Every answer now comes after the 1 s timeout: the create is sent, its answer never read.
    app.set_faults(json!({"latencyMs": 3000})).await;
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "lost", "sizeGb": 1})).await;
    app.set_faults(json!({})).await;
    assert_eq!((status.as_u16(), error_code(&body)), (504, "GATEWAY_TIMEOUT"), "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("check before retrying"), "{message}");
    assert!(!message.contains("unreachable"), "distinct from nothing-was-sent: {message}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_write_accepted_with_an_unreadable_answer_is_an_unknown_outcome() {
    let app = spawn_loaded().await;
    // A proxy mangles every answer: the create reaches the cloud, its answer is not JSON.
    app.set_faults(json!({"garbageRate": 1.0})).await;
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "mangled", "sizeGb": 1})).await;
    app.set_faults(json!({})).await;
    // Not a 502 "error": the volume exists, and a client that retried would make a second.
    assert_eq!((status.as_u16(), error_code(&body)), (504, "GATEWAY_TIMEOUT"), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("check before retrying")), "{body}");
    let made = app.sim().expect("sim").world().volumes.iter().filter(|v| v["name"] == "mangled").count();
    assert_eq!(made, 1, "the cloud made the volume");
    app.shutdown().await;
}

#[tokio::test]
async fn a_mutation_reads_back_its_record_only_and_announces_it_once() {
    // The poller asks once at start and then not for an hour: every later upstream
    // request comes from the mutations.
    let app = spawn_app_with(|c| c.poll_interval = Duration::from_secs(3600)).await;
    first_poll_done(&app).await;
    let mut stream = app.stream("", None).await;
    stream.connected().await;
    let running = running_server(&app, "prj-data").await;

    let before = app.sim_requests().await;
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "one", "sizeGb": 2})).await;
    assert_eq!(status, 200, "{body}");
    let volume = body["result"]["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(made_between(&before, &app.sim_requests().await), counts(&[("POST volumes", 1), ("GET volume", 1)]));
    assert_eq!(next_update(&mut stream, "create").await, ("volumes".into(), json!([volume])));
    let (status, body) = app.query("storage.volumes.get", Some(json!({"id": volume}))).await;
    assert_eq!((status.as_u16(), &body["result"]["data"]["name"]), (200, &json!("one")), "stored before the answer");

    let before = app.sim_requests().await;
    let (status, body) = app.mutate("compute.servers.stop", json!({"id": running})).await;
    assert_eq!((status.as_u16(), &body["result"]["data"]["status"]), (200, &json!("SHUTOFF")), "{body}");
    assert_eq!(
        made_between(&before, &app.sim_requests().await),
        counts(&[("POST servers action", 1), ("GET server", 1)])
    );
    assert_eq!(next_update(&mut stream, "stop").await, ("servers".into(), json!([running])));

    let before = app.sim_requests().await;
    let (status, body) = app.mutate("storage.volumes.delete", json!({"id": volume})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(made_between(&before, &app.sim_requests().await), counts(&[("DELETE volumes", 1)]));
    assert_eq!(next_update(&mut stream, "delete").await, ("volumes".into(), json!([volume])));
    let (status, _) = app.query("storage.volumes.get", Some(json!({"id": volume}))).await;
    assert_eq!(status, 404, "removed from the store before the answer");

    // A batch of 16 creates: 16 writes and 16 shows, never a listing.
    let before = app.sim_requests().await;
    let paths = vec!["storage.volumes.create"; 16].join(",");
    let inputs: serde_json::Map<String, Value> = (0..16)
        .map(|i| (i.to_string(), json!({"projectId": "prj-web", "name": format!("b-{i}"), "sizeGb": 1})))
        .collect();
    let response = app.http.post(app.url(&format!("/trpc/{paths}?batch=1"))).json(&inputs).send().await.expect("batch");
    assert_eq!(response.status(), 200);
    let answers: Vec<Value> = response.json().await.expect("json");
    assert_eq!(answers.len(), 16);
    assert_eq!(made_between(&before, &app.sim_requests().await), counts(&[("POST volumes", 16), ("GET volume", 16)]));
    let mut announced = BTreeSet::new();
    for _ in 0..16 {
        let (kind, ids) = next_update(&mut stream, "batch").await;
        assert_eq!(kind, "volumes");
        announced.extend(ids.as_array().expect("ids").iter().map(|id| id.as_str().expect("id").to_owned()));
    }
    let created: BTreeSet<String> =
        answers.iter().map(|a| a["result"]["data"]["id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(announced, created);
    // Nothing announced twice, nothing else: the stream stays quiet.
    stream.assert_no_data(Duration::from_secs(1)).await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_record_the_poller_sees_unchanged_is_not_announced_again() {
    let app = spawn_loaded().await;
    let mut stream = stream_of(&app, "servers").await;
    let running = running_server(&app, "prj-web").await;
    let (status, _) = app.mutate("compute.servers.stop", json!({"id": running})).await;
    assert_eq!(status, 200);
    assert_eq!(next_update(&mut stream, "stop").await, ("servers".into(), json!([running])));
    // Several polls (every 200 ms) see the stopped server as stored: nothing more.
    let polls = app.sim_requests().await.get("GET servers").copied().unwrap_or(0);
    stream.assert_no_data(Duration::from_secs(2)).await;
    let polled = app.sim_requests().await.get("GET servers").copied().unwrap_or(0) - polls;
    assert!(polled >= 2, "the poller polled meanwhile ({polled} times)");
    app.shutdown().await;
}

#[tokio::test]
async fn every_string_input_has_a_limit_that_names_the_field() {
    let app = spawn_loaded().await;
    let before = app.sim_requests().await;
    let huge = "f".repeat(900 * 1024);
    let (status, body) =
        app.mutate("compute.servers.create", json!({"projectId": "prj-web", "name": "big", "flavor": huge})).await;
    assert_eq!((status.as_u16(), error_code(&body)), (400, "BAD_REQUEST"), "{body}");
    assert_eq!(body["error"]["message"], "input.flavor: at most 64 characters");
    let (status, body) = app
        .mutate("compute.servers.create", json!({"projectId": "prj-web", "name": "ok", "flavor": "f".repeat(65)}))
        .await;
    assert_eq!((status.as_u16(), &body["error"]["message"]), (400, &json!("input.flavor: at most 64 characters")));
    let (status, body) = app.query("storage.volumes.get", Some(json!({"id": "v".repeat(65)}))).await;
    assert_eq!((status.as_u16(), &body["error"]["message"]), (400, &json!("input.id: at most 64 characters")));
    let (status, body) = app.query("storage.volumes.list", Some(json!({"projectId": "p".repeat(65)}))).await;
    assert_eq!((status.as_u16(), &body["error"]["message"]), (400, &json!("input.projectId: at most 64 characters")));
    let input = json!({"projectId": "prj-web", "name": "n".repeat(256), "sizeGb": 1});
    let (status, body) = app.mutate("storage.volumes.create", input).await;
    assert_eq!((status.as_u16(), &body["error"]["message"]), (400, &json!("input.name: at most 255 characters")));
    let input = json!({"projectId": "prj-web", "name": "d", "sizeGb": 1, "description": "d".repeat(1025)});
    let (status, body) = app.mutate("storage.volumes.create", input).await;
    assert_eq!(
        (status.as_u16(), &body["error"]["message"]),
        (400, &json!("input.description: at most 1024 characters"))
    );
    assert_eq!(
        made_between(&before, &app.sim_requests().await).keys().filter(|k| !k.starts_with("GET ")).count(),
        0,
        "nothing was written"
    );

    // The limits are in the published schema.
    let document: Value =
        app.http.get(app.url("/openapi.json")).send().await.expect("openapi").json().await.expect("json");
    let schemas = &document["components"]["schemas"];
    for (schema, field, max) in [
        ("ServerCreate", "flavor", 64),
        ("ServerCreate", "name", 255),
        ("ServerCreate", "projectId", 64),
        ("ServerCreate", "imageId", 64),
        ("VolumeCreate", "name", 255),
        ("VolumeCreate", "description", 1024),
        ("IdInput", "id", 64),
        ("ListInput", "projectId", 64),
    ] {
        assert_eq!(schemas[schema]["properties"][field]["maxLength"], max, "{schema}.{field}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn deleting_a_volume_in_use_is_a_conflict_with_the_clouds_message() {
    let app = spawn_app().await;
    let in_use = first_with_status(&app, "storage.volumes.list", json!({}), "in-use").await;
    let (status, body) = app.mutate("storage.volumes.delete", json!({"id": in_use})).await;
    assert_eq!((status.as_u16(), error_code(&body)), (409, "CONFLICT"), "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("Volume status must be available or error"), "OpenStack's own message: {message}");
    let (status, body) = app.query("storage.volumes.get", Some(json!({"id": in_use}))).await;
    assert_eq!((status.as_u16(), &body["result"]["data"]["status"]), (200, &json!("in-use")));
    app.shutdown().await;
}
