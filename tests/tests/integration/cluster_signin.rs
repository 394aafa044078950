//! Sign-in sessions shared by the nodes of a cluster (`serve --redis`): each node is the
//! real binary as a child process, all on one real `redis-server` and one simulator
//! (`stalecast sim`). A cookie issued by one node works on every other, for queries and
//! the event stream; signing out anywhere ends the session's streams on every node
//! within a second, and a record that vanished unannounced ends it too; the idle clock is the cluster's, not a node's; each user's stream
//! carries only their projects whichever node delivers it; and with Redis unreachable a
//! sign-in answers 503 while sessions a node holds go on, written back to a Redis that
//! returns empty, and a node that does not hold a cookie's session answers 503 (cookie
//! kept) rather than 401. Failed sign-ins are counted by the whole cluster.
//!
//! The simulator's users: `admin`/`stalecast` (admin of every project), `alice`/`alice`
//! (member of web-team, `prj-web`), `bob`/`bob` (reader of data-team, `prj-data`).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast_tests::child::ChildServer;
use stalecast_tests::cluster::Cluster;
use stalecast_tests::{Client, Next, Recorder, SseClient, create_volume_in_sim};

const WAIT: Duration = Duration::from_secs(10);

/// `n` nodes, nobody signed in on them yet; `extra` flags added (`--session-idle-timeout`).
async fn nodes(rig: &Cluster, n: usize, extra: &[&str]) -> Vec<ChildServer> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(rig.node(extra, &[]).await);
    }
    nodes
}

/// How many session records Redis holds.
async fn records(rig: &Cluster) -> usize {
    // `KEYS` answers an array: its first line is `*<count>`.
    let reply = rig.redis.command(&["KEYS", "stalecast:session:*"]).await;
    reply.lines().next().and_then(|l| l.strip_prefix('*')).and_then(|n| n.parse().ok()).expect("an array reply")
}

/// `client` of another node: the same browser, its cookie sent to `node`.
fn same_browser_on(client: &Client, node: &ChildServer) -> Client {
    node.client.with_cookie(client.cookie.as_deref().expect("signed in"))
}

/// An open stream, past its `connected` event.
async fn stream(client: &Client) -> SseClient {
    let mut stream = client.stream("", None).await;
    stream.connected().await;
    stream
}

fn code(body: &Value) -> &str {
    body["error"]["data"]["code"].as_str().unwrap_or("")
}

async fn create_volume_as(client: &Client, project: &str, name: &str) -> String {
    let (status, body) =
        client.mutate("storage.volumes.create", json!({"projectId": project, "name": name, "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["result"]["data"]["id"].as_str().expect("id").to_owned()
}

/// The next update naming `id`, other updates skipped.
async fn update_naming(stream: &mut SseClient, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (_, data) = stream.next_data(left).await;
        if data["ids"].as_array().is_some_and(|ids| ids.iter().any(|i| i == id)) {
            return data;
        }
    }
}

/// Asserts that `stream` ends with tRPC's `serialized-error` UNAUTHORIZED event within
/// `wait` (pings and updates aside), then closes.
async fn assert_ended_unauthorized(stream: &mut SseClient, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match stream.next(left).await {
            Next::Event(event) if event.event == "ping" || event.event == "message" => {}
            Next::Event(event) => {
                assert_eq!(event.event, "serialized-error", "{event:?}");
                let error: Value = serde_json::from_str(&event.data).expect("JSON");
                assert_eq!(error["data"]["code"], "UNAUTHORIZED", "{error}");
                break;
            }
            other => panic!("expected serialized-error within {wait:?}, got {other:?}"),
        }
    }
    assert!(matches!(stream.next(WAIT).await, Next::End), "the stream ends after it");
}

/// Asserts that `stream` stays open for `wait`: pings and updates only.
async fn assert_stays_open(stream: &mut SseClient, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match stream.next(left).await {
            Next::Quiet => return,
            Next::Event(event) if event.event == "ping" || event.event == "message" => {}
            other => panic!("expected the stream to stay open for {wait:?}, got {other:?}"),
        }
        if left.is_zero() {
            return;
        }
    }
}

