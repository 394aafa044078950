//! `/healthz` (the process answers) and `/readyz` (the upstream answers and the cache is
//! fresh), for load balancers and orchestrators.

use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::updates::UpdateType;

/// `GET /healthz`: always 200 while the process serves.
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// What `/readyz` answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// Every collection is fresh.
    pub ready: bool,
    /// The upstream's Keystone URL.
    pub upstream: String,
    /// Open event streams.
    pub streams: usize,
    pub types: Vec<TypeReadiness>,
}

/// The freshness of one collection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypeReadiness {
    #[serde(rename = "type")]
    pub kind: UpdateType,
    pub fresh: bool,
    /// Milliseconds since the upstream last answered for this type (null: never).
    pub age_ms: Option<u64>,
    /// Failed fetches since the last success.
    pub failures: u32,
    /// The last failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /readyz`: 200 when every collection was fetched successfully within three poll
/// intervals (plus one request timeout), else 503 with what is stale and why.
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let config = app.config();
    let max_age = config.poll_interval * 3 + config.upstream_timeout;
    let now = SystemTime::now();
    let types: Vec<TypeReadiness> = app
        .store()
        .health()
        .into_iter()
        .map(|(kind, health)| {
            let age = health.last_success.map(|at| now.duration_since(at).unwrap_or_default());
            TypeReadiness {
                kind,
                fresh: health.failures == 0 && age.is_some_and(|age| age <= max_age),
                age_ms: age.map(|a| a.as_millis() as u64),
                failures: health.failures,
                error: health.last_error,
            }
        })
        .collect();
    let ready = types.iter().all(|t| t.fresh);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body =
        Readiness { ready, upstream: app.upstream_url().to_owned(), streams: app.bus().subscriber_count(), types };
    (status, Json(body))
}
