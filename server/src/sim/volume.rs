//! The simulator's Cinder (v3): version discovery and volumes (list, detail, show,
//! create, delete), per project as the token says. Its catalog URL carries the project
//! (`/volume/v3/{project_id}`), which must be the token's (see [`super::strip_project`]).
//!
//! As real Cinder does: a listing shows the token's project's volumes, every project's
//! with `all_tenants` for an admin (the parameter is ignored for anyone else); a create
//! lands in the token's project whatever the body says; a reader may look but not
//! change.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::identity::{Caller, base_url};
use super::listing::{self, CINDER, Page, PageError, Params};
use super::world::World;
use super::{Sim, fault, transition_later};

/// Cinder's routes that need a token (the project segment already taken out).
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/volume/v3/volumes", get(list_brief).post(create_volume))
        .route("/volume/v3/volumes/detail", get(list_detail))
        .route("/volume/v3/volumes/{id}", get(show_volume).delete(delete_volume))
}

/// Cinder's version documents, which need no token.
pub fn open_routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/volume", get(versions))
        .route("/volume/", get(versions))
        .route("/volume/v3", get(versions))
        .route("/volume/v3/", get(versions))
}

async fn versions(headers: HeaderMap) -> Json<Value> {
    let base = base_url(&headers);
    Json(json!({"versions": [{"id": "v3.0", "status": "CURRENT", "version": "3.71", "min_version": "3.0",
        "updated": "2023-08-31T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/volume/v3/")}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}]}]}))
}

fn visible<'w>(world: &'w World, caller: &'w Caller, params: &'w Params) -> impl Iterator<Item = &'w Value> + 'w {
    // Cinder drops `all_tenants` from a non-admin's query rather than refusing it.
    let all = caller.admin() && params.flag("all_tenants").unwrap_or(false);
    let project = if all { params.get("project_id") } else { Some(caller.project()) };
    let name = params.get("name");
    let status = params.get("status");
    world
        .volumes
        .iter()
        .skip(listing::from_marker(&world.volumes, params))
        .filter(move |v| project.is_none_or(|p| v["os-vol-tenant-attr:tenant_id"] == p))
        .filter(move |v| name.is_none_or(|n| v["name"] == n))
        .filter(move |v| status.is_none_or(|s| v["status"].as_str().is_some_and(|vs| vs.eq_ignore_ascii_case(s))))
}

fn page_error(error: PageError) -> Response {
    match error {
        PageError::BadLimit(limit) => {
            fault(StatusCode::BAD_REQUEST, &format!("Invalid input received: limit must be an integer: {limit}"))
        }
        PageError::UnknownMarker(marker) => {
            fault(StatusCode::NOT_FOUND, &format!("Marker {marker} could not be found."))
        }
    }
}

async fn list_detail(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    list_volumes(sim, caller, base_url(&headers), params, true).await
}

async fn list_brief(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    list_volumes(sim, caller, base_url(&headers), params, false).await
}

/// `GET /volumes/detail` (`detail`: each volume whole) or `GET /volumes` (ids, names
/// and links).
async fn list_volumes(sim: Arc<Sim>, caller: Caller, base: String, params: Params, detail: bool) -> Response {
    sim.count("GET volumes");
    // The links point under the project, as the catalog registers Cinder.
    let url = format!("{base}/volume/v3/{}/volumes{}", caller.project(), if detail { "/detail" } else { "" });
    listing::answer(sim, move |world| {
        let brief = |v: &Value| json!({"id": v["id"], "name": v["name"], "links": []});
        let render: Option<&(dyn Fn(&Value) -> Value + Sync)> = if detail { None } else { Some(&brief) };
        let page =
            Page { key: "volumes", records: Box::new(visible(world, &caller, &params)), render, paging: CINDER, url };
        page.body(&params).map_or_else(page_error, listing::json_bytes)
    })
    .await
}

fn not_found(id: &str) -> Response {
    fault(StatusCode::NOT_FOUND, &format!("Volume {id} could not be found."))
}

fn find<'w>(world: &'w World, caller: &Caller, id: &str) -> Option<&'w Value> {
    world.volumes.get(id).filter(|v| caller.sees(v["os-vol-tenant-attr:tenant_id"].as_str().unwrap_or_default()))
}

async fn show_volume(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("GET volume");
    let world = sim.world();
    match find(&world, &caller, &id) {
        Some(volume) => Json(json!({ "volume": volume })).into_response(),
        None => not_found(&id),
    }
}

fn policy(action: &str) -> Response {
    fault(StatusCode::FORBIDDEN, &format!("Policy doesn't allow volume:{action} to be performed."))
}

async fn create_volume(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    sim.count("POST volumes");
    if !caller.member() {
        return policy("create");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return fault(StatusCode::BAD_REQUEST, "Invalid input for field/attribute volume.");
    };
    let volume = &request["volume"];
    if !volume.is_object() {
        return fault(
            StatusCode::BAD_REQUEST,
            "Invalid input for field/attribute volume. 'volume' is a required property",
        );
    }
    let size = match volume["size"].as_u64().or_else(|| volume["size"].as_str().and_then(|s| s.parse().ok())) {
        Some(size) if (1..=u64::from(u32::MAX)).contains(&size) => size as u32,
        _ => {
            return fault(
                StatusCode::BAD_REQUEST,
                "Invalid input for field/attribute size. Value: must be an integer greater than 0.",
            );
        }
    };
    let text = |key: &str| volume[key].as_str().unwrap_or_default().to_owned();
    let id = {
        let mut world = sim.world();
        let id = world.new_volume(caller.project(), &text("name"), size, &text("description"), "creating");
        if let Some(record) = world.volumes.get_mut(&id) {
            record["user_id"] = json!(caller.user_id);
            if volume["metadata"].is_object() {
                record["metadata"] = volume["metadata"].clone();
            }
        }
        id
    };
    transition_later(sim.clone(), id.clone(), |world, id| World::set_status(&mut world.volumes, id, "available"));
    let world = sim.world();
    let created = world.volumes.get(&id).cloned().unwrap_or_else(|| json!({"id": id}));
    (StatusCode::ACCEPTED, Json(json!({ "volume": created }))).into_response()
}

async fn delete_volume(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("DELETE volumes");
    let mut world = sim.world();
    let Some(volume) = find(&world, &caller, &id) else {
        return not_found(&id);
    };
    if !caller.member() {
        return policy("delete");
    }
    if volume["status"] == "in-use" {
        return fault(
            StatusCode::BAD_REQUEST,
            "Volume status must be available or error, but current status is: in-use",
        );
    }
    world.volumes.remove(&id);
    StatusCode::ACCEPTED.into_response()
}
