//! The tRPC wire format: queries, mutations, batches and every bad-input case.

use serde_json::{Value, json};
use stalecast_tests::{encode, spawn_app, spawn_app_with};

fn error_code(body: &Value) -> &str {
    body["error"]["data"]["code"].as_str().unwrap_or_else(|| panic!("not an error envelope: {body}"))
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn queries_answer_in_the_trpc_envelope_with_camel_case_fields() {
    let app = spawn_app().await;
    let (status, body) = app.query("projects.list", None).await;
    assert_eq!(status, 200);
    let projects = body["result"]["data"].as_array().expect("projects");
    assert_eq!(projects.len(), 3);
    assert!(projects.iter().any(|p| p["id"] == "prj-web" && p["name"] == "web-team"));

    for path in ["compute.servers.list", "storage.volumes.list", "images.list", "networks.list"] {
        let (status, body) = app.query(path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body["result"]["data"].as_array().expect("list").is_empty(), "{path}");
    }
    let (_, body) = app.query("storage.volumes.list", Some(json!({"projectId": "prj-data"}))).await;
    let volumes = body["result"]["data"].as_array().expect("volumes");
    assert!(!volumes.is_empty());
    assert!(volumes.iter().all(|v| v["projectId"] == "prj-data" && v["sizeGb"].is_u64()));

    let id = volumes[0]["id"].clone();
    let (status, body) = app.query("storage.volumes.get", Some(json!({"id": id}))).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["data"]["id"], id);
    let (status, body) = app.query("compute.servers.get", Some(json!({"id": "srv-nope"}))).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "NOT_FOUND");
    app.shutdown().await;
}

#[tokio::test]
async fn mutations_change_the_cloud_and_answer_the_new_resource() {
    let app = spawn_app().await;
    let (status, body) = app
        .mutate(
            "compute.servers.create",
            json!({"projectId": "prj-web", "name": "api-1", "flavor": "m1.large", "imageId": "img-cirros"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let server = &body["result"]["data"];
    assert_eq!(server["status"], "BUILD");
    assert_eq!(server["flavor"], "m1.large");
    let id = server["id"].as_str().expect("id").to_owned();

    // A seeded running server can be stopped, then started; stopping twice conflicts.
    let (_, body) = app.query("compute.servers.list", Some(json!({"projectId": "prj-admin"}))).await;
    let running = body["result"]["data"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["status"] == "ACTIVE")
        .expect("an active server")["id"]
        .clone();
    let (status, body) = app.mutate("compute.servers.stop", json!({"id": running})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["data"]["status"], "SHUTOFF");
    let (status, body) = app.mutate("compute.servers.stop", json!({"id": running})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_code(&body), "CONFLICT");
    let (status, body) = app.mutate("compute.servers.start", json!({"id": running})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["data"]["status"], "ACTIVE");

    let (status, body) = app.mutate("compute.servers.delete", json!({"id": id})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["data"], json!({"id": id}));
    let (status, _) = app.query("compute.servers.get", Some(json!({"id": id}))).await;
    assert_eq!(status, 404, "the cache was refreshed before the answer");

    let volume = app.create_volume("scratch").await;
    let (status, _) = app.mutate("storage.volumes.delete", json!({"id": volume})).await;
    assert_eq!(status, 200);
    let (status, body) = app.mutate("storage.volumes.delete", json!({"id": volume})).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "NOT_FOUND");
    app.shutdown().await;
}

#[tokio::test]
async fn batches_answer_an_array_and_207_when_statuses_differ() {
    let app = spawn_app().await;
    let input = encode(&json!({"0": null, "1": {"projectId": "prj-web"}}).to_string());
    let response = app
        .http
        .get(app.url(&format!("/trpc/projects.list,storage.volumes.list?batch=1&input={input}")))
        .send()
        .await
        .expect("batch");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let results = body.as_array().expect("array");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["result"]["data"].as_array().expect("projects").len(), 3);
    assert!(results[1]["result"]["data"].as_array().expect("volumes").iter().all(|v| v["projectId"] == "prj-web"));

    let input = encode(&json!({"1": {"id": "vol-nope"}}).to_string());
    let response = app
        .http
        .get(app.url(&format!("/trpc/updates.state,storage.volumes.get,no.such?batch=1&input={input}")))
        .send()
        .await
        .expect("batch");
    assert_eq!(response.status(), 207);
    let body: Value = response.json().await.expect("json");
    assert!(body[0]["result"]["data"]["seq"].is_u64());
    assert_eq!(error_code(&body[1]), "NOT_FOUND");
    assert_eq!(body[1]["error"]["data"]["path"], "storage.volumes.get");
    assert_eq!(error_code(&body[2]), "NOT_FOUND");

    // Mutations batch over POST, with the inputs keyed by index in the body.
    let response = app
        .http
        .post(app.url("/trpc/storage.volumes.create,storage.volumes.create?batch=1"))
        .json(&json!({"0": {"projectId": "prj-web", "name": "a", "sizeGb": 1},
                      "1": {"projectId": "prj-web", "name": "b", "sizeGb": 2}}))
        .send()
        .await
        .expect("batch");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body[0]["result"]["data"]["name"], "a");
    assert_eq!(body[1]["result"]["data"]["sizeGb"], 2);
    app.shutdown().await;
}

