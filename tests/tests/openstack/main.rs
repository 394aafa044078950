//! Stalecast against the real Keystone, Glance and Cinder API (the PyPI packages, with
//! sqlite, on loopback), with Stalecast's simulator as Nova and Neutron beside them; and
//! the stock `openstack` CLI against `stalecast sim`.
//!
//! `make test-openstack` builds the virtualenv, starts the cloud
//! (`tests/openstack/cloud.py`) and runs these tests with `STALECAST_OPENSTACK` naming
//! its `cloud.json` and `STALECAST_OPENSTACK_VENV` the virtualenv; it stops the cloud
//! afterwards. Without those variables every test fails, saying how to run it.
//!
//! The cloud: projects `admin`, `web-team`, `data-team`, `small-team` (a 1 GB volume
//! quota), `service`, and `unassigned` (where nobody has a role); users `admin` (admin everywhere), `alice` (member of web-team),
//! `bob` (reader of data-team), `carol` (member of web-team and data-team); 32 images
//! (Glance pages 25 at a time), 3 volumes in `admin` (Cinder pages 2 at a time), Glance
//! also registered in a `RegionTwo` whose endpoint leads nowhere, and a short token
//! lifetime.

mod cli;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use stalecast_tests::{Client, Next, TestApp, os_environment, spawn_app_signed_in_as};

/// How often the servers under test poll the real services. Each service runs one
/// gunicorn worker: eight collections polled every 200 ms (the harness's default) by the
/// two servers nextest runs at once kept Cinder busy enough, on a loaded machine, that a
/// volume create waited out its 20 s timeout.
const REAL_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What `cloud.py start` wrote.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cloud {
    keystone: String,
    cinder: String,
    sim: String,
    images: usize,
    volumes: usize,
    token_lifetime_seconds: u64,
    projects: BTreeMap<String, String>,
    users: BTreeMap<String, String>,
    passwords: BTreeMap<String, String>,
}

