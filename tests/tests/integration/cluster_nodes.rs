//! The Server page's nodes in a cluster (`server.stats` with `serve --redis`): every
//! live node is listed, exactly one of them polling; when the poller is killed another
//! is marked within two leases, the dead node leaves the list once its announcement
//! expired, and the streams that name `serverStats` are told each time. The nodes are
//! the real binary as child processes on one real `redis-server`, watching one
//! simulator.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use stalecast::cluster::nodes::{EXPIRY, default_node_name};
use stalecast_tests::child::ChildServer;
use stalecast_tests::cluster::{Cluster, LEASE};
use stalecast_tests::{SseClient, types_query};

/// A node, signed in; `name` by the flag, `env_name` by `STALECAST_NODE_NAME`, or
/// neither (the default name).
async fn node(rig: &Cluster, name: Option<&str>, env_name: Option<&str>) -> ChildServer {
    let extra: Vec<&str> = name.map(|name| ["--node-name", name]).into_iter().flatten().collect();
    let env: Vec<(&str, &str)> = env_name.map(|n| ("STALECAST_NODE_NAME", n)).into_iter().collect();
    rig.node(&extra, &env).await.signed_in().await
}

/// The `result.data` of `server.stats` on `node`.
async fn stats(node: &ChildServer) -> Value {
    let (status, body) = node.client.query("server.stats", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["result"]["data"].clone()
}

fn listed(stats: &Value) -> &Vec<Value> {
    stats["nodes"].as_array().expect("nodes")
}

/// The listed nodes' names, in order.
fn names(stats: &Value) -> Vec<String> {
    listed(stats).iter().map(|n| n["name"].as_str().expect("a name").to_owned()).collect()
}

/// The names of the nodes marked as polling.
fn pollers(stats: &Value) -> Vec<String> {
    listed(stats)
        .iter()
        .filter(|n| n["polls"] == true)
        .map(|n| n["name"].as_str().expect("a name").to_owned())
        .collect()
}

/// Asks `node` until its `server.stats` satisfies `done`, at most `within`; answers it.
async fn stats_until(node: &ChildServer, within: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stats = stats(node).await;
        if done(&stats) {
            return stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `stream` (which names only `serverStats`) until a `serverStats` update after
/// which `node`'s `server.stats` satisfies `done`, at most `within`; answers it. Fails
/// when no such update arrives in time.
async fn announced_until(
    stream: &mut SseClient,
    node: &ChildServer,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{what}: no serverStats update announced it within {within:?}");
        let (_, data) = stream.next_data(left).await;
        assert_eq!(data["kind"], "update", "{data}");
        assert_eq!(data["type"], "serverStats", "{data}");
        let stats = stats(node).await;
        if done(&stats) {
            return stats;
        }
    }
}

fn kill(node: &ChildServer) {
    let pid = node.pid().expect("running");
    let status = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn every_node_is_listed_with_one_poller_and_a_killed_poller_is_replaced_then_dropped() {
    let rig = Cluster::start().await;
    let nodes = vec![
        node(&rig, Some("node-a"), None).await,
        node(&rig, None, Some("node-b")).await,
        node(&rig, None, None).await,
    ];
    // The third is named after this host and its port.
    let node_names = ["node-a".to_owned(), "node-b".to_owned(), default_node_name(nodes[2].addr.port())];
    let mut sorted = node_names.to_vec();
    sorted.sort();

    // Every node lists all three by name, exactly one polling: the one the lease names.
    let mut answers = Vec::new();
    for node in &nodes {
        answers.push(
            stats_until(node, Duration::from_secs(10), "three nodes, one polling", |s| {
                names(s) == sorted && pollers(s).len() == 1
            })
            .await,
        );
    }
    let poller = pollers(&answers[0])[0].clone();
    let lease = rig.redis.get("stalecast:lease").await.expect("a lease holder");
    assert!(lease.ends_with(&format!(":{poller}")), "the lease ({lease}) names the poller ({poller})");
    let killed = node_names.iter().position(|n| *n == poller).expect("the poller is one of the nodes");
    for (i, stats) in answers.iter().enumerate() {
        assert_eq!(pollers(stats), [poller.as_str()], "every node marks the same poller: {stats}");
        // Each lists itself as the node answering, and the others as announced.
        let this: Vec<&Value> = listed(stats).iter().filter(|n| n["thisNode"] == true).collect();
        assert_eq!(this.len(), 1, "{stats}");
        assert_eq!(this[0]["name"], node_names[i], "{stats}");
        for node in listed(stats) {
            assert!(node["lastSeenAt"].as_u64().is_some_and(|at| at > 0), "{stats}");
            assert!(node["version"].is_string() && node["streams"].is_u64(), "{stats}");
        }
        assert!(!stats.to_string().contains(&rig.redis.url()), "no Redis URL on the page: {stats}");
    }
    let follower = &nodes[(killed + 1) % 3];
    let other_follower = &nodes[(killed + 2) % 3];
    let follower_name = node_names[(killed + 1) % 3].clone();
    let mut watching = follower.client.stream(&types_query(&["serverStats"]), None).await;
    watching.connected().await;

    // The poller is killed: within two leases the follower's list marks another, while
    // the dead one is still listed as it last announced itself.
    kill(&nodes[killed]);
    let killed_at = tokio::time::Instant::now();
    let replaced = announced_until(&mut watching, follower, LEASE * 2, "a new poller", |s| {
        pollers(s).len() == 1 && pollers(s)[0] != poller
    })
    .await;
    assert!(killed_at.elapsed() <= LEASE * 2, "a new poller listed after {:?}", killed_at.elapsed());
    assert!(names(&replaced).contains(&poller), "the dead node is listed until its announcement expires: {replaced}");
    let new_poller = pollers(&replaced)[0].clone();
    let lease = rig.redis.get("stalecast:lease").await.expect("a lease holder");
    assert!(lease.ends_with(&format!(":{new_poller}")), "the lease ({lease}) names the new poller ({new_poller})");

    // Once its announcement expired, it is gone from the list, and the stream is told.
    let dropped = announced_until(&mut watching, follower, EXPIRY + LEASE * 2, "the dead node dropped", |s| {
        !names(s).contains(&poller)
    })
    .await;
    let gone_after = killed_at.elapsed();
    assert!(gone_after + Duration::from_secs(1) >= EXPIRY, "dropped after {gone_after:?}, before its expiry");
    assert_eq!(names(&dropped).len(), 2, "{dropped}");
    assert!(names(&dropped).contains(&follower_name), "{dropped}");
    assert_eq!(pollers(&dropped), [new_poller.as_str()], "{dropped}");
    // The other survivor agrees.
    stats_until(other_follower, Duration::from_secs(3), "the other survivor's list", |s| {
        names(s) == names(&dropped) && pollers(s) == [new_poller.as_str()]
    })
    .await;
}

#[tokio::test]
async fn a_node_that_shuts_down_leaves_the_list_at_once() {
    let rig = Cluster::start().await;
    let staying = node(&rig, Some("node-a"), None).await;
    let mut leaving = node(&rig, Some("node-b"), None).await;
    stats_until(&staying, Duration::from_secs(10), "both nodes", |s| names(s) == ["node-a", "node-b"]).await;
    let mut watching = staying.client.stream(&types_query(&["serverStats"]), None).await;
    watching.connected().await;
    leaving.terminate();
    let stopped_at = tokio::time::Instant::now();
    leaving.wait_exit(Duration::from_secs(10)).await;
    // Well before its announcement would have expired.
    let alone = announced_until(&mut watching, &staying, LEASE, "node-b gone", |s| names(s) == ["node-a"]).await;
    assert!(stopped_at.elapsed() < EXPIRY, "{:?}", stopped_at.elapsed());
    stats_until(&staying, LEASE * 2, "node-a polls", |s| pollers(s) == ["node-a"]).await;
    assert_eq!(listed(&alone)[0]["thisNode"], true, "{alone}");
}
