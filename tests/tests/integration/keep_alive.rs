//! Streams opened on a keep-alive connection that first answered something else: one
//! hand-written HTTP/1.1 connection does a query, then opens `updates.onUpdate`. Such
//! streams are served by hyper polling a body, not by the server's own stream writer,
//! and must behave the same: updates, pings, filters, and a resync instead of a silent
//! gap for a reader that falls behind.

use std::time::Duration;

use serde_json::json;
use stalecast_tests::raw::RawConnection;
use stalecast_tests::{SseClient, TestApp, spawn_app, spawn_app_with, types_query};

use crate::stream::assert_lagged_resync_and_no_silent_gap;

const WAIT: Duration = Duration::from_secs(10);

/// One connection: a query, then the stream with `query` on the same socket.
async fn stream_after_a_query(app: &TestApp, query: &str, connection: RawConnection) -> SseClient {
    let mut connection = connection;
    let answer = connection.get("/trpc/projects.list").await;
    assert_eq!(answer.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(body["result"]["data"].as_array().map(Vec::len), Some(3), "{body}");
    let mut stream = connection.open_stream(query, &[]).await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    stream.connected().await;
    assert_eq!(app.subscriber_count(), 1);
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_then_a_stream_on_one_connection_receives_the_updates_of_mutations_made_elsewhere() {
    let app = spawn_app().await;
    let connection = RawConnection::connect(app.addr()).await.as_client(&app);
    let mut stream = stream_after_a_query(&app, &types_query(&["volumes", "networks"]), connection).await;

    // Mutations through another client's connections.
    let (status, body) = app
        .mutate("compute.servers.create", json!({"projectId": "prj-web", "name": "filtered", "imageId": "img-cirros"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = app.create_volume("seen-on-keep-alive").await;
    let (event_id, data) = stream.next_data(WAIT).await;
    assert_eq!(data["type"], "volumes", "the server update is filtered out: {data}");
    assert_eq!(data["ids"], json!([id]));
    assert_eq!(event_id, data["seq"].to_string());
    let seq = app.publish("networks", Some(vec!["net-keep-alive".into()]));
    let (event_id, data) = stream.next_data(WAIT).await;
    assert_eq!(data["ids"], json!(["net-keep-alive"]));
    assert_eq!(event_id, seq.to_string());
    app.shutdown().await;
    stream.assert_ends(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pings_arrive_on_a_kept_alive_connection_past_the_header_deadline() {
    // A header deadline shorter than the pings below: a stream being answered is not a
    // connection waiting for its next request head, so the deadline must not cut it.
    let app = spawn_app_with(|c| {
        c.ping_interval = Duration::from_millis(300);
        c.header_timeout = Duration::from_secs(1);
    })
    .await;
    let connection = RawConnection::connect(app.addr()).await.as_client(&app);
    let mut stream = stream_after_a_query(&app, "", connection).await;
    // Six pings: some 1.8 s, well past the deadline.
    for _ in 0..6 {
        let event = stream.next_event(WAIT).await;
        assert_eq!(event.event, "ping", "{event:?}");
        assert_eq!(event.data, "{}");
    }
    // A ping does not get in the way of an update.
    let seq = app.publish("images", Some(vec!["img-between-pings".into()]));
    let (event_id, _) = stream.next_data(WAIT).await;
    assert_eq!(event_id, seq.to_string());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_reader_that_stops_reading_gets_a_lagged_resync_and_misses_nothing_silently() {
    const TOTAL: u64 = 10_000;
    let app = spawn_app_with(|c| c.channel_capacity = 8).await;
    let connection = RawConnection::connect_with_small_buffer(app.addr(), 4096).await.as_client(&app);
    let mut stream = stream_after_a_query(&app, "", connection).await;

    // ≈ 15 MB of notifications while the stream is not read: far more than the socket
    // buffers and the channel's 8 updates hold.
    let ids: Vec<String> = (0..64).map(|i| format!("vol-stalled-{i:08}")).collect();
    let first = app.publish("volumes", Some(ids.clone()));
    let mut last = first;
    for _ in 1..TOTAL {
        last = app.publish("volumes", Some(ids.clone()));
        tokio::task::yield_now().await;
    }
    assert_lagged_resync_and_no_silent_gap(&app, &mut stream, first, last).await;
    app.shutdown().await;
}
