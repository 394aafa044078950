//! The simulator's Neutron (v2.0), registered unversioned as real deployments do: its
//! root lists the versions, and `/v2.0/networks` lists, shows, creates and deletes
//! networks.
//!
//! As real Neutron does: everything in one answer unless the query gives a `limit`
//! (then `networks_links`); an admin sees every network, anyone else the shared ones and
//! their project's; filters by `id`, `name`, `project_id` (or `tenant_id`), `shared`,
//! `status` and `router:external`; only an admin shares a network; errors in
//! `{"NeutronError": …}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use rand::RngExt;
use serde_json::{Value, json};

use super::Sim;
use super::identity::{Caller, base_url};
use super::listing::{self, NEUTRON, Page, PageError, Params};
use super::world::{self, World};

/// Neutron's routes that need a token.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/network/v2.0/networks", get(list_networks).post(create_network))
        .route("/network/v2.0/networks/{id}", get(show_network).delete(delete_network))
        .route("/network/v2.0/extensions", get(extensions))
}

/// Neutron's version document, which needs no token.
pub fn open_routes() -> Router<Arc<Sim>> {
    Router::new().route("/network", get(versions)).route("/network/", get(versions))
}

async fn versions(headers: HeaderMap) -> Json<Value> {
    let href = format!("{}/network/v2.0/", base_url(&headers));
    Json(json!({"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": href}]}]}))
}

async fn extensions() -> Json<Value> {
    Json(json!({"extensions": []}))
}

fn neutron_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"NeutronError": {"type": kind, "message": message, "detail": ""}}))).into_response()
}

fn may_see(caller: &Caller, network: &Value) -> bool {
    caller.admin() || network["shared"] == true || network["project_id"] == caller.project()
}

/// `True`/`False` as Neutron's query strings write booleans.
fn boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn visible<'w>(world: &'w World, caller: &'w Caller, params: &'w Params) -> impl Iterator<Item = &'w Value> + 'w {
    let project = params.get("project_id").or_else(|| params.get("tenant_id"));
    let flag = move |key: &str| params.get(key).and_then(boolean);
    world
        .networks
        .iter()
        .filter(move |n| may_see(caller, n))
        .filter(move |n| params.get("id").is_none_or(|id| n["id"] == id))
        .filter(move |n| params.get("name").is_none_or(|name| n["name"] == name))
        .filter(move |n| params.get("status").is_none_or(|s| n["status"] == s))
        .filter(move |n| project.is_none_or(|p| n["project_id"] == p))
        .filter(move |n| flag("shared").is_none_or(|s| n["shared"] == s))
        .filter(move |n| flag("router:external").is_none_or(|e| n["router:external"].as_bool().unwrap_or(false) == e))
}

async fn list_networks(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    sim.count("GET networks");
    let url = format!("{}/network/v2.0/networks", base_url(&headers));
    listing::answer(sim, move |world| {
        let page = Page {
            key: "networks",
            records: Box::new(visible(world, &caller, &params)),
            render: None,
            paging: NEUTRON,
            url,
        };
        page.body(&params).map_or_else(
            |error| match error {
                PageError::BadLimit(limit) => {
                    neutron_error(StatusCode::BAD_REQUEST, "BadRequest", &format!("Bad limit request: {limit}"))
                }
                PageError::UnknownMarker(marker) => neutron_error(
                    StatusCode::NOT_FOUND,
                    "NetworkNotFound",
                    &format!("Network {marker} could not be found."),
                ),
            },
            listing::json_bytes,
        )
    })
    .await
}

fn not_found(id: &str) -> Response {
    neutron_error(StatusCode::NOT_FOUND, "NetworkNotFound", &format!("Network {id} could not be found."))
}

async fn show_network(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("GET network");
    let world = sim.world();
    match world.networks.get(&id).filter(|n| may_see(&caller, n)) {
        Some(network) => Json(json!({ "network": network })).into_response(),
        None => not_found(&id),
    }
}

async fn create_network(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    sim.count("POST networks");
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return neutron_error(StatusCode::BAD_REQUEST, "BadRequest", "Malformed request body");
    };
    let asked = &request["network"];
    if !asked.is_object() {
        return neutron_error(StatusCode::BAD_REQUEST, "BadRequest", "Resource body required");
    }
    let shared = asked["shared"].as_bool().unwrap_or(false);
    if !caller.member() || (shared && !caller.admin()) {
        let rule = if shared { "(rule:create_network and rule:create_network:shared)" } else { "rule:create_network" };
        return neutron_error(StatusCode::FORBIDDEN, "PolicyNotAuthorized", &format!("{rule} is disallowed by policy"));
    }
    let id = {
        let mut rng = rand::rng();
        format!(
            "{:08x}-{:04x}-4{:03x}-b{:03x}-{:012x}",
            rng.random::<u32>(),
            rng.random::<u16>(),
            rng.random::<u16>() & 0xfff,
            rng.random::<u16>() & 0xfff,
            rng.random::<u64>() & 0xffff_ffff_ffff
        )
    };
    let now = world::now();
    let project = caller.project();
    let network = json!({"id": id, "name": asked["name"].as_str().unwrap_or_default(), "project_id": project,
        "tenant_id": project, "status": "ACTIVE", "shared": shared, "subnets": [],
        "admin_state_up": asked["admin_state_up"].as_bool().unwrap_or(true), "mtu": 1450,
        "router:external": false, "description": asked["description"].as_str().unwrap_or_default(),
        "availability_zone_hints": [], "availability_zones": [], "port_security_enabled": true,
        "created_at": now, "updated_at": now, "revision_number": 1, "tags": []});
    sim.world().networks.push(network.clone());
    (StatusCode::CREATED, Json(json!({ "network": network }))).into_response()
}

async fn delete_network(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("DELETE networks");
    let mut world = sim.world();
    let Some(network) = world.networks.get(&id).filter(|n| may_see(&caller, n)) else {
        return not_found(&id);
    };
    if !(caller.admin() || (caller.member() && network["project_id"] == caller.project())) {
        return neutron_error(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            "rule:delete_network is disallowed by policy",
        );
    }
    world.networks.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}
