//! The simulator's Neutron (v2.0), registered unversioned as real deployments do: its
//! root lists the versions, and `/v2.0/networks` and `/v2.0/subnets` list, show, create
//! and delete networks and their subnets.
//!
//! As real Neutron does: everything in one answer unless the query gives a `limit`
//! (then `networks_links`); an admin sees every network, anyone else the shared ones and
//! their project's; filters by `id`, `name`, `project_id` (or `tenant_id`), `shared`,
//! `status` and `router:external`; only an admin shares a network; a subnet's CIDR must
//! be valid, of its IP version, and not overlap another subnet of its network; a
//! network's `subnets` lists its subnets; errors in `{"NeutronError": …}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use rand::RngExt;
use serde_json::{Value, json};

use super::Sim;
use super::cidr::Cidr;
use super::identity::{Caller, base_url};
use super::listing::{self, NEUTRON, Page, PageError, Params};
use super::world::{self, World};

/// Neutron's routes that need a token.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/network/v2.0/networks", get(list_networks).post(create_network))
        .route("/network/v2.0/networks/{id}", get(show_network).delete(delete_network))
        .route("/network/v2.0/subnets", get(list_subnets).post(create_subnet))
        .route("/network/v2.0/subnets/{id}", get(show_subnet).delete(delete_subnet))
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
    let id = uuid();
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

/// A fresh version 4 UUID, as Neutron names what it makes.
fn uuid() -> String {
    let mut rng = rand::rng();
    format!(
        "{:08x}-{:04x}-4{:03x}-b{:03x}-{:012x}",
        rng.random::<u32>(),
        rng.random::<u16>(),
        rng.random::<u16>() & 0xfff,
        rng.random::<u16>() & 0xfff,
        rng.random::<u64>() & 0xffff_ffff_ffff
    )
}

// --- subnets --------------------------------------------------------------------------

/// A subnet is seen by whoever sees its network (its project's users, everyone for a
/// shared network, admins).
fn may_see_subnet(world: &World, caller: &Caller, subnet: &Value) -> bool {
    caller.admin()
        || subnet["project_id"] == caller.project()
        || subnet["network_id"].as_str().and_then(|n| world.networks.get(n)).is_some_and(|n| may_see(caller, n))
}

fn visible_subnets<'w>(
    world: &'w World,
    caller: &'w Caller,
    params: &'w Params,
) -> impl Iterator<Item = &'w Value> + 'w {
    let project = params.get("project_id").or_else(|| params.get("tenant_id"));
    let equal = move |s: &Value, key: &str| {
        params.get(key).is_none_or(|want| match &s[key] {
            Value::String(have) => have == want,
            Value::Number(n) => want.parse::<u64>().ok() == n.as_u64(),
            _ => false,
        })
    };
    world
        .subnets
        .iter()
        .filter(move |s| may_see_subnet(world, caller, s))
        .filter(move |s| ["id", "name", "network_id", "cidr", "ip_version"].iter().all(|k| equal(s, k)))
        .filter(move |s| project.is_none_or(|p| s["project_id"] == p))
}

async fn list_subnets(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    sim.count("GET subnets");
    let url = format!("{}/network/v2.0/subnets", base_url(&headers));
    listing::answer(sim, move |world| {
        let records = Box::new(visible_subnets(world, &caller, &params));
        let page = Page { key: "subnets", records, render: None, paging: NEUTRON, url };
        page.body(&params).map_or_else(
            |error| match error {
                PageError::BadLimit(limit) => {
                    neutron_error(StatusCode::BAD_REQUEST, "BadRequest", &format!("Bad limit request: {limit}"))
                }
                PageError::UnknownMarker(marker) => subnet_not_found(&marker),
            },
            listing::json_bytes,
        )
    })
    .await
}

fn subnet_not_found(id: &str) -> Response {
    neutron_error(StatusCode::NOT_FOUND, "SubnetNotFound", &format!("Subnet {id} could not be found."))
}

async fn show_subnet(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("GET subnet");
    let world = sim.world();
    match world.subnets.get(&id).filter(|s| may_see_subnet(&world, &caller, s)) {
        Some(subnet) => Json(json!({ "subnet": subnet })).into_response(),
        None => subnet_not_found(&id),
    }
}

fn bad_input(attribute: &str, reason: &str) -> Response {
    neutron_error(
        StatusCode::BAD_REQUEST,
        "HTTPBadRequest",
        &format!("Invalid input for {attribute}. Reason: {reason}."),
    )
}

