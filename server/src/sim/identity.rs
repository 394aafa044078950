//! The simulator's Keystone: who may log in (users with passwords, in domains), what
//! they may do where (roles, implied roles, role assignments on projects), the tokens
//! it issues (project-scoped, with the user, the project, the roles and a service
//! catalog, or unscoped), and Keystone's API over them: `POST`/`GET`/`HEAD`/`DELETE
//! /v3/auth/tokens`, `/v3/auth/projects`, `/v3/auth/catalog`, `/v3/projects`,
//! `/v3/role_assignments`, `/v3/users`, `/v3/roles`, `/v3/domains` and the version
//! documents, in Keystone's JSON.
//!
//! It is also where every other simulated service learns who calls
//! ([`Identity::caller`]): from its own tokens, or, when the simulator plays only Nova
//! and Neutron beside a real Keystone (`stalecast sim --keystone URL`), by asking that
//! Keystone to validate the token, as keystonemiddleware does.
//!
//! The users are `admin` (the service account, with the configured password; admin of
//! every project, new ones too), `alice`/`alice` (member of `web-team`) and `bob`/`bob`
//! (reader of `data-team`). `admin` implies `member`, which implies `reader`, as in
//! Keystone's bootstrap; a token lists the implied roles too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use rand::RngExt;
use serde_json::{Value, json};

use super::Sim;
use super::world::World;

/// Who makes a request: what a token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub user_name: String,
    /// The project the token is scoped to (none: unscoped).
    pub project_id: Option<String>,
    /// Role names, implied ones included.
    pub roles: Vec<String>,
}

impl Caller {
    /// Holds the `admin` role (on its project): may see and act in every project.
    pub fn admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }

    /// May create and change things in its project (`member`, or `admin`).
    pub fn member(&self) -> bool {
        self.roles.iter().any(|r| r == "member" || r == "admin")
    }

    /// Its project, `""` when unscoped.
    pub fn project(&self) -> &str {
        self.project_id.as_deref().unwrap_or_default()
    }

    /// May see a record of `owner`'s: an admin sees everything, others their project's.
    pub fn sees(&self, owner: &str) -> bool {
        self.admin() || owner == self.project()
    }
}

const DOMAIN: (&str, &str) = ("default", "Default");

/// The users besides the service account, each with their password (their name), the
/// project they have a role on and that role.
pub const USERS: [(&str, &str, &str); 2] = [("alice", "prj-web", "member"), ("bob", "prj-data", "reader")];

/// `(id, name, the role it implies)`.
const ROLES: [(&str, &str, Option<&str>); 3] =
    [("rol-admin", "admin", Some("member")), ("rol-member", "member", Some("reader")), ("rol-reader", "reader", None)];

#[derive(Clone, Debug)]
struct User {
    id: String,
    name: String,
    password: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Assignment {
    user: String,
    project: String,
    role: &'static str,
}

#[derive(Clone, Debug)]
struct Issued {
    user_id: String,
    project_id: Option<String>,
    methods: Vec<String>,
    issued: SystemTime,
    expires: SystemTime,
    audit_id: String,
}

/// The simulator's own Keystone: users, assignments, tokens.
#[derive(Debug)]
pub struct Keystone {
    users: Vec<User>,
    /// The service account's id: admin of every project, new ones too.
    service_user: String,
    assignments: Mutex<Vec<Assignment>>,
    tokens: Mutex<HashMap<String, Issued>>,
    next_token: AtomicU64,
    ttl: Duration,
}

/// A real Keystone the simulator's Nova and Neutron trust (`stalecast sim --keystone`).
#[derive(Debug)]
pub struct External {
    /// Keystone's v3 root.
    v3: String,
    http: reqwest::Client,
    /// Tokens validated lately, until their expiry or [`EXTERNAL_CACHE`], like
    /// keystonemiddleware's cache.
    cache: Mutex<HashMap<String, (Caller, Instant)>>,
}

/// How long a validated token of a real Keystone is trusted without asking again.
const EXTERNAL_CACHE: Duration = Duration::from_secs(30);

/// Where callers are known from.
#[derive(Debug)]
pub enum Identity {
    Local(Keystone),
    External(External),
}

impl Identity {
    /// The simulator's own Keystone with its users: the service account `user` with
    /// `password`, admin of every project of `world`, and alice and bob.
    pub fn local(user: &str, password: &str, ttl: Duration, world: &World) -> Self {
        let service = User { id: format!("usr-{user}"), name: user.to_owned(), password: password.to_owned() };
        let mut users = vec![service.clone()];
        let mut assignments: Vec<Assignment> = world
            .projects
            .iter()
            .filter_map(|p| p["id"].as_str())
            .map(|project| Assignment { user: service.id.clone(), project: project.to_owned(), role: "admin" })
            .collect();
        for (name, project, role) in USERS {
            if name == user {
                continue;
            }
            users.push(User { id: format!("usr-{name}"), name: name.into(), password: name.into() });
            assignments.push(Assignment { user: format!("usr-{name}"), project: project.into(), role });
        }
        Identity::Local(Keystone {
            users,
            service_user: service.id,
            assignments: Mutex::new(assignments),
            tokens: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            ttl,
        })
    }

