//! The stock `openstack` CLI (python-openstackclient from PyPI, in the virtualenv
//! `STALECAST_OPENSTACK_VENV`) against `stalecast sim`, as a user would run it: token
//! issue; project, server, volume, image and network listings with and without
//! `--all-projects`; show, create and delete; as an admin and as a member of one project.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use stalecast_tests::child::ChildServer;

fn openstack_binary() -> PathBuf {
    let Some(venv) = std::env::var_os("STALECAST_OPENSTACK_VENV") else {
        panic!("STALECAST_OPENSTACK_VENV is not set: run these tests with `make test-openstack`");
    };
    let binary = PathBuf::from(venv).join("bin/openstack");
    assert!(binary.exists(), "{} is missing", binary.display());
    binary
}

/// Runs `openstack <args>` as `user` of `project` against the simulator at `url`;
/// answers its standard output, panicking (with its error output) when it fails.
async fn openstack(url: &str, user: &str, project: &str, args: &[&str]) -> String {
    let (ok, out, err) = try_openstack(url, user, project, args).await;
    assert!(ok, "openstack {args:?} as {user} failed:\n{err}");
    out
}

async fn try_openstack(url: &str, user: &str, project: &str, args: &[&str]) -> (bool, String, String) {
    let password = if user == "admin" { "stalecast" } else { user };
    let home = tempfile::tempdir().expect("home");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(openstack_binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("OS_AUTH_URL", format!("{url}/v3"))
            .env("OS_USERNAME", user)
            .env("OS_PASSWORD", password)
            .env("OS_PROJECT_NAME", project)
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_IDENTITY_API_VERSION", "3")
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("openstack {args:?} did not finish in 120 s"))
    .expect("run openstack");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn json(url: &str, user: &str, project: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-f", "json"]);
    let out = openstack(url, user, project, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("openstack {args:?}: not JSON ({e}): {out}"))
}

fn column(rows: &Value, name: &str) -> Vec<String> {
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| match &r[name] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openstack_cli_works_against_the_simulator() {
    let sim = ChildServer::start(&["sim", "--port", "0", "--transition-delay", "200ms"], &[]).await;
    let url = sim.client.base.clone();
    let admin = |args: &'static [&'static str]| {
        let url = url.clone();
        async move { json(&url, "admin", "admin", args).await }
    };

    let token = admin(&["token", "issue"]).await;
    assert_eq!((token["user_id"].as_str(), token["project_id"].as_str()), (Some("usr-admin"), Some("prj-admin")));
    assert!(token["expires"].is_string() && token["id"].is_string(), "{token}");

    let mut projects = column(&admin(&["project", "list"]).await, "Name");
    projects.sort();
    assert_eq!(projects, ["admin", "data-team", "web-team"]);

    // Without --all-projects, the token's project only; with it, every project's.
    let own = admin(&["server", "list"]).await;
    let all = admin(&["server", "list", "--all-projects"]).await;
    assert_eq!(own.as_array().map(Vec::len), Some(8), "{own}");
    assert_eq!(all.as_array().map(Vec::len), Some(24));
    // The image names come from Glance, asked with `id=in:…`.
    assert!(column(&own, "Image").iter().all(|i| !i.is_empty() && !i.contains("img-")), "{own}");
    assert_eq!(admin(&["volume", "list"]).await.as_array().map(Vec::len), Some(12));
    assert_eq!(admin(&["volume", "list", "--all-projects"]).await.as_array().map(Vec::len), Some(36));
    assert_eq!(admin(&["image", "list"]).await.as_array().map(Vec::len), Some(5));
    assert_eq!(admin(&["network", "list"]).await.as_array().map(Vec::len), Some(4));

    let server = admin(&["server", "show", "web-01"]).await;
    assert_eq!((server["id"].as_str(), server["project_id"].as_str()), (Some("srv-0001"), Some("prj-admin")));
    let volume = admin(&["volume", "show", "vol-01"]).await;
    assert_eq!((volume["id"].as_str(), &volume["size"]), (Some("vol-0025"), &serde_json::json!(10)));
    let image = admin(&["image", "show", "cirros-0.6.3"]).await;
    assert_eq!(image["id"], "img-cirros");
    let network = admin(&["network", "show", "public"]).await;
    assert_eq!(network["id"], "net-public");
    let project = admin(&["project", "show", "web-team"]).await;
    assert_eq!(project["id"], "prj-web");

    // Create, then delete, each kind.
    let made =
        admin(&["server", "create", "--flavor", "m1.small", "--image", "cirros-0.6.3", "--wait", "cli-server"]).await;
    assert_eq!((made["name"].as_str(), made["status"].as_str()), (Some("cli-server"), Some("ACTIVE")), "{made}");
    let made = admin(&["volume", "create", "--size", "2", "cli-volume"]).await;
    assert_eq!(made["size"], 2);
    let made = admin(&["image", "create", "cli-image"]).await;
    assert_eq!(made["name"], "cli-image");
    let made = admin(&["network", "create", "cli-network"]).await;
    assert_eq!(made["project_id"], "prj-admin");
    let made = admin(&["project", "create", "cli-project"]).await;
    assert_eq!(made["name"], "cli-project");
    for args in [
        ["server", "delete", "cli-server"],
        ["volume", "delete", "cli-volume"],
        ["image", "delete", "cli-image"],
        ["network", "delete", "cli-network"],
        ["project", "delete", "cli-project"],
    ] {
        openstack(&url, "admin", "admin", &args).await;
    }
    let servers = column(&admin(&["server", "list"]).await, "Name");
    assert!(!servers.contains(&"cli-server".to_owned()), "{servers:?}");
    let images = column(&admin(&["image", "list"]).await, "Name");
    assert!(!images.contains(&"cli-image".to_owned()), "{images:?}");

    // A member of one project: her projects, her project's servers, no --all-projects.
    let hers = json(&url, "alice", "web-team", &["project", "list"]).await;
    assert_eq!(column(&hers, "Name"), ["web-team"]);
    let servers = json(&url, "alice", "web-team", &["server", "list"]).await;
    assert_eq!(servers.as_array().map(Vec::len), Some(8));
    let (ok, _, err) = try_openstack(&url, "alice", "web-team", &["server", "list", "--all-projects"]).await;
    assert!(!ok && err.contains("403"), "all_tenants is for admins: {err}");
    let (ok, _, err) = try_openstack(&url, "alice", "data-team", &["token", "issue"]).await;
    assert!(!ok, "alice has no role on data-team: {err}");
}
