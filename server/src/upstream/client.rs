//! A client for an OpenStack-shaped API: Keystone password authentication with its
//! service catalog, then Nova, Cinder, Glance and Neutron calls in OpenStack's JSON
//! envelopes, translated to the domain's types.
//!
//! The token is renewed shortly before Keystone says it expires, and once more
//! whenever a service rejects it (401).

use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::UpstreamError;
use super::model::{Image, Network, Project, Server, ServerAddress, Volume};

/// How to reach and log in to the upstream.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Keystone's URL, e.g. `http://127.0.0.1:5000` (the `/v3/…` paths are appended).
    pub auth_url: String,
    pub user: String,
    pub password: String,
    pub project: String,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Renew the token when it has less than this left.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Identity,
    Compute,
    Volume,
    Image,
    Network,
}

impl Service {
    fn catalog_types(self) -> &'static [&'static str] {
        match self {
            Service::Identity => &["identity"],
            Service::Compute => &["compute"],
            Service::Volume => &["volumev3", "block-storage", "volume"],
            Service::Image => &["image"],
            Service::Network => &["network"],
        }
    }
}

#[derive(Clone, Debug)]
struct Session {
    token: String,
    expires_at: Option<SystemTime>,
    catalog: Vec<(String, String)>,
}

impl Session {
    fn fresh(&self) -> bool {
        self.expires_at.is_none_or(|at| at > SystemTime::now() + RENEW_BEFORE_EXPIRY)
    }

    fn endpoint(&self, service: Service) -> Option<&str> {
        service
            .catalog_types()
            .iter()
            .find_map(|wanted| self.catalog.iter().find(|(kind, _)| kind == wanted).map(|(_, url)| url.as_str()))
    }
}

/// The upstream client. One per process; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct OpenStackClient {
    http: reqwest::Client,
    config: UpstreamConfig,
    session: Mutex<Option<Session>>,
}

