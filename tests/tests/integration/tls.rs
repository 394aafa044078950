//! `serve --tls-cert/--tls-key`: HTTPS with HTTP/2 (and HTTP/1.1 by ALPN) on a throwaway
//! certificate for `localhost`. Over HTTP/2 a query answers, event streams deliver
//! updates, and several streams and queries share one connection; HTTP/1.1 over TLS
//! works; plain HTTP to the TLS port fails without hurting the server; handshakes and
//! idle HTTP/2 connections have deadlines; shutdown ends open HTTP/2 streams promptly;
//! bad certificate files stop the real binary at startup, naming the file.

use std::time::{Duration, Instant};

use reqwest::Version;
use serde_json::json;
use stalecast_tests::child::{self, ChildServer};
use stalecast_tests::tls::{Protocol, Relay, TestCert, spawn_tls_app};
use stalecast_tests::{Client, SseClient, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// `GET /trpc/projects.list` answers the three projects, over `version`.
async fn assert_query_answers(client: &Client, version: Version) {
    let response = client.http.get(client.url("/trpc/projects.list")).send().await.expect("query");
    assert_eq!(response.version(), version);
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["result"]["data"].as_array().map(Vec::len), Some(3), "{body}");
}

/// Opens the event stream, asserts its protocol and waits for `connected`.
async fn open_stream(client: &Client, version: Version) -> SseClient {
    let response = client
        .http
        .get(client.url("/trpc/updates.onUpdate"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream request");
    assert_eq!(response.version(), version);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = SseClient::new(response);
    stream.connected().await;
    stream
}

/// Publishes an update and asserts that every one of `streams` receives it.
async fn assert_delivered(app: &TestApp, streams: &mut [&mut SseClient], id: &str) {
    let seq = app.publish("volumes", Some(vec![id.to_owned()]));
    for stream in streams.iter_mut() {
        // Updates of a mutation made just before (the servers one below) may come first.
        let (event_id, data) = loop {
            let (event_id, data) = stream.next_data(WAIT).await;
            if data["type"] == "volumes" {
                break (event_id, data);
            }
        };
        assert_eq!(event_id, seq.to_string(), "{data}");
        assert_eq!(data["ids"], json!([id]));
    }
}

/// A client for `app` that reaches it through `relay` (same certificate name).
fn through(app: &TestApp, relay: &Relay) -> Client {
    let mut client = (*app).clone();
    client.base = format!("https://localhost:{}", relay.addr.port());
    client
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_queries_and_two_streams_share_one_connection_and_the_streams_get_updates() {
    let cert = TestCert::localhost();
    let app = spawn_tls_app(&cert, Protocol::H2, |_| {}).await;
    let relay = Relay::start(app.addr()).await;
    let client = through(&app, &relay);

    assert_query_answers(&client, Version::HTTP_2).await;
    let mut first = open_stream(&client, Version::HTTP_2).await;
    assert_delivered(&app, &mut [&mut first], "vol-h2-first").await;

    // A second stream and queries while the first stays open: all on the one connection.
    let mut second = open_stream(&client, Version::HTTP_2).await;
    let queries: Vec<_> = (0..4).map(|_| assert_query_answers(&client, Version::HTTP_2)).collect();
    futures_util::future::join_all(queries).await;
    let (status, body) = client
        .mutate("compute.servers.create", json!({"projectId": "prj-web", "name": "h2", "imageId": "img-cirros"}))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_until("both streams subscribed", || app.subscriber_count() == 2).await;
    assert_delivered(&app, &mut [&mut first, &mut second], "vol-h2-both").await;
    assert_eq!(relay.accepted(), 1, "every request and both streams shared one connection");
    app.shutdown().await;
    first.assert_ends(WAIT).await;
    second.assert_ends(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_over_tls_works_when_the_client_offers_only_http11() {
    let cert = TestCert::localhost();
    let app = spawn_tls_app(&cert, Protocol::Http11, |_| {}).await;
    assert_query_answers(&app, Version::HTTP_11).await;
    let mut stream = open_stream(&app, Version::HTTP_11).await;
    let id = app.create_volume("over-tls-http11").await;
    let (_, data) = stream.next_data(WAIT).await;
    assert_eq!(data["ids"], json!([id]), "{data}");
    app.shutdown().await;
    stream.assert_ends(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_fails_cleanly_and_the_server_keeps_serving() {
    let cert = TestCert::localhost();
    let app = spawn_tls_app(&cert, Protocol::H2, |_| {}).await;
    for _ in 0..3 {
        let mut socket = TcpStream::connect(app.addr()).await.expect("connect");
        socket.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n").await.expect("write");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(WAIT, socket.read_to_end(&mut answer)).await;
        let read = read.unwrap_or_else(|_| panic!("the connection was neither answered nor closed within {WAIT:?}"));
        // Closed, with a TLS alert at most (record type 21), never an HTTP answer.
        assert!(read.is_ok() || answer.is_empty(), "{read:?}");
        assert!(!answer.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&answer));
        assert!(answer.is_empty() || answer[0] == 21, "not a TLS alert: {answer:?}");
    }
    assert_query_answers(&app, Version::HTTP_2).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_handshake_is_closed_at_the_header_deadline() {
    let cert = TestCert::localhost();
    let app = spawn_tls_app(&cert, Protocol::H2, |c| c.header_timeout = Duration::from_millis(500)).await;
    let mut silent = TcpStream::connect(app.addr()).await.expect("connect");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf)).await.expect("closed within the wait");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "closed after {took:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_a_connection_stuck_in_its_handshake_makes_room() {
    let cert = TestCert::localhost();
    let app = spawn_tls_app(&cert, Protocol::H2, |c| {
        c.max_connections = 2;
        c.header_timeout = Duration::from_secs(60);
    })
    .await;
    // Two connections that never start their handshake fill the budget.
    let _stuck = [
        TcpStream::connect(app.addr()).await.expect("connect"),
        TcpStream::connect(app.addr()).await.expect("connect"),
    ];
    // Past the budget's minimum wait, a real client is served (one of them closed for it).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let started = Instant::now();
    tokio::time::timeout(WAIT, assert_query_answers(&app, Version::HTTP_2)).await.expect("answered within the wait");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_at_the_header_deadline_but_one_with_a_stream_is_not() {
    let cert = TestCert::localhost();
    let app = spawn_tls_app(&cert, Protocol::H2, |c| {
        c.header_timeout = Duration::from_secs(1);
        c.ping_interval = Duration::from_millis(400);
    })
    .await;
    let idle_relay = Relay::start(app.addr()).await;
    assert_query_answers(&through(&app, &idle_relay), Version::HTTP_2).await;
    assert_eq!(idle_relay.open(), 1);
    wait_until("the idle connection closed", || idle_relay.open() == 0).await;

    // A connection holding a stream lives past the deadline, its pings arriving.
    let stream_relay = Relay::start(app.addr()).await;
    let mut stream = open_stream(&through(&app, &stream_relay), Version::HTTP_2).await;
    for _ in 0..6 {
        let event = stream.next_event(WAIT).await;
        assert_eq!(event.event, "ping", "{event:?}");
    }
    assert_eq!(stream_relay.open(), 1, "still open after some 2.4 s");
    assert_delivered(&app, &mut [&mut stream], "vol-after-the-deadline").await;
    app.shutdown().await;
    stream.assert_ends(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_open_http2_streams_ends_them_promptly() {
    let cert = TestCert::localhost();
    // A shutdown deadline far beyond what the test allows: the streams must end by
    // themselves, not be cut at the deadline.
    let app = spawn_tls_app(&cert, Protocol::H2, |c| c.shutdown_timeout = Duration::from_secs(30)).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(open_stream(&app, Version::HTTP_2).await);
    }
    wait_until("five streams subscribed", || app.subscriber_count() == 5).await;
    let started = Instant::now();
    tokio::time::timeout(WAIT, app.shutdown()).await.expect("shutdown returns within the wait");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    for stream in &mut streams {
        stream.assert_ends(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_https_from_its_environment_and_its_ready_file_says_so() {
    let cert = TestCert::localhost();
    let (cert_path, key_path) = cert.paths();
    let mut server = ChildServer::start(
        &["serve", "--port", "0"],
        &[("STALECAST_TLS_CERT", &cert_path), ("STALECAST_TLS_KEY", &key_path)],
    )
    .await;
    let port = server.addr.port();
    assert_eq!(server.ready["url"], format!("https://127.0.0.1:{port}"), "{}", server.ready);
    assert!(server.lines().iter().any(|l| l.contains("https://127.0.0.1:")), "{:?}", server.lines());
    let mut client = server.client.built_by(cert.builder(Protocol::H2));
    client.base = format!("https://localhost:{port}");
    let client = client.sign_in("admin", "stalecast").await;
    assert_query_answers(&client, Version::HTTP_2).await;
    let mut stream = open_stream(&client, Version::HTTP_2).await;
    server.terminate();
    assert!(server.wait_exit(WAIT).await.success());
    stream.assert_ends(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_binary_says_http_in_its_ready_file() {
    let server = ChildServer::start(&["serve", "--port", "0"], &[]).await;
    assert_eq!(server.ready["url"], format!("http://127.0.0.1:{}", server.addr.port()), "{}", server.ready);
}

/// Runs `stalecast serve` with `args` and asserts that it exits non-zero, saying `says`.
async fn assert_refused(args: &[&str], says: &[&str]) {
    let mut all = vec!["serve", "--port", "0"];
    all.extend_from_slice(args);
    let (status, output) = child::run(&all, &[]).await;
    assert!(!status.success(), "{all:?} exited {status}:\n{output}");
    for text in says {
        assert!(output.contains(text), "{all:?} should say {text:?}:\n{output}");
    }
    assert!(!output.contains("panicked"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_its_key_or_a_key_without_its_certificate_is_refused() {
    let cert = TestCert::localhost();
    let (cert_path, key_path) = cert.paths();
    assert_refused(&["--tls-cert", &cert_path], &["--tls-key"]).await;
    assert_refused(&["--tls-key", &key_path], &["--tls-cert"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_or_invalid_certificate_files_stop_the_start_naming_the_file() {
    let cert = TestCert::localhost();
    let other = TestCert::localhost();
    let (cert_path, key_path) = cert.paths();
    let (_, other_key) = other.paths();
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem").to_string_lossy().into_owned();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("write");
    let garbage = garbage.to_string_lossy().into_owned();
    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64!\n").expect("write");
    let broken = broken.to_string_lossy().into_owned();

    assert_refused(&["--tls-cert", &missing, "--tls-key", &key_path], &[&missing, "No such file"]).await;
    assert_refused(&["--tls-cert", &cert_path, "--tls-key", &missing], &[&missing]).await;
    assert_refused(&["--tls-cert", &garbage, "--tls-key", &key_path], &[&garbage, "no PEM certificate"]).await;
    assert_refused(&["--tls-cert", &broken, "--tls-key", &key_path], &[&broken]).await;
    assert_refused(&["--tls-cert", &cert_path, "--tls-key", &garbage], &[&garbage, "no PEM private key"]).await;
    // The certificate given as the key, and a key of another certificate.
    assert_refused(&["--tls-cert", &cert_path, "--tls-key", &cert_path], &["no PEM private key"]).await;
    assert_refused(&["--tls-cert", &cert_path, "--tls-key", &other_key], &[&other_key, &cert_path]).await;
}
