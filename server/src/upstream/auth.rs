//! Keystone authentication: the credentials Stalecast logs in with (a password or an
//! application credential), the scope it asks for, and what a token says (its expiry,
//! its user, project and roles, its service catalog).
//!
//! A password may be scoped to any project the user has a role on, so the client keeps
//! one token per project it acts in; an application credential is bound to its own
//! project and can act only there.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Value, json};

use super::catalog::Catalog;

/// A user, domain or project named by id, or by name (a user's and a project's name
/// within a domain).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Named {
    pub id: Option<String>,
    pub name: Option<String>,
    /// The domain a name is looked up in (`OS_USER_DOMAIN_NAME`, `OS_PROJECT_DOMAIN_ID`):
    /// by id or by name; the `default` domain when neither is given.
    pub domain_id: Option<String>,
    pub domain_name: Option<String>,
}

impl Named {
    pub fn by_name(name: &str) -> Self {
        Named { name: Some(name.to_owned()), ..Named::default() }
    }

    pub fn by_id(id: &str) -> Self {
        Named { id: Some(id.to_owned()), ..Named::default() }
    }

    /// Keystone's JSON for it: `{"id": …}` or `{"name": …, "domain": {…}}`.
    pub fn json(&self) -> Value {
        if let Some(id) = &self.id {
            return json!({ "id": id });
        }
        let domain = match (&self.domain_id, &self.domain_name) {
            (Some(id), _) => json!({ "id": id }),
            (None, Some(name)) => json!({ "name": name }),
            (None, None) => json!({ "id": "default" }),
        };
        json!({ "name": self.name, "domain": domain })
    }

    /// How it reads in a message: its name, else its id.
    pub fn label(&self) -> &str {
        self.name.as_deref().or(self.id.as_deref()).unwrap_or("?")
    }
}

/// How Stalecast logs in to Keystone.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user's password, and the project the service token is scoped to; tokens for
    /// the other projects the user has a role on are asked for when needed.
    Password { user: Named, password: String, project: Named },
    /// An application credential (by id, or by name with its user), which brings its
    /// own project.
    ApplicationCredential { id: Option<String>, name: Option<String>, user: Option<Named>, secret: String },
}

/// Secrets stay out of logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { user, project, .. } => {
                f.debug_struct("Password").field("user", user).field("project", project).finish_non_exhaustive()
            }
            Credentials::ApplicationCredential { id, name, user, .. } => f
                .debug_struct("ApplicationCredential")
                .field("id", id)
                .field("name", name)
                .field("user", user)
                .finish_non_exhaustive(),
        }
    }
}

/// Which project a token is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The project the credentials name (an application credential's own).
    Service,
    /// A project by id.
    Project(String),
}

impl Credentials {
    /// `POST /v3/auth/tokens`'s body for `scope`, or why these credentials cannot have it.
    pub fn request(&self, scope: &Scope) -> Result<Value, String> {
        match self {
            Credentials::Password { user, password, project } => {
                let mut user = user.json();
                user["password"] = json!(password);
                let project = match scope {
                    Scope::Project(id) => json!({ "id": id }),
                    Scope::Service => project.json(),
                };
                Ok(json!({"auth": {
                    "identity": {"methods": ["password"], "password": {"user": user}},
                    "scope": {"project": project},
                }}))
            }
            Credentials::ApplicationCredential { id, name, user, secret } => {
                if let Scope::Project(project) = scope {
                    return Err(format!(
                        "an application credential acts only in its own project, not in project \"{project}\""
                    ));
                }
                let mut credential = json!({ "secret": secret });
                match (id, name, user) {
                    (Some(id), _, _) => credential["id"] = json!(id),
                    (None, Some(name), Some(user)) => {
                        credential["name"] = json!(name);
                        credential["user"] = user.json();
                    }
                    _ => return Err("an application credential needs its id, or its name and its user".into()),
                }
                Ok(json!({"auth": {"identity": {"methods": ["application_credential"],
                                              "application_credential": credential}}}))
            }
        }
    }

    /// Whether a token can be scoped to any project the user has a role on.
    pub fn rescopable(&self) -> bool {
        matches!(self, Credentials::Password { .. })
    }
}

/// A token and what Keystone said about it. Its secret never appears in `Debug` (nor,
/// therefore, in a log line that prints a token or a session).
#[derive(Clone)]
pub struct Token {
    pub secret: String,
    pub expires_at: Option<SystemTime>,
    /// When to get a new one: a little before it expires (a quarter of its lifetime
    /// before, at most 30 s before), so that no request carries an expired token.
    pub renew_at: Option<SystemTime>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    /// The name of the user's domain.
    pub user_domain: Option<String>,
    /// The project it is scoped to (none for an unscoped token).
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    /// Role names, implied ones included (an `admin` token also says `member`, `reader`).
    pub roles: Vec<String>,
    pub catalog: Catalog,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .field("user_id", &self.user_id)
            .field("project_id", &self.project_id)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Renew a token at most this long before it expires.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(30);

impl Token {
    /// Reads a token from Keystone's answer: its secret (the `X-Subject-Token` header)
    /// and its body.
    pub fn read(secret: String, body: &[u8], now: SystemTime) -> Result<Token, String> {
        #[derive(Deserialize)]
        struct Envelope {
            token: Body,
        }
        #[derive(Deserialize)]
        struct Body {
            expires_at: Option<String>,
            issued_at: Option<String>,
            #[serde(default)]
            user: Option<Described>,
            #[serde(default)]
            project: Option<Described>,
            #[serde(default)]
            roles: Vec<RoleName>,
            #[serde(default)]
            catalog: Catalog,
        }
        #[derive(Deserialize)]
        struct Described {
            id: String,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            domain: Option<DomainName>,
        }
        #[derive(Deserialize)]
        struct DomainName {
            #[serde(default)]
            name: Option<String>,
        }
        #[derive(Deserialize)]
        struct RoleName {
            name: String,
        }
        let body: Envelope = serde_json::from_slice(body).map_err(|e| format!("malformed Keystone token body: {e}"))?;
        let body = body.token;
        let time = |at: &Option<String>| {
            at.as_deref().and_then(|at| {
                humantime::parse_rfc3339_weak(at.trim_end_matches('Z').split('.').next().unwrap_or(at)).ok()
            })
        };
        let expires_at = time(&body.expires_at);
        let issued_at = time(&body.issued_at).unwrap_or(now);
        let renew_at = expires_at.map(|expires| {
            let lifetime = expires.duration_since(issued_at).unwrap_or_default();
            expires - (lifetime / 4).min(RENEW_BEFORE_EXPIRY)
        });
        let (user_id, user_name, user_domain) = match body.user {
            Some(u) => (Some(u.id), u.name, u.domain.and_then(|d| d.name)),
            None => (None, None, None),
        };
        let (project_id, project_name) = match body.project {
            Some(p) => (Some(p.id), p.name),
            None => (None, None),
        };
        Ok(Token {
            secret,
            expires_at,
            renew_at,
            user_id,
            user_name,
            user_domain,
            project_id,
            project_name,
            roles: body.roles.into_iter().map(|r| r.name).collect(),
            catalog: body.catalog,
        })
    }

