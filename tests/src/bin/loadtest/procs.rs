//! The processes under test — the simulator and the Stalecast server, started from the
//! `stalecast` binary — and what `/proc` says about their memory and CPU.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedSender;

/// How long a process may take to write its ready file.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process whose log (JSON lines on stdout, anything on stderr) goes to a file;
/// warnings and errors are counted.
pub struct Logged {
    pub pid: u32,
    child: Child,
    pub warnings: Arc<AtomicU64>,
    pub errors: Arc<AtomicU64>,
    /// The first few warning/error messages, for the report.
    pub samples: Arc<std::sync::Mutex<Vec<String>>>,
    /// Holds the ready file; removed when the process is dropped.
    _ready_dir: tempfile::TempDir,
}

impl Logged {
    /// Starts `command` (a `stalecast` command, `what` in messages) with a minimal
    /// environment — PATH and RUST_LOG, nothing else of this process's — and
    /// `--ready-file` in a fresh temporary directory; waits until the file is there and
    /// answers its JSON. Fails with the end of the process's log if it exits first or
    /// writes no ready file within [`READY_TIMEOUT`].
    async fn start(mut command: Command, what: &str, log: &Path) -> anyhow::Result<(Self, serde_json::Value)> {
        let ready_dir = tempfile::Builder::new().prefix("loadtest-").tempdir().context("a temporary directory")?;
        let ready = ready_dir.path().join("ready.json");
        command.arg("--ready-file").arg(&ready);
        command.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()));
        command.env("RUST_LOG", "warn,stalecast=info");
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).kill_on_drop(true);
        let mut child = command.spawn().with_context(|| format!("starting {what}"))?;
        let pid = child.id().context("child pid")?;
        let warnings = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut file = tokio::fs::File::create(log).await.with_context(|| format!("creating {}", log.display()))?;
        // Both streams' lines, in arrival order, to the one log file.
        let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stdout = child.stdout.take().context("child stdout")?;
        let stderr = child.stderr.take().context("child stderr")?;
        forward_lines(stdout, lines_tx.clone());
        forward_lines(stderr, lines_tx);
        let (w, e, s) = (warnings.clone(), errors.clone(), samples.clone());
        let writer = tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                let level = value["level"].as_str().unwrap_or_default();
                if level == "WARN" || level == "ERROR" {
                    if level == "WARN" { &w } else { &e }.fetch_add(1, Ordering::Relaxed);
                    let mut samples = s.lock().unwrap_or_else(|p| p.into_inner());
                    if samples.len() < 5 {
                        samples.push(format!("{level} {}", value["fields"]));
                    }
                }
            }
            let _ = file.flush().await;
        });

        let deadline = Instant::now() + READY_TIMEOUT;
        let failure = loop {
            match tokio::fs::read(&ready).await {
                Ok(bytes) => {
                    let value = serde_json::from_slice(&bytes)
                        .with_context(|| format!("{what} wrote an unreadable ready file: {bytes:?}"))?;
                    let logged = Logged { pid, child, warnings, errors, samples, _ready_dir: ready_dir };
                    return Ok((logged, value));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", ready.display())),
            }
            if let Some(status) = child.try_wait()? {
                break format!("{what} exited ({status}) before it was ready");
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                break format!("{what} wrote no ready file within {} s", READY_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // The log is complete once both streams ended.
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        let text = tokio::fs::read_to_string(log).await.unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("{failure}; the end of its log ({}):\n{}", log.display(), tail.join("\n"))
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits up to `grace` for a clean exit (SIGKILL after that). Answers
    /// whether it exited cleanly in time.
    pub async fn stop(mut self, grace: Duration) -> bool {
        if !self.alive() {
            return false;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = self.child.kill().await;
                false
            }
        }
    }
}

/// Sends each line of `stream` to `lines` until it ends.
fn forward_lines(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, lines: UnboundedSender<String>) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
}

/// The address a ready file names under `key`.
fn ready_addr(ready: &serde_json::Value, key: &str) -> anyhow::Result<SocketAddr> {
    ready[key]
        .as_str()
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("no address {key:?} in the ready file {ready}"))
}

/// Starts `stalecast sim` on a free loopback port.
pub async fn start_sim(bin: &Path, log: &Path) -> anyhow::Result<(Logged, SocketAddr)> {
    let mut command = Command::new(bin);
    command.args(["--log-format", "json", "sim", "--host", "127.0.0.1", "--port", "0"]);
    let (child, ready) = Logged::start(command, "stalecast sim", log).await?;
    Ok((child, ready_addr(&ready, "addr")?))
}

