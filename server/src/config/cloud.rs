//! Which cloud `stalecast serve` watches and how it logs in, read the way the
//! `openstack` CLI reads it, so that a user's existing setup works unchanged:
//!
//! 1. the cloud `--os-cloud NAME` (`OS_CLOUD`) names in `clouds.yaml`, found where
//!    openstacksdk looks (`OS_CLIENT_CONFIG_FILE`; then the current directory,
//!    `$XDG_CONFIG_HOME/openstack` or `~/.config/openstack`, `/etc/xdg/openstack`,
//!    `/etc/openstack`; `.yaml`, `.yml`, `.json`; the first file found), with the same
//!    cloud of `secure.yaml` merged over it;
//! 2. over it, the standard `OS_*` variables (`OS_AUTH_URL`, `OS_USERNAME`,
//!    `OS_PASSWORD`, `OS_PROJECT_NAME`, …), as the CLI takes them over `clouds.yaml`;
//! 3. over both, Stalecast's own flags (`--upstream`, `--os-user`, `--os-password`,
//!    `--os-project`, `--os-region-name`, `--os-interface`, `--os-cacert`).
//!
//! A layer that names a user or a project by name drops the id a lower layer gave, and
//! the other way round. Without an auth URL from any layer, Stalecast runs its embedded
//! simulator, whose service account the flags set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::upstream::auth::{Credentials, Named};
use crate::upstream::catalog::Interface;
use crate::upstream::client::UpstreamConfig;

/// What the process environment holds that the cloud's configuration is read from:
/// the `OS_*` variables and the places `clouds.yaml` is looked for. Read once by the
/// binary; empty by default, so that a server started in-process (the tests) reads no
/// user's setup.
#[derive(Clone, Default)]
pub struct OsEnvironment {
    /// The `OS_*` variables.
    pub vars: BTreeMap<String, String>,
    /// The working directory, `$HOME`, `$XDG_CONFIG_HOME`, `$XDG_CONFIG_DIRS`.
    pub cwd: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub xdg_config_dirs: Option<String>,
}

/// The variables' names only: their values hold secrets.
impl std::fmt::Debug for OsEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsEnvironment")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("home", &self.home)
            .field("xdg_config_home", &self.xdg_config_home)
            .finish_non_exhaustive()
    }
}

impl OsEnvironment {
    /// This process's.
    pub fn from_process() -> Self {
        OsEnvironment {
            vars: std::env::vars().filter(|(k, _)| k.starts_with("OS_")).collect(),
            cwd: std::env::current_dir().ok(),
            home: std::env::var_os("HOME").map(PathBuf::from),
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()),
            xdg_config_dirs: std::env::var("XDG_CONFIG_DIRS").ok(),
        }
    }

    /// The directories searched for `clouds.yaml`, in openstacksdk's order.
    pub fn search_path(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        dirs.extend(self.cwd.clone());
        let user = self.home.as_ref().map(|h| h.join(".config").join("openstack"));
        match &self.xdg_config_home {
            Some(xdg) => dirs.push(xdg.join("openstack")),
            None => dirs.extend(user.clone()),
        }
        dirs.extend(user);
        let site = self.xdg_config_dirs.as_deref().filter(|d| !d.is_empty()).unwrap_or("/etc/xdg");
        dirs.extend(site.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join("openstack")));
        dirs.push(PathBuf::from("/etc/openstack"));
        dirs.dedup();
        dirs
    }

    fn candidates(&self, stem: &str, override_var: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.vars.get(override_var).map(PathBuf::from).into_iter().collect();
        for dir in self.search_path() {
            for suffix in [".yaml", ".yml", ".json"] {
                files.push(dir.join(format!("{stem}{suffix}")));
            }
        }
        files
    }
}

/// Where Stalecast's cloud comes from, resolved.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// No cloud configured: the embedded simulator, with this service account.
    Simulator { user: String, password: String, project: String },
    /// A cloud.
    Cloud(Box<UpstreamConfig>),
}

/// Stalecast's own flags that bear on the cloud.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub upstream: Option<String>,
    pub os_cloud: Option<String>,
    pub os_user: Option<String>,
    pub os_password: Option<String>,
    pub os_project: Option<String>,
    pub os_region_name: Option<String>,
    pub os_interface: Option<String>,
    pub os_cacert: Option<PathBuf>,
}

