//! What a hostile page, a slow client or a failing upstream cannot do: drive the API from
//! another site, hold connections or shutdown, or make readiness lie.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast_tests::{TestApp, spawn_app, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STOP: &str = "/trpc/compute.servers.stop";
const STOP_BODY: &str = r#"{"id":"srv-0001"}"#;

fn code(body: &Value) -> &str {
    body["error"]["data"]["code"].as_str().unwrap_or_default()
}

/// Writes `request` on a fresh connection and reads until the server closes it (or 10 s).
async fn raw(app: &TestApp, request: &str) -> String {
    let mut socket = TcpStream::connect(app.addr()).await.expect("connect");
    socket.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_form_on_another_site_cannot_run_a_mutation() {
    let app = spawn_app().await;
    // The content types a plain HTML form (or a no-CORS fetch) can send.
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let response = app
            .http
            .post(app.url(STOP))
            .header("content-type", content_type)
            .body(STOP_BODY)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(code(&body), "UNSUPPORTED_MEDIA_TYPE");
        assert_eq!(body["error"]["data"]["path"], "compute.servers.stop");
    }
    // A foreign or opaque origin is refused whatever it sends, before any procedure runs.
    for origin in ["https://evil.example", "null", "http://localhost:9"] {
        let response = app
            .http
            .post(app.url(STOP))
            .header("content-type", "application/json")
            .header("origin", origin)
            .body(STOP_BODY)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin}");
        assert!(response.headers().get("access-control-allow-origin").is_none());
    }
    let (_, server) = app.query("compute.servers.get", Some(json!({"id": "srv-0001"}))).await;
    assert_eq!(server["result"]["data"]["status"], "ACTIVE", "no stop ran");
    // The page's own origin works.
    let response = app
        .http
        .post(app.url(STOP))
        .header("content-type", "application/json; charset=utf-8")
        .header("origin", app.base.clone())
        .body(STOP_BODY)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    app.shutdown().await;
}

/// A browser's CORS preflight for a JSON mutation from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, app.url(STOP))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight")
}