impl OpenStackClient {
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| UpstreamError::Failed(format!("building HTTP client: {e}")))?;
        Ok(OpenStackClient { http, config, session: Mutex::new(None) })
    }

    pub fn auth_url(&self) -> &str {
        &self.config.auth_url
    }

    /// A valid session, authenticating when there is none or it is about to expire.
    async fn session(&self) -> Result<Session, UpstreamError> {
        let mut guard = self.session.lock().await;
        if let Some(session) = guard.as_ref().filter(|s| s.fresh()) {
            return Ok(session.clone());
        }
        let session = self.authenticate().await?;
        *guard = Some(session.clone());
        Ok(session)
    }

    async fn forget_token(&self, token: &str) {
        let mut guard = self.session.lock().await;
        if guard.as_ref().is_some_and(|s| s.token == token) {
            *guard = None;
        }
    }

    async fn authenticate(&self) -> Result<Session, UpstreamError> {
        let url = format!("{}/v3/auth/tokens", self.config.auth_url.trim_end_matches('/'));
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.config.user, "domain": {"id": "default"}, "password": self.config.password}}},
            "scope": {"project": {"name": self.config.project, "domain": {"id": "default"}}}
        }});
        let response = self.http.post(&url).json(&body).send().await.map_err(|e| transport(e, false))?;
        let status = response.status();
        if !status.is_success() {
            return Err(UpstreamError::Failed(format!("Keystone refused authentication: {status}")));
        }
        let token = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| UpstreamError::Failed("Keystone answered without X-Subject-Token".into()))?;
        let bytes = response.bytes().await.map_err(|e| transport(e, false))?;
        let body: TokenEnvelope = decode(&bytes, "Keystone token")?;
        let catalog = body
            .token
            .catalog
            .into_iter()
            .filter_map(|entry| {
                let url = entry
                    .endpoints
                    .iter()
                    .find(|e| e.interface == "public")
                    .or(entry.endpoints.first())?
                    .url
                    .trim_end_matches('/')
                    .to_owned();
                Some((entry.kind, url))
            })
            .collect();
        let expires_at = body.token.expires_at.as_deref().and_then(|at| humantime::parse_rfc3339_weak(at).ok());
        tracing::debug!(?expires_at, "authenticated with Keystone");
        Ok(Session { token, expires_at, catalog })
    }

    /// Sends one request to a service, renewing the token once if it is rejected.
    /// Answers the body of a 2xx; maps every other outcome to an [`UpstreamError`]. A
    /// write (any method but `GET`) that was sent and got no readable answer is
    /// [`UpstreamError::OutcomeUnknown`]: it may have taken effect.
    async fn request(
        &self,
        method: Method,
        service: Service,
        path: &str,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, UpstreamError> {
        let writes = method != Method::GET;
        for attempt in 0..2 {
            let session = self.session().await?;
            let base = session
                .endpoint(service)
                .ok_or_else(|| UpstreamError::Failed(format!("the service catalog has no {:?} endpoint", service)))?;
            let mut request = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .header("x-auth-token", &session.token)
                .header("accept", "application/json");
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| transport(e, writes))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                tracing::info!("upstream rejected the token; authenticating again");
                self.forget_token(&session.token).await;
                continue;
            }
            let bytes = response.bytes().await.map_err(|e| transport(e, writes))?;
            if status.is_success() {
                return Ok(bytes);
            }
            let message = fault_message(&bytes).unwrap_or_else(|| status.to_string());
            return Err(match status {
                StatusCode::NOT_FOUND => UpstreamError::NotFound(message),
                StatusCode::CONFLICT => UpstreamError::Conflict(message),
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => UpstreamError::Rejected(message),
                s => UpstreamError::Failed(format!("{method} {path}: {s}: {message}")),
            });
        }
        Err(UpstreamError::Failed("upstream keeps rejecting fresh tokens".into()))
    }

    async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        service: Service,
        path: &str,
        what: &str,
    ) -> Result<T, UpstreamError> {
        let bytes = self.request(Method::GET, service, path, None).await?;
        if bytes.len() < DECODE_INLINE {
            return decode(&bytes, what);
        }
        // A large listing (36,000 volumes are some 13 MB from Cinder) takes tens of
        // milliseconds to parse: on the blocking pool, not on a worker the stream needs.
        let what = what.to_owned();
        tokio::task::spawn_blocking(move || decode(&bytes, &what))
            .await
            .map_err(|e| UpstreamError::Failed(format!("decoding {e}")))?
    }

    pub async fn projects(&self) -> Result<Vec<Project>, UpstreamError> {
        let body: ProjectsEnvelope = self.get(Service::Identity, "/projects", "projects").await?;
        Ok(body.projects.into_iter().map(OsProject::into_domain).collect())
    }

    pub async fn servers(&self) -> Result<Vec<Server>, UpstreamError> {
        let body: ServersEnvelope = self.get(Service::Compute, "/servers/detail?all_tenants=1", "servers").await?;
        Ok(body.servers.into_iter().map(OsServer::into_domain).collect())
    }

    pub async fn volumes(&self) -> Result<Vec<Volume>, UpstreamError> {
        let body: VolumesEnvelope = self.get(Service::Volume, "/volumes/detail?all_tenants=1", "volumes").await?;
        Ok(body.volumes.into_iter().map(OsVolume::into_domain).collect())
    }

    /// One server (`GET /servers/{id}`).
    pub async fn server(&self, id: &str) -> Result<Server, UpstreamError> {
        let body: ServerEnvelope = self.get(Service::Compute, &format!("/servers/{}", segment(id)), "server").await?;
        Ok(body.server.into_domain())
    }

    /// One volume (`GET /volumes/{id}`).
    pub async fn volume(&self, id: &str) -> Result<Volume, UpstreamError> {
        let body: VolumeEnvelope = self.get(Service::Volume, &format!("/volumes/{}", segment(id)), "volume").await?;
        Ok(body.volume.into_domain())
    }

    pub async fn images(&self) -> Result<Vec<Image>, UpstreamError> {
        let body: ImagesEnvelope = self.get(Service::Image, "/images", "images").await?;
        Ok(body.images.into_iter().map(OsImage::into_domain).collect())
    }

    pub async fn networks(&self) -> Result<Vec<Network>, UpstreamError> {
        let body: NetworksEnvelope = self.get(Service::Network, "/networks", "networks").await?;
        Ok(body.networks.into_iter().map(OsNetwork::into_domain).collect())
    }

    /// Creates a server; answers its id.
    pub async fn create_server(
        &self,
        project_id: &str,
        name: &str,
        flavor: &str,
        image_id: Option<&str>,
    ) -> Result<String, UpstreamError> {
        let body = json!({"server": {"name": name, "flavorRef": flavor, "imageRef": image_id.unwrap_or(""),
                                     "project_id": project_id}});
        let bytes = self.request(Method::POST, Service::Compute, "/servers", Some(&body)).await?;
        let created: CreatedServer = decode_written(&bytes, "created server")?;
        Ok(created.server.id)
    }

    pub async fn delete_server(&self, id: &str) -> Result<(), UpstreamError> {
        self.request(Method::DELETE, Service::Compute, &format!("/servers/{}", segment(id)), None).await?;
        Ok(())
    }

    /// Runs a server action (`os-start`, `os-stop`).
    pub async fn server_action(&self, id: &str, action: &str) -> Result<(), UpstreamError> {
        let body = json!({ action: null });
        self.request(Method::POST, Service::Compute, &format!("/servers/{}/action", segment(id)), Some(&body)).await?;
        Ok(())
    }

    /// Creates a volume; answers its id.
    pub async fn create_volume(
        &self,
        project_id: &str,
        name: &str,
        size_gb: u32,
        description: &str,
    ) -> Result<String, UpstreamError> {
        let body = json!({"volume": {"name": name, "size": size_gb, "description": description,
                                     "project_id": project_id}});
        let bytes = self.request(Method::POST, Service::Volume, "/volumes", Some(&body)).await?;
        let created: CreatedVolume = decode_written(&bytes, "created volume")?;
        Ok(created.volume.id)
    }

    /// Deletes a volume. Cinder refuses to delete a volume in a state that forbids it (in
    /// use, with snapshots, …) with a 400 `InvalidVolume` ("Volume status must be
    /// available or error…"); a delete's only input is the id, so a 400 here is always
    /// that state conflict, answered as [`UpstreamError::Conflict`] with Cinder's message.
    pub async fn delete_volume(&self, id: &str) -> Result<(), UpstreamError> {
        match self.request(Method::DELETE, Service::Volume, &format!("/volumes/{}", segment(id)), None).await {
            Ok(_) => Ok(()),
            Err(UpstreamError::Rejected(message)) => Err(UpstreamError::Conflict(message)),
            Err(e) => Err(e),
        }
    }
}

