//! The simulator's Nova: version discovery with microversions (2.1 to 2.96, chosen by
//! `OpenStack-API-Version` or `X-OpenStack-Nova-API-Version`, answered in both), servers
//! (list, detail, show, create, delete, start and stop) and flavors, per project as the
//! token says.
//!
//! As real Nova does: a listing shows the token's project's servers, every project's
//! only with `all_tenants` and only to an admin (403 otherwise); a create lands in the
//! token's project, refuses fields Nova does not know, wants a flavor id, an image (or
//! a volume to boot from) and, from 2.37, `networks`; a server's flavor is embedded from
//! 2.47 and a reference before.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

use super::identity::{Caller, base_url};
use super::listing::{self, NOVA, Page, PageError, Params};
use super::world::{self, World};
use super::{Sim, fault, transition_later};

/// The microversions the simulated Nova takes.
const MIN: (u32, u32) = (2, 1);
const MAX: (u32, u32) = (2, 96);

/// The microversion a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NovaVersion(u32, u32);

/// Nova's routes that need a token.
pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/compute/v2.1/servers", get(list_brief).post(create_server))
        .route("/compute/v2.1/servers/detail", get(list_detail))
        .route("/compute/v2.1/servers/{id}", get(show_server).delete(delete_server))
        .route("/compute/v2.1/servers/{id}/action", post(server_action))
        .route("/compute/v2.1/flavors", get(list_flavors))
        .route("/compute/v2.1/flavors/detail", get(list_flavors_detail))
        .route("/compute/v2.1/flavors/{id}", get(show_flavor))
        .route_layer(middleware::from_fn(microversion))
}

/// Nova's version documents, which need no token.
pub fn open_routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/compute", get(versions))
        .route("/compute/", get(versions))
        .route("/compute/v2.1", get(version))
        .route("/compute/v2.1/", get(version))
}

fn v21(base: &str) -> Value {
    json!({"id": "v2.1", "status": "CURRENT", "version": format!("{}.{}", MAX.0, MAX.1),
           "min_version": format!("{}.{}", MIN.0, MIN.1), "updated": "2013-07-23T11:33:21Z",
           "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/")}],
           "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]})
}

async fn versions(headers: HeaderMap) -> Json<Value> {
    let base = base_url(&headers);
    Json(json!({"versions": [
        {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "", "updated": "2025-07-04T12:00:00Z",
         "links": [{"rel": "self", "href": format!("{base}/compute/v2/")}]},
        v21(&base),
    ]}))
}

async fn version(headers: HeaderMap) -> Json<Value> {
    Json(json!({"version": v21(&base_url(&headers))}))
}

/// Reads the requested microversion (2.1 when none is asked for), refuses one out of
/// range (406), and says which was used in the answer's headers.
async fn microversion(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let asked = headers
        .get("openstack-api-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("compute").map(|rest| rest.trim().to_owned()))
        .or_else(|| headers.get("x-openstack-nova-api-version").and_then(|v| v.to_str().ok()).map(str::to_owned));
    let version = match asked.as_deref().map(str::trim) {
        None => MIN,
        Some("latest") => MAX,
        Some(text) => match text.split_once('.').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?))) {
            Some(v) if (MIN..=MAX).contains(&v) => v,
            _ => {
                return fault(
                    StatusCode::NOT_ACCEPTABLE,
                    &format!(
                        "Version {text} is not supported by the API. Minimum is {}.{} and maximum is {}.{}.",
                        MIN.0, MIN.1, MAX.0, MAX.1
                    ),
                );
            }
        },
    };
    request.extensions_mut().insert(NovaVersion(version.0, version.1));
    let mut response = next.run(request).await;
    let text = format!("{}.{}", version.0, version.1);
    let answered = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("compute {text}")) {
        answered.insert("openstack-api-version", value);
    }
    if let Ok(value) = HeaderValue::from_str(&text) {
        answered.insert("x-openstack-nova-api-version", value);
    }
    answered.insert("vary", HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"));
    response
}

