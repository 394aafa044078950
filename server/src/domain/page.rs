//! Paged queries: each collection's `page` companion of its `list`, answering one page of
//! the records that match a filter, in a server-side order, with how many match in all
//! and a cursor to the next page — so that a table of 36,000 volumes fetches 50 of them.
//!
//! What a page holds, so that a client can re-implement it (for an optimistic update):
//!
//! - `projectId`: the records of that project (a project is its own; an image with no
//!   owner is in none).
//! - `status`: the records whose status equals it, ignoring ASCII case (a project's or a
//!   flavor's status is `enabled` or `disabled`, a subnet's its IP version, `ipv4` or
//!   `ipv6`: neither has a status of its own). Empty: no filter.
//! - `search`: the records whose name or id contains it, ignoring case (both lowercased
//!   as Unicode lowercases them: Rust's `to_lowercase`, JavaScript's `toLowerCase`).
//!   Empty: no filter.
//! - `sort`: a key of the type's [`Paged::SORTS`], `-` before it for descending; `name`
//!   when absent. Text compares by Unicode code point (byte order of UTF-8), numbers as
//!   numbers; ties are broken by id, in the same direction, so the order is total.
//! - `limit`: 1 to [`MAX_LIMIT`] records, [`DEFAULT_LIMIT`] when absent.
//! - `cursor`: the `nextCursor` of the previous page of the same question; absent for
//!   the first.
//!
//! The cursor is a keyset, not an offset: it holds the sort value and id of the last row
//! handed out, and the next page starts after that row wherever it now is. A record
//! added or removed before it does not shift the next page into duplicates or gaps; a
//! record whose sort value changes between two pages may be seen twice or not at all
//! (the client hears of that change on the stream anyway).
//!
//! A page holds only what the caller may see (their projects' records, public images,
//! shared networks), and `total` counts only those. The answer depends only on the stored
//! version, the normalized question and which records it may hold, so the thousands of
//! clients that hold page 1 ask one question: the wire layer computes and encodes it once
//! per version ([`Page::key`]), off the async workers.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use super::types::{MAX_ID, MAX_NAME};
use super::{Ctx, Error, Sight, SightKey};
use crate::updates::Room;
use crate::upstream::model::{Flavor, Image, Network, Project, Server, Subnet, Volume, VolumeSnapshot};
use crate::upstream::store::{Fetch, Snapshot};

/// Records per page when the input names no `limit`.
pub const DEFAULT_LIMIT: u32 = 50;
/// The most records one page holds: 500 volumes are about 150 KB of JSON, a few
/// milliseconds to encode, and more than any table shows at once.
pub const MAX_LIMIT: u32 = 500;
/// `search`: a longer one cannot match a name ([`MAX_NAME`]) and no id is that long.
pub const MAX_SEARCH: usize = MAX_NAME;
/// `status`: OpenStack's are a word (`in-use`, `SHUTOFF`).
pub const MAX_STATUS: usize = 64;
/// `sort`: the longest key, with room to spare.
pub const MAX_SORT: usize = 64;
/// `cursor`: a name of 255 characters, each escaped in JSON at worst, an id, base64.
pub const MAX_CURSOR: usize = 4096;

/// Input of the `page` queries. Every field may be absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageInput {
    /// At most 64 characters: only this project's records.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "prj-web", max_length = 64)]
    pub project_id: Option<String>,
    /// At most 255 characters: records whose name or id contains it, ignoring case.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "db", max_length = 255)]
    pub search: Option<String>,
    /// At most 64 characters: records with this status, ignoring ASCII case.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "available", max_length = 64)]
    pub status: Option<String>,
    /// A sort key of the collection, `-` first for descending; `name` by default.
    /// At most 64 characters.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "-createdAt", max_length = 64)]
    pub sort: Option<String>,
    /// Records per page, 1 to 500; 50 by default.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = 50, minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The previous page's `nextCursor`, for the page after it (the same question
    /// otherwise; `limit` may differ). At most 4096 characters.
    #[serde(default)]
    #[ts(optional)]
    #[schema(max_length = 4096)]
    pub cursor: Option<String>,
}

