//! The poller and the cache: out-of-band changes become updates, one upstream request per
//! type per interval, each change announced once even when mutations race the poller,
//! cached answers while the upstream fails or hangs, backoff and one log line per state
//! change while it fails, then recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stalecast_tests::child::ChildServer;
use stalecast_tests::{Next, StandaloneSim, UpstreamClient, spawn_app, spawn_app_anonymous, spawn_app_with};

const WAIT: Duration = Duration::from_secs(10);

/// The collections, as the simulator counts their requests (`GET volumes`, …).
const TYPES: [&str; 8] = ["projects", "servers", "volumes", "images", "networks", "snapshots", "subnets", "flavors"];

#[tokio::test]
async fn an_out_of_band_change_becomes_an_update_on_a_following_poll() {
    let app = spawn_app().await;
    let mut stream = app.stream("", None).await;
    stream.connected().await;
    // Make sure the cache holds the volumes before the change.
    let (status, _) = app.query("storage.volumes.list", None).await;
    assert_eq!(status, 200);

    let id = app.create_volume_out_of_band("prj-data", "made-elsewhere", 3).await;
    let (_, data) = stream.next_data(WAIT).await;
    assert_eq!(data["type"], "volumes");
    assert_eq!(data["ids"], json!([id]));
    let (_, body) = app.query("storage.volumes.get", Some(json!({"id": id}))).await;
    assert_eq!(body["result"]["data"]["name"], "made-elsewhere");

    // The simulator moves it to "available" later: another update for the same id.
    let (_, data) = stream.next_data(WAIT).await;
    assert_eq!(data["ids"], json!([id]));
    let (_, body) = app.query("storage.volumes.get", Some(json!({"id": id}))).await;
    assert_eq!(body["result"]["data"]["status"], "available");
    app.shutdown().await;
}

fn gets(counts: &BTreeMap<String, u64>, kind: &str) -> u64 {
    counts.get(&format!("GET {kind}")).copied().unwrap_or(0)
}

