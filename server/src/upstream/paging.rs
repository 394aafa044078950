//! Reading a listing page by page, to its end.
//!
//! The services cut long listings into pages and say where the next one starts: Nova,
//! Cinder and Neutron in `"<key>_links": [{"rel": "next", "href": …}]`, Glance in
//! `"next": "/v2/images?marker=…"` (a path, not a URL). A client that reads only the
//! first page misses records without a word (Glance's default page holds 25 images).
//!
//! A page is read straight into its records (no intermediate JSON tree): the decoder
//! takes the records under the listing's key and the next link, and skips the rest.
//! The next request keeps the first one's URL and takes its query from the link: the
//! services build their links from their own idea of their address, which behind a
//! proxy may be another scheme or host than the one that works.

use std::fmt;
use std::marker::PhantomData;

use reqwest::Url;
use serde::Deserialize;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::catalog::Link;

/// The most pages one listing may take. Past it the listing fails, saying so, rather
/// than loop forever on a service whose links go round (or answer partially).
pub const MAX_PAGES: usize = 1000;

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page is, as the service wrote it (a URL or a path with a query).
    pub next: Option<String>,
}

/// Decodes a page whose records are under `key` (`"servers"`).
pub fn decode_page<T: DeserializeOwned>(bytes: &[u8], key: &str) -> Result<Page<T>, serde_json::Error> {
    decode_borrowed(bytes, key)
}

/// A page whose records are left as their JSON text, each a slice of `bytes`: finding
/// where each record ends reads the page once, without decoding it (a quarter of the
/// time decoding takes).
pub fn decode_raw_page<'b>(bytes: &'b [u8], key: &str) -> Result<Page<&'b RawValue>, serde_json::Error> {
    decode_borrowed(bytes, key)
}

fn decode_borrowed<'b, T: Deserialize<'b>>(bytes: &'b [u8], key: &str) -> Result<Page<T>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let page = PageSeed { key, links: format!("{key}_links"), _records: PhantomData }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(page)
}

struct PageSeed<'k, T> {
    key: &'k str,
    links: String,
    _records: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for PageSeed<'_, T> {
    type Value = Page<T>;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Page<T>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for PageSeed<'_, T> {
    type Value = Page<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object with \"{}\"", self.key)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page<T>, A::Error> {
        let mut items = None;
        let mut next = None;
        while let Some(name) = map.next_key::<String>()? {
            if name == self.key {
                items = Some(map.next_value::<Vec<T>>()?);
            } else if name == self.links {
                let links: Option<Vec<Link>> = map.next_value()?;
                if let Some(link) = links.unwrap_or_default().into_iter().find(|l| l.rel == "next") {
                    next = Some(link.href);
                }
            } else if name == "next" {
                // Glance's.
                if let Some(href) = map.next_value::<Option<String>>()? {
                    next = Some(href);
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let items = items.ok_or_else(|| serde::de::Error::missing_field("records"))?;
        Ok(Page { items, next: next.filter(|n| !n.is_empty()) })
    }
}

/// The URL of the next page: `first` (the listing's first request) with the query of
/// `next` merged over its own (a parameter in both takes `next`'s value). `None` when
/// `next` has no query, which no service sends (it would ask for the first page again).
pub fn next_url(first: &Url, next: &str) -> Option<Url> {
    let query = next.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or(q))?;
    let given: Vec<(String, String)> = url_pairs(query);
    if given.is_empty() {
        return None;
    }
    let mut url = first.clone();
    let kept: Vec<(String, String)> = first
        .query_pairs()
        .filter(|(k, _)| !given.iter().any(|(g, _)| g == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(kept.iter().chain(given.iter()));
    Some(url)
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    let mut parsed = Url::parse("http://x/").expect("a constant URL parses");
    parsed.set_query(Some(query));
    parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The marker a next link carries, to notice a service that sends the same page again.
pub fn marker(url: &Url) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == "marker").map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Item {
        id: String,
    }

    #[test]
    fn pages_read_their_records_and_next_link_in_every_style() {
        let nova = br#"{"servers": [{"id": "a", "name": "x"}], "servers_links": [{"rel": "next", "href": "http://n/v2.1/servers/detail?all_tenants=1&marker=a"}]}"#;
        let page: Page<Item> = decode_page(nova, "servers").expect("nova");
        assert_eq!(page.items, vec![Item { id: "a".into() }]);
        assert_eq!(page.next.as_deref(), Some("http://n/v2.1/servers/detail?all_tenants=1&marker=a"));
        let glance = br#"{"images": [{"id": "i"}], "first": "/v2/images", "schema": "/v2/schemas/images", "next": "/v2/images?marker=i"}"#;
        let page: Page<Item> = decode_page(glance, "images").expect("glance");
        assert_eq!(page.next.as_deref(), Some("/v2/images?marker=i"));
        let last = br#"{"volumes": [], "volumes_links": null}"#;
        assert!(decode_page::<Item>(last, "volumes").expect("last").next.is_none());
        let previous_only = br#"{"networks": [], "networks_links": [{"rel": "previous", "href": "http://x/?marker=z&page_reverse=True"}]}"#;
        assert!(decode_page::<Item>(previous_only, "networks").expect("previous").next.is_none());
        assert!(decode_page::<Item>(br#"{"other": []}"#, "volumes").is_err(), "the records must be there");
        assert!(decode_page::<Item>(b"<html>", "volumes").is_err());
    }

    #[test]
    fn the_next_url_keeps_the_working_address_and_takes_the_query() {
        let first = Url::parse("https://cloud.example/compute/v2.1/servers/detail?all_tenants=1").expect("url");
        let next = next_url(&first, "http://10.0.0.5:8774/v2.1/servers/detail?all_tenants=1&marker=abc&limit=1000")
            .expect("next");
        assert_eq!(
            next.as_str(),
            "https://cloud.example/compute/v2.1/servers/detail?all_tenants=1&marker=abc&limit=1000"
        );
        assert_eq!(marker(&next).as_deref(), Some("abc"));
        let first = Url::parse("http://g:9292/v2/images").expect("url");
        let next = next_url(&first, "/v2/images?marker=i%2Fj").expect("glance");
        assert_eq!(next.as_str(), "http://g:9292/v2/images?marker=i%2Fj");
        assert_eq!(marker(&next).as_deref(), Some("i/j"));
        assert!(next_url(&first, "/v2/images").is_none());
    }
}
