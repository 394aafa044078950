//! TLS for the tests and `siege fanout`: a throwaway certificate for `localhost` and
//! `127.0.0.1` (rcgen), clients that trust only it (HTTP/2 by ALPN, or HTTP/1.1 only), a
//! server started with it, and a TCP relay that counts the connections through it (to
//! tell that HTTP/2 requests shared one).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{Client, TestApp, init_tracing, test_config};

/// A self-signed certificate and its key, as PEM files in a temporary directory.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    /// Holds the files; removed on drop.
    pub dir: tempfile::TempDir,
}

/// Which protocol a client speaks over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Offers `h2` and `http/1.1` by ALPN (the server picks `h2`).
    H2,
    /// Offers `http/1.1` only.
    Http11,
}

impl TestCert {
    /// A fresh certificate for `localhost` and `127.0.0.1`.
    pub fn localhost() -> TestCert {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate a certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let cert_pem = certified.cert.pem();
        std::fs::write(&cert, &cert_pem).expect("write cert.pem");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key.pem");
        TestCert { cert, key, cert_pem, dir }
    }

    /// A client that trusts this certificate alone (no system roots), and speaks
    /// `protocol`.
    pub fn client(&self, protocol: Protocol) -> reqwest::Client {
        self.builder(protocol)().build().expect("TLS client")
    }

    /// What builds [`client`](Self::client)s.
    pub fn builder(&self, protocol: Protocol) -> impl Fn() -> reqwest::ClientBuilder + Send + Sync + 'static {
        let pem = self.cert_pem.clone();
        move || {
            let root = reqwest::Certificate::from_pem(pem.as_bytes()).expect("the test certificate parses");
            let builder = reqwest::Client::builder().tls_certs_only([root]).timeout(Duration::from_secs(60));
            match protocol {
                Protocol::H2 => builder,
                Protocol::Http11 => builder.http1_only(),
            }
        }
    }

    /// The paths as strings, for command lines and environment variables.
    pub fn paths(&self) -> (String, String) {
        (self.cert.to_string_lossy().into_owned(), self.key.to_string_lossy().into_owned())
    }
}

/// Starts the app with [`test_config`], TLS with `cert`, changed by `adjust`; its
/// [`Client`] speaks `protocol` to `https://localhost:<port>`.
pub async fn spawn_tls_app(
    cert: &TestCert,
    protocol: Protocol,
    adjust: impl FnOnce(&mut stalecast::config::ServeConfig),
) -> TestApp {
    init_tracing();
    let mut config = test_config();
    config.tls_cert = Some(cert.cert.clone());
    config.tls_key = Some(cert.key.clone());
    adjust(&mut config);
    let app = stalecast::app::start(config, CancellationToken::new()).await.expect("app starts");
    assert!(app.url.starts_with("https://"), "{}", app.url);
    let client = Client::new(&format!("https://localhost:{}", app.addr.port()), &app.upstream_url)
        .built_by(cert.builder(protocol))
        .sign_in("admin", "stalecast")
        .await;
    TestApp { client, app }
}

/// A TCP relay on loopback to `target`: counts the connections made through it and
/// those still open.
pub struct Relay {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let addr = listener.local_addr().expect("relay addr");
        let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted, still_open) = (accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                still_open.fetch_add(1, Ordering::SeqCst);
                let still_open = still_open.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    still_open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Relay { addr, accepted, open, task }
    }

    /// Connections made through the relay so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections through the relay that neither side has closed yet.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