/// A value a collection is sorted by, as read from a record (borrowed) or a cursor
/// (owned). Within one sort key every value is the same variant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortValue<'a> {
    Number(u64),
    Text(Cow<'a, str>),
}

impl<'a> SortValue<'a> {
    fn text(s: &'a str) -> Self {
        SortValue::Text(Cow::Borrowed(s))
    }

    fn into_owned(self) -> SortValue<'static> {
        match self {
            SortValue::Number(n) => SortValue::Number(n),
            SortValue::Text(s) => SortValue::Text(Cow::Owned(s.into_owned())),
        }
    }
}

/// A page's parts, whatever the type: what each answer type is made from.
#[derive(Debug)]
pub struct Parts<R> {
    pub items: Vec<R>,
    pub total: u64,
    pub next_cursor: Option<String>,
    pub seq: u64,
}

/// A collection with a `page` query: its sort keys, what its filters read from a
/// record, and its answer type on the wire.
pub trait Paged: Fetch {
    /// The sort keys, camelCase as the record's fields; the first is the default.
    const SORTS: &'static [&'static str];
    type Answer: From<Parts<Self>> + Serialize + Send + Sync + 'static;
    /// What `search` looks in, besides the id.
    fn name(&self) -> &str;
    /// What `status` compares with.
    fn status(&self) -> &str;
    /// The record's value for one of [`SORTS`](Paged::SORTS); `None` for any other key.
    fn sort_value(&self, key: &str) -> Option<SortValue<'_>>;
}

impl Paged for Project {
    const SORTS: &'static [&'static str] = &["name"];
    type Answer = ProjectPage;
    fn name(&self) -> &str {
        &self.name
    }
    fn status(&self) -> &str {
        if self.enabled { "enabled" } else { "disabled" }
    }
    fn sort_value(&self, key: &str) -> Option<SortValue<'_>> {
        match key {
            "name" => Some(SortValue::text(&self.name)),
            _ => None,
        }
    }
}

impl Paged for Server {
    const SORTS: &'static [&'static str] = &["name", "created", "status"];
    type Answer = ServerPage;
    fn name(&self) -> &str {
        &self.name
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn sort_value(&self, key: &str) -> Option<SortValue<'_>> {
        match key {
            "name" => Some(SortValue::text(&self.name)),
            "created" => Some(SortValue::text(&self.created)),
            "status" => Some(SortValue::text(&self.status)),
            _ => None,
        }
    }
}

/// Cinder's records (volumes and their snapshots) sort by the same keys.
const CINDER_SORTS: &[&str] = &["name", "createdAt", "sizeGb", "status"];

/// A Cinder record's value for one of [`CINDER_SORTS`].
fn cinder_sort<'a>(
    key: &str,
    name: &'a str,
    created_at: &'a str,
    size_gb: u32,
    status: &'a str,
) -> Option<SortValue<'a>> {
    match key {
        "name" => Some(SortValue::text(name)),
        "createdAt" => Some(SortValue::text(created_at)),
        "sizeGb" => Some(SortValue::Number(size_gb.into())),
        "status" => Some(SortValue::text(status)),
        _ => None,
    }
}

impl Paged for Volume {
    const SORTS: &'static [&'static str] = CINDER_SORTS;
    type Answer = VolumePage;
    fn name(&self) -> &str {
        &self.name
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn sort_value(&self, key: &str) -> Option<SortValue<'_>> {
        cinder_sort(key, &self.name, &self.created_at, self.size_gb, &self.status)
    }
}

impl Paged for Image {
    const SORTS: &'static [&'static str] = &["name", "sizeBytes", "status"];
    type Answer = ImagePage;
    fn name(&self) -> &str {
        &self.name
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn sort_value(&self, key: &str) -> Option<SortValue<'_>> {
        match key {
            "name" => Some(SortValue::text(&self.name)),
            "sizeBytes" => Some(SortValue::Number(self.size_bytes)),
            "status" => Some(SortValue::text(&self.status)),
            _ => None,
        }
    }
}

impl Paged for Network {
    const SORTS: &'static [&'static str] = &["name"];
    type Answer = NetworkPage;
    fn name(&self) -> &str {
        &self.name
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn sort_value(&self, key: &str) -> Option<SortValue<'_>> {
        match key {
            "name" => Some(SortValue::text(&self.name)),
            _ => None,
        }
    }
}