/// What a path segment keeps as is: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes an id for use as one path segment.
fn segment(id: &str) -> String {
    utf8_percent_encode(id, UNRESERVED).to_string()
}

/// A transport failure. A connection that could not be made carried nothing; once a
/// write's request is sent, a timeout or a lost connection leaves its outcome unknown.
/// A read that timed out changed nothing either way.
fn transport(e: reqwest::Error, writes: bool) -> UpstreamError {
    let detail = e.to_string();
    if e.is_connect() {
        UpstreamError::Unreachable(detail)
    } else if writes {
        UpstreamError::OutcomeUnknown(detail)
    } else if e.is_timeout() {
        UpstreamError::Unreachable(detail)
    } else {
        UpstreamError::Failed(detail)
    }
}

/// Bodies shorter than this are parsed where they arrive (well under a millisecond).
const DECODE_INLINE: usize = 256 * 1024;

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, UpstreamError> {
    serde_json::from_slice(bytes).map_err(|e| UpstreamError::Failed(format!("malformed {what} body: {e}")))
}

/// The body of a write's 2xx answer: when it cannot be read, the write was accepted but
/// what it made is unknown (a retry could make it twice), so the outcome is unknown.
fn decode_written<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, UpstreamError> {
    decode(bytes, what).map_err(|e| UpstreamError::OutcomeUnknown(format!("accepted, but {e}")))
}

