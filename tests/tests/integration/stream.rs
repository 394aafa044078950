//! `updates.onUpdate`: delivery, resume, resync, filters, slow subscribers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use stalecast_tests::raw::RawConnection;
use stalecast_tests::{TestApp, encode, spawn_app, spawn_app_with, types_query};

const WAIT: Duration = Duration::from_secs(10);

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_reaches_an_open_stream_within_seconds_published_before_it_answered() {
    let app = spawn_app().await;
    let mut stream = app.stream("", None).await;
    stream.connected().await;
    let sent = now_micros();
    let id = app.create_volume("fast").await;
    let answered = now_micros();
    let (event_id, data) = stream.next_data(Duration::from_secs(5)).await;
    assert_eq!(data["kind"], "update");
    assert_eq!(data["type"], "volumes");
    assert_eq!(data["ids"], json!([id]));
    assert_eq!(event_id, data["seq"].to_string());
    // Published while the mutation ran, before it answered.
    let ts = data["ts"].as_u64().expect("ts");
    assert!(sent <= ts && ts <= answered, "published at {ts}, sent at {sent}, answered at {answered}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_keeps_idle_streams_alive() {
    let app = spawn_app_with(|c| c.ping_interval = Duration::from_millis(200)).await;
    let mut stream = app.stream("", None).await;
    let connected = stream.connected().await;
    assert_eq!(connected["reconnectAfterInactivityMs"], 600);
    for _ in 0..2 {
        let ping = stream.next_event(WAIT).await;
        assert_eq!(ping.event, "ping");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_filter_passes_only_the_chosen_types() {
    let app = spawn_app().await;
    let mut servers_only = app.stream(&types_query(&["servers"]), None).await;
    servers_only.connected().await;
    app.create_volume("ignored").await;
    let (status, body) = app
        .mutate("compute.servers.create", json!({"projectId": "prj-data", "name": "seen", "imageId": "img-cirros"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, data) = servers_only.next_data(WAIT).await;
    assert_eq!(data["type"], "servers", "the volume update must have been filtered out");
    assert_eq!(data["ids"], json!([body["result"]["data"]["id"]]));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_filter_applies_to_the_replay_when_resuming() {
    let app = spawn_app().await;
    let seen = app.publish("images", None);
    let mut wanted = Vec::new();
    for (kind, id) in
        [("volumes", "vol-a"), ("servers", "srv-a"), ("volumes", "vol-b"), ("networks", "net-a"), ("servers", "srv-b")]
    {
        let seq = app.publish(kind, Some(vec![id.to_owned()]));
        if kind != "volumes" {
            wanted.push((seq, id));
        }
    }
    let mut stream = app.stream(&types_query(&["servers", "networks"]), Some(&seen.to_string())).await;
    stream.connected().await;
    for (seq, id) in wanted {
        let (event_id, data) = stream.next_data(WAIT).await;
        assert_eq!(data["ids"], json!([id]), "the replay holds only the chosen types, in order: {data}");
        assert_eq!(event_id, seq.to_string());
    }
    // Then live, filtered the same way.
    app.publish("volumes", Some(vec!["vol-live".into()]));
    let live = app.publish("networks", Some(vec!["net-live".into()]));
    let (event_id, data) = stream.next_data(WAIT).await;
    assert_eq!(data["ids"], json!(["net-live"]), "{data}");
    assert_eq!(event_id, live.to_string());
    stream.assert_no_data(Duration::from_millis(500)).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_stream_resuming_from_beyond_the_ring_gets_the_gap_resync() {
    let app = spawn_app_with(|c| c.ring_size = 4).await;
    let old = app.publish("servers", Some(vec!["srv-old".into()]));
    let mut last = old;
    for _ in 0..10 {
        last = app.publish("volumes", None);
    }
    // None of the updates it missed is of its type, yet it cannot know: it must refetch.
    let mut stream = app.stream(&types_query(&["servers"]), Some(&old.to_string())).await;
    stream.connected().await;
    let (id, data) = stream.next_data(WAIT).await;
    assert_eq!((data["kind"].as_str(), data["reason"].as_str()), (Some("resync"), Some("gap")), "{data}");
    assert_eq!(id, last.to_string());
    app.publish("volumes", None);
    let next = app.publish("servers", Some(vec!["srv-new".into()]));
    let (id, data) = stream.next_data(WAIT).await;
    assert_eq!(data["ids"], json!(["srv-new"]), "{data}");
    assert_eq!(id, next.to_string());
    app.shutdown().await;
}

/// Publishes an image update with `id` (images never change by themselves, so nothing
/// else interleaves); answers its seq.
fn publish_image(app: &TestApp, id: &str) -> u64 {
    app.publish("images", Some(vec![id.to_owned()]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_last_event_id_gives_exactly_the_missed_updates() {
    let app = spawn_app().await;
    // The last update a client saw, as its stream delivered it.
    let mut first = app.stream("", None).await;
    first.connected().await;
    publish_image(&app, "img-seen");
    let (id, _) = first.next_data(WAIT).await;
    let last: u64 = id.parse().expect("numeric id");
    drop(first);
    let missed: Vec<String> = (0..3).map(|i| format!("img-missed-{i}")).collect();
    for id in &missed {
        publish_image(&app, id);
    }
    let mut stream = app.stream("", Some(&last.to_string())).await;
    stream.connected().await;
    let mut seqs = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, data) = stream.next_data(WAIT).await;
        assert_eq!(data["kind"], "update", "{data}");
        seqs.push(data["seq"].as_u64().expect("seq"));
        ids.push(data["ids"][0].as_str().expect("id").to_owned());
    }
    assert_eq!(seqs, vec![last + 1, last + 2, last + 3]);
    assert_eq!(ids, missed);
    // Then live, with no duplicate of the replay.
    let live = app.create_volume("live").await;
    let (_, data) = stream.next_data(WAIT).await;
    assert_eq!(data["seq"].as_u64(), Some(last + 4));
    assert_eq!(data["ids"], json!([live]));
    // Nothing else (the new volume's next change comes seconds later, when it is ready).
    stream.assert_no_data(Duration::from_millis(500)).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resume_source_is_honoured_and_the_header_wins() {
    let app = spawn_app().await;
    let first = app.publish("images", None);
    for _ in 0..4 {
        app.publish("images", None);
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
        let (_, data) = stream.next_data(WAIT).await;
        assert_eq!(data["seq"].as_u64(), Some(expected_first), "{query} / {header:?}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_older_than_the_ring_gives_resync_then_live_updates() {
    let app = spawn_app_with(|c| c.ring_size = 4).await;
    let old = app.publish("networks", None);
    for _ in 0..10 {
        app.publish("networks", None);
    }
    let mut stream = app.stream("", Some(&old.to_string())).await;
    stream.connected().await;
    let (id, data) = stream.next_data(WAIT).await;
    assert_eq!(data["kind"], "resync");
    assert_eq!(data["reason"], "gap");
    assert_eq!(id, (old + 10).to_string(), "a resync carries the id to resume from");
    let next = app.publish("networks", None);
    let (_, data) = stream.next_data(WAIT).await;
    assert_eq!(data["seq"].as_u64(), Some(next));

    // An id that is not a number, longer than any seq, or from a later process, is
    // treated the same way.
    let long = "9".repeat(2000);
    for bad in ["not-a-number", &long, &(next + 1000).to_string()] {
        let mut stream = app.stream("", Some(bad)).await;
        stream.connected().await;
        let (_, data) = stream.next_data(WAIT).await;
        assert_eq!(data["reason"], "gap", "{bad}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_gets_resync_while_another_receives_everything() {
    const TOTAL: u64 = 10_000;
    const STEP: u64 = 100;
    let app = spawn_app_with(|c| c.channel_capacity = 256).await;

    // The stalled subscriber: a connection with a tiny receive buffer that reads nothing
    // until everything is published.
    let stalled = RawConnection::connect_with_small_buffer(app.addr(), 4096).await.as_client(&app);
    let mut stalled = stalled.open_stream("", &[]).await;

    // The healthy subscriber reports its progress.
    let mut healthy = app.stream("", None).await;
    healthy.connected().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.subscriber_count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the stalled stream never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for _ in 0..TOTAL {
            let (_, data) = healthy.next_data(WAIT).await;
            assert_eq!(data["kind"], "update", "the healthy subscriber must never need a resync");
            seqs.push(data["seq"].as_u64().expect("seq"));
            let _ = progress_tx.send(seqs.len() as u64);
        }
        seqs
    });

    // Big updates (64 ids each), paced so that the healthy reader keeps up.
    let ids: Vec<String> = (0..64).map(|i| format!("vol-padding-{i:08}")).collect();
    let mut first = None;
    for sent in (0..TOTAL).step_by(STEP as usize) {
        for _ in 0..STEP {
            let seq = app.publish("volumes", Some(ids.clone()));
            first.get_or_insert(seq);
        }
        let target = sent + STEP;
        tokio::time::timeout(WAIT, progress.wait_for(|n| *n >= target)).await.expect("reader keeps up").expect("watch");
    }
    let seqs = reader.await.expect("reader");
    let first = first.expect("published");
    assert_eq!(seqs, (first..first + TOTAL).collect::<Vec<_>>(), "everything, in order, once");

    assert_lagged_resync_and_no_silent_gap(&app, &mut stalled, first, first + TOTAL - 1).await;
    app.shutdown().await;
}

/// Reads a stream that stopped reading while `first..=last` were published: every
/// update arrives in order with nothing skipped, except where a `lagged` resync (its id
/// its seq) says that all up to its seq must be refetched; there is at least one; and
/// once another update is published, it arrives.
pub(crate) async fn assert_lagged_resync_and_no_silent_gap(
    app: &TestApp,
    stream: &mut stalecast_tests::SseClient,
    first: u64,
    last: u64,
) {
    let mut expected = first;
    let mut resyncs = 0;
    // What arrived, as offsets from `first` (`R` for a resync), for the failure messages.
    let mut seen = Vec::new();
    while expected <= last {
        let (id, data) = stream.next_data(WAIT).await;
        let seq = data["seq"].as_u64().expect("seq");
        assert_eq!(id, seq.to_string(), "{data}");
        seen.push(format!("{}{}", if data["kind"] == "resync" { "R" } else { "" }, seq - first));
        if data["kind"] == "resync" {
            assert_eq!(data["reason"], "lagged", "{data}");
            // Its seq is past what was delivered: it covers what was not.
            assert!(seq >= expected && seq <= last, "a resync covers what was not delivered: {seen:?}");
            resyncs += 1;
        } else {
            assert_eq!(seq, expected, "an update was skipped without a resync: {data}");
        }
        expected = seq + 1;
    }
    assert!(resyncs > 0, "all {} updates arrived: the reader never fell behind", last - first + 1);
    let marker = app.publish("volumes", Some(vec!["vol-after-resync".into()]));
    let (id, data) = stream.next_data(WAIT).await;
    let tail = &seen[seen.len().saturating_sub(20)..];
    assert_eq!((data["kind"].as_str(), id), (Some("update"), marker.to_string()), "{data} after {tail:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