/// The embedded simulator's service account when the flags do not name one.
pub const SIMULATOR_ACCOUNT: (&str, &str, &str) = ("admin", "stalecast", "admin");

/// Settings by openstacksdk's names (`auth_url`, `username`, `project_id`, …).
type Settings = BTreeMap<String, String>;

/// Keys that name the same thing another way: setting one drops the other.
const EITHER: [(&str, &str); 4] = [
    ("username", "user_id"),
    ("project_name", "project_id"),
    ("user_domain_name", "user_domain_id"),
    ("project_domain_name", "project_domain_id"),
];

fn set(settings: &mut Settings, key: &str, value: &str) {
    for (a, b) in EITHER {
        if key == a {
            settings.remove(b);
        } else if key == b {
            settings.remove(a);
        }
    }
    settings.insert(key.to_owned(), value.to_owned());
}

/// The `OS_*` variables the CLI reads, by the setting each one gives.
const VARIABLES: &[(&str, &str)] = &[
    ("OS_AUTH_URL", "auth_url"),
    ("OS_AUTH_TYPE", "auth_type"),
    ("OS_USERNAME", "username"),
    ("OS_USER_ID", "user_id"),
    ("OS_PASSWORD", "password"),
    ("OS_TENANT_NAME", "project_name"),
    ("OS_PROJECT_NAME", "project_name"),
    ("OS_TENANT_ID", "project_id"),
    ("OS_PROJECT_ID", "project_id"),
    ("OS_USER_DOMAIN_NAME", "user_domain_name"),
    ("OS_USER_DOMAIN_ID", "user_domain_id"),
    ("OS_PROJECT_DOMAIN_NAME", "project_domain_name"),
    ("OS_PROJECT_DOMAIN_ID", "project_domain_id"),
    ("OS_DOMAIN_NAME", "domain_name"),
    ("OS_DOMAIN_ID", "domain_id"),
    ("OS_APPLICATION_CREDENTIAL_ID", "application_credential_id"),
    ("OS_APPLICATION_CREDENTIAL_NAME", "application_credential_name"),
    ("OS_APPLICATION_CREDENTIAL_SECRET", "application_credential_secret"),
    ("OS_REGION_NAME", "region_name"),
    ("OS_INTERFACE", "interface"),
    ("OS_CACERT", "cacert"),
    ("OS_INSECURE", "insecure"),
];

/// Resolves the cloud from `clouds.yaml`, the `OS_*` variables and the flags.
pub fn resolve(flags: &Flags, env: &OsEnvironment, timeout: std::time::Duration) -> Result<Upstream, String> {
    let mut settings = Settings::new();
    let cloud = flags.os_cloud.clone().or_else(|| env.vars.get("OS_CLOUD").cloned()).filter(|c| !c.is_empty());
    if let Some(name) = &cloud {
        for (key, value) in from_clouds_yaml(name, env)? {
            set(&mut settings, &key, &value);
        }
    }
    for (variable, key) in VARIABLES {
        if let Some(value) = env.vars.get(*variable).filter(|v| !v.is_empty()) {
            set(&mut settings, key, value);
        }
    }
    let flagged = [
        ("auth_url", &flags.upstream),
        ("username", &flags.os_user),
        ("password", &flags.os_password),
        ("project_name", &flags.os_project),
        ("region_name", &flags.os_region_name),
        ("interface", &flags.os_interface),
    ];
    for (key, value) in flagged {
        if let Some(value) = value {
            set(&mut settings, key, value);
        }
    }
    if let Some(path) = &flags.os_cacert {
        set(&mut settings, "cacert", &path.to_string_lossy());
    }
    // `--upstream` alone logs in as it always has: with the simulator's account, unless
    // another layer names one.
    if flags.upstream.is_some() {
        let (user, password, project) = SIMULATOR_ACCOUNT;
        let credential = settings.contains_key("application_credential_secret");
        for (key, other, value) in
            [("username", "user_id", user), ("password", "password", password), ("project_name", "project_id", project)]
        {
            if !credential && !settings.contains_key(key) && !settings.contains_key(other) {
                set(&mut settings, key, value);
            }
        }
    }
    let Some(auth_url) = settings.get("auth_url").cloned() else {
        if let Some(name) = cloud {
            return Err(format!("cloud \"{name}\" has no auth.auth_url"));
        }
        let (user, password, project) = SIMULATOR_ACCOUNT;
        return Ok(Upstream::Simulator {
            user: flags.os_user.clone().unwrap_or_else(|| user.into()),
            password: flags.os_password.clone().unwrap_or_else(|| password.into()),
            project: flags.os_project.clone().unwrap_or_else(|| project.into()),
        });
    };
    Ok(Upstream::Cloud(Box::new(UpstreamConfig {
        auth_url: auth_url.trim_end_matches('/').to_owned(),
        credentials: credentials(&settings)?,
        region: settings.get("region_name").filter(|r| !r.is_empty()).cloned(),
        interface: match settings.get("interface") {
            Some(interface) => interface.parse().map_err(|e| format!("interface: {e}"))?,
            None => Interface::Public,
        },
        ca_cert: settings.get("cacert").map(|path| expand_home(path, env)),
        insecure: settings.get("insecure").is_some_and(|v| truthy(v))
            || settings.get("verify").is_some_and(|v| !truthy(v)),
        timeout,
    })))
}