/// The message of an OpenStack fault body (`{"itemNotFound": {"message": …}}` or
/// `{"error": {"message": …}}`), if there is one.
fn fault_message(bytes: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let message = value.as_object()?.values().find_map(|v| v.get("message")?.as_str())?;
    Some(message.chars().take(300).collect())
}

#[derive(Deserialize)]
struct TokenEnvelope {
    token: Token,
}

#[derive(Deserialize)]
struct Token {
    expires_at: Option<String>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    kind: String,
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Deserialize)]
struct CatalogEndpoint {
    #[serde(default)]
    interface: String,
    url: String,
}

#[derive(Deserialize)]
struct ProjectsEnvelope {
    projects: Vec<OsProject>,
}

#[derive(Deserialize)]
struct OsProject {
    id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

impl OsProject {
    fn into_domain(self) -> Project {
        Project {
            id: self.id,
            name: self.name,
            description: self.description.unwrap_or_default(),
            enabled: self.enabled,
        }
    }
}

#[derive(Deserialize)]
struct ServersEnvelope {
    servers: Vec<OsServer>,
}

#[derive(Deserialize)]
struct ServerEnvelope {
    server: OsServer,
}

#[derive(Deserialize)]
struct OsServer {
    id: String,
    name: String,
    status: String,
    #[serde(alias = "project_id")]
    tenant_id: String,
    #[serde(default)]
    flavor: Value,
    /// An object `{"id": …}`, or `""` for servers booted from a volume.
    #[serde(default)]
    image: Value,
    #[serde(default)]
    addresses: std::collections::BTreeMap<String, Vec<OsAddress>>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    created: String,
    #[serde(default)]
    updated: String,
}

#[derive(Deserialize)]
struct OsAddress {
    addr: String,
}

impl OsServer {
    fn into_domain(self) -> Server {
        let flavor = ["original_name", "id"]
            .iter()
            .find_map(|k| self.flavor.get(k).and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned();
        let image_id = self.image.get("id").and_then(Value::as_str).map(str::to_owned);
        let addresses = self
            .addresses
            .into_iter()
            .flat_map(|(network, addrs)| {
                addrs.into_iter().map(move |a| ServerAddress { network: network.clone(), addr: a.addr })
            })
            .collect();
        Server {
            id: self.id,
            name: self.name,
            project_id: self.tenant_id,
            status: self.status,
            flavor,
            image_id,
            addresses,
            metadata: strings(self.metadata),
            created: self.created,
            updated: self.updated,
        }
    }
}

#[derive(Deserialize)]
struct VolumesEnvelope {
    volumes: Vec<OsVolume>,
}

#[derive(Deserialize)]
struct VolumeEnvelope {
    volume: OsVolume,
}

#[derive(Deserialize)]
struct OsVolume {
    id: String,
    #[serde(default)]
    name: Option<String>,
    status: String,
    size: u32,
    #[serde(rename = "os-vol-tenant-attr:tenant_id", alias = "project_id", default)]
    tenant_id: String,
    #[serde(default)]
    attachments: Vec<OsAttachment>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    volume_type: Option<String>,
    /// `"true"`/`"false"` in Cinder's answers; a JSON boolean is taken too.
    #[serde(default)]
    bootable: Value,
    #[serde(default)]
    created_at: String,
    #[serde(default)]
    updated_at: Option<String>,
}

/// OpenStack's `metadata`: string values by key. Any other value is kept as its JSON text
/// rather than failing the whole listing.
type Metadata = std::collections::BTreeMap<String, Value>;

fn strings(metadata: Option<Metadata>) -> std::collections::BTreeMap<String, String> {
    metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(text) => (key, text),
            other => (key, other.to_string()),
        })
        .collect()
}

#[derive(Deserialize)]
struct OsAttachment {
    server_id: String,
}

