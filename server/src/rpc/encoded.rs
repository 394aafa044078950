//! Query answers made cheap to send again: the success envelope, its `ETag`, and its
//! gzip and brotli forms, each computed once per value rather than once per request.
//!
//! A list (whole, or one project's) and a `changes` answer are encoded once per version
//! of their collection ([`Answers`]), off the async workers, so when thousands of tabs
//! refetch the same large list after one notification, the server serializes and
//! compresses it once and then only copies references. A client that
//! already holds the value (`If-None-Match` with the current `ETag`) gets
//! `304 Not Modified` and no body at all.
//!
//! A shared answer is compressed once, or not at all: never per request. When the
//! router's compression layer compressed each `changes` answer of a few hundred bytes for
//! each of 2,000 clients, brotli's per-stream setup (allocating and clearing its tables)
//! was the largest item in the server's profile of the delta storm. Below
//! [`MIN_COMPRESS`] a shared answer goes out as it is. Answers computed per request (one
//! item, a mutation's result) still get an `ETag` and `304`, and are compressed on the way
//! out by the router's compression layer only when they are large enough to gain from it.

use std::collections::HashMap;
use std::hash::Hasher;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use tokio::sync::OnceCell;

use super::RpcError;
use crate::domain::changes::{Changes, Delta, DeltaKey};
use crate::domain::page::{Page, PageKey, Paged};
use crate::domain::{Listing, SightKey};
use crate::updates::UpdateType;
use crate::upstream::store::Fetch;

/// Shared answers smaller than this are sent as they are: compressed, a `changes` answer
/// of a few hundred bytes saves a few hundred bytes next to a response head of some 200,
/// and costs each of the 2,000 clients that read it a decoder's setup.
pub const MIN_COMPRESS: usize = 1024;

/// tRPC's success envelope, `{"result":{"data":<json>}}`, around a procedure's JSON.
const PREFIX: &[u8] = br#"{"result":{"data":"#;
const SUFFIX: &[u8] = b"}}";

/// `{"result":{"data":<json>}}`: tRPC's success envelope around a procedure's JSON.
pub fn envelope(json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX.len() + json.len() + SUFFIX.len());
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(json);
    out.extend_from_slice(SUFFIX);
    out.freeze()
}

/// A strong entity tag for `bytes`: a 64-bit hash of the content, so an unchanged value
/// keeps its tag across refetches from upstream (and across server restarts).
pub fn etag(bytes: &[u8]) -> HeaderValue {
    // `DefaultHasher::new()` always starts from the same keys: equal bytes, equal tag.
    // Fast enough for 10 MB once per change.
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(bytes);
    let tag = format!("\"{:016x}-{:x}\"", hasher.finish(), bytes.len());
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// Whether the request's `If-None-Match` names `etag` (or `*`); weak tags compare by
/// their opaque part, as RFC 9110 prescribes for `If-None-Match`.
pub fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let wanted = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == wanted
        },
    )
}

/// A content coding this server sends pre-computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
    Identity,
}