fn invalid_operation(message: &str) -> Response {
    neutron_error(StatusCode::BAD_REQUEST, "InvalidInput", &format!("Invalid input for operation: {message}."))
}

/// `POST /v2.0/subnets`, checked as Neutron checks it: the attributes it requires, the
/// CIDR (`neutron_lib`'s `validate_subnet`), its IP version, and no overlap with another
/// subnet of the network (`_validate_subnet_cidr`, with the message it gives).
async fn create_subnet(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    sim.count("POST subnets");
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return neutron_error(StatusCode::BAD_REQUEST, "BadRequest", "Malformed request body");
    };
    let asked = &request["subnet"];
    if !asked.is_object() {
        return neutron_error(StatusCode::BAD_REQUEST, "BadRequest", "Resource body required");
    }
    let required = |key: &str| {
        neutron_error(
            StatusCode::BAD_REQUEST,
            "HTTPBadRequest",
            &format!("Failed to parse request. Required attribute '{key}' not specified"),
        )
    };
    let Some(network_id) = asked["network_id"].as_str() else { return required("network_id") };
    let version = match &asked["ip_version"] {
        Value::Null => return required("ip_version"),
        v => match v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
            Some(version @ (4 | 6)) => version,
            _ => return bad_input("ip_version", &format!("{v} is not in [4, 6]")),
        },
    };
    let Some(text) = asked["cidr"].as_str() else {
        return neutron_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Bad subnets request: a subnetpool must be specified in the absence of a cidr.",
        );
    };
    let mut world = sim.world();
    let Some(network) = world.networks.get(network_id).filter(|n| may_see(&caller, n)) else {
        return not_found(network_id);
    };
    if !(caller.admin() || (caller.member() && network["project_id"] == caller.project())) {
        return neutron_error(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            "rule:create_subnet is disallowed by policy",
        );
    }
    let Some(cidr) = Cidr::parse(text) else {
        return bad_input("cidr", &format!("'{text}' is not a valid IP subnet"));
    };
    if !cidr.v6 && !cidr.is_network() {
        return bad_input("cidr", &format!("'{text}' isn't a recommended CIDR, '{}' is recommended", cidr.canonical()));
    }
    if u64::from(cidr.v6) * 2 + 4 != version {
        return invalid_operation(&format!("cidr '{text}' does not match the ip_version '{version}'"));
    }
    let overlapping = world
        .subnets
        .iter()
        .filter(|s| s["network_id"] == network_id)
        .filter_map(|s| Cidr::parse(s["cidr"].as_str().unwrap_or_default()))
        .any(|other| other.overlaps(&cidr));
    if overlapping {
        return invalid_operation(&format!(
            "Requested subnet with cidr: {} for network: {network_id} overlaps with another subnet",
            cidr.canonical()
        ));
    }
    let id = uuid();
    let now = world::now();
    let name = asked["name"].as_str().unwrap_or_default();
    let mut subnet = world::subnet_json(&id, name, network_id, caller.project(), &cidr.canonical(), &now);
    if let Some(dhcp) = asked["enable_dhcp"].as_bool() {
        subnet["enable_dhcp"] = json!(dhcp);
    }
    world.subnets.push(subnet.clone());
    if let Some(network) = world.networks.get_mut(network_id) {
        if let Some(list) = network["subnets"].as_array_mut() {
            list.push(json!(id));
        }
        network["updated_at"] = json!(now);
        network["revision_number"] = json!(network["revision_number"].as_u64().unwrap_or(0) + 1);
    }
    (StatusCode::CREATED, Json(json!({ "subnet": subnet }))).into_response()
}

async fn delete_subnet(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("DELETE subnets");
    let mut world = sim.world();
    let Some(subnet) = world.subnets.get(&id).filter(|s| may_see_subnet(&world, &caller, s)) else {
        return subnet_not_found(&id);
    };
    if !(caller.admin() || (caller.member() && subnet["project_id"] == caller.project())) {
        return neutron_error(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            "rule:delete_subnet is disallowed by policy",
        );
    }
    let network_id = subnet["network_id"].as_str().unwrap_or_default().to_owned();
    world.subnets.remove(&id);
    if let Some(network) = world.networks.get_mut(&network_id) {
        if let Some(list) = network["subnets"].as_array_mut() {
            list.retain(|s| s != &json!(id));
        }
        network["updated_at"] = json!(world::now());
        network["revision_number"] = json!(network["revision_number"].as_u64().unwrap_or(0) + 1);
    }
    StatusCode::NO_CONTENT.into_response()
}
