//! Several nodes on one real `redis-server` (`serve --redis`): each node is the real
//! binary as a child process, all watching one simulator (`stalecast sim`), so that the
//! upstream requests of the whole cluster are counted in one place.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast_tests::child::{ChildServer, run};
use stalecast_tests::cluster::Cluster;
use stalecast_tests::redis::RedisServer;
use stalecast_tests::{Client, SseClient, create_volume_in_sim, publish_script};

const POLL: Duration = Duration::from_millis(500);

/// A node signed in as the service account, with `/metrics` and a short staleness bound.
async fn node(rig: &Cluster) -> ChildServer {
    rig.node(&["--max-staleness", "5s", "--metrics-addr", "127.0.0.1:0"], &[]).await.signed_in().await
}

async fn nodes(rig: &Cluster, n: usize) -> Vec<ChildServer> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(node(rig).await);
    }
    nodes
}

/// A node's `/metrics` text.
async fn metrics(node: &ChildServer) -> String {
    let addr = node.ready["metricsAddr"].as_str().expect("a metrics listener");
    let response = node.client.http.get(format!("http://{addr}/metrics")).send().await.expect("/metrics answers");
    assert_eq!(response.status(), 200);
    response.text().await.expect("the figures")
}

/// The value of the sample `name` (no labels) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until exactly one of `nodes` says it is the leader (`stalecast_leader 1`), every
/// one says Redis answers; answers the leader's port.
async fn one_leader_in_the_metrics(nodes: &[&ChildServer], within: Duration) -> u16 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut leaders = Vec::new();
        for node in nodes {
            let text = metrics(node).await;
            assert_eq!(sample(&text, "stalecast_redis_up"), Some(1.0), "{text}");
            if sample(&text, "stalecast_leader") == Some(1.0) {
                leaders.push(node.addr.port());
            }
        }
        if let [leader] = leaders[..] {
            return leader;
        }
        assert!(tokio::time::Instant::now() < deadline, "leaders by their metrics: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An open stream, past its `connected` event.
async fn stream(client: &Client, last_event_id: Option<&str>) -> SseClient {
    let mut stream = client.stream("", last_event_id).await;
    stream.connected().await;
    stream
}

/// The next update naming `id` (skipping others, which must be updates too); answers its
/// SSE id and data.
async fn update_naming(stream: &mut SseClient, id: &str, within: Duration) -> (String, Value) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (sse_id, data) = stream.next_data(left).await;
        assert_eq!(data["kind"], "update", "{data}");
        if data["ids"].as_array().is_some_and(|ids| ids.iter().any(|i| i == id)) {
            return (sse_id, data);
        }
    }
}

/// The next data event, which must be a `gap` resync.
async fn expect_resync(stream: &mut SseClient, within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (_, data) = stream.next_data(left).await;
        if data["kind"] == "resync" {
            assert_eq!(data["reason"], "gap", "{data}");
            return data["seq"].as_u64().expect("seq");
        }
    }
}

fn kill(node: &ChildServer, signal: &str) {
    let pid = node.pid().expect("running");
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill");
    assert!(status.success());
}

/// Upstream requests of one listing, cluster-wide, over `window`.
async fn polls_over(client: &Client, what: &str, window: Duration) -> u64 {
    let before = client.sim_requests().await.get(what).copied().unwrap_or(0);
    tokio::time::sleep(window).await;
    client.sim_requests().await.get(what).copied().unwrap_or(0) - before
}

