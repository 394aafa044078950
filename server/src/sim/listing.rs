//! How the simulated services answer a listing, as the real ones do: the query's
//! filters (the caller's, never more than the caller may see), pages of the real
//! services' default sizes (Nova and Cinder 1,000, Glance 25, Neutron all unless asked)
//! with `limit` and `marker`, and the next link in each service's style
//! (`"servers_links": [{"rel": "next", …}]`, Glance's `"next": "/v2/images?…"`).
//!
//! The page is selected and serialized on the blocking pool, under the world's lock,
//! without copying the records. The simulator shares its process, and so its two async
//! workers, with Stalecast: when it cloned and serialized a listing of 36,000 seeded
//! volumes (16 MB) on a worker, each poll stalled the requests queued behind it (a 10 KB
//! page query by 0.6–4.3 s, release build). Here a listing holds the lock for as long
//! as serializing one page takes, which only the simulator's own handlers wait on.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Sim;
use super::records::Records;
use super::world::World;

/// A query string's parameters, in order (a parameter may repeat).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A boolean parameter as OpenStack reads them: `1`, `true`, `yes`, `on` (any case)
    /// and a bare `all_tenants` are true; `None` when absent.
    pub fn flag(&self, key: &str) -> Option<bool> {
        let value = self.get(key)?.to_ascii_lowercase();
        Some(matches!(value.as_str(), "" | "1" | "true" | "yes" | "on" | "y" | "t"))
    }

    /// The query string again, with `marker` (and `limit`, when given) replaced.
    fn with_marker(&self, marker: &str, limit: Option<usize>) -> String {
        let mut pairs: Vec<(String, String)> =
            self.0.iter().filter(|(k, _)| k != "marker" && (limit.is_none() || k != "limit")).cloned().collect();
        if let Some(limit) = limit {
            pairs.push(("limit".into(), limit.to_string()));
        }
        pairs.push(("marker".into(), marker.to_owned()));
        serde_urlencoded_pairs(&pairs)
    }
}

fn serde_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b':');
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(k, KEEP),
                percent_encoding::utf8_percent_encode(v, KEEP)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A service's page sizes and link style.
#[derive(Clone, Copy, Debug)]
pub struct Paging {
    /// Records per page when the query gives no `limit` (`None`: all of them).
    pub default_limit: Option<usize>,
    /// The most a `limit` may ask for.
    pub max_limit: usize,
    pub style: LinkStyle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkStyle {
    /// `"<key>_links": [{"rel": "next", "href": URL}]` (Nova, Cinder, Neutron).
    Links,
    /// `"next": "/v2/images?…"`, `"first"` and `"schema"` beside the records (Glance).
    Glance,
}

/// Nova (`osapi_max_limit`).
pub const NOVA: Paging = Paging { default_limit: Some(1000), max_limit: 1000, style: LinkStyle::Links };
/// Cinder (`osapi_max_limit`).
pub const CINDER: Paging = Paging { default_limit: Some(1000), max_limit: 1000, style: LinkStyle::Links };
/// Glance (`limit_param_default`, `api_limit_max`).
pub const GLANCE: Paging = Paging { default_limit: Some(25), max_limit: 1000, style: LinkStyle::Glance };
/// Neutron: everything, unless the query gives a `limit`.
pub const NEUTRON: Paging = Paging { default_limit: None, max_limit: usize::MAX, style: LinkStyle::Links };

/// Why a page cannot be given.
#[derive(Debug, PartialEq, Eq)]
pub enum PageError {
    BadLimit(String),
    UnknownMarker(String),
}

/// The records a page holds (by `limit` and `marker`), and the `limit` a next link
/// carries when there is one: the real services send one whenever the page is full, so
/// the last full page is followed by an empty one. `records` are read lazily, only as far
/// as the page's end: a page of a large listing costs the records up to its marker, not
/// the whole listing.
pub fn select<'w>(
    mut records: impl Iterator<Item = &'w Value>,
    params: &Params,
    paging: Paging,
) -> Result<(Vec<&'w Value>, Option<usize>), PageError> {
    let limit = match params.get("limit") {
        Some(text) => match text.parse::<usize>() {
            Ok(limit) => Some(limit.min(paging.max_limit)),
            Err(_) => return Err(PageError::BadLimit(text.to_owned())),
        },
        None => paging.default_limit,
    };
    if let Some(marker) = params.get("marker")
        && !records.by_ref().any(|r| r["id"] == marker)
    {
        return Err(PageError::UnknownMarker(marker.to_owned()));
    }
    let page: Vec<&Value> = match limit {
        Some(limit) => records.take(limit).collect(),
        None => records.collect(),
    };
    let full = limit.is_some_and(|l| l > 0 && page.len() == l);
    Ok((page, if full { limit } else { None }))
}

/// What a listing answers: the records of `key` (those the caller may see and the query
/// asks for, in order) as `render` writes each one (the record itself for most), its
/// page cut by `params`, and the next link under `url` (the listing's own URL, which the
/// link repeats with a marker).
pub struct Page<'w> {
    pub key: &'static str,
    pub records: Box<dyn Iterator<Item = &'w Value> + 'w>,
    pub render: Option<&'w (dyn Fn(&Value) -> Value + Sync)>,
    pub paging: Paging,
    pub url: String,
}

