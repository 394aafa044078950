//! The client of an OpenStack cloud as it is deployed: Keystone authentication
//! ([`super::auth`]), endpoints from the service catalog by region and interface with
//! version discovery and a negotiated Nova microversion ([`super::catalog`]), listings
//! read page by page to their end ([`super::paging`]), and Nova, Cinder, Glance and
//! Neutron's JSON turned into the domain's types ([`super::os`]).
//!
//! What a call may do is the cloud's to decide, by the roles of the token it carries:
//!
//! - The service token is scoped to the configured project. When it carries the `admin`
//!   role it reads every project's records in one listing (`all_tenants=1`,
//!   `GET /v3/projects`); without it, those calls are refused, so the client lists the
//!   projects the user has a role on (`GET /v3/auth/projects`) and reads each one's
//!   records with a token scoped to it.
//! - Nova and Cinder create a resource in the project of the token, whatever the body
//!   says: a create in another project is sent with a token scoped to that project, which
//!   Keystone grants only if the user has a role there. Shows, deletes and actions on an
//!   existing resource go with the service token when it is an admin's (the admin role
//!   may act in any project), else with a token of the resource's project.
//!
//! - A signed-in user's writes carry that user's own token, scoped to the project they act
//!   in ([`Acting::User`]): the cloud's policy judges the user, and its audit log names
//!   them. The client also speaks Keystone for sign-in: a user's password for a token,
//!   the projects it may act in, a token rescoped to each, validation and revocation.
//!
//! Tokens are renewed shortly before Keystone says they expire, and once more whenever a
//! service rejects one (401); a user's token is never renewed here (its password is not
//! kept). Upstream refusals keep their status and the service's own message
//! ([`UpstreamError`]). Every request, version documents and authentication included, is
//! counted by service and status with its latency ([`UpstreamMetrics`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::UpstreamError;
use super::auth::{Credentials, Named, Scope, Token, tokens_url};
use super::catalog::{self, Discovered, Interface, Microversion, Service};
use super::known::{Decoding, Known};
use super::metrics::{Status, UpstreamMetrics};
use super::model::Resource;
use super::model::{Flavor, Image, Network, Project, Server, Subnet, Volume, VolumeSnapshot};
use super::os::{
    CreatedServer, CreatedSnapshot, CreatedSubnet, CreatedVolume, NetworkEnvelope, OsFlavor, OsFlavorDetail, OsImage,
    OsNetwork, OsProject, OsServer, OsSnapshot, OsSubnet, OsVolume, ServerEnvelope, SnapshotEnvelope, SubnetEnvelope,
    VolumeEnvelope,
};
use super::paging::{self, MAX_PAGES, Page};

/// How to reach and log in to the cloud.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Keystone's URL as users write it (`OS_AUTH_URL`): versioned
    /// (`http://host:5000/v3`) or not (`http://host:5000`, `http://host/identity`).
    pub auth_url: String,
    pub credentials: Credentials,
    /// The region whose endpoints to use (`OS_REGION_NAME`); any when absent.
    pub region: Option<String>,
    /// Which of each endpoint's URLs to use (`OS_INTERFACE`).
    pub interface: Interface,
    /// A PEM bundle of the certificate authorities to trust instead of the system's
    /// (`OS_CACERT`).
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate (`verify: false` in `clouds.yaml`).
    pub insecure: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl UpstreamConfig {
    /// A user's password and project, both in the `default` domain, the public
    /// interface of any region, the system's certificate authorities.
    pub fn password(auth_url: &str, user: &str, password: &str, project: &str, timeout: Duration) -> Self {
        UpstreamConfig {
            auth_url: auth_url.trim_end_matches('/').to_owned(),
            credentials: Credentials::Password {
                user: Named::by_name(user),
                password: password.to_owned(),
                project: Named::by_name(project),
            },
            region: None,
            interface: Interface::Public,
            ca_cert: None,
            insecure: false,
            timeout,
        }
    }
}

/// The Nova microversion Stalecast asks for: 2.47 embeds the flavor in a server (so its
/// name shows without a lookup per flavor), and since 2.37 a create names its network
/// (`"auto"`: the project's network, or one allocated for it). Older APIs are spoken at
/// their newest.
pub const COMPUTE_MICROVERSION: Microversion = Microversion(2, 47);

/// How long the projects a non-admin user may act in are remembered between listings.
const PROJECTS_TTL: Duration = Duration::from_secs(30);

/// How long a token request Keystone failed (5xx) waits before its one more try.
const ISSUE_RETRY_AFTER: Duration = Duration::from_millis(250);

/// Whose rights a write carries.
#[derive(Clone, Copy, Debug)]
pub enum Acting<'a> {
    /// Stalecast's own account (its service token, or one of its project tokens).
    Service,
    /// A signed-in user, with their token scoped to the project the write is in.
    User(&'a Token),
}

