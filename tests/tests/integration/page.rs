//! Paged queries: `…page({projectId?, search?, status?, sort?, limit?, cursor?})` walks
//! every matching record exactly once, in order, even while records are added between
//! pages; counts the matches; shares one answer per question (`ETag`, 304); and refuses
//! bad input with a 400 that names the field — never a 500.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast_tests::{TestApp, encode, spawn_app};

/// `path` with `input`: its answer's data.
async fn page(app: &TestApp, path: &str, input: Value) -> Value {
    let (status, body) = app.query(path, Some(input.clone())).await;
    assert_eq!(status, StatusCode::OK, "{path} {input}: {body}");
    body["result"]["data"].clone()
}

/// Every page of `input`, following `nextCursor`, calling `between` after each page but
/// the last: the records in the order handed out, and the first page's `total`.
async fn walk(app: &TestApp, path: &str, input: Value, mut between: impl AsyncFnMut(usize)) -> (Vec<Value>, u64) {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    for n in 0.. {
        let mut asked = input.clone();
        if let Some(cursor) = &cursor {
            asked["cursor"] = json!(cursor);
        }
        let answer = page(app, path, asked).await;
        total.get_or_insert(answer["total"].as_u64().expect("total"));
        records.extend(answer["items"].as_array().expect("items").iter().cloned());
        assert!(n < 1_000, "{path}: the pages never end");
        match answer["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert_eq!(answer["nextCursor"], Value::Null, "{answer}");
                break;
            }
        }
        between(n).await;
    }
    (records, total.unwrap_or_default())
}

/// Which records of a list a page's filters keep.
type Keep<'a> = dyn Fn(&Value) -> bool + 'a;

fn ids(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["id"].as_str().expect("id").to_owned()).collect()
}

