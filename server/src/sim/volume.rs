//! The simulator's Cinder (v3): version discovery, volumes and their snapshots (list,
//! detail, show, create, delete), per project as the token says. Its catalog URL carries the project
//! (`/volume/v3/{project_id}`), which must be the token's (see [`super::strip_project`]).
//!
//! As real Cinder does: a listing shows the token's project's volumes, every project's
//! with `all_tenants` for an admin (the parameter is ignored for anyone else); a create
//! lands in the token's project whatever the body says; a reader may look but not
//! change; a snapshot is refused for a volume that is not `available` (or `in-use`, with
//! `force`), and a volume with snapshots cannot be deleted.

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
        .route("/volume/v3/snapshots", get(list_snapshots_brief).post(create_snapshot))
        .route("/volume/v3/snapshots/detail", get(list_snapshots_detail))
        .route("/volume/v3/snapshots/{id}", get(show_snapshot).delete(delete_snapshot))
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
    if world.snapshots_of(&id) > 0 {
        return fault(StatusCode::BAD_REQUEST, DEPENDENT_SNAPSHOTS);
    }
    world.volumes.remove(&id);
    StatusCode::ACCEPTED.into_response()
}

/// Cinder's refusal to delete a volume that has snapshots (without `cascade`), as the
/// `openstack` CLI prints it.
const DEPENDENT_SNAPSHOTS: &str = "Invalid volume: Volume status must be available or error or error_restoring or \
    error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, \
    awaiting a transfer, or be disassociated from snapshots after volume transfer.";

// --- snapshots ------------------------------------------------------------------------

/// The project of a snapshot, as Cinder shows it.
const SNAPSHOT_PROJECT: &str = "os-extended-snapshot-attributes:project_id";

fn visible_snapshots<'w>(
    world: &'w World,
    caller: &'w Caller,
    params: &'w Params,
) -> impl Iterator<Item = &'w Value> + 'w {
    let all = caller.admin() && params.flag("all_tenants").unwrap_or(false);
    let project = if all { params.get("project_id") } else { Some(caller.project()) };
    let name = params.get("name");
    let status = params.get("status");
    let volume = params.get("volume_id");
    world
        .snapshots
        .iter()
        .skip(listing::from_marker(&world.snapshots, params))
        .filter(move |s| project.is_none_or(|p| s[SNAPSHOT_PROJECT] == p))
        .filter(move |s| name.is_none_or(|n| s["name"] == n))
        .filter(move |s| volume.is_none_or(|v| s["volume_id"] == v))
        .filter(move |s| status.is_none_or(|st| s["status"].as_str().is_some_and(|ss| ss.eq_ignore_ascii_case(st))))
}

async fn list_snapshots_detail(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    list_snapshots(sim, caller, base_url(&headers), params, true).await
}

async fn list_snapshots_brief(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    list_snapshots(sim, caller, base_url(&headers), params, false).await
}

/// `GET /snapshots/detail` or `GET /snapshots` (Cinder's brief form of a snapshot is
/// most of it: only the project and progress attributes are left out).
async fn list_snapshots(sim: Arc<Sim>, caller: Caller, base: String, params: Params, detail: bool) -> Response {
    sim.count("GET snapshots");
    let url = format!("{base}/volume/v3/{}/snapshots{}", caller.project(), if detail { "/detail" } else { "" });
    listing::answer(sim, move |world| {
        let brief = |s: &Value| {
            let mut s = s.clone();
            if let Some(object) = s.as_object_mut() {
                object.remove(SNAPSHOT_PROJECT);
                object.remove("os-extended-snapshot-attributes:progress");
            }
            s
        };
        let render: Option<&(dyn Fn(&Value) -> Value + Sync)> = if detail { None } else { Some(&brief) };
        let records = Box::new(visible_snapshots(world, &caller, &params));
        let page = Page { key: "snapshots", records, render, paging: CINDER, url };
        page.body(&params).map_or_else(page_error, listing::json_bytes)
    })
    .await
}

fn find_snapshot<'w>(world: &'w World, caller: &Caller, id: &str) -> Option<&'w Value> {
    world.snapshots.get(id).filter(|s| caller.sees(s[SNAPSHOT_PROJECT].as_str().unwrap_or_default()))
}

fn snapshot_not_found(id: &str) -> Response {
    fault(StatusCode::NOT_FOUND, &format!("Snapshot {id} could not be found."))
}