/// The token a request carries: one of the service account's (by scope, renewed when
/// rejected), or a given one (a user's, used as it is).
#[derive(Clone, Copy, Debug)]
enum Auth<'a> {
    Scope(&'a Scope),
    Token(&'a Token),
}

/// Where a request goes: a path under the service's versioned root, or a URL (the next
/// page of a listing).
enum Target<'a> {
    Path(&'a str),
    Url(&'a Url),
}

/// The upstream client. One per process; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct OpenStackClient {
    http: reqwest::Client,
    config: UpstreamConfig,
    /// The tokens in use, by scope. Held across authentication, so that concurrent
    /// callers wait for one token instead of asking for several.
    tokens: Mutex<HashMap<Scope, Token>>,
    /// Where Keystone issues tokens, once found.
    keystone: std::sync::Mutex<Option<String>>,
    /// Version discovery's answers, by catalog URL.
    discovered: std::sync::Mutex<HashMap<String, Discovered>>,
    /// The projects a non-admin user has a role on, and when they were read.
    own_projects: std::sync::Mutex<Option<(Instant, Vec<String>)>>,
    metrics: UpstreamMetrics,
}

/// A whole answer of the cloud.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

impl OpenStackClient {
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)));
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| UpstreamError::Failed(format!("reading the CA bundle {}: {e}", path.display())))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| UpstreamError::Failed(format!("the CA bundle {}: {e}", path.display())))?;
            if certificates.is_empty() {
                return Err(UpstreamError::Failed(format!("the CA bundle {} holds no certificate", path.display())));
            }
            builder = builder.tls_certs_only(certificates);
        }
        if config.insecure {
            tracing::warn!("TLS certificates of the cloud are not verified (verify: false)");
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| UpstreamError::Failed(format!("building HTTP client: {e}")))?;
        Ok(OpenStackClient {
            http,
            config,
            tokens: Mutex::new(HashMap::new()),
            keystone: Default::default(),
            discovered: Default::default(),
            own_projects: Default::default(),
            metrics: UpstreamMetrics::default(),
        })
    }

    pub fn auth_url(&self) -> &str {
        &self.config.auth_url
    }

    /// What the client (and the poller) count.
    pub fn metrics(&self) -> &UpstreamMetrics {
        &self.metrics
    }

    /// Sends `request` to `service` and reads its whole answer, counting it by status with
    /// how long it took. The error is reqwest's: whether it may have changed something is
    /// the caller's to say.
    async fn exchange(&self, service: Service, request: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
        let started = Instant::now();
        let answer = async {
            let mut response = request.send().await?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            Ok(Answer { status, headers, body: response.bytes().await? })
        }
        .await;
        let status = match &answer {
            Ok(answer) => Status::Code(answer.status.as_u16()),
            Err(error) => Status::of_error(error),
        };
        self.metrics.request(service, status, started.elapsed());
        answer
    }

    // --- tokens ---------------------------------------------------------------------

    /// A token for `scope` that is good for a while, authenticating when there is none.
    async fn token(&self, scope: &Scope) -> Result<Token, UpstreamError> {
        let mut tokens = self.tokens.lock().await;
        let now = SystemTime::now();
        if let Some(token) = tokens.get(scope).filter(|t| t.fresh(now)) {
            return Ok(token.clone());
        }
        let token = self.authenticate(scope).await?;
        tokens.insert(scope.clone(), token.clone());
        Ok(token)
    }

    async fn forget_token(&self, scope: &Scope, secret: &str) {
        let mut tokens = self.tokens.lock().await;
        if tokens.get(scope).is_some_and(|t| t.secret == secret) {
            tokens.remove(scope);
        }
    }

    async fn authenticate(&self, scope: &Scope) -> Result<Token, UpstreamError> {
        let body = self.config.credentials.request(scope).map_err(UpstreamError::Forbidden)?;
        let url = self.tokens_url().await?;
        let answer = self
            .exchange(Service::Identity, self.http.post(&url).json(&body))
            .await
            .map_err(|e| transport(e, false))?;
        let (status, bytes) = (answer.status, answer.body);
        let secret = answer.headers.get("x-subject-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if !status.is_success() {
            let message = fault_message(&bytes).unwrap_or_else(|| status.to_string());
            return Err(match scope {
                // Our own credentials: an operator's problem, not the caller's.
                Scope::Service => {
                    UpstreamError::Failed(format!("Keystone refused authentication: {status}: {message}"))
                }
                // The user may not act in that project: the cloud's role assignments say so.
                Scope::Project(project) => UpstreamError::Forbidden(format!(
                    "{} has no role on project {project} (Keystone: {message})",
                    self.user_label()
                )),
            });
        }
        let secret = secret.ok_or_else(|| UpstreamError::Failed("Keystone answered without X-Subject-Token".into()))?;
        let token = Token::read(secret, &bytes, SystemTime::now()).map_err(UpstreamError::Failed)?;
        tracing::debug!(?scope, expires_at = ?token.expires_at, roles = ?token.roles, "authenticated with Keystone");
        Ok(token)
    }

    fn user_label(&self) -> String {
        match &self.config.credentials {
            Credentials::Password { user, .. } => format!("user {}", user.label()),
            Credentials::ApplicationCredential { .. } => "the application credential".into(),
        }
    }

    /// Where Keystone issues tokens: under a versioned auth URL, or where the version
    /// document at an unversioned one says v3 is (its `/v3` when it says nothing usable).
    async fn tokens_url(&self) -> Result<String, UpstreamError> {
        if let Some(url) = self.keystone.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(url);
        }
        let auth_url = self.config.auth_url.trim_end_matches('/');
        let v3 = if catalog::versioned(auth_url, 3) {
            auth_url.to_owned()
        } else {
            let fallback = format!("{auth_url}/v3");
            match self.document(Service::Identity, auth_url).await {
                Ok(bytes) => catalog::discover(&bytes, 3, &fallback).map(|d| d.url).unwrap_or(fallback),
                Err(UpstreamError::Unreachable(detail)) => return Err(UpstreamError::Unreachable(detail)),
                Err(_) => fallback,
            }
        };
        let url = tokens_url(&v3);
        *self.keystone.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.clone());
        Ok(url)
    }

    // --- endpoints ------------------------------------------------------------------

    /// `service`'s versioned root, from `token`'s catalog.
    async fn root(&self, service: Service, token: &Token) -> Result<Discovered, UpstreamError> {
        let endpoint = match token.catalog.endpoint(service, self.config.region.as_deref(), self.config.interface) {
            Ok(url) => url,
            // Keystone itself is reached at the auth URL when its catalog entry is missing.
            Err(_) if service == Service::Identity => {
                let tokens = self.tokens_url().await?;
                tokens.trim_end_matches("/auth/tokens").to_owned()
            }
            Err(message) => return Err(UpstreamError::Failed(message)),
        };
        if let Some(found) = self.discovered.lock().unwrap_or_else(|p| p.into_inner()).get(&endpoint) {
            return Ok(found.clone());
        }
        let found = self.discover(service, &endpoint).await?;
        tracing::debug!(%service, %endpoint, root = %found.url, microversions = ?found.microversions, "version discovery");
        self.discovered.lock().unwrap_or_else(|p| p.into_inner()).insert(endpoint, found.clone());
        Ok(found)
    }

    /// Version discovery under a catalog URL. A versioned URL is used as it is (Nova's
    /// is asked for its microversions); an unversioned one must say where its version is.
    async fn discover(&self, service: Service, endpoint: &str) -> Result<Discovered, UpstreamError> {
        if catalog::versioned(endpoint, service.major()) {
            let microversions = if service == Service::Compute {
                match self.document(service, endpoint).await.map(|bytes| catalog::discover(&bytes, 2, endpoint)) {
                    Ok(Ok(found)) => found.microversions,
                    Ok(Err(detail)) | Err(UpstreamError::Failed(detail)) => {
                        tracing::warn!(%endpoint, %detail, "Nova says no microversions; speaking 2.1");
                        None
                    }
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            return Ok(Discovered { url: endpoint.to_owned(), microversions });
        }
        let bytes = self.document(service, endpoint).await?;
        catalog::discover(&bytes, service.major(), endpoint)
            .map_err(|detail| UpstreamError::Failed(format!("version discovery at {endpoint}: {detail}")))
    }

    /// A version document: the body of `GET url`, whatever its status (Glance answers
    /// `300 Multiple Choices`), unauthenticated as version documents are.
    async fn document(&self, service: Service, url: &str) -> Result<bytes::Bytes, UpstreamError> {
        let request = self.http.get(url).header("accept", "application/json");
        let answer = self.exchange(service, request).await.map_err(|e| transport(e, false))?;
        if answer.status.is_server_error() {
            return Err(UpstreamError::Failed(format!("version discovery at {url}: {}", answer.status)));
        }
        Ok(answer.body)
    }

    // --- requests -------------------------------------------------------------------

    /// Sends one request to a service with a token of `scope`, renewing the token once if
    /// it is rejected. Answers the URL it went to and the body of a 2xx; maps every other
    /// outcome to an [`UpstreamError`]. A write (any method but `GET`) that was sent and
    /// got no readable answer is [`UpstreamError::OutcomeUnknown`]: it may have taken
    /// effect.
    async fn call(
        &self,
        method: Method,
        scope: &Scope,
        service: Service,
        target: Target<'_>,
        body: Option<&Value>,
    ) -> Result<(Url, bytes::Bytes), UpstreamError> {
        self.call_with(method, Auth::Scope(scope), service, target, body).await
    }

    /// [`call`](Self::call) with the token `auth` says. A given token is not renewed: a
    /// service that rejects it answers [`UpstreamError::Unauthorized`].
    async fn call_with(
        &self,
        method: Method,
        auth: Auth<'_>,
        service: Service,
        target: Target<'_>,
        body: Option<&Value>,
    ) -> Result<(Url, bytes::Bytes), UpstreamError> {
        let writes = method != Method::GET;
        for attempt in 0..2 {
            let token = match auth {
                Auth::Scope(scope) => self.token(scope).await?,
                Auth::Token(token) => token.clone(),
            };
            let root = self.root(service, &token).await?;
            let url = match &target {
                Target::Path(path) => format!("{}{path}", root.url),
                Target::Url(url) => url.to_string(),
            };
            let url = Url::parse(&url).map_err(|e| UpstreamError::Failed(format!("bad URL {url}: {e}")))?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header("x-auth-token", &token.secret)
                .header("accept", "application/json");
            if service == Service::Compute
                && let Some(version) = catalog::negotiate(COMPUTE_MICROVERSION, root.microversions)
            {
                request = request
                    .header("openstack-api-version", format!("compute {version}"))
                    .header("x-openstack-nova-api-version", version.to_string());
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let Answer { status, body: bytes, .. } =
                self.exchange(service, request).await.map_err(|e| transport(e, writes))?;
            // The service account's token is renewed once; a user's is what it is, and the
            // service's refusal (401) is theirs to see.
            if let (StatusCode::UNAUTHORIZED, Auth::Scope(scope), 0) = (status, auth, attempt) {
                tracing::info!(%service, "upstream rejected the token; authenticating again");
                self.forget_token(scope, &token.secret).await;
                continue;
            }
            if status.is_success() {
                return Ok((url, bytes));
            }
            let message = fault_message(&bytes).unwrap_or_else(|| status.to_string());
            return Err(refusal(status, message, &method, url.path()));
        }
        Err(UpstreamError::Unauthorized("the cloud keeps rejecting fresh tokens".into()))
    }

    async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        scope: &Scope,
        service: Service,
        path: &str,
        what: &'static str,
    ) -> Result<T, UpstreamError> {
        let (_, bytes) = self.call(Method::GET, scope, service, Target::Path(path), None).await?;
        decode(&bytes, what)
    }

    /// A whole listing: the records under `key` of every page, following the service's
    /// next links until there are none, at most [`MAX_PAGES`] pages.
    async fn list<T: DeserializeOwned + Send + 'static>(
        &self,
        scope: &Scope,
        service: Service,
        path: &str,
        key: &'static str,
    ) -> Result<Vec<T>, UpstreamError> {
        self.list_as(Auth::Scope(scope), service, path, key).await
    }

    /// [`list`](Self::list) with the token `auth` says.
    async fn list_as<T: DeserializeOwned + Send + 'static>(
        &self,
        auth: Auth<'_>,
        service: Service,
        path: &str,
        key: &'static str,
    ) -> Result<Vec<T>, UpstreamError> {
        self.list_with(auth, service, path, key, |_, bytes| decode_page::<T>(bytes, key)).await
    }

    /// [`list`](Self::list) with the token `auth` says, each page decoded by `decode`
    /// (given the page's URL).
    async fn list_with<X, Decoded>(
        &self,
        auth: Auth<'_>,
        service: Service,
        path: &str,
        key: &'static str,
        decode: impl Fn(&Url, bytes::Bytes) -> Decoded,
    ) -> Result<Vec<X>, UpstreamError>
    where
        Decoded: Future<Output = Result<Page<X>, UpstreamError>>,
    {
        let (first, mut bytes) = self.call_with(Method::GET, auth, service, Target::Path(path), None).await?;
        let mut items = Vec::new();
        let mut markers = HashSet::new();
        let mut url = first.clone();
        for pages in 1.. {
            let page = decode(&url, bytes).await?;
            items.extend(page.items);
            let Some(next) = page.next.and_then(|next| paging::next_url(&first, &next)) else {
                return Ok(items);
            };
            if pages >= MAX_PAGES {
                return Err(UpstreamError::Failed(format!(
                    "the {key} listing goes on past {MAX_PAGES} pages ({} records so far); stopped there",
                    items.len()
                )));
            }
            if let Some(marker) = paging::marker(&next)
                && !markers.insert(marker)
            {
                return Err(UpstreamError::Failed(format!("the {key} listing links back to a page it already sent")));
            }
            bytes = self.call_with(Method::GET, auth, service, Target::Url(&next), None).await?.1;
            url = next;
        }
        unreachable!("the loop returns")
    }

    /// A collection as the service token may see it, each record once (the first seen):
    /// in one listing (`all`) when the token is an admin's; else each of the user's
    /// projects in turn (`own`, with a token scoped to it; a public image or a shared
    /// network is seen in several). Pages are decoded against what the collection's last
    /// listing knew (`last`, see [`super::known`]), each record made by `convert` from
    /// Nova's, Cinder's, Glance's or Neutron's and the project it was listed in, when that
    /// was one project. Answers the records and what this listing knows for the next.
    async fn collection<O, R>(
        &self,
        service: Service,
        all: &str,
        own: &str,
        key: &'static str,
        last: Arc<Known<R>>,
        convert: fn(O, Option<&str>) -> R,
    ) -> Result<(Vec<Arc<R>>, Known<R>), UpstreamError>
    where
        O: DeserializeOwned + 'static,
        R: Resource + Send + Sync + 'static,
    {
        let decoding = Arc::new(Decoding::new(last));
        let listing = |scope: Scope, path: String, listed_in: Option<String>| {
            let decoding = decoding.clone();
            async move {
                let decode = |url: &Url, bytes| {
                    decode_known(decoding.clone(), url.as_str().to_owned(), bytes, key, listed_in.clone(), convert)
                };
                self.list_with(Auth::Scope(&scope), service, &path, key, decode).await
            }
        };
        let token = self.token(&Scope::Service).await?;
        let records = if token.admin() {
            listing(Scope::Service, all.to_owned(), None).await?
        } else if !self.config.credentials.rescopable() {
            listing(Scope::Service, own.to_owned(), token.project_id.clone()).await?
        } else {
            let projects = self.own_projects().await?;
            let token = &token;
            let listings = futures_util::future::try_join_all(
                projects
                    .iter()
                    .map(|project| listing(self.scope_of(project, token), own.to_owned(), Some(project.clone()))),
            )
            .await?;
            // A public image or a shared network is listed in each project: once here.
            unique(listings.into_iter().flatten().collect())
        };
        // Every page's decoding has ended: the listing's own handle is the last one.
        let known = Arc::into_inner(decoding).map(Decoding::finish).unwrap_or_default();
        Ok((records, known))
    }

    /// The token scope for acting in `project`: the service token's own when it is
    /// scoped there.
    fn scope_of(&self, project: &str, service: &Token) -> Scope {
        if service.project_id.as_deref() == Some(project) { Scope::Service } else { Scope::Project(project.to_owned()) }
    }

    /// The scope to show, change or delete an existing record of `project` with: the
    /// service token when it is an admin's or the project is unknown, else the project's.
    async fn scope_for_existing(&self, project: Option<&str>) -> Result<Scope, UpstreamError> {
        let service = self.token(&Scope::Service).await?;
        Ok(match project.filter(|p| !p.is_empty()) {
            Some(project) if !service.admin() && self.config.credentials.rescopable() => {
                self.scope_of(project, &service)
            }
            _ => Scope::Service,
        })
    }

    /// The scope to create a record in `project` with: a token of that project, as Nova
    /// and Cinder create in the token's project.
    async fn scope_for_create(&self, project: &str) -> Result<Scope, UpstreamError> {
        let service = self.token(&Scope::Service).await?;
        Ok(self.scope_of(project, &service))
    }

    /// The token a write in `project` by `acting` carries: the user's own, or the service
    /// account's scope for it (`existing`: changing a record that exists, rather than
    /// creating one in the project).
    async fn write_scope(
        &self,
        acting: Acting<'_>,
        project: Option<&str>,
        existing: bool,
    ) -> Result<Held, UpstreamError> {
        Ok(match acting {
            Acting::User(token) => Held::Token(token.clone()),
            Acting::Service if existing => Held::Scope(self.scope_for_existing(project).await?),
            Acting::Service => Held::Scope(self.scope_for_create(project.unwrap_or_default()).await?),
        })
    }

    /// The enabled projects the user has a role on (`GET /v3/auth/projects`), read again
    /// after [`PROJECTS_TTL`].
    async fn own_projects(&self) -> Result<Vec<String>, UpstreamError> {
        if let Some((at, projects)) = self.own_projects.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < PROJECTS_TTL
        {
            return Ok(projects.clone());
        }
        let projects: Vec<OsProject> =
            self.list(&Scope::Service, Service::Identity, "/auth/projects", "projects").await?;
        let ids: Vec<String> = projects.into_iter().filter(|p| p.enabled).map(|p| p.id).collect();
        *self.own_projects.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), ids.clone()));
        Ok(ids)
    }

    // --- the resources ----------------------------------------------------------------

    /// Every project (an admin's token), or those the user has a role on.
    pub async fn projects(&self) -> Result<Vec<Project>, UpstreamError> {
        let token = self.token(&Scope::Service).await?;
        let path = if token.admin() { "/projects" } else { "/auth/projects" };
        let projects: Vec<OsProject> = self.list(&Scope::Service, Service::Identity, path, "projects").await?;
        Ok(projects.into_iter().map(OsProject::into_domain).collect())
    }

    pub async fn servers(&self, last: Arc<Known<Server>>) -> Result<(Vec<Arc<Server>>, Known<Server>), UpstreamError> {
        let (all, own) = ("/servers/detail?all_tenants=1", "/servers/detail");
        self.collection(Service::Compute, all, own, "servers", last, |s: OsServer, _| s.into_domain()).await
    }

    pub async fn volumes(&self, last: Arc<Known<Volume>>) -> Result<(Vec<Arc<Volume>>, Known<Volume>), UpstreamError> {
        let (all, own) = ("/volumes/detail?all_tenants=1", "/volumes/detail");
        let convert = |v: OsVolume, listed_in: Option<&str>| with_project(v.into_domain(), listed_in);
        self.collection(Service::Volume, all, own, "volumes", last, convert).await
    }

    pub async fn images(&self, last: Arc<Known<Image>>) -> Result<(Vec<Arc<Image>>, Known<Image>), UpstreamError> {
        self.collection(Service::Image, "/images", "/images", "images", last, |i: OsImage, _| i.into_domain()).await
    }

    pub async fn networks(
        &self,
        last: Arc<Known<Network>>,
    ) -> Result<(Vec<Arc<Network>>, Known<Network>), UpstreamError> {
        let convert = |n: OsNetwork, _: Option<&str>| n.into_domain();
        self.collection(Service::Network, "/networks", "/networks", "networks", last, convert).await
    }

    pub async fn snapshots(
        &self,
        last: Arc<Known<VolumeSnapshot>>,
    ) -> Result<(Vec<Arc<VolumeSnapshot>>, Known<VolumeSnapshot>), UpstreamError> {
        let (all, own) = ("/snapshots/detail?all_tenants=1", "/snapshots/detail");
        let convert = |s: OsSnapshot, listed_in: Option<&str>| {
            let mut snapshot = s.into_domain();
            fill_project(&mut snapshot.project_id, listed_in);
            snapshot
        };
        self.collection(Service::Volume, all, own, "snapshots", last, convert).await
    }

    pub async fn subnets(&self, last: Arc<Known<Subnet>>) -> Result<(Vec<Arc<Subnet>>, Known<Subnet>), UpstreamError> {
        let convert = |s: OsSubnet, _: Option<&str>| s.into_domain();
        self.collection(Service::Network, "/subnets", "/subnets", "subnets", last, convert).await
    }

    /// The public flavors (`GET /flavors/detail`): the same for every project, so one
    /// listing with the service token, whatever its roles.
    pub async fn flavors(&self, last: Arc<Known<Flavor>>) -> Result<(Vec<Arc<Flavor>>, Known<Flavor>), UpstreamError> {
        let decoding = Arc::new(Decoding::new(last));
        let convert = |f: OsFlavorDetail, _: Option<&str>| f.into_domain();
        let decode =
            |url: &Url, bytes| decode_known(decoding.clone(), url.as_str().to_owned(), bytes, "flavors", None, convert);
        let records = self
            .list_with(Auth::Scope(&Scope::Service), Service::Compute, "/flavors/detail", "flavors", decode)
            .await?;
        let known = Arc::into_inner(decoding).map(Decoding::finish).unwrap_or_default();
        Ok((unique(records), known))
    }

    /// One server (`GET /servers/{id}`) of `project`, when known.
    pub async fn server(&self, id: &str, project: Option<&str>) -> Result<Server, UpstreamError> {
        let scope = self.scope_for_existing(project).await?;
        let path = format!("/servers/{}", segment(id));
        let body: ServerEnvelope = self.get(&scope, Service::Compute, &path, "server").await?;
        Ok(body.server.into_domain())
    }

    /// One volume (`GET /volumes/{id}`) of `project`, when known.
    pub async fn volume(&self, id: &str, project: Option<&str>) -> Result<Volume, UpstreamError> {
        let scope = self.scope_for_existing(project).await?;
        let path = format!("/volumes/{}", segment(id));
        let body: VolumeEnvelope = self.get(&scope, Service::Volume, &path, "volume").await?;
        Ok(with_project(body.volume.into_domain(), project))
    }

    /// One snapshot (`GET /snapshots/{id}`) of `project`, when known.
    pub async fn snapshot(&self, id: &str, project: Option<&str>) -> Result<VolumeSnapshot, UpstreamError> {
        let scope = self.scope_for_existing(project).await?;
        let path = format!("/snapshots/{}", segment(id));
        let body: SnapshotEnvelope = self.get(&scope, Service::Volume, &path, "snapshot").await?;
        let mut snapshot = body.snapshot.into_domain();
        fill_project(&mut snapshot.project_id, project);
        Ok(snapshot)
    }

    /// One network (`GET /v2.0/networks/{id}`).
    pub async fn network(&self, id: &str, project: Option<&str>) -> Result<Network, UpstreamError> {
        let scope = self.scope_for_existing(project).await?;
        let path = format!("/networks/{}", segment(id));
        let body: NetworkEnvelope = self.get(&scope, Service::Network, &path, "network").await?;
        Ok(body.network.into_domain())
    }

    /// One subnet (`GET /v2.0/subnets/{id}`).
    pub async fn subnet(&self, id: &str, project: Option<&str>) -> Result<Subnet, UpstreamError> {
        let scope = self.scope_for_existing(project).await?;
        let path = format!("/subnets/{}", segment(id));
        let body: SubnetEnvelope = self.get(&scope, Service::Network, &path, "subnet").await?;
        Ok(body.subnet.into_domain())
    }

    /// The id of the flavor named or identified by `flavor` that `project` may use (an
    /// id matches before a name); `None` when there is none. Several flavors of that
    /// name are an error naming them.
    pub async fn flavor_id(
        &self,
        acting: Acting<'_>,
        project: &str,
        flavor: &str,
    ) -> Result<Option<String>, UpstreamError> {
        let held = self.write_scope(acting, Some(project), false).await?;
        let flavors: Vec<OsFlavor> =
            self.list_as(held.auth(), Service::Compute, "/flavors?is_public=None", "flavors").await?;
        if flavors.iter().any(|f| f.id == flavor) {
            return Ok(Some(flavor.to_owned()));
        }
        let named: Vec<&OsFlavor> = flavors.iter().filter(|f| f.name == flavor).collect();
        match named.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.id.clone())),
            several => Err(UpstreamError::Rejected(format!(
                "several flavors are named \"{flavor}\" ({}); give its id",
                several.iter().map(|f| f.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Creates a server in `project` (with a token scoped to it) from the flavor and
    /// image ids; answers its id. Without an image Nova needs a volume to boot from,
    /// which Stalecast does not make: it answers why.
    pub async fn create_server(
        &self,
        acting: Acting<'_>,
        project: &str,
        name: &str,
        flavor_id: &str,
        image_id: Option<&str>,
    ) -> Result<String, UpstreamError> {
        let held = self.write_scope(acting, Some(project), false).await?;
        let mut server = json!({"name": name, "flavorRef": flavor_id});
        if let Some(image) = image_id {
            server["imageRef"] = json!(image);
        }
        // Since 2.37 Nova wants to be told which network; older versions pick one.
        let token = match &held {
            Held::Scope(scope) => self.token(scope).await?,
            Held::Token(token) => token.clone(),
        };
        let root = self.root(Service::Compute, &token).await?;
        if catalog::negotiate(COMPUTE_MICROVERSION, root.microversions).is_some_and(|v| v >= Microversion(2, 37)) {
            server["networks"] = json!("auto");
        }
        let body = json!({ "server": server });
        let (_, bytes) =
            self.call_with(Method::POST, held.auth(), Service::Compute, Target::Path("/servers"), Some(&body)).await?;
        let created: CreatedServer = decode_written(&bytes, "created server")?;
        Ok(created.server.id)
    }

    pub async fn delete_server(
        &self,
        acting: Acting<'_>,
        id: &str,
        project: Option<&str>,
    ) -> Result<(), UpstreamError> {
        self.delete_at(acting, Service::Compute, &format!("/servers/{}", segment(id)), project).await
    }

    /// Runs a server action (`os-start`, `os-stop`).
    pub async fn server_action(
        &self,
        acting: Acting<'_>,
        id: &str,
        project: Option<&str>,
        action: &str,
    ) -> Result<(), UpstreamError> {
        let held = self.write_scope(acting, project, true).await?;
        let body = json!({ action: null });
        let path = format!("/servers/{}/action", segment(id));
        self.call_with(Method::POST, held.auth(), Service::Compute, Target::Path(&path), Some(&body)).await?;
        Ok(())
    }

    /// Creates a volume in `project` (with a token scoped to it: Cinder ignores a
    /// project in the body); answers its id.
    pub async fn create_volume(
        &self,
        acting: Acting<'_>,
        project: &str,
        name: &str,
        size_gb: u32,
        description: &str,
    ) -> Result<String, UpstreamError> {
        let held = self.write_scope(acting, Some(project), false).await?;
        let body = json!({"volume": {"name": name, "size": size_gb, "description": description}});
        let (_, bytes) =
            self.call_with(Method::POST, held.auth(), Service::Volume, Target::Path("/volumes"), Some(&body)).await?;
        let created: CreatedVolume = decode_written(&bytes, "created volume")?;
        Ok(created.volume.id)
    }

    /// Deletes a volume. Cinder refuses to delete a volume in a state that forbids it (in
    /// use, with snapshots, …) with a 400 `InvalidVolume` ("Volume status must be
    /// available or error…"); a delete's only input is the id, so a 400 here is always
    /// that state conflict, answered as [`UpstreamError::Conflict`] with Cinder's message.
    pub async fn delete_volume(
        &self,
        acting: Acting<'_>,
        id: &str,
        project: Option<&str>,
    ) -> Result<(), UpstreamError> {
        state_conflict(self.delete_at(acting, Service::Volume, &format!("/volumes/{}", segment(id)), project).await)
    }

    /// Snapshots a volume of `project` (with a token scoped to it: Cinder makes the
    /// snapshot in the token's project); answers its id. Cinder refuses a volume that is
    /// not `available` (or `in-use`, with `force`) with a 400 and says why.
    pub async fn create_snapshot(
        &self,
        acting: Acting<'_>,
        project: &str,
        volume_id: &str,
        name: &str,
        description: &str,
        force: bool,
    ) -> Result<String, UpstreamError> {
        let held = self.write_scope(acting, Some(project), false).await?;
        let mut snapshot = json!({"volume_id": volume_id, "name": name, "description": description});
        if force {
            snapshot["force"] = json!(true);
        }
        let body = json!({ "snapshot": snapshot });
        let (_, bytes) =
            self.call_with(Method::POST, held.auth(), Service::Volume, Target::Path("/snapshots"), Some(&body)).await?;
        let created: CreatedSnapshot = decode_written(&bytes, "created snapshot")?;
        Ok(created.snapshot.id)
    }

    /// Deletes a snapshot. As with a volume, a 400 to a delete is the snapshot's state
    /// forbidding it (`Snapshot status must be available or error…`): a conflict.
    pub async fn delete_snapshot(
        &self,
        acting: Acting<'_>,
        id: &str,
        project: Option<&str>,
    ) -> Result<(), UpstreamError> {
        state_conflict(self.delete_at(acting, Service::Volume, &format!("/snapshots/{}", segment(id)), project).await)
    }

    /// Adds a subnet to a network of `project` (with a token scoped to it); answers its
    /// id. Neutron checks the CIDR (valid, of the IP version, not overlapping another
    /// subnet of the network) and refuses with a 400 saying why.
    pub async fn create_subnet(
        &self,
        acting: Acting<'_>,
        project: &str,
        network_id: &str,
        cidr: &str,
        ip_version: u8,
        name: &str,
    ) -> Result<String, UpstreamError> {
        let held = self.write_scope(acting, Some(project), false).await?;
        let body = json!({"subnet": {"network_id": network_id, "cidr": cidr, "ip_version": ip_version, "name": name}});
        let (_, bytes) =
            self.call_with(Method::POST, held.auth(), Service::Network, Target::Path("/subnets"), Some(&body)).await?;
        let created: CreatedSubnet = decode_written(&bytes, "created subnet")?;
        Ok(created.subnet.id)
    }

    /// Deletes a subnet (Neutron answers `409` while ports still use its addresses).
    pub async fn delete_subnet(
        &self,
        acting: Acting<'_>,
        id: &str,
        project: Option<&str>,
    ) -> Result<(), UpstreamError> {
        self.delete_at(acting, Service::Network, &format!("/subnets/{}", segment(id)), project).await
    }

    /// `DELETE` of the record at `path` of `service`, in its project (`project`, when
    /// known) with the token `acting` says.
    async fn delete_at(
        &self,
        acting: Acting<'_>,
        service: Service,
        path: &str,
        project: Option<&str>,
    ) -> Result<(), UpstreamError> {
        let held = self.write_scope(acting, project, true).await?;
        self.call_with(Method::DELETE, held.auth(), service, Target::Path(path), None).await.map(|_| ())
    }

    // --- users signing in -------------------------------------------------------------

    /// Signs `user` in with `password`: their token, unscoped (or scoped to their default
    /// project, as Keystone then does). A refusal is [`UpstreamError::Unauthorized`],
    /// whatever Keystone's reason (unknown user, wrong password, disabled): a caller must
    /// not learn which.
    pub async fn sign_in(&self, user: &Named, password: &str) -> Result<Token, UpstreamError> {
        let mut user = user.json();
        user["password"] = json!(password);
        let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}});
        self.issue(&body, "sign-in").await
    }

    /// A token of `token`'s user scoped to `project` (Keystone's `token` method, which
    /// keeps the original token's expiry). Refused when the user has no role there.
    pub async fn rescope(&self, token: &Token, project: &str) -> Result<Token, UpstreamError> {
        let body = json!({"auth": {
            "identity": {"methods": ["token"], "token": {"id": token.secret}},
            "scope": {"project": {"id": project}},
        }});
        self.issue(&body, "rescope").await
    }

    /// `POST /v3/auth/tokens` with `body`: the token, or `Unauthorized` when Keystone
    /// refuses (401, 403, 404: no such user, wrong password, no role on the project).
    async fn issue(&self, body: &Value, what: &str) -> Result<Token, UpstreamError> {
        let url = self.tokens_url().await?;
        let mut response = self.http.post(&url).json(body).send().await.map_err(|e| transport(e, false))?;
        // Issuing a token changes nothing a second try could repeat; a Keystone on a busy
        // database answers 500 now and then ("database is locked" with sqlite, seen in the
        // real-services tests while other sign-ins ran): one more try, shortly after.
        if response.status().is_server_error() {
            tracing::info!(status = %response.status(), what, "Keystone failed; trying once more");
            tokio::time::sleep(ISSUE_RETRY_AFTER).await;
            response = self.http.post(&url).json(body).send().await.map_err(|e| transport(e, false))?;
        }
        let status = response.status();
        let secret = response.headers().get("x-subject-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| transport(e, false))?;
        match status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                tracing::debug!(%status, what, "Keystone refused");
                return Err(UpstreamError::Unauthorized(format!("Keystone refused the {what}")));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                return Err(UpstreamError::RateLimited("Keystone is limiting sign-ins; try again shortly".into()));
            }
            s => {
                let message = fault_message(&bytes).unwrap_or_else(|| s.to_string());
                return Err(UpstreamError::Failed(format!("Keystone, {what}: {s}: {message}")));
            }
        }
        let secret = secret.ok_or_else(|| UpstreamError::Failed("Keystone answered without X-Subject-Token".into()))?;
        Token::read(secret, &bytes, SystemTime::now()).map_err(UpstreamError::Failed)
    }

    /// The enabled projects `token`'s user has a role on (`GET /v3/auth/projects`).
    pub async fn projects_of(&self, token: &Token) -> Result<Vec<Project>, UpstreamError> {
        let projects: Vec<OsProject> =
            self.list_as(Auth::Token(token), Service::Identity, "/auth/projects", "projects").await?;
        Ok(projects.into_iter().filter(|p| p.enabled).map(OsProject::into_domain).collect())
    }

    /// What Keystone says of `token` now (`GET /v3/auth/tokens`, the token validating
    /// itself): its roles as assigned at this moment. `Unauthorized` when it is no longer
    /// valid (revoked, expired, or its user lost every role on its project).
    pub async fn validate(&self, token: &Token) -> Result<Token, UpstreamError> {
        let url = format!("{}?nocatalog", self.tokens_url().await?);
        let response = self.about_itself(Method::GET, &url, token).await?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| transport(e, false))?;
        match status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                return Err(UpstreamError::Unauthorized("Keystone no longer accepts the token".into()));
            }
            s => return Err(UpstreamError::Failed(format!("Keystone, validating a token: {s}"))),
        }
        let mut seen = Token::read(token.secret.clone(), &bytes, SystemTime::now()).map_err(UpstreamError::Failed)?;
        // Asked without the catalog: the one it was issued with still holds.
        seen.catalog = token.catalog.clone();
        Ok(seen)
    }

    /// Revokes `token` (`DELETE /v3/auth/tokens`, by itself). A token that is already
    /// invalid counts as revoked.
    pub async fn revoke(&self, token: &Token) -> Result<(), UpstreamError> {
        let url = self.tokens_url().await?;
        let response = self.about_itself(Method::DELETE, &url, token).await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND => Ok(()),
            s => Err(UpstreamError::Failed(format!("Keystone, revoking a token: {s}"))),
        }
    }

    /// `method` on Keystone's tokens `url` for `token`, asked by the token itself (a user
    /// may validate and revoke their own tokens).
    async fn about_itself(&self, method: Method, url: &str, token: &Token) -> Result<reqwest::Response, UpstreamError> {
        let writes = method != Method::GET;
        self.http
            .request(method, url)
            .header("x-auth-token", &token.secret)
            .header("x-subject-token", &token.secret)
            .send()
            .await
            .map_err(|e| transport(e, writes))
    }
}

