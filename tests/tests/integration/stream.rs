//! `updates.onUpdate`: delivery, resume, resync, filters, slow subscribers.

use std::time::{Duration, Instant};

use serde_json::json;
use stalecast::updates::{UpdateType, now_micros};
use stalecast_tests::{encode, spawn_app, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn stream_opens_with_connected_and_sends_no_compressed_bytes() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/trpc/updates.onUpdate"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .expect("stream");
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(headers.get("content-encoding").is_none(), "the stream must never be compressed");
    let mut stream = stalecast_tests::SseClient::new(response);
    let connected = stream.connected().await;
    assert_eq!(connected["reconnectAfterInactivityMs"], 15_000);
    app.shutdown().await;
}

#[tokio::test]
async fn a_mutation_reaches_an_open_stream_within_100ms() {
    let app = spawn_app().await;
    let mut stream = app.stream("", None).await;
    stream.connected().await;
    let started = Instant::now();
    let id = app.create_volume("fast").await;
    let answered = Instant::now();
    let (event_id, data) = stream.next_data(WAIT).await.expect("update");
    let arrived = Instant::now();
    let received_at = now_micros();
    assert_eq!(data["kind"], "update");
    assert_eq!(data["type"], "volumes");
    assert_eq!(data["ids"], json!([id]));
    assert_eq!(event_id, data["seq"].to_string());
    // Published before the mutation answered, so it is already on its way.
    assert!(arrived - answered < Duration::from_millis(100), "{:?} after the answer", arrived - answered);
    let latency = received_at - data["ts"].as_u64().expect("ts");
    assert!(latency < 100_000, "{latency} µs from publish to arrival");
    assert!(arrived - started < Duration::from_secs(2));
    app.shutdown().await;
}

#[tokio::test]
async fn ping_keeps_idle_streams_alive() {
    let app = spawn_app_with(|c| c.ping_interval = Duration::from_millis(200)).await;
    let mut stream = app.stream("", None).await;
    let connected = stream.connected().await;
    assert_eq!(connected["reconnectAfterInactivityMs"], 600);
    let ping = stream.next_event(Duration::from_secs(2)).await.expect("ping");
    assert_eq!(ping.event, "ping");
    app.shutdown().await;
}

#[tokio::test]
async fn type_filter_passes_only_the_chosen_types() {
    let app = spawn_app().await;
    let input = encode(&json!({"types": ["servers"]}).to_string());
    let mut servers_only = app.stream(&format!("input={input}"), None).await;
    servers_only.connected().await;
    app.create_volume("ignored").await;
    let (status, body) = app.mutate("compute.servers.create", json!({"projectId": "prj-data", "name": "seen"})).await;
    assert_eq!(status, 200, "{body}");
    let (_, data) = servers_only.next_data(WAIT).await.expect("server update");
    assert_eq!(data["type"], "servers", "the volume update must have been filtered out");
    assert_eq!(data["ids"], json!([body["result"]["data"]["id"]]));
    app.shutdown().await;
}

/// Opens a stream, takes one update, and answers its id.
async fn first_update_id(app: &stalecast_tests::TestApp) -> u64 {
    let mut stream = app.stream("", None).await;
    stream.connected().await;
    app.create_volume("first").await;
    let (id, _) = stream.next_data(WAIT).await.expect("update");
    id.parse().expect("numeric id")
}

#[tokio::test]
async fn resume_with_last_event_id_gives_exactly_the_missed_updates() {
    let app = spawn_app().await;
    let last = first_update_id(&app).await;
    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(app.create_volume(&format!("missed-{i}")).await);
    }
    let mut stream = app.stream("", Some(&last.to_string())).await;
    stream.connected().await;
    let mut seqs = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, data) = stream.next_data(WAIT).await.expect("replayed update");
        assert_eq!(data["kind"], "update", "{data}");
        seqs.push(data["seq"].as_u64().expect("seq"));
        ids.push(data["ids"][0].as_str().expect("id").to_owned());
    }
    assert_eq!(seqs, vec![last + 1, last + 2, last + 3]);
    assert_eq!(ids, missed);
    // Then live, with no duplicate of the replay.
    let live = app.create_volume("live").await;
    let (_, data) = stream.next_data(WAIT).await.expect("live update");
    assert_eq!(data["seq"].as_u64(), Some(last + 4));
    assert_eq!(data["ids"], json!([live]));
    assert!(stream.next_data(Duration::from_millis(300)).await.is_none(), "nothing else");
    app.shutdown().await;
}