#[tokio::test]
async fn one_upstream_request_per_type_per_interval_however_many_clients() {
    let app = spawn_app_with(|c| c.poll_interval = Duration::from_millis(500)).await;
    app.wait_for_readiness(200).await;
    let before = app.sim_requests().await;
    let started = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..50 {
        streams.push(app.stream("", None).await);
    }
    // 40 clients asking for every list at once, twice.
    for _ in 0..2 {
        let queries = (0..40).flat_map(|_| {
            [
                "projects.list",
                "compute.servers.list",
                "storage.volumes.list",
                "images.list",
                "networks.list",
                "storage.snapshots.list",
                "networks.subnets.list",
                "compute.flavors.list",
            ]
            .map(|path| app.query(path, None))
        });
        for (status, body) in futures_util::future::join_all(queries).await {
            assert_eq!(status, 200, "{body}");
        }
    }
    tokio::time::sleep(Duration::from_millis(3000).saturating_sub(started.elapsed())).await;
    let elapsed = started.elapsed();
    let after = app.sim_requests().await;
    let intervals = (elapsed.as_millis() / 500) as u64;
    for kind in TYPES {
        let polls = gets(&after, kind) - gets(&before, kind);
        assert!(polls <= intervals + 1, "{kind}: {polls} upstream requests in {elapsed:?} (640 queries, 50 streams)");
        assert!(polls >= 2, "{kind}: the poller kept polling: {polls} in {elapsed:?}");
    }
    drop(streams);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_is_announced_exactly_once_when_mutations_race_the_poller() {
    let app = spawn_app_with(|c| c.poll_interval = Duration::from_millis(20)).await;
    app.wait_for_readiness(200).await;
    let mut stream = app.stream(&stalecast_tests::types_query(&["volumes"]), None).await;
    stream.connected().await;

    // 24 volumes created in waves of 8 concurrent mutations while the poller refreshes
    // the same collection every 20 ms. Each volume changes twice: it appears
    // ("creating"), then becomes "available" a couple of seconds later.
    let mut created = BTreeSet::new();
    for wave in 0..3 {
        let mutations = (0..8).map(|i| {
            app.mutate(
                "storage.volumes.create",
                json!({"projectId": "prj-web", "name": format!("race-{wave}-{i}"), "sizeGb": 1}),
            )
        });
        for (status, body) in futures_util::future::join_all(mutations).await {
            assert_eq!(status, 200, "{body}");
            created.insert(body["result"]["data"]["id"].as_str().expect("id").to_owned());
        }
    }
    // Every one of them becomes available...
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = app.query("storage.volumes.list", None).await;
        let available = body["result"]["data"]
            .as_array()
            .expect("volumes")
            .iter()
            .filter(|v| created.contains(v["id"].as_str().unwrap_or_default()) && v["status"] == "available")
            .count();
        if available == created.len() {
            break;
        }
        assert!(Instant::now() < deadline, "{available} of {} volumes became available", created.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and then dozens more polls find nothing new.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut announced: BTreeMap<String, u32> = BTreeMap::new();
    let mut seqs = Vec::new();
    loop {
        match stream.next(Duration::from_secs(1)).await {
            stalecast_tests::Next::Event(event) if event.event == "ping" => {}
            stalecast_tests::Next::Event(event) => {
                let data: Value = serde_json::from_str(&event.data).expect("json");
                assert_eq!(data["kind"], "update", "{data}");
                seqs.push(data["seq"].as_u64().expect("seq"));
                let ids: Vec<&str> = data["ids"].as_array().expect("ids").iter().filter_map(Value::as_str).collect();
                assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "an id twice in one update: {data}");
                for id in ids {
                    *announced.entry(id.to_owned()).or_default() += 1;
                }
            }
            stalecast_tests::Next::Quiet => break,
            other => panic!("the stream broke: {other:?}"),
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs strictly increase, none twice: {seqs:?}");
    let expected: BTreeMap<String, u32> = created.iter().map(|id| (id.clone(), 2)).collect();
    assert_eq!(announced, expected, "each volume announced once when created and once when available");
    app.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_503_and_the_server_keeps_running() {
    // A port nothing listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let app = spawn_app_anonymous(|c| c.upstream = Some(format!("http://{closed}"))).await;
    // Nobody can sign in while Keystone cannot be reached: 503, not a refusal.
    let (status, body, cookies) = app.login("admin", "stalecast").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["data"]["code"], "SERVICE_UNAVAILABLE");
    assert!(cookies.is_empty(), "{cookies:?}");
    let (status, body) = app.readyz().await;
    assert_eq!(status, 503, "{body}");
    let r = app.http.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn a_revoked_service_token_is_renewed_unnoticed_and_a_user_whose_token_was_revoked_signs_in_again() {
    let app = spawn_app().await;
    app.wait_for_readiness(200).await;
    let mut stream = app.stream("", None).await;
    stream.connected().await;
    // Keystone forgets every token: the service account's, and the user's.
    let r = app.http.post(format!("{}/_sim/revoke-tokens", app.sim_url)).send().await.expect("revoke");
    assert!(r.status().is_success());
    // The poller renews its own token: readiness never notices.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = app.readyz().await;
    assert_eq!(status, 200, "{body}");
    // The user's write carries their own token, which the cloud refuses: 401, and the
    // session, whose token Keystone no longer accepts, ends with its stream.
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "refused", "sizeGb": 1})).await;
    assert_eq!(status, 401, "{body}");
    match stream.next(Duration::from_secs(5)).await {
        Next::Event(event) => assert_eq!(event.event, "serialized-error", "{event:?}"),
        other => panic!("the stream should end with serialized-error, got {other:?}"),
    }
    let (status, _) = app.query("projects.list", None).await;
    assert_eq!(status, 401, "the session is over");
    // Signed in again, the user writes.
    let again = app.sign_in("admin", "stalecast").await;
    assert!(again.create_volume("after-revocation").await.starts_with("vol-"));
    app.shutdown().await;
}

#[tokio::test]
async fn the_client_renews_its_token_before_keystone_says_it_expires() {
    // Tokens live 12 s; the client renews when a quarter of that (3 s) is left: 9 s on.
    let sim = StandaloneSim::start(Duration::from_secs(12)).await;
    let client = UpstreamClient::new(&sim.url, "stalecast");
    let started = tokio::time::Instant::now();
    client.projects().await.expect("first call");
    client.servers().await.expect("same token");
    assert_eq!(sim.tokens_issued(), 1);
    tokio::time::sleep_until(started + Duration::from_secs(6)).await;
    client.projects().await.expect("still the same token");
    assert_eq!(sim.tokens_issued(), 1, "not renewed while it has more than a quarter of its life left");
    tokio::time::sleep_until(started + Duration::from_secs(10)).await;
    client.projects().await.expect("after renewal");
    assert_eq!(sim.tokens_issued(), 2, "the token was renewed ahead of its expiry");

    // Wrong credentials: a clear upstream failure, not a hang or a panic.
    let error = UpstreamClient::new(&sim.url, "wrong").projects().await.expect_err("refused");
    assert!(error.contains("Keystone refused"), "{error}");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_upstream_leaves_queries_on_the_cache_and_fails_mutations_after_the_timeout() {
    let timeout = Duration::from_secs(1);
    let app = spawn_app_with(|c| c.upstream_timeout = timeout).await;
    app.wait_for_readiness(200).await;
    let (_, before) = app.query("storage.volumes.list", None).await;

    // Every upstream request now takes 8 s: far beyond the timeout.
    app.set_faults(json!({"latencyMs": 8000})).await;
    let started = Instant::now();
    let (status, during) = app.query("storage.volumes.list", None).await;
    assert_eq!(status, 200, "{during}");
    assert_eq!(during, before, "answered from the cache");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a query waited on the hanging upstream: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "hung", "sizeGb": 1})).await;
    let took = started.elapsed();
    // The create was sent and never confirmed: it may exist, so not 503 ("nothing sent").
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["data"]["code"], "GATEWAY_TIMEOUT");
    assert!(took >= timeout.mul_f64(0.9), "failed before the timeout: {took:?}");
    assert!(took < Duration::from_secs(5), "the mutation hung with the upstream: {took:?}");

    // The poller's requests time out as well: readiness goes, then comes back.
    app.wait_for_readiness(503).await;
    app.set_faults(json!({})).await;
    app.wait_for_readiness(200).await;
    app.shutdown().await;
}