/// The best coding the request's `Accept-Encoding` allows: brotli, then gzip, else none.
/// Quality values are honoured as far as `q=0` meaning "not this one".
pub fn preferred(headers: &HeaderMap) -> Coding {
    let (mut br, mut gzip) = (false, false);
    let (mut br_refused, mut gzip_refused) = (false, false);
    let mut star = false;
    for item in
        headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        match name.as_str() {
            "br" => (br, br_refused) = (!refused, refused),
            "gzip" | "x-gzip" => (gzip, gzip_refused) = (!refused, refused),
            "*" => star = !refused,
            _ => {}
        }
    }
    if br || (star && !br_refused) {
        Coding::Brotli
    } else if gzip || (star && !gzip_refused) {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

type Compressor = fn(&[u8]) -> std::io::Result<Vec<u8>>;

/// One query answer, ready to be sent any number of times.
#[derive(Debug)]
pub struct Encoded {
    /// The success envelope.
    envelope: Bytes,
    etag: HeaderValue,
    gzip: OnceCell<Bytes>,
    brotli: OnceCell<Bytes>,
}

impl Encoded {
    /// Serializes `value` straight into the envelope (no separate copy of its JSON) and
    /// tags it.
    pub fn of<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<Arc<Self>> {
        let mut out = PREFIX.to_vec();
        serde_json::to_writer(&mut out, value)?;
        out.extend_from_slice(SUFFIX);
        let envelope = Bytes::from(out);
        let etag = etag(&envelope);
        Ok(Arc::new(Encoded { envelope, etag, gzip: OnceCell::new(), brotli: OnceCell::new() }))
    }

    /// The procedure's JSON alone (for batches), without copying.
    pub fn json(&self) -> Bytes {
        self.envelope.slice(PREFIX.len()..self.envelope.len() - SUFFIX.len())
    }

    pub fn envelope(&self) -> Bytes {
        self.envelope.clone()
    }

    /// The envelope in `coding`, compressed on first demand (off the async threads; later
    /// requests wait for that one compression rather than starting their own).
    /// Answers the bytes and the coding they are in (the envelope as is when it is too
    /// small to compress, or should compression fail).
    pub async fn body(&self, coding: Coding) -> (Bytes, Coding) {
        if self.envelope.len() < MIN_COMPRESS {
            return (self.envelope.clone(), Coding::Identity);
        }
        let (cell, compress): (_, Compressor) = match coding {
            Coding::Identity => return (self.envelope.clone(), Coding::Identity),
            Coding::Gzip => (&self.gzip, gzip),
            Coding::Brotli => (&self.brotli, brotli),
        };
        let envelope = self.envelope.clone();
        let compressed = cell
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || compress(&envelope).map(Bytes::from))
                    .await
                    .map_err(std::io::Error::other)?
            })
            .await;
        match compressed {
            Ok(bytes) => (bytes.clone(), coding),
            Err(error) => {
                tracing::warn!(%error, ?coding, "could not compress an answer; sending it uncompressed");
                (self.envelope.clone(), Coding::Identity)
            }
        }
    }

    /// The `200` answer in the best coding the request accepts, or `304` when the client
    /// already holds this value.
    pub async fn respond(&self, request: &HeaderMap) -> Response {
        if not_modified(request, &self.etag) {
            return not_modified_response(&self.etag);
        }
        let (body, coding) = self.body(preferred(request)).await;
        let mut response = if body.len() > SLICE {
            (StatusCode::OK, axum::body::Body::new(Sliced { rest: body, turn: false })).into_response()
        } else {
            (StatusCode::OK, body).into_response()
        };
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::ETAG, self.etag.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        match coding {
            Coding::Brotli => h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br")),
            Coding::Gzip => h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            // Too small to gain from compression, or the client accepts no coding (or
            // compression failed): it goes out as it is (the router's compression layer
            // leaves answers of this size alone).
            Coding::Identity => None,
        };
        response
    }
}

/// How much of a large answer one turn of its connection's task writes.
const SLICE: usize = 32 * 1024;

/// A large answer, handed to the connection a slice at a time with a turn for the other
/// tasks between slices. Given whole, a 3 MB list went to the socket in writes of
/// megabytes per turn of the connection's task (as much as the socket's buffer took), and
/// with 2,000 clients refetching it every task behind those turns waited, mutations too:
/// in the full-refetch storm (2,000 clients, 36,000 volumes, one change a second) a
/// mutation took p50 468 ms, p99 1,622 ms. The bytes are the same shared buffer either
/// way (slices of a `Bytes` copy nothing). With 32 KiB slices (and brotli quality 4) the
/// same storm served 21,435 refetches in 30 s with mutations p50 44 ms, p99 329 ms;
/// 64 KiB slices served no more refetches (21,227), and 128 KiB ones left p99 at 849 ms.
/// Smaller slices cost throughput without helping the tail: back to back on a quiet
/// machine, 32 KiB served 22,697 refetches with mutations p99 240 ms, 16 KiB 15,880 and
/// 260 ms, 8 KiB 12,907 and 213 ms.
struct Sliced {
    rest: Bytes,
    /// The next poll yields instead of handing out a slice.
    turn: bool,
}