#[tokio::test]
async fn a_cookie_from_one_node_works_on_another_for_queries_and_the_stream() {
    let rig = Cluster::start().await;
    let debug = [("RUST_LOG", "debug")];
    let nodes = [rig.node(&[], &debug).await, rig.node(&[], &debug).await];
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice_on_a = a.client.sign_in("alice", "alice").await;
    let alice_on_b = same_browser_on(&alice_on_a, b);

    let (status, me) = alice_on_b.query("auth.me", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["result"]["data"]["user"]["name"], "alice");
    let projects: Vec<&str> = me["result"]["data"]["projects"]
        .as_array()
        .expect("projects")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(projects, ["prj-web"], "{me}");
    let (status, volumes) = alice_on_b.query("storage.volumes.list", None).await;
    assert_eq!(status, StatusCode::OK, "{volumes}");
    let listed = volumes["result"]["data"].as_array().expect("volumes");
    assert!(!listed.is_empty() && listed.iter().all(|v| v["projectId"] == "prj-web"), "{volumes}");

    // Her stream on B hears of a change she makes through A, and one made through B.
    let mut on_b = stream(&alice_on_b).await;
    let through_a = create_volume_as(&alice_on_a, "prj-web", "made-on-a").await;
    update_naming(&mut on_b, &through_a).await;
    let through_b = create_volume_as(&alice_on_b, "prj-web", "made-on-b").await;
    update_naming(&mut on_b, &through_b).await;

    // Redis holds one record, named by no part of the cookie.
    assert_eq!(records(&rig).await, 1);
    let id = alice_on_a.cookie.as_deref().and_then(|c| c.split_once('=')).expect("name=value").1;
    assert_eq!(rig.redis.command(&["KEYS", &format!("*{id}*")]).await, "*0", "no key holds the session id");
    // A cookie no node issued is refused on every node.
    let forged = a.client.with_cookie(&format!("stalecast_session={}", "A".repeat(43)));
    for node in [a, b] {
        let (status, body) = same_browser_on(&forged, node).query("auth.me", None).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{body}");
    }
    // Neither node's log, at debug, holds the session id or a token header; B logs that
    // it took the session over.
    for node in [a, b] {
        let log = node.lines().join("\n");
        assert!(!log.contains(id), "the log holds the session id:\n{log}");
        let lower = log.to_lowercase();
        assert!(!lower.contains("x-subject-token:") && !lower.contains("x-auth-token:"), "{log}");
    }
    assert!(b.lines().iter().any(|l| l.contains("took over a session")), "{}", b.lines().join("\n"));
}

