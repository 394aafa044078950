//! The command line: `stalecast serve`, `stalecast sim`, `stalecast gen`. Every flag of
//! `serve` and `sim` can also be set with a `STALECAST_*` environment variable (those of
//! the cloud with OpenStack's own `OS_*` ones too, and `clouds.yaml`: [`cloud`]); every
//! one has a default, so `stalecast serve` alone serves on port 3000 against an embedded
//! simulator. `gen` writes into the current directory (the repository root).

pub mod cloud;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::sim::seed::Seed;

#[derive(Debug, Parser)]
#[command(name = "stalecast", version, about = "Tells browsers which data just went stale, over one SSE stream.")]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "STALECAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API, the update stream and the web app.
    Serve(ServeConfig),
    /// Serve the OpenStack-shaped simulator alone.
    Sim(SimArgs),
    /// Write the TypeScript bindings and the OpenAPI document (or check them).
    Gen(GenArgs),
}

fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// A membership refresh interval: at most a minute.
fn refresh(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d > crate::auth::MAX_REFRESH {
        return Err("memberships are read again at least every minute: at most 1m".into());
    }
    Ok(d)
}

fn origin(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(authority) if !authority.is_empty() && !authority.contains('/') => Ok(s.to_owned()),
        _ => Err("an origin is scheme://host[:port], e.g. https://app.example.com".into()),
    }
}