async fn show_snapshot(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("GET snapshot");
    let world = sim.world();
    match find_snapshot(&world, &caller, &id) {
        Some(snapshot) => Json(json!({ "snapshot": snapshot })).into_response(),
        None => snapshot_not_found(&id),
    }
}

/// `force` as Cinder reads it (`strutils.bool_from_string(strict=True)`).
fn force_flag(value: &Value) -> Result<bool, String> {
    match value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "y" | "t" => Ok(true),
            "false" | "0" | "no" | "off" | "n" | "f" => Ok(false),
            _ => Err(s.clone()),
        },
        other => Err(other.to_string()),
    }
}

/// `POST /snapshots`: a snapshot of a volume of the token's project, refused as Cinder
/// refuses it (`create_snapshot_in_db`): a volume not yet scheduled to a host, in error,
/// or not `available` (`available` or `in-use` with `force`).
async fn create_snapshot(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    sim.count("POST snapshots");
    if !caller.member() {
        return fault(StatusCode::FORBIDDEN, "Policy doesn't allow volume:create_snapshot to be performed.");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return fault(StatusCode::BAD_REQUEST, "Invalid input for field/attribute snapshot.");
    };
    let asked = &request["snapshot"];
    let Some(volume_id) = asked["volume_id"].as_str() else {
        return fault(
            StatusCode::BAD_REQUEST,
            "Invalid input for field/attribute snapshot. Value: 'volume_id' is a required property",
        );
    };
    let force = match force_flag(&asked["force"]) {
        Ok(force) => force,
        Err(value) => {
            return fault(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Invalid input for field/attribute force. Value: {value}. {value} is not of type 'boolean', 'string'"
                ),
            );
        }
    };
    let id = {
        let mut world = sim.world();
        let Some(volume) = find(&world, &caller, volume_id) else {
            return not_found(volume_id);
        };
        let status = volume["status"].as_str().unwrap_or_default().to_owned();
        let scheduled = volume["os-vol-host-attr:host"].is_string() || status != "creating";
        let refusal = if !scheduled {
            Some(
                "Invalid volume: The snapshot cannot be created because volume has not been scheduled to any host."
                    .to_owned(),
            )
        } else if status == "maintenance" {
            Some("Invalid volume: The snapshot cannot be created when the volume is in maintenance mode.".to_owned())
        } else if status == "error" {
            Some("Invalid volume: The snapshot cannot be created when the volume is in error status.".to_owned())
        } else {
            let valid: &[&str] = if force { &["available", "in-use"] } else { &["available"] };
            (!valid.contains(&status.as_str())).then(|| {
                format!(
                    "Invalid volume: Volume {volume_id} status must be {}, but current status is: {status}.",
                    valid.join(", ")
                )
            })
        };
        if let Some(message) = refusal {
            return fault(StatusCode::BAD_REQUEST, &message);
        }
        let size = volume["size"].as_u64().unwrap_or(1);
        let project = caller.project().to_owned();
        let text = |key: &str| asked[key].as_str().unwrap_or_default().to_owned();
        let id = world.new_snapshot(
            &project,
            &caller.user_id,
            volume_id,
            size,
            &text("name"),
            &text("description"),
            "creating",
        );
        if let (Some(record), true) = (world.snapshots.get_mut(&id), asked["metadata"].is_object()) {
            record["metadata"] = asked["metadata"].clone();
        }
        id
    };
    transition_later(sim.clone(), id.clone(), |world, id| World::set_status(&mut world.snapshots, id, "available"));
    let world = sim.world();
    let created = world.snapshots.get(&id).cloned().unwrap_or_else(|| json!({"id": id}));
    (StatusCode::ACCEPTED, Json(json!({ "snapshot": created }))).into_response()
}

async fn delete_snapshot(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("DELETE snapshots");
    let mut world = sim.world();
    let Some(snapshot) = find_snapshot(&world, &caller, &id) else {
        return snapshot_not_found(&id);
    };
    if !caller.member() {
        return fault(StatusCode::FORBIDDEN, "Policy doesn't allow volume:delete_snapshot to be performed.");
    }
    if !matches!(snapshot["status"].as_str(), Some("available" | "error")) {
        return fault(
            StatusCode::BAD_REQUEST,
            "Invalid snapshot: Snapshot status must be available or error and must not be part of a group.",
        );
    }
    world.snapshots.remove(&id);
    StatusCode::ACCEPTED.into_response()
}
