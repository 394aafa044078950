//! The simulator's Glance (v2), registered unversioned as real deployments do: its root
//! answers `300 Multiple Choices` with the versions, and `/v2/images` lists, shows,
//! creates (metadata only: the image stays `queued`) and deletes images.
//!
//! As real Glance does: pages of 25 by default with a `next` path; an admin sees every
//! image, anyone else the public and community ones and their project's; filters by
//! `name`, `status`, `visibility`, `owner` and `id` (`id=in:a,b`); only an admin makes
//! an image public; errors are plain text.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use rand::RngExt;
use serde_json::{Value, json};

use super::Sim;
use super::identity::{Caller, base_url};
use super::listing::{self, GLANCE, Page, PageError, Params};
use super::world::{self, World};

/// Glance's routes that need a token.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/image/v2/images", get(list_images).post(create_image))
        .route("/image/v2/images/{id}", get(show_image).delete(delete_image))
        .route("/image/v2/images/{id}/file", axum::routing::put(upload_image))
}

/// Glance's version document, which needs no token.
pub fn open_routes() -> Router<Arc<Sim>> {
    Router::new().route("/image", get(versions)).route("/image/", get(versions)).route("/image/versions", get(versions))
}

async fn versions(headers: HeaderMap) -> Response {
    let href = format!("{}/image/v2/", base_url(&headers));
    let entries: Vec<Value> = (0..=16)
        .rev()
        .map(|minor| {
            json!({"id": format!("v2.{minor}"), "status": if minor == 16 { "CURRENT" } else { "SUPPORTED" },
                   "links": [{"rel": "self", "href": href}]})
        })
        .collect();
    (StatusCode::MULTIPLE_CHOICES, Json(json!({ "versions": entries }))).into_response()
}

