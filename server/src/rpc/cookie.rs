//! The session cookie: the only thing a browser holds of its sign-in.
//!
//! `auth.login` sets it, every request (the event stream's included: browsers send
//! cookies with an `EventSource` request to the same origin, which cannot carry an
//! `Authorization` header) sends it back, `auth.logout` clears it. It holds the session's
//! opaque id and nothing else, and is
//!
//! - `HttpOnly`: no script of the page can read it, so an injected one cannot steal it;
//! - `SameSite=Lax`: other sites' pages do not send it with their requests (their
//!   top-level links do, which only ever `GET` a page, never a mutation);
//! - `Path=/`, with no `Domain`: this host only;
//! - `Secure`, named with the `__Host-` prefix, whenever pages are served over HTTPS
//!   (`--tls-cert`, or `--secure-cookie` behind a proxy that terminates TLS): the browser
//!   then sends it over HTTPS only and refuses any copy set by a sibling domain.
//!
//! It carries no `Max-Age`: it lives as long as the browser session, and the server ends
//! the session itself ([`crate::auth`]).

use axum::http::{HeaderMap, HeaderValue, header};

/// The cookie's name over plain HTTP.
pub const NAME: &str = "stalecast_session";
/// Its name over HTTPS (browsers insist on `Secure`, `Path=/` and no `Domain` for it).
pub const SECURE_NAME: &str = "__Host-stalecast_session";

/// How the cookie is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cookies {
    /// Pages are served over HTTPS: `Secure` and the `__Host-` name.
    pub secure: bool,
}

/// What an answer does to the cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionCookie {
    /// Holds this session id from now on.
    Set(String),
    /// Forget it.
    Clear,
}

impl Cookies {
    pub fn name(&self) -> &'static str {
        if self.secure { SECURE_NAME } else { NAME }
    }

    /// The session id the request's cookies name, if any (only a value that could be an
    /// id: anything else is no session at all).
    pub fn session_id<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        self.value(headers).filter(|value| crate::auth::plausible_id(value))
    }

    /// Whether the request carries the session cookie at all (even a stale one).
    pub fn present(&self, headers: &HeaderMap) -> bool {
        self.value(headers).is_some()
    }

    /// The value of the first session cookie the request's `Cookie` headers carry.
    fn value<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let name = self.name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.trim())
    }

    /// The `Set-Cookie` value for `what`.
    pub fn header(&self, what: &SessionCookie) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let value = match what {
            SessionCookie::Set(id) => format!("{}={id}; HttpOnly; SameSite=Lax; Path=/{secure}", self.name()),
            SessionCookie::Clear => {
                format!("{}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0{secure}", self.name())
            }
        };
        // Ids are URL-safe base64 and the rest is literal: always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde";

    #[test]
    fn the_cookie_is_http_only_lax_and_secure_with_its_prefix_over_https() {
        let plain = Cookies { secure: false }.header(&SessionCookie::Set(ID.into()));
        assert_eq!(plain, format!("stalecast_session={ID}; HttpOnly; SameSite=Lax; Path=/").as_str());
        let secure = Cookies { secure: true }.header(&SessionCookie::Set(ID.into()));
        assert_eq!(secure, format!("__Host-stalecast_session={ID}; HttpOnly; SameSite=Lax; Path=/; Secure").as_str());
        let cleared = Cookies { secure: false }.header(&SessionCookie::Clear);
        assert!(cleared.to_str().expect("ascii").contains("Max-Age=0"));
    }

    #[test]
    fn the_session_id_is_read_from_any_cookie_header_and_only_when_plausible() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("theme=dark; other=1"));
        headers.append(header::COOKIE, HeaderValue::from_str(&format!("stalecast_session={ID}")).expect("value"));
        let cookies = Cookies { secure: false };
        assert_eq!(cookies.session_id(&headers), Some(ID));
        assert_eq!(Cookies { secure: true }.session_id(&headers), None, "over HTTPS only the __Host- name counts");
        let mut forged = HeaderMap::new();
        forged.append(header::COOKIE, HeaderValue::from_static("stalecast_session=../../etc"));
        assert_eq!(cookies.session_id(&forged), None);
        assert!(cookies.present(&forged));
    }
}