impl Paged for VolumeSnapshot {
    const SORTS: &'static [&'static str] = CINDER_SORTS;
    type Answer = SnapshotPage;
    fn name(&self) -> &str {
        &self.name
    }
    fn status(&self) -> &str {
        &self.status
    }
    fn sort_value(&self, key: &str) -> Option<SortValue<'_>> {
        cinder_sort(key, &self.name, &self.created_at, self.size_gb, &self.status)
    }
}

impl Paged for Subnet {
    const SORTS: &'static [&'static str] = &["name", "cidr", "createdAt"];
    type Answer = SubnetPage;
    fn name(&self) -> &str {
        &self.name
    }
    fn status(&self) -> &str {
        if self.ip_version == 6 { "ipv6" } else { "ipv4" }
    }
    fn sort_value(&self, key: &str) -> Option<SortValue<'_>> {
        match key {
            "name" => Some(SortValue::text(&self.name)),
            "cidr" => Some(SortValue::text(&self.cidr)),
            "createdAt" => Some(SortValue::text(&self.created_at)),
            _ => None,
        }
    }
}

impl Paged for Flavor {
    const SORTS: &'static [&'static str] = &["name", "vcpus", "ramMb", "diskGb"];
    type Answer = FlavorPage;
    fn name(&self) -> &str {
        &self.name
    }
    fn status(&self) -> &str {
        if self.disabled { "disabled" } else { "enabled" }
    }
    fn sort_value(&self, key: &str) -> Option<SortValue<'_>> {
        match key {
            "name" => Some(SortValue::text(&self.name)),
            "vcpus" => Some(SortValue::Number(self.vcpus.into())),
            "ramMb" => Some(SortValue::Number(self.ram_mb.into())),
            "diskGb" => Some(SortValue::Number(self.disk_gb.into())),
            _ => None,
        }
    }
}

macro_rules! page_answer {
    ($name:ident, $record:ty, $what:literal) => {
        #[doc = concat!(" One page of ", $what, ": the records, how many match in all, the cursor to the next page, and the seq the page is current to.")]
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS, ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            /// At most `limit` records, in the order asked for.
            pub items: Vec<$record>,
            /// How many records match the filters (on every page, not only this one).
            #[ts(type = "number")]
            pub total: u64,
            /// The `cursor` of the next page; `null` on the last one.
            pub next_cursor: Option<String>,
            /// The collection's seq as of this page: `changes({since: seq})` answers
            /// what changed after it.
            #[ts(type = "number")]
            pub seq: u64,
        }

        impl From<Parts<$record>> for $name {
            fn from(p: Parts<$record>) -> Self {
                $name { items: p.items, total: p.total, next_cursor: p.next_cursor, seq: p.seq }
            }
        }
    };
}

page_answer!(ProjectPage, Project, "the projects");
page_answer!(ServerPage, Server, "the servers");
page_answer!(VolumePage, Volume, "the volumes");
page_answer!(ImagePage, Image, "the images");
page_answer!(NetworkPage, Network, "the networks");
page_answer!(SnapshotPage, VolumeSnapshot, "the volume snapshots");
page_answer!(SubnetPage, Subnet, "the subnets");
page_answer!(FlavorPage, Flavor, "the flavors");

/// A question, normalized: inputs that must have the same answer are equal (an empty
/// search and none, `Web` and `web`), so they share one encoded answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    project: Option<String>,
    /// Lowercased.
    search: Option<String>,
    /// ASCII-lowercased.
    status: Option<String>,
    /// An index into [`Paged::SORTS`].
    sort: usize,
    descending: bool,
    limit: usize,
    /// Where the page starts: after this sort value and id.
    after: Option<(SortValue<'static>, String)>,
}

