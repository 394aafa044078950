//! The real `stalecast` binary as a child process: found next to the test executable
//! (or at `STALECAST_BIN`), started with an explicit minimal environment, its ports
//! learned from `--ready-file`, its stdout and stderr captured line by line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::Client;

/// The `stalecast` binary: `STALECAST_BIN`, else `target/<profile>/stalecast` beside
/// this executable — a tool in `target/<profile>/`, or a test in
/// `target/<profile>/deps/` (`make test-rust` builds the binary first).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STALECAST_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("this executable's path");
    let dir = exe.parent().expect("target/<profile>/…");
    let profile_dir = if dir.ends_with("deps") { dir.parent().expect("target/<profile>") } else { dir };
    let binary = profile_dir.join("stalecast");
    assert!(
        binary.exists(),
        "{} is missing: build it (`cargo build -p stalecast`) or set STALECAST_BIN",
        binary.display()
    );
    binary
}

/// `stalecast <args>` with only `PATH` and `env` in its environment, run in a fresh
/// directory (so that no relative default, such as `web/dist`, finds anything).
pub fn command(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Command {
    let mut command = Command::new(binary());
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .envs(env.iter().copied())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `stalecast <args>` to its end (at most 60 s): its exit status and its stdout
/// and stderr together.
pub async fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = tokio::time::timeout(Duration::from_secs(60), command(args, env, dir.path()).output())
        .await
        .unwrap_or_else(|_| panic!("stalecast {args:?} did not exit within 60 s"))
        .expect("run stalecast");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}

/// A running `stalecast` process, killed when dropped.
pub struct ChildServer {
    pub client: Client,
    pub addr: SocketAddr,
    /// The embedded simulator's address (`None` with an upstream).
    pub sim_addr: Option<SocketAddr>,
    /// The ready file's JSON.
    pub ready: Value,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The working directory and the ready file; removed on drop.
    pub dir: tempfile::TempDir,
}

impl ChildServer {
    /// Starts `stalecast <args>` (give `serve` or `sim` first) with `env`, and waits for
    /// its ready file: `--ready-file` in a fresh directory is added unless `env` sets
    /// `STALECAST_READY_FILE` (or `STALECAST_SIM_READY_FILE`), whose file is waited for
    /// instead.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let from_env =
            env.iter().find(|(k, _)| *k == "STALECAST_READY_FILE" || *k == "STALECAST_SIM_READY_FILE").map(|(_, v)| *v);
        let ready_file = match from_env {
            Some(path) => PathBuf::from(path),
            None => dir.path().join("ready.json"),
        };
        let mut all: Vec<&str> = args.to_vec();
        let flag_value = ready_file.to_string_lossy().into_owned();
        if from_env.is_none() {
            all.extend(["--ready-file", &flag_value]);
        }
        let mut child = command(&all, env, dir.path()).spawn().expect("spawn stalecast");
        let lines = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take().expect("stdout"), lines.clone());
        capture(child.stderr.take().expect("stderr"), lines.clone());

        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let ready: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                break serde_json::from_str(&text).unwrap_or_else(|e| panic!("ready file is not JSON ({e}): {text}"));
            }
            if let Some(status) = child.try_wait().expect("child status") {
                let output = lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
                panic!("stalecast {all:?} exited with {status} before it was ready:\n{output}");
            }
            assert!(tokio::time::Instant::now() < deadline, "stalecast {all:?} wrote no ready file within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let addr: SocketAddr = ready["addr"].as_str().and_then(|a| a.parse().ok()).expect("ready file: addr");
        let sim_addr: Option<SocketAddr> = ready["simAddr"].as_str().map(|a| a.parse().expect("ready file: simAddr"));
        // A server listening on every address is reached on loopback.
        let reach = SocketAddr::new([127, 0, 0, 1].into(), addr.port());
        let sim_url = sim_addr.map(|a| format!("http://{a}")).unwrap_or_default();
        ChildServer {
            client: Client::new(&format!("http://{reach}"), &sim_url),
            addr,
            sim_addr,
            ready,
            child,
            lines,
            dir,
        }
    }

    /// Signs [`ChildServer::client`] in as the simulator's service account (`admin`), as
    /// a browser would before it calls anything.
    pub async fn signed_in(mut self) -> Self {
        self.client = self.client.sign_in("admin", "stalecast").await;
        self
    }

    /// Points [`ChildServer::client`]'s `/_sim` calls at `url` (an upstream simulator).
    pub fn with_sim_url(mut self, url: &str) -> Self {
        self.client.sim_url = url.trim_end_matches('/').to_owned();
        self
    }

    /// Everything the process printed so far, one entry per line (stdout and stderr).
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM (with `kill`, as an init system would).
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the child is running");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {pid}: {status}");
    }

    /// Waits for the process to exit, at most `wait`; panics (printing its output) if
    /// it does not.
    pub async fn wait_exit(&mut self, wait: Duration) -> ExitStatus {
        match tokio::time::timeout(wait, self.child.wait()).await {
            Ok(status) => status.expect("wait for stalecast"),
            Err(_) => panic!("stalecast still running after {wait:?}:\n{}", self.lines().join("\n")),
        }
    }
}

/// Appends each line `from` prints to `lines`, until it closes.
fn capture(from: impl AsyncRead + Unpin + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(from).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
}

/// A port that was free a moment ago (bound, noted, released), below the kernel's
/// ephemeral range (32768 and up by default): a port the system hands out for `bind(0)`
/// can be taken by another test's outgoing connection between this check and the child's
/// own bind (seen: "Address already in use" for a port found free a moment before).
pub fn free_port() -> u16 {
    // Where to start looking: different for each call, so that tests running at once do
    // not all try the same ports.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mix = u64::from(std::process::id()) * 7919
        + u64::from(nanos)
        + CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 104_729;
    const FIRST: u64 = 20_000;
    const SPAN: u64 = 12_000;
    for offset in 0..SPAN {
        let port = (FIRST + (mix + offset) % SPAN) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}
