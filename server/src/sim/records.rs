//! One collection of the simulated cloud: its records by id, in the order they were made.
//!
//! The simulator keeps OpenStack's own JSON for each record. A show, a delete and a status
//! change find their record by a hash lookup: with 36,000 seeded volumes, scanning the
//! list for an id (`records.iter().find(|v| v["id"] == id)`) was 92 % of the simulator's
//! CPU in the refetch storm, under the world's lock, and its answers took 2–5 s. Each
//! record is shared (`Arc`), so a listing takes a snapshot of pointers under the lock and
//! serializes it after letting go; a write to a record a listing still holds copies that
//! record alone.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// Records by their `"id"`, in insertion order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Records(IndexMap<String, Arc<Value>>);

impl Records {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every record, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.0.values().map(|r| &**r)
    }

    /// Every record, to change. A record a listing still holds is copied first, so change
    /// only what needs it (prefer [`get_mut`](Self::get_mut) by id).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.0.values_mut().map(Arc::make_mut)
    }

    pub fn get(&self, id: &str) -> Option<&Value> {
        self.0.get(id).map(|r| &**r)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.0.get_mut(id).map(Arc::make_mut)
    }

    /// The position of record `id` in the listing order.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.0.get_index_of(id)
    }

    /// Adds a record at the end, keyed by its `"id"` (a record with that id is replaced
    /// where it stands).
    pub fn push(&mut self, record: Value) {
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        self.0.insert(id, Arc::new(record));
    }

    /// Removes record `id`, keeping the order of the rest.
    pub fn remove(&mut self, id: &str) -> Option<Value> {
        self.0.shift_remove(id).map(Arc::unwrap_or_clone)
    }

    /// Keeps the records `keep` accepts, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&Value) -> bool) {
        self.0.retain(|_, r| keep(r));
    }

    /// The records from position `from` on (tests compare what a batch added).
    pub fn from(&self, from: usize) -> Vec<&Value> {
        self.iter().skip(from).collect()
    }

    /// The records as they are now, shared: cheap to take under a lock (a pointer copy
    /// per record) and to serialize after it was released.
    pub fn snapshot(&self) -> Vec<Arc<Value>> {
        self.0.values().cloned().collect()
    }
}

impl Extend<Value> for Records {
    fn extend<I: IntoIterator<Item = Value>>(&mut self, records: I) {
        for record in records {
            self.push(record);
        }
    }
}

impl FromIterator<Value> for Records {
    fn from_iter<I: IntoIterator<Item = Value>>(records: I) -> Self {
        let mut all = Records::default();
        all.extend(records);
        all
    }
}

impl Serialize for Records {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_keep_their_order_and_are_found_by_id() {
        let mut records: Records = (1..=4).map(|n| json!({"id": format!("v-{n}"), "n": n})).collect();
        assert_eq!(records.get("v-3").map(|v| v["n"].clone()), Some(json!(3)));
        assert!(records.remove("v-2").is_some());
        records.push(json!({"id": "v-9", "n": 9}));
        let ids: Vec<&str> = records.iter().filter_map(|v| v["id"].as_str()).collect();
        assert_eq!(ids, ["v-1", "v-3", "v-4", "v-9"]);
        assert_eq!(records.position("v-4"), Some(2));
        assert_eq!(serde_json::to_value(&records).expect("json")[1]["id"], "v-3");
    }

    #[test]
    fn a_listing_keeps_what_it_saw_while_the_records_change() {
        let mut records: Records = [json!({"id": "a", "status": "creating"})].into_iter().collect();
        let listing = records.snapshot();
        if let Some(a) = records.get_mut("a") {
            a["status"] = json!("available");
        }
        assert_eq!(listing[0]["status"], "creating");
        assert_eq!(records.get("a").map(|a| a["status"].clone()), Some(json!("available")));
    }
}