impl Question {
    /// Checks `input` and normalizes it, for collection `R`.
    fn of<R: Paged>(input: PageInput) -> Result<Self, Error> {
        let project = input.project_id;
        check_len("projectId", project.as_deref(), MAX_ID)?;
        check_len("search", input.search.as_deref(), MAX_SEARCH)?;
        check_len("status", input.status.as_deref(), MAX_STATUS)?;
        check_len("sort", input.sort.as_deref(), MAX_SORT)?;
        check_len("cursor", input.cursor.as_deref(), MAX_CURSOR)?;
        let limit = input.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid("limit", format!("must be between 1 and {MAX_LIMIT}")));
        }
        let (descending, key) = match input.sort.as_deref() {
            None | Some("") => (false, R::SORTS[0]),
            Some(sort) => match sort.strip_prefix('-') {
                Some(key) => (true, key),
                None => (false, sort),
            },
        };
        let sort = R::SORTS.iter().position(|k| *k == key).ok_or_else(|| {
            Error::invalid("sort", format!("unknown sort key \"{key}\"; one of {}", R::SORTS.join(", ")))
        })?;
        let mut question = Question {
            project,
            search: input.search.filter(|s| !s.is_empty()).map(|s| s.to_lowercase()),
            status: input.status.filter(|s| !s.is_empty()).map(|s| s.to_ascii_lowercase()),
            sort,
            descending,
            limit: limit as usize,
            after: None,
        };
        if let Some(cursor) = input.cursor.filter(|c| !c.is_empty()) {
            question.after = Some(cursor::decode(&cursor, question.fingerprint::<R>())?);
        }
        Ok(question)
    }

    /// What a cursor belongs to: the collection, the filters and the sort. Not the
    /// limit (a client may ask for bigger pages as it goes), nor where the page starts.
    fn fingerprint<R: Paged>(&self) -> u32 {
        let described = serde_json::json!([
            R::TYPE.as_str(),
            self.project,
            self.search,
            self.status,
            R::SORTS[self.sort],
            self.descending,
        ]);
        crc32fast::hash(described.to_string().as_bytes())
    }

    fn matches<R: Paged>(&self, record: &R) -> bool {
        self.project.as_deref().is_none_or(|p| record.project_id() == Some(p))
            && self.status.as_deref().is_none_or(|s| record.status().eq_ignore_ascii_case(s))
            && self
                .search
                .as_deref()
                .is_none_or(|s| record.name().to_lowercase().contains(s) || record.id().to_lowercase().contains(s))
    }

    /// The order of two rows, each a sort value and an id.
    fn order(&self, a: (&SortValue<'_>, &str), b: (&SortValue<'_>, &str)) -> Ordering {
        let ascending = a.0.cmp(b.0).then_with(|| a.1.cmp(b.1));
        if self.descending { ascending.reverse() } else { ascending }
    }
}

fn check_len(field: &'static str, value: Option<&str>, max: usize) -> Result<(), Error> {
    if value.is_some_and(|v| v.chars().count() > max) {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(())
}

/// A `page` query, asked but not yet answered: the wire layer looks its [`key`] up among
/// the answers it already encoded, and only [`compute`]s on a miss.
///
/// [`key`]: Page::key
/// [`compute`]: Page::compute
#[derive(Debug)]
pub struct Page<R> {
    snapshot: Arc<Snapshot<R>>,
    question: Question,
    sight: Sight,
}

/// What a `page` answer depends on, besides its type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub version: u64,
    pub question: Question,
    pub sight: SightKey,
}

impl<R: Paged> Page<R> {
    /// The question `input` asks of `snapshot`, for a caller who may see `room`, checked.
    pub fn new(snapshot: Arc<Snapshot<R>>, input: PageInput, room: Arc<Room>) -> Result<Self, Error> {
        let question = Question::of::<R>(input)?;
        let sight = Sight::new(room, question.project.clone());
        Ok(Page { question, snapshot, sight })
    }

    pub fn key(&self) -> PageKey {
        PageKey { version: self.snapshot.version, question: self.question.clone(), sight: self.sight.key() }
    }

