//! The contract: the OpenAPI document at `/openapi.json` and the explorer at `/docs`
//! (which must load nothing from the internet), the committed generated files against
//! what the code generates, and `stalecast gen --check` failing on drift.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use stalecast_tests::{child, files_under, generated_bindings, generated_openapi, spawn_app};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test]
async fn the_openapi_document_is_served_and_is_the_generated_one() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/openapi.json")).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("type").starts_with("application/json"));
    let served: Value = response.json().await.expect("json");
    assert_eq!(served, generated_openapi());
    // The committed file (checked against the code by `make check-gen`) is the same document.
    let committed = std::fs::read_to_string(root().join("openapi/openapi.json")).expect("openapi/openapi.json");
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

#[test]
fn the_committed_bindings_are_what_the_code_generates() {
    let generated = generated_bindings();
    let dir = root().join("bindings");
    let committed = files_under(&dir);
    let names: BTreeSet<String> = generated.keys().cloned().collect();
    assert_eq!(committed, names, "bindings/ holds exactly the generated files (run `make gen`)");
    for (name, text) in &generated {
        let on_disk = std::fs::read_to_string(dir.join(name)).expect("committed file");
        assert!(on_disk == *text, "bindings/{name} differs from what the code generates (run `make gen`)");
    }
    assert!(generated["router.ts"].contains("AppRouter"), "{}", generated["router.ts"]);
}

/// Copies `bindings/` and `openapi/openapi.json` into a fresh directory.
fn copy_of_the_generated_files() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let bindings = dir.path().join("bindings");
    for name in files_under(&root().join("bindings")) {
        let to = bindings.join(&name);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(root().join("bindings").join(&name), to).expect("copy");
    }
    let openapi = dir.path().join("openapi.json");
    std::fs::copy(root().join("openapi/openapi.json"), &openapi).expect("copy");
    (dir, bindings, openapi)
}

#[tokio::test]
async fn gen_check_passes_on_the_committed_files_and_fails_naming_a_changed_one() {
    let (_dir, bindings, openapi) = copy_of_the_generated_files();
    let check = |bindings: PathBuf, openapi: PathBuf| async move {
        let (bindings, openapi) = (bindings.to_string_lossy().into_owned(), openapi.to_string_lossy().into_owned());
        child::run(&["gen", "--check", "--bindings", &bindings, "--openapi", &openapi], &[]).await
    };
    let (status, output) = check(bindings.clone(), openapi.clone()).await;
    assert!(status.success(), "{status}: {output}");

    // One binding changed: exit 1, naming that file (and no other).
    let volume = bindings.join("Volume.ts");
    let original = std::fs::read_to_string(&volume).expect("Volume.ts");
    std::fs::write(&volume, original.replace("sizeGb", "sizeGB")).expect("edit");
    let (status, output) = check(bindings.clone(), openapi.clone()).await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains(&volume.display().to_string()), "{output}");
    assert!(!output.contains("openapi.json"), "{output}");
    std::fs::write(&volume, original).expect("restore");

    // A file the code does not generate, and a changed OpenAPI document.
    let stray = bindings.join("Stray.ts");
    std::fs::write(&stray, "export type Stray = number;\n").expect("stray");
    let document = std::fs::read_to_string(&openapi).expect("openapi");
    std::fs::write(&openapi, document.replacen("\"openapi\"", "\"openapi \"", 1)).expect("edit");
    let (status, output) = check(bindings.clone(), openapi.clone()).await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains(&stray.display().to_string()), "{output}");
    assert!(output.contains(&openapi.display().to_string()), "{output}");
    assert!(!output.contains("Volume.ts"), "{output}");
}
