//! The contract as served: the OpenAPI document at `/openapi.json` and the explorer at
//! `/docs`, which must load nothing from the internet.

use serde_json::Value;
use stalecast::openapi;
use stalecast_tests::spawn_app;

#[tokio::test]
async fn the_openapi_document_is_served_and_is_the_generated_one() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/openapi.json")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("type").starts_with("application/json"));
    let served: Value = response.json().await.expect("json");
    let generated = serde_json::to_value(openapi::document(&stalecast::rpc::registry())).expect("document");
    assert_eq!(served, generated);
    // The committed file (checked against the code by `make check-gen`) is the same document.
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json"))
        .expect("openapi/openapi.json");
    assert_eq!(served, serde_json::from_str::<Value>(&committed).expect("committed json"));
    assert!(served["paths"]["/trpc/storage.volumes.create"]["post"].is_object());
    app.shutdown().await;
}

#[tokio::test]
async fn the_explorer_is_served_with_everything_it_loads() {
    let app = spawn_app().await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let response = no_redirects.get(app.url("/docs")).send().await.expect("request");
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/docs/");

    let response = app.http.get(app.url("/docs/")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("type").starts_with("text/html"));
    let html = response.text().await.expect("html");
    let assets: Vec<&str> = ["src=\"", "href=\""]
        .iter()
        .flat_map(|attr| html.split(attr).skip(1).filter_map(|rest| rest.split('"').next()))
        .collect();
    assert!(assets.len() >= 4, "{html}");
    for asset in assets {
        assert!(!asset.contains("//"), "the explorer loads {asset} from elsewhere");
        let url = app.url(&format!("/docs/{}", asset.trim_start_matches("./")));
        let response = app.http.get(&url).send().await.expect("asset");
        assert_eq!(response.status(), 200, "{url}");
        let body = response.bytes().await.expect("body");
        assert!(!body.is_empty(), "{url}");
    }
    let init = app.http.get(app.url("/docs/swagger-initializer.js")).send().await.expect("init");
    let init = init.text().await.expect("js");
    assert!(init.contains("\"url\": \"/openapi.json\""), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "no online validator: {init}");
    assert!(init.contains("\"tryItOutEnabled\": true"), "{init}");
    app.shutdown().await;
}
