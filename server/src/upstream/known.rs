//! Listings decoded once per change: a page whose bytes are those the last listing of
//! its collection got for the same request is not read again, and in a page that changed
//! a record whose JSON is byte for byte what the last listing had is taken from it, not
//! decoded again.
//!
//! A poll reads every record of a collection, and almost all of them are as they were:
//! of 36,000 volumes, ten or twenty change between two polls. Decoding Cinder's 35 MB of
//! JSON into records took about 100 ms of CPU, and comparing each with the stored one
//! and dropping the old copies most of the rest of the 220–270 ms a poll cost (release
//! build, all five collections). Finding where each record's JSON ends takes a quarter of
//! the decoding time (`serde_json`'s `RawValue`), and hashing it a few milliseconds; only
//! the records whose text is new are decoded. A record taken from the last listing is the
//! very value the store holds, so the store sees at a pointer's glance that it is
//! unchanged.
//!
//! A cloud pages its listings (Cinder and Nova by 1,000): between two polls most pages
//! are what they were, and the page's hash (a few hundred microseconds for a megabyte)
//! finds that without reading its records.
//!
//! The hash is xxh3 (64 bits, vectorised: some 2 ms for 35 MB, where foldhash took 16 ms)
//! over the record's text and the project it was listed in, seeded at random when the
//! process starts, so neither an accidental nor a crafted collision is within reach.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::paging::{self, Page};

/// The records of a collection's last complete listing, by the hash of their JSON.
#[derive(Debug)]
pub struct Known<R> {
    /// The hash's seed, the same for every listing that follows this one.
    seed: u64,
    /// By their text's hash, which is already random: no need to hash it again.
    records: HashMap<u64, Arc<R>, std::hash::BuildHasherDefault<PassThrough>>,
    /// By the project they were listed in and their URL.
    pages: HashMap<(Option<String>, String), KnownPage<R>>,
}

/// A page as the last listing got it.
#[derive(Debug)]
struct KnownPage<R> {
    /// The hash of its bytes, and how many there were.
    hash: u64,
    len: usize,
    /// Its records, with the hash of each one's text.
    records: Vec<(u64, Arc<R>)>,
    next: Option<String>,
}

impl<R> Clone for KnownPage<R> {
    fn clone(&self) -> Self {
        KnownPage { hash: self.hash, len: self.len, records: self.records.clone(), next: self.next.clone() }
    }
}

impl<R> Default for Known<R> {
    fn default() -> Self {
        Known { seed: rand::random(), records: HashMap::default(), pages: HashMap::new() }
    }
}

/// A hasher for keys that are hashes already: it passes the `u64` through.
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else is folded in, never lost.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl<R> Known<R> {
    /// Records known.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn key(&self, listed_in: Option<&str>, json: &str) -> u64 {
        use xxhash_rust::xxh3::xxh3_64_with_seed;
        let seed = listed_in.map_or(self.seed, |project| xxh3_64_with_seed(project.as_bytes(), self.seed));
        xxh3_64_with_seed(json.as_bytes(), seed)
    }
}

/// One listing being decoded: what the last one knew, and what this one learns.
#[derive(Debug)]
pub struct Decoding<R> {
    last: Arc<Known<R>>,
    next: Mutex<Known<R>>,
}

impl<R> Decoding<R> {
    pub fn new(last: Arc<Known<R>>) -> Decoding<R> {
        let next = Known { seed: last.seed, records: HashMap::default(), pages: HashMap::new() };
        Decoding { last, next: Mutex::new(next) }
    }

