//! How answers and connections are served: cached lists compressed once and revalidated
//! with `ETag`/`304`, and a connection budget that never drops open streams.

use std::io::Read;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast_tests::{spawn_app, spawn_app_with};

/// Adds `count` realistic volumes in the simulator and waits until Stalecast serves them.
async fn seed_volumes(app: &stalecast_tests::TestApp, count: usize) {
    let (status, totals) = app.seed(json!({"volumes": count})).await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    app.wait_for_volumes(count, Duration::from_secs(30)).await;
}

fn list_url(app: &stalecast_tests::TestApp) -> String {
    app.url("/trpc/storage.volumes.list")
}

#[tokio::test]
async fn a_large_list_is_sent_compressed_and_revalidated_with_304() {
    let app = spawn_app().await;
    seed_volumes(&app, 2_000).await;

    let plain = app.http.get(list_url(&app)).send().await.expect("plain");
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(plain.headers().get("content-encoding").is_none(), "no Accept-Encoding, no compression");
    let etag = plain.headers()["etag"].to_str().expect("etag").to_owned();
    let plain = plain.bytes().await.expect("body");

    let gzipped = app.http.get(list_url(&app)).header("accept-encoding", "gzip").send().await.expect("gzip");
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(gzipped.headers()["etag"].to_str().expect("etag"), etag, "one value, one tag, any coding");
    let gzipped = gzipped.bytes().await.expect("body");
    // Realistic records (UUIDs, varied names) shrink some four to five times, not tenfold.
    assert!(gzipped.len() * 3 < plain.len(), "{} compressed vs {} plain", gzipped.len(), plain.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzipped[..]).read_to_end(&mut unzipped).expect("gunzip");
    assert_eq!(unzipped, plain);

    let br = app.http.get(list_url(&app)).header("accept-encoding", "gzip, br").send().await.expect("br");
    assert_eq!(br.headers()["content-encoding"], "br");
    let br = br.bytes().await.expect("body");
    let mut unbrotlied = Vec::new();
    brotli::BrotliDecompress(&mut &br[..], &mut unbrotlied).expect("unbrotli");
    assert_eq!(unbrotlied, plain);

    // A client holding the current value gets no body.
    let again = app.http.get(list_url(&app)).header("if-none-match", &etag).send().await.expect("conditional");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().expect("etag"), etag);
    assert!(again.bytes().await.expect("body").is_empty());

    // Once the list changes, the old tag no longer matches.
    let id = app.create_volume("etag-test").await;
    let changed = app.http.get(list_url(&app)).header("if-none-match", &etag).send().await.expect("conditional");
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().expect("etag"), etag);
    let body: Value = changed.json().await.expect("json");
    assert!(body["result"]["data"].as_array().expect("list").iter().any(|v| v["id"] == id));
    app.shutdown().await;
}

