//! The stream on a connection hyper serves: a keep-alive connection whose first request
//! was a query gets the stream as a response body that hyper polls (not the fan-out).
//! The body follows the same cursor: updates in order, pings when idle, a `lagged`
//! resync for a reader that stopped reading.

use std::time::Duration;

use stalecast::updates::UpdateType;
use stalecast_tests::{TestApp, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection: a query answered first (so hyper serves it), then the stream.
async fn stream_after_a_query(app: &TestApp) -> TcpStream {
    let mut socket = TcpStream::connect(app.app.addr).await.expect("connect");
    socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("query");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await.expect("answer").expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"ok\""), "{answer}");
    socket
        .write_all(b"GET /trpc/updates.onUpdate HTTP/1.1\r\nHost: localhost\r\naccept: text/event-stream\r\n\r\n")
        .await
        .expect("stream request");
    socket
}

/// Reads until `needle` has arrived (or fails after `wait`); answers everything read.
async fn read_until(socket: &mut TcpStream, seen: &mut String, needle: &str, wait: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    let found = tokio::time::timeout(wait, async {
        while !seen.contains(needle) {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "the connection closed; read so far:\n{seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(found.is_ok(), "no {needle:?} within {wait:?}; read so far:\n{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_a_reused_connection_gets_updates_and_idle_pings() {
    // A header deadline shorter than the test: a stream that is being answered is not a
    // connection waiting for its next request head.
    let app = spawn_app_with(|c| {
        c.ping_interval = Duration::from_millis(300);
        c.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut socket = stream_after_a_query(&app).await;
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, "event: connected", Duration::from_secs(10)).await;
    assert!(seen.contains("transfer-encoding: chunked"), "hyper's chunked body: {seen}");
    let first = app.app.bus.publish(UpdateType::Volumes, Some(vec!["vol-a".into()])).update.seq;
    let second = app.app.bus.publish(UpdateType::Servers, Some(vec!["srv-b".into()])).update.seq;
    read_until(&mut socket, &mut seen, &format!("id: {second}\n"), Duration::from_secs(10)).await;
    let (a, b) = (seen.find(&format!("id: {first}\n")).expect("first"), seen.find(&format!("id: {second}\n")));
    assert!(b.is_some_and(|b| a < b), "in order: {seen}");
    // Idle now: the shared clock's pings arrive on this path too, and keep arriving past
    // the header deadline.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    seen.clear();
    read_until(&mut socket, &mut seen, "event: ping", Duration::from_secs(10)).await;
    let later = app.app.bus.publish(UpdateType::Images, Some(vec!["img-later".into()])).update.seq;
    read_until(&mut socket, &mut seen, &format!("id: {later}\n"), Duration::from_secs(10)).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_on_a_reused_connection_gets_lagged_resyncs_never_an_older_id() {
    let app = spawn_app_with(|c| c.channel_capacity = 16).await;
    let socket = {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("small buffer");
        let mut socket = socket.connect(app.app.addr).await.expect("connect");
        socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("query");
        let mut buf = vec![0u8; 4096];
        let _ = socket.read(&mut buf).await.expect("answer");
        socket
            .write_all(b"GET /trpc/updates.onUpdate HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("stream request");
        socket
    };
    let mut socket = socket;
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, "event: connected", Duration::from_secs(10)).await;
    // Far more than the socket buffers and the channel hold, while the reader reads nothing.
    let ids: Vec<String> = (0..64).map(|i| format!("vol-padding-{i:08}")).collect();
    let mut last = 0;
    for _ in 0..3000 {
        last = app.app.bus.publish(UpdateType::Volumes, Some(ids.clone())).update.seq;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    read_until(&mut socket, &mut seen, r#""reason":"lagged""#, Duration::from_secs(20)).await;
    // After the resync, nothing it covered comes again: the next update is the next seq.
    let next = app.app.bus.publish(UpdateType::Images, Some(vec!["img-after".into()])).update.seq;
    assert_eq!(next, last + 1);
    read_until(&mut socket, &mut seen, "img-after", Duration::from_secs(20)).await;
    // Never an id going back: what a resync covers is not sent again.
    let ids: Vec<u64> = seen
        .match_indices("\nid: ")
        .filter_map(|(i, _)| seen[i + 5..].split('\n').next()?.trim().parse().ok())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "ids go back: {:?}", ids.windows(2).find(|w| w[0] > w[1]));
    let after = ids;
    assert_eq!(after.last(), Some(&next));
    app.shutdown().await;
}