    /// Decodes a page of a listing (got from `url`) whose records are under `key`,
    /// listed in project `listed_in` when it was one project's listing: the last
    /// listing's page when its bytes are the same, else each record the last listing had
    /// as it is now and the others with `convert`.
    pub fn page<O: DeserializeOwned>(
        &self,
        url: &str,
        bytes: &[u8],
        key: &str,
        listed_in: Option<&str>,
        convert: impl Fn(O, Option<&str>) -> R,
    ) -> Result<Page<Arc<R>>, serde_json::Error> {
        let at = (listed_in.map(str::to_owned), url.to_owned());
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.last.seed);
        let same = self.last.pages.get(&at).filter(|page| page.hash == hash && page.len == bytes.len());
        let page = match same {
            Some(page) => page.clone(),
            None => self.read(hash, bytes, key, listed_in, convert)?,
        };
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        for (hash, record) in &page.records {
            next.records.insert(*hash, record.clone());
        }
        let answer = Page { items: page.records.iter().map(|(_, r)| r.clone()).collect(), next: page.next.clone() };
        next.pages.insert(at, page);
        Ok(answer)
    }

    /// Reads a page the last listing did not have.
    fn read<O: DeserializeOwned>(
        &self,
        hash: u64,
        bytes: &[u8],
        key: &str,
        listed_in: Option<&str>,
        convert: impl Fn(O, Option<&str>) -> R,
    ) -> Result<KnownPage<R>, serde_json::Error> {
        let raw: Page<&RawValue> = paging::decode_raw_page(bytes, key)?;
        let mut records = Vec::with_capacity(raw.items.len());
        for json in raw.items {
            let hash = self.last.key(listed_in, json.get());
            let known = self.last.records.get(&hash).cloned();
            let record = match known {
                Some(known) => known,
                None => Arc::new(convert(serde_json::from_str(json.get())?, listed_in)),
            };
            records.push((hash, record));
        }
        Ok(KnownPage { hash, len: bytes.len(), records, next: raw.next })
    }

    /// What this listing learnt, for the next one.
    pub fn finish(self) -> Known<R> {
        self.next.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        id: String,
        n: u32,
    }

    type Listed = (Item, Option<String>);

    fn decode(decoding: &Decoding<Listed>, url: &str, json: &str, listed_in: Option<&str>) -> Vec<Arc<Listed>> {
        decoding
            .page(url, json.as_bytes(), "items", listed_in, |item: Item, project| (item, project.map(str::to_owned)))
            .expect("decodes")
            .items
    }

    #[test]
    fn a_record_whose_json_is_unchanged_is_the_one_decoded_before() {
        let first = Decoding::new(Arc::new(Known::default()));
        let one = decode(&first, "p1", r#"{"items": [{"id": "a", "n": 1}, {"id": "b", "n": 2}]}"#, None);
        let known = Arc::new(first.finish());
        assert_eq!(known.len(), 2);

        let second = Decoding::new(known.clone());
        let page = r#"{"items": [{"id": "a", "n": 1}, {"id": "b", "n": 3}, {"id": "c", "n": 1}]}"#;
        let two = decode(&second, "p1", page, None);
        assert!(Arc::ptr_eq(&one[0], &two[0]), "a is the same value, not decoded again");
        assert_eq!(two[1].0, Item { id: "b".into(), n: 3 }, "b's new text is decoded");
        assert_eq!(two[2].0.id, "c");
        // What the second listing learnt replaces what the first knew: b's old text is gone.
        let known = second.finish();
        assert_eq!(known.len(), 3);
        let third = Decoding::new(Arc::new(known));
        let three = decode(&third, "p1", r#"{"items": [{"id": "b", "n": 2}]}"#, None);
        assert!(!Arc::ptr_eq(&one[1], &three[0]));
        assert_eq!(three[0].0.n, 2);
    }

    #[test]
    fn a_page_got_again_as_it_was_gives_its_records_and_keeps_them_known() {
        let page = r#"{"items": [{"id": "a", "n": 1}], "items_links": [{"rel": "next", "href": "/x?marker=a"}]}"#;
        let first = Decoding::new(Arc::new(Known::default()));
        let one = decode(&first, "p1", page, None);
        // Twice the same page: the second listing takes it whole, and so does the third.
        let second = Decoding::new(Arc::new(first.finish()));
        let again = second.page("p1", page.as_bytes(), "items", None, |item: Item, _| (item, None)).expect("page");
        assert!(Arc::ptr_eq(&one[0], &again.items[0]));
        assert_eq!(again.next.as_deref(), Some("/x?marker=a"));
        let third = Decoding::new(Arc::new(second.finish()));
        // The record moved to another page (another URL, other bytes): still known.
        let moved = decode(&third, "p2", r#"{"items": [{"id": "z", "n": 9}, {"id": "a", "n": 1}]}"#, None);
        assert!(Arc::ptr_eq(&one[0], &moved[1]));
    }

    #[test]
    fn the_same_text_listed_in_another_project_is_another_record() {
        let first = Decoding::new(Arc::new(Known::default()));
        let web = decode(&first, "p1", r#"{"items": [{"id": "a", "n": 1}]}"#, Some("web"));
        let data = decode(&first, "p1", r#"{"items": [{"id": "a", "n": 1}]}"#, Some("data"));
        assert_eq!(web[0].1.as_deref(), Some("web"));
        assert_eq!(data[0].1.as_deref(), Some("data"));
    }

    #[test]
    fn a_malformed_record_fails_the_page() {
        let first = Decoding::new(Arc::new(Known::default()));
        let page = first.page("p1", br#"{"items": [{"id": 5}]}"#, "items", None, |item: Item, _| item);
        assert!(page.is_err());
        assert!(first.page("p1", br#"{"items": [}"#, "items", None, |item: Item, _| item).is_err());
    }
}
