//! Sign-in with Keystone and what it scopes: every procedure and the stream need a
//! session (401), each user reads only their projects (another project's resource is
//! 404, lists hold only theirs), a reader's write is 403 before anything reaches the
//! cloud, writes carry the user's own token, each stream carries only what its user may
//! see (live and replayed), sign-out and expiry end every stream of the session, and
//! failed sign-ins are limited (429, then free again after the window).
//!
//! The simulator's users: `admin`/`stalecast` (admin of every project), `alice`/`alice`
//! (member of web-team, `prj-web`), `bob`/`bob` (reader of data-team, `prj-data`).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast_tests::{
    Client, Next, Recorder, SseClient, TestApp, procedures, spawn_app, spawn_app_anonymous, spawn_app_with,
};

const WAIT: Duration = Duration::from_secs(10);

fn ids(body: &Value) -> Vec<String> {
    body["result"]["data"]
        .as_array()
        .map_or_else(Vec::new, |items| items.iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect())
}

fn projects_of(body: &Value) -> Vec<String> {
    let mut projects: Vec<String> = body["result"]["data"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["projectId"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    projects.sort();
    projects.dedup();
    projects
}

fn code(body: &Value) -> &str {
    body["error"]["data"]["code"].as_str().unwrap_or("")
}

/// The simulator's write requests (anything but a read) served so far, in all.
async fn upstream_writes(app: &TestApp) -> u64 {
    app.sim_requests().await.iter().filter(|(k, _)| !k.starts_with("GET ")).map(|(_, n)| n).sum()
}

async fn create_volume_as(client: &Client, project: &str, name: &str) -> String {
    let (status, body) =
        client.mutate("storage.volumes.create", json!({"projectId": project, "name": name, "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["result"]["data"]["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_every_procedure_and_the_stream_answer_401_and_a_stale_cookie_is_cleared() {
    let app = spawn_app_anonymous(|_| {}).await;
    let all = procedures();
    assert!(all.iter().any(|(path, _, open)| path == "auth.login" && *open));
    assert_eq!(all.iter().filter(|(_, _, open)| *open).count(), 1, "only auth.login is open: {all:?}");
    let forged = app.with_cookie(&format!("stalecast_session={}", "A".repeat(43)));
    for client in [&*app, &forged] {
        for (path, kind, _) in all.iter().filter(|(_, _, open)| !*open) {
            let (status, body) = match kind.as_str() {
                "query" => client.query(path, None).await,
                "mutation" => client.mutate(path, json!({"id": "vol-1", "projectId": "prj-web", "name": "x"})).await,
                _ => {
                    let response = client.open_stream("", None).await;
                    let status = response.status();
                    assert_eq!(response.headers()["content-type"], "application/json", "{path}: no event stream");
                    (status, response.json().await.expect("envelope"))
                }
            };
            assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{path}: {body}");
            assert_eq!(body["error"]["data"]["path"], path.as_str(), "{body}");
        }
    }
    // A cookie that names no session is cleared with the 401.
    let response = forged.http.get(forged.url("/trpc/projects.list")).send().await.expect("query");
    let cleared = response.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(cleared.starts_with("stalecast_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    // The health endpoints stay open.
    for path in ["/healthz", "/readyz"] {
        let status = app.http.get(app.url(path)).send().await.expect("health").status();
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sets_an_opaque_http_only_cookie_and_me_tells_the_projects_and_roles() {
    let app = spawn_app_anonymous(|_| {}).await;
    let (status, body, cookies) = app.login("alice", "alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    let (pair, attributes) = cookie.split_once(';').expect("attributes");
    let id = pair.strip_prefix("stalecast_session=").expect("the cookie's name");
    assert_eq!(id.len(), 43, "an opaque id of 32 random bytes: {pair}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(attributes.split(';').any(|a| a.trim() == attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "served over plain HTTP: {cookie}");
    // The answer says who signed in, and holds no token.
    assert_eq!(body["result"]["data"]["user"]["name"], "alice", "{body}");
    let text = body.to_string();
    assert!(!text.to_lowercase().contains("token") && !text.contains(id), "{text}");

    let alice = app.with_cookie(pair);
    let (status, me) = alice.query("auth.me", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let projects = &me["result"]["data"]["projects"];
    assert_eq!(projects.as_array().map(Vec::len), Some(1), "{me}");
    assert_eq!((&projects[0]["id"], &projects[0]["name"]), (&json!("prj-web"), &json!("web-team")), "{me}");
    assert_eq!(projects[0]["canWrite"], true, "{me}");
    assert!(projects[0]["roles"].as_array().expect("roles").contains(&json!("member")), "{me}");

    let bob = app.sign_in("bob", "bob").await;
    let (_, me) = bob.query("auth.me", None).await;
    let projects = &me["result"]["data"]["projects"];
    assert_eq!((&projects[0]["id"], &projects[0]["canWrite"]), (&json!("prj-data"), &json!(false)), "{me}");
    assert_eq!(projects[0]["roles"], json!(["reader"]), "{me}");

    // Wrong credentials: 401, no cookie, and the same message whatever was wrong.
    let (status, wrong_password, cookies) = app.login("alice", "nope").await;
    assert_eq!((status, cookies.len()), (StatusCode::UNAUTHORIZED, 0), "{wrong_password}");
    let (_, unknown_user, _) = app.login("mallory", "nope").await;
    assert_eq!(wrong_password["error"]["message"], unknown_user["error"]["message"]);
    // Bad input names its field.
    let (status, body) = app.mutate("auth.login", json!({"user": "", "password": "x"})).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("input.user: must not be blank or contain control characters")),
        "{body}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_reads_only_their_projects_and_another_projects_volume_is_404() {
    let app = spawn_app().await;
    app.wait_for_readiness(200).await;
    let alice = app.sign_in("alice", "alice").await;
    let bob = app.sign_in("bob", "bob").await;

    let (_, projects) = alice.query("projects.list", None).await;
    assert_eq!(ids(&projects), vec!["prj-web"], "{projects}");
    for list in ["storage.volumes.list", "compute.servers.list"] {
        let (status, body) = alice.query(list, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(projects_of(&body), vec!["prj-web"], "{list}: {body}");
        let (_, body) = bob.query(list, None).await;
        assert_eq!(projects_of(&body), vec!["prj-data"], "{list}: {body}");
        let (_, body) = app.query(list, None).await;
        assert_eq!(projects_of(&body), vec!["prj-admin", "prj-data", "prj-web"], "{list}: admin sees all");
    }
    // Asking for another project's part: nothing of it.
    let (_, body) = alice.query("storage.volumes.list", Some(json!({"projectId": "prj-data"}))).await;
    assert_eq!(ids(&body), Vec::<String>::new(), "{body}");

    // A data-team volume, to alice, is as one that does not exist.
    let (_, data) = bob.query("storage.volumes.list", None).await;
    let theirs = ids(&data).into_iter().next().expect("a data-team volume");
    let (status, hidden) = alice.query("storage.volumes.get", Some(json!({"id": theirs}))).await;
    assert_eq!((status, code(&hidden)), (StatusCode::NOT_FOUND, "NOT_FOUND"), "{hidden}");
    let (_, missing) = alice.query("storage.volumes.get", Some(json!({"id": "vol-nonexistent"}))).await;
    assert_eq!(
        hidden["error"]["message"].as_str().map(|m| m.replace(&theirs, "?")),
        missing["error"]["message"].as_str().map(|m| m.replace("vol-nonexistent", "?")),
        "the same answer as for a volume that does not exist"
    );
    let (status, body) = bob.query("storage.volumes.get", Some(json!({"id": theirs}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Deleting it is 404 too, and never reaches the cloud.
    let writes = upstream_writes(&app).await;
    let (status, body) = alice.mutate("storage.volumes.delete", json!({"id": theirs})).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "NOT_FOUND"), "{body}");
    assert_eq!(upstream_writes(&app).await, writes);

    // updates.state moves only for what the caller may see.
    let (_, before) = alice.query("updates.state", None).await;
    let volumes_seq = |state: &Value| {
        state["result"]["data"]["types"]
            .as_array()
            .and_then(|types| types.iter().find(|t| t["type"] == "volumes").and_then(|t| t["seq"].as_u64()))
    };
    create_volume_as(&app, "prj-data", "not-for-alice").await;
    let (_, after) = alice.query("updates.state", None).await;
    assert_eq!(volumes_seq(&after), volumes_seq(&before), "{before} → {after}");
    create_volume_as(&alice, "prj-web", "for-alice").await;
    let (_, after) = alice.query("updates.state", None).await;
    assert!(volumes_seq(&after) > volumes_seq(&before), "{before} → {after}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_write_is_403_naming_the_project_and_nothing_reaches_the_cloud() {
    let app = spawn_app().await;
    app.wait_for_readiness(200).await;
    let bob = app.sign_in("bob", "bob").await;
    let (_, data) = bob.query("storage.volumes.list", None).await;
    let volume = ids(&data).into_iter().next().expect("a data-team volume");
    let (_, servers) = bob.query("compute.servers.list", None).await;
    let server = ids(&servers).into_iter().next().expect("a data-team server");

    let writes = upstream_writes(&app).await;
    let attempts = [
        ("storage.volumes.create", json!({"projectId": "prj-data", "name": "nope", "sizeGb": 1})),
        ("storage.volumes.delete", json!({"id": volume})),
        ("compute.servers.create", json!({"projectId": "prj-data", "name": "nope"})),
        ("compute.servers.delete", json!({"id": server})),
        ("compute.servers.start", json!({"id": server})),
        ("compute.servers.stop", json!({"id": server})),
    ];
    for (path, input) in attempts {
        let (status, body) = bob.mutate(path, input).await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("data-team") && message.contains("reader"), "{path}: {message}");
    }
    // And in a project bob has no role on: that project is unknown to him.
    let (status, body) =
        bob.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "x", "sizeGb": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(upstream_writes(&app).await, writes, "a refused write must not reach the cloud");
    let (_, after) = bob.query("storage.volumes.list", None).await;
    assert!(ids(&after).contains(&volume), "still there");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_carry_the_users_own_token_so_the_cloud_records_the_real_user() {
    let app = spawn_app().await;
    app.wait_for_readiness(200).await;
    let alice = app.sign_in("alice", "alice").await;
    let (status, body) = alice
        .mutate("compute.servers.create", json!({"projectId": "prj-web", "name": "alices", "imageId": "img-cirros"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["result"]["data"]["id"].as_str().expect("id");
    assert_eq!(app.server_creator(id).as_deref(), Some("usr-alice"), "the cloud saw alice, not the service account");
    let (status, body) = app
        .mutate("compute.servers.create", json!({"projectId": "prj-web", "name": "admins", "imageId": "img-cirros"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["result"]["data"]["id"].as_str().expect("id");
    assert_eq!(app.server_creator(id).as_deref(), Some("usr-admin"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_never_receives_a_byte_about_data_team_live_or_replayed() {
    let app = spawn_app().await;
    app.wait_for_readiness(200).await;
    let alice = app.sign_in("alice", "alice").await;
    let bob = app.sign_in("bob", "bob").await;
    let (_, state) = alice.query("updates.state", None).await;
    let start = state["result"]["data"]["seq"].as_u64().expect("seq").to_string();

    // Alice's whole stream, and bob's, while admin and bob change data-team.
    let alice_stream = Recorder::start(&alice, "", None).await;
    let mut bob_stream = bob.stream("", None).await;
    bob_stream.connected().await;
    let mut secret = Vec::new();
    for n in 0..3 {
        let id = create_volume_as(&app, "prj-data", &format!("data-secret-{n}")).await;
        let (_, data) = bob_stream.next_data(WAIT).await;
        assert!(data["ids"].as_array().is_some_and(|ids| ids.contains(&json!(id))), "bob hears of it: {data}");
        secret.push(id);
    }
    let (status, body) = bob.mutate("storage.volumes.delete", json!({"id": secret[0]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app.mutate("storage.volumes.delete", json!({"id": secret[1]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Then something of web-team's: alice hears of it (the stream works), and it came after.
    let mine = create_volume_as(&app, "prj-web", "for-web").await;
    alice_stream.wait_for(&mine, WAIT).await;
    // An update naming a web-team and a data-team volume names only hers to her.
    app.publish_owned("volumes", &[("vol-mixed-web", "prj-web"), ("vol-mixed-data", "prj-data")]);
    alice_stream.wait_for("vol-mixed-web", WAIT).await;
    secret.push("vol-mixed-data".into());
    let recorded = alice_stream.stop();
    for id in &secret {
        assert!(!recorded.contains(id.as_str()), "alice's stream named {id}:\n{recorded}");
    }
    assert!(!recorded.contains("prj-data") && !recorded.contains("data-team"), "{recorded}");

    // Replay from before all of it: the same, from the ring.
    let replay = Recorder::start(&alice, "", Some(&start)).await;
    replay.wait_for(&mine, WAIT).await;
    let replayed = replay.stop();
    for id in &secret {
        assert!(!replayed.contains(id.as_str()), "the replay named {id}:\n{replayed}");
    }
    // Admin sees every project's updates, replayed as well.
    let admin_replay = Recorder::start(&app, "", Some(&start)).await;
    admin_replay.wait_for(&mine, WAIT).await;
    let all = admin_replay.stop();
    assert!(secret.iter().all(|id| all.contains(id.as_str())), "{all}");
    app.shutdown().await;
}

/// Asserts that `stream` ends with tRPC's `serialized-error` UNAUTHORIZED event within
/// `wait`, pings (and, when `updates` says so, updates) aside.
async fn assert_ended_unauthorized(stream: &mut SseClient, wait: Duration, updates: bool) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match stream.next(left).await {
            Next::Event(event) if event.event == "ping" => {}
            Next::Event(event) if updates && event.event == "message" => {}
            Next::Event(event) => {
                assert_eq!(event.event, "serialized-error", "{event:?}");
                let error: Value = serde_json::from_str(&event.data).expect("JSON");
                assert_eq!(error["data"]["code"], "UNAUTHORIZED", "{error}");
                break;
            }
            other => panic!("expected serialized-error within {wait:?}, got {other:?}"),
        }
    }
    assert!(matches!(stream.next(WAIT).await, Next::End), "the stream ends after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_ends_the_stream_of_every_tab_of_that_session_within_a_second() {
    let app = spawn_app().await;
    let alice = app.sign_in("alice", "alice").await;
    let other = app.sign_in("alice", "alice").await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let mut tab = alice.stream("", None).await;
        tab.connected().await;
        tabs.push(tab);
    }
    // A second tab on its own connection pool, as another browser window would be.
    let response = alice.new_http().get(alice.url("/trpc/updates.onUpdate")).send().await.expect("stream");
    let mut window = SseClient::new(response);
    window.connected().await;
    tabs.push(window);
    let mut elsewhere = other.stream("", None).await;
    elsewhere.connected().await;

    let sessions = app.session_count().await;
    let started = Instant::now();
    let (status, body) = alice.mutate("auth.logout", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for tab in &mut tabs {
        assert_ended_unauthorized(tab, Duration::from_secs(1).saturating_sub(started.elapsed()), false).await;
    }
    assert_eq!(app.session_count().await, sessions - 1);
    let (status, body) = alice.query("projects.list", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Her other session (another browser) goes on.
    let id = create_volume_as(&other, "prj-web", "still-signed-in").await;
    let (_, data) = elsewhere.next_data(WAIT).await;
    assert!(data["ids"].as_array().is_some_and(|ids| ids.contains(&json!(id))), "{data}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_expires_ends_its_stream_mid_way_and_later_calls_are_401() {
    let lifetime = Duration::from_secs(3);
    let app = spawn_app_with(|c| c.session_lifetime = lifetime).await;
    let signed_in = Instant::now();
    let alice = app.sign_in("alice", "alice").await;
    let mut stream = alice.stream("", None).await;
    stream.connected().await;
    // Updates flow while the session lives.
    let id = create_volume_as(&alice, "prj-web", "before-expiry").await;
    let (_, data) = stream.next_data(WAIT).await;
    assert!(data["ids"].as_array().is_some_and(|ids| ids.contains(&json!(id))), "{data}");
    // (The poller may announce the volume's next state meanwhile.)
    assert_ended_unauthorized(&mut stream, lifetime + Duration::from_secs(2), true).await;
    let ended = signed_in.elapsed();
    assert!(ended >= lifetime && ended < lifetime + Duration::from_millis(1500), "ended after {ended:?}");
    let (status, body) = alice.query("storage.volumes.list", None).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{body}");
    // A stream opened with the expired cookie answers 401 before any event.
    let response = alice.open_stream("", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_limited_per_user_and_per_address_with_retry_after_then_free_again() {
    let window = Duration::from_secs(3);
    let app = spawn_app_anonymous(|c| {
        c.signin_failures_per_user = 3;
        c.signin_failures_per_address = 5;
        c.signin_window = window;
    })
    .await;
    let login = |user: &'static str, password: &'static str| {
        let app = app.anonymous();
        async move { app.login_response(user, password).await }
    };
    assert_eq!(login("alice", "wrong").await.status(), StatusCode::UNAUTHORIZED);
    // The first failure counted by now: the window runs from it.
    let first_failed = Instant::now();
    for _ in 0..2 {
        assert_eq!(login("alice", "wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    // Blocked, even with the right password, and told for how long.
    let blocked = login("alice", "alice").await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = blocked.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=window.as_secs()).contains(&retry_after), "Retry-After: {retry_after}");
    let body: Value = blocked.json().await.expect("envelope");
    assert_eq!(code(&body), "TOO_MANY_REQUESTS", "{body}");
    // Another user from the same address is not blocked yet, until the address is.
    assert_eq!(login("bob", "bob").await.status(), StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(login("bob", "wrong").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login("admin", "stalecast").await.status(), StatusCode::TOO_MANY_REQUESTS, "the address is blocked");

    // After the window, both are free again.
    tokio::time::sleep((first_failed + window + Duration::from_millis(100)).saturating_duration_since(Instant::now()))
        .await;
    assert_eq!(login("alice", "alice").await.status(), StatusCode::OK);
    assert_eq!(login("admin", "stalecast").await.status(), StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_out_keep_the_hardening_checks_json_only_and_same_origin() {
    let app = spawn_app().await;
    let login = |content_type: &'static str, origin: Option<String>, body: String| {
        let mut request = app.anonymous().http.post(app.url("/trpc/auth.login")).header("content-type", content_type);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { request.body(body).send().await.expect("auth.login") }
    };
    // A form post, which any site's page can send: 415, and no session.
    let form = login("application/x-www-form-urlencoded", None, String::from("user=alice&password=alice")).await;
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(form.headers().get("set-cookie").is_none());
    // Another site's page: 403, and no session.
    let json = json!({"user": "alice", "password": "alice"}).to_string();
    let foreign = login("application/json", Some(String::from("https://elsewhere.example")), json.clone()).await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(foreign.headers().get("set-cookie").is_none());
    // This server's own page: signed in, under the Content-Security-Policy.
    let own = login("application/json", Some(app.url("")), json).await;
    assert_eq!(own.status(), StatusCode::OK);
    assert!(own.headers().contains_key("content-security-policy"));
    // Signing out from another site is refused too: the session goes on.
    let logout = app
        .http
        .post(app.url("/trpc/auth.logout"))
        .header("content-type", "application/json")
        .header("origin", "https://elsewhere.example")
        .body("{}")
        .send()
        .await
        .expect("auth.logout");
    assert_eq!(logout.status(), StatusCode::FORBIDDEN);
    let (status, _) = app.query("auth.me", None).await;
    assert_eq!(status, StatusCode::OK);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_holds_no_password_session_id_or_token_even_at_debug() {
    let server = stalecast_tests::child::ChildServer::start(&["serve", "--port", "0"], &[("RUST_LOG", "debug")]).await;
    let client = server.client.clone();
    let (status, _, _) = client.login("alice", "a-wrong-password-7").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, cookies) = client.login("alice", "alice").await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookies[0].split(';').next().expect("name=value").to_owned();
    let id = cookie.split_once('=').expect("id").1.to_owned();
    let alice = client.with_cookie(&cookie);
    create_volume_as(&alice, "prj-web", "logged").await;
    let (status, _) = alice.mutate("auth.logout", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let log = server.lines().join("\n");
    assert!(log.contains("signed in"), "the sign-in is logged: {log}");
    for secret in ["a-wrong-password-7", id.as_str()] {
        assert!(!log.contains(secret), "the log holds {secret}:\n{log}");
    }
    assert!(!log.to_lowercase().contains("x-subject-token:") && !log.to_lowercase().contains("x-auth-token:"), "{log}");
}
