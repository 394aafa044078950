//! The real binary's configuration: every `stalecast serve` flag given as its
//! `STALECAST_*` environment variable takes effect (each checked by what a client or an
//! operator can observe), and bad values exit non-zero with a message naming the flag.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stalecast_tests::child::{self, ChildServer, free_port};
use stalecast_tests::{UpstreamClient, types_query};

const WAIT: Duration = Duration::from_secs(10);

fn web_fixture() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/web").to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_every_setting_from_its_environment_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ready_file = dir.path().join("ready.json").to_string_lossy().into_owned();
    let (port, sim_port) = (free_port().to_string(), free_port().to_string());
    let web = web_fixture();
    // No flag at all: only the environment.
    let server = ChildServer::start(
        &["serve"],
        &[
            ("STALECAST_HOST", "0.0.0.0"),
            ("STALECAST_PORT", &port),
            ("STALECAST_SIM_PORT", &sim_port),
            ("STALECAST_SIM_CHURN", "200ms"),
            ("STALECAST_OS_USER", "admin"),
            ("STALECAST_OS_PASSWORD", "env-secret"),
            ("STALECAST_POLL_INTERVAL", "100ms"),
            ("STALECAST_PING_INTERVAL", "3s"),
            ("STALECAST_RING_SIZE", "7"),
            ("STALECAST_MAX_BODY_BYTES", "300"),
            ("STALECAST_LOG_FORMAT", "json"),
            ("STALECAST_WEB_DIR", &web),
            ("STALECAST_READY_FILE", &ready_file),
            ("STALECAST_SIGNIN_FAILURES_PER_USER", "2"),
            ("STALECAST_SECURE_COOKIE", "true"),
        ],
    )
    .await;
    let anonymous = server.client.clone();

    // STALECAST_READY_FILE, STALECAST_HOST, STALECAST_PORT, STALECAST_SIM_PORT.
    assert!(std::path::Path::new(&ready_file).exists());
    assert_eq!(server.ready["addr"], format!("0.0.0.0:{port}"), "{}", server.ready);
    assert_eq!(server.ready["simAddr"], format!("127.0.0.1:{sim_port}"), "{}", server.ready);
    anonymous.wait_for_readiness(200).await;

    // STALECAST_OS_USER / STALECAST_OS_PASSWORD: the embedded simulator takes those
    // credentials, and Stalecast logs in with them.
    UpstreamClient::new(&anonymous.sim_url, "env-secret").projects().await.expect("the configured password works");
    let refused = UpstreamClient::new(&anonymous.sim_url, "stalecast").projects().await;
    assert!(refused.is_err(), "the default password must no longer work: {refused:?}");

    // STALECAST_SIGNIN_FAILURES_PER_USER: two failures block the third attempt.
    for _ in 0..2 {
        assert_eq!(anonymous.login("admin", "wrong").await.0, 401);
    }
    let (status, body, _) = anonymous.login("admin", "env-secret").await;
    assert_eq!(status, 429, "{body}");
    // STALECAST_SECURE_COOKIE: the cookie is Secure, under its __Host- name (another user).
    let (status, body, cookies) = anonymous.login("alice", "alice").await;
    assert_eq!(status, 200, "{body}");
    let cookie = cookies.iter().find(|c| c.starts_with("__Host-stalecast_session=")).expect("the __Host- cookie");
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");
    let client = anonymous.with_cookie(cookie.split(';').next().expect("name=value"));
    let (status, me) = client.query("auth.me", None).await;
    assert_eq!((status.as_u16(), &me["result"]["data"]["user"]["name"]), (200, &json!("alice")), "{me}");

    // STALECAST_RING_SIZE and STALECAST_PING_INTERVAL, as clients see them.
    let (_, state) = client.query("updates.state", None).await;
    assert_eq!(state["result"]["data"]["ringSize"], 7, "{state}");
    let mut stream = client.stream(&types_query(&["servers"]), None).await;
    assert_eq!(stream.connected().await["reconnectAfterInactivityMs"], 9000);

    // STALECAST_SIM_CHURN: servers change with nobody asking.
    let (_, data) = stream.next_data(WAIT).await;
    assert_eq!(data["type"], "servers", "{data}");

    // STALECAST_POLL_INTERVAL: ten times a second, not every 2 s.
    let volumes = |counts: &std::collections::BTreeMap<String, u64>| counts.get("GET volumes").copied().unwrap_or(0);
    let before = volumes(&client.sim_requests().await);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls = volumes(&client.sim_requests().await) - before;
    assert!(polls >= 5, "{polls} polls in {:?}", started.elapsed());

    // STALECAST_MAX_BODY_BYTES (alice is a member of web-team).
    let big = json!({"projectId": "prj-web", "name": "big", "sizeGb": 1, "description": "d".repeat(400)});
    let (status, body) = client.mutate("storage.volumes.create", big).await;
    assert_eq!(status, 413, "{body}");
    client.create_volume("small").await;

    // STALECAST_WEB_DIR.
    let page = client.http.get(client.url("/")).send().await.expect("page").text().await.expect("html");
    assert!(page.contains("stalecast-web-fixture"), "{page}");

    // STALECAST_LOG_FORMAT: every line is a JSON object.
    let lines = server.lines();
    assert!(lines.iter().any(|l| l.contains("stalecast listening")), "{lines:?}");
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(entry["level"].is_string(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_its_upstream_settings_from_the_environment() {
    let upstream = ChildServer::start(&["sim", "--port", "0"], &[]).await;
    let url = upstream.client.base.clone();

    // STALECAST_UPSTREAM and STALECAST_UPSTREAM_TIMEOUT.
    let server = ChildServer::start(
        &["serve", "--port", "0"],
        &[("STALECAST_UPSTREAM", &url), ("STALECAST_UPSTREAM_TIMEOUT", "1s"), ("STALECAST_OS_PROJECT", "admin")],
    )
    .await
    .with_sim_url(&url)
    .signed_in()
    .await;
    assert_eq!(server.ready["simAddr"], Value::Null, "no embedded simulator: {}", server.ready);
    let client = server.client.clone();
    client.wait_for_readiness(200).await;
    let id = client.create_volume("in-the-upstream").await;
    let (status, body) = client.query("storage.volumes.get", Some(json!({"id": id}))).await;
    assert_eq!(status, 200, "{body}");

    // The upstream's latency is what Stalecast waits on, up to its timeout.
    client.set_faults(json!({"latencyMs": 6000})).await;
    let started = Instant::now();
    let (status, body) =
        client.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "slow", "sizeGb": 1})).await;
    let took = started.elapsed();
    assert_eq!(status, 504, "the create was sent and not confirmed in time: {body}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}: not the 1 s timeout");
    client.set_faults(json!({})).await;

    // STALECAST_OS_USER against a real login: a user the upstream does not know. Users
    // still sign in (their own Keystone account), but the service account's listing fails.
    let stranger =
        ChildServer::start(&["serve", "--port", "0"], &[("STALECAST_UPSTREAM", &url), ("STALECAST_OS_USER", "nobody")])
            .await
            .signed_in()
            .await;
    let (status, body) = stranger.client.query("projects.list", None).await;
    assert_eq!(status, 502, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_os_variables_and_clouds_yaml_as_the_openstack_cli_does() {
    let upstream = ChildServer::start(&["sim", "--port", "0"], &[]).await;
    let url = upstream.client.base.clone();
    let auth_url = format!("{url}/v3");
    let project_ids = |body: &Value| -> Vec<Value> {
        body["result"]["data"].as_array().map(|p| p.iter().map(|p| p["id"].clone()).collect()).unwrap_or_default()
    };

    // An openrc's variables: alice, member of web-team.
    let openrc = [
        ("OS_AUTH_URL", auth_url.as_str()),
        ("OS_USERNAME", "alice"),
        ("OS_PASSWORD", "alice"),
        ("OS_PROJECT_NAME", "web-team"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ("OS_REGION_NAME", "RegionOne"),
        ("OS_INTERFACE", "public"),
    ];
    let server = ChildServer::start(&["serve", "--port", "0"], &openrc).await.with_sim_url(&url);
    assert_eq!(server.ready["simAddr"], Value::Null, "a cloud, no embedded simulator");
    // Signed in as admin: the service account (alice) lists only web-team.
    let admin = server.client.sign_in("admin", "stalecast").await;
    let (status, body) = admin.query("projects.list", None).await;
    assert_eq!((status.as_u16(), project_ids(&body)), (200, vec![json!("prj-web")]), "{body}");

    // clouds.yaml in $XDG_CONFIG_HOME/openstack, named by --os-cloud; OS_* over it.
    let config = tempfile::tempdir().expect("config dir");
    std::fs::create_dir_all(config.path().join("openstack")).expect("openstack dir");
    let yaml = format!(
        "clouds:\n  lab:\n    auth:\n      auth_url: {url}\n      username: admin\n      password: wrong\n      project_name: admin\n    region_name: RegionOne\n"
    );
    std::fs::write(config.path().join("openstack/clouds.yaml"), yaml).expect("clouds.yaml");
    let xdg = config.path().to_string_lossy().into_owned();
    let env = [("XDG_CONFIG_HOME", xdg.as_str()), ("OS_PASSWORD", "stalecast")];
    let server = ChildServer::start(&["serve", "--port", "0", "--os-cloud", "lab"], &env)
        .await
        .with_sim_url(&url)
        .signed_in()
        .await;
    let (status, body) = server.client.query("projects.list", None).await;
    assert_eq!((status.as_u16(), project_ids(&body).len()), (200, 3), "{body}");

    // Names that lead nowhere say so, and a CA bundle is read.
    let env = [("XDG_CONFIG_HOME", xdg.as_str())];
    let (status, output) = child::run(&["serve", "--port", "0", "--os-cloud", "nope"], &env).await;
    assert!(!status.success() && output.contains("no cloud \"nope\"") && output.contains("lab"), "{output}");
    let bundle = config.path().join("not-a-bundle.pem");
    std::fs::write(&bundle, "not a certificate").expect("bundle");
    let bundle = bundle.to_string_lossy().into_owned();
    let env = [
        ("OS_AUTH_URL", auth_url.as_str()),
        ("OS_PASSWORD", "x"),
        ("OS_USERNAME", "admin"),
        ("OS_PROJECT_NAME", "admin"),
        ("OS_CACERT", bundle.as_str()),
    ];
    let (status, output) = child::run(&["serve", "--port", "0"], &env).await;
    assert!(!status.success() && output.contains(&bundle), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_its_connection_limit_from_the_environment() {
    let server = ChildServer::start(&["serve", "--port", "0"], &[("STALECAST_MAX_CONNECTIONS", "1")]).await;
    // Signing in holds the one connection until the budget closes it, idle, for the stream.
    let client = server.client.sign_in("admin", "stalecast").await;
    let stream = client.stream("", None).await;
    let waiting = tokio::spawn({
        let url = server.client.url("/healthz");
        async move { reqwest::Client::new().get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "a second connection was served beyond STALECAST_MAX_CONNECTIONS=1");
    drop(stream);
    let status = tokio::time::timeout(WAIT, waiting).await.expect("served once the stream closed");
    assert_eq!(status.expect("task").expect("request"), 200);
}

/// Arguments, environment, and the flag the error message must name.
type BadValue<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn bad_values_exit_non_zero_naming_the_flag() {
    let cases: [BadValue; 6] = [
        (&["serve", "--ring-size", "0"], &[], "--ring-size"),
        (&["serve", "--poll-interval", "0s"], &[], "--poll-interval"),
        (&["serve", "--port", "x"], &[], "--port"),
        (&["serve", "--log-format", "xml"], &[], "--log-format"),
        (&["serve"], &[("STALECAST_RING_SIZE", "0")], "--ring-size"),
        (&["serve"], &[("STALECAST_PING_INTERVAL", "soon")], "--ping-interval"),
    ];
    for (args, env, flag) in cases {
        let (status, output) = child::run(args, env).await;
        assert!(!status.success(), "{args:?} {env:?} was accepted: {output}");
        assert!(output.contains(flag), "{args:?} {env:?}: the message does not name {flag}: {output}");
    }
}