/// `stalecast serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "STALECAST_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0: any free port).
    #[arg(long, short, env = "STALECAST_PORT", default_value_t = 3000)]
    pub port: u16,
    /// Keystone URL of the cloud to watch (as `OS_AUTH_URL`). Without it, `--os-cloud`
    /// or `OS_AUTH_URL`, an embedded simulator is started and watched.
    #[arg(long, env = "STALECAST_UPSTREAM")]
    pub upstream: Option<String>,
    /// A cloud of `clouds.yaml`, found where the `openstack` CLI looks for it.
    #[arg(long, env = "OS_CLOUD", value_name = "NAME")]
    pub os_cloud: Option<String>,
    /// Keystone user (as `OS_USERNAME`); the embedded simulator's service account when
    /// there is no cloud (`admin` by default).
    #[arg(long, env = "STALECAST_OS_USER")]
    pub os_user: Option<String>,
    /// Its password (as `OS_PASSWORD`; `stalecast` for the embedded simulator).
    #[arg(long, env = "STALECAST_OS_PASSWORD", hide_env_values = true)]
    pub os_password: Option<String>,
    /// The project its token is scoped to, by name (as `OS_PROJECT_NAME`; `admin` for the
    /// embedded simulator).
    #[arg(long, env = "STALECAST_OS_PROJECT")]
    pub os_project: Option<String>,
    /// The region whose endpoints to use (any when absent).
    #[arg(long, env = "OS_REGION_NAME", value_name = "REGION")]
    pub os_region_name: Option<String>,
    /// Which endpoint of each service to use: `public`, `internal` or `admin`.
    #[arg(long, env = "OS_INTERFACE", value_name = "INTERFACE")]
    pub os_interface: Option<String>,
    /// Trust the certificate authorities of this PEM bundle (instead of the system's).
    #[arg(long, env = "OS_CACERT", value_name = "PATH")]
    pub os_cacert: Option<PathBuf>,
    /// The rest of the `OS_*` variables and where `clouds.yaml` is looked for, read by
    /// the binary at start (empty for a server started in-process).
    #[arg(skip)]
    pub os_environment: cloud::OsEnvironment,
    /// Port of the embedded simulator on 127.0.0.1 (0: any free port, logged at start).
    #[arg(long, env = "STALECAST_SIM_PORT", default_value_t = 0)]
    pub sim_port: u16,
    /// Embedded simulator: a random server changes power state this often (off when absent).
    #[arg(long, env = "STALECAST_SIM_CHURN", value_parser = duration)]
    pub sim_churn: Option<Duration>,
    /// Embedded simulator: add this many realistic records at start, e.g.
    /// `volumes=36000,servers=2000,images=200,networks=300,snapshots=5000,subnets=600[,seed=7]`
    /// (at most 200000 each).
    #[arg(long, env = "STALECAST_SIM_SEED", default_value = "", hide_default_value = true, value_name = "KIND=N,…")]
    pub sim_seed: Seed,
    /// How often the poller asks the upstream for each collection.
    #[arg(long, env = "STALECAST_POLL_INTERVAL", value_parser = duration, default_value = "2s")]
    pub poll_interval: Duration,
    /// Timeout of one upstream request.
    #[arg(long, env = "STALECAST_UPSTREAM_TIMEOUT", value_parser = duration, default_value = "10s")]
    pub upstream_timeout: Duration,
    /// A `ping` event on idle streams this often.
    #[arg(long, env = "STALECAST_PING_INTERVAL", value_parser = duration, default_value = "10s")]
    pub ping_interval: Duration,
    /// Updates kept for clients that reconnect (`Last-Event-ID`).
    #[arg(long, env = "STALECAST_RING_SIZE", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ring_size: u32,
    /// Updates a stream may fall behind before it is told to resync.
    #[arg(long, env = "STALECAST_CHANNEL_CAPACITY", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub channel_capacity: u32,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "STALECAST_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most connections open at once; more wait in the listen backlog (0: the process's
    /// file-descriptor limit less a reserve for upstream connections and files).
    #[arg(long, env = "STALECAST_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// How long a connection may take to send a request head, and how long an idle
    /// keep-alive connection waits for its next request.
    #[arg(long, env = "STALECAST_HEADER_TIMEOUT", value_parser = duration, default_value = "20s")]
    pub header_timeout: Duration,
    /// How long a request body may take to arrive (408 after that).
    #[arg(long, env = "STALECAST_BODY_TIMEOUT", value_parser = duration, default_value = "30s")]
    pub body_timeout: Duration,
    /// How long an answer (or an event stream) may wait for a client that does not read
    /// before the connection is closed.
    #[arg(long, env = "STALECAST_WRITE_TIMEOUT", value_parser = duration, default_value = "30s")]
    pub write_timeout: Duration,
    /// How long shutdown waits for open connections to finish before it closes them.
    #[arg(long, env = "STALECAST_SHUTDOWN_TIMEOUT", value_parser = duration, default_value = "5s")]
    pub shutdown_timeout: Duration,
    /// `/readyz` answers 503 once a collection's last successful fetch is older than this.
    #[arg(long, env = "STALECAST_MAX_STALENESS", value_parser = duration, default_value = "30s")]
    pub max_staleness: Duration,
    /// Serve `/metrics` (Prometheus text format) on this address, a listener of its own
    /// for the operator's scraper, e.g. `127.0.0.1:9464` (port 0: any free port). Off
    /// when absent: the figures are never served on the app's port.
    #[arg(long, env = "STALECAST_METRICS_ADDR", value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,

    // --- sign-in ---
    /// A session with no request for this long ends (its streams with it).
    #[arg(long, env = "STALECAST_SESSION_IDLE_TIMEOUT", value_parser = duration, default_value = "30m")]
    pub session_idle_timeout: Duration,
    /// A session ends this long after sign-in at the latest (sooner when the user's
    /// Keystone token expires: sessions are never renewed past it).
    #[arg(long, env = "STALECAST_SESSION_LIFETIME", value_parser = duration, default_value = "12h")]
    pub session_lifetime: Duration,
    /// How often each session's projects and roles are read again from Keystone (at most
    /// `1m`).
    #[arg(long, env = "STALECAST_MEMBERSHIP_REFRESH", value_parser = refresh, default_value = "1m")]
    pub membership_refresh: Duration,
    /// Failed sign-ins of one user within `--signin-window` that block the user until
    /// the oldest of them is older than the window.
    #[arg(long, env = "STALECAST_SIGNIN_FAILURES_PER_USER", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub signin_failures_per_user: u32,
    /// Failed sign-ins from one client address (any users) within `--signin-window`
    /// that block the address.
    #[arg(long, env = "STALECAST_SIGNIN_FAILURES_PER_ADDRESS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub signin_failures_per_address: u32,
    /// How long a failed sign-in counts.
    #[arg(long, env = "STALECAST_SIGNIN_WINDOW", value_parser = duration, default_value = "5m")]
    pub signin_window: Duration,
    /// Pages are served over HTTPS by a proxy in front that terminates TLS: the session
    /// cookie is `Secure` and named `__Host-stalecast_session` (always so with
    /// `--tls-cert`).
    #[arg(long, env = "STALECAST_SECURE_COOKIE")]
    pub secure_cookie: bool,

    // --- who may call ---
    /// A host name the server answers to, besides the listen address, `localhost`,
    /// `127.0.0.1` and `[::1]` (repeat, or comma-separated); any other `Host` is refused.
    #[arg(long = "allowed-host", env = "STALECAST_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// An origin (`https://app.example.com`) whose pages may call the API cross-site, with
    /// CORS (repeat, or comma-separated). None by default: no CORS headers at all.
    #[arg(long = "cors-origin", env = "STALECAST_CORS_ORIGINS", value_delimiter = ',', value_parser = origin)]
    pub cors_origins: Vec<String>,

    // --- several nodes ---
    /// Run as one node of several on this Redis (`redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS, its certificate verified against the system's trust store or
    /// `SSL_CERT_FILE`): one seq and update log, one poller, resume on any node.
    /// Without it, everything stays in this process.
    #[arg(long, env = "STALECAST_REDIS", hide_env_values = true, value_name = "URL")]
    pub redis: Option<String>,
    /// With `--redis`: the poller's lease. Renewed every third of it; when the node
    /// polling dies, another polls within two leases.
    #[arg(long, env = "STALECAST_LEASE", value_parser = duration, default_value = "3s")]
    pub lease: Duration,
    /// With `--redis`: this node's name on the Server page and in the poller's lease, up to
    /// 64 letters, digits and `.`, `_`, `-`, `:` (default: the host's name and the listen
    /// port, e.g. `web-1:3000`).
    #[arg(long, env = "STALECAST_NODE_NAME", value_parser = crate::cluster::nodes::node_name)]
    pub node_name: Option<String>,

    // --- web app ---
    /// The built web app (`npm run build` in `web/`), served at `/`. When it is missing,
    /// `/` says how to build it.
    #[arg(long, env = "STALECAST_WEB_DIR", default_value = "web/dist")]
    pub web_dir: PathBuf,

    // --- TLS ---
    /// Serve HTTPS (HTTP/2 and HTTP/1.1, by ALPN) with this certificate chain (PEM);
    /// needs `--tls-key`. Without both, plain HTTP.
    #[arg(long, env = "STALECAST_TLS_CERT", requires = "tls_key", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, RSA or EC); needs `--tls-cert`.
    #[arg(long, env = "STALECAST_TLS_KEY", requires = "tls_cert", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Once listening, write `{"addr":"…","url":"http(s)://…","simAddr":"…"|null}` to this
    /// file (whole, then renamed into place): how scripts and test harnesses learn the
    /// ports (`url` says whether it is HTTPS).
    #[arg(long, env = "STALECAST_READY_FILE")]
    pub ready_file: Option<PathBuf>,
}

