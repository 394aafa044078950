//! TLS termination for `serve --tls-cert/--tls-key`: the certificate and key loaded (and
//! checked) once at startup, and each accepted connection's handshake.
//!
//! Why the server terminates TLS itself: a browser opens at most six HTTP/1.1
//! connections per host, and every tab's event stream holds one of them for as long as
//! the tab is open. Over HTTP/2 all of a browser's requests and streams share one
//! connection — and browsers speak HTTP/2 only over TLS. So a deployment without a TLS
//! proxy in front can serve HTTP/2 itself; behind one it keeps plain HTTP (the proxy
//! speaks HTTP/2 to browsers).
//!
//! What this module owns:
//! - [`Tls::load`]: PEM files (the certificate chain; a PKCS#8, PKCS#1 or SEC1 key),
//!   every failure a startup error that names the file, never a panic. rustls with the
//!   aws-lc-rs provider (the one reqwest already builds), ALPN `h2` then `http/1.1`.
//! - [`handshake`]: one connection's handshake, under the deadline of a request head
//!   (`header_timeout`: a client that never finishes it holds nothing for long) and
//!   cancelled by shutdown. Until it is done the connection is waiting on its client as
//!   the budget sees it, so it may be closed to make room like an idle keep-alive one.
//!
//! What it does not: the lean event-stream path is plain-HTTP only (its writer puts
//! chunks straight onto the socket); with TLS every connection, event streams included,
//! is served by hyper — HTTP/2 or HTTP/1.1 as ALPN chose — and the stream goes through
//! the router's ordinary SSE handler. The write deadline stays: the TCP stream under
//! TLS is the same [`super::Rewind`] that times out a write a client does not read.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// The protocols offered by ALPN, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The server's certificate and key, ready to accept TLS connections.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

/// What ALPN settled on for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    H2,
    Http11,
    /// The client offered no protocol we know (or none): hyper tells from its first bytes.
    None,
}

impl Tls {
    /// Reads the certificate chain at `cert` and the private key at `key` (PEM), and
    /// checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        let chain = certificates(cert)?;
        let private = private_key(key)?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS: the crypto provider offers no safe protocol version")?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .with_context(|| {
                format!("TLS: the key {} cannot be used with the certificate {}", key.display(), cert.display())
            })?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let what = || format!("TLS certificate {}", path.display());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)
        .with_context(|| format!("reading the {}", what()))?
        .collect::<Result<_, _>>()
        .map_err(pem_error)
        .with_context(|| format!("reading the {}", what()))?;
    if chain.is_empty() {
        bail!("the {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", what());
    }
    Ok(chain)
}

fn private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_file(path) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => bail!(
            "the TLS key {} holds no PEM private key (PKCS#8, RSA or EC: -----BEGIN PRIVATE KEY-----)",
            path.display()
        ),
        Err(error) => Err(pem_error(error)).with_context(|| format!("reading the TLS key {}", path.display())),
    }
}

/// `pem::Error` as an error with a source (it has none of its own for I/O errors).
fn pem_error(error: pem::Error) -> anyhow::Error {
    match error {
        pem::Error::Io(io) => anyhow::Error::new(io),
        other => anyhow::anyhow!("not valid PEM: {other}"),
    }
}

/// Does the handshake on `io`: the TLS stream and what ALPN chose, or `None` when the
/// client failed it, closed, took longer than `deadline`, or shutdown began.
pub async fn handshake<IO>(
    tls: &Tls,
    io: IO,
    deadline: Duration,
    shutdown: &CancellationToken,
) -> Option<(TlsStream<IO>, Alpn)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let accepted = tokio::select! {
        _ = shutdown.cancelled() => return None,
        accepted = tokio::time::timeout(deadline, tls.acceptor.accept(io)) => accepted,
    };
    match accepted {
        Ok(Ok(stream)) => {
            let alpn = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Alpn::H2,
                Some(b"http/1.1") => Alpn::Http11,
                _ => Alpn::None,
            };
            Some((stream, alpn))
        }
        // Not TLS (a plain-HTTP request, say), a failed handshake or a closed socket:
        // rustls has sent its alert where it could; nothing to answer.
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?deadline, "TLS handshake not finished in time");
            None
        }
    }
}
