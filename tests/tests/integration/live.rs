//! The cloud's volume snapshots, subnets and flavors are kept live like its volumes: a
//! mutation through Stalecast publishes the update with its id before it answers, and
//! `list`, `changes` and `page` show it; a change made at the cloud by another client is
//! polled and published; the cloud's refusals (a snapshot of a volume that is not
//! available, a volume with snapshots, an overlapping or invalid CIDR) reach the client
//! with their code and the cloud's own message.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use stalecast_tests::{SseClient, TestApp, spawn_app};

const WAIT: Duration = Duration::from_secs(10);

fn error_of(body: &Value) -> (&str, &str) {
    let code = body["error"]["data"]["code"].as_str().unwrap_or_else(|| panic!("not an error envelope: {body}"));
    (code, body["error"]["message"].as_str().unwrap_or_default())
}

/// Starts the app once the collections a mutation reads (projects, volumes, networks) are
/// stored.
async fn spawn_loaded() -> TestApp {
    let app = spawn_app().await;
    for list in ["projects.list", "storage.volumes.list", "networks.list", "storage.snapshots.list"] {
        let (status, body) = app.query(list, None).await;
        assert_eq!(status, 200, "{list}: {body}");
    }
    app
}

/// A stream of the updates of `types`, past its `connected` event.
async fn stream_of(app: &TestApp, types: &[&str]) -> SseClient {
    let input = json!({ "types": types }).to_string();
    let mut stream = app.stream(&format!("input={}", stalecast_tests::encode(&input)), None).await;
    stream.connected().await;
    stream
}

/// The next update on `stream`: its type and ids.
async fn next_update(stream: &mut SseClient) -> (String, Value) {
    let (_, data) = stream.next_data(WAIT).await;
    assert_eq!(data["kind"], "update", "{data}");
    (data["type"].as_str().expect("type").to_owned(), data["ids"].clone())
}

/// The next update on `stream` that names `id` (the poller may announce others first).
async fn update_naming(stream: &mut SseClient, kind: &str, id: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no {kind} update named {id}");
        let (got, ids) = next_update(stream).await;
        if got == kind && ids.as_array().is_some_and(|ids| ids.iter().any(|i| i == id)) {
            return;
        }
    }
}

async fn data(app: &TestApp, path: &str, input: Value) -> Value {
    let (status, body) = app.query(path, Some(input)).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["result"]["data"].clone()
}

fn ids(records: &Value) -> BTreeSet<String> {
    records.as_array().expect("records").iter().map(|r| r["id"].as_str().expect("id").to_owned()).collect()
}

