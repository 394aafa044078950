//! Graceful shutdown: every open stream ends cleanly (never left hanging, never reset),
//! in process and as the real binary on SIGTERM, where a request in flight still gets
//! its answer.

use std::time::Duration;

use serde_json::json;
use stalecast_tests::child::ChildServer;
use stalecast_tests::raw::RawConnection;
use stalecast_tests::{spawn_app, spawn_app_with};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_500_open_streams_ends_every_one_of_them() {
    let app = spawn_app().await;
    let mut streams = Vec::new();
    for _ in 0..500 {
        let mut stream = app.stream("", None).await;
        stream.connected().await;
        streams.push(stream);
    }
    assert_eq!(app.subscriber_count(), 500);
    tokio::time::timeout(WAIT, app.shutdown()).await.expect("shutdown finishes despite the open streams");
    for stream in &mut streams {
        stream.assert_ends(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_cleanly_answers_the_request_in_flight_and_exits_0() {
    // The upstream is a simulator process of its own, as a cloud API would be: it keeps
    // serving while Stalecast shuts down.
    let upstream = ChildServer::start(&["sim", "--port", "0"], &[]).await;
    let upstream_url = upstream.client.base.clone();
    let mut server =
        ChildServer::start(&["serve", "--port", "0", "--poll-interval", "200ms", "--upstream", &upstream_url], &[])
            .await
            .with_sim_url(&upstream_url)
            .signed_in()
            .await;
    assert!(server.sim_addr.is_none(), "no embedded simulator with --upstream: {}", server.ready);
    let client = server.client.clone();
    client.wait_for_readiness(200).await;

    // A stream on the server's own writer (its connection's first request)...
    let mut lean = client.stream("", None).await;
    lean.connected().await;
    // ...and one served by hyper (its connection answered a query first).
    let mut connection = RawConnection::connect(server.addr).await.as_client(&client);
    assert_eq!(connection.get("/trpc/projects.list").await.status, 200);
    let mut kept_alive = connection.open_stream("", &[]).await;
    kept_alive.connected().await;

    // A mutation still in flight when SIGTERM comes: its create and its read-back take
    // 1.5 s each upstream, 3 s in all, within the default 5 s shutdown timeout.
    client.set_faults(json!({"latencyMs": 1500})).await;
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            client.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "late", "sizeGb": 1})).await
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!in_flight.is_finished(), "the mutation answered before the signal: nothing was in flight");
    server.terminate();

    let (status, body) =
        tokio::time::timeout(WAIT, in_flight).await.expect("the request in flight is answered").expect("task");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["data"]["name"], "late");
    lean.assert_ends(WAIT).await;
    kept_alive.assert_ends(WAIT).await;
    let exit = server.wait_exit(WAIT).await;
    assert!(exit.success(), "exit status {exit}:\n{}", server.lines().join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_in_flight_at_shutdown_is_answered_by_the_embedded_simulator() {
    let app = spawn_app_with(|c| c.upstream_timeout = Duration::from_secs(5)).await;
    let client = (*app).clone();
    client.set_faults(json!({"latencyMs": 1500})).await;
    let in_flight = tokio::spawn(async move {
        client.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "late", "sizeGb": 1})).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!in_flight.is_finished(), "the mutation answered before shutdown: nothing was in flight");
    tokio::time::timeout(WAIT, app.shutdown()).await.expect("shutdown finishes");
    let (status, body) = in_flight.await.expect("task");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["data"]["name"], "late");
    // Read back from the simulator after the create, which it could only answer while
    // still running: it stops after the server has drained.
    assert_ne!(body["result"]["data"]["createdAt"], "", "not read back: {body}");
}
