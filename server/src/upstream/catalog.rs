//! Finding a service's API in a Keystone token: the service catalog (which endpoint, by
//! service type, region and interface) and version discovery (which versioned root
//! under that endpoint, and for Nova which microversion).
//!
//! Deployments register endpoints in different shapes, and the client must take each as
//! it is: Nova's `http://host/compute/v2.1`, Cinder's `http://host:8776/v3/{project}`
//! (versioned), Glance's `http://host:9292` and Neutron's `http://host:9696`
//! (unversioned: their root answers a list of versions, Glance's with `300 Multiple
//! Choices`). A versioned endpoint is used as it is; an unversioned one is asked for its
//! versions once, and the newest of the wanted major version is used from then on.

use serde::Deserialize;
use serde_json::Value;

/// Which of an endpoint's URLs to use (`OS_INTERFACE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interface {
    #[default]
    Public,
    Internal,
    Admin,
}

impl Interface {
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Interface {
    type Err = String;
    /// `public`, `internal` or `admin`, with or without the `URL` suffix of Keystone v2's
    /// catalog (`publicURL`), as the `openstack` CLI takes them.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let s = s.strip_suffix("URL").unwrap_or(s);
        match s.to_ascii_lowercase().as_str() {
            "public" => Ok(Interface::Public),
            "internal" => Ok(Interface::Internal),
            "admin" => Ok(Interface::Admin),
            _ => Err(format!("unknown interface \"{s}\" (public, internal or admin)")),
        }
    }
}

/// An OpenStack service Stalecast calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Identity,
    Compute,
    Volume,
    Image,
    Network,
}

impl Service {
    /// The catalog types that name it, preferred first (Cinder is registered under
    /// several names, depending on the deployment's age).
    pub fn catalog_types(self) -> &'static [&'static str] {
        match self {
            Service::Identity => &["identity"],
            Service::Compute => &["compute"],
            Service::Volume => &["block-storage", "volumev3", "volume"],
            Service::Image => &["image"],
            Service::Network => &["network"],
        }
    }

    /// The major API version Stalecast speaks.
    pub fn major(self) -> u32 {
        match self {
            Service::Identity | Service::Volume => 3,
            Service::Compute | Service::Image | Service::Network => 2,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.catalog_types()[0])
    }
}

/// A token's service catalog.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Catalog(pub Vec<CatalogEntry>);

