//! The web app: the built dashboard (`--web-dir`, by default `web/dist`) served at `/`.
//!
//! It is the router's fallback, so it never shadows a route: `/trpc`, `/healthz`,
//! `/readyz` and `/docs` always win. A file that exists is served as is (Vite's hashed
//! `/assets/*` with a year-long immutable cache, everything else revalidated). A path
//! that names no file answers `index.html` when it is a page of the single-page app —
//! a browser navigation, or a path without a file extension — so `/volumes` survives a
//! reload; a missing `/assets/x.js` stays a 404. When the app was not built, every
//! `GET` it would answer gets a short page saying how to build it instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

/// A user the sign-in page offers to sign in as (the embedded simulator's).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DemoUser {
    pub user: String,
    pub password: String,
    /// What they may do, in words (`member of web-team`).
    pub about: String,
}

/// What the sign-in page shows besides the form.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInHints {
    /// Empty for a real cloud.
    pub demo_users: Vec<DemoUser>,
}

/// Where the sign-in page reads its [`SignInHints`].
pub const HINTS_PATH: &str = "/sign-in.json";

/// A router that answers every path with the app in `dir` (use it as the fallback), and
/// the sign-in page's hints.
pub fn routes(dir: PathBuf, hints: SignInHints) -> Router {
    let hints = Arc::new(hints);
    Router::new()
        .route(HINTS_PATH, axum::routing::get(move || std::future::ready(axum::Json(hints.as_ref().clone()))))
        .fallback(files)
        .with_state(Arc::new(dir))
}

/// Logs a warning at start when the web app is missing.
pub fn check(dir: &Path) {
    if !dir.join("index.html").is_file() {
        tracing::warn!(
            web_dir = %dir.display(),
            "the web app is not built (no index.html): `/` explains how; run `make web`"
        );
    }
}

/// The router's fallback: static files with the single-page app's fallback to
/// `index.html`.
async fn files(State(dir): State<Arc<PathBuf>>, request: Request) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")], "method not allowed\n")
            .into_response();
    }
    let dir = dir.as_path();
    let index = dir.join("index.html");
    if !tokio::fs::metadata(&index).await.is_ok_and(|m| m.is_file()) {
        return not_built(dir);
    }

    let path = request.uri().path().to_owned();
    let is_page = is_page_request(&request);
    let (parts, _) = request.into_parts();
    let file_request = Request::from_parts(parts.clone(), Body::empty());
    let Ok(response) = ServeDir::new(dir).oneshot(file_request).await;
    let mut response = if response.status() == StatusCode::NOT_FOUND && is_page {
        let Ok(response) = ServeFile::new(&index).oneshot(Request::from_parts(parts, Body::empty())).await;
        response.map(Body::new)
    } else if response.status() == StatusCode::NOT_FOUND {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    } else {
        response.map(Body::new)
    };

    let cache = if path.starts_with("/assets/") && response.status().is_success() {
        // Vite names these after their content: they never change under one name.
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// Whether a request that names no file should get the app's `index.html`: browsers
/// ask for pages with `Accept: text/html`; other clients get it for extension-less paths.
fn is_page_request(request: &Request) -> bool {
    let accepts_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let last = request.uri().path().rsplit('/').next().unwrap_or_default();
    accepts_html || !last.contains('.')
}

/// What `/` answers when there is no built app.
fn not_built(dir: &Path) -> Response {
    let dir = escape(&dir.display().to_string());
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stalecast — web app not built</title>
<style>body{{font:15px/1.55 system-ui,sans-serif;max-width:42rem;margin:4rem auto;padding:0 1rem;color:#1d2733}}
code{{background:#eef1f4;padding:.1rem .35rem;border-radius:3px}}</style></head>
<body><h1>Stalecast is running, but the web app is not built</h1>
<p>There is no <code>{dir}/index.html</code>. Build the dashboard with <code>make web</code>
(that is <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>) and reload this page,
or point <code>--web-dir</code> (<code>STALECAST_WEB_DIR</code>) at a built copy.
<code>make run</code> builds it before starting the server.</p>
<p>The API answers meanwhile: <a href="/trpc/projects.list"><code>/trpc</code></a>,
<a href="/healthz"><code>/healthz</code></a>, <a href="/readyz"><code>/readyz</code></a>.</p>
</body></html>
"#
    );
    (StatusCode::SERVICE_UNAVAILABLE, [(header::CACHE_CONTROL, "no-cache")], Html(page)).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, accept: Option<&str>) -> Request {
        let mut builder = Request::builder().uri(path);
        if let Some(accept) = accept {
            builder = builder.header(header::ACCEPT, accept);
        }
        builder.body(Body::empty()).expect("request")
    }

    #[test]
    fn pages_are_navigations_or_extensionless_paths() {
        assert!(is_page_request(&request("/volumes", None)));
        assert!(is_page_request(&request("/images/ubuntu-24.04", Some("text/html,application/xhtml+xml"))));
        assert!(!is_page_request(&request("/assets/app-1234.js", Some("*/*"))));
        assert!(!is_page_request(&request("/favicon.ico", None)));
    }

    #[test]
    fn the_missing_app_page_escapes_the_directory() {
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
