//! Realistic data at scale: `POST /_sim/seed` (and `--sim-seed`) grows the simulator's
//! cloud with records that read like a real cloud's, Stalecast serves them, and a
//! 36,000-volume listing weighs and compresses like a real Cinder listing — not like the
//! one repeated character a padding knob once made (a hundredfold in brotli).

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast_tests::child::ChildServer;
use stalecast_tests::{spawn_app, spawn_app_with};

/// A version 4 UUID in its hyphenated form, as OpenStack's ids are.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
        && b[14] == b'4'
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_six_thousand_seeded_volumes_weigh_and_compress_like_a_real_cinder_listing() {
    // The poller reads the whole cloud each round, some 45 MB of upstream JSON: a second
    // between rounds, and time for the unoptimised test build to read it.
    let app = spawn_app_with(|c| {
        c.poll_interval = Duration::from_secs(1);
        c.upstream_timeout = Duration::from_secs(60);
    })
    .await;
    let started = Instant::now();
    let (status, totals) =
        app.seed(json!({"volumes": 36_000, "servers": 2_000, "images": 200, "networks": 300, "seed": 7})).await;
    let seeded = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{totals}");
    // Each new network comes with one to three subnets.
    let subnets = totals["subnets"].as_u64().unwrap_or_default();
    assert!((4 + 300..=4 + 900).contains(&subnets), "{totals}");
    assert_eq!(
        totals,
        json!({"volumes": 36_036, "servers": 2_024, "images": 205, "networks": 304, "snapshots": 4, "subnets": subnets})
    );
    app.wait_for_volumes(36_036, Duration::from_secs(120)).await;
    let served = started.elapsed();

    let url = app.url("/trpc/storage.volumes.list");
    let plain = app.http.get(&url).header("accept-encoding", "identity").send().await.expect("plain");
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.expect("body");
    let br = app.http.get(&url).header("accept-encoding", "br").send().await.expect("br");
    assert_eq!(br.headers()["content-encoding"], "br");
    let br = br.bytes().await.expect("body");
    let mut unbrotlied = Vec::new();
    brotli::BrotliDecompress(&mut &br[..], &mut unbrotlied).expect("unbrotli");
    assert_eq!(unbrotlied, plain, "the same list in both codings");
    let gzip = app.http.get(&url).header("accept-encoding", "gzip").send().await.expect("gzip");
    let gzip = gzip.bytes().await.expect("body");
    let mut gunzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzip[..]).read_to_end(&mut gunzipped).expect("gunzip");
    assert_eq!(gunzipped, plain);

    let body: Value = serde_json::from_slice(&plain).expect("json");
    let volumes = body["result"]["data"].as_array().expect("list");
    assert!(volumes.len() >= 36_000, "{} volumes", volumes.len());
    let seeded_volumes: Vec<&Value> = volumes.iter().filter(|v| v["id"].as_str().is_some_and(is_uuid)).collect();
    assert_eq!(seeded_volumes.len(), 36_000, "every seeded volume has a UUID id");
    let names: std::collections::HashSet<&str> = seeded_volumes.iter().filter_map(|v| v["name"].as_str()).collect();
    assert!(names.len() * 10 >= seeded_volumes.len() * 9, "{} distinct names of {}", names.len(), seeded_volumes.len());
    let attached = seeded_volumes.iter().filter(|v| v["attachedTo"].as_str().is_some_and(is_uuid)).count();
    assert!(attached > 10_000, "{attached} volumes attached to seeded servers");
    let with_metadata =
        seeded_volumes.iter().filter(|v| v["metadata"].as_object().is_some_and(|m| !m.is_empty())).count();
    assert!(with_metadata > 18_000, "{with_metadata} volumes with metadata");
    assert!(seeded_volumes.iter().all(|v| v["volumeType"].is_string() && v["updatedAt"].is_string()));
    assert!(
        seeded_volumes.iter().any(|v| v["bootable"] == true) && seeded_volumes.iter().any(|v| v["bootable"] == false)
    );

    let per_volume = plain.len() / volumes.len();
    let ratio = plain.len() as f64 / br.len() as f64;
    let gzip_ratio = plain.len() as f64 / gzip.len() as f64;
    eprintln!(
        "storage.volumes.list: {} volumes, {} bytes JSON ({per_volume} per volume), {} bytes br (ratio {ratio:.2}), \
         {} bytes gzip (ratio {gzip_ratio:.2}); seeding took {seeded:?}, served after {served:?}",
        volumes.len(),
        plain.len(),
        br.len(),
        gzip.len(),
    );
    assert!((250..=1200).contains(&per_volume), "{per_volume} bytes per volume");
    assert!((4.0..=15.0).contains(&ratio), "brotli ratio {ratio:.2}: real listing JSON compresses some 5-10x");
    app.shutdown().await;
}

