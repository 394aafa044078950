//! Delta queries: `…changes({since})` answers exactly what changed after a seq (records
//! whole, ids removed) and where the client then stands, a resync whenever the server
//! cannot say, never an error for a bad `since`; the change is readable as soon as its
//! update is heard; and clients asking the same question share one answer (`ETag`, 304).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stalecast_tests::{TestApp, spawn_app};

/// The bus's latest seq.
async fn bus_seq(app: &TestApp) -> u64 {
    let (_, body) = app.query("updates.state", None).await;
    body["result"]["data"]["seq"].as_u64().unwrap_or_else(|| panic!("updates.state: {body}"))
}

/// `storage.volumes.changes` with `input`: its answer's data.
async fn changes(app: &TestApp, input: Value) -> Value {
    let (status, body) = app.query("storage.volumes.changes", Some(input.clone())).await;
    assert_eq!(status, StatusCode::OK, "{input}: {body}");
    body["result"]["data"].clone()
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect()
}

#[tokio::test]
async fn changes_answer_what_each_write_changed_and_where_the_client_then_stands() {
    let app = spawn_app().await;
    let (_, list) = app.query("storage.volumes.list", None).await;
    let before = ids(&list["result"]["data"]).len();
    let since = bus_seq(&app).await;
    let nothing = changes(&app, json!({ "since": since })).await;
    assert_eq!(nothing["kind"], "changes", "{nothing}");
    assert_eq!((nothing["upserts"].clone(), nothing["deletes"].clone()), (json!([]), json!([])));

    let created = app.create_volume("delta-one").await;
    let after_create = changes(&app, json!({ "since": since })).await;
    assert_eq!(after_create["kind"], "changes");
    assert_eq!(ids(&after_create["upserts"]), vec![created.as_str()], "{after_create}");
    assert_eq!(after_create["upserts"][0]["name"], "delta-one", "the whole record");
    assert_eq!(after_create["deletes"], json!([]));
    let stands = after_create["seq"].as_u64().expect("seq");
    assert!(stands > since && stands <= bus_seq(&app).await);

    // From where it stands: nothing more.
    let current = changes(&app, json!({ "since": stands })).await;
    assert_eq!(
        (current["upserts"].clone(), current["deletes"].clone(), current["seq"].clone()),
        (json!([]), json!([]), json!(stands))
    );

    let (status, body) = app.mutate("storage.volumes.delete", json!({ "id": created })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after_delete = changes(&app, json!({ "since": stands })).await;
    assert_eq!((after_delete["upserts"].clone(), after_delete["deletes"].clone()), (json!([]), json!([created])));
    // From before both: made and removed since, so only removed (a client that holds
    // neither ignores the id).
    let both = changes(&app, json!({ "since": since })).await;
    assert_eq!((both["upserts"].clone(), both["deletes"].clone()), (json!([]), json!([created])), "{both}");

    // Applying the answers to the list gives the list.
    let (_, list) = app.query("storage.volumes.list", None).await;
    assert_eq!(ids(&list["result"]["data"]).len(), before);

    // One project's records only.
    let other = changes(&app, json!({ "since": since, "projectId": "prj-data" })).await;
    assert_eq!((other["upserts"].clone(), other["deletes"].clone()), (json!([]), json!([])), "{other}");
}

#[tokio::test]
async fn a_since_the_server_cannot_answer_for_is_a_resync_never_an_error() {
    let app = spawn_app().await;
    app.create_volume("delta-resync").await;
    let latest = bus_seq(&app).await;
    for since in [
        json!("abc"),
        json!(-1),
        json!(1.5),
        json!(null),
        json!(latest + 1_000),
        json!(0),
        json!({}),
        json!("9".repeat(400)),
    ] {
        let answer = changes(&app, json!({ "since": since })).await;
        assert_eq!(answer["kind"], "resync", "since {since}: {answer}");
        assert!(answer["seq"].as_u64().is_some(), "{answer}");
    }
    assert_eq!(changes(&app, json!({})).await["kind"], "resync", "no since at all");

    // Other input errors are errors, naming the field.
    let (status, body) =
        app.query("storage.volumes.changes", Some(json!({ "since": latest, "projectId": "p".repeat(65) }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("projectId")), "{body}");
    let (status, body) = app.query("storage.volumes.changes", Some(json!({ "since": latest, "limit": 5 }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("limit")), "{body}");
}

#[tokio::test]
async fn a_change_the_poller_announces_is_readable_as_soon_as_it_is_heard() {
    let app = spawn_app().await;
    let input = stalecast_tests::encode(&json!({ "types": ["volumes"] }).to_string());
    let mut stream = app.stream(&format!("input={input}"), None).await;
    stream.connected().await;
    let since = bus_seq(&app).await;
    let made = app.create_volume_out_of_band("prj-web", "behind-its-back", 3).await;
    let (_, update) = stream.next_data(Duration::from_secs(10)).await;
    let update = if update.get("data").is_some() { update["data"].clone() } else { update };
    assert_eq!(update["ids"], json!([made]), "{update}");
    // Asked at once, with the seq just before the update: the change is there.
    let seq = update["seq"].as_u64().expect("seq");
    let answer = changes(&app, json!({ "since": seq - 1 })).await;
    assert_eq!(ids(&answer["upserts"]), vec![made.as_str()], "{answer}");
    assert_eq!(answer["seq"], json!(seq));
    let answer = changes(&app, json!({ "since": since })).await;
    assert_eq!(ids(&answer["upserts"]), vec![made.as_str()], "{answer}");
}

#[tokio::test]
async fn clients_asking_the_same_question_share_one_answer_and_revalidate_with_304() {
    let app = spawn_app().await;
    let since = bus_seq(&app).await;
    app.create_volume("delta-shared").await;
    let after = bus_seq(&app).await;
    let url = |since: u64| {
        let input = stalecast_tests::encode(&json!({ "since": since }).to_string());
        app.url(&format!("/trpc/storage.volumes.changes?input={input}"))
    };
    let first = app.http.get(url(since)).send().await.expect("changes");
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let first = first.bytes().await.expect("body");
    let again = app.http.get(url(since)).send().await.expect("again");
    assert_eq!(again.headers()["etag"].to_str().expect("etag"), etag);
    assert_eq!(again.bytes().await.expect("body"), first);
    let revalidated = app.http.get(url(since)).header("if-none-match", &etag).send().await.expect("conditional");
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    // Up to date is another question, with another answer; and any seq after the last
    // volume change (another type's update moved the bus on) is that same question.
    let current = app.http.get(url(after)).send().await.expect("current");
    let current_tag = current.headers()["etag"].to_str().expect("etag").to_owned();
    assert_ne!(current_tag, etag);
    let later = app.publish("servers", None);
    assert!(later > after);
    let past_it = app.http.get(url(later)).send().await.expect("later");
    assert_eq!(past_it.headers()["etag"].to_str().expect("etag"), current_tag);
}
