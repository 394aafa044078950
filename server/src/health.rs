//! `/healthz` (the process answers) and `/readyz` (the upstream answers and the cache is
//! fresh), for load balancers and orchestrators.
//!
//! Each endpoint is declared once, as an [`Endpoint`]: [`routes`] serves it and the
//! OpenAPI document describes it from the same declaration.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::updates::{UpdateBus, UpdateType};
use crate::upstream::store::Store;

/// A health endpoint as the router and the OpenAPI document both see it.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    /// The statuses it answers, with what each means.
    pub statuses: &'static [(u16, &'static str)],
}

pub const LIVENESS: Endpoint = Endpoint {
    path: "/healthz",
    operation_id: "healthz",
    summary: "Liveness: 200 while the process serves.",
    description: "",
    statuses: &[(200, "The process serves.")],
};

pub const READINESS: Endpoint = Endpoint {
    path: "/readyz",
    operation_id: "readyz",
    summary: "Readiness: the upstream answers and every collection is fresh.",
    description: "200 when every collection was fetched within three poll intervals (plus one upstream \
                  timeout), 503 otherwise, with each type's age, failure count and last error.",
    statuses: &[(200, "Ready."), (503, "Not ready: the upstream fails or the cache is stale.")],
};

/// What readiness is judged from.
#[derive(Debug)]
pub struct Health {
    pub store: Arc<Store>,
    pub bus: Arc<UpdateBus>,
    /// The upstream's Keystone URL, as shown in `/readyz`.
    pub upstream_url: String,
    pub poll_interval: Duration,
    pub upstream_timeout: Duration,
}

/// Both endpoints.
pub fn routes(health: Arc<Health>) -> Router {
    Router::new().route(LIVENESS.path, get(healthz)).route(READINESS.path, get(readyz)).with_state(health)
}

/// `GET /healthz`: always 200 while the process serves.
pub async fn healthz() -> impl IntoResponse {
    Json(Liveness { status: Alive::Ok })
}

/// What `/healthz` answers: `{"status":"ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    #[schema(inline)]
    pub status: Alive,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Alive {
    Ok,
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
pub async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let max_age = health.poll_interval * 3 + health.upstream_timeout;
    let now = SystemTime::now();
    let types: Vec<TypeReadiness> = health
        .store
        .health()
        .into_iter()
        .map(|(kind, fetches)| {
            let age = fetches.last_success.map(|at| now.duration_since(at).unwrap_or_default());
            TypeReadiness {
                kind,
                fresh: fetches.failures == 0 && age.is_some_and(|age| age <= max_age),
                age_ms: age.map(|a| a.as_millis() as u64),
                failures: fetches.failures,
                error: fetches.last_error,
            }
        })
        .collect();
    let ready = types.iter().all(|t| t.fresh);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body =
        Readiness { ready, upstream: health.upstream_url.clone(), streams: health.bus.subscriber_count(), types };
    (status, Json(body))
}