/// Glance's plain-text error body.
fn plain(status: StatusCode, message: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or_default();
    let body = format!("{} {reason}\n\n{message}\n\n   ", status.as_u16());
    (status, [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

fn may_see(caller: &Caller, image: &Value) -> bool {
    caller.admin()
        || matches!(image["visibility"].as_str(), Some("public") | Some("community"))
        || image["owner"] == caller.project()
}

/// An image with every field Glance shows (seeded and created ones leave some out).
fn render(image: &Value) -> Value {
    let mut image = image.clone();
    let id = image["id"].as_str().unwrap_or_default().to_owned();
    let now = world::now();
    for (key, value) in [
        ("container_format", json!("bare")),
        ("disk_format", json!("qcow2")),
        ("min_ram", json!(0)),
        ("min_disk", json!(0)),
        ("protected", json!(false)),
        ("os_hidden", json!(false)),
        ("tags", json!([])),
        ("checksum", Value::Null),
        ("os_hash_algo", Value::Null),
        ("os_hash_value", Value::Null),
        ("virtual_size", Value::Null),
        ("size", Value::Null),
        ("created_at", json!(now)),
        ("updated_at", json!(now)),
        ("self", json!(format!("/v2/images/{id}"))),
        ("file", json!(format!("/v2/images/{id}/file"))),
        ("schema", json!("/v2/schemas/image")),
    ] {
        if image.get(key).is_none() {
            image[key] = value;
        }
    }
    image
}

fn visible<'w>(world: &'w World, caller: &'w Caller, params: &'w Params) -> impl Iterator<Item = &'w Value> + 'w {
    let ids: Option<Vec<&str>> = params.get("id").map(|id| id.strip_prefix("in:").unwrap_or(id).split(',').collect());
    let text = move |key: &str| params.get(key);
    world
        .images
        .iter()
        .filter(move |i| may_see(caller, i))
        .filter(move |i| ids.as_ref().is_none_or(|ids| ids.iter().any(|id| i["id"] == *id)))
        .filter(move |i| text("name").is_none_or(|n| i["name"] == n))
        .filter(move |i| text("status").is_none_or(|s| i["status"] == s))
        .filter(move |i| text("owner").is_none_or(|o| i["owner"] == o))
        .filter(move |i| match text("visibility") {
            None | Some("all") => true,
            Some(v) => i["visibility"] == v,
        })
}

async fn list_images(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    sim.count("GET images");
    let url = format!("{}/image/v2/images", base_url(&headers));
    listing::answer(sim, move |world| {
        let records = Box::new(visible(world, &caller, &params));
        let page = Page { key: "images", records, render: Some(&render), paging: GLANCE, url };
        page.body(&params).map_or_else(
            |error| match error {
                PageError::BadLimit(limit) => {
                    plain(StatusCode::BAD_REQUEST, &format!("limit param must be an integer: {limit}"))
                }
                PageError::UnknownMarker(marker) => {
                    plain(StatusCode::BAD_REQUEST, &format!("Invalid marker. Image {marker} could not be found."))
                }
            },
            listing::json_bytes,
        )
    })
    .await
}

async fn show_image(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("GET image");
    let world = sim.world();
    match world.images.get(&id).filter(|i| may_see(&caller, i)) {
        Some(image) => Json(render(image)).into_response(),
        None => plain(StatusCode::NOT_FOUND, &format!("No image found with ID {id}")),
    }
}

/// The fields of a create Glance keeps as they are; any other string is a property.
const CREATE_FIELDS: &[&str] = &[
    "name",
    "id",
    "visibility",
    "container_format",
    "disk_format",
    "min_disk",
    "min_ram",
    "protected",
    "tags",
    "os_hidden",
];

async fn create_image(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    sim.count("POST images");
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "Malformed JSON in request body.");
    };
    let visibility = request.get("visibility").and_then(Value::as_str).unwrap_or("shared").to_owned();
    if !["public", "private", "shared", "community"].contains(&visibility.as_str()) {
        return plain(StatusCode::BAD_REQUEST, &format!("Invalid visibility value: {visibility}"));
    }
    if visibility == "public" && !caller.admin() {
        return plain(StatusCode::FORBIDDEN, "You are not authorized to complete publicize_image action.");
    }
    if !caller.member() {
        return plain(StatusCode::FORBIDDEN, "You are not authorized to complete add_image action.");
    }
    let id = match request.get("id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => {
            let mut rng = rand::rng();
            format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                rng.random::<u32>(),
                rng.random::<u16>(),
                rng.random::<u16>() & 0xfff,
                rng.random::<u16>() & 0xfff,
                rng.random::<u64>() & 0xffff_ffff_ffff
            )
        }
    };
    let now = world::now();
    let mut image = json!({"id": id, "name": request.get("name").cloned().unwrap_or(Value::Null), "status": "queued",
        "visibility": visibility, "owner": caller.project(), "size": null, "created_at": now, "updated_at": now});
    for (key, value) in &request {
        let kept = CREATE_FIELDS.contains(&key.as_str()) || value.is_string();
        if kept && key != "visibility" && key != "id" {
            image[key] = value.clone();
        }
    }
    let mut world = sim.world();
    if world.images.get(&id).is_some() {
        return plain(StatusCode::CONFLICT, &format!("Image with identifier {id} already exists!"));
    }
    world.images.push(image.clone());
    (StatusCode::CREATED, Json(render(&image))).into_response()
}

async fn delete_image(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("DELETE images");
    let mut world = sim.world();
    let Some(image) = world.images.get(&id).filter(|i| may_see(&caller, i)) else {
        return plain(StatusCode::NOT_FOUND, &format!("Failed to find image {id} to delete"));
    };
    if !(caller.admin() || (caller.member() && image["owner"] == caller.project())) {
        return plain(StatusCode::FORBIDDEN, "You are not authorized to complete delete_image action.");
    }
    if image["protected"] == true {
        return plain(StatusCode::FORBIDDEN, &format!("Image {id} is protected and cannot be deleted."));
    }
    world.images.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

/// `PUT /v2/images/{id}/file`: the image's data, which the simulator only measures: the
/// image becomes `active` with that size.
async fn upload_image(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    sim.count("PUT image file");
    let mut world = sim.world();
    let visible = world.images.get(&id).is_some_and(|i| may_see(&caller, i));
    let Some(image) = world.images.get_mut(&id).filter(|_| visible) else {
        return plain(StatusCode::NOT_FOUND, &format!("No image found with ID {id}"));
    };
    if !(caller.admin() || (caller.member() && image["owner"] == caller.project())) {
        return plain(StatusCode::FORBIDDEN, "You are not authorized to complete upload_image action.");
    }
    if image["status"] != "queued" {
        return plain(
            StatusCode::CONFLICT,
            &format!("Image status transition from {} to saving is not allowed", image["status"]),
        );
    }
    image["size"] = json!(body.len());
    image["status"] = json!("active");
    image["updated_at"] = json!(world::now());
    StatusCode::NO_CONTENT.into_response()
}