async fn list(app: &TestApp, path: &str) -> Vec<Value> {
    let (status, body) = app.query(path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["result"]["data"].as_array().expect("list").clone()
}

/// `records` in the order a page sorts them: by `key` (numbers as numbers), then id.
fn sorted(mut records: Vec<Value>, key: &str, descending: bool) -> Vec<String> {
    records.sort_by(|a, b| {
        let by_key = match (&a[key], &b[key]) {
            (Value::Number(x), Value::Number(y)) => x.as_u64().cmp(&y.as_u64()),
            (x, y) => x.as_str().cmp(&y.as_str()),
        };
        let order = by_key.then_with(|| a["id"].as_str().cmp(&b["id"].as_str()));
        if descending { order.reverse() } else { order }
    });
    ids(&records)
}

#[tokio::test]
async fn walking_the_pages_yields_every_record_once_in_order_while_volumes_are_made() {
    let app = spawn_app().await;
    let before = list(&app, "storage.volumes.list").await;
    assert!(before.len() > 20, "the simulator seeds enough volumes to page through");

    // Two volumes made after the first page: one that sorts before it (not seen: the
    // walk is past it) and one after (seen, at its place).
    let (walked, total) = walk(&app, "storage.volumes.page", json!({ "limit": 7 }), async |n| {
        if n == 0 {
            app.create_volume("aaa-before-the-cursor").await;
            app.create_volume("zzz-after-the-cursor").await;
        }
    })
    .await;
    assert_eq!(total, before.len() as u64, "the first page counted what was there");
    let now = list(&app, "storage.volumes.list").await;
    let expected = sorted(now.into_iter().filter(|v| v["name"] != "aaa-before-the-cursor").collect(), "name", false);
    let walked_ids = ids(&walked);
    assert_eq!(walked_ids.iter().collect::<BTreeSet<_>>().len(), walked_ids.len(), "a record twice: {walked_ids:?}");
    assert_eq!(walked_ids, expected);
    assert!(walked.iter().any(|v| v["name"] == "zzz-after-the-cursor"));
    assert_eq!(walked.iter().find(|v| v["name"] == "vol-01"), before.iter().find(|v| v["name"] == "vol-01"), "whole");

    // Asked again from the start, the new first page has both, and the new total.
    let first = page(&app, "storage.volumes.page", json!({ "limit": 7 })).await;
    assert_eq!(first["items"][0]["name"], "aaa-before-the-cursor", "{first}");
    assert_eq!(first["total"], json!(before.len() + 2));
}

#[tokio::test]
async fn filters_search_and_sorts_answer_what_the_list_holds() {
    let app = spawn_app().await;
    let volumes = list(&app, "storage.volumes.list").await;

    // By project, by status (ignoring case), both; each in some order.
    let attached = volumes.iter().find(|v| v["status"] == "in-use").expect("an attached volume");
    let project = attached["projectId"].as_str().expect("projectId").to_owned();
    let other =
        volumes.iter().find(|v| v["projectId"] != project.as_str()).expect("another project")["projectId"].clone();
    let cases: [(Value, &Keep<'_>, &str, bool); 3] = [
        (
            json!({ "projectId": project, "status": "IN-USE", "sort": "-sizeGb", "limit": 2 }),
            &|v| v["projectId"] == project.as_str() && v["status"] == "in-use",
            "sizeGb",
            true,
        ),
        (
            json!({ "status": "Available", "sort": "sizeGb", "limit": 4 }),
            &|v| v["status"] == "available",
            "sizeGb",
            false,
        ),
        (json!({ "projectId": other, "sort": "-name", "limit": 3 }), &|v| v["projectId"] == other, "name", true),
    ];
    for (input, keep, key, descending) in cases {
        let matching: Vec<Value> = volumes.iter().filter(|v| keep(v)).cloned().collect();
        assert!(!matching.is_empty() && matching.len() < volumes.len(), "{input}: filters something");
        let (walked, total) = walk(&app, "storage.volumes.page", input.clone(), async |_| {}).await;
        assert_eq!(total, matching.len() as u64, "{input}");
        assert_eq!(ids(&walked), sorted(matching, key, descending), "{input}");
    }

    // Search: a case-insensitive part of the name or of the id.
    let some_id = volumes[3]["id"].as_str().expect("id").to_owned();
    let part = some_id[some_id.len() - 6..].to_uppercase();
    let by_id = page(&app, "storage.volumes.page", json!({ "search": part })).await;
    assert!(ids(by_id["items"].as_array().expect("items")).contains(&some_id), "{by_id}");
    let by_name = page(&app, "storage.volumes.page", json!({ "search": "VOL-1", "limit": 500 })).await;
    let contains = |v: &Value, field: &str| v[field].as_str().is_some_and(|s| s.to_lowercase().contains("vol-1"));
    let named: Vec<Value> = volumes.iter().filter(|v| contains(v, "name") || contains(v, "id")).cloned().collect();
    assert!(named.len() > 5, "{named:?}");
    assert_eq!(by_name["total"], json!(named.len()));
    assert_eq!(ids(by_name["items"].as_array().expect("items")), sorted(named, "name", false));
    let nothing = page(&app, "storage.volumes.page", json!({ "search": "no such volume" })).await;
    assert_eq!(
        (nothing["items"].clone(), nothing["total"].clone(), nothing["nextCursor"].clone()),
        (json!([]), json!(0), Value::Null)
    );

    // Every collection pages, by each of its sort keys, to what its list holds.
    for (list_path, page_path, keys) in [
        ("projects.list", "projects.page", &["name"][..]),
        ("compute.servers.list", "compute.servers.page", &["name", "created", "status"][..]),
        ("images.list", "images.page", &["name", "sizeBytes", "status"][..]),
        ("networks.list", "networks.page", &["name"][..]),
        ("storage.volumes.list", "storage.volumes.page", &["createdAt", "status"][..]),
        ("storage.snapshots.list", "storage.snapshots.page", &["name", "createdAt", "sizeGb", "status"][..]),
        ("networks.subnets.list", "networks.subnets.page", &["name", "cidr", "createdAt"][..]),
        ("compute.flavors.list", "compute.flavors.page", &["name", "vcpus", "ramMb", "diskGb"][..]),
    ] {
        let all = list(&app, list_path).await;
        for key in keys {
            for descending in [false, true] {
                let sort = if descending { format!("-{key}") } else { key.to_string() };
                let (walked, total) = walk(&app, page_path, json!({ "sort": sort, "limit": 3 }), async |_| {}).await;
                assert_eq!(total, all.len() as u64, "{page_path} {sort}");
                assert_eq!(ids(&walked), sorted(all.clone(), key, descending), "{page_path} {sort}");
            }
        }
    }
}

#[tokio::test]
async fn a_page_is_one_shared_answer_revalidated_with_304_and_its_seq_leads_to_changes() {
    let app = spawn_app().await;
    let url = |input: Value| app.url(&format!("/trpc/storage.volumes.page?input={}", encode(&input.to_string())));
    let first = app.http.get(url(json!({}))).send().await.expect("page");
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let first = first.bytes().await.expect("body");
    // The same question put another way: the same answer.
    let again = app.http.get(url(json!({ "sort": "name", "limit": 50, "search": "" }))).send().await.expect("again");
    assert_eq!(again.headers()["etag"].to_str().expect("etag"), etag);
    assert_eq!(again.bytes().await.expect("body"), first);
    let revalidated = app.http.get(url(json!({}))).header("if-none-match", &etag).send().await.expect("conditional");
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert!(revalidated.bytes().await.expect("body").is_empty());

    // A change makes it another answer, and the seq it stood at asks what changed.
    let data: Value = serde_json::from_slice::<Value>(&first).expect("json")["result"]["data"].clone();
    let seq = data["seq"].as_u64().expect("seq");
    let made = app.create_volume("after-the-page").await;
    let changed = app.http.get(url(json!({}))).header("if-none-match", &etag).send().await.expect("after");
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().expect("etag"), etag);
    let (_, delta) = app.query("storage.volumes.changes", Some(json!({ "since": seq }))).await;
    let upserts = delta["result"]["data"]["upserts"].as_array().expect("upserts").clone();
    assert_eq!(ids(&upserts), vec![made], "{delta}");
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_never_a_500() {
    let app = spawn_app().await;
    let refused = async |input: Value, field: &str| {
        let (status, body) = app.query("storage.volumes.page", Some(input.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}: {body}");
        assert_eq!(body["error"]["data"]["httpStatus"], 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_else(|| panic!("{input}: {body}")).to_owned();
        assert!(message.starts_with(&format!("input.{field}")), "{input}: {message}");
        message
    };
    refused(json!({ "limit": 0 }), "limit").await;
    refused(json!({ "limit": 501 }), "limit").await;
    refused(json!({ "limit": -1 }), "limit").await;
    refused(json!({ "limit": "ten" }), "limit").await;
    refused(json!({ "limit": 1e12 }), "limit").await;
    let unknown = refused(json!({ "sort": "bogus" }), "sort").await;
    assert!(unknown.contains("\"bogus\"") && unknown.contains("name, createdAt, sizeGb, status"), "{unknown}");
    refused(json!({ "sort": "-sizeBytes" }), "sort").await;
    refused(json!({ "search": "s".repeat(256) }), "search").await;
    refused(json!({ "status": "s".repeat(65) }), "status").await;
    refused(json!({ "projectId": "p".repeat(65) }), "projectId").await;
    // `offset` is not an input: a cursor is.
    let (status, body) = app.query("storage.volumes.page", Some(json!({ "offset": 50 }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let cursor = page(&app, "storage.volumes.page", json!({ "search": "vol", "limit": 5 })).await["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    // Its own question takes it, with any limit.
    page(&app, "storage.volumes.page", json!({ "search": "VOL", "limit": 9, "cursor": cursor })).await;
    for other in [
        json!({ "search": "vol", "sort": "-name", "cursor": cursor }),
        json!({ "search": "vol-2", "cursor": cursor }),
        json!({ "search": "vol", "status": "available", "cursor": cursor }),
        json!({ "search": "vol", "projectId": "prj-web", "cursor": cursor }),
        json!({ "cursor": cursor }),
    ] {
        let message = refused(other, "cursor").await;
        assert!(message.contains("not a cursor of this query"), "{message}");
    }
    // Another collection's.
    let (status, body) = app.query("compute.servers.page", Some(json!({ "search": "vol", "cursor": cursor }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Tampered: one character flipped, wherever it is; cut short; made up.
    let mut tampered = Vec::new();
    for at in [0, cursor.len() / 2, cursor.len() - 1] {
        let mut bytes = cursor.clone().into_bytes();
        bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
        tampered.push(String::from_utf8(bytes).expect("ascii"));
    }
    tampered.extend([cursor[..cursor.len() - 3].to_owned(), "not a cursor".into(), "AAAAAAAA".into(), "%%%".into()]);
    for bad in tampered {
        let message = refused(json!({ "search": "vol", "limit": 5, "cursor": bad }), "cursor").await;
        assert!(message.contains("not a cursor of this query"), "{message}");
    }
    refused(json!({ "cursor": "A".repeat(4097) }), "cursor").await;
}