#[tokio::test]
async fn every_query_answer_has_an_etag_and_mutations_have_none() {
    let app = spawn_app().await;
    let url = app.url("/trpc/storage.volumes.list?input=%7B%22projectId%22%3A%22prj-web%22%7D");
    let first = app.http.get(&url).send().await.expect("query");
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].clone();
    let second = app.http.get(&url).header("if-none-match", etag).send().await.expect("conditional");
    assert_eq!(second.status(), StatusCode::NOT_MODIFIED);

    let batch = app.url("/trpc/projects.list,images.list?batch=1");
    let first = app.http.get(&batch).send().await.expect("batch");
    let etag = first.headers()["etag"].clone();
    let second = app.http.get(&batch).header("if-none-match", etag).send().await.expect("conditional batch");
    assert_eq!(second.status(), StatusCode::NOT_MODIFIED);

    let mutation = app
        .http
        .post(app.url("/trpc/storage.volumes.create"))
        .json(&json!({"projectId": "prj-web", "name": "no-etag", "sizeGb": 1}))
        .send()
        .await
        .expect("mutation");
    assert_eq!(mutation.status(), StatusCode::OK);
    assert!(mutation.headers().get("etag").is_none());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_limit_new_clients_wait_and_open_streams_keep_flowing() {
    let app = spawn_app_with(|c| c.max_connections = 3).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        // A client of its own per stream: one connection each.
        let http = app.new_http();
        let response = http.get(app.url("/trpc/updates.onUpdate")).send().await.expect("stream");
        assert_eq!(response.status(), StatusCode::OK);
        let mut sse = stalecast_tests::SseClient::new(response);
        sse.connected().await;
        streams.push((http, sse));
    }

    // The fourth connection waits in the backlog rather than failing...
    let waiting = tokio::spawn({
        let url = app.url("/healthz");
        async move { reqwest::Client::new().get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a connection beyond the limit was served");

    // ...while the open streams are served as before.
    app.publish("volumes", Some(vec!["vol-limit".into()]));
    for (_, sse) in &mut streams {
        let (_, data) = sse.next_data(Duration::from_secs(10)).await;
        assert_eq!(data["ids"][0], "vol-limit");
    }

    // One tab closes: the waiting client is served.
    drop(streams.pop());
    let status = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("served once a slot frees");
    assert_eq!(status.expect("task").expect("request"), StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_tab_frees_its_subscription_without_waiting_for_the_next_update() {
    let app = spawn_app().await;
    let http = app.new_http();
    let response = http.get(app.url("/trpc/updates.onUpdate")).send().await.expect("stream");
    let mut sse = stalecast_tests::SseClient::new(response);
    sse.connected().await;
    assert_eq!(app.subscriber_count(), 1);

    drop(sse);
    drop(http);
    // Nothing is published: the server must notice the closed socket by itself.
    let mut freed = false;
    for _ in 0..250 {
        if app.subscriber_count() == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the subscription outlived its connection");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_client_gets_the_stream_until_the_connection_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app().await;
    let mut socket = tokio::net::TcpStream::connect(app.addr()).await.expect("connect");
    let cookie = app.cookie.clone().expect("signed in");
    let request = format!("GET /trpc/updates.onUpdate HTTP/1.0\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("request");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("event: connected") {
        let n =
            tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await.expect("head").expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&received).to_string();
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    assert!(!text.contains("transfer-encoding"), "HTTP/1.0 has no chunked coding: {text}");

    app.publish("images", Some(vec!["img-http10".into()]));
    while !String::from_utf8_lossy(&received).contains("img-http10") {
        let n =
            tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await.expect("update").expect("read");
        assert!(n > 0);
        received.extend_from_slice(&buf[..n]);
    }
    app.shutdown().await;
    // Shutdown ends the body by closing the connection: that is HTTP/1.0's end of message.
    loop {
        let n =
            tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await.expect("close").expect("read");
        if n == 0 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pauses_reading_catches_up_in_order_without_a_resync() {
    let app = spawn_app_with(|c| c.channel_capacity = 1024).await;
    let http = app.new_http();
    let response = http.get(app.url("/trpc/updates.onUpdate")).send().await.expect("stream");
    let mut sse = stalecast_tests::SseClient::new(response);
    sse.connected().await;

    // ≈ 3 MB of notifications while the client reads nothing: more than the socket
    // buffers hold, so the server must queue the rest for this client alone.
    let long_ids: Vec<String> = (0..64).map(|i| format!("vol-{i:04}-{}", "x".repeat(80))).collect();
    let mut published = Vec::new();
    for _ in 0..500 {
        published.push(app.publish("volumes", Some(long_ids.clone())));
        tokio::task::yield_now().await;
    }

    for seq in published {
        let (id, data) = sse.next_data(Duration::from_secs(10)).await;
        assert_eq!(data["kind"], "update", "no resync below the channel's capacity: {data}");
        assert_eq!(id, seq.to_string());
    }
    app.shutdown().await;
}