impl hyper::body::Body for Sliced {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        if self.turn {
            // Back of the queue: the connection writes what it holds and lets others run.
            self.turn = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.turn = true;
        let n = self.rest.len().min(SLICE);
        let slice = self.rest.split_to(n);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// The encoded answers of the current version of each collection, one per distinct
/// question and set of records it may hold (a room, or one project): its lists (all a
/// room sees, or one project's), its `changes` and its `page` answers. A question
/// asked again at the same version waits for the one encoding already under way, or
/// takes its result.
///
/// Every answer is computed and serialized on tokio's blocking pool, never on an async
/// worker: a whole list of 36,000 volumes is 8.5 MB of JSON and tens of milliseconds to
/// write out, and the async workers are what every mutation, small query and stream
/// needs meanwhile. Nothing here holds a lock while encoding: the maps below are held
/// only to find or insert a cell.
#[derive(Debug, Default)]
pub struct Answers {
    lists: [Mutex<Kept<SightKey, LIST_VERSIONS>>; UpdateType::ALL.len()],
    deltas: [Mutex<Kept<DeltaKey, VERSIONS>>; UpdateType::ALL.len()],
    pages: [Mutex<Kept<PageKey, VERSIONS>>; UpdateType::ALL.len()],
}

/// Answers kept per type and kind of question, per version, and at most this many per
/// version (a question per project and per room for lists; for `changes`, a client asks
/// with the seq it stands at, so up-to-date clients of one room share one). Beyond it, an
/// answer is encoded for its request alone.
const MAX_KEPT: usize = 256;

/// `page` answers kept per type and version: at most this many. Most clients hold the
/// first page of the default question; the rest are later pages and searches. A page is
/// 15 KB at the default limit, 150 KB at the largest, so this keeps 2 MB typically and
/// 20 MB (plus compressed copies) at worst per type and version; a question beyond it is
/// answered for its request alone.
const MAX_PAGES: usize = 128;

/// Versions whose `changes` and `page` answers are kept: the newest and the three before.
/// A request that read the collection just before it changed again still shares its
/// answer. When only the newest was kept, every such request encoded an answer of its
/// own, so at 10 changes a second, the slower the answers came, the more requests held
/// an older version and the more each cost: in the delta storm (2,000 clients) the
/// answers' p50 grew to 350 ms.
const VERSIONS: usize = 4;

/// Versions whose whole lists are kept: a list is megabytes (15 MB of JSON for 36,000
/// volumes, plus compressed copies), so the newest and one before.
const LIST_VERSIONS: usize = 2;

type Cell = Arc<OnceCell<Arc<Encoded>>>;

/// One type's answers to one kind of question, for the `V` newest versions asked about,
/// oldest first.
#[derive(Debug)]
struct Kept<K, const V: usize> {
    versions: std::collections::VecDeque<(u64, HashMap<K, Cell>)>,
}

impl<K, const V: usize> Default for Kept<K, V> {
    fn default() -> Self {
        Kept { versions: std::collections::VecDeque::with_capacity(V) }
    }
}

impl<K: std::hash::Hash + Eq, const V: usize> Kept<K, V> {
    /// The cell for `key` at `version`; a version newer than every kept one makes the
    /// oldest be forgotten. A request holding a version older than every kept one gets a
    /// cell of its own.
    fn cell(&mut self, version: u64, key: K, max: usize) -> Cell {
        if self.versions.back().is_none_or(|(newest, _)| version > *newest) {
            if self.versions.len() == V {
                self.versions.pop_front();
            }
            self.versions.push_back((version, HashMap::new()));
        }
        let Some((_, answers)) = self.versions.iter_mut().find(|(v, _)| *v == version) else {
            return Cell::default();
        };
        if let Some(cell) = answers.get(&key) {
            return cell.clone();
        }
        let cell = Cell::default();
        if answers.len() < max {
            answers.insert(key, cell.clone());
        }
        cell
    }
}

/// Runs `encode` on the blocking pool and waits for it.
async fn off_thread(
    encode: impl FnOnce() -> serde_json::Result<Arc<Encoded>> + Send + 'static,
) -> Result<Arc<Encoded>, RpcError> {
    tokio::task::spawn_blocking(encode).await.map_err(RpcError::internal)?.map_err(RpcError::internal)
}

impl Answers {
    /// The answer to a list query: what a room sees of the stored collection, or one
    /// project's part.
    pub async fn list<R: Fetch>(&self, listing: Listing<R>) -> Result<Arc<Encoded>, RpcError> {
        let cell = {
            let mut kept = self.lists[R::TYPE as usize].lock().unwrap_or_else(|p| p.into_inner());
            kept.cell(listing.snapshot.version, listing.sight.key(), MAX_KEPT)
        };
        let encoded =
            cell.get_or_try_init(|| off_thread(move || Encoded::of(&listing.items().collect::<Vec<_>>()))).await;
        encoded.cloned()
    }