/// An upstream that answers every request with a 500, and counts them.
async fn failing_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Instant>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // One request per connection: its head, then a 500 and close.
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock().expect("lock").push(Instant::now());
                let answer = "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, arrivals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upstream_is_retried_with_growing_waits_not_every_interval() {
    let (url, arrivals) = failing_upstream().await;
    let interval = Duration::from_millis(100);
    let app = spawn_app_anonymous(|c| {
        c.upstream = Some(url);
        c.poll_interval = interval;
    })
    .await;
    // Every poll is one request (its login fails), after one version discovery at the
    // auth URL. Without backoff: 8 types × 40 in 4 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let times = arrivals.lock().expect("lock").clone();
    let start = *times.first().expect("the poller tried at all");
    let first_two_s = times.iter().filter(|t| **t < start + Duration::from_secs(2)).count();
    let next_two_s =
        times.iter().filter(|t| **t >= start + Duration::from_secs(2) && **t < start + Duration::from_secs(4)).count();
    let types = TYPES.len();
    assert!(times.len() <= types * 8 + 1, "{} requests in 4 s at a 100 ms interval: no backoff", times.len());
    assert!(times.len() >= types * 3, "each type retried a few times: {}", times.len());
    assert!(
        next_two_s < first_two_s,
        "the waits grow: {first_two_s} requests in the first 2 s, {next_two_s} in the next"
    );
    let (status, body) = app.readyz().await;
    assert_eq!(status, 503, "{body}");
    app.shutdown().await;
}

