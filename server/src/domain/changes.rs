//! Delta queries: each collection's `changes` companion of its `list`, answering what
//! changed after a seq instead of the whole collection again.
//!
//! A client holds a list as of some seq: the `seq` of the last `changes` answer it
//! applied, or the seq of the last update it had heard before it fetched the `list`
//! (the store is updated before an update goes out, so that list already holds it).
//! On the next update of the type it asks `changes({since})` and gets the records
//! added or changed since, whole (so applying them twice is harmless), the ids removed,
//! and the `seq` it stands at afterwards — or `resync` when the store cannot say (a seq
//! older than the store remembers, from the future, or not a seq at all), and the client
//! reads the `list` again. Never an error for a bad `since`: a client that is confused
//! about where it stands needs the whole list, not an error page.
//!
//! Like the list, it holds only what the caller may see (their projects' records, public
//! images, shared networks), deletes included. The answer depends only on the stored
//! version, the last change at or before `since` and which records it may hold, so
//! thousands of clients that were all up to date ask one question; the wire layer encodes
//! each answer once ([`Delta::key`]).

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use super::types::MAX_ID;
use super::{Ctx, Error, Sight, SightKey};
use crate::upstream::model::{Flavor, Image, Network, Project, Server, Subnet, Volume, VolumeSnapshot};
use crate::upstream::store::{Fetch, Since, Snapshot};

/// Input of the `changes` queries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangesInput {
    /// The seq the client's copy is current to. Anything that is not a seq this server
    /// handed out (not a number, negative, from the future, too old) answers `resync`.
    #[serde(default)]
    #[ts(type = "number")]
    #[schema(value_type = u64, example = 1795426074817902_u64)]
    pub since: SinceSeq,
    /// At most 64 characters: only this project's records.
    #[serde(default)]
    #[ts(optional)]
    #[schema(example = "prj-web", max_length = 64)]
    pub project_id: Option<String>,
}

impl ChangesInput {
    pub fn validate(&self) -> Result<(), Error> {
        if self.project_id.as_deref().is_some_and(|p| p.chars().count() > MAX_ID) {
            return Err(Error::invalid("projectId", format!("at most {MAX_ID} characters")));
        }
        Ok(())
    }
}

/// `since` as given: a seq when it is a non-negative integer (or its decimal string),
/// `None` for anything else (absent, negative, fractional, not a number), which is a
/// resync rather than an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinceSeq(pub Option<u64>);

impl<'de> Deserialize<'de> for SinceSeq {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(SinceSeq(match value {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) if s.len() <= 20 => s.parse().ok(),
            _ => None,
        }))
    }
}

/// A collection with a `changes` query: its answer type on the wire.
pub trait Changes: Fetch {
    type Answer: Serialize + Send + Sync + 'static;
    fn answer(since: Since<Self>) -> Self::Answer;
}

macro_rules! changes_answer {
    ($name:ident, $record:ty, $what:literal) => {
        #[doc = concat!(" What changed in ", $what, " after `since`: the records added or changed, whole, and the ids removed, or `resync`.")]
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS, ToSchema)]
        #[serde(tag = "kind", rename_all = "camelCase")]
        pub enum $name {
            /// Apply `deletes`, then `upserts` (each replaces the record with its id, or is
            /// added); the copy is then current to `seq`.
            Changes {
                #[ts(type = "number")]
                seq: u64,
                upserts: Vec<$record>,
                deletes: Vec<String>,
            },
            /// The server cannot say what changed: read the list again; it is current to `seq`.
            Resync {
                #[ts(type = "number")]
                seq: u64,
            },
        }

        impl Changes for $record {
            type Answer = $name;
            fn answer(since: Since<Self>) -> $name {
                match since {
                    Since::Changes { seq, upserts, deletes } => $name::Changes { seq, upserts, deletes },
                    Since::Resync { seq } => $name::Resync { seq },
                }
            }
        }
    };
}

changes_answer!(ProjectChanges, Project, "the projects");
changes_answer!(ServerChanges, Server, "the servers");
changes_answer!(VolumeChanges, Volume, "the volumes");
changes_answer!(ImageChanges, Image, "the images");
changes_answer!(NetworkChanges, Network, "the networks");
changes_answer!(SnapshotChanges, VolumeSnapshot, "the volume snapshots");
changes_answer!(SubnetChanges, Subnet, "the subnets");
changes_answer!(FlavorChanges, Flavor, "the flavors");

/// A `changes` query, asked but not yet answered: the wire layer looks its [`key`]
/// up among the answers it already encoded, and only [`compute`]s on a miss.
///
/// [`key`]: Delta::key
/// [`compute`]: Delta::compute
#[derive(Debug)]
pub struct Delta<R> {
    snapshot: Arc<Snapshot<R>>,
    /// The last change at or before `since`; `None`: a resync.
    point: Option<u64>,
    sight: Sight,
}

/// What a `changes` answer depends on, besides its type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeltaKey {
    pub version: u64,
    pub point: Option<u64>,
    pub sight: SightKey,
}

impl<R: Changes> Delta<R> {
    pub fn key(&self) -> DeltaKey {
        DeltaKey { version: self.snapshot.version, point: self.point, sight: self.sight.key() }
    }

    /// The answer, as the store says.
    pub fn compute(&self) -> R::Answer {
        let since = match self.point {
            Some(point) => self.snapshot.changes_since(Some(point), u64::MAX, |r| self.sight.keeps(r)),
            None => Since::Resync { seq: self.snapshot.seq() },
        };
        R::answer(since)
    }
}

/// What changed in a collection after `input.since`, of what the caller may see.
pub async fn changes<R: Changes>(ctx: &Ctx, input: ChangesInput) -> Result<Delta<R>, Error> {
    let room = ctx.room()?;
    input.validate()?;
    let snapshot = ctx.store.get::<R>().await?;
    let latest = ctx.bus.seq();
    let point = input.since.0.filter(|since| *since <= latest).and_then(|since| snapshot.point(since));
    Ok(Delta { snapshot, point, sight: Sight::new(room, input.project_id) })
}