#[derive(Clone, Debug, Deserialize)]
pub struct CatalogEntry {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CatalogEndpoint {
    #[serde(default)]
    pub interface: String,
    #[serde(default)]
    pub region_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub url: String,
}

impl Catalog {
    /// The URL of `service`'s endpoint with `interface`, in `region` when one is given
    /// (matched against the endpoint's region id or name). Without a region, the first
    /// endpoint with the interface, as the `openstack` CLI picks it.
    pub fn endpoint(&self, service: Service, region: Option<&str>, interface: Interface) -> Result<String, String> {
        let wanted = interface.as_str();
        for kind in service.catalog_types() {
            let Some(entry) = self.0.iter().find(|e| e.kind == *kind) else { continue };
            let found = entry.endpoints.iter().find(|e| {
                let interface_ok = e.interface.trim_end_matches("URL").eq_ignore_ascii_case(wanted);
                let region_ok =
                    region.is_none_or(|r| e.region_id.as_deref() == Some(r) || e.region.as_deref() == Some(r));
                interface_ok && region_ok
            });
            if let Some(endpoint) = found {
                return Ok(endpoint.url.trim_end_matches('/').to_owned());
            }
        }
        let mut regions: Vec<&str> = self
            .0
            .iter()
            .filter(|e| service.catalog_types().contains(&e.kind.as_str()))
            .flat_map(|e| e.endpoints.iter())
            .filter_map(|e| e.region_id.as_deref().or(e.region.as_deref()))
            .collect();
        regions.sort_unstable();
        regions.dedup();
        Err(match region {
            Some(region) => format!(
                "the service catalog has no {wanted} {service} endpoint in region \"{region}\" (its regions: {})",
                if regions.is_empty() { "none".to_owned() } else { regions.join(", ") }
            ),
            None => format!("the service catalog has no {wanted} {service} endpoint"),
        })
    }
}

/// A Nova microversion (`2.47`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Microversion(pub u32, pub u32);

impl Microversion {
    pub fn parse(s: &str) -> Option<Self> {
        let (major, minor) = s.trim().split_once('.')?;
        Some(Microversion(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl std::fmt::Display for Microversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What version discovery found under an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// The versioned root, without a trailing `/` (`http://host:9292/v2`).
    pub url: String,
    /// The microversions the API takes, oldest and newest, when it has them.
    pub microversions: Option<(Microversion, Microversion)>,
}

/// Whether a catalog URL already names an API version: one of its path segments is
/// `v<major>` or `v<major>.<minor>` (`/compute/v2.1`, `/v3/{project_id}`).
pub fn versioned(url: &str, major: u32) -> bool {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, path)| path));
    path.split('/').any(|segment| version_of(segment).is_some_and(|(m, _)| m == major))
}

/// `v2.1` → `(2, 1)`, `v3` → `(3, 0)`.
fn version_of(id: &str) -> Option<(u32, u32)> {
    let rest = id.strip_prefix('v').or_else(|| id.strip_prefix('V'))?;
    let (major, minor) = rest.split_once('.').unwrap_or((rest, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// One entry of a version document.
#[derive(Debug, Deserialize)]
struct VersionEntry {
    id: String,
    #[serde(default)]
    status: String,
    /// Nova's and Cinder's newest microversion (`""` when there are none).
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    links: Vec<Link>,
}

#[derive(Debug, Deserialize)]
pub struct Link {
    #[serde(default)]
    pub rel: String,
    #[serde(default)]
    pub href: String,
}

/// Reads a version document, in any of the shapes the services answer: Keystone's
/// `{"versions": {"values": [...]}}`, the others' `{"versions": [...]}`, or one version's
/// `{"version": {...}}`; picks the newest usable entry of `major` (a deprecated one only
/// when there is nothing else). `fallback` is the URL the document was read from, used
/// when the chosen entry has no `self` link.
pub fn discover(document: &[u8], major: u32, fallback: &str) -> Result<Discovered, String> {
    let value: Value = serde_json::from_slice(document).map_err(|e| format!("not a version document ({e})"))?;
    let entries: Vec<Value> = match (&value["versions"], &value["version"]) {
        (Value::Array(list), _) => list.clone(),
        (Value::Object(map), _) => map.get("values").and_then(Value::as_array).cloned().unwrap_or_default(),
        (_, Value::Object(_)) => vec![value["version"].clone()],
        _ => return Err("not a version document (no \"versions\" or \"version\")".into()),
    };
    let mut best: Option<((bool, u32, u32), VersionEntry)> = None;
    for entry in entries {
        let Ok(entry) = serde_json::from_value::<VersionEntry>(entry) else { continue };
        let Some((m, minor)) = version_of(&entry.id) else { continue };
        if m != major {
            continue;
        }
        let usable = !entry.status.eq_ignore_ascii_case("deprecated");
        let key = (usable, m, minor);
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, entry));
        }
    }
    let Some((_, entry)) = best else {
        return Err(format!("no version {major}.x is offered"));
    };
    let url = entry
        .links
        .iter()
        .find(|l| l.rel == "self")
        .map(|l| l.href.trim_end_matches('/').to_owned())
        .filter(|href| !href.is_empty())
        .unwrap_or_else(|| fallback.trim_end_matches('/').to_owned());
    let microversions = match (entry.min_version.as_deref().and_then(Microversion::parse), entry.version.as_deref()) {
        (Some(min), Some(max)) => Microversion::parse(max).map(|max| (min, max)),
        _ => None,
    };
    Ok(Discovered { url, microversions })
}

/// The microversion to send: the newest the client wants, if the API takes it; else the
/// API's newest when it is older than that (the client reads older answers too); none
/// when the API has no microversions or its oldest is newer than what the client knows.
pub fn negotiate(wanted: Microversion, offered: Option<(Microversion, Microversion)>) -> Option<Microversion> {
    let (min, max) = offered?;
    if wanted < min {
        return None;
    }
    Some(wanted.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        serde_json::from_value(serde_json::json!([
            {"type": "image", "endpoints": [
                {"interface": "public", "region_id": "RegionTwo", "url": "http://two:9292"},
                {"interface": "internal", "region_id": "RegionOne", "url": "http://one-internal:9292"},
                {"interface": "public", "region_id": "RegionOne", "region": "RegionOne", "url": "http://one:9292/"},
            ]},
            {"type": "volumev3", "endpoints": [{"interface": "public", "region_id": "RegionOne", "url": "http://c/v3/p"}]},
        ]))
        .expect("catalog")
    }

    #[test]
    fn an_endpoint_is_chosen_by_type_region_and_interface() {
        let c = catalog();
        assert_eq!(c.endpoint(Service::Image, Some("RegionOne"), Interface::Public), Ok("http://one:9292".into()));
        assert_eq!(c.endpoint(Service::Image, Some("RegionTwo"), Interface::Public), Ok("http://two:9292".into()));
        assert_eq!(
            c.endpoint(Service::Image, Some("RegionOne"), Interface::Internal),
            Ok("http://one-internal:9292".into())
        );
        assert_eq!(c.endpoint(Service::Image, None, Interface::Public), Ok("http://two:9292".into()));
        let missing = c.endpoint(Service::Image, Some("RegionThree"), Interface::Public).expect_err("no such region");
        assert!(missing.contains("RegionThree") && missing.contains("RegionOne, RegionTwo"), "{missing}");
        // Cinder under any of its names.
        assert_eq!(c.endpoint(Service::Volume, None, Interface::Public), Ok("http://c/v3/p".into()));
        assert!(c.endpoint(Service::Compute, None, Interface::Public).is_err());
        assert_eq!("publicURL".parse::<Interface>(), Ok(Interface::Public));
        assert_eq!("Internal".parse::<Interface>(), Ok(Interface::Internal));
        assert!("private".parse::<Interface>().is_err());
    }

    #[test]
    fn a_versioned_url_is_recognised() {
        assert!(versioned("http://h/compute/v2.1", 2));
        assert!(versioned("http://h:8776/v3/0123abcd", 3));
        assert!(versioned("http://h:9696/v2.0/", 2));
        assert!(!versioned("http://h:9292", 2));
        assert!(!versioned("http://h/image", 2));
        assert!(!versioned("http://v2.example.com:9292", 2), "the host is not a path segment");
        assert!(!versioned("http://h:8774/v2.1", 3), "another major version");
    }

    #[test]
    fn the_newest_usable_version_is_discovered() {
        let glance = br#"{"versions": [
            {"id": "v2.15", "status": "CURRENT", "links": [{"rel": "self", "href": "http://g:9292/v2/"}]},
            {"id": "v2.9", "status": "SUPPORTED", "links": [{"rel": "self", "href": "http://g:9292/v2/"}]},
            {"id": "v1.1", "status": "DELETED", "links": [{"rel": "self", "href": "http://g:9292/v1/"}]}]}"#;
        assert_eq!(
            discover(glance, 2, "http://g:9292"),
            Ok(Discovered { url: "http://g:9292/v2".into(), microversions: None })
        );
        let nova = br#"{"versions": [
            {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "", "links": [{"rel": "self", "href": "http://n/compute/v2/"}]},
            {"id": "v2.1", "status": "CURRENT", "version": "2.96", "min_version": "2.1", "links": [{"rel": "self", "href": "http://n/compute/v2.1/"}]}]}"#;
        let found = discover(nova, 2, "http://n/compute").expect("nova");
        assert_eq!(found.url, "http://n/compute/v2.1");
        assert_eq!(found.microversions, Some((Microversion(2, 1), Microversion(2, 96))));
        let keystone = br#"{"versions": {"values": [{"id": "v3.14", "status": "stable", "links": [{"rel": "self", "href": "http://k:5000/v3/"}]}]}}"#;
        assert_eq!(discover(keystone, 3, "http://k:5000").expect("keystone").url, "http://k:5000/v3");
        let one = br#"{"version": {"id": "v2.1", "status": "CURRENT", "version": "2.60", "min_version": "2.1", "links": []}}"#;
        let found = discover(one, 2, "http://n/v2.1/").expect("one version");
        assert_eq!(
            (found.url.as_str(), found.microversions.map(|m| m.1)),
            ("http://n/v2.1", Some(Microversion(2, 60)))
        );
        assert!(discover(b"<html>", 2, "x").is_err());
        assert!(discover(br#"{"versions": []}"#, 2, "x").expect_err("none").contains("no version 2.x"));
    }

    #[test]
    fn a_microversion_is_negotiated() {
        let range = |a, b| Some((Microversion(2, a), Microversion(2, b)));
        assert_eq!(negotiate(Microversion(2, 47), range(1, 96)), Some(Microversion(2, 47)));
        assert_eq!(negotiate(Microversion(2, 47), range(1, 38)), Some(Microversion(2, 38)));
        assert_eq!(negotiate(Microversion(2, 47), range(60, 96)), None);
        assert_eq!(negotiate(Microversion(2, 47), None), None);
        assert!(Microversion(2, 9) < Microversion(2, 10));
        assert_eq!(Microversion::parse("2.47"), Some(Microversion(2, 47)));
    }
}