/// The token a write carries, held for its calls.
enum Held {
    Scope(Scope),
    Token(Token),
}

impl Held {
    fn auth(&self) -> Auth<'_> {
        match self {
            Held::Scope(scope) => Auth::Scope(scope),
            Held::Token(token) => Auth::Token(token),
        }
    }
}

/// An upstream refusal, by its status, with the service's own message.
fn refusal(status: StatusCode, message: String, method: &Method, path: &str) -> UpstreamError {
    match status {
        StatusCode::UNAUTHORIZED => UpstreamError::Unauthorized(message),
        StatusCode::FORBIDDEN => UpstreamError::Forbidden(message),
        StatusCode::NOT_FOUND => UpstreamError::NotFound(message),
        StatusCode::CONFLICT => UpstreamError::Conflict(message),
        StatusCode::PAYLOAD_TOO_LARGE => UpstreamError::TooLarge(message),
        StatusCode::TOO_MANY_REQUESTS => UpstreamError::RateLimited(message),
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => UpstreamError::Rejected(message),
        s => UpstreamError::Failed(format!("{method} {path}: {s}: {message}")),
    }
}

/// The records of a listing in their order, each id once (the first).
fn unique<R: Resource>(records: Vec<Arc<R>>) -> Vec<Arc<R>> {
    let mut seen: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
    let first: Vec<bool> = records.iter().map(|r| seen.insert(r.id())).collect();
    if first.iter().all(|f| *f) {
        return records;
    }
    records.iter().zip(first).filter(|(_, first)| *first).map(|(r, _)| r.clone()).collect()
}