    /// Trusts the tokens of the Keystone at `url` (its root or its v3 root).
    pub fn external(url: &str) -> Result<Self, String> {
        let url = url.trim_end_matches('/');
        let v3 = if url.ends_with("/v3") { url.to_owned() } else { format!("{url}/v3") };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("building the Keystone client: {e}"))?;
        Ok(Identity::External(External { v3, http, cache: Mutex::new(HashMap::new()) }))
    }

    /// Who `token` belongs to, if it is valid.
    ///
    /// Every request of every service asks this, so it never waits for the world's lock
    /// (which a large listing holds while it is written).
    pub async fn caller(&self, token: &str) -> Option<Caller> {
        match self {
            Identity::Local(keystone) => keystone.caller(token),
            Identity::External(external) => external.caller(token).await,
        }
    }

    /// Forgets every token, as a Keystone restart with new keys would.
    pub fn revoke_all(&self) {
        match self {
            Identity::Local(keystone) => keystone.tokens.lock().unwrap_or_else(|p| p.into_inner()).clear(),
            Identity::External(external) => external.cache.lock().unwrap_or_else(|p| p.into_inner()).clear(),
        }
    }

    /// Tokens issued so far (none by a real Keystone's stand-in).
    pub fn tokens_issued(&self) -> u64 {
        match self {
            Identity::Local(keystone) => keystone.next_token.load(Ordering::Relaxed) - 1,
            Identity::External(_) => 0,
        }
    }

    /// Gives the service account the admin role on a new project.
    pub fn project_created(&self, project: &str) {
        if let Identity::Local(keystone) = self {
            let mut assignments = keystone.assignments.lock().unwrap_or_else(|p| p.into_inner());
            assignments.push(Assignment {
                user: keystone.service_user.clone(),
                project: project.into(),
                role: "admin",
            });
        }
    }

    /// Whether the callers are a real Keystone's.
    pub fn is_external(&self) -> bool {
        matches!(self, Identity::External(_))
    }

    fn keystone(&self) -> Option<&Keystone> {
        match self {
            Identity::Local(keystone) => Some(keystone),
            Identity::External(_) => None,
        }
    }
}

impl Keystone {
    fn caller(&self, token: &str) -> Option<Caller> {
        let issued = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(token).cloned()?;
        if issued.expires <= SystemTime::now() {
            return None;
        }
        let user = self.users.iter().find(|u| u.id == issued.user_id)?;
        // A role taken away ends the token's rights there (a deleted project's tokens are
        // revoked with it).
        let roles = match &issued.project_id {
            Some(project) => self.roles_on(&user.id, project),
            None => Vec::new(),
        };
        if issued.project_id.is_some() && roles.is_empty() {
            return None;
        }
        Some(Caller { user_id: user.id.clone(), user_name: user.name.clone(), project_id: issued.project_id, roles })
    }