/// Starts `stalecast serve` on loopback `port` (0: a free one) against `upstream`,
/// optionally with a lower descriptor limit.
pub async fn start_server(
    bin: &Path,
    upstream: &str,
    port: u16,
    nofile: Option<u64>,
    extra: &[String],
    log: &Path,
) -> anyhow::Result<(Logged, SocketAddr)> {
    let mut args: Vec<String> =
        ["--log-format", "json", "serve", "--host", "127.0.0.1", "--port"].iter().map(|s| s.to_string()).collect();
    args.push(port.to_string());
    args.push(String::from("--upstream"));
    args.push(upstream.to_owned());
    args.extend(extra.iter().cloned());
    let command = match nofile {
        // `ulimit` in a shell that then becomes the server: the limit is in force from
        // the first instruction on.
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(r#"ulimit -n "$1" && shift && exec "$@""#).arg("sh").arg(n.to_string()).arg(bin);
            c.args(&args);
            c
        }
        None => {
            let mut c = Command::new(bin);
            c.args(&args);
            c
        }
    };
    let (child, ready) = Logged::start(command, "stalecast serve", log).await?;
    Ok((child, ready_addr(&ready, "addr")?))
}

/// The `stalecast` binary to run: `path` if given, else the release build next to this
/// tool, else `target/release/stalecast`.
pub fn server_binary(path: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidates: Vec<PathBuf> = match path {
        Some(p) => vec![p.to_owned()],
        None => {
            let mut c = Vec::new();
            if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_owned)) {
                c.push(dir.join("stalecast"));
            }
            c.push(PathBuf::from("target/release/stalecast"));
            c
        }
    };
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    bail!("no stalecast binary at {candidates:?}: build it (cargo build --release -p stalecast) or pass --server-bin")
}

/// A process's resource use at one moment.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub rss_kib: u64,
    /// User + system CPU seconds since the process started.
    pub cpu_s: f64,
    /// Bytes written through write(2) and friends, sockets included.
    pub wchar: u64,
    pub fds: u64,
    pub threads: Vec<ThreadCpu>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub cpu_s: f64,
}

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// Reads `/proc/<pid>`.
pub fn sample(pid: u32) -> anyhow::Result<Sample> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(base.join("status"))?;
    let rss_kib = stalecast_tests::vm_rss_kib(&status).unwrap_or(0);
    let (_, cpu_s) = stat_cpu(&std::fs::read_to_string(base.join("stat"))?);
    let wchar = std::fs::read_to_string(base.join("io"))
        .ok()
        .and_then(|io| io.lines().find_map(|l| l.strip_prefix("wchar:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0);
    let fds = std::fs::read_dir(base.join("fd")).map(|d| d.count() as u64).unwrap_or(0);
    let mut threads = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(base.join("task")) {
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            let (name, cpu_s) = stat_cpu(&stat);
            let tid = task.file_name().to_string_lossy().parse().unwrap_or(0);
            threads.push(ThreadCpu { tid, name, cpu_s });
        }
    }
    threads.sort_by_key(|t| t.tid);
    Ok(Sample { rss_kib, cpu_s, wchar, fds, threads })
}

/// The resource use of several processes (the nodes of a cluster) as one: memory, CPU,
/// bytes written and descriptors summed, every thread listed. `None` for no process.
pub fn sample_all(pids: &[u32]) -> anyhow::Result<Option<Sample>> {
    let mut total: Option<Sample> = None;
    for pid in pids {
        let s = sample(*pid)?;
        let t = total.get_or_insert_with(Sample::default);
        t.rss_kib += s.rss_kib;
        t.cpu_s += s.cpu_s;
        t.wchar += s.wchar;
        t.fds += s.fds;
        t.threads.extend(s.threads);
    }
    Ok(total)
}

/// The command name and utime + stime of a `stat` line.
fn stat_cpu(stat: &str) -> (String, f64) {
    let name = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')')).map_or("", |(n, _)| n).to_owned();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (name, (ticks(14) + ticks(15)) / TICKS)
}

/// CPU seconds each thread used between two samples, busiest first (threads that
/// used less than 10 ms left out).
pub fn thread_delta(before: &Sample, after: &Sample) -> Vec<ThreadCpu> {
    let mut out: Vec<ThreadCpu> = after
        .threads
        .iter()
        .map(|t| {
            let earlier = before.threads.iter().find(|b| b.tid == t.tid).map_or(0.0, |b| b.cpu_s);
            ThreadCpu { tid: t.tid, name: t.name.clone(), cpu_s: t.cpu_s - earlier }
        })
        .filter(|t| t.cpu_s >= 0.01)
        .collect();
    out.sort_by(|a, b| b.cpu_s.total_cmp(&a.cpu_s));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).expect("own /proc");
        assert!(s.rss_kib > 0);
        assert!(s.fds > 0);
        assert!(!s.threads.is_empty());
        let two = sample_all(&[std::process::id(), std::process::id()]).expect("own /proc").expect("a sample");
        // Summed: about twice one sample's memory, every thread twice.
        assert!(two.rss_kib > s.rss_kib && two.threads.len() >= 2);
        assert!(sample_all(&[]).expect("nothing to read").is_none());
        let (name, _) = stat_cpu("42 (tokio-runtime-w) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0");
        assert_eq!(name, "tokio-runtime-w");
        assert_eq!(stat_cpu("42 (a b) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0").1, 2.0);
    }
}