/// A server as Nova shows it at `version`: the flavor embedded from 2.47, a reference
/// to it before.
fn render(server: &Value, version: NovaVersion, base: &str) -> Value {
    let mut server = server.clone();
    let id = server["id"].as_str().unwrap_or_default().to_owned();
    let flavor = &server["flavor"];
    let flavor_id = flavor["id"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| flavor["original_name"].as_str().and_then(world::flavor_by).map(|f| f.0.to_owned()))
        .unwrap_or_default();
    if version >= NovaVersion(2, 47) {
        if let Some(flavor) = server["flavor"].as_object_mut() {
            flavor.remove("id");
        }
    } else {
        server["flavor"] = json!({"id": flavor_id,
            "links": [{"rel": "bookmark", "href": format!("{base}/compute/flavors/{flavor_id}")}]});
    }
    server["links"] = json!([{"rel": "self", "href": format!("{base}/compute/v2.1/servers/{id}")},
                             {"rel": "bookmark", "href": format!("{base}/compute/servers/{id}")}]);
    server
}

/// Nova's refusal of `all_tenants` to anyone but an admin.
const ALL_TENANTS: &str = "Policy doesn't allow os_compute_api:servers:detail:get_all_tenants to be performed.";

/// The servers a listing shows the caller; `None` when it asks for more than it may
/// ([`ALL_TENANTS`]).
fn visible<'w>(
    world: &'w World,
    caller: &'w Caller,
    params: &'w Params,
) -> Option<impl Iterator<Item = &'w Value> + 'w> {
    let all = params.flag("all_tenants").unwrap_or(false);
    if all && !caller.admin() {
        return None;
    }
    let project =
        if all { params.get("project_id").or_else(|| params.get("tenant_id")) } else { Some(caller.project()) };
    let name = params.get("name").map(str::to_lowercase);
    let status = params.get("status").map(str::to_uppercase);
    Some(
        world
            .servers
            .iter()
            .skip(listing::from_marker(&world.servers, params))
            .filter(move |s| project.is_none_or(|p| s["tenant_id"] == p))
            .filter(move |s| {
                name.as_deref().is_none_or(|n| s["name"].as_str().is_some_and(|sn| sn.to_lowercase().contains(n)))
            })
            .filter(move |s| status.as_deref().is_none_or(|st| s["status"] == st)),
    )
}

fn page_error(error: PageError) -> Response {
    match error {
        PageError::BadLimit(limit) => fault(StatusCode::BAD_REQUEST, &format!("Invalid limit: {limit}")),
        PageError::UnknownMarker(marker) => fault(StatusCode::BAD_REQUEST, &format!("marker [{marker}] not found")),
    }
}

async fn list_detail(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Extension(version): Extension<NovaVersion>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    list_servers(sim, caller, Some(version), base_url(&headers), params).await
}

async fn list_brief(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    list_servers(sim, caller, None, base_url(&headers), params).await
}

/// `GET /servers/detail` (each server whole, as Nova shows it at `version`) or
/// `GET /servers` (`None`: ids, names and links).
async fn list_servers(
    sim: Arc<Sim>,
    caller: Caller,
    version: Option<NovaVersion>,
    base: String,
    params: Params,
) -> Response {
    sim.count("GET servers");
    listing::answer(sim, move |world| {
        let Some(records) = visible(world, &caller, &params) else {
            return fault(StatusCode::FORBIDDEN, ALL_TENANTS);
        };
        let show = |s: &Value| match version {
            Some(version) => render(s, version, &base),
            None => json!({"id": s["id"], "name": s["name"], "links": []}),
        };
        let url = format!("{base}/compute/v2.1/servers{}", if version.is_some() { "/detail" } else { "" });
        let page = Page { key: "servers", records: Box::new(records), render: Some(&show), paging: NOVA, url };
        page.body(&params).map_or_else(page_error, listing::json_bytes)
    })
    .await
}

fn not_found(id: &str) -> Response {
    fault(StatusCode::NOT_FOUND, &format!("Instance {id} could not be found."))
}

/// The server `id`, if the caller may see it.
fn find<'w>(world: &'w World, caller: &Caller, id: &str) -> Option<&'w Value> {
    world.servers.get(id).filter(|s| caller.sees(s["tenant_id"].as_str().unwrap_or_default()))
}