/// The `WARN` and `INFO` lines of a JSON log whose message contains `needle`, as the
/// `kind` each names.
fn logged_kinds(lines: &[String], level: &str, needle: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["level"] == level)
        .filter(|entry| entry["fields"]["message"].as_str().is_some_and(|m| m.contains(needle)))
        .map(|entry| entry["fields"]["kind"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Waits until `lines()` holds `count` log lines matching; answers their kinds, sorted.
async fn wait_for_log(server: &ChildServer, level: &str, needle: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut kinds = logged_kinds(&server.lines(), level, needle);
        if kinds.len() >= count {
            kinds.sort();
            return kinds;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} {level} lines with {needle:?}:\n{}",
            kinds.len(),
            server.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_upstream_is_logged_once_per_state_change_not_per_poll() {
    const FAILED: &str = "upstream poll failed";
    const RECOVERED: &str = "upstream answers again";
    let server = ChildServer::start(
        &["serve", "--port", "0", "--poll-interval", "100ms", "--log-format", "json"],
        &[("RUST_LOG", "info")],
    )
    .await;
    let client = server.client.clone();
    client.wait_for_readiness(200).await;
    let mut all: Vec<String> = TYPES.iter().map(|t| t.to_string()).collect();
    all.sort();

    for round in 1..=2 {
        // Fails for 3 s: 30 poll intervals, and several retries of each type.
        client.set_faults(json!({"errorRate": 1.0})).await;
        let failed = wait_for_log(&server, "WARN", FAILED, TYPES.len() * round).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let failed_after = logged_kinds(&server.lines(), "WARN", FAILED);
        assert_eq!(
            failed_after.len(),
            TYPES.len() * round,
            "one warning per type per outage, not per poll: {failed_after:?}"
        );
        assert_eq!(failed.len(), TYPES.len() * round);

        client.set_faults(json!({})).await;
        client.wait_for_readiness(200).await;
        let recovered = wait_for_log(&server, "INFO", RECOVERED, TYPES.len() * round).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            logged_kinds(&server.lines(), "INFO", RECOVERED).len(),
            TYPES.len() * round,
            "one line per recovery"
        );
        let mut expected: Vec<String> = all.iter().flat_map(|k| std::iter::repeat_n(k.clone(), round)).collect();
        expected.sort();
        assert_eq!(failed, expected, "each type warned once per outage");
        assert_eq!(recovered, expected, "each type's recovery said once");
    }
}

/// A poll that is slow to answer neither holds up a mutation nor undoes it when it lands:
/// the listing below was read before the volume existed and arrives after the create
/// answered, and the volume stays listed through it, with no update that deletes it.
#[tokio::test]
async fn a_mutation_neither_waits_for_a_slow_poll_nor_is_undone_by_it() {
    const LISTING: Duration = Duration::from_millis(1500);
    let app = spawn_app_with(|c| c.upstream_timeout = Duration::from_secs(5)).await;
    let (status, _) = app.query("storage.volumes.list", None).await;
    assert_eq!(status, 200);
    let mut stream = app.stream("", None).await;
    stream.connected().await;
    app.set_faults(json!({"listingLatencyMs": LISTING.as_millis() as u64})).await;

    // Wait for a listing of the volumes to be under way: read now, answered 1.5 s later.
    let listings = |r: &BTreeMap<String, u64>| r.get("GET volumes").copied().unwrap_or(0);
    let before = listings(&app.sim_requests().await);
    let deadline = Instant::now() + WAIT;
    while listings(&app.sim_requests().await) == before {
        assert!(Instant::now() < deadline, "no listing of the volumes started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let id = app.create_volume("outlives-a-slow-poll").await;
    let took = started.elapsed();
    assert!(took < LISTING / 2, "the create took {took:?}: it waited for the poll");

    // That listing lands, and the next one: the volume is listed throughout.
    let until = Instant::now() + LISTING * 2 + Duration::from_millis(500);
    while Instant::now() < until {
        let (status, body) = app.query("storage.volumes.list", None).await;
        assert_eq!(status, 200);
        let listed = body["result"]["data"].as_array().expect("list").iter().any(|v| v["id"] == id.as_str());
        assert!(listed, "a poll read before the create removed the volume it created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its creation was announced, once, by the mutation.
    let (_, first) = stream.next_data(WAIT).await;
    assert_eq!(first["ids"], json!([id]));
    app.set_faults(json!({})).await;
}
