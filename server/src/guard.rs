//! What a browser may be made to do: the checks every request passes before any route
//! sees it, and the headers every answer carries.
//!
//! Stalecast acts on the cloud with the service account's rights, so a web page the user
//! happens to visit must not be able to drive it through the user's browser:
//!
//! - **`Host`** must name this server: the listen address, `localhost`, `127.0.0.1`,
//!   `[::1]`, or a name given with `--allowed-host`. A page on `evil.example` whose name
//!   resolves to 127.0.0.1 (DNS rebinding) sends `Host: evil.example` and is refused. An
//!   HTTP/1.1 request without exactly one `Host` is malformed (400).
//! - **`Origin`**, when a browser sends one, must be this server's own (same scheme-less
//!   authority as `Host`) or one named with `--cors-origin`; anything else, `null`
//!   included, is refused (403). No CORS headers are sent unless `--cors-origin` is set.
//! - Mutations take `application/json` only (checked by the tRPC endpoint, 415): the
//!   content types an HTML form can send without CORS never reach a procedure.
//! - Every answer says `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//!   no-referrer`, and carries a Content-Security-Policy: pages one under which the
//!   dashboard and the API explorer work but nothing else loads, and no other site may
//!   frame them; JSON answers the API's own, which lets nothing load at all (as OWASP
//!   advises for APIs) and is a fifth of the size: it goes out with every refetch.
//!
//! Refusals use tRPC's error envelope, like every other error.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::rpc::{ErrorCode, RpcError};

/// The dashboard and Swagger UI load only their own scripts, styles, images and fonts
/// (Swagger UI sets inline styles, and its icons are `data:` images), talk only to this
/// server, and may be framed by nobody.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; \
     form-action 'self'; frame-ancestors 'none'";

/// What a JSON answer may load, should a browser ever render one as a page: nothing.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Which hosts and origins may reach the server.
#[derive(Clone, Debug)]
pub struct Guard {
    /// Host names, lower case, without port or brackets.
    hosts: Vec<String>,
    /// Origins other sites may call from (`https://app.example.com`), lower case.
    cors_origins: Vec<String>,
}

impl Guard {
    /// The defaults (`listen`, `localhost`, `127.0.0.1`, `::1`) plus `extra_hosts`, and the
    /// origins allowed cross-site.
    pub fn new(listen: std::net::IpAddr, extra_hosts: &[String], cors_origins: &[String]) -> Guard {
        let mut hosts: Vec<String> = vec![listen.to_string(), "localhost".into(), "127.0.0.1".into(), "::1".into()];
        hosts.extend(extra_hosts.iter().map(|h| bare_host(h).to_ascii_lowercase()));
        hosts.dedup();
        let cors_origins = cors_origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect();
        Guard { hosts, cors_origins }
    }

    fn allows_host(&self, authority: &str) -> bool {
        let host = bare_host(authority).to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// Whether a browser's `Origin` may call: the page came from this very authority, or
    /// from an origin named for CORS.
    fn allows_origin(&self, origin: &str, authority: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|rest| rest == authority.to_ascii_lowercase());
        same || self.cors_origins.contains(&origin)
    }
}

/// `host` from `host`, `host:port`, `[v6]` or `[v6]:port`.
fn bare_host(authority: &str) -> &str {
    let authority = authority.trim();
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The authority the request was sent to: its one `Host` header, or the URI's authority
/// (HTTP/2). `Err` when an HTTP/1.1 request has none or several.
fn authority(request: &Request) -> Result<Option<String>, RpcError> {
    let hosts: Vec<&HeaderValue> = request.headers().get_all(header::HOST).iter().collect();
    match hosts.as_slice() {
        [one] => match one.to_str() {
            Ok(host) if !host.trim().is_empty() => Ok(Some(host.trim().to_owned())),
            _ => Err(RpcError::bad_request("the Host header is empty or not text")),
        },
        [] => match request.uri().authority() {
            Some(authority) => Ok(Some(authority.as_str().to_owned())),
            None if request.version() == Version::HTTP_11 => {
                Err(RpcError::bad_request("an HTTP/1.1 request needs a Host header"))
            }
            // HTTP/1.0 may omit it; no browser does.
            None => Ok(None),
        },
        _ => Err(RpcError::bad_request("a request may carry only one Host header")),
    }
}

/// The middleware: refuses what the module doc says, then adds the security headers.
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if let Err(refusal) = admit(&guard, &request) {
        let mut response = refusal.into_response();
        secure(response.headers_mut());
        return response;
    }
    let mut response = next.run(request).await;
    secure(response.headers_mut());
    response
}

fn admit(guard: &Guard, request: &Request) -> Result<(), RpcError> {
    let authority = authority(request)?;
    if let Some(authority) = &authority
        && !guard.allows_host(authority)
    {
        return Err(RpcError::new(
            ErrorCode::Forbidden,
            "this server does not answer to that host name (start it with --allowed-host to add one)",
        ));
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if !guard.allows_origin(origin, authority.as_deref().unwrap_or_default()) {
            return Err(RpcError::new(ErrorCode::Forbidden, "cross-origin requests are refused"));
        }
    }
    Ok(())
}

fn secure(headers: &mut HeaderMap) {
    let json = headers.get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    let policy = if json { API_CONTENT_SECURITY_POLICY } else { CONTENT_SECURITY_POLICY };
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new("127.0.0.1".parse().expect("ip"), &["stalecast.example.com".into()], &["https://app.example".into()])
    }

    #[test]
    fn hosts_are_compared_without_port_or_case() {
        let guard = guard();
        for ok in ["localhost:3000", "127.0.0.1", "[::1]:3000", "Stalecast.Example.com:443"] {
            assert!(guard.allows_host(ok), "{ok}");
        }
        for refused in ["evil.example", "evil.example:3000", "localhost.evil.example", "[::2]"] {
            assert!(!guard.allows_host(refused), "{refused}");
        }
    }

    #[test]
    fn origins_are_this_server_or_named() {
        let guard = guard();
        assert!(guard.allows_origin("http://localhost:3000", "localhost:3000"));
        assert!(guard.allows_origin("https://app.example", "localhost:3000"));
        assert!(!guard.allows_origin("http://localhost:3001", "localhost:3000"));
        assert!(!guard.allows_origin("null", "localhost:3000"));
        assert!(!guard.allows_origin("https://evil.example", "localhost:3000"));
    }
}