fn cloud() -> Cloud {
    let Some(path) = std::env::var_os("STALECAST_OPENSTACK") else {
        panic!("STALECAST_OPENSTACK is not set: run these tests with `make test-openstack`, which starts the cloud");
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

impl Cloud {
    fn project(&self, name: &str) -> &str {
        self.projects.get(name).unwrap_or_else(|| panic!("no project {name}"))
    }

    /// Stalecast logging in as `user` (to `project`), with these `OS_*` variables, as a
    /// user who sourced an openrc file would start it; its client signed in as `user`.
    async fn stalecast_as(&self, user: &str, project: &str, extra: &[(&str, &str)]) -> TestApp {
        self.stalecast_tuned(user, project, extra, |_| {}).await
    }

    /// [`Cloud::stalecast_as`], with `tune` applied to its configuration last.
    async fn stalecast_tuned(
        &self,
        user: &str,
        project: &str,
        extra: &[(&str, &str)],
        tune: impl FnOnce(&mut stalecast::config::ServeConfig),
    ) -> TestApp {
        let auth_url = format!("{}/v3", self.keystone);
        let password = self.passwords.get(user).cloned().unwrap_or_default();
        let mut vars: Vec<(&str, &str)> = vec![
            ("OS_AUTH_URL", &auth_url),
            ("OS_USERNAME", user),
            ("OS_PASSWORD", &password),
            ("OS_PROJECT_NAME", project),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ("OS_REGION_NAME", "RegionOne"),
        ];
        vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        vars.extend(extra.iter().copied());
        let environment = os_environment(&vars, None);
        let adjust = move |c: &mut stalecast::config::ServeConfig| {
            c.os_environment = environment;
            c.upstream_timeout = Duration::from_secs(20);
            c.max_staleness = Duration::from_secs(30);
            c.poll_interval = REAL_POLL_INTERVAL;
            tune(c);
        };
        spawn_app_signed_in_as(adjust, user, &password).await
    }

    /// A token of `user`'s scoped to `project` (by name), straight from Keystone.
    async fn token(&self, user: &str, project: &str) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": self.passwords[user]}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
        let response = reqwest::Client::new()
            .post(format!("{}/v3/auth/tokens", self.keystone))
            .json(&body)
            .send()
            .await
            .expect("keystone");
        assert_eq!(response.status(), StatusCode::CREATED);
        response.headers()["x-subject-token"].to_str().expect("token").to_owned()
    }
}

/// The data of a query's answer; panics on anything but a 200.
async fn data(app: &Client, path: &str, input: Option<Value>) -> Value {
    let (status, body) = app.query(path, input).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body["result"]["data"].clone()
}

/// Polls `path` until `accept` says yes (at most 60 s); answers the last data.
async fn eventually(app: &Client, path: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = app.query(path, None).await;
        let found = body["result"]["data"].clone();
        if status == StatusCode::OK && accept(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "{path} never became what was expected: {status} {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().expect("a list").iter().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_image_of_an_unversioned_glance_is_listed_page_after_page() {
    let cloud = cloud();
    // Keystone's root as the auth URL: its version document says where v3 is.
    let root = cloud.keystone.clone();
    let app = cloud.stalecast_as("admin", "admin", &[("OS_AUTH_URL", &root)]).await;
    let images = eventually(&app, "images.list", |i| i.as_array().is_some_and(|a| a.len() >= cloud.images)).await;
    let mut seeded: Vec<String> = names(&images).into_iter().filter(|n| n.starts_with("seed-image-")).collect();
    seeded.sort();
    let expected: Vec<String> = (1..=cloud.images).map(|n| format!("seed-image-{n:02}")).collect();
    assert_eq!(seeded, expected, "Glance registers http://host:9292 and pages 25 at a time: every image, once");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_volume_is_listed_past_cinders_page_of_two() {
    let cloud = cloud();
    let app = cloud.stalecast_as("admin", "admin", &[]).await;
    let volumes = eventually(&app, "storage.volumes.list", |v| {
        names(v).iter().filter(|n| n.starts_with("seed-volume-")).count() == cloud.volumes
    })
    .await;
    let admin = cloud.project("admin");
    for volume in volumes
        .as_array()
        .expect("list")
        .iter()
        .filter(|v| v["name"].as_str().is_some_and(|n| n.starts_with("seed-volume-")))
    {
        assert_eq!(volume["projectId"], admin, "{volume}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_list_from_cinder_and_a_snapshot_of_a_volume_it_never_scheduled_is_its_400() {
    let cloud = cloud();
    let app = cloud.stalecast_as("admin", "admin", &[]).await;
    // Cinder's snapshot listing, all projects' (none: nothing here makes one).
    let snapshots = data(&app, "storage.snapshots.list", None).await;
    assert_eq!(snapshots, json!([]), "{snapshots}");
    let page = data(&app, "storage.snapshots.page", Some(json!({"limit": 10}))).await;
    assert_eq!((&page["items"], &page["total"]), (&json!([]), &json!(0)), "{page}");
    // With `transport_url = fake://` no volume service ever takes a volume: it stays
    // `creating`, unscheduled, and Cinder refuses to snapshot it.
    let admin_project = cloud.project("admin");
    let (status, body) = app
        .mutate("storage.volumes.create", json!({"projectId": admin_project, "name": "to-snapshot", "sizeGb": 1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let volume = &body["result"]["data"];
    assert_eq!(volume["status"], "creating", "{volume}");
    let (status, body) =
        app.mutate("storage.snapshots.create", json!({"volumeId": volume["id"], "name": "too-early"})).await;
    assert_eq!((status, &body["error"]["data"]["code"]), (StatusCode::BAD_REQUEST, &json!("BAD_REQUEST")), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    eprintln!("Cinder refused the snapshot: {message}");
    assert!(message.starts_with("Invalid volume: "), "Cinder's own words: {message}");
    // Nothing was made.
    assert_eq!(data(&app, "storage.snapshots.list", None).await, json!([]));
    // Flavors and subnets come from the simulator's Nova and Neutron beside this cloud.
    let flavors = data(&app, "compute.flavors.list", None).await;
    assert!(names(&flavors).contains(&"m1.small".to_owned()), "{flavors}");
    data(&app, "networks.subnets.list", None).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_created_for_another_project_lands_in_that_project() {
    let cloud = cloud();
    let app = cloud.stalecast_as("admin", "admin", &[]).await;
    let web = cloud.project("web-team");
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": web, "name": "made-for-web", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let created = &body["result"]["data"];
    assert_eq!(created["projectId"], web, "Cinder put it in the project of the token: {created}");
    // A member of web-team sees it in her project.
    let alice = cloud.stalecast_as("alice", "web-team", &[]).await;
    let hers = eventually(&alice, "storage.volumes.list", |v| names(v).contains(&"made-for-web".to_owned())).await;
    let found = hers.as_array().expect("list").iter().find(|v| v["id"] == created["id"]).expect("listed").clone();
    assert_eq!(found["projectId"], web);
    alice.shutdown().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_her_projects_and_acts_only_where_she_has_a_role() {
    let cloud = cloud();
    let app = cloud.stalecast_as("alice", "web-team", &[]).await;
    // /v3/projects is for admins; she gets the projects she has a role on.
    let projects = data(&app, "projects.list", None).await;
    assert_eq!(names(&projects), vec!["web-team"], "{projects}");
    // all_tenants is for admins: her own project's servers and volumes.
    data(&app, "compute.servers.list", None).await;
    let volumes = data(&app, "storage.volumes.list", None).await;
    let web = cloud.project("web-team");
    assert!(volumes.as_array().expect("list").iter().all(|v| v["projectId"] == web), "{volumes}");
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": web, "name": "alices", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::OK, "her project: {body}");
    // Another project is not hers: Stalecast's own check says so before the cloud must.
    let data_team = cloud.project("data-team");
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": data_team, "name": "not-hers", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("input.projectId")), "{body}");
    app.shutdown().await;

    // Carol has roles on two projects: she sees both, and acts in each.
    let carol = cloud.stalecast_as("carol", "web-team", &[]).await;
    let mut theirs = names(&data(&carol, "projects.list", None).await);
    theirs.sort();
    assert_eq!(theirs, vec!["data-team", "web-team"]);
    let (status, body) =
        carol.mutate("storage.volumes.create", json!({"projectId": data_team, "name": "carols", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["data"]["projectId"], data_team);
    let listed = eventually(&carol, "storage.volumes.list", |v| names(v).contains(&"carols".to_owned())).await;
    assert!(listed.as_array().expect("list").iter().any(|v| v["projectId"] == web), "both projects are listed");
    carol.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_the_browser_with_their_code_and_the_clouds_message() {
    let cloud = cloud();
    // A reader may look, not change: 403 naming the project and the role, before the
    // cloud is asked.
    let bob = cloud.stalecast_as("bob", "data-team", &[]).await;
    let data_team = cloud.project("data-team");
    let (status, body) =
        bob.mutate("storage.volumes.create", json!({"projectId": data_team, "name": "readers", "sizeGb": 1})).await;
    assert_eq!((status, &body["error"]["data"]["code"]), (StatusCode::FORBIDDEN, &json!("FORBIDDEN")), "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| m.contains("data-team") && m.contains("reader")),
        "{body}"
    );
    bob.shutdown().await;

    // Over a quota: Cinder's 413 and its message.
    let admin = cloud.stalecast_as("admin", "admin", &[]).await;
    let small = cloud.project("small-team");
    let (status, body) =
        admin.mutate("storage.volumes.create", json!({"projectId": small, "name": "too-big", "sizeGb": 2})).await;
    assert_eq!((status, &body["error"]["data"]["code"]), (StatusCode::PAYLOAD_TOO_LARGE, &json!("PAYLOAD_TOO_LARGE")));
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("VolumeSizeExceedsAvailableQuota")), "{body}");
    // A project the user has no role on is not theirs: as one that does not exist.
    let unassigned = cloud.project("unassigned");
    let (status, body) =
        admin.mutate("storage.volumes.create", json!({"projectId": unassigned, "name": "nowhere", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("input.projectId")), "{body}");
    // What does not exist: 404.
    let (status, body) =
        admin.mutate("storage.volumes.delete", json!({"id": "00000000-0000-0000-0000-000000000000"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    admin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_region_and_interface_choose_the_endpoint() {
    let cloud = cloud();
    // Glance is registered in RegionTwo too, at an address where nothing listens.
    let two = cloud.stalecast_as("admin", "admin", &[("OS_REGION_NAME", "RegionTwo")]).await;
    let (status, body) = two.query("images.list", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "RegionTwo's Glance is unreachable: {body}");
    two.shutdown().await;
    let internal = cloud.stalecast_as("admin", "admin", &[("OS_INTERFACE", "internal")]).await;
    let images = eventually(&internal, "images.list", |i| i.as_array().is_some_and(|a| a.len() >= cloud.images)).await;
    assert!(names(&images).contains(&"seed-image-01".to_owned()));
    internal.shutdown().await;
    // No admin endpoints are registered: the catalog says so, naming the service.
    let admin = cloud.stalecast_as("admin", "admin", &[("OS_INTERFACE", "admin")]).await;
    let (status, body) = admin.query("images.list", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    admin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_credential_logs_in_to_its_project() {
    let cloud = cloud();
    let token = cloud.token("alice", "web-team").await;
    let name = format!("stalecast-{}", std::process::id());
    let response = reqwest::Client::new()
        .post(format!("{}/v3/users/{}/application_credentials", cloud.keystone, cloud.users["alice"]))
        .header("x-auth-token", &token)
        // Her assigned role, named: Keystone checks each role of a credential against the
        // user's assignments.
        .json(&json!({"application_credential": {"name": name, "roles": [{"name": "member"}]}}))
        .send()
        .await
        .expect("create an application credential");
    let status = response.status();
    let credential: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::CREATED, "{credential}");
    let id = credential["application_credential"]["id"].as_str().expect("id").to_owned();
    let secret = credential["application_credential"]["secret"].as_str().expect("secret").to_owned();
    let auth_url = format!("{}/v3", cloud.keystone);
    let environment = os_environment(
        &[
            ("OS_AUTH_URL", &auth_url),
            ("OS_AUTH_TYPE", "v3applicationcredential"),
            ("OS_APPLICATION_CREDENTIAL_ID", &id),
            ("OS_APPLICATION_CREDENTIAL_SECRET", &secret),
            ("OS_REGION_NAME", "RegionOne"),
        ],
        None,
    );
    // The service account is alice's credential; alice signs in with her password.
    let adjust = move |c: &mut stalecast::config::ServeConfig| {
        c.os_environment = environment;
        c.upstream_timeout = Duration::from_secs(20);
        c.poll_interval = REAL_POLL_INTERVAL;
    };
    let app = spawn_app_signed_in_as(adjust, "alice", &cloud.passwords["alice"]).await;
    assert_eq!(names(&data(&app, "projects.list", None).await), vec!["web-team"]);
    let web = cloud.project("web-team");
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": web, "name": "by-credential", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clouds_yaml_names_the_cloud() {
    let cloud = cloud();
    let dir = tempfile::tempdir().expect("dir");
    let yaml = format!(
        "clouds:\n  lab:\n    auth:\n      auth_url: {}/v3\n      username: admin\n      project_name: admin\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n    interface: public\n",
        cloud.keystone
    );
    std::fs::write(dir.path().join("clouds.yaml"), yaml).expect("clouds.yaml");
    std::fs::write(
        dir.path().join("secure.yaml"),
        format!("clouds:\n  lab:\n    auth:\n      password: {}\n", cloud.passwords["admin"]),
    )
    .expect("secure.yaml");
    let environment = os_environment(&[("OS_CLOUD", "lab")], Some(dir.path()));
    let adjust = move |c: &mut stalecast::config::ServeConfig| {
        c.os_environment = environment;
        c.upstream_timeout = Duration::from_secs(20);
        c.poll_interval = REAL_POLL_INTERVAL;
    };
    let app = spawn_app_signed_in_as(adjust, "admin", &cloud.passwords["admin"]).await;
    let projects = names(&data(&app, "projects.list", None).await);
    assert!(projects.contains(&"small-team".to_owned()), "{projects:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_and_neutron_simulated_beside_the_real_keystone_trust_its_tokens() {
    let cloud = cloud();
    let app = cloud.stalecast_as("admin", "admin", &[]).await;
    let web = cloud.project("web-team");
    let images = eventually(&app, "images.list", |i| i.as_array().is_some_and(|a| !a.is_empty())).await;
    let image = images[0]["id"].clone();
    let (status, body) = app
        .mutate(
            "compute.servers.create",
            json!({"projectId": web, "name": "beside-keystone", "flavor": "m1.small", "imageId": image}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["data"]["projectId"], web, "Nova creates in the token's project");
    assert_eq!(body["result"]["data"]["flavor"], "m1.small", "the flavor by name, sent by id");
    let (status, body) = app
        .mutate(
            "compute.servers.create",
            json!({"projectId": web, "name": "no-such-flavor", "flavor": "m9.huge", "imageId": image}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("input.flavor")), "{body}");
    data(&app, "networks.list", None).await;
    // A token the real Keystone never issued is refused.
    let refused = reqwest::Client::new()
        .get(format!("{}/compute/v2.1/servers", cloud.sim))
        .header("x-auth-token", "not-a-token")
        .send()
        .await
        .expect("sim");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_token_is_renewed_unnoticed_and_a_session_ends_with_its_users_token() {
    let cloud = cloud();
    let app = cloud.stalecast_as("admin", "admin", &[]).await;
    app.wait_for_readiness(200).await;
    let mut stream = app.stream(&stalecast_tests::types_query(&["volumes"]), None).await;
    stream.connected().await;
    // Outlive the first tokens by a few seconds, polling all along. The user's session
    // stands on their token, which Stalecast cannot renew (it keeps no password): it ends
    // with it, and its stream with serialized-error.
    let lifetime = Duration::from_secs(cloud.token_lifetime_seconds);
    let signed_in = Instant::now();
    let ended = loop {
        match stream.next(lifetime + Duration::from_secs(5)).await {
            Next::Event(event) if event.event == "serialized-error" => break signed_in.elapsed(),
            Next::Event(_) => {}
            other => panic!("the stream should end with serialized-error at the token's expiry, got {other:?}"),
        }
    };
    assert!(ended <= lifetime + Duration::from_secs(2), "the session outlived its token: {ended:?}");
    let (status, body) = app.query("projects.list", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    tokio::time::sleep((lifetime + Duration::from_secs(5)).saturating_sub(signed_in.elapsed())).await;
    let (status, body) = app.readyz().await;
    assert_eq!(status, StatusCode::OK, "the poller kept reading past the token's expiry: {body}");
    // Signed in again: a change made elsewhere is seen, a mutation works.
    let app_again = app.sign_in("admin", &cloud.passwords["admin"]).await;
    let mut stream = app_again.stream(&stalecast_tests::types_query(&["volumes"]), None).await;
    stream.connected().await;
    // A change made elsewhere after the expiry is seen; a mutation works.
    let token = cloud.token("admin", "admin").await;
    let admin = cloud.project("admin");
    let made = reqwest::Client::new()
        .post(format!("{}/v3/{admin}/volumes", cloud.cinder))
        .header("x-auth-token", token)
        .json(&json!({"volume": {"name": "after-expiry", "size": 1}}))
        .send()
        .await
        .expect("cinder");
    assert_eq!(made.status(), StatusCode::ACCEPTED);
    let made: Value = made.json().await.expect("json");
    let id = made["volume"]["id"].clone();
    // Other tests change volumes meanwhile: wait for this one's update.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, update) = stream.next_data(deadline.saturating_duration_since(Instant::now())).await;
        if update["ids"].as_array().is_some_and(|ids| ids.contains(&id)) {
            break;
        }
    }
    let (status, body) = app_again
        .mutate("storage.volumes.create", json!({"projectId": admin, "name": "after-expiry-too", "sizeGb": 1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.shutdown().await;
}

/// The sign-in tests against the real Keystone: users, projects and role assignments as
/// `cloud.py` made them with the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sign_in_at_the_real_keystone_and_each_sees_and_changes_only_their_projects() {
    let cloud = cloud();
    let admin = cloud.stalecast_as("admin", "admin", &[]).await;
    admin.wait_for_readiness(200).await;
    let (web, data_team) = (cloud.project("web-team"), cloud.project("data-team"));

    // Without a session: 401.
    let (status, body) = admin.anonymous().query("storage.volumes.list", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let alice = admin.sign_in("alice", &cloud.passwords["alice"]).await;
    let bob = admin.sign_in("bob", &cloud.passwords["bob"]).await;
    let carol = admin.sign_in("carol", &cloud.passwords["carol"]).await;

    // Keystone's roles, implied ones included, and only the user's projects.
    let (_, me) = alice.query("auth.me", None).await;
    let projects = &me["result"]["data"]["projects"];
    assert_eq!((projects[0]["name"].as_str(), projects.as_array().map(Vec::len)), (Some("web-team"), Some(1)), "{me}");
    assert_eq!(projects[0]["canWrite"], true, "{me}");
    let (_, me) = bob.query("auth.me", None).await;
    assert_eq!(me["result"]["data"]["projects"][0]["canWrite"], false, "{me}");
    assert_eq!(names(&data(&alice, "projects.list", None).await), vec!["web-team"]);

    // Alice's stream while carol changes data-team.
    let mut stream = alice.stream(&stalecast_tests::types_query(&["volumes"]), None).await;
    stream.connected().await;
    let (status, body) = carol
        .mutate("storage.volumes.create", json!({"projectId": data_team, "name": "carols-secret", "sizeGb": 1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["result"]["data"]["id"].as_str().expect("id").to_owned();
    let (status, body) =
        alice.mutate("storage.volumes.create", json!({"projectId": web, "name": "alices-own", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hers = body["result"]["data"]["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, update) = stream.next_data(deadline.saturating_duration_since(Instant::now())).await;
        assert!(!update.to_string().contains(&secret), "alice heard of data-team's volume: {update}");
        if update["ids"].as_array().is_some_and(|ids| ids.contains(&json!(hers))) {
            break;
        }
    }
    // Lists and gets: data-team's volume is not hers to see.
    let mine = data(&alice, "storage.volumes.list", None).await;
    assert!(mine.as_array().expect("list").iter().all(|v| v["projectId"] == web), "{mine}");
    let (status, body) = alice.query("storage.volumes.get", Some(json!({"id": secret}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let seen = eventually(&carol, "storage.volumes.list", |v| names(v).contains(&"carols-secret".to_owned())).await;
    assert!(seen.as_array().is_some_and(|v| !v.is_empty()));
    // Bob reads data-team, and may not write there.
    let (status, body) = bob.query("storage.volumes.get", Some(json!({"id": secret}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = bob.mutate("storage.volumes.delete", json!({"id": secret})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(data(&bob, "storage.volumes.get", Some(json!({"id": secret}))).await["id"], json!(secret));

    // Signing out ends the stream and revokes the session's Keystone tokens.
    let (status, body) = alice.mutate("auth.logout", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    match stream.next(Duration::from_secs(2)).await {
        Next::Event(event) => assert_eq!(event.event, "serialized-error", "{event:?}"),
        other => panic!("the stream should end with serialized-error, got {other:?}"),
    }
    let (status, _) = alice.query("storage.volumes.list", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A wrong password: 401, whatever Keystone's reason.
    let (status, body, cookies) = admin.anonymous().login("alice", "not-her-password").await;
    assert_eq!((status, cookies.len()), (StatusCode::UNAUTHORIZED, 0), "{body}");
    admin.shutdown().await;
}

/// Keystone's admin API, as the cloud's operator would use it (`openstack role add` and
/// the like), with an admin token.
struct Operator {
    keystone: String,
    token: String,
    http: reqwest::Client,
}

impl Operator {
    async fn of(cloud: &Cloud) -> Operator {
        Operator {
            keystone: format!("{}/v3", cloud.keystone),
            token: cloud.token("admin", "admin").await,
            http: reqwest::Client::new(),
        }
    }

    /// `method` on `path`; panics unless Keystone answers `expect`.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>, expect: StatusCode) -> Value {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.keystone));
        request = request.header("x-auth-token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("keystone");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, expect, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn role(&self, name: &str) -> String {
        let roles = self.call(reqwest::Method::GET, &format!("/roles?name={name}"), None, StatusCode::OK).await;
        roles["roles"][0]["id"].as_str().unwrap_or_else(|| panic!("no role {name}: {roles}")).to_owned()
    }

    async fn grant(&self, project: &str, user: &str, role: &str) {
        let path = format!("/projects/{project}/users/{user}/roles/{role}");
        self.call(reqwest::Method::PUT, &path, None, StatusCode::NO_CONTENT).await;
    }

    async fn take_away(&self, project: &str, user: &str, role: &str) {
        let path = format!("/projects/{project}/users/{user}/roles/{role}");
        self.call(reqwest::Method::DELETE, &path, None, StatusCode::NO_CONTENT).await;
    }
}

/// The user's projects as `auth.me` tells them: name and whether they may write there.
async fn my_projects(user: &Client) -> Vec<(String, bool)> {
    let me = data(user, "auth.me", None).await;
    me["projects"]
        .as_array()
        .expect("projects")
        .iter()
        .map(|p| (p["name"].as_str().unwrap_or_default().to_owned(), p["canWrite"] == json!(true)))
        .collect()
}

/// The next `resync` on `stream` within `wait`, skipping the updates other tests cause.
async fn next_resync(stream: &mut stalecast_tests::SseClient, wait: Duration) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let (_, event) = stream.next_data(deadline.saturating_duration_since(Instant::now())).await;
        if event["kind"] == "resync" {
            return event;
        }
    }
}

/// Memberships are read again while the user is signed in (here every 2 s; at most every
/// minute by default): a role granted at Keystone shows without signing in again, and
/// the user's open stream resyncs (`access`) so that the page shows the new project; a
/// role taken away is gone the same way, and the project with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_granted_or_taken_away_at_keystone_reaches_the_signed_in_user() {
    let cloud = cloud();
    let every = Duration::from_secs(2);
    let app = cloud.stalecast_tuned("admin", "admin", &[], |c| c.membership_refresh = every).await;
    app.wait_for_readiness(200).await;
    let operator = Operator::of(&cloud).await;
    let (small, web) = (cloud.project("small-team"), cloud.project("web-team"));
    let (member, reader) = (operator.role("member").await, operator.role("reader").await);
    // A user of this test alone, member of small-team.
    let name = format!("dana-{}", std::process::id());
    let made = operator
        .call(
            reqwest::Method::POST,
            "/users",
            Some(json!({"user": {"name": name, "password": "dana-password", "domain_id": "default"}})),
            StatusCode::CREATED,
        )
        .await;
    let dana_id = made["user"]["id"].as_str().expect("user id").to_owned();
    operator.grant(small, &dana_id, &member).await;
    let dana = app.sign_in(&name, "dana-password").await;
    assert_eq!(my_projects(&dana).await, vec![("small-team".to_owned(), true)]);
    let mut stream = dana.stream(&stalecast_tests::types_query(&["volumes"]), None).await;
    stream.connected().await;

    // Granted: reader of web-team.
    operator.grant(web, &dana_id, &reader).await;
    let granted = Instant::now();
    let resync = next_resync(&mut stream, every + Duration::from_secs(8)).await;
    assert_eq!(resync["reason"], "access", "{resync}");
    let seen_after = granted.elapsed();
    let mut projects = my_projects(&dana).await;
    projects.sort();
    assert_eq!(projects, vec![("small-team".to_owned(), true), ("web-team".to_owned(), false)]);
    let listed = data(&dana, "projects.list", None).await;
    assert!(names(&listed).contains(&"web-team".to_owned()), "{listed}");

    // Taken away: her membership of small-team.
    operator.take_away(small, &dana_id, &member).await;
    let resync = next_resync(&mut stream, every + Duration::from_secs(8)).await;
    assert_eq!(resync["reason"], "access", "{resync}");
    assert_eq!(my_projects(&dana).await, vec![("web-team".to_owned(), false)]);
    let (status, body) =
        dana.mutate("storage.volumes.create", json!({"projectId": small, "name": "not-hers", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a project she no longer has a role on is unknown to her: {body}");
    let mine = data(&dana, "storage.volumes.list", None).await;
    assert!(mine.as_array().expect("list").iter().all(|v| v["projectId"] == web), "{mine}");

    operator.call(reqwest::Method::DELETE, &format!("/users/{dana_id}"), None, StatusCode::NO_CONTENT).await;
    eprintln!("a granted role reached the signed-in user after {seen_after:?}");
    app.shutdown().await;
}