/// A volume listed with a project's token names that project when Cinder's answer
/// leaves it out (its `os-vol-tenant-attr:tenant_id` is for admins by default).
fn with_project(mut volume: Volume, project: Option<&str>) -> Volume {
    fill_project(&mut volume.project_id, project);
    volume
}

/// A record read with a project's token is that project's when the answer does not say
/// (Cinder shows `…tenant_id` and `…project_id` attributes to admins by default).
fn fill_project(project_id: &mut String, project: Option<&str>) {
    if project_id.is_empty()
        && let Some(project) = project
    {
        *project_id = project.to_owned();
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

/// A listing's page. A large one (1,000 volumes are some 450 KB from Cinder) takes
/// milliseconds to parse: on the blocking pool, not on a worker the streams need.
async fn decode_page<T: DeserializeOwned + Send + 'static>(
    bytes: bytes::Bytes,
    key: &'static str,
) -> Result<Page<T>, UpstreamError> {
    let small = bytes.len() < DECODE_INLINE;
    let read = move || {
        paging::decode_page(&bytes, key).map_err(|e| UpstreamError::Failed(format!("malformed {key} page: {e}")))
    };
    if small {
        return read();
    }
    tokio::task::spawn_blocking(read).await.map_err(|e| UpstreamError::Failed(format!("decoding {key}: {e}")))?
}

/// A page decoded against what the collection's last listing knew; on the blocking
/// pool when it is large.
async fn decode_known<O: DeserializeOwned + 'static, R: Send + Sync + 'static>(
    decoding: Arc<Decoding<R>>,
    url: String,
    bytes: bytes::Bytes,
    key: &'static str,
    listed_in: Option<String>,
    convert: fn(O, Option<&str>) -> R,
) -> Result<Page<Arc<R>>, UpstreamError> {
    let small = bytes.len() < DECODE_INLINE;
    let read = move || {
        decoding
            .page(&url, &bytes, key, listed_in.as_deref(), convert)
            .map_err(|e| UpstreamError::Failed(format!("malformed {key} page: {e}")))
    };
    if small {
        return read();
    }
    tokio::task::spawn_blocking(read).await.map_err(|e| UpstreamError::Failed(format!("decoding {key}: {e}")))?
}

/// Cinder's answer to a delete, whose only input is the id: a 400 there is the record's
/// state forbidding it (in use, with snapshots, still creating, …), answered as
/// [`UpstreamError::Conflict`] with Cinder's message.
fn state_conflict(result: Result<(), UpstreamError>) -> Result<(), UpstreamError> {
    result.map_err(|error| match error {
        UpstreamError::Rejected(message) => UpstreamError::Conflict(message),
        other => other,
    })
}

/// The body of a write's 2xx answer: when it cannot be read, the write was accepted but
/// what it made is unknown (a retry could make it twice), so the outcome is unknown.
fn decode_written<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, UpstreamError> {
    decode(bytes, what).map_err(|e| UpstreamError::OutcomeUnknown(format!("accepted, but {e}")))
}

/// The message of an OpenStack fault: the `message` of a JSON fault body
/// (`{"itemNotFound": {"message": …}}`, Keystone's `{"error": {"message": …}}`), or the
/// text of a plain or HTML one (Glance's `403 Forbidden\n\nYou are not authorized…`)
/// without its status line, at most 300 characters.
fn fault_message(bytes: &[u8]) -> Option<String> {
    let short = |s: &str| -> String { s.chars().take(300).collect() };
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        let object = value.as_object()?;
        let message = object
            .values()
            .find_map(|v| v.get("message")?.as_str())
            .or_else(|| object.get("message").and_then(Value::as_str))?;
        return Some(short(message));
    }
    let text = String::from_utf8_lossy(bytes);
    let mut plain = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                plain.push(' ');
            }
            c if !in_tag => plain.push(c),
            _ => {}
        }
    }
    let lines: Vec<&str> = plain.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    // Status lines ("404 Not Found", as a title and a heading) say nothing the status
    // does not, when something else follows.
    let status_line = |l: &&str| l.split(' ').next().is_some_and(|w| w.len() == 3 && w.parse::<u16>().is_ok());
    let rest: Vec<&str> = lines.iter().copied().filter(|l| !status_line(l)).collect();
    let message = if rest.is_empty() { lines.join(" ") } else { rest.join(" ") };
    (!message.is_empty()).then(|| short(&message))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{fault_message, segment, unique};
    use crate::upstream::model::Project;

    #[test]
    fn an_id_stays_one_path_segment() {
        assert_eq!(segment("vol-0001_a.b~c"), "vol-0001_a.b~c");
        assert_eq!(segment("../admin?x=1#y z"), "..%2Fadmin%3Fx%3D1%23y%20z");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn a_fault_says_the_services_own_message() {
        let cinder = br#"{"overLimit": {"code": 413, "message": "VolumeSizeExceedsAvailableQuota: Requested volume", "retryAfter": "0"}}"#;
        assert_eq!(fault_message(cinder).as_deref(), Some("VolumeSizeExceedsAvailableQuota: Requested volume"));
        let keystone = br#"{"error": {"code": 403, "message": "You are not authorized to perform the requested action: identity:list_projects.", "title": "Forbidden"}}"#;
        assert!(fault_message(keystone).expect("keystone").starts_with("You are not authorized"));
        let glance = b"<html>\n <head>\n  <title>403 Forbidden</title>\n </head>\n <body>\n  <h1>403 Forbidden</h1>\n  You are not authorized to publicize images.<br /><br />\n\n\n\n </body>\n</html>";
        assert_eq!(fault_message(glance).as_deref(), Some("You are not authorized to publicize images."));
        let plain = b"404 Not Found\n\nNo image found with ID abc\n\n   ";
        assert_eq!(fault_message(plain).as_deref(), Some("No image found with ID abc"));
        assert_eq!(fault_message(b""), None);
    }

    #[test]
    fn records_seen_in_several_projects_count_once() {
        let project =
            |id: &str| Arc::new(Project { id: id.into(), name: id.into(), description: String::new(), enabled: true });
        let listed = ["a", "b", "a", "c", "b"].map(project).to_vec();
        let ids: Vec<String> = unique(listed).iter().map(|p| p.id.clone()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