#[tokio::test]
async fn updates_state_reports_the_last_update_of_each_type() {
    let app = spawn_app().await;
    app.create_volume("stateful").await;
    let (status, body) = app.query("updates.state", None).await;
    assert_eq!(status, 200);
    let state = &body["result"]["data"];
    assert_eq!(state["ringSize"], 4096);
    let types = state["types"].as_array().expect("types");
    assert_eq!(types.len(), 9, "the eight collections and the server's own figures");
    let volumes = types.iter().find(|t| t["type"] == "volumes").expect("volumes");
    assert_eq!(volumes["seq"], state["seq"]);
    assert!(volumes["ts"].as_u64().expect("ts") > 0);
    let images = types.iter().find(|t| t["type"] == "images").expect("images");
    assert_eq!(images["seq"], 0);
    app.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_names_the_problem() {
    let app = spawn_app_with(|c| c.max_body_bytes = 4096).await;
    let create = "storage.volumes.create";

    // Malformed JSON, in the body and in the query string.
    let response = app
        .http
        .post(app.url(&format!("/trpc/{create}")))
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .expect("req");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(error_code(&body), "PARSE_ERROR");
    let (status, body) = {
        let r = app.http.get(app.url("/trpc/projects.list?input=%7B%7D%7D")).send().await.expect("req");
        (r.status(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "PARSE_ERROR");

    // Wrong types, missing and unknown fields, out-of-range values: 400 naming the field.
    let cases = [
        (json!({"projectId": "prj-web", "name": "x", "sizeGb": "ten"}), "input.sizeGb"),
        (json!({"projectId": "prj-web", "name": "x", "sizeGb": -1}), "input.sizeGb"),
        (json!({"projectId": "prj-web", "name": "x", "sizeGb": 0}), "input.sizeGb"),
        (json!({"projectId": "prj-web", "sizeGb": 1}), "missing field `name`"),
        (json!({"projectId": "prj-web", "name": "x", "sizeGb": 1, "colour": "red"}), "unknown field `colour`"),
        (json!({"projectId": "prj-web", "name": "   ", "sizeGb": 1}), "input.name"),
        (json!({"projectId": "prj-nope", "name": "x", "sizeGb": 1}), "input.projectId"),
        (json!(["not", "an", "object"]), "input"),
    ];
    for (input, expected) in cases {
        let (status, body) = app.mutate(create, input.clone()).await;
        assert_eq!(status, 400, "{input}: {body}");
        assert_eq!(error_code(&body), "BAD_REQUEST");
        assert_eq!(body["error"]["code"], -32600);
        assert_eq!(body["error"]["data"]["httpStatus"], 400);
        assert!(error_message(&body).contains(expected), "{input}: {}", error_message(&body));
    }
    let (status, body) = app.query("storage.volumes.get", Some(json!({"id": 7}))).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("input.id"), "{body}");

    // Unknown procedure, unknown route under /trpc, wrong methods.
    let (status, body) = app.query("storage.volumes.lits", None).await;
    assert_eq!((status.as_u16(), error_code(&body)), (404, "NOT_FOUND"));
    let r = app.http.get(app.url("/trpc")).send().await.expect("req");
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.json::<Value>().await.expect("json")), "NOT_FOUND");
    let (status, body) = app.query(create, None).await;
    assert_eq!((status.as_u16(), error_code(&body)), (405, "METHOD_NOT_SUPPORTED"));
    let (status, body) = app.mutate("projects.list", json!(null)).await;
    assert_eq!((status.as_u16(), error_code(&body)), (405, "METHOD_NOT_SUPPORTED"));
    let r = app.http.delete(app.url("/trpc/projects.list")).send().await.expect("req");
    assert_eq!(r.status(), 405);
    let r = app.http.get(app.url("/trpc/projects.list,images.list")).send().await.expect("req");
    assert_eq!(r.status(), 400, "several paths without batch=1");

    // Oversized body: 413 with the envelope, whether the length is declared or streamed.
    let big = json!({"projectId": "prj-web", "name": "x", "sizeGb": 1, "description": "d".repeat(10_000)});
    let (status, body) = app.mutate(create, big.clone()).await;
    assert_eq!((status.as_u16(), error_code(&body)), (413, "PAYLOAD_TOO_LARGE"));
    let chunks = futures_util::stream::iter(
        big.to_string().into_bytes().chunks(1000).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let r = app
        .http
        .post(app.url(&format!("/trpc/{create}")))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(&r.json::<Value>().await.expect("json")), "PAYLOAD_TOO_LARGE");

    // Nothing of the above changed anything or hurt the server.
    let (status, body) = app.query("storage.volumes.list", None).await;
    assert_eq!(status, 200);
    assert!(body["result"]["data"].as_array().expect("volumes").iter().all(|v| v["name"] != "x"));
    app.shutdown().await;
}

#[tokio::test]
async fn query_answers_are_compressed_when_asked() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/trpc/compute.servers.list"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("req");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    app.shutdown().await;
}