impl Page<'_> {
    /// The answer's body, or the page's error.
    pub fn body(self, params: &Params) -> Result<Vec<u8>, PageError> {
        let (page, next) = select(self.records, params, self.paging)?;
        // About what the page weighs, so that the buffer grows once or twice.
        let mut out = Vec::with_capacity(128 + page.len() * 512);
        out.extend_from_slice(format!("{{\"{}\":[", self.key).as_bytes());
        for (i, record) in page.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let written = match self.render {
                Some(render) => serde_json::to_writer(&mut out, &render(record)),
                None => serde_json::to_writer(&mut out, record),
            };
            if written.is_err() {
                out.extend_from_slice(b"null");
            }
        }
        out.push(b']');
        let next = next.and_then(|limit| Some((page.last()?["id"].as_str()?, limit)));
        let path = self.url.split_once("://").and_then(|(_, rest)| rest.split_once('/')).map_or("/", |(_, p)| p);
        match self.paging.style {
            LinkStyle::Links => {
                out.extend_from_slice(format!(",\"{}_links\":", self.key).as_bytes());
                let links = match next {
                    Some((marker, limit)) => {
                        let href = format!("{}?{}", self.url, params.with_marker(marker, Some(limit)));
                        serde_json::json!([{"rel": "next", "href": href}])
                    }
                    None => serde_json::json!([]),
                };
                out.extend_from_slice(links.to_string().as_bytes());
            }
            LinkStyle::Glance => {
                // Glance's links are paths from its root, without the path a proxy adds.
                let path = path.split_once("/v2/").map_or(path.to_owned(), |(_, rest)| format!("v2/{rest}"));
                let mut tail = serde_json::json!({"first": format!("/{path}"), "schema": "/v2/schemas/images"});
                if let Some((marker, _)) = next {
                    tail["next"] = serde_json::json!(format!("/{path}?{}", params.with_marker(marker, None)));
                }
                let tail = tail.to_string();
                out.push(b',');
                out.extend_from_slice(&tail.as_bytes()[1..tail.len() - 1]);
            }
        }
        out.push(b'}');
        Ok(out)
    }
}

/// Answers a listing: `build` runs under the world's lock on the blocking pool and
/// writes the answer; the `listingLatencyMs` fault delays it (the answer says how the
/// cloud was when the request arrived).
pub async fn answer<F>(sim: Arc<Sim>, build: F) -> Response
where
    F: FnOnce(&World) -> Response + Send + 'static,
{
    let reader = sim.clone();
    let answer = tokio::task::spawn_blocking(move || build(&reader.world())).await;
    let delay = sim.faults().listing_latency_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    answer.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a simulated listing failed");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })
}

/// Where a listing's records may start being read: at the page's marker, found by id,
/// rather than by reading every record before it (the 36th page of 36,000 volumes read
/// 35,000 records to find its marker). The page still finds the marker among the
/// records the caller may see, so a marker it may not see stays unknown.
pub fn from_marker(records: &Records, params: &Params) -> usize {
    params.get("marker").and_then(|marker| records.position(marker)).unwrap_or(0)
}

/// A JSON body already written.
pub fn json_bytes(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &[(&str, &str)]) -> Params {
        Params(query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn pages_follow_limit_and_marker_like_the_real_services() {
        let records: Vec<Value> = ["a", "b", "c", "d", "e"].iter().map(|id| serde_json::json!({"id": id})).collect();
        let pick = |query: &[(&str, &str)], paging: Paging| {
            select(records.iter(), &params(query), paging).map(|(page, next)| {
                (page.iter().map(|r| r["id"].as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>(), next)
            })
        };
        let two = Paging { default_limit: Some(2), max_limit: 3, style: LinkStyle::Links };
        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(pick(&[], two), Ok((ids(&["a", "b"]), Some(2))));
        assert_eq!(pick(&[("marker", "b")], two), Ok((ids(&["c", "d"]), Some(2))));
        assert_eq!(pick(&[("marker", "d")], two), Ok((ids(&["e"]), None)));
        assert_eq!(pick(&[("limit", "9")], two), Ok((ids(&["a", "b", "c"]), Some(3))), "capped at the maximum");
        assert_eq!(pick(&[], NEUTRON), Ok((ids(&["a", "b", "c", "d", "e"]), None)));
        assert_eq!(pick(&[("marker", "zz")], two), Err(PageError::UnknownMarker("zz".into())));
        assert_eq!(pick(&[("limit", "x")], two), Err(PageError::BadLimit("x".into())));
        assert_eq!(params(&[("all_tenants", "")]).flag("all_tenants"), Some(true));
        assert_eq!(params(&[("all_tenants", "0")]).flag("all_tenants"), Some(false));
    }

    #[test]
    fn a_page_links_to_the_next_in_its_services_style() {
        let records: Vec<Value> = (1..=3).map(|i| serde_json::json!({"id": format!("i{i}")})).collect();
        let two = Paging { default_limit: Some(2), max_limit: 10, style: LinkStyle::Glance };
        let page = Page {
            key: "images",
            records: Box::new(records.iter()),
            render: None,
            paging: two,
            url: "http://h/image/v2/images".into(),
        };
        let body: Value =
            serde_json::from_slice(&page.body(&params(&[("visibility", "public")])).expect("page")).expect("json");
        assert_eq!(body["images"].as_array().map(Vec::len), Some(2));
        assert_eq!(body["next"], "/v2/images?visibility=public&marker=i2");
        let links = Paging { style: LinkStyle::Links, ..two };
        let page = Page {
            key: "servers",
            records: Box::new(records.iter()),
            render: None,
            paging: links,
            url: "http://h/compute/v2.1/servers/detail".into(),
        };
        let body: Value =
            serde_json::from_slice(&page.body(&params(&[("all_tenants", "1")])).expect("page")).expect("json");
        assert_eq!(
            body["servers_links"][0]["href"],
            "http://h/compute/v2.1/servers/detail?all_tenants=1&limit=2&marker=i2"
        );
    }
}