    /// The page: filters every stored record, then orders only what is needed (the
    /// rows after the cursor are partitioned around the `limit`-th, and those before it
    /// sorted), so a page of 36,000 records costs a scan and a sort of one page.
    pub fn compute(&self) -> R::Answer {
        let q = &self.question;
        let key = R::SORTS[q.sort];
        let mut rows: Vec<(SortValue<'_>, &R)> = self
            .snapshot
            .items
            .iter()
            .map(|r| &**r)
            .filter(|r| q.matches(*r) && r.seen_by(&self.sight.room))
            .map(|r| (r.sort_value(key).unwrap_or_else(|| SortValue::text(r.name())), r))
            .collect();
        let total = rows.len() as u64;
        if let Some((value, id)) = &q.after {
            rows.retain(|(v, r)| q.order((v, r.id()), (value, id)) == Ordering::Greater);
        }
        let order = |a: &(SortValue<'_>, &R), b: &(SortValue<'_>, &R)| q.order((&a.0, a.1.id()), (&b.0, b.1.id()));
        let more = rows.len() > q.limit;
        if more {
            rows.select_nth_unstable_by(q.limit, order);
            rows.truncate(q.limit);
        }
        rows.sort_unstable_by(order);
        let next_cursor = match rows.last() {
            Some((value, last)) if more => Some(cursor::encode(q.fingerprint::<R>(), value, last.id())),
            _ => None,
        };
        let items = rows.into_iter().map(|(_, r)| r.clone()).collect();
        R::Answer::from(Parts { items, total, next_cursor, seq: self.snapshot.seq() })
    }
}

/// One page of what the caller may see of a collection.
pub async fn page<R: Paged>(ctx: &Ctx, input: Option<PageInput>) -> Result<Page<R>, Error> {
    let room = ctx.room()?;
    let input = input.unwrap_or_default();
    // Checked before the store is asked, so that bad input never waits on upstream.
    let question = Question::of::<R>(input)?;
    let snapshot = ctx.store.get::<R>().await?;
    let sight = Sight::new(room, question.project.clone());
    Ok(Page { snapshot, question, sight })
}

/// Cursors: `base64url(json [fingerprint, sortValue, id] ‖ crc32 of that json)`.
///
/// The CRC is a tamper check, not a signature, on purpose. A cursor carries no
/// authority: it only says where a page starts, and any place it can name is a place
/// the client could reach by paging anyway, so a forged one gains nothing a secret
/// would have to protect. What the check does catch is a cursor damaged or edited by
/// hand (a truncated URL, a flipped character), which answers 400 instead of a page
/// that silently starts somewhere else. And with no key, every node of a cluster (and
/// every restart of one) reads every other's cursors.
mod cursor {
    use super::*;

    const MESSAGE: &str = "not a cursor of this query";