#[tokio::test]
async fn seeding_refuses_counts_over_the_cap_and_unknown_fields_naming_them() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"volumes": 10_000_000}), "volumes"),
        (json!({"servers": 200_001}), "servers"),
        (json!({"bogus": 1}), "bogus"),
        (json!({"images": "many"}), "images"),
        (json!({"networks": -1}), "networks"),
    ] {
        let (status, answer) = app.seed(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
    }
    // Nothing was added; an empty body adds nothing and answers the totals.
    let (status, totals) = app.seed(json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(totals, json!({"volumes": 36, "servers": 24, "images": 5, "networks": 4, "snapshots": 4, "subnets": 4}));
    app.shutdown().await;
}

/// The total a `page` query answers once it has at least `want` records (the poller reads
/// them on a following round).
async fn page_total(app: &stalecast_tests::TestApp, path: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = app.query(path, Some(json!({"limit": 1}))).await;
        let total = body["result"]["data"]["total"].as_u64().unwrap_or_default();
        if status == StatusCode::OK && total >= want {
            return total;
        }
        assert!(Instant::now() < deadline, "{path}: {total} records, not {want}: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_subnets_seed_at_scale_and_are_served() {
    let app = spawn_app_with(|c| c.upstream_timeout = Duration::from_secs(30)).await;
    let started = Instant::now();
    let (status, totals) =
        app.seed(json!({"volumes": 2_000, "networks": 100, "snapshots": 10_000, "subnets": 2_000})).await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    assert_eq!(totals["snapshots"], 10_004, "{totals}");
    let subnets = totals["subnets"].as_u64().unwrap_or_default();
    assert!(subnets >= 4 + 100 + 2_000, "{totals}");
    assert_eq!(page_total(&app, "storage.snapshots.page", 10_004).await, 10_004);
    assert_eq!(page_total(&app, "networks.subnets.page", subnets).await, subnets);
    let served = started.elapsed();

    let (_, body) = app.query("storage.snapshots.list", None).await;
    let snapshots = body["result"]["data"].as_array().expect("snapshots");
    let seeded: Vec<&Value> = snapshots.iter().filter(|s| s["id"].as_str().is_some_and(is_uuid)).collect();
    assert_eq!(seeded.len(), 10_000);
    let names: std::collections::HashSet<&str> = seeded.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(names.len() * 10 >= seeded.len() * 9, "{} distinct names of {}", names.len(), seeded.len());
    let statuses: std::collections::HashSet<&str> = seeded.iter().filter_map(|s| s["status"].as_str()).collect();
    assert!(statuses.len() >= 4 && statuses.contains("available"), "{statuses:?}");
    let per_snapshot = body.to_string().len() / snapshots.len();
    let (_, body) = app.query("networks.subnets.list", None).await;
    let listed = body["result"]["data"].as_array().expect("subnets");
    let v6 = listed.iter().filter(|s| s["ipVersion"] == 6).count();
    assert!(v6 > 0 && v6 < listed.len() / 2, "{v6} IPv6 subnets of {}", listed.len());
    eprintln!(
        "seeded {} snapshots ({per_snapshot} bytes each in storage.snapshots.list) and {} subnets ({v6} IPv6), served after {served:?}",
        snapshots.len(),
        listed.len()
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_sim_seed_at_start_from_a_flag_or_its_environment_variable() {
    let server = ChildServer::start(&["serve", "--port", "0", "--sim-seed", "volumes=500,servers=20,seed=3"], &[])
        .await
        .signed_in()
        .await;
    let (status, totals) = server.client.seed(json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        totals,
        json!({"volumes": 536, "servers": 44, "images": 5, "networks": 4, "snapshots": 4, "subnets": 4})
    );
    server.client.wait_for_volumes(536, Duration::from_secs(30)).await;

    let seed = "images=7,networks=9,snapshots=40,subnets=11";
    let sim = ChildServer::start(&["sim", "--port", "0"], &[("STALECAST_SIM_SEED", seed)]).await;
    let base = sim.client.base.clone();
    let sim = sim.with_sim_url(&base);
    let (_, totals) = sim.client.seed(json!({})).await;
    let subnets = totals["subnets"].as_u64().unwrap_or_default();
    assert!((4 + 9 + 11..=4 + 27 + 11).contains(&subnets), "{totals}");
    assert_eq!(
        totals,
        json!({"volumes": 36, "servers": 24, "images": 12, "networks": 13, "snapshots": 44, "subnets": subnets})
    );

    let (status, text) = stalecast_tests::child::run(&["sim", "--port", "0", "--seed", "volumes=300000"], &[]).await;
    assert!(!status.success());
    assert!(text.contains("volumes must be at most 200000"), "{text}");
}