    /// The roles `user` has on `project`, implied ones included, strongest first.
    fn roles_on(&self, user: &str, project: &str) -> Vec<String> {
        let assignments = self.assignments.lock().unwrap_or_else(|p| p.into_inner());
        let mut roles: Vec<String> = Vec::new();
        for assignment in assignments.iter().filter(|a| a.user == user && a.project == project) {
            let mut role = Some(assignment.role);
            while let Some(name) = role {
                if !roles.iter().any(|r| r == name) {
                    roles.push(name.to_owned());
                }
                role = ROLES.iter().find(|(_, n, _)| *n == name).and_then(|(_, _, implied)| *implied);
            }
        }
        roles.sort_by_key(|r| ROLES.iter().position(|(_, n, _)| n == r));
        roles
    }

    fn user_by(&self, selector: &Value) -> Option<&User> {
        if let Some(id) = selector["id"].as_str() {
            return self.users.iter().find(|u| u.id == id);
        }
        let name = selector["name"].as_str()?;
        domain_matches(&selector["domain"]).then(|| self.users.iter().find(|u| u.name == name))?
    }
}

impl External {
    async fn caller(&self, token: &str) -> Option<Caller> {
        if let Some((caller, until)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(token).cloned()
            && until > Instant::now()
        {
            return Some(caller);
        }
        let response = self
            .http
            .get(format!("{}/auth/tokens?nocatalog", self.v3))
            .header("x-auth-token", token)
            .header("x-subject-token", token)
            .send()
            .await;
        let response = match response {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                tracing::debug!(status = %response.status(), "Keystone did not validate a token");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot reach Keystone to validate a token");
                return None;
            }
        };
        let body: Value = response.json().await.ok()?;
        let token_body = &body["token"];
        let caller = Caller {
            user_id: token_body["user"]["id"].as_str()?.to_owned(),
            user_name: token_body["user"]["name"].as_str().unwrap_or_default().to_owned(),
            project_id: token_body["project"]["id"].as_str().map(str::to_owned),
            roles: token_body["roles"]
                .as_array()
                .map(|roles| roles.iter().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        };
        let expires = token_body["expires_at"]
            .as_str()
            .and_then(|at| humantime::parse_rfc3339_weak(at.trim_end_matches('Z')).ok())
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        let until = Instant::now() + expires.min(EXTERNAL_CACHE);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(token.to_owned(), (caller.clone(), until));
        Some(caller)
    }
}

/// Whether a `{"id": …}` or `{"name": …}` domain selector names the default domain (an
/// absent one does).
fn domain_matches(selector: &Value) -> bool {
    match (selector["id"].as_str(), selector["name"].as_str()) {
        (Some(id), _) => id == DOMAIN.0,
        (None, Some(name)) => name == DOMAIN.1,
        (None, None) => selector.is_null(),
    }
}

/// Keystone's error body.
pub fn keystone_error(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    (status, Json(json!({"error": {"code": status.as_u16(), "message": message, "title": title}}))).into_response()
}

fn unauthorized() -> Response {
    keystone_error(StatusCode::UNAUTHORIZED, "The request you have made requires authentication.")
}

fn forbidden(action: &str) -> Response {
    keystone_error(
        StatusCode::FORBIDDEN,
        &format!("You are not authorized to perform the requested action: identity:{action}."),
    )
}

/// Keystone's time format (`2026-01-02T03:04:05.123456Z`).
fn keystone_time(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// The URL the request came to (`http://host:port`), for links and the catalog.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// The service catalog, as a token scoped to `project` shows it: every service at
/// `base`, registered the way real deployments do (Glance, Neutron and Keystone
/// unversioned; Cinder with the project in its URL), with public, internal and admin
/// endpoints in `RegionOne`.
pub fn catalog(base: &str, project: &str) -> Value {
    let services = [
        ("identity", "keystone", format!("{base}/identity")),
        ("compute", "nova", format!("{base}/compute/v2.1")),
        ("block-storage", "cinder", format!("{base}/volume/v3/{project}")),
        ("volumev3", "cinderv3", format!("{base}/volume/v3/{project}")),
        ("image", "glance", format!("{base}/image")),
        ("network", "neutron", format!("{base}/network")),
    ];
    let entries: Vec<Value> = services
        .iter()
        .map(|(kind, name, url)| {
            let endpoints: Vec<Value> = ["public", "internal", "admin"]
                .iter()
                .map(|interface| {
                    json!({"id": format!("ep-{name}-{interface}"), "interface": interface, "region": "RegionOne",
                           "region_id": "RegionOne", "url": url})
                })
                .collect();
            json!({"id": format!("svc-{name}"), "type": kind, "name": name, "endpoints": endpoints})
        })
        .collect();
    Value::Array(entries)
}

/// A token's body, as Keystone answers it when it is issued or validated.
fn token_body(keystone: &Keystone, issued: &Issued, world: &World, base: &str, with_catalog: bool) -> Value {
    let user = keystone.users.iter().find(|u| u.id == issued.user_id);
    let domain = json!({"id": DOMAIN.0, "name": DOMAIN.1});
    let mut token = json!({
        "methods": issued.methods,
        "user": {"id": issued.user_id, "name": user.map(|u| u.name.as_str()), "domain": domain,
                 "password_expires_at": null},
        "audit_ids": [issued.audit_id],
        "issued_at": keystone_time(issued.issued),
        "expires_at": keystone_time(issued.expires),
    });
    if let Some(project) = &issued.project_id {
        let name = world.projects.iter().find(|p| p["id"] == project.as_str()).map(|p| p["name"].clone());
        token["project"] = json!({"id": project, "name": name, "domain": domain});
        token["is_domain"] = json!(false);
        let roles: Vec<Value> = keystone
            .roles_on(&issued.user_id, project)
            .iter()
            .filter_map(|name| ROLES.iter().find(|(_, n, _)| n == name))
            .map(|(id, name, _)| json!({"id": id, "name": name}))
            .collect();
        token["roles"] = json!(roles);
        if with_catalog {
            token["catalog"] = catalog(base, project);
        }
    } else if with_catalog {
        token["catalog"] = json!([]);
    }
    json!({ "token": token })
}

/// Keystone's routes that need no token: the version documents and `POST /v3/auth/tokens`
/// (and, with their own check of both tokens, `GET`/`HEAD`/`DELETE` of it). Mounted at
/// the root and under `/identity`.
pub fn open_routes() -> Router<Arc<Sim>> {
    Router::new().route("/", get(versions)).route("/v3", get(version)).route("/v3/", get(version)).route(
        "/v3/auth/tokens",
        axum::routing::post(issue_token).get(validate_token).head(check_token).delete(revoke_token),
    )
}

/// Keystone's routes that need a valid token (the caller is in the request's
/// extensions).
pub fn guarded_routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v3/auth/projects", get(auth_projects))
        .route("/v3/auth/catalog", get(auth_catalog))
        .route("/v3/projects", get(list_projects).post(create_project))
        .route("/v3/projects/{id}", get(show_project).delete(delete_project))
        .route("/v3/role_assignments", get(role_assignments))
        .route("/v3/users", get(list_users))
        .route("/v3/users/{id}", get(show_user))
        .route("/v3/users/{id}/projects", get(user_projects))
        .route("/v3/roles", get(list_roles))
        .route("/v3/domains", get(list_domains))
        .route("/v3/domains/{id}", get(show_domain))
}

/// The path prefix a request came under (`/identity` or nothing), for the links in
/// version documents.
fn prefix(request_path: &str) -> &'static str {
    if request_path.starts_with("/identity") { "/identity" } else { "" }
}