#[tokio::test]
async fn a_mutation_on_one_node_reaches_another_with_its_seq_and_resumes_anywhere() {
    let rig = Cluster::start().await;
    let nodes = nodes(&rig, 2).await;
    let (a, b) = (&nodes[0].client, &nodes[1].client);
    let mut on_a = stream(a, None).await;
    let mut on_b = stream(b, None).await;

    let first = a.create_volume("cluster-first").await;
    let (seq_a, _) = update_naming(&mut on_a, &first, Duration::from_secs(5)).await;
    let (seq_b, _) = update_naming(&mut on_b, &first, Duration::from_secs(5)).await;
    assert_eq!(seq_a, seq_b, "one seq, whichever node delivers it");
    // Read your notification: B delivered it, so B's store has the volume already.
    let (status, body) = b.query("storage.volumes.get", Some(json!({"id": first}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["data"]["name"], "cluster-first");

    // An id A delivered resumes on B, and on a node started after it (its ring filled
    // from the stream): what followed, in order, no resync, no gap, no duplicate.
    let second = a.create_volume("cluster-second").await;
    let (seq_second, _) = update_naming(&mut on_a, &second, Duration::from_secs(5)).await;
    let c = node(&rig).await;
    for node in [b, &c.client] {
        let mut resumed = stream(node, Some(&seq_a)).await;
        let mut expected: u64 = seq_a.parse::<u64>().expect("seq") + 1;
        loop {
            let (id, data) = resumed.next_data(Duration::from_secs(5)).await;
            assert_eq!(data["kind"], "update", "no resync: {data}");
            assert_eq!(id.parse::<u64>().expect("seq"), expected, "in order, no gap");
            expected += 1;
            if id == seq_second {
                break;
            }
        }
    }
}

#[tokio::test]
async fn one_poller_in_the_cluster_and_another_within_two_leases_after_it_is_killed() {
    let rig = Cluster::start().await;
    let nodes = nodes(&rig, 3).await;
    let leader = rig.wait_for_leader(None, Duration::from_secs(5)).await;
    let all: Vec<&ChildServer> = nodes.iter().collect();
    assert_eq!(one_leader_in_the_metrics(&all, Duration::from_secs(3)).await, leader, "the lease holder says it leads");
    // Past the start (each node loads every collection once), polls only.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = Duration::from_secs(4);
    let intervals = (window.as_millis() / POLL.as_millis()) as u64;
    let polled = polls_over(&nodes[0].client, "GET volumes", window).await;
    assert!(polled >= intervals - 2 && polled <= intervals + 1, "{polled} volume listings in {window:?}: one poller");

    let killed = nodes.iter().position(|n| n.addr.port() == leader).expect("the leader is a node");
    let survivor = &nodes[(killed + 1) % 3].client;
    let mut watching = stream(survivor, None).await;
    kill(&nodes[killed], "-KILL");
    let killed_at = tokio::time::Instant::now();
    let next = rig.wait_for_leader(Some(leader), Duration::from_secs(10)).await;
    let took = killed_at.elapsed();
    assert!(took <= Duration::from_secs(4), "a new poller after {took:?}: more than two leases (2 s)");
    assert_ne!(next, leader);
    let survivors: Vec<&ChildServer> = nodes.iter().filter(|n| n.addr.port() != leader).collect();
    assert_eq!(
        one_leader_in_the_metrics(&survivors, Duration::from_secs(3)).await,
        next,
        "the new holder says it leads"
    );

    // It polls: a change made behind Stalecast's back reaches a stream, and still one
    // listing per interval across the cluster.
    let id = create_volume_in_sim(&rig.sim_url, "prj-web", "behind-its-back").await;
    update_naming(&mut watching, &id, Duration::from_secs(5)).await;
    let polled = polls_over(survivor, "GET volumes", window).await;
    assert!(polled >= intervals - 2 && polled <= intervals + 1, "{polled} volume listings in {window:?}: one poller");
}

#[tokio::test]
async fn a_publish_with_a_stale_fencing_token_is_refused() {
    let rig = Cluster::start().await;
    let nodes = nodes(&rig, 1).await;
    rig.wait_for_leader(None, Duration::from_secs(5)).await;
    let token = rig.redis.get("stalecast:lease").await.expect("lease");
    let epoch = rig.redis.get("stalecast:epoch").await.expect("epoch");
    // A volume the node knows, in a project the signed-in admin sees: its deletion is
    // announced to them (one nobody knows would be announced to nobody).
    let (status, volumes) = nodes[0].client.query("storage.volumes.list", None).await;
    assert_eq!(status, 200, "{volumes}");
    let gone = volumes["result"]["data"][0]["id"].as_str().expect("a volume").to_owned();
    let mut watching = stream(&nodes[0].client, None).await;
    let publish = |token: String| {
        let (epoch, redis, gone) = (epoch.clone(), &rig.redis, gone.clone());
        async move {
            let keys = ["stalecast:epoch", "stalecast:seq", "stalecast:updates", "stalecast:lease"];
            let records = format!(r#"{{"upserts":[],"deletes":["{gone}"]}}"#);
            let ids = format!(r#"["{gone}"]"#);
            let mut args = vec!["EVAL", publish_script(), "4"];
            args.extend(keys);
            args.extend([epoch.as_str(), token.as_str(), "100", "volumes", ids.as_str(), "1", records.as_str()]);
            redis.command(&args).await
        }
    };
    // A former holder's token (the counter moved on since): refused, nothing appended.
    let length = rig.redis.command(&["XLEN", "stalecast:updates"]).await;
    let stale = format!("0:{}", token.split_once(':').map_or("", |(_, node)| node));
    let refused = publish(stale).await;
    assert!(refused.starts_with("-FENCED"), "{refused}");
    assert_eq!(rig.redis.command(&["XLEN", "stalecast:updates"]).await, length);
    watching.assert_no_data(Duration::from_secs(1)).await;
    // The holder's own token: published, and delivered under the seq the script gave.
    let accepted = publish(token).await;
    let seq = accepted.strip_prefix(':').expect("an integer reply").to_owned();
    let (id, data) = update_naming(&mut watching, &gone, Duration::from_secs(5)).await;
    assert_eq!(id, seq, "{data}");
}

#[tokio::test]
async fn a_flushed_redis_is_a_new_epoch_and_every_node_resyncs() {
    let rig = Cluster::start().await;
    let nodes = nodes(&rig, 2).await;
    let mut streams = vec![stream(&nodes[0].client, None).await, stream(&nodes[1].client, None).await];
    let before = nodes[0].client.create_volume("before-flush").await;
    let (old_seq, _) = update_naming(&mut streams[1], &before, Duration::from_secs(5)).await;
    let old_epoch = rig.redis.get("stalecast:epoch").await.expect("epoch");

    assert_eq!(rig.redis.command(&["FLUSHALL"]).await, "+OK");
    for stream in &mut streams {
        // The update seen before the flush may come first on the stream that had not read it.
        let resync = expect_resync(stream, Duration::from_secs(5)).await;
        assert!(resync >= old_seq.parse::<u64>().expect("seq"), "a resync past every id handed out");
    }
    assert_ne!(rig.redis.get("stalecast:epoch").await.expect("a new epoch"), old_epoch);
    // New seqs start above every id handed out before, and reach every node.
    let after = nodes[1].client.create_volume("after-flush").await;
    for stream in &mut streams {
        let (seq, _) = update_naming(stream, &after, Duration::from_secs(5)).await;
        assert!(seq.parse::<u64>().expect("seq") > old_seq.parse::<u64>().expect("seq"));
    }
    // A resume id of the old epoch: resync, not a replay.
    let mut resumed = stream(&nodes[0].client, Some(&old_seq)).await;
    expect_resync(&mut resumed, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn redis_down_for_five_seconds_stops_writes_and_loses_nothing_silently() {
    let mut rig = Cluster::start().await;
    let nodes = nodes(&rig, 2).await;
    let (a, b) = (&nodes[0].client, &nodes[1].client);
    a.wait_for_readiness(200).await;
    let mut on_b = stream(b, None).await;
    let creates = |client: &Client| {
        let client = client.sim_url.clone();
        async move {
            let stats: Value =
                reqwest::get(format!("{client}/_sim/stats")).await.expect("stats").json().await.expect("json");
            stats["requests"]["POST volumes"].as_u64().unwrap_or(0)
        }
    };

    rig.redis.stop().await;
    let body = a.wait_for_readiness(503).await;
    assert_eq!(body["publishing"], false, "{body}");
    let writes = creates(a).await;
    let (status, body) =
        a.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "while-down", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["data"]["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(creates(a).await, writes, "nothing written upstream");
    // The stream stays open: pings (every second), no data.
    on_b.assert_no_data(Duration::from_secs(4)).await;

    rig.redis.restart().await;
    // Redis came back empty: what was published before cannot be replayed, so a resync.
    expect_resync(&mut on_b, Duration::from_secs(10)).await;
    a.wait_for_readiness(200).await;
    let id = a.create_volume("after-restart").await;
    update_naming(&mut on_b, &id, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_malformed_redis_url_stops_the_start_naming_the_flag_without_its_password() {
    for bad in ["http://user:hunter2@127.0.0.1:6379", "redis://user:hunter2@127.0.0.1:port"] {
        let (status, output) = run(&["serve", "--port", "0", "--redis", bad], &[]).await;
        assert!(!status.success(), "{output}");
        assert!(output.contains("--redis"), "{output}");
        assert!(!output.contains("hunter2"), "the password is never printed: {output}");
    }
}

/// `rediss://`: the nodes speak TLS to Redis (every connection: commands, the blocking
/// reader, the sessions' subscription), verify its certificate against the system's
/// trust store (here `SSL_CERT_FILE`, which names the test's own authority), and a node
/// that cannot verify it does not start.
#[tokio::test]
async fn nodes_reach_redis_over_tls_and_refuse_a_certificate_they_cannot_verify() {
    let cert = stalecast_tests::tls::TestCert::localhost();
    let redis = RedisServer::start_tls(&cert).await;
    let sim = ChildServer::start(&["sim", "--port", "0"], &[]).await;
    let sim_url = format!("http://{}", sim.addr);
    let url = redis.tls_url();
    let args = ["serve", "--port", "0", "--upstream", &sim_url, "--redis", &url, "--poll-interval", "500ms"];
    let (ca, _) = cert.paths();
    let trusting = [("SSL_CERT_FILE", ca.as_str())];

    let a = ChildServer::start(&args, &trusting).await.with_sim_url(&sim_url).signed_in().await;
    let b = ChildServer::start(&args, &trusting).await.with_sim_url(&sim_url).signed_in().await;
    let mut on_b = stream(&b.client, None).await;
    let id = a.client.create_volume("over-tls").await;
    let (seq, _) = update_naming(&mut on_b, &id, Duration::from_secs(5)).await;
    assert!(seq.parse::<u64>().is_ok(), "a seq from the log: {seq}");
    // The session signed in on A (its record went to Redis over TLS) is known to B.
    let (status, body) = b.client.query("storage.volumes.get", Some(json!({"id": id}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Without the authority the certificate is not verified: no start, a clear reason.
    let (status, output) = run(&args, &[]).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("cannot reach Redis at rediss://localhost:"), "{output}");
    assert!(output.to_lowercase().contains("certificate"), "names the certificate: {output}");
}