async fn show_server(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Extension(version): Extension<NovaVersion>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sim.count("GET server");
    let world = sim.world();
    match find(&world, &caller, &id) {
        Some(server) => Json(json!({"server": render(server, version, &base_url(&headers))})).into_response(),
        None => not_found(&id),
    }
}

/// What Nova's create schema allows in `server` (it refuses anything else).
const CREATE_FIELDS: &[&str] = &[
    "name",
    "imageRef",
    "flavorRef",
    "networks",
    "availability_zone",
    "metadata",
    "key_name",
    "security_groups",
    "user_data",
    "block_device_mapping",
    "block_device_mapping_v2",
    "min_count",
    "max_count",
    "adminPass",
    "config_drive",
    "description",
    "tags",
    "OS-DCF:diskConfig",
    "accessIPv4",
    "accessIPv6",
    "personality",
    "return_reservation_id",
    "trusted_image_certificates",
    "host",
    "hypervisor_hostname",
    "hostname",
];

fn invalid(message: &str) -> Response {
    fault(StatusCode::BAD_REQUEST, &format!("Invalid input for field/attribute server. {message}"))
}

async fn create_server(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Extension(version): Extension<NovaVersion>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    sim.count("POST servers");
    if !caller.member() {
        return fault(StatusCode::FORBIDDEN, "Policy doesn't allow os_compute_api:servers:create to be performed.");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return fault(StatusCode::BAD_REQUEST, "Malformed request body");
    };
    let Some(server) = request["server"].as_object() else {
        return invalid("'server' is a required property");
    };
    if let Some(extra) = server.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return invalid(&format!("Additional properties are not allowed ('{extra}' was unexpected)"));
    }
    let Some(name) = server.get("name").and_then(Value::as_str).filter(|n| !n.trim().is_empty()) else {
        return invalid("'name' is a required property");
    };
    let Some(flavor_ref) = server.get("flavorRef").and_then(|f| f.as_str().map(str::to_owned).or(Some(f.to_string())))
    else {
        return invalid("'flavorRef' is a required property");
    };
    if version >= NovaVersion(2, 37) {
        match server.get("networks") {
            Some(Value::String(s)) if s == "auto" || s == "none" => {}
            Some(Value::Array(_)) => {}
            Some(other) => return invalid(&format!("{other} is not valid under any of the given schemas")),
            None => return invalid("'networks' is a required property"),
        }
    }
    let from_volume = server.get("block_device_mapping_v2").is_some() || server.get("block_device_mapping").is_some();
    let image = server.get("imageRef").and_then(Value::as_str).filter(|i| !i.is_empty());
    if image.is_none() && !from_volume {
        return fault(StatusCode::BAD_REQUEST, "Missing imageRef attribute");
    }
    // A flavor reference is its id, or a URL ending in it.
    let flavor_id = flavor_ref.rsplit('/').next().unwrap_or_default().to_owned();
    let Some(flavor) = world::flavor_by_id(&flavor_id) else {
        return fault(StatusCode::BAD_REQUEST, &format!("Flavor {flavor_ref} could not be found."));
    };
    let id = {
        let mut world = sim.world();
        // Beside a real Keystone the images are a real Glance's, which Nova would ask;
        // the simulator takes the id on trust there.
        if let Some(image) = image
            && !sim.identity.is_external()
            && world.images.get(image).is_none()
        {
            return fault(StatusCode::BAD_REQUEST, &format!("Image {image} could not be found."));
        }
        world.new_server(caller.project(), &caller.user_id, name, flavor, image, "BUILD")
    };
    transition_later(sim.clone(), id.clone(), |world, id| World::set_status(&mut world.servers, id, "ACTIVE"));
    let base = base_url(&headers);
    let answer = json!({"server": {"id": id, "adminPass": "simulated", "OS-DCF:diskConfig": "MANUAL",
        "security_groups": [{"name": "default"}],
        "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/servers/{id}")}]}});
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