/// `stalecast serve`'s flags alone, as a command of their own.
#[derive(Parser)]
struct ServeOnly {
    #[command(flatten)]
    config: ServeConfig,
}

/// [`ServeOnly`] with every environment variable unhooked: only the literal defaults.
fn literal_defaults() -> clap::Command {
    ServeOnly::command().mut_args(|arg| arg.env(None::<&'static str>))
}

impl ServeConfig {
    /// The flags that bear on which cloud is watched and how.
    pub fn cloud_flags(&self) -> cloud::Flags {
        cloud::Flags {
            upstream: self.upstream.clone(),
            os_cloud: self.os_cloud.clone(),
            os_user: self.os_user.clone(),
            os_password: self.os_password.clone(),
            os_project: self.os_project.clone(),
            os_region_name: self.os_region_name.clone(),
            os_interface: self.os_interface.clone(),
            os_cacert: self.os_cacert.clone(),
        }
    }
}

impl Default for ServeConfig {
    /// The documented defaults of the command line, whatever `STALECAST_*` variables the
    /// environment holds: tests and embedders start from the same values everywhere.
    fn default() -> Self {
        let matches = literal_defaults().get_matches_from(["stalecast"]);
        match ServeOnly::from_arg_matches(&matches) {
            Ok(parsed) => parsed.config,
            // Every flag has a default or is optional, so this cannot happen.
            Err(error) => panic!("the defaults of `stalecast serve` do not parse: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_read_no_environment_variable() {
        let hooked = ServeOnly::command().get_arguments().filter(|a| a.get_env().is_some()).count();
        assert!(hooked > 10, "the flags have their STALECAST_* variables");
        assert!(literal_defaults().get_arguments().all(|a| a.get_env().is_none()));
        let default = ServeConfig::default();
        assert_eq!((default.port, default.ring_size, default.channel_capacity), (3000, 4096, 1024));
        assert_eq!(default.upstream, None);
        assert!(default.sim_seed.is_empty(), "the small seeded world by default");
    }

    #[test]
    fn memberships_are_read_again_at_least_every_minute() {
        let parse = |args: &[&str]| literal_defaults().try_get_matches_from(args).map(|_| ());
        assert!(parse(&["stalecast", "--membership-refresh", "20s"]).is_ok());
        assert!(parse(&["stalecast", "--membership-refresh", "2m"]).is_err());
        let default = ServeConfig::default();
        assert_eq!(default.membership_refresh, Duration::from_secs(60));
        assert!(!default.secure_cookie);
    }

    #[test]
    fn a_node_name_is_short_and_plain() {
        let parse = |args: &[&str]| literal_defaults().try_get_matches_from(args).map(|_| ());
        assert!(parse(&["stalecast", "--node-name", "web-1:3000"]).is_ok());
        for bad in ["", "a b", "redis://u:pw@host", &"n".repeat(65)] {
            assert!(parse(&["stalecast", "--node-name", bad]).is_err(), "{bad}");
        }
        assert_eq!(ServeConfig::default().node_name, None);
    }

    #[test]
    fn a_tls_certificate_needs_its_key_and_the_key_its_certificate() {
        let parse = |args: &[&str]| literal_defaults().try_get_matches_from(args).map(|_| ());
        assert!(parse(&["stalecast", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_ok());
        assert!(parse(&["stalecast"]).is_ok());
        for alone in [["stalecast", "--tls-cert", "c.pem"], ["stalecast", "--tls-key", "k.pem"]] {
            let error = parse(&alone).expect_err("one alone is refused");
            assert_eq!(error.kind(), clap::error::ErrorKind::MissingRequiredArgument, "{error}");
        }
    }
}

/// `stalecast sim`.
#[derive(Clone, Debug, Args)]
pub struct SimArgs {
    #[arg(long, env = "STALECAST_SIM_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(long, short, env = "STALECAST_SIM_PORT", default_value_t = 5000)]
    pub port: u16,
    /// A random server changes power state this often (off when absent).
    #[arg(long, env = "STALECAST_SIM_CHURN", value_parser = duration)]
    pub churn: Option<Duration>,
    /// How long new servers stay BUILD and new volumes creating.
    #[arg(long, env = "STALECAST_SIM_TRANSITION", value_parser = duration, default_value = "2s")]
    pub transition_delay: Duration,
    /// Add this many realistic records at start, e.g.
    /// `volumes=36000,servers=2000,images=200,networks=300,snapshots=5000,subnets=600[,seed=7]`
    /// (at most 200000 each).
    #[arg(long, env = "STALECAST_SIM_SEED", default_value = "", hide_default_value = true, value_name = "KIND=N,…")]
    pub seed: Seed,
    /// Once listening, write `{"addr":"…"}` to this file (whole, then renamed into place).
    #[arg(long, env = "STALECAST_SIM_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Play only Nova and Neutron beside the real Keystone at this URL: accept the
    /// tokens it issues (validated there), start with no records. Register the
    /// simulator's `/compute/v2.1` and `/network` in that Keystone's catalog.
    #[arg(long, env = "STALECAST_SIM_KEYSTONE", value_name = "URL")]
    pub keystone: Option<String>,
}

/// `stalecast gen`.
#[derive(Clone, Debug, Args)]
pub struct GenArgs {
    /// Directory of the TypeScript bindings (ts-rs's export directory).
    #[arg(long, env = "TS_RS_EXPORT_DIR", default_value = "bindings")]
    pub bindings: PathBuf,
    /// Path of the OpenAPI document.
    #[arg(long, env = "STALECAST_OPENAPI", default_value = "openapi/openapi.json")]
    pub openapi: PathBuf,
    /// Write nothing; fail when a file differs from what the code generates.
    #[arg(long)]
    pub check: bool,
}
