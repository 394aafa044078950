//! OpenStack as deployed, against the simulator: what the simulator answers as the real
//! services do (version documents, catalog URLs, per-project tokens, roles, filters,
//! pages), and what Stalecast's client makes of it (every page, a member's projects,
//! creates as Nova wants them, the cloud's refusals with their codes, region and
//! interface). The same behaviours against the real Keystone, Glance and Cinder are in
//! `tests/tests/openstack` (`make test-openstack`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast_tests::{StandaloneSim, UpstreamClient, os_environment, spawn_app, spawn_app_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A token of `user`'s scoped to `project` (by name) from the simulator's Keystone, or
/// Keystone's status when it refuses.
async fn token(url: &str, user: &str, password: &str, project: &str) -> Result<(String, Value), StatusCode> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    let response = reqwest::Client::new().post(format!("{url}/v3/auth/tokens")).json(&body).send().await.expect("auth");
    if response.status() != StatusCode::CREATED {
        return Err(response.status());
    }
    let secret = response.headers()["x-subject-token"].to_str().expect("token").to_owned();
    Ok((secret, response.json().await.expect("json")))
}

/// `GET url` with `token`: status and JSON body (`null` when there is none).
async fn get(url: &str, token: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new().get(url).header("x-auth-token", token).send().await.expect("get");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn count(body: &Value, key: &str) -> usize {
    body[key].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn version_documents_and_catalog_urls_are_where_real_deployments_have_them() {
    let sim = StandaloneSim::start(Duration::from_secs(3600)).await;
    let url = sim.url.clone();
    let anonymous = |path: &str| {
        let url = format!("{url}{path}");
        async move {
            let response = reqwest::get(url).await.expect("get");
            (response.status(), response.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = anonymous("/v3").await;
    assert_eq!((status, &body["version"]["id"]), (StatusCode::OK, &json!("v3.14")), "{body}");
    let (status, body) = anonymous("/").await;
    assert_eq!(status, StatusCode::MULTIPLE_CHOICES, "{body}");
    assert!(body["versions"]["values"][0]["links"][0]["href"].as_str().is_some_and(|h| h.ends_with("/v3/")));
    let (status, body) = anonymous("/compute/v2.1").await;
    assert_eq!((status, &body["version"]["version"]), (StatusCode::OK, &json!("2.96")), "{body}");
    let (_, body) = anonymous("/compute/").await;
    assert_eq!(count(&body, "versions"), 2);
    let (status, body) = anonymous("/image").await;
    assert_eq!(status, StatusCode::MULTIPLE_CHOICES, "Glance's root: {body}");
    assert!(body["versions"][0]["links"][0]["href"].as_str().is_some_and(|h| h.ends_with("/image/v2/")));
    let (_, body) = anonymous("/network").await;
    assert_eq!(body["versions"][0]["id"], "v2.0");
    let (_, body) = anonymous("/volume/v3").await;
    assert_eq!(body["versions"][0]["version"], "3.71");

    // A token says who, where, with which roles, and the catalog as deployments have it.
    let (_, body) = token(&url, "alice", "alice", "web-team").await.expect("alice");
    let token_body = &body["token"];
    assert_eq!((&token_body["user"]["id"], &token_body["project"]["id"]), (&json!("usr-alice"), &json!("prj-web")));
    let roles: Vec<&str> =
        token_body["roles"].as_array().expect("roles").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(roles, ["member", "reader"], "member implies reader");
    let endpoint = |kind: &str| {
        token_body["catalog"].as_array().expect("catalog").iter().find(|e| e["type"] == kind).expect(kind)["endpoints"]
            [0]["url"]
            .as_str()
            .expect("url")
            .to_owned()
    };
    assert_eq!(endpoint("image"), format!("{url}/image"), "unversioned, as Glance registers itself");
    assert_eq!(endpoint("network"), format!("{url}/network"));
    assert_eq!(endpoint("volumev3"), format!("{url}/volume/v3/prj-web"), "Cinder's URL names the project");
    assert_eq!(endpoint("compute"), format!("{url}/compute/v2.1"));
    sim.stop().await;
}

#[tokio::test]
async fn tokens_are_scoped_to_a_project_and_the_roles_on_it_decide() {
    let sim = StandaloneSim::start(Duration::from_secs(3600)).await;
    let url = sim.url.clone();
    let (alice, _) = token(&url, "alice", "alice", "web-team").await.expect("alice in web-team");
    assert_eq!(token(&url, "alice", "alice", "data-team").await.err(), Some(StatusCode::UNAUTHORIZED), "no role there");
    assert_eq!(token(&url, "alice", "wrong", "web-team").await.err(), Some(StatusCode::UNAUTHORIZED));

    // Her project's volumes; another project in the URL is refused as Cinder refuses it.
    let (status, body) = get(&format!("{url}/volume/v3/prj-web/volumes/detail"), &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["volumes"].as_array().expect("volumes").iter().all(|v| v["os-vol-tenant-attr:tenant_id"] == "prj-web")
    );
    assert_eq!(count(&body, "volumes"), 12);
    let (status, body) = get(&format!("{url}/volume/v3/prj-data/volumes/detail"), &alice).await;
    assert_eq!((status, &body["badRequest"]["message"]), (StatusCode::BAD_REQUEST, &json!("Malformed request url")));
    let (status, body) = get(&format!("{url}/compute/v2.1/prj-data/servers"), &alice).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "Nova's legacy URL with a project: {body}");
    let (status, body) = get(&format!("{url}/compute/v2.1/prj-web/servers"), &alice).await;
    assert_eq!((status, count(&body, "servers")), (StatusCode::OK, 8), "{body}");
    // Everyone's only for admins: Nova refuses, Cinder ignores the parameter.
    let (status, _) = get(&format!("{url}/compute/v2.1/servers/detail?all_tenants=1"), &alice).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = get(&format!("{url}/volume/v3/prj-web/volumes/detail?all_tenants=1"), &alice).await;
    assert_eq!(count(&body, "volumes"), 12);
    // Keystone: her projects, not everyone's; role assignments are an admin's to read.
    let (_, body) = get(&format!("{url}/v3/auth/projects"), &alice).await;
    assert_eq!(body["projects"][0]["id"], "prj-web");
    assert_eq!(count(&body, "projects"), 1);
    assert_eq!(get(&format!("{url}/v3/projects"), &alice).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get(&format!("{url}/v3/role_assignments"), &alice).await.0, StatusCode::FORBIDDEN);
    let (admin, _) = token(&url, "admin", "stalecast", "admin").await.expect("admin");
    let (_, body) = get(&format!("{url}/v3/role_assignments?scope.project.id=prj-data&include_names"), &admin).await;
    let assigned: Vec<(String, String)> = body["role_assignments"]
        .as_array()
        .expect("assignments")
        .iter()
        .map(|a| {
            (a["user"]["name"].as_str().unwrap_or("?").to_owned(), a["role"]["name"].as_str().unwrap_or("?").to_owned())
        })
        .collect();
    assert_eq!(assigned, [("admin".to_owned(), "admin".to_owned()), ("bob".to_owned(), "reader".to_owned())]);

    // A reader may look, not change.
    let (bob, _) = token(&url, "bob", "bob", "data-team").await.expect("bob");
    let created = reqwest::Client::new()
        .post(format!("{url}/volume/v3/prj-data/volumes"))
        .header("x-auth-token", &bob)
        .json(&json!({"volume": {"size": 1, "name": "nope"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::FORBIDDEN);

    // Validation and revocation.
    let check = |subject: String| {
        let (url, admin) = (url.clone(), admin.clone());
        async move {
            reqwest::Client::new()
                .get(format!("{url}/v3/auth/tokens"))
                .header("x-auth-token", admin)
                .header("x-subject-token", subject)
                .send()
                .await
                .expect("validate")
                .status()
        }
    };
    assert_eq!(check(alice.clone()).await, StatusCode::OK);
    let revoked = reqwest::Client::new()
        .delete(format!("{url}/v3/auth/tokens"))
        .header("x-auth-token", &alice)
        .header("x-subject-token", &alice)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(check(alice.clone()).await, StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{url}/volume/v3/prj-web/volumes"), &alice).await.0, StatusCode::UNAUTHORIZED);
    sim.stop().await;
}

#[tokio::test]
async fn listings_take_filters_all_tenants_limit_and_marker() {
    let sim = StandaloneSim::start(Duration::from_secs(3600)).await;
    let url = sim.url.clone();
    let (admin, _) = token(&url, "admin", "stalecast", "admin").await.expect("admin");
    let servers = |query: &str| {
        let (url, admin) = (url.clone(), admin.clone());
        let query = query.to_owned();
        async move { get(&format!("{url}/compute/v2.1/servers/detail{query}"), &admin).await.1 }
    };
    assert_eq!(count(&servers("").await, "servers"), 8, "the token's project only");
    assert_eq!(count(&servers("?all_tenants=1").await, "servers"), 24);
    assert_eq!(count(&servers("?all_tenants=1&project_id=prj-web").await, "servers"), 8);
    assert_eq!(count(&servers("?all_tenants=1&status=SHUTOFF").await, "servers"), 4);
    let page = servers("?all_tenants=1&limit=10").await;
    assert_eq!(count(&page, "servers"), 10);
    let next = page["servers_links"][0]["href"].as_str().expect("next link").to_owned();
    let (_, second) = get(&next, &admin).await;
    assert_eq!(count(&second, "servers"), 10);
    assert_ne!(second["servers"][0]["id"], page["servers"][0]["id"]);
    let (status, _) = get(&format!("{url}/compute/v2.1/servers/detail?marker=nope"), &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Glance: pages of 25 with a `next` path; `id=in:`.
    let seeded = reqwest::Client::new()
        .post(format!("{url}/_sim/seed"))
        .json(&json!({"images": 40}))
        .send()
        .await
        .expect("seed");
    assert!(seeded.status().is_success());
    let (_, first) = get(&format!("{url}/image/v2/images"), &admin).await;
    assert_eq!(count(&first, "images"), 25);
    let next = first["next"].as_str().expect("next").to_owned();
    assert!(next.starts_with("/v2/images?marker="), "{next}");
    let (_, rest) = get(&format!("{url}/image{next}"), &admin).await;
    assert_eq!(count(&rest, "images"), 20);
    assert!(rest.get("next").is_none());
    let (_, two) = get(&format!("{url}/image/v2/images?id=in:img-cirros,img-windows"), &admin).await;
    assert_eq!(count(&two, "images"), 2);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalecast_reads_every_page_of_every_listing() {
    let app = spawn_app().await;
    // Past Glance's page of 25, past Cinder's and Nova's of 1,000.
    let (status, _) = app.seed(json!({"images": 60, "volumes": 1100, "servers": 1000, "seed": 3})).await;
    assert_eq!(status, StatusCode::OK);
    app.wait_for_volumes(36 + 1100, Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, images) = app.query("images.list", None).await;
        let (_, servers) = app.query("compute.servers.list", None).await;
        let have = (count(&images["result"], "data"), count(&servers["result"], "data"));
        if have == (65, 1024) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "images and servers listed: {have:?}, not (65, 1024)");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let requests = app.sim_requests().await;
    assert!(requests["GET images"] >= 3 && requests["GET volumes"] >= 2, "read page by page: {requests:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_her_projects_and_creates_in_them() {
    let sim = StandaloneSim::start(Duration::from_secs(3600)).await;
    let url = sim.url.clone();
    let app = spawn_app_with(|c| {
        c.upstream = Some(url.clone());
        c.os_user = Some("alice".into());
        c.os_password = Some("alice".into());
        c.os_project = Some("web-team".into());
    })
    .await;
    let (status, body) = app.query("projects.list", None).await;
    assert_eq!(status, StatusCode::OK, "from /v3/auth/projects: {body}");
    assert_eq!(
        body["result"]["data"].as_array().map(|p| p.iter().map(|p| p["id"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("prj-web")])
    );
    let (_, body) = app.query("compute.servers.list", None).await;
    let servers = body["result"]["data"].as_array().expect("servers").clone();
    assert_eq!(servers.len(), 8);
    assert!(servers.iter().all(|s| s["projectId"] == "prj-web"));
    let (status, body) =
        app.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "hers", "sizeGb": 1})).await;
    assert_eq!((status, &body["result"]["data"]["projectId"]), (StatusCode::OK, &json!("prj-web")), "{body}");
    app.shutdown().await;
    sim.stop().await;
}

#[tokio::test]
async fn servers_are_created_as_nova_wants_them() {
    let app = spawn_app().await;
    let create = |input: Value| app.mutate("compute.servers.create", input);
    // A flavor by id, in another project than the service account's.
    let (status, body) =
        create(json!({"projectId": "prj-data", "name": "by-id", "flavor": "4", "imageId": "img-cirros"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let server = &body["result"]["data"];
    // Nova 2.47 embeds the flavor (by name) in the server: the microversion was sent.
    assert_eq!((&server["projectId"], &server["flavor"]), (&json!("prj-data"), &json!("m1.large")), "{server}");
    let id = server["id"].as_str().expect("id").to_owned();
    let stored =
        app.sim().expect("sim").world().servers.iter().find(|s| s["id"] == id.as_str()).cloned().expect("made");
    assert_eq!(stored["tenant_id"], "prj-data", "created with a token of its project");
    let (status, body) =
        create(json!({"projectId": "prj-web", "name": "huge", "flavor": "m9.huge", "imageId": "img-cirros"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "input.flavor: no flavor named or with id \"m9.huge\" in project prj-web");
    let (status, body) = create(json!({"projectId": "prj-web", "name": "imageless"})).await;
    assert_eq!((status, &body["error"]["message"]), (StatusCode::BAD_REQUEST, &json!("Missing imageRef attribute")));
    app.shutdown().await;
}

#[tokio::test]
async fn the_clouds_refusals_keep_their_code_and_message() {
    let app = spawn_app().await;
    app.wait_for_readiness(200).await;
    // 401 last: the cloud refusing the user's own token makes Stalecast read the
    // session's memberships again, and with every call failing that ends the session.
    for (upstream, code) in [
        (403, "FORBIDDEN"),
        (404, "NOT_FOUND"),
        (409, "CONFLICT"),
        (413, "PAYLOAD_TOO_LARGE"),
        (429, "TOO_MANY_REQUESTS"),
        (401, "UNAUTHORIZED"),
    ] {
        app.set_faults(json!({"errorRate": 1.0, "errorStatus": upstream})).await;
        let (status, body) =
            app.mutate("storage.volumes.create", json!({"projectId": "prj-web", "name": "refused", "sizeGb": 1})).await;
        assert_eq!((status.as_u16(), &body["error"]["data"]["code"]), (upstream, &json!(code)), "{body}");
        assert_eq!(body["error"]["message"], "simulated failure", "the cloud's own message");
    }
    app.set_faults(json!({})).await;
    app.shutdown().await;
}

#[tokio::test]
async fn the_region_and_interface_choose_the_endpoint() {
    let sim = StandaloneSim::start(Duration::from_secs(3600)).await;
    let url = format!("{}/v3", sim.url);
    let environment = |region: &str, interface: &str| {
        os_environment(
            &[
                ("OS_AUTH_URL", &url),
                ("OS_USERNAME", "admin"),
                ("OS_PASSWORD", "stalecast"),
                ("OS_PROJECT_NAME", "admin"),
                ("OS_REGION_NAME", region),
                ("OS_INTERFACE", interface),
            ],
            None,
        )
    };
    let elsewhere = environment("RegionTwo", "public");
    let app = spawn_app_with(move |c| c.os_environment = elsewhere).await;
    let (status, body) = app.query("images.list", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "the simulator has no RegionTwo: {body}");
    app.shutdown().await;
    let internal = environment("RegionOne", "internal");
    let app = spawn_app_with(move |c| c.os_environment = internal).await;
    let (status, body) = app.query("images.list", None).await;
    assert_eq!((status, count(&body["result"], "data")), (StatusCode::OK, 5), "{body}");
    app.shutdown().await;
    sim.stop().await;
}

/// A cloud whose Glance never stops paging: each page of one image links to the next
/// (`endless`), or back to itself. Keystone issues an admin token with Glance in its
/// catalog; every other request gets a page.
async fn paging_forever(endless: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let base = url.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let base = base.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    // One request head (these requests have no body but the login's, which fits).
                    let mut request = Vec::new();
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request).into_owned();
                    let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let (status, extra, body) = if head.starts_with("POST") {
                        let token = json!({"token": {"expires_at": "2999-01-01T00:00:00.000000Z", "roles": [{"name": "admin"}],
                            "project": {"id": "p"}, "user": {"id": "u"},
                            "catalog": [{"type": "image", "endpoints": [{"interface": "public", "url": format!("{base}/image/v2")}]}]}});
                        ("201 Created", "x-subject-token: t\r\n", token.to_string())
                    } else {
                        let n: u64 = target.rsplit("marker=").next().and_then(|m| m.parse().ok()).unwrap_or(0);
                        let next = if endless { n + 1 } else { n.max(1) };
                        let page = json!({"images": [{"id": format!("i{n}"), "status": "active"}], "next": format!("/v2/images?marker={next}")});
                        ("200 OK", "", page.to_string())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_never_ends_stops_at_the_page_bound_with_a_clear_error() {
    let endless = UpstreamClient::new(&format!("{}/v3", paging_forever(true).await), "any");
    let error = endless.images().await.expect_err("a thousand pages and more");
    assert!(error.contains("goes on past 1000 pages (1000 records so far)"), "{error}");
    let looping = UpstreamClient::new(&format!("{}/v3", paging_forever(false).await), "any");
    let error = looping.images().await.expect_err("a page that links back");
    assert!(error.contains("links back to a page it already sent"), "{error}");
}