fn v3_entry(base: &str, prefix: &str) -> Value {
    json!({"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
           "links": [{"rel": "self", "href": format!("{base}{prefix}/v3/")}],
           "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]})
}

async fn versions(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let entry = v3_entry(&base_url(&headers), prefix(uri.path()));
    (StatusCode::MULTIPLE_CHOICES, Json(json!({"versions": {"values": [entry]}}))).into_response()
}

async fn version(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    Json(json!({"version": v3_entry(&base_url(&headers), prefix(uri.path()))})).into_response()
}

async fn issue_token(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let Some(keystone) = sim.identity.keystone() else { return unauthorized() };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return keystone_error(StatusCode::BAD_REQUEST, "Expecting to find auth in request body.");
    };
    let identity = &request["auth"]["identity"];
    let Some(methods) = identity["methods"].as_array().filter(|m| !m.is_empty()) else {
        return keystone_error(StatusCode::BAD_REQUEST, "Expecting to find identity.methods in auth.");
    };
    let methods: Vec<String> = methods.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect();
    // A rescoped token expires with the one it was made from, as Keystone's do.
    let mut expires = None;
    let user = match methods.first().map(String::as_str) {
        Some("password") => {
            let selector = &identity["password"]["user"];
            match keystone.user_by(selector) {
                Some(user) if selector["password"].as_str() == Some(user.password.as_str()) => user.clone(),
                _ => return unauthorized(),
            }
        }
        // Rescoping: a valid token stands for its user.
        Some("token") => {
            let tokens = keystone.tokens.lock().unwrap_or_else(|p| p.into_inner());
            let issued = identity["token"]["id"].as_str().and_then(|t| tokens.get(t)).cloned();
            drop(tokens);
            match issued.filter(|i| i.expires > SystemTime::now()) {
                Some(issued) => match keystone.users.iter().find(|u| u.id == issued.user_id) {
                    Some(user) => {
                        expires = Some(issued.expires);
                        user.clone()
                    }
                    None => return unauthorized(),
                },
                None => return unauthorized(),
            }
        }
        _ => return unauthorized(),
    };
    let scope = &request["auth"]["scope"];
    let project_id = if scope.is_null() {
        None
    } else if let Some(project) = scope.get("project") {
        let world = sim.world();
        let found = match (project["id"].as_str(), project["name"].as_str()) {
            (Some(id), _) => world.projects.iter().find(|p| p["id"] == id),
            (None, Some(name)) if domain_matches(&project["domain"]) => {
                world.projects.iter().find(|p| p["name"] == name)
            }
            _ => None,
        };
        match found.and_then(|p| p["id"].as_str()) {
            Some(id) => Some(id.to_owned()),
            None => return unauthorized(),
        }
    } else {
        return keystone_error(StatusCode::UNAUTHORIZED, "Only project scope is supported by this Keystone.");
    };
    if let Some(project) = &project_id
        && keystone.roles_on(&user.id, project).is_empty()
    {
        return unauthorized();
    }
    let n = keystone.next_token.fetch_add(1, Ordering::Relaxed);
    let secret = format!("gAAAA-sim-{n:08}-{:016x}", rand::rng().random::<u64>());
    let issued_at = SystemTime::now();
    let issued = Issued {
        user_id: user.id.clone(),
        project_id,
        methods,
        issued: issued_at,
        expires: expires.unwrap_or(issued_at + keystone.ttl),
        audit_id: format!("{:022x}", rand::rng().random::<u64>()),
    };
    keystone.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(secret.clone(), issued.clone());
    let body = token_body(keystone, &issued, &sim.world(), &base_url(&headers), !params.contains_key("nocatalog"));
    (StatusCode::CREATED, [("x-subject-token", secret)], Json(body)).into_response()
}

/// Why a token's subject cannot be looked at.
enum Refusal {
    Unauthorized,
    Forbidden,
    NotFound,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => unauthorized(),
            Refusal::Forbidden => forbidden("validate_token"),
            Refusal::NotFound => keystone_error(StatusCode::NOT_FOUND, "Could not find token."),
        }
    }
}