#[tokio::test]
async fn signing_out_on_any_node_ends_the_sessions_streams_on_every_node_within_a_second() {
    let rig = Cluster::start().await;
    let nodes = nodes(&rig, 3, &[]).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    for (signs_in, signs_out) in [(a, a), (a, b)] {
        let on_signer = signs_in.client.sign_in("alice", "alice").await;
        let mut streams = Vec::new();
        for node in [a, b] {
            streams.push(stream(&same_browser_on(&on_signer, node)).await);
        }
        // Another session of hers goes on.
        let other = b.client.sign_in("alice", "alice").await;
        let mut elsewhere = stream(&same_browser_on(&other, a)).await;

        let started = Instant::now();
        let (status, body) = same_browser_on(&on_signer, signs_out).mutate("auth.logout", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for stream in &mut streams {
            assert_ended_unauthorized(stream, Duration::from_secs(1).saturating_sub(started.elapsed())).await;
        }
        // The cookie is refused everywhere, also on a node that never served it.
        for node in [a, b, c] {
            let (status, body) = same_browser_on(&on_signer, node).query("projects.list", None).await;
            assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{body}");
        }
        let id = create_volume_as(&other, "prj-web", "still-signed-in").await;
        update_naming(&mut elsewhere, &id).await;
        let (status, body) = other.mutate("auth.logout", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(records(&rig).await, 0, "every record deleted");
}

#[tokio::test]
async fn a_record_deleted_without_a_word_still_ends_the_session_on_every_node() {
    let rig = Cluster::start().await;
    let nodes = nodes(&rig, 2, &[]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let on_a = a.client.sign_in("alice", "alice").await;
    let mut streams = vec![stream(&on_a).await, stream(&same_browser_on(&on_a, b)).await];
    // As if a node deleted it while the others' subscriptions were down: no message.
    let reply = rig.redis.command(&["KEYS", "stalecast:session:*"]).await;
    let key = reply.lines().nth(2).expect("one key").to_owned();
    assert!(key.starts_with("stalecast:session:"), "{reply}");
    assert_eq!(rig.redis.command(&["DEL", &key]).await, ":1");
    let deleted = Instant::now();
    // Each node looks at its sessions' records every second.
    for stream in &mut streams {
        assert_ended_unauthorized(stream, Duration::from_millis(2000).saturating_sub(deleted.elapsed())).await;
    }
    for node in [a, b] {
        let (status, body) = same_browser_on(&on_a, node).query("auth.me", None).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{body}");
    }
}

#[tokio::test]
async fn alices_stream_on_a_follower_carries_nothing_of_data_team_while_others_change_it_through_the_leader() {
    let rig = Cluster::start().await;
    let nodes = nodes(&rig, 2, &[]).await;
    let leader_port = rig.wait_for_leader(None, WAIT).await;
    let leader = nodes.iter().find(|n| n.addr.port() == leader_port).expect("the leader is a node");
    let follower = nodes.iter().find(|n| n.addr.port() != leader_port).expect("a follower");
    // Alice signs in on the leader and streams from the follower, with the same cookie.
    let alice = same_browser_on(&leader.client.sign_in("alice", "alice").await, follower);
    let admin = leader.client.sign_in("admin", "stalecast").await;
    let bob = leader.client.sign_in("bob", "bob").await;
    let recorded = Recorder::start(&alice, "", None).await;
    let mut bobs = stream(&same_browser_on(&bob, follower)).await;

    let mut secret = Vec::new();
    for n in 0..3 {
        let id = create_volume_as(&admin, "prj-data", &format!("data-secret-{n}")).await;
        update_naming(&mut bobs, &id).await;
        secret.push(id);
    }
    let (status, body) = bob.mutate("storage.volumes.delete", json!({"id": secret[0]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = admin.mutate("storage.volumes.delete", json!({"id": secret[1]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    update_naming(&mut bobs, &secret[1]).await;
    // A change behind Stalecast's back, found by the leader's poller, published with one
    // of web-team's made the same way after it.
    let polled = create_volume_in_sim(&rig.sim_url, "prj-data", "data-polled").await;
    update_naming(&mut bobs, &polled).await;
    secret.push(polled);
    let polled_web = create_volume_in_sim(&rig.sim_url, "prj-web", "web-polled").await;
    recorded.wait_for(&polled_web, WAIT).await;
    // Then one of web-team's through the leader: it reaches her on the follower.
    let mine = create_volume_as(&admin, "prj-web", "for-web").await;
    recorded.wait_for(&mine, WAIT).await;
    let recorded = recorded.stop();
    for id in &secret {
        assert!(!recorded.contains(id.as_str()), "alice's stream named {id}:\n{recorded}");
    }
    assert!(!recorded.contains("prj-data") && !recorded.contains("data-team"), "{recorded}");
}

#[tokio::test]
async fn a_session_in_use_on_one_node_is_not_idle_on_another_and_ends_everywhere_once_idle() {
    let idle = Duration::from_secs(3);
    let rig = Cluster::start().await;
    let nodes = nodes(&rig, 2, &["--session-idle-timeout", "3s"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let on_a = a.client.sign_in("alice", "alice").await;
    let on_b = same_browser_on(&on_a, b);
    let mut stream_a = stream(&on_a).await;
    let mut stream_b = stream(&on_b).await;
    // Used on B only, for well over the idle timeout: A's copy is not idle.
    let used_until = Instant::now() + idle * 2;
    while Instant::now() < used_until {
        let (status, body) = on_b.query("auth.me", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_stays_open(&mut stream_a, Duration::from_millis(100)).await;
    let (status, body) = on_a.query("auth.me", None).await;
    assert_eq!(status, StatusCode::OK, "A still knows the session: {body}");
    // Then nobody uses it: it ends on both nodes once the idle timeout has passed since
    // that last use, within two seconds more (the record's expiry, then each node's next
    // look at it, every second).
    let last_use = Instant::now();
    for stream in [&mut stream_a, &mut stream_b] {
        assert_ended_unauthorized(stream, (idle + Duration::from_secs(2)).saturating_sub(last_use.elapsed())).await;
        let ended = last_use.elapsed();
        assert!(ended >= idle - Duration::from_millis(500), "ended {ended:?} after the last use");
    }
    for client in [&on_a, &on_b] {
        let (status, body) = client.query("auth.me", None).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{body}");
    }
    assert_eq!(records(&rig).await, 0);
}

#[tokio::test]
async fn with_redis_down_a_sign_in_answers_503_and_a_session_the_node_holds_goes_on_and_is_written_back_another_node_answers_503()
 {
    let mut rig = Cluster::start().await;
    let nodes = nodes(&rig, 1, &[]).await;
    let alice = nodes[0].client.sign_in("alice", "alice").await;
    rig.redis.stop().await;
    let (status, body, cookies) = nodes[0].client.anonymous().login("bob", "bob").await;
    assert_eq!((status, code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"), "{body}");
    assert!(cookies.is_empty(), "no session: {cookies:?}");
    let (status, body) = alice.query("storage.volumes.list", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut on_a = stream(&alice).await;
    assert_stays_open(&mut on_a, Duration::from_secs(2)).await;

    // Back, but empty (as a Redis without persistence restarts): that is no sign-out. The
    // node writes her record back, her stream goes on, and a node started now knows her.
    rig.redis.restart().await;
    let deadline = Instant::now() + WAIT;
    while records(&rig).await != 1 {
        assert!(Instant::now() < deadline, "her record was not written back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_stays_open(&mut on_a, Duration::from_secs(1)).await;
    let (status, body) = alice.query("auth.me", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let later = rig.node(&[], &[]).await;
    let (status, body) = same_browser_on(&alice, &later).query("auth.me", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Down again: the node that never served her cannot tell, and says so (503) without
    // clearing her cookie, on a query and on the stream; back, it knows her.
    let bob = later.client.sign_in("bob", "bob").await;
    rig.redis.stop().await;
    let on_later = same_browser_on(&bob, &nodes[0]);
    let response = on_later.http.get(on_later.url("/trpc/auth.me")).send().await.expect("auth.me");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("set-cookie").is_none(), "the cookie is kept");
    let body: Value = response.json().await.expect("envelope");
    assert_eq!(code(&body), "SERVICE_UNAVAILABLE", "{body}");
    let response = on_later.open_stream("", None).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("set-cookie").is_none(), "the cookie is kept");
    rig.redis.restart().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = on_later.query("auth.me", None).await;
        if status == StatusCode::OK {
            assert_eq!(body["result"]["data"]["user"]["name"], "bob");
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "bob's session still unknown on the other node: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sign-in works again.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body, _) = nodes[0].client.anonymous().login("bob", "bob").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "sign-in still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Failed sign-ins count across the cluster: attempts spread over two nodes are limited
/// as on one (429 with `Retry-After` on both), a success clears the user everywhere, and
/// Redis holds no user name.
#[tokio::test]
async fn failed_sign_ins_are_counted_by_the_whole_cluster() {
    let rig = Cluster::start().await;
    let limits = ["--signin-failures-per-user", "3", "--signin-failures-per-address", "100", "--signin-window", "3s"];
    let nodes = nodes(&rig, 2, &limits).await;
    let login = |node: usize, user: &'static str, password: &'static str| {
        let client = nodes[node].client.anonymous();
        async move { client.login_response(user, password).await }
    };
    // Three failures, on alternate nodes: neither node alone saw three.
    let first_failed = Instant::now();
    for node in [0, 1, 0] {
        assert_eq!(login(node, "alice", "wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    for node in [1, 0] {
        let blocked = login(node, "alice", "alice").await;
        assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS, "node {node}");
        let retry_after: u64 = blocked.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
        assert!((1..=3).contains(&retry_after), "Retry-After: {retry_after}");
        let body: Value = blocked.json().await.expect("envelope");
        assert_eq!(code(&body), "TOO_MANY_REQUESTS", "{body}");
    }
    assert_eq!(login(1, "bob", "bob").await.status(), StatusCode::OK, "another user is not blocked");
    let keys = rig.redis.command(&["KEYS", "*alice*"]).await;
    assert_eq!(keys, "*0", "no user name in Redis");

    // Free again once the window passed, on either node.
    tokio::time::sleep((first_failed + Duration::from_millis(3100)).saturating_duration_since(Instant::now())).await;
    assert_eq!(login(1, "alice", "alice").await.status(), StatusCode::OK);
    // A success on one node clears the failures the other counted: two failures, a
    // success, two more, and alice is not blocked (four within the window would be).
    for node in [0, 1] {
        assert_eq!(login(node, "alice", "wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login(0, "alice", "alice").await.status(), StatusCode::OK);
    for node in [1, 0] {
        assert_eq!(login(node, "alice", "wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login(1, "alice", "alice").await.status(), StatusCode::OK, "counting started over");
}
