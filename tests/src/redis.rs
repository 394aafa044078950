//! A real `redis-server` for the cluster tests and the load tool: started on a free
//! loopback port without persistence (`--save '' --appendonly no`), stopped by its
//! process id, restartable on the same port (empty, as a Redis without persistence
//! comes back), and spoken to with a minimal RESP client (no client library needed to
//! flush it or read a key). [`RedisServer::start_tls`] adds a TLS port (`rediss://`)
//! beside the plain one, which the helper itself keeps using.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    /// The TLS port and the arguments that serve it, when started with TLS.
    tls: Option<(u16, Vec<String>)>,
    child: Option<Child>,
    binary: PathBuf,
}

/// Debian's `redis-server` (`make test` installs it when missing), or `REDIS_SERVER`.
fn binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER").map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
}

impl RedisServer {
    /// Starts one on a free loopback port and waits until it answers.
    pub async fn start() -> RedisServer {
        Self::try_start().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`RedisServer::start`], answering what went wrong instead of panicking (the load
    /// tool reports it).
    pub async fn try_start() -> std::io::Result<RedisServer> {
        let mut server = RedisServer { port: crate::child::free_port(), tls: None, child: None, binary: binary() };
        server.try_run().await?;
        Ok(server)
    }

    /// As [`RedisServer::start`], also serving TLS with `cert` on a port of its own
    /// (clients are not asked for certificates).
    pub async fn start_tls(cert: &crate::tls::TestCert) -> RedisServer {
        let (cert, key) = cert.paths();
        let port = crate::child::free_port();
        let args: Vec<String> = vec![
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            cert.clone(),
            "--tls-key-file".into(),
            key,
            "--tls-ca-cert-file".into(),
            cert,
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        let mut server =
            RedisServer { port: crate::child::free_port(), tls: Some((port, args)), child: None, binary: binary() };
        server.run().await;
        server
    }

    /// `rediss://localhost:<tls port>` (the name the test certificate is for).
    pub fn tls_url(&self) -> String {
        let (port, _) = self.tls.as_ref().expect("started with start_tls");
        format!("rediss://localhost:{port}")
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn run(&mut self) {
        self.try_run().await.unwrap_or_else(|e| panic!("{e}"));
    }

    async fn try_run(&mut self) -> std::io::Result<()> {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(self.tls.iter().flat_map(|(_, args)| args))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot run {} ({e}): `make redis-server` installs it", self.binary.display()),
                )
            })?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(reply) = self.try_command(&["PING"]).await
                && reply == "+PONG"
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("redis-server on port {} did not answer within 10 s", self.port),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it (SIGKILL by its process id) and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }

    /// Starts it again on the same port: empty, as a Redis without persistence restarts.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }

    /// Runs one command; answers its reply in RESP's text form (`+OK`, `$-1`, `:3`,
    /// `$5` followed by the bulk string on the next line, …). Panics when Redis is down.
    pub async fn command(&self, args: &[&str]) -> String {
        self.try_command(args).await.unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// A bulk-string reply's value (`None` for nil).
    pub async fn get(&self, key: &str) -> Option<String> {
        let reply = self.command(&["GET", key]).await;
        reply.split_once("\r\n").map(|(_, value)| value.trim_end_matches("\r\n").to_owned())
    }

    async fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut conn = TcpStream::connect(self.addr()).await?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        conn.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        // One reply: read until it is whole (a simple reply is one line; a bulk string is
        // a length line and the value).
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            if complete(&text) {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&reply).trim_end_matches("\r\n").to_owned())
    }
}

/// Whether `reply` holds one whole RESP reply of the kinds these tests read.
fn complete(reply: &str) -> bool {
    let Some((head, rest)) = reply.split_once("\r\n") else { return false };
    match head.as_bytes().first() {
        Some(b'$') => match head[1..].parse::<i64>() {
            Ok(len) if len >= 0 => rest.len() >= len as usize + 2,
            _ => true,
        },
        // Arrays are not read whole here; nothing in the tests needs them.
        _ => true,
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}