/// The subject token of `GET`/`HEAD`/`DELETE /v3/auth/tokens`, when the caller's token
/// is valid and may look at it (its own, or any for an admin).
fn subject(sim: &Sim, headers: &HeaderMap) -> Result<(String, Issued), Refusal> {
    let keystone = sim.identity.keystone().ok_or(Refusal::Unauthorized)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (token, subject) = (header("x-auth-token"), header("x-subject-token"));
    let caller = keystone.caller(&token).ok_or(Refusal::Unauthorized)?;
    if subject != token && !caller.admin() {
        return Err(Refusal::Forbidden);
    }
    let issued = keystone.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(&subject).cloned();
    match issued.filter(|i| i.expires > SystemTime::now()) {
        Some(issued) => Ok((subject, issued)),
        None => Err(Refusal::NotFound),
    }
}

async fn validate_token(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (subject, issued) = match subject(&sim, &headers) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(keystone) = sim.identity.keystone() else { return unauthorized() };
    let body = token_body(keystone, &issued, &sim.world(), &base_url(&headers), !params.contains_key("nocatalog"));
    ([("x-subject-token", subject)], Json(body)).into_response()
}

async fn check_token(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    match subject(&sim, &headers) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn revoke_token(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    match subject(&sim, &headers) {
        Ok((subject, _)) => {
            if let Some(keystone) = sim.identity.keystone() {
                keystone.tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(&subject);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// A project as Keystone shows it.
fn project_json(project: &Value, base: &str) -> Value {
    let mut project = project.clone();
    let id = project["id"].as_str().unwrap_or_default().to_owned();
    for (key, value) in [
        ("domain_id", json!(DOMAIN.0)),
        ("parent_id", json!(DOMAIN.0)),
        ("is_domain", json!(false)),
        ("tags", json!([])),
        ("options", json!({})),
        ("links", json!({"self": format!("{base}/identity/v3/projects/{id}")})),
    ] {
        if project.get(key).is_none() {
            project[key] = value;
        }
    }
    project
}

fn collection_links(base: &str, path: &str) -> Value {
    json!({"self": format!("{base}/identity/v3/{path}"), "previous": null, "next": null})
}

/// The projects `user` has a role on.
fn projects_of(sim: &Sim, user: &str, headers: &HeaderMap, path: &str) -> Response {
    let Some(keystone) = sim.identity.keystone() else { return unauthorized() };
    let base = base_url(headers);
    let world = sim.world();
    let projects: Vec<Value> = world
        .projects
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| !keystone.roles_on(user, id).is_empty()))
        .map(|p| project_json(p, &base))
        .collect();
    Json(json!({"projects": projects, "links": collection_links(&base, path)})).into_response()
}

async fn auth_projects(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    sim.count("GET projects");
    projects_of(&sim, &caller.user_id, &headers, "auth/projects")
}

async fn user_projects(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !caller.admin() && caller.user_id != id {
        return forbidden("list_user_projects");
    }
    projects_of(&sim, &id, &headers, &format!("users/{id}/projects"))
}

async fn auth_catalog(Extension(caller): Extension<Caller>, headers: HeaderMap) -> Response {
    let Some(project) = &caller.project_id else {
        return keystone_error(StatusCode::FORBIDDEN, "A scoped token is required to list the catalog.");
    };
    Json(json!({"catalog": catalog(&base_url(&headers), project), "links": collection_links(&base_url(&headers), "auth/catalog")}))
        .into_response()
}

async fn list_projects(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    sim.count("GET projects");
    if !caller.admin() {
        return forbidden("list_projects");
    }
    let base = base_url(&headers);
    let world = sim.world();
    let projects: Vec<Value> = world
        .projects
        .iter()
        .filter(|p| params.get("name").is_none_or(|name| p["name"] == name.as_str()))
        .filter(|_| params.get("domain_id").is_none_or(|d| d == DOMAIN.0))
        .filter(|p| params.get("enabled").is_none_or(|e| p["enabled"].as_bool() == Some(e != "false" && e != "0")))
        .map(|p| project_json(p, &base))
        .collect();
    Json(json!({"projects": projects, "links": collection_links(&base, "projects")})).into_response()
}

async fn show_project(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(keystone) = sim.identity.keystone() else { return unauthorized() };
    let world = sim.world();
    let Some(project) = world.projects.iter().find(|p| p["id"] == id.as_str()) else {
        return keystone_error(StatusCode::NOT_FOUND, &format!("Could not find project: {id}."));
    };
    if !caller.admin() && keystone.roles_on(&caller.user_id, &id).is_empty() {
        return forbidden("get_project");
    }
    Json(json!({"project": project_json(project, &base_url(&headers))})).into_response()
}

async fn create_project(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !caller.admin() {
        return forbidden("create_project");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return keystone_error(StatusCode::BAD_REQUEST, "Expecting to find project in request body.");
    };
    let Some(name) = request["project"]["name"].as_str().filter(|n| !n.trim().is_empty() && n.len() <= 64) else {
        return keystone_error(StatusCode::BAD_REQUEST, "Invalid input for field 'name'.");
    };
    let project = {
        let mut world = sim.world();
        if world.projects.iter().any(|p| p["name"] == name) {
            return keystone_error(
                StatusCode::CONFLICT,
                &format!(
                    "Conflict occurred attempting to store project - it is not permitted to have two projects with the same name in the same domain : {name}."
                ),
            );
        }
        let id = format!("prj-{:016x}", rand::rng().random::<u64>());
        let project = json!({"id": id, "name": name,
            "description": request["project"]["description"].as_str().unwrap_or_default(),
            "enabled": request["project"]["enabled"].as_bool().unwrap_or(true), "domain_id": DOMAIN.0});
        world.projects.push(project.clone());
        project
    };
    sim.identity.project_created(project["id"].as_str().unwrap_or_default());
    (StatusCode::CREATED, Json(json!({"project": project_json(&project, &base_url(&headers))}))).into_response()
}

async fn delete_project(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    if !caller.admin() {
        return forbidden("delete_project");
    }
    let mut world = sim.world();
    let before = world.projects.len();
    world.projects.retain(|p| p["id"] != id.as_str());
    if world.projects.len() == before {
        return keystone_error(StatusCode::NOT_FOUND, &format!("Could not find project: {id}."));
    }
    drop(world);
    if let Some(keystone) = sim.identity.keystone() {
        keystone.assignments.lock().unwrap_or_else(|p| p.into_inner()).retain(|a| a.project != id);
        // As Keystone does: the project's tokens go with it.
        keystone.tokens.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, t| t.project_id.as_deref() != Some(&id));
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /v3/role_assignments` with Keystone's filters (`user.id`, `scope.project.id`,
/// `role.id`), `effective` (implied roles too) and `include_names`. For admins.
async fn role_assignments(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(keystone) = sim.identity.keystone() else { return unauthorized() };
    if !caller.admin() {
        return forbidden("list_role_assignments");
    }
    let base = base_url(&headers);
    let names = params.contains_key("include_names");
    let effective = params.contains_key("effective");
    let world = sim.world();
    let project_name = |id: &str| world.projects.iter().find(|p| p["id"] == id).map(|p| p["name"].clone());
    let assignments = keystone.assignments.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut rows: Vec<(String, String, &'static str)> = Vec::new();
    for a in &assignments {
        let mut role = Some(a.role);
        while let Some(name) = role {
            if !rows.iter().any(|(u, p, r)| *u == a.user && *p == a.project && *r == name) {
                rows.push((a.user.clone(), a.project.clone(), name));
            }
            role = if effective { ROLES.iter().find(|(_, n, _)| *n == name).and_then(|(_, _, i)| *i) } else { None };
        }
    }
    let listed: Vec<Value> = rows
        .iter()
        .filter_map(|(user, project, role)| {
            let (role_id, role_name, _) = ROLES.iter().find(|(_, n, _)| n == role)?;
            let keep = params.get("user.id").is_none_or(|u| u == user)
                && params.get("scope.project.id").is_none_or(|p| p == project)
                && params.get("role.id").is_none_or(|r| r == role_id);
            if !keep {
                return None;
            }
            let mut entry = json!({
                "role": {"id": role_id}, "user": {"id": user}, "scope": {"project": {"id": project}},
                "links": {"assignment": format!("{base}/identity/v3/projects/{project}/users/{user}/roles/{role_id}")},
            });
            if names {
                let domain = json!({"id": DOMAIN.0, "name": DOMAIN.1});
                entry["role"]["name"] = json!(role_name);
                entry["user"]["name"] = json!(keystone.users.iter().find(|u| u.id == *user).map(|u| u.name.as_str()));
                entry["user"]["domain"] = domain.clone();
                entry["scope"]["project"]["name"] = json!(project_name(project));
                entry["scope"]["project"]["domain"] = domain;
            }
            Some(entry)
        })
        .collect();
    Json(json!({"role_assignments": listed, "links": collection_links(&base, "role_assignments")})).into_response()
}

fn user_json(user: &User, base: &str) -> Value {
    json!({"id": user.id, "name": user.name, "domain_id": DOMAIN.0, "enabled": true, "password_expires_at": null,
           "options": {}, "links": {"self": format!("{base}/identity/v3/users/{}", user.id)}})
}

async fn list_users(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(keystone) = sim.identity.keystone() else { return unauthorized() };
    if !caller.admin() {
        return forbidden("list_users");
    }
    let base = base_url(&headers);
    let users: Vec<Value> = keystone
        .users
        .iter()
        .filter(|u| params.get("name").is_none_or(|n| *n == u.name))
        .map(|u| user_json(u, &base))
        .collect();
    Json(json!({"users": users, "links": collection_links(&base, "users")})).into_response()
}

async fn show_user(
    State(sim): State<Arc<Sim>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(keystone) = sim.identity.keystone() else { return unauthorized() };
    if !caller.admin() && caller.user_id != id {
        return forbidden("get_user");
    }
    match keystone.users.iter().find(|u| u.id == id) {
        Some(user) => Json(json!({"user": user_json(user, &base_url(&headers))})).into_response(),
        None => keystone_error(StatusCode::NOT_FOUND, &format!("Could not find user: {id}.")),
    }
}

async fn list_roles(headers: HeaderMap, Query(params): Query<HashMap<String, String>>) -> Response {
    let base = base_url(&headers);
    let roles: Vec<Value> = ROLES
        .iter()
        .filter(|(_, name, _)| params.get("name").is_none_or(|n| n == name))
        .map(|(id, name, _)| {
            json!({"id": id, "name": name, "domain_id": null, "description": null, "options": {},
                   "links": {"self": format!("{base}/identity/v3/roles/{id}")}})
        })
        .collect();
    Json(json!({"roles": roles, "links": collection_links(&base, "roles")})).into_response()
}

fn domain_json(base: &str) -> Value {
    json!({"id": DOMAIN.0, "name": DOMAIN.1, "description": "The default domain", "enabled": true, "tags": [],
           "options": {}, "links": {"self": format!("{base}/identity/v3/domains/{}", DOMAIN.0)}})
}

async fn list_domains(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    Json(json!({"domains": [domain_json(&base)], "links": collection_links(&base, "domains")})).into_response()
}

async fn show_domain(headers: HeaderMap, Path(id): Path<String>) -> Response {
    if id != DOMAIN.0 {
        return keystone_error(StatusCode::NOT_FOUND, &format!("Could not find domain: {id}."));
    }
    Json(json!({"domain": domain_json(&base_url(&headers))})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_imply_roles_and_the_service_account_is_admin_everywhere() {
        let world = World::seeded();
        let Identity::Local(keystone) = Identity::local("admin", "pw", Duration::from_secs(60), &world) else {
            panic!("local");
        };
        assert_eq!(keystone.roles_on("usr-admin", "prj-data"), ["admin", "member", "reader"]);
        assert_eq!(keystone.roles_on("usr-alice", "prj-web"), ["member", "reader"]);
        assert!(keystone.roles_on("usr-alice", "prj-data").is_empty());
        assert_eq!(keystone.roles_on("usr-bob", "prj-data"), ["reader"]);
        assert!(keystone.user_by(&json!({"name": "alice", "domain": {"name": "Default"}})).is_some());
        assert!(keystone.user_by(&json!({"name": "alice", "domain": {"id": "other"}})).is_none());
    }
}