#[tokio::test]
async fn no_cors_unless_an_origin_is_named() {
    let app = spawn_app().await;
    let refused = preflight(&app, "https://evil.example").await;
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let list = app.http.get(app.url("/trpc/projects.list")).send().await.expect("list");
    assert!(list.headers().get("access-control-allow-origin").is_none());
    app.shutdown().await;

    let app = spawn_app_with(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    let allowed = preflight(&app, "https://app.example").await;
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let response = app
        .http
        .post(app.url(STOP))
        .header("origin", "https://app.example")
        .header("content-type", "application/json")
        .body(STOP_BODY)
        .send()
        .await
        .expect("cross-site mutation");
    let status = response.status();
    assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(status, StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test]
async fn only_this_servers_host_names_are_answered() {
    let app = spawn_app_with(|c| c.allowed_hosts = vec!["stalecast.test".into()]).await;
    for path in ["/trpc/projects.list", "/", "/trpc/updates.onUpdate", "/docs/"] {
        let answer =
            raw(&app, &format!("GET {path} HTTP/1.1\r\nHost: evil.example:3000\r\nConnection: close\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
        assert!(answer.contains("FORBIDDEN"), "{path}: the tRPC envelope: {answer}");
    }
    let cookie = app.cookie.clone().expect("signed in");
    for host in ["localhost:1", "127.0.0.1", "[::1]:3000", "stalecast.test"] {
        let request = format!(
            "GET /trpc/projects.list HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        );
        let answer = raw(&app, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    let missing = raw(&app, "GET /trpc/projects.list HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 400"), "{missing}");
    let twice =
        raw(&app, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n").await;
    assert!(twice.starts_with("HTTP/1.1 400"), "{twice}");
    // The event stream's own writer applies the same rule.
    let stream = raw(&app, "GET /trpc/updates.onUpdate HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(stream.starts_with("HTTP/1.1 400"), "{stream}");
    app.shutdown().await;
}

#[tokio::test]
async fn pages_carry_a_content_security_policy_and_no_sniffing() {
    let app = spawn_app_with(|c| c.web_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/web").into()).await;
    for path in ["/", "/docs/", "/trpc/projects.list", "/trpc/nope"] {
        let response = app.http.get(app.url(path)).send().await.expect("get");
        let h = response.headers();
        let csp = h["content-security-policy"].to_str().expect("ascii");
        if path.starts_with("/trpc") {
            // An API answer lets nothing load, should a browser render it.
            assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'", "{path}");
        } else {
            assert!(response.status().is_success(), "{path}: {}", response.status());
            assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        }
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_wrong_method_says_which_ones_work() {
    let app = spawn_app().await;
    let get_mutation = app.http.get(app.url(STOP)).send().await.expect("get");
    assert_eq!(get_mutation.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get_mutation.headers()["allow"], "POST");
    let post_query =
        app.http.post(app.url("/trpc/projects.list")).header("content-type", "application/json").send().await;
    let post_query = post_query.expect("post");
    assert_eq!(post_query.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post_query.headers()["allow"], "GET");
    let put = app.http.put(app.url("/trpc/projects.list")).send().await.expect("put");
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.headers()["allow"], "GET, POST");
    let stream = app.http.post(app.url("/trpc/updates.onUpdate")).send().await.expect("post");
    assert_eq!(stream.headers()["allow"], "GET");
    app.shutdown().await;
}

#[tokio::test]
async fn an_empty_last_event_id_is_a_fresh_start_not_a_resync() {
    let app = spawn_app().await;
    let mut stream = app.stream("", Some("")).await;
    stream.connected().await;
    let id = app.create_volume("fresh-start").await;
    let (_, event) = stream.next_data(Duration::from_secs(10)).await;
    assert_eq!(event["kind"], "update", "no resync first: {event}");
    assert_eq!(event["ids"][0], id.as_str());
    app.shutdown().await;
}

/// How long a real client waits for `/healthz` while the others hold connections.
async fn served_within(app: &TestApp, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(limit).build().expect("client");
    match client.get(app.url("/healthz")).send().await {
        Ok(r) if r.status().is_success() => Ok(started.elapsed()),
        Ok(r) => Err(format!("answered {}", r.status())),
        Err(e) => Err(format!("not served within {limit:?}: {e}")),
    }
}

/// Opens `count` connections that wait on their client, of the three kinds in turn: a
/// request head that never ends, a body that never arrives, an idle keep-alive
/// connection after one answer.
async fn slow_connections(app: &TestApp, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for i in 0..count {
        let mut socket = TcpStream::connect(app.addr()).await.expect("connect");
        match i % 3 {
            0 => socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").await.expect("write"),
            1 => socket
                .write_all(
                    b"POST /trpc/compute.servers.stop HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
                )
                .await
                .expect("write"),
            _ => {
                socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
                let mut buf = [0u8; 1024];
                let n = socket.read(&mut buf).await.expect("answer");
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            }
        }
        held.push(socket);
    }
    held
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_at_their_deadlines() {
    let app = spawn_app_with(|c| {
        c.header_timeout = Duration::from_secs(2);
        c.body_timeout = Duration::from_secs(2);
    })
    .await;
    let mut held = slow_connections(&app, 30).await;
    let started = Instant::now();
    // Each one is closed by the server (EOF, after an error answer for the body), never
    // left hanging.
    for (i, socket) in held.iter_mut().enumerate() {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "connection {i} still open after {:?}", started.elapsed());
        if i % 3 == 1 {
            let text = String::from_utf8_lossy(&rest);
            assert!(text.starts_with("HTTP/1.1 408"), "a body that never arrives: {text}");
        }
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_the_longest_waiting_make_room_and_streams_stay() {
    const LIMIT: usize = 60;
    // Deadlines far beyond the test: only making room can serve the next client.
    let app = spawn_app_with(|c| {
        c.max_connections = LIMIT;
        c.header_timeout = Duration::from_secs(60);
        c.body_timeout = Duration::from_secs(60);
    })
    .await;
    let mut stream = app.stream("", None).await;
    stream.connected().await;
    let mut held = slow_connections(&app, LIMIT - 1).await;
    // The budget is spent. A real client is served once the oldest waiting connection
    // has waited a second, long before any deadline.
    let waited = served_within(&app, Duration::from_secs(10)).await.expect("a real client is served");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // The one closed for it was the first opened, the oldest; the stream was never a
    // candidate and still delivers.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), held[0].read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the longest waiting connection is still open");
    let seq = app.publish("volumes", Some(vec!["vol-room".into()]));
    let (id, _) = stream.next_data(Duration::from_secs(10)).await;
    assert_eq!(id, seq.to_string());
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_meets_its_deadline_while_a_client_leaves_a_large_answer_unread() {
    let app = spawn_app_with(|c| {
        c.shutdown_timeout = Duration::from_secs(1);
        // Some 20 MB of upstream JSON per poll: time for the unoptimised test build.
        c.poll_interval = Duration::from_secs(1);
        c.upstream_timeout = Duration::from_secs(60);
    })
    .await;
    // Some 7 MB of list, more than the loopback socket buffers hold for a reader that
    // reads nothing.
    let (status, totals) = app.seed(json!({"volumes": 16_000})).await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    app.wait_for_volumes(16_000, Duration::from_secs(90)).await;
    let mut socket = TcpStream::connect(app.addr()).await.expect("connect");
    let cookie = app.cookie.clone().expect("signed in");
    let request = format!("GET /trpc/storage.volumes.list HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("request");
    let mut first = [0u8; 64];
    let n = socket.read(&mut first).await.expect("the answer starts");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    // The client reads nothing more: megabytes wait in the socket buffers.
    let started = Instant::now();
    app.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?} with a 1 s deadline");
    drop(socket);
}

#[tokio::test]
async fn readiness_follows_the_age_of_the_data_not_single_failures() {
    let app = spawn_app_with(|c| c.max_staleness = Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.http.get(app.url("/readyz")).send().await.expect("readyz").status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.set_faults(json!({"errorRate": 0.5})).await;
    let (mut ready, mut samples) = (0, 0);
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let response = app.http.get(app.url("/readyz")).send().await.expect("readyz");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        let text = body.to_string();
        assert!(!text.contains("http://") && !text.contains("error"), "operators' detail leaked: {text}");
        samples += 1;
        if status == StatusCode::OK {
            ready += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready * 10 >= samples * 8, "ready in {ready} of {samples} samples at 50 % upstream errors");
    // An upstream that stops answering for good makes the node unready once the data is
    // older than the bound.
    app.set_faults(json!({"errorRate": 1.0})).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.http.get(app.url("/readyz")).send().await.expect("readyz").status() != StatusCode::SERVICE_UNAVAILABLE {
        assert!(Instant::now() < deadline, "still ready with a dead upstream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.shutdown().await;
}

/// This process's resident memory, in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib = stalecast_tests::vm_rss_kib(&status).expect("VmRSS");
    kib * 1024
}

/// Opens `count` streams that read their first bytes (`connected`) and then nothing.
async fn open_streams(app: &TestApp, count: usize, last_event_id: Option<u64>) -> Vec<TcpStream> {
    let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    let cookie = app.cookie.clone().expect("signed in");
    let request = format!("GET /trpc/updates.onUpdate HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n{resume}\r\n");
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut socket = TcpStream::connect(app.addr()).await.expect("connect");
        socket.write_all(request.as_bytes()).await.expect("request");
        let mut buf = [0u8; 512];
        let n =
            tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await.expect("answer").expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        streams.push(socket);
    }
    streams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_resuming_from_the_oldest_id_hold_no_more_memory_than_fresh_ones() {
    const STREAMS: usize = 1000;
    let app = spawn_app().await;
    let first = app.publish("volumes", Some(vec!["vol-x".into()]));
    for _ in 1..4096 {
        app.publish("volumes", Some(vec!["vol-x".into()]));
    }
    let oldest = first - 1;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = resident_bytes();
    let fresh = open_streams(&app, STREAMS, None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh_cost = resident_bytes().saturating_sub(before);
    let before = resident_bytes();
    let resuming = open_streams(&app, STREAMS, Some(oldest)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resuming_cost = resident_bytes().saturating_sub(before);
    eprintln!(
        "{STREAMS} resuming streams cost {} KiB, {STREAMS} fresh ones {} KiB",
        resuming_cost / 1024,
        fresh_cost / 1024
    );
    assert!(
        resuming_cost < fresh_cost + 10 * 1024 * 1024,
        "{STREAMS} resuming streams cost {} KiB, {STREAMS} fresh ones {} KiB",
        resuming_cost / 1024,
        fresh_cost / 1024
    );
    drop((fresh, resuming));
    app.shutdown().await;
}