/// The id of the last volume of `project` whose status is `status` (the simulator's
/// nightly snapshots are of the first ones).
async fn volume_with_status(app: &TestApp, project: &str, status: &str) -> String {
    let volumes = data(app, "storage.volumes.list", json!({ "projectId": project })).await;
    let found = volumes.as_array().expect("volumes").iter().rev().find(|v| v["status"] == status);
    found.unwrap_or_else(|| panic!("no {status} volume in {project}"))["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_snapshot_is_published_listed_changed_paged_and_blocks_its_volumes_delete() {
    let app = spawn_loaded().await;
    let mut stream = stream_of(&app, &["snapshots"]).await;
    let volume = volume_with_status(&app, "prj-data", "available").await;
    let before = data(&app, "storage.snapshots.page", json!({})).await["seq"].clone();

    let (status, body) =
        app.mutate("storage.snapshots.create", json!({"volumeId": volume, "name": "before-upgrade-7"})).await;
    assert_eq!(status, 200, "{body}");
    let snapshot = &body["result"]["data"];
    assert_eq!((&snapshot["volumeId"], &snapshot["projectId"]), (&json!(volume), &json!("prj-data")), "{snapshot}");
    assert_eq!(snapshot["status"], "creating");
    let id = snapshot["id"].as_str().expect("id").to_owned();
    assert_eq!(next_update(&mut stream).await, ("snapshots".into(), json!([id])), "published before the answer");

    assert!(ids(&data(&app, "storage.snapshots.list", json!({"projectId": "prj-data"})).await).contains(&id));
    assert!(!ids(&data(&app, "storage.snapshots.list", json!({"projectId": "prj-web"})).await).contains(&id));
    let changes = data(&app, "storage.snapshots.changes", json!({ "since": before })).await;
    assert_eq!((&changes["kind"], ids(&changes["upserts"])), (&json!("changes"), BTreeSet::from([id.clone()])));
    let page = data(&app, "storage.snapshots.page", json!({"search": "BEFORE-upgrade-7", "sort": "-createdAt"})).await;
    assert_eq!((ids(&page["items"]), &page["total"]), (BTreeSet::from([id.clone()]), &json!(1)), "{page}");

    // The cloud finishes it: the poller announces the same id again.
    update_naming(&mut stream, "snapshots", &id).await;
    let got = data(&app, "storage.snapshots.get", json!({ "id": id })).await;
    assert_eq!(got["status"], "available");
    let available = data(&app, "storage.snapshots.page", json!({"status": "AVAILABLE", "limit": 500})).await;
    assert!(ids(&available["items"]).contains(&id));

    // Cinder keeps a volume that has snapshots.
    let (status, body) = app.mutate("storage.volumes.delete", json!({ "id": volume })).await;
    let (code, message) = error_of(&body);
    assert_eq!((status.as_u16(), code), (409, "CONFLICT"), "{body}");
    assert!(message.contains("have snapshots"), "Cinder's own message: {message}");

    let seq = data(&app, "storage.snapshots.page", json!({})).await["seq"].clone();
    let (status, body) = app.mutate("storage.snapshots.delete", json!({ "id": id })).await;
    assert_eq!((status.as_u16(), &body["result"]["data"]), (200, &json!({ "id": id })));
    assert_eq!(next_update(&mut stream).await, ("snapshots".into(), json!([id])));
    let (status, _) = app.query("storage.snapshots.get", Some(json!({ "id": id }))).await;
    assert_eq!(status, 404, "removed from the store before the answer");
    let changes = data(&app, "storage.snapshots.changes", json!({ "since": seq })).await;
    assert_eq!(changes["deletes"], json!([id]));
    let (status, body) = app.mutate("storage.volumes.delete", json!({ "id": volume })).await;
    assert_eq!(status, 200, "without its snapshot the volume goes: {body}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_snapshot_of_a_volume_cinder_would_not_snapshot_is_refused_with_its_message() {
    let app = spawn_loaded().await;
    // Just created: Cinder has not scheduled it yet.
    let creating = app.create_volume("fresh").await;
    let (status, body) =
        app.mutate("storage.snapshots.create", json!({"volumeId": creating, "name": "too-early"})).await;
    let (code, message) = error_of(&body);
    assert_eq!((status.as_u16(), code), (400, "BAD_REQUEST"), "{body}");
    assert!(message.contains("Invalid volume") && message.contains("not been scheduled"), "Cinder's words: {message}");

    // In use (the admin project's are attached): only with force.
    let in_use = volume_with_status(&app, "prj-admin", "in-use").await;
    let (status, body) = app.mutate("storage.snapshots.create", json!({"volumeId": in_use, "name": "hot"})).await;
    let (code, message) = error_of(&body);
    assert_eq!((status.as_u16(), code), (400, "BAD_REQUEST"), "{body}");
    let expected = format!("Volume {in_use} status must be available, but current status is: in-use.");
    assert!(message.contains(&expected), "{message}");
    let (status, body) =
        app.mutate("storage.snapshots.create", json!({"volumeId": in_use, "name": "hot", "force": true})).await;
    assert_eq!(status, 200, "forced: {body}");

    // Nothing reaches the cloud for a volume Stalecast does not know, or a bad name.
    let (status, body) = app.mutate("storage.snapshots.create", json!({"volumeId": "vol-none", "name": "x"})).await;
    assert_eq!((status.as_u16(), error_of(&body).0), (400, "BAD_REQUEST"));
    assert!(error_of(&body).1.starts_with("input.volumeId:"), "{body}");
    let (status, body) = app.mutate("storage.snapshots.create", json!({"volumeId": in_use, "name": " "})).await;
    assert_eq!(
        (status.as_u16(), error_of(&body).1),
        (400, "input.name: must not be blank or contain control characters")
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_subnet_is_published_with_its_network_and_refused_when_its_range_overlaps() {
    let app = spawn_loaded().await;
    let mut stream = stream_of(&app, &["subnets", "networks"]).await;
    let before = data(&app, "networks.subnets.page", json!({})).await["seq"].clone();

    let input = json!({"networkId": "net-web-team", "cidr": "10.1.5.0/24", "name": "web-v4-5"});
    let (status, body) = app.mutate("networks.subnets.create", input).await;
    assert_eq!(status, 200, "{body}");
    let subnet = &body["result"]["data"];
    assert_eq!((&subnet["projectId"], &subnet["ipVersion"]), (&json!("prj-web"), &json!(4)), "{subnet}");
    assert_eq!(subnet["gatewayIp"], "10.1.5.1");
    let id = subnet["id"].as_str().expect("id").to_owned();
    // Both are out before the answer: the subnet, and its network (whose list grew).
    let mut heard = vec![next_update(&mut stream).await, next_update(&mut stream).await];
    heard.sort_by_key(|(kind, _)| kind.clone());
    assert_eq!(heard, [("networks".into(), json!(["net-web-team"])), ("subnets".into(), json!([id]))]);
    let network = data(&app, "networks.list", json!({"projectId": "prj-web"})).await;
    let listed = network.as_array().expect("networks").iter().find(|n| n["id"] == "net-web-team").expect("network");
    assert!(listed["subnets"].as_array().expect("subnets").contains(&json!(id)), "{listed}");

    assert!(ids(&data(&app, "networks.subnets.list", json!({"projectId": "prj-web"})).await).contains(&id));
    let changes = data(&app, "networks.subnets.changes", json!({ "since": before })).await;
    assert_eq!(ids(&changes["upserts"]), BTreeSet::from([id.clone()]));
    let page = data(&app, "networks.subnets.page", json!({"search": "web-v4", "status": "ipv4", "sort": "cidr"})).await;
    assert!(ids(&page["items"]).contains(&id), "{page}");
    assert_eq!(data(&app, "networks.subnets.get", json!({ "id": id })).await["cidr"], "10.1.5.0/24");

    // Neutron's refusals, in its words.
    let overlap = json!({"networkId": "net-web-team", "cidr": "10.1.5.128/25"});
    let (status, body) = app.mutate("networks.subnets.create", overlap).await;
    let (code, message) = error_of(&body);
    assert_eq!((status.as_u16(), code), (400, "BAD_REQUEST"), "{body}");
    assert!(message.contains("overlaps with another subnet"), "{message}");
    let invalid = json!({"networkId": "net-web-team", "cidr": "10.1.6.0/33"});
    let (status, body) = app.mutate("networks.subnets.create", invalid).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).1.contains("'10.1.6.0/33' is not a valid IP subnet"), "{body}");
    // The same range in another network is fine.
    let elsewhere = json!({"networkId": "net-data-team", "cidr": "10.1.5.0/24"});
    let (status, body) = app.mutate("networks.subnets.create", elsewhere).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        app.mutate("networks.subnets.create", json!({"networkId": "net-nope", "cidr": "10.9.0.0/24"})).await;
    assert_eq!(status, 400);
    assert!(error_of(&body).1.starts_with("input.networkId:"), "{body}");
    let (status, body) = app
        .mutate("networks.subnets.create", json!({"networkId": "net-web-team", "cidr": "fd00::/64", "ipVersion": 5}))
        .await;
    assert_eq!((status.as_u16(), error_of(&body).1), (400, "input.ipVersion: must be 4 or 6"));

    let (status, body) = app.mutate("networks.subnets.delete", json!({ "id": id })).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.query("networks.subnets.get", Some(json!({ "id": id }))).await;
    assert_eq!(status, 404);
    update_naming(&mut stream, "networks", "net-web-team").await;
    let network = data(&app, "networks.list", json!({"projectId": "prj-web"})).await;
    let listed = network.as_array().expect("networks").iter().find(|n| n["id"] == "net-web-team").expect("network");
    assert!(!listed["subnets"].as_array().expect("subnets").contains(&json!(id)), "{listed}");
    app.shutdown().await;
}

#[tokio::test]
async fn flavors_are_the_clouds_public_ones_listed_paged_and_got() {
    let app = spawn_loaded().await;
    let flavors = data(&app, "compute.flavors.list", json!({})).await;
    let names: BTreeSet<&str> =
        flavors.as_array().expect("flavors").iter().filter_map(|f| f["name"].as_str()).collect();
    assert!(names.contains("m1.small") && names.contains("g1.gpu-a100") && names.len() >= 10, "{names:?}");
    let small = data(&app, "compute.flavors.get", json!({"id": "2"})).await;
    assert_eq!(
        (&small["name"], &small["vcpus"], &small["ramMb"], &small["diskGb"]),
        (&json!("m1.small"), &json!(1), &json!(2048), &json!(20))
    );
    let page = data(&app, "compute.flavors.page", json!({"sort": "-ramMb", "limit": 2})).await;
    assert_eq!(page["items"][0]["name"], "g1.gpu-a100", "{page}");
    assert!(page["nextCursor"].is_string());
    let enabled = data(&app, "compute.flavors.page", json!({"status": "enabled", "search": "m1."})).await;
    assert_eq!(enabled["total"], 4, "{enabled}");
    let changes = data(&app, "compute.flavors.changes", json!({"since": page["seq"]})).await;
    assert_eq!((&changes["kind"], &changes["upserts"]), (&json!("changes"), &json!([])));
    // A server is created by a flavor's name, resolved against the same flavors.
    let (status, body) = app
        .mutate(
            "compute.servers.create",
            json!({"projectId": "prj-web", "name": "sized", "flavor": "r1.large", "imageId": "img-cirros"}),
        )
        .await;
    assert_eq!((status.as_u16(), &body["result"]["data"]["flavor"]), (200, &json!("r1.large")), "{body}");
    app.shutdown().await;
}

#[tokio::test]
async fn snapshots_and_subnets_made_at_the_cloud_by_another_client_are_polled_and_published() {
    let app = spawn_loaded().await;
    let mut stream = stream_of(&app, &["snapshots", "subnets"]).await;
    let volume = volume_with_status(&app, "prj-web", "available").await;
    let snapshot = app.create_snapshot_out_of_band("prj-web", &volume, "made-elsewhere").await;
    update_naming(&mut stream, "snapshots", &snapshot).await;
    let got = data(&app, "storage.snapshots.get", json!({ "id": snapshot })).await;
    assert_eq!((&got["name"], &got["projectId"]), (&json!("made-elsewhere"), &json!("prj-web")));

    let subnet = app.create_subnet_out_of_band("prj-data", "net-data-team", "10.2.200.0/24").await;
    update_naming(&mut stream, "subnets", &subnet).await;
    assert_eq!(data(&app, "networks.subnets.get", json!({ "id": subnet })).await["networkId"], "net-data-team");
    app.shutdown().await;
}