fn truthy(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

fn expand_home(path: &str, env: &OsEnvironment) -> PathBuf {
    match (path.strip_prefix("~/"), &env.home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// The credentials the settings describe: a password (with its project) or an
/// application credential, by `auth_type` or, without one, by what is given.
fn credentials(settings: &Settings) -> Result<Credentials, String> {
    let get = |key: &str| settings.get(key).filter(|v| !v.is_empty()).cloned();
    // `domain_*` stands for both domains when the specific one is not given.
    let domain =
        |specific: &str, kind: &str| get(&format!("{specific}_{kind}")).or_else(|| get(&format!("domain_{kind}")));
    let user = || Named {
        id: get("user_id"),
        name: get("username"),
        domain_id: domain("user_domain", "id"),
        domain_name: domain("user_domain", "name"),
    };
    let auth_type = get("auth_type").unwrap_or_else(|| {
        if get("application_credential_secret").is_some() {
            "v3applicationcredential".into()
        } else {
            "password".into()
        }
    });
    match auth_type.as_str() {
        "password" | "v3password" => {
            let user = user();
            if user.id.is_none() && user.name.is_none() {
                return Err("no user: set OS_USERNAME (or --os-user, or auth.username in clouds.yaml)".into());
            }
            let password = get("password")
                .ok_or("no password: set OS_PASSWORD (or --os-password, or auth.password in clouds.yaml)")?;
            let project = Named {
                id: get("project_id"),
                name: get("project_name"),
                domain_id: domain("project_domain", "id"),
                domain_name: domain("project_domain", "name"),
            };
            if project.id.is_none() && project.name.is_none() {
                return Err("no project: set OS_PROJECT_NAME or OS_PROJECT_ID (or --os-project, or auth.project_name in clouds.yaml)".into());
            }
            Ok(Credentials::Password { user, password, project })
        }
        "v3applicationcredential" | "applicationcredential" | "application_credential" => {
            let secret = get("application_credential_secret")
                .ok_or("no application credential secret: set OS_APPLICATION_CREDENTIAL_SECRET")?;
            let id = get("application_credential_id");
            let name = get("application_credential_name");
            let user = user();
            let user = (user.id.is_some() || user.name.is_some()).then_some(user);
            if id.is_none() && (name.is_none() || user.is_none()) {
                return Err(
                    "an application credential needs OS_APPLICATION_CREDENTIAL_ID, or its name and OS_USERNAME".into(),
                );
            }
            Ok(Credentials::ApplicationCredential { id, name, user, secret })
        }
        other => Err(format!("auth_type \"{other}\" is not supported (password or v3applicationcredential)")),
    }
}

/// The settings of cloud `name` in the first `clouds.yaml` found, with `secure.yaml`'s
/// merged over them: its `auth` section's keys and the top-level ones that matter here.
fn from_clouds_yaml(name: &str, env: &OsEnvironment) -> Result<Settings, String> {
    let candidates = env.candidates("clouds", "OS_CLIENT_CONFIG_FILE");
    let Some((path, clouds)) = first_readable(&candidates)? else {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(format!("--os-cloud {name}: no clouds.yaml found (looked for {})", looked.join(", ")));
    };
    let Some(mut cloud) = clouds.get("clouds").and_then(|c| c.get(name)).cloned() else {
        let names: Vec<String> = clouds
            .get("clouds")
            .and_then(Value::as_mapping)
            .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        return Err(format!(
            "--os-cloud {name}: {} has no cloud \"{name}\" (it has: {})",
            path.display(),
            if names.is_empty() { "none".into() } else { names.join(", ") }
        ));
    };
    if let Some((_, secure)) = first_readable(&env.candidates("secure", "OS_CLIENT_SECURE_FILE"))?
        && let Some(secret) = secure.get("clouds").and_then(|c| c.get(name))
    {
        merge(&mut cloud, secret);
    }
    let mut settings = Settings::new();
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if let Some(auth) = cloud.get("auth").and_then(Value::as_mapping) {
        for (key, value) in auth {
            if let (Some(key), Some(value)) = (key.as_str(), text(value)) {
                set(&mut settings, key, &value);
            }
        }
    }
    for key in ["auth_type", "region_name", "interface", "cacert", "verify", "insecure"] {
        if let Some(value) = cloud.get(key).and_then(text) {
            set(&mut settings, key, &value);
        }
    }
    // A list of regions: the first, as the CLI takes it.
    if let Some(first) = cloud.get("regions").and_then(Value::as_sequence).and_then(|r| r.first()) {
        let region = first.as_str().map(str::to_owned).or_else(|| first.get("name").and_then(text));
        if let (Some(region), false) = (region, settings.contains_key("region_name")) {
            set(&mut settings, "region_name", &region);
        }
    }
    Ok(settings)
}

/// The first of `paths` that exists, parsed (YAML, which JSON also is).
fn first_readable(paths: &[PathBuf]) -> Result<Option<(PathBuf, Value)>, String> {
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let value: Value = serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Some((path.clone(), value)));
    }
    Ok(None)
}

/// Merges `over` into `base`, mapping by mapping.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn env(vars: &[(&str, &str)], dir: Option<&Path>) -> OsEnvironment {
        OsEnvironment {
            vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cwd: dir.map(Path::to_path_buf),
            ..OsEnvironment::default()
        }
    }

    fn cloud(flags: &Flags, env: &OsEnvironment) -> UpstreamConfig {
        match resolve(flags, env, Duration::from_secs(5)) {
            Ok(Upstream::Cloud(config)) => *config,
            other => panic!("not a cloud: {other:?}"),
        }
    }

    #[test]
    fn nothing_configured_is_the_simulator() {
        let flags = Flags { os_password: Some("pw".into()), ..Flags::default() };
        match resolve(&flags, &OsEnvironment::default(), Duration::from_secs(1)) {
            Ok(Upstream::Simulator { user, password, project }) => {
                assert_eq!((user.as_str(), password.as_str(), project.as_str()), ("admin", "pw", "admin"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn os_variables_are_read_as_the_cli_reads_them() {
        let env = env(
            &[
                ("OS_AUTH_URL", "https://keystone.example:5000/v3/"),
                ("OS_USERNAME", "alice"),
                ("OS_PASSWORD", "secret"),
                ("OS_PROJECT_NAME", "web-team"),
                ("OS_USER_DOMAIN_NAME", "Default"),
                ("OS_PROJECT_DOMAIN_NAME", "Default"),
                ("OS_REGION_NAME", "RegionTwo"),
                ("OS_INTERFACE", "internal"),
                ("OS_CACERT", "/etc/ssl/cloud.pem"),
            ],
            None,
        );
        let config = cloud(&Flags::default(), &env);
        assert_eq!(config.auth_url, "https://keystone.example:5000/v3");
        assert_eq!(config.region.as_deref(), Some("RegionTwo"));
        assert_eq!(config.interface, Interface::Internal);
        assert_eq!(config.ca_cert, Some(PathBuf::from("/etc/ssl/cloud.pem")));
        let Credentials::Password { user, password, project } = config.credentials else { panic!("password") };
        assert_eq!((user.name.as_deref(), user.domain_name.as_deref()), (Some("alice"), Some("Default")));
        assert_eq!((password.as_str(), project.name.as_deref()), ("secret", Some("web-team")));

        // The flags win, and a project by name drops the id a lower layer gave.
        let env2 = OsEnvironment {
            vars: [("OS_PROJECT_ID".to_string(), "p-1".to_string())].into_iter().chain(env.vars.clone()).collect(),
            ..env.clone()
        };
        let flags = Flags {
            os_project: Some("data-team".into()),
            os_region_name: Some("RegionOne".into()),
            ..Flags::default()
        };
        let config = cloud(&flags, &env2);
        assert_eq!(config.region.as_deref(), Some("RegionOne"));
        let Credentials::Password { project, .. } = config.credentials else { panic!("password") };
        assert_eq!((project.id, project.name.as_deref()), (None, Some("data-team")));
    }

    #[test]
    fn clouds_yaml_is_found_merged_with_secure_yaml_and_overridden_by_the_environment() {
        let dir = std::env::temp_dir().join(format!("stalecast-clouds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("clouds.yaml"),
            "clouds:\n  prod:\n    auth:\n      auth_url: http://k:5000\n      username: svc\n      project_id: p-9\n      user_domain_id: default\n    region_name: RegionOne\n    interface: internal\n    verify: false\n  app:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: http://k:5000/v3\n      application_credential_id: ac-1\n",
        )
        .expect("clouds.yaml");
        std::fs::write(dir.join("secure.yaml"), "clouds:\n  prod:\n    auth:\n      password: from-secure\n  app:\n    auth:\n      application_credential_secret: s3\n")
            .expect("secure.yaml");
        let flags = Flags { os_cloud: Some("prod".into()), ..Flags::default() };
        let config = cloud(&flags, &env(&[], Some(&dir)));
        assert_eq!(
            (config.auth_url.as_str(), config.interface, config.insecure),
            ("http://k:5000", Interface::Internal, true)
        );
        let Credentials::Password { user, password, project } = config.credentials else { panic!("password") };
        assert_eq!((user.name.as_deref(), user.domain_id.as_deref()), (Some("svc"), Some("default")));
        assert_eq!((password.as_str(), project.id.as_deref()), ("from-secure", Some("p-9")));

        // OS_* variables win over the file.
        let config = cloud(&flags, &env(&[("OS_PASSWORD", "from-env"), ("OS_INTERFACE", "public")], Some(&dir)));
        assert_eq!(config.interface, Interface::Public);
        assert!(matches!(config.credentials, Credentials::Password { ref password, .. } if password == "from-env"));

        // OS_CLOUD names the cloud as --os-cloud does; an application credential.
        let config = cloud(&Flags::default(), &env(&[("OS_CLOUD", "app")], Some(&dir)));
        assert!(
            matches!(config.credentials, Credentials::ApplicationCredential { id: Some(ref id), ref secret, .. } if id == "ac-1" && secret == "s3")
        );

        let missing = resolve(
            &Flags { os_cloud: Some("nope".into()), ..Flags::default() },
            &env(&[], Some(&dir)),
            Duration::from_secs(1),
        )
        .expect_err("no such cloud");
        assert!(missing.contains("has no cloud \"nope\"") && missing.contains("prod"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("clean up");
        let nowhere = resolve(&flags, &env(&[], Some(&dir)), Duration::from_secs(1)).expect_err("no file");
        assert!(nowhere.contains("no clouds.yaml found"), "{nowhere}");
    }

    #[test]
    fn the_search_path_is_openstacksdks() {
        let places = OsEnvironment {
            cwd: Some("/work".into()),
            home: Some("/home/u".into()),
            xdg_config_home: Some("/xdg".into()),
            ..OsEnvironment::default()
        };
        let dirs: Vec<String> = places.search_path().iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            dirs,
            ["/work", "/xdg/openstack", "/home/u/.config/openstack", "/etc/xdg/openstack", "/etc/openstack"]
        );
        let bad = resolve(
            &Flags::default(),
            &env(&[("OS_AUTH_URL", "http://k/v3"), ("OS_USERNAME", "u"), ("OS_PROJECT_NAME", "p")], None),
            Duration::from_secs(1),
        )
        .expect_err("no password");
        assert!(bad.contains("OS_PASSWORD"), "{bad}");
        // `--upstream` alone keeps its old defaults.
        let flags = Flags { upstream: Some("http://k".into()), ..Flags::default() };
        let config = cloud(&flags, &OsEnvironment::default());
        let Credentials::Password { user, password, project } = config.credentials else { panic!("password") };
        assert_eq!((user.label(), password.as_str(), project.label()), ("admin", "stalecast", "admin"));
    }
}