    pub fn encode(fingerprint: u32, value: &SortValue<'_>, id: &str) -> String {
        let value = match value {
            SortValue::Number(n) => serde_json::Value::from(*n),
            SortValue::Text(s) => serde_json::Value::from(s.as_ref()),
        };
        let mut bytes = serde_json::Value::from(vec![serde_json::Value::from(fingerprint), value, id.into()])
            .to_string()
            .into_bytes();
        let check = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&check.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Where the page after `cursor` starts, if it is a cursor of the question whose
    /// fingerprint is `fingerprint`.
    pub fn decode(cursor: &str, fingerprint: u32) -> Result<(SortValue<'static>, String), Error> {
        let damaged = || Error::invalid("cursor", format!("{MESSAGE}: damaged, or not from this server"));
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| damaged())?;
        let (body, check) = bytes.split_at_checked(bytes.len().saturating_sub(4)).ok_or_else(damaged)?;
        if check.len() != 4 || crc32fast::hash(body).to_be_bytes() != check {
            return Err(damaged());
        }
        let (of, value, id): (u32, SortValue<'static>, String) = serde_json::from_slice(body).map_err(|_| damaged())?;
        if of != fingerprint {
            return Err(Error::invalid(
                "cursor",
                format!("{MESSAGE}: it belongs to another project, search, status or sort; start again without it"),
            ));
        }
        Ok((value.into_owned(), id))
    }
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    fn volume(id: &str, name: &str, project: &str, status: &str, size_gb: u32) -> Volume {
        Volume {
            id: id.into(),
            name: name.into(),
            project_id: project.into(),
            status: status.into(),
            size_gb,
            attached_to: None,
            description: String::new(),
            created_at: format!("2025-01-01T00:00:{:02}Z", size_gb % 60),
            metadata: Default::default(),
            volume_type: None,
            bootable: false,
            updated_at: None,
        }
    }

    fn snapshot(items: Vec<Volume>) -> Arc<Snapshot<Volume>> {
        let stamps = vec![7; items.len()];
        Arc::new(Snapshot {
            items: items.into_iter().map(Arc::new).collect(),
            stamps,
            log: Default::default(),
            floor: 7,
            version: 1,
            fetched_at: std::time::SystemTime::now(),
        })
    }

    /// The room of a caller who may see both projects of [`many`].
    fn room() -> Arc<Room> {
        crate::updates::Rooms::default().room(["prj-a", "prj-b"])
    }

    fn ask(snapshot: &Arc<Snapshot<Volume>>, input: PageInput) -> Result<VolumePage, Error> {
        Ok(Page::new(snapshot.clone(), input, room())?.compute())
    }

    fn ids(page: &VolumePage) -> Vec<&str> {
        page.items.iter().map(|v| v.id.as_str()).collect()
    }

    /// Every page of `input`, following `nextCursor`: the ids in order.
    fn walk(snapshot: &Arc<Snapshot<Volume>>, input: PageInput) -> Vec<String> {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = ask(snapshot, PageInput { cursor, ..input.clone() }).expect("page");
            seen.extend(page.items.iter().map(|v| v.id.clone()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return seen,
            }
        }
    }

    fn many() -> Vec<Volume> {
        (0..23)
            .map(|n| {
                let status = if n % 3 == 0 { "in-use" } else { "available" };
                let project = if n % 2 == 0 { "prj-a" } else { "prj-b" };
                // Names repeat, so ties must be broken by id.
                volume(&format!("vol-{n:02}"), &format!("Disk {}", n % 5), project, status, (n * 7) % 11 + 1)
            })
            .collect()
    }

    #[test]
    fn pages_walk_every_match_once_in_order_ties_broken_by_id() {
        let snapshot = snapshot(many());
        for sort in ["name", "-name", "sizeGb", "-sizeGb", "createdAt", "status", "-status"] {
            let input = PageInput { sort: Some(sort.into()), limit: Some(4), ..Default::default() };
            let walked = walk(&snapshot, input);
            let mut expected = snapshot.items.clone();
            let descending = sort.starts_with('-');
            let key = sort.trim_start_matches('-');
            expected.sort_by(|a, b| {
                let o = a.sort_value(key).cmp(&b.sort_value(key)).then_with(|| a.id.cmp(&b.id));
                if descending { o.reverse() } else { o }
            });
            let expected: Vec<String> = expected.into_iter().map(|v| v.id.clone()).collect();
            assert_eq!(walked, expected, "sort {sort}");
        }
        // Numbers compare as numbers, not as text ("10" after "9").
        let by_size = ask(&snapshot, PageInput { sort: Some("-sizeGb".into()), ..Default::default() }).expect("page");
        assert_eq!(by_size.items[0].size_gb, 11);
        assert_eq!(by_size.total, 23);
        assert_eq!(by_size.next_cursor, None, "everything fits in the default limit");
        assert_eq!(by_size.seq, 7);
    }

    #[test]
    fn filters_count_every_match_and_page_only_those() {
        let snapshot = snapshot(many());
        let input = PageInput {
            project_id: Some("prj-a".into()),
            status: Some("IN-USE".into()),
            limit: Some(1),
            ..Default::default()
        };
        let first = ask(&snapshot, input.clone()).expect("page");
        // 0, 6, 12, 18: even and divisible by 3.
        assert_eq!(first.total, 4);
        assert_eq!(first.items.len(), 1);
        let mut walked = walk(&snapshot, input);
        walked.sort();
        assert_eq!(walked, ["vol-00", "vol-06", "vol-12", "vol-18"]);

        // Search: name or id, ignoring case.
        let by_name = ask(&snapshot, PageInput { search: Some("disk 4".into()), ..Default::default() }).expect("page");
        assert_eq!(ids(&by_name), ["vol-04", "vol-09", "vol-14", "vol-19"]);
        let by_id = ask(&snapshot, PageInput { search: Some("VOL-2".into()), ..Default::default() }).expect("page");
        assert_eq!(ids(&by_id), ["vol-20", "vol-21", "vol-22"]);
        let none = ask(&snapshot, PageInput { search: Some("nothing".into()), ..Default::default() }).expect("page");
        assert_eq!((none.total, none.items.len(), none.next_cursor), (0, 0, None));
    }

    #[test]
    fn a_record_added_before_the_cursor_does_not_shift_the_next_page() {
        let mut items = many();
        let first_snapshot = snapshot(items.clone());
        let input = PageInput { limit: Some(5), ..Default::default() };
        let first = ask(&first_snapshot, input.clone()).expect("page 1");
        // A new record that sorts first, and the first page's first record removed.
        items.push(volume("vol-new", "AAA", "prj-a", "available", 1));
        items.retain(|v| v.id != first.items[0].id);
        let second_snapshot = snapshot(items);
        let second = ask(&second_snapshot, PageInput { cursor: first.next_cursor.clone(), ..input }).expect("page 2");
        let before = walk(&first_snapshot, PageInput { limit: Some(100), ..Default::default() });
        assert_eq!(ids(&second), before[5..10].iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(second.total, 23);
    }

    #[test]
    fn cursors_round_trip_and_belong_to_one_question() {
        let value = SortValue::text("Disk \"4\" ✓");
        let encoded = cursor::encode(42, &value, "vol-04");
        assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{encoded}");
        assert_eq!(cursor::decode(&encoded, 42), Ok((value.into_owned(), "vol-04".into())));
        let number = cursor::encode(42, &SortValue::Number(u64::MAX), "x");
        assert_eq!(cursor::decode(&number, 42), Ok((SortValue::Number(u64::MAX), "x".into())));

        let other = cursor::decode(&encoded, 43).expect_err("another question");
        assert!(
            matches!(&other, Error::Invalid { field: "cursor", message } if message.contains("another")),
            "{other}"
        );
        // Every single character changed: refused, never a page from elsewhere.
        for at in 0..encoded.len() {
            let mut bytes = encoded.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).expect("ascii");
            let error = cursor::decode(&tampered, 42).expect_err("tampered");
            assert!(matches!(&error, Error::Invalid { field: "cursor", .. }), "{error}");
        }
        for garbage in ["", "!!!", "AAAA", &encoded[..encoded.len() - 2]] {
            assert!(cursor::decode(garbage, 42).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn a_cursor_is_for_its_filters_and_sort_but_any_limit() {
        let snapshot = snapshot(many());
        let input = PageInput { search: Some("disk".into()), limit: Some(3), ..Default::default() };
        let cursor = ask(&snapshot, input.clone()).expect("page").next_cursor;
        assert!(cursor.is_some());
        let bigger = PageInput { cursor: cursor.clone(), limit: Some(10), ..input.clone() };
        assert_eq!(ask(&snapshot, bigger).expect("a bigger page").items.len(), 10);
        // The same search in other case is the same question.
        let shouted = PageInput { cursor: cursor.clone(), search: Some("DISK".into()), ..input.clone() };
        assert!(ask(&snapshot, shouted).is_ok());
        for other in [
            PageInput { sort: Some("-name".into()), ..input.clone() },
            PageInput { search: Some("disk 1".into()), ..input.clone() },
            PageInput { project_id: Some("prj-a".into()), ..input.clone() },
            PageInput { status: Some("available".into()), ..input.clone() },
        ] {
            let error = ask(&snapshot, PageInput { cursor: cursor.clone(), ..other.clone() }).expect_err("other");
            assert!(matches!(error, Error::Invalid { field: "cursor", .. }), "{other:?}: {error}");
        }
        // Another collection's cursor, with the same filters and sort.
        let projects = Question::of::<Project>(PageInput { cursor, ..input }).expect_err("another type");
        assert!(matches!(projects, Error::Invalid { field: "cursor", .. }));
    }

    #[test]
    fn bad_input_names_its_field() {
        let invalid = |input: PageInput| Question::of::<Volume>(input).expect_err("invalid");
        for limit in [0, MAX_LIMIT + 1, u32::MAX] {
            let error = invalid(PageInput { limit: Some(limit), ..Default::default() });
            assert_eq!(error, Error::invalid("limit", "must be between 1 and 500"));
        }
        assert!(Question::of::<Volume>(PageInput { limit: Some(MAX_LIMIT), ..Default::default() }).is_ok());
        let error = invalid(PageInput { sort: Some("-bogus".into()), ..Default::default() });
        assert_eq!(error, Error::invalid("sort", "unknown sort key \"bogus\"; one of name, createdAt, sizeGb, status"));
        // A key of another collection.
        assert!(Question::of::<Server>(PageInput { sort: Some("sizeGb".into()), ..Default::default() }).is_err());
        let error = invalid(PageInput { search: Some("s".repeat(MAX_SEARCH + 1)), ..Default::default() });
        assert_eq!(error, Error::invalid("search", "at most 255 characters"));
        let error = invalid(PageInput { status: Some("s".repeat(MAX_STATUS + 1)), ..Default::default() });
        assert_eq!(error, Error::invalid("status", "at most 64 characters"));
        let error = invalid(PageInput { cursor: Some("A".repeat(MAX_CURSOR + 1)), ..Default::default() });
        assert_eq!(error, Error::invalid("cursor", "at most 4096 characters"));
        let error = invalid(PageInput { project_id: Some("p".repeat(MAX_ID + 1)), ..Default::default() });
        assert_eq!(error, Error::invalid("projectId", "at most 64 characters"));
    }

    #[test]
    fn every_sort_key_reads_a_value_and_the_default_is_name() {
        fn check<R: Paged>(record: R) {
            assert_eq!(R::SORTS[0], "name", "{}", R::TYPE);
            for key in R::SORTS {
                assert!(record.sort_value(key).is_some(), "{} has no {key}", R::TYPE);
            }
            assert!(record.sort_value("bogus").is_none());
        }
        check(Project { id: "p".into(), name: "p".into(), description: String::new(), enabled: true });
        check(Server {
            id: "s".into(),
            name: "s".into(),
            project_id: "p".into(),
            status: "ACTIVE".into(),
            flavor: "m1.small".into(),
            image_id: None,
            addresses: Vec::new(),
            metadata: Default::default(),
            created: String::new(),
            updated: String::new(),
        });
        check(volume("v", "v", "p", "available", 1));
        check(Image {
            id: "i".into(),
            name: "i".into(),
            status: "active".into(),
            visibility: "public".into(),
            size_bytes: 1,
            min_disk_gb: 1,
            project_id: None,
        });
        check(Network {
            id: "n".into(),
            name: "n".into(),
            project_id: "p".into(),
            status: "ACTIVE".into(),
            shared: false,
            subnets: Vec::new(),
        });
        check(VolumeSnapshot {
            id: "s".into(),
            name: "s".into(),
            project_id: "p".into(),
            volume_id: "v".into(),
            status: "available".into(),
            size_gb: 1,
            description: String::new(),
            metadata: Default::default(),
            created_at: String::new(),
            updated_at: None,
        });
        check(Subnet {
            id: "s".into(),
            name: "s".into(),
            project_id: "p".into(),
            network_id: "n".into(),
            cidr: "10.0.0.0/24".into(),
            ip_version: 4,
            gateway_ip: None,
            enable_dhcp: true,
            created_at: String::new(),
            updated_at: None,
        });
        check(Flavor {
            id: "f".into(),
            name: "f".into(),
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
            ephemeral_gb: 0,
            swap_mb: 0,
            is_public: true,
            disabled: false,
            description: None,
        });
    }

    #[test]
    fn the_schema_states_the_limits_validate_enforces() {
        let schema = serde_json::to_value(PageInput::schema()).expect("schema as JSON");
        let p = &schema["properties"];
        assert_eq!(p["projectId"]["maxLength"], MAX_ID);
        assert_eq!(p["search"]["maxLength"], MAX_SEARCH);
        assert_eq!(p["status"]["maxLength"], MAX_STATUS);
        assert_eq!(p["sort"]["maxLength"], MAX_SORT);
        assert_eq!(p["cursor"]["maxLength"], MAX_CURSOR);
        assert_eq!((p["limit"]["minimum"].as_f64(), p["limit"]["maximum"].as_f64()), (Some(1.0), Some(500.0)));
    }
}