    /// Whether it is still good to use.
    pub fn fresh(&self, now: SystemTime) -> bool {
        self.renew_at.is_none_or(|at| at > now)
    }

    /// Whether it carries the `admin` role: what Keystone's, Nova's, Cinder's and
    /// Glance's default policies ask of the calls that see every project
    /// (`GET /v3/projects`, `all_tenants=1`).
    pub fn admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// A time as Keystone writes it (`2026-01-02T03:04:05.123456Z`, also without the
/// fraction or the `Z`).
pub fn keystone_time(at: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(at.trim_end_matches('Z')).ok()
}

/// The URL Keystone issues tokens at, from an auth URL as users write it: versioned
/// (`http://host:5000/v3`), used as it is; anything else is Keystone's root or a path
/// prefix, whose version document (asked for by the caller) says where v3 is.
pub fn tokens_url(v3: &str) -> String {
    format!("{}/auth/tokens", v3.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_scopes_by_name_or_id_and_an_application_credential_not_at_all() {
        let password = Credentials::Password {
            user: Named { name: Some("alice".into()), domain_name: Some("Default".into()), ..Named::default() },
            password: "s3cret".into(),
            project: Named::by_name("web-team"),
        };
        let body = password.request(&Scope::Service).expect("service");
        assert_eq!(body["auth"]["identity"]["password"]["user"]["domain"], json!({"name": "Default"}));
        assert_eq!(body["auth"]["scope"]["project"], json!({"name": "web-team", "domain": {"id": "default"}}));
        let body = password.request(&Scope::Project("p-1".into())).expect("project");
        assert_eq!(body["auth"]["scope"], json!({"project": {"id": "p-1"}}));
        assert!(format!("{password:?}").find("s3cret").is_none(), "no secret in Debug");

        let credential =
            Credentials::ApplicationCredential { id: Some("ac".into()), name: None, user: None, secret: "x".into() };
        let body = credential.request(&Scope::Service).expect("application credential");
        assert_eq!(body["auth"]["identity"]["application_credential"], json!({"id": "ac", "secret": "x"}));
        assert!(body["auth"].get("scope").is_none());
        assert!(credential.request(&Scope::Project("p-2".into())).is_err());
        assert!(!credential.rescopable() && password.rescopable());
    }

    #[test]
    fn a_token_says_its_roles_and_when_to_renew_it() {
        let now = SystemTime::now();
        let body = br#"{"token": {"issued_at": "2026-01-01T00:00:00.000000Z", "expires_at": "2026-01-01T00:01:00.000000Z",
            "user": {"id": "u"}, "project": {"id": "p"}, "roles": [{"id": "1", "name": "member"}, {"id": "2", "name": "reader"}],
            "catalog": [{"type": "compute", "endpoints": [{"interface": "public", "url": "http://n/v2.1"}]}]}}"#;
        let token = Token::read("t-secret".into(), body, now).expect("token");
        assert_eq!((token.user_id.as_deref(), token.project_id.as_deref()), (Some("u"), Some("p")));
        assert!(!format!("{token:?}").contains("t-secret"), "no secret in Debug");
        assert!(!token.admin());
        let expires = token.expires_at.expect("expiry");
        assert_eq!(expires.duration_since(token.renew_at.expect("renew")).expect("before"), Duration::from_secs(15));
        let long = br#"{"token": {"issued_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T01:00:00Z", "roles": [{"name": "admin"}]}}"#;
        let token = Token::read("t".into(), long, now).expect("token");
        assert!(token.admin());
        let expires = token.expires_at.expect("expiry");
        assert_eq!(expires.duration_since(token.renew_at.expect("renew")).expect("before"), RENEW_BEFORE_EXPIRY);
        let at = |s: &str| humantime::parse_rfc3339(s).expect("time");
        let first = Token::read("t".into(), body, now).expect("token");
        assert!(first.fresh(at("2026-01-01T00:00:44Z")) && !first.fresh(at("2026-01-01T00:00:46Z")));
        let precise = keystone_time("2026-01-01T00:00:44.250000Z").expect("fraction");
        assert_eq!(precise.duration_since(at("2026-01-01T00:00:44Z")).expect("later"), Duration::from_millis(250));
        assert_eq!(keystone_time("2026-01-01T00:00:44"), Some(at("2026-01-01T00:00:44Z")));
    }
}