impl OsVolume {
    fn into_domain(self) -> Volume {
        Volume {
            id: self.id,
            name: self.name.unwrap_or_default(),
            project_id: self.tenant_id,
            status: self.status,
            size_gb: self.size,
            attached_to: self.attachments.into_iter().next().map(|a| a.server_id),
            description: self.description.unwrap_or_default(),
            metadata: strings(self.metadata),
            volume_type: self.volume_type,
            bootable: match &self.bootable {
                Value::Bool(b) => *b,
                Value::String(s) => s.eq_ignore_ascii_case("true"),
                _ => false,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Deserialize)]
struct ImagesEnvelope {
    images: Vec<OsImage>,
}

#[derive(Deserialize)]
struct OsImage {
    id: String,
    #[serde(default)]
    name: Option<String>,
    status: String,
    #[serde(default)]
    visibility: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    min_disk: u32,
    #[serde(default)]
    owner: Option<String>,
}

impl OsImage {
    fn into_domain(self) -> Image {
        Image {
            id: self.id,
            name: self.name.unwrap_or_default(),
            status: self.status,
            visibility: self.visibility,
            size_bytes: self.size.unwrap_or(0),
            min_disk_gb: self.min_disk,
            project_id: self.owner,
        }
    }
}

#[derive(Deserialize)]
struct NetworksEnvelope {
    networks: Vec<OsNetwork>,
}

#[derive(Deserialize)]
struct OsNetwork {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    project_id: Option<String>,
    /// The older name of `project_id`, still sent by many deployments.
    #[serde(default)]
    tenant_id: Option<String>,
    status: String,
    #[serde(default)]
    shared: bool,
    #[serde(default)]
    subnets: Vec<String>,
}

impl OsNetwork {
    fn into_domain(self) -> Network {
        Network {
            id: self.id,
            name: self.name,
            project_id: self.project_id.or(self.tenant_id).unwrap_or_default(),
            status: self.status,
            shared: self.shared,
            subnets: self.subnets,
        }
    }
}

#[derive(Deserialize)]
struct CreatedServer {
    server: IdOnly,
}

#[derive(Deserialize)]
struct CreatedVolume {
    volume: IdOnly,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[cfg(test)]
mod tests {
    use super::{OsVolume, segment};

    #[test]
    fn a_volume_reads_leniently_with_its_metadata_type_and_bootable_flag() {
        let full: OsVolume = serde_json::from_value(serde_json::json!({
            "id": "v", "status": "available", "size": 1, "bootable": "true", "volume_type": "ssd",
            "metadata": {"owner": "team-billing", "replicas": 3}, "updated_at": "2026-01-02T03:04:05Z",
        }))
        .expect("full");
        let full = full.into_domain();
        assert!(full.bootable);
        assert_eq!(full.volume_type.as_deref(), Some("ssd"));
        assert_eq!(full.metadata["owner"], "team-billing");
        assert_eq!(full.metadata["replicas"], "3", "a non-string value is kept as its JSON text");
        assert_eq!(full.updated_at.as_deref(), Some("2026-01-02T03:04:05Z"));

        let bare: OsVolume = serde_json::from_value(serde_json::json!({
            "id": "v", "status": "available", "size": 1, "bootable": true, "metadata": null, "updated_at": null,
        }))
        .expect("bare");
        let bare = bare.into_domain();
        assert!(bare.bootable, "a JSON boolean too");
        assert!(bare.metadata.is_empty() && bare.volume_type.is_none() && bare.updated_at.is_none());
        let oldest: OsVolume =
            serde_json::from_value(serde_json::json!({"id": "v", "status": "available", "size": 1})).expect("oldest");
        assert!(!oldest.into_domain().bootable);
    }

    #[test]
    fn an_id_stays_one_path_segment() {
        assert_eq!(segment("vol-0001_a.b~c"), "vol-0001_a.b~c");
        assert_eq!(segment("../admin?x=1#y z"), "..%2Fadmin%3Fx%3D1%23y%20z");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