async fn delete_server(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    sim.count("DELETE servers");
    let mut world = sim.world();
    if find(&world, &caller, &id).is_none() {
        return not_found(&id);
    }
    if !caller.member() {
        return fault(StatusCode::FORBIDDEN, "Policy doesn't allow os_compute_api:servers:delete to be performed.");
    }
    world.servers.remove(&id);
    // Its volumes are detached; a listing still holding the others keeps them uncopied.
    let attached: Vec<String> = world
        .volumes
        .iter()
        .filter(|v| v["attachments"].as_array().is_some_and(|a| a.iter().any(|a| a["server_id"] == id.as_str())))
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    for volume in &attached {
        if let Some(volume) = world.volumes.get_mut(volume) {
            volume["attachments"] = json!([]);
            volume["status"] = json!("available");
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn server_action(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    sim.count("POST servers action");
    let Ok(Value::Object(action)) = serde_json::from_slice::<Value>(&body) else {
        return fault(StatusCode::BAD_REQUEST, "Malformed request body");
    };
    let (name, from, to) = if action.contains_key("os-start") {
        ("start", "SHUTOFF", "ACTIVE")
    } else if action.contains_key("os-stop") {
        ("stop", "ACTIVE", "SHUTOFF")
    } else {
        return fault(StatusCode::BAD_REQUEST, "There is no such action");
    };
    let mut world = sim.world();
    let Some(server) = find(&world, &caller, &id) else {
        return not_found(&id);
    };
    if !caller.member() {
        return fault(
            StatusCode::FORBIDDEN,
            &format!("Policy doesn't allow os_compute_api:servers:{name} to be performed."),
        );
    }
    if server["status"] != from {
        let status = server["status"].as_str().unwrap_or_default().to_owned();
        return fault(
            StatusCode::CONFLICT,
            &format!("Cannot change the power state of instance {id} while it is {status}"),
        );
    }
    World::set_status(&mut world.servers, &id, to);
    StatusCode::ACCEPTED.into_response()
}

fn flavor_json(flavor: &world::Flavor, detail: bool, version: NovaVersion, base: &str) -> Value {
    let (id, name, vcpus, ram, disk) = *flavor;
    let links = json!([{"rel": "self", "href": format!("{base}/compute/v2.1/flavors/{id}")}]);
    let mut out = json!({"id": id, "name": name, "links": links});
    if version >= NovaVersion(2, 55) {
        out["description"] = Value::Null;
    }
    if detail {
        for (key, value) in [
            ("vcpus", json!(vcpus)),
            ("ram", json!(ram)),
            ("disk", json!(disk)),
            ("OS-FLV-EXT-DATA:ephemeral", json!(0)),
            ("swap", if version >= NovaVersion(2, 75) { json!(0) } else { json!("") }),
            ("rxtx_factor", json!(1.0)),
            ("os-flavor-access:is_public", json!(true)),
            ("OS-FLV-DISABLED:disabled", json!(false)),
        ] {
            out[key] = value;
        }
        if version >= NovaVersion(2, 61) {
            out["extra_specs"] = json!({});
        }
    }
    out
}

async fn flavors(sim: Arc<Sim>, version: NovaVersion, headers: HeaderMap, params: Params, detail: bool) -> Response {
    sim.count("GET flavors");
    let base = base_url(&headers);
    let all: Vec<Value> = world::FLAVORS.iter().map(|f| flavor_json(f, detail, version, &base)).collect();
    let url = format!("{base}/compute/v2.1/flavors{}", if detail { "/detail" } else { "" });
    let page = Page { key: "flavors", records: Box::new(all.iter()), render: None, paging: NOVA, url };
    page.body(&params).map_or_else(page_error, listing::json_bytes)
}

async fn list_flavors(
    State(sim): State<Arc<Sim>>,
    Extension(version): Extension<NovaVersion>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    flavors(sim, version, headers, params, false).await
}

async fn list_flavors_detail(
    State(sim): State<Arc<Sim>>,
    Extension(version): Extension<NovaVersion>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    flavors(sim, version, headers, params, true).await
}

async fn show_flavor(
    Extension(version): Extension<NovaVersion>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match world::flavor_by_id(&id) {
        Some(flavor) => {
            Json(json!({"flavor": flavor_json(flavor, true, version, &base_url(&headers))})).into_response()
        }
        None => fault(StatusCode::NOT_FOUND, &format!("Flavor {id} could not be found.")),
    }
}