#[tokio::test]
async fn every_resume_source_is_honoured_and_the_header_wins() {
    let app = spawn_app().await;
    let bus = app.app.bus.clone();
    let first = bus.publish(UpdateType::Images, None).update.seq;
    for _ in 0..4 {
        bus.publish(UpdateType::Images, None);
    }
    let input_first = encode(&json!({"lastEventId": first.to_string()}).to_string());
    let cases = [
        (format!("input={input_first}"), None, first + 1),
        (format!("lastEventId={}", first + 1), None, first + 2),
        (format!("input={input_first}&lastEventId={}", first + 2), None, first + 3),
        (format!("input={input_first}&lastEventId={}", first + 1), Some((first + 3).to_string()), first + 4),
    ];
    for (query, header, expected_first) in cases {
        let mut stream = app.stream(&query, header.as_deref()).await;
        stream.connected().await;
        let (_, data) = stream.next_data(WAIT).await.expect("replay");
        assert_eq!(data["seq"].as_u64(), Some(expected_first), "{query} / {header:?}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn an_id_older_than_the_ring_gives_resync_then_live_updates() {
    let app = spawn_app_with(|c| c.ring_size = 4).await;
    let bus = app.app.bus.clone();
    let old = bus.publish(UpdateType::Networks, None).update.seq;
    for _ in 0..10 {
        bus.publish(UpdateType::Networks, None);
    }
    let mut stream = app.stream("", Some(&old.to_string())).await;
    stream.connected().await;
    let (id, data) = stream.next_data(WAIT).await.expect("resync");
    assert_eq!(data["kind"], "resync");
    assert_eq!(data["reason"], "gap");
    assert_eq!(id, (old + 10).to_string(), "a resync carries the id to resume from");
    let next = bus.publish(UpdateType::Networks, None).update.seq;
    let (_, data) = stream.next_data(WAIT).await.expect("live");
    assert_eq!(data["seq"].as_u64(), Some(next));

    // An id that is not a number, or from a later process, is treated the same way.
    for bad in ["not-a-number", &(next + 1000).to_string()] {
        let mut stream = app.stream("", Some(bad)).await;
        stream.connected().await;
        let (_, data) = stream.next_data(WAIT).await.expect("resync");
        assert_eq!(data["reason"], "gap", "{bad}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_never_reads_gets_resync_while_another_receives_everything() {
    const TOTAL: u64 = 10_000;
    const STEP: u64 = 100;
    let app = spawn_app_with(|c| c.channel_capacity = 256).await;

    // The stalled subscriber: a raw socket with a tiny receive buffer that reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let mut stalled = socket.connect(app.app.addr).await.expect("connect");
    stalled
        .write_all(b"GET /trpc/updates.onUpdate HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n")
        .await
        .expect("request");

    // The healthy subscriber reports its progress.
    let mut healthy = app.stream("", None).await;
    healthy.connected().await;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while let Some((_, data)) = healthy.next_data(WAIT).await {
            assert_eq!(data["kind"], "update", "the healthy subscriber must never need a resync");
            seqs.push(data["seq"].as_u64().expect("seq"));
            let _ = progress_tx.send(seqs.len() as u64);
            if seqs.len() as u64 == TOTAL {
                break;
            }
        }
        seqs
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Big updates (64 ids each), paced so that the healthy reader keeps up.
    let bus = app.app.bus.clone();
    let ids: Vec<String> = (0..64).map(|i| format!("vol-padding-{i:08}")).collect();
    let mut first = None;
    for sent in (0..TOTAL).step_by(STEP as usize) {
        for _ in 0..STEP {
            let seq = bus.publish(UpdateType::Volumes, Some(ids.clone())).update.seq;
            first.get_or_insert(seq);
        }
        let target = sent + STEP;
        tokio::time::timeout(WAIT, progress.wait_for(|n| *n >= target)).await.expect("reader keeps up").expect("watch");
    }
    let seqs = reader.await.expect("reader");
    let first = first.expect("published");
    assert_eq!(seqs, (first..first + TOTAL).collect::<Vec<_>>(), "everything, in order, once");

    // The stalled subscriber, once it reads, finds a resync instead of a silent gap, with
    // its seq as the event id (what a resuming client sends back), and after it only
    // updates with greater ids.
    let needle = br#""reason":"lagged""#;
    let mut total = 0usize;
    let mut window: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n = stalled.read(&mut chunk).await.expect("read");
            assert!(n > 0, "stream closed before any resync");
            total += n;
            // Search the new bytes plus the tail of the previous reads.
            let keep = window.len().min(4096);
            window.drain(..window.len() - keep);
            window.extend_from_slice(&chunk[..n]);
            if let Some(at) = window.windows(needle.len()).position(|w| w == needle) {
                let start = window[..at].windows(2).rposition(|w| w == b"\n\n").map_or(0, |i| i + 2);
                let mut rest = window[at..].to_vec();
                // Read on until the resync event and the next one are complete.
                while rest.windows(2).filter(|w| *w == b"\n\n").count() < 2 {
                    let n = stalled.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "stream closed after the resync");
                    rest.extend_from_slice(&chunk[..n]);
                }
                let mut text = String::from_utf8_lossy(&window[start..at]).into_owned();
                text.push_str(&String::from_utf8_lossy(&rest));
                return text;
            }
        }
    })
    .await;
    let Ok(text) = found else { panic!("no resync in {total} bytes") };
    let mut events = text.split("\n\n");
    let resync = events.next().expect("resync event");
    let id: u64 = resync
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("the resync has no id: {resync}"))
        .parse()
        .expect("numeric id");
    let data = resync.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
    let data: serde_json::Value = serde_json::from_str(data).expect("json");
    assert_eq!(data["seq"].as_u64(), Some(id), "{resync}");
    let next = events.next().expect("next event");
    if let Some(next_id) = next.lines().find_map(|l| l.strip_prefix("id: ")) {
        assert!(next_id.parse::<u64>().expect("numeric id") > id, "ids only increase: {id} then {next}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn bad_stream_input_is_a_json_error_naming_the_field() {
    let app = spawn_app().await;
    let input = encode(&json!({"types": ["volumes", "bananas"]}).to_string());
    let response = app.http.get(app.url(&format!("/trpc/updates.onUpdate?input={input}"))).send().await.expect("req");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["data"]["code"], "BAD_REQUEST");
    assert_eq!(body["error"]["data"]["path"], "updates.onUpdate");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("input.types[1]"), "{message}");

    let response = app.http.get(app.url("/trpc/updates.onUpdate?input=%7Bnope")).send().await.expect("req");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["data"]["code"], "PARSE_ERROR");

    let response = app.http.post(app.url("/trpc/updates.onUpdate")).send().await.expect("req");
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["data"]["code"], "METHOD_NOT_SUPPORTED");
    app.shutdown().await;
}
