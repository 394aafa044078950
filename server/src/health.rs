//! `/healthz` (the process answers) and `/readyz` (the upstream answers and the cache is
//! fresh), for load balancers and orchestrators.
//!
//! Each endpoint is declared once, as an [`Endpoint`]: [`routes`] serves it and the
//! OpenAPI document describes it from the same declaration.

use std::sync::{Arc, Mutex};
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
    description: "200 while every collection was last confirmed by the upstream within `--max-staleness` \
                  (single failed polls do not count: queries answer from the last value meanwhile) and \
                  changes can be published (with `--redis`: Redis answers), 503 otherwise; with each \
                  type's age and failure count. The failures themselves are logged.",
    statuses: &[(200, "Ready."), (503, "Not ready: the upstream fails or the cache is stale.")],
};

/// What readiness is judged from.
#[derive(Debug)]
pub struct Health {
    pub store: Arc<Store>,
    pub bus: Arc<UpdateBus>,
    /// Unready once a collection was last confirmed longer ago than this.
    pub max_staleness: Duration,
    /// The readiness last answered, to log each change once.
    pub ready: Mutex<Option<bool>>,
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
    /// Every collection is fresh, and changes can be published.
    pub ready: bool,
    /// Changes can be published (false in a cluster whose Redis is unreachable).
    pub publishing: bool,
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
}

/// `GET /readyz`: 200 while every collection is younger than `max_staleness`, else 503
/// with each one's age. What failed is for operators: logged once per change of
/// readiness, never shown to whoever probes.
pub async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let now = SystemTime::now();
    let fetches = health.store.health();
    let types: Vec<TypeReadiness> = fetches
        .iter()
        .map(|(kind, fetched)| {
            let age = fetched.last_success.map(|at| now.duration_since(at).unwrap_or_default());
            TypeReadiness {
                kind: *kind,
                fresh: age.is_some_and(|age| age <= health.max_staleness),
                age_ms: age.map(|a| a.as_millis() as u64),
                failures: fetched.failures,
            }
        })
        .collect();
    let publishing = health.store.can_publish();
    let ready = publishing && types.iter().all(|t| t.fresh);
    let previous = health.ready.lock().unwrap_or_else(|p| p.into_inner()).replace(ready);
    if previous != Some(ready) {
        if ready {
            tracing::info!("ready: every collection is fresh");
        } else if !publishing {
            tracing::warn!("not ready: changes cannot be published (Redis unreachable)");
        } else {
            let stale: Vec<String> = types
                .iter()
                .zip(&fetches)
                .filter(|(t, _)| !t.fresh)
                .map(|(t, (_, f))| format!("{}: {}", t.kind, f.last_error.as_deref().unwrap_or("no recent answer")))
                .collect();
            tracing::warn!(stale = %stale.join("; "), max_staleness = ?health.max_staleness, "not ready");
        }
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { ready, publishing, streams: health.bus.subscriber_count(), types }))
}
