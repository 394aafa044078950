//! The web app at `/`: static files, the single-page app's fallback to `index.html`,
//! and that none of it shadows the API.

use std::path::PathBuf;

use stalecast_tests::spawn_app_with;

/// A stand-in for `web/dist`: `index.html` and one hashed asset.
fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/web")
}

const MARKER: &str = "stalecast-web-fixture";

#[tokio::test]
async fn serves_the_app_with_spa_fallback_without_shadowing_the_api() {
    let app = spawn_app_with(|c| c.web_dir = fixture()).await;
    let get = |path: &str, accept: &str| app.http.get(app.url(path)).header("accept", accept.to_owned()).send();

    // The app itself, and its pages on reload (a browser navigation or an extension-less path).
    for (path, accept) in [("/", "text/html"), ("/volumes", "text/html"), ("/servers/srv-0001", "*/*")] {
        let response = get(path, accept).await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        assert!(content_type.starts_with("text/html"), "{path}: {content_type}");
        assert_eq!(response.headers()["cache-control"], "no-cache", "{path}");
        assert!(response.text().await.expect("body").contains(MARKER), "{path}");
    }

    // A hashed asset: the file, cached for good. A missing one is a 404, not index.html.
    let response = get("/assets/app-0f3c.js", "*/*").await.expect("asset");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("ascii").contains("javascript"));
    assert!(response.headers()["cache-control"].to_str().expect("ascii").contains("immutable"));
    let response = get("/assets/gone-1234.js", "*/*").await.expect("missing asset");
    assert_eq!(response.status(), 404);
    assert!(!response.text().await.expect("body").contains(MARKER));

    // The API keeps its routes and its JSON, unknown procedures included.
    let (status, body) = app.query("projects.list", None).await;
    assert_eq!(status, 200);
    assert!(body["result"]["data"].is_array());
    let (status, body) = app.query("no.such.procedure", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["data"]["code"], "NOT_FOUND");
    let response = get("/trpc", "text/html").await.expect("trpc root");
    assert_eq!(response.status(), 404);
    assert!(!response.text().await.expect("body").contains(MARKER));
    assert_eq!(get("/healthz", "text/html").await.expect("healthz").status(), 200);
    // The explorer and its document keep their own routes too.
    let response = get("/docs/", "text/html").await.expect("docs");
    assert_eq!(response.status(), 200);
    assert!(!response.text().await.expect("body").contains(MARKER));
    let response = get("/openapi.json", "*/*").await.expect("openapi");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("body").contains("\"openapi\""));
    let mut stream = app.stream("", None).await;
    assert_eq!(stream.connected().await["reconnectAfterInactivityMs"], 15000);

    // Pages are read-only.
    let response = app.http.post(app.url("/volumes")).body("{}").send().await.expect("post");
    assert_eq!(response.status(), 405);
    app.shutdown().await;
}

#[tokio::test]
async fn without_a_built_app_the_root_says_how_to_build_it_and_the_api_still_answers() {
    let missing = std::env::temp_dir().join(format!("stalecast-no-web-{}", std::process::id()));
    let app = spawn_app_with(|c| c.web_dir = missing).await;
    let response = app.http.get(app.url("/")).send().await.expect("root");
    assert_eq!(response.status(), 503);
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/html"));
    let page = response.text().await.expect("body");
    assert!(page.contains("make web"), "{page}");
    assert!(page.contains("--web-dir"), "{page}");
    let (status, _) = app.query("projects.list", None).await;
    assert_eq!(status, 200);
    app.shutdown().await;
}