    /// The answer to a `changes` query, computed once per distinct question about the
    /// current version.
    pub async fn delta<R: Changes>(&self, delta: Delta<R>) -> Result<Arc<Encoded>, RpcError> {
        let key = delta.key();
        let cell = {
            let mut kept = self.deltas[R::TYPE as usize].lock().unwrap_or_else(|p| p.into_inner());
            kept.cell(key.version, key, MAX_KEPT)
        };
        let encoded = cell.get_or_try_init(|| off_thread(move || Encoded::of(&delta.compute()))).await;
        encoded.cloned()
    }

    /// The answer to a `page` query, computed and encoded once per distinct question
    /// about the current version (filtering and sorting 36,000 records takes
    /// milliseconds: on the blocking pool, like every answer here).
    pub async fn page<R: Paged>(&self, page: Page<R>) -> Result<Arc<Encoded>, RpcError> {
        let key = page.key();
        let cell = {
            let mut kept = self.pages[R::TYPE as usize].lock().unwrap_or_else(|p| p.into_inner());
            kept.cell(key.version, key, MAX_PAGES)
        };
        let encoded = cell.get_or_try_init(|| off_thread(move || Encoded::of(&page.compute()))).await;
        encoded.cloned()
    }
}

/// `304 Not Modified` with the tag the client already has.
pub fn not_modified_response(etag: &HeaderValue) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    let h = response.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::new(6));
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn brotli(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    // Quality 4 with a 4 MB window: on the list of 36,000 seeded volumes (15.5 MB of
    // JSON) it took 246 ms and gave 3.04 MB, where quality 5 took 490 ms for 3.37 MB and
    // quality 3 136 ms for 3.29 MB (release build, one core). Every new value of a list
    // is compressed once, so at one change a second this is a quarter of a core.
    let params = brotli::enc::BrotliEncoderParams { quality: 4, lgwin: 22, ..Default::default() };
    let mut out = Vec::with_capacity(bytes.len() / 4);
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::upstream::model::Volume;
    use crate::upstream::store::Snapshot;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_str(value).expect("header"));
        }
        h
    }

    #[test]
    fn accept_encoding_picks_brotli_then_gzip_and_honours_q0() {
        let ae = header::ACCEPT_ENCODING;
        assert_eq!(preferred(&headers(&[(ae.clone(), "gzip, deflate, br, zstd")])), Coding::Brotli);
        assert_eq!(preferred(&headers(&[(ae.clone(), "gzip")])), Coding::Gzip);
        assert_eq!(preferred(&headers(&[(ae.clone(), "br;q=0, gzip;q=0.5")])), Coding::Gzip);
        assert_eq!(preferred(&headers(&[(ae.clone(), "*;q=1, br;q=0")])), Coding::Gzip);
        assert_eq!(preferred(&headers(&[(ae.clone(), "identity")])), Coding::Identity);
        assert_eq!(preferred(&HeaderMap::new()), Coding::Identity);
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = etag(b"abc");
        let inm = header::IF_NONE_MATCH;
        assert!(not_modified(&headers(&[(inm.clone(), tag.to_str().expect("ascii"))]), &tag));
        assert!(not_modified(&headers(&[(inm.clone(), &format!("\"x\", W/{}", tag.to_str().expect("ascii")))]), &tag));
        assert!(not_modified(&headers(&[(inm.clone(), "*")]), &tag));
        assert!(!not_modified(&headers(&[(inm.clone(), "\"other\"")]), &tag));
        assert!(!not_modified(&HeaderMap::new(), &tag));
        assert_eq!(etag(b"abc"), etag(b"abc"));
        assert_ne!(etag(b"abc"), etag(b"abd"));
    }

    #[tokio::test]
    async fn a_small_answer_is_sent_as_it_is() {
        let encoded = Encoded::of(&serde_json::json!([{"id": "prj-web"}])).expect("serializes");
        let (body, coding) = encoded.body(Coding::Brotli).await;
        assert_eq!(coding, Coding::Identity);
        assert_eq!(body, encoded.envelope());
    }

    #[tokio::test]
    async fn compressed_forms_decode_to_the_envelope_and_are_made_once() {
        let list = vec![serde_json::json!({"id": "vol-0001", "name": "data"}); 200];
        let encoded = Encoded::of(&list).expect("serializes");
        assert_eq!(encoded.json(), serde_json::to_vec(&list).expect("json"));
        assert_eq!(encoded.envelope(), envelope(&serde_json::to_vec(&list).expect("json")));

        let (gz, coding) = encoded.body(Coding::Gzip).await;
        assert_eq!(coding, Coding::Gzip);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut plain).expect("gunzip");
        assert_eq!(plain, encoded.envelope());
        assert!(gz.len() < encoded.envelope().len() / 4);
        // The second request gets the same bytes, not a second compression.
        assert_eq!(encoded.body(Coding::Gzip).await.0.as_ptr(), gz.as_ptr());

        let (br, _) = encoded.body(Coding::Brotli).await;
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut plain).expect("unbrotli");
        assert_eq!(plain, encoded.envelope());
    }

    fn volumes(version: u64, projects: &[&str]) -> Arc<Snapshot<Volume>> {
        let items: Vec<_> = projects
            .iter()
            .enumerate()
            .map(|(n, project)| {
                Arc::new(Volume {
                    id: format!("v-{n}"),
                    name: format!("volume {n}"),
                    project_id: (*project).into(),
                    status: "available".into(),
                    size_gb: 1,
                    attached_to: None,
                    description: String::new(),
                    created_at: String::new(),
                    metadata: Default::default(),
                    volume_type: None,
                    bootable: false,
                    updated_at: None,
                })
            })
            .collect();
        Arc::new(Snapshot {
            stamps: vec![0; items.len()],
            items,
            log: Default::default(),
            floor: 0,
            version,
            fetched_at: std::time::SystemTime::now(),
        })
    }

    #[test]
    fn answers_of_the_last_versions_are_shared_older_ones_are_not() {
        let mut kept: Kept<&str, 2> = Kept::default();
        let v1 = kept.cell(1, "q", 8);
        let v2 = kept.cell(2, "q", 8);
        assert!(!Arc::ptr_eq(&v1, &v2), "another version, another answer");
        // A request still holding version 1 shares its answer while 1 is among the last two.
        assert!(Arc::ptr_eq(&v1, &kept.cell(1, "q", 8)));
        let v3 = kept.cell(3, "q", 8);
        assert!(Arc::ptr_eq(&v2, &kept.cell(2, "q", 8)) && Arc::ptr_eq(&v3, &kept.cell(3, "q", 8)));
        assert!(!Arc::ptr_eq(&v1, &kept.cell(1, "q", 8)), "version 1 is forgotten");
        // Beyond `max` questions per version, an answer is its request's alone.
        let full = kept.cell(3, "other", 1);
        assert!(!Arc::ptr_eq(&full, &kept.cell(3, "other", 1)));
    }

    #[tokio::test]
    async fn a_list_is_encoded_once_per_version_and_project() {
        let answers = Answers::default();
        let rooms = crate::updates::Rooms::default();
        let room = rooms.room(["a", "b"]);
        let listing = |snapshot: &Arc<_>, project: Option<&str>| Listing {
            snapshot: Arc::clone(snapshot),
            sight: crate::domain::Sight::new(room.clone(), project.map(str::to_owned)),
        };
        let v1 = volumes(1, &["a", "b", "a"]);
        let whole = answers.list(listing(&v1, None)).await.expect("encodes");
        let a = answers.list(listing(&v1, Some("a"))).await.expect("encodes");
        assert!(Arc::ptr_eq(&whole, &answers.list(listing(&v1, None)).await.expect("encodes")));
        assert!(Arc::ptr_eq(&a, &answers.list(listing(&v1, Some("a"))).await.expect("encodes")));
        let ids = |encoded: &Encoded| -> Vec<String> {
            let list: Vec<serde_json::Value> = serde_json::from_slice(&encoded.json()).expect("json");
            list.iter().map(|v| v["id"].as_str().unwrap_or_default().to_owned()).collect()
        };
        assert_eq!(ids(&whole), ["v-0", "v-1", "v-2"]);
        assert_eq!(ids(&a), ["v-0", "v-2"]);
        // A new version is encoded anew; a request still holding the old one gets its own.
        let v2 = volumes(2, &["a"]);
        let newer = answers.list(listing(&v2, None)).await.expect("encodes");
        assert_eq!(ids(&newer), ["v-0"]);
        let older = answers.list(listing(&v1, None)).await.expect("encodes");
        assert_eq!(ids(&older), ids(&whole));
        assert!(Arc::ptr_eq(&newer, &answers.list(listing(&v2, None)).await.expect("encodes")));

        // Another room has its own answer, with only what it sees; one project's part is
        // shared by every room that sees the project.
        let only_b = rooms.room(["b"]);
        let other = |project: Option<&str>| Listing {
            snapshot: Arc::clone(&v1),
            sight: crate::domain::Sight::new(only_b.clone(), project.map(str::to_owned)),
        };
        let b_whole = answers.list(other(None)).await.expect("encodes");
        assert_eq!(ids(&b_whole), ["v-1"]);
        let b_part = answers.list(other(Some("b"))).await.expect("encodes");
        assert!(Arc::ptr_eq(&b_part, &answers.list(listing(&v1, Some("b"))).await.expect("encodes")));
        assert!(ids(&answers.list(other(Some("a"))).await.expect("encodes")).is_empty(), "a project it may not see");
    }

    fn many_volumes(version: u64, count: usize) -> Arc<Snapshot<Volume>> {
        let items: Vec<Arc<Volume>> = (0..count)
            .map(|n| Volume {
                id: format!("vol-{n:05}"),
                name: format!("data-{}", n % 97),
                project_id: "prj-web".into(),
                status: "available".into(),
                size_gb: 1,
                attached_to: None,
                description: String::new(),
                created_at: String::new(),
                metadata: Default::default(),
                volume_type: None,
                bootable: false,
                updated_at: None,
            })
            .map(Arc::new)
            .collect();
        Arc::new(Snapshot {
            stamps: vec![1; items.len()],
            items,
            log: Default::default(),
            floor: 1,
            version,
            fetched_at: std::time::SystemTime::now(),
        })
    }

    /// The room of the caller of [`page`]: one for the whole test, so that its answers
    /// can be shared.
    static ROOM: std::sync::LazyLock<Arc<crate::updates::Room>> =
        std::sync::LazyLock::new(|| crate::updates::Rooms::default().room(["prj-web"]));

    fn page(snapshot: &Arc<Snapshot<Volume>>, input: serde_json::Value) -> Page<Volume> {
        Page::new(snapshot.clone(), serde_json::from_value(input).expect("input"), ROOM.clone()).expect("valid")
    }

    #[tokio::test]
    async fn equal_page_questions_about_one_version_share_one_encoding() {
        let answers = Answers::default();
        let current = many_volumes(5, 36_000);
        let first = answers.page(page(&current, serde_json::json!({}))).await.expect("page");
        // The same question, however it is put: the very same bytes.
        for same in [serde_json::json!({}), serde_json::json!({"search": "", "sort": "name", "limit": 50})] {
            let again = answers.page(page(&current, same)).await.expect("page");
            assert!(Arc::ptr_eq(&first, &again));
        }
        let other = answers.page(page(&current, serde_json::json!({"sort": "-name"}))).await.expect("page");
        assert!(!Arc::ptr_eq(&first, &other));
        let data: serde_json::Value = serde_json::from_slice(&first.json()).expect("json");
        assert_eq!((data["items"].as_array().map(Vec::len), &data["total"]), (Some(50), &serde_json::json!(36_000)));

        // A newer version is answered anew; a request still holding the older one gets
        // an answer of its own, and the newer one stays kept.
        let newer = many_volumes(6, 36_000);
        let fresh = answers.page(page(&newer, serde_json::json!({}))).await.expect("page");
        assert!(!Arc::ptr_eq(&first, &fresh));
        let old = answers.page(page(&current, serde_json::json!({}))).await.expect("page");
        assert!(!Arc::ptr_eq(&old, &fresh));
        assert!(Arc::ptr_eq(&fresh, &answers.page(page(&newer, serde_json::json!({}))).await.expect("page")));
    }
}
