//! The in-memory allowlist snapshot that decisions read: exact lookups by packed plate key, and
//! confusion-class lookups (0/O/D/Q, 1/I/L, 8/B, 5/S, 2/Z, 6/G) for OCR near-misses. Immutable once
//! built; a new list replaces the whole snapshot (see [`SharedAllowlist`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::entry::Entry;
use crate::plate;

#[derive(Debug, Clone)]
enum Bucket {
    One(u32),
    Many(Vec<u32>),
}

/// A near match: an entry whose plate differs from the read only by confusable characters.
#[derive(Debug, Clone)]
pub struct Near<'a> {
    pub entry: &'a Entry,
    /// Positions where the read and the entry differ.
    pub positions: Vec<usize>,
}

#[derive(Debug, Default, Clone)]
pub struct Allowlist {
    entries: Vec<Entry>,
    exact: HashMap<u64, u32>,
    canon: HashMap<u64, Bucket>,
    /// Version of the list (from the cloud sync; 0 = local only).
    pub version: u64,
}

impl Allowlist {
    /// Builds the indexes. Entries with plates that cannot be packed are skipped (the store validates).
    pub fn new(entries: Vec<Entry>, version: u64) -> Self {
        let mut exact = HashMap::with_capacity(entries.len());
        let mut canon: HashMap<u64, Bucket> = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let (Some(k), Some(c)) = (plate::pack(&e.plate), plate::pack_canonical(&e.plate)) else {
                continue;
            };
            exact.insert(k, i as u32);
            canon
                .entry(c)
                .and_modify(|b| match b {
                    Bucket::One(j) => *b = Bucket::Many(vec![*j, i as u32]),
                    Bucket::Many(v) => v.push(i as u32),
                })
                .or_insert(Bucket::One(i as u32));
        }
        Self {
            entries,
            exact,
            canon,
            version,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry for exactly this plate.
    pub fn exact(&self, plate_text: &str) -> Option<&Entry> {
        let k = plate::pack(plate_text)?;
        self.exact.get(&k).map(|&i| &self.entries[i as usize])
    }

    /// Entries that differ from `plate_text` only by confusable characters (not the exact one).
    pub fn near(&self, plate_text: &str) -> Vec<Near<'_>> {
        let Some(c) = plate::pack_canonical(plate_text) else {
            return Vec::new();
        };
        let idx: &[u32] = match self.canon.get(&c) {
            None => return Vec::new(),
            Some(Bucket::One(i)) => std::slice::from_ref(i),
            Some(Bucket::Many(v)) => v,
        };
        idx.iter()
            .map(|&i| &self.entries[i as usize])
            .filter(|e| e.plate != plate_text)
            .map(|entry| Near {
                entry,
                positions: entry
                    .plate
                    .chars()
                    .zip(plate_text.chars())
                    .enumerate()
                    .filter_map(|(p, (a, b))| (a != b).then_some(p))
                    .collect(),
            })
            .collect()
    }
}

/// The current snapshot, swapped whole when the list changes. Readers clone an `Arc` and never wait on disk.
#[derive(Debug, Clone, Default)]
pub struct SharedAllowlist(Arc<RwLock<Arc<Allowlist>>>);

impl SharedAllowlist {
    pub fn new(list: Allowlist) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(list))))
    }

    pub fn current(&self) -> Arc<Allowlist> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, list: Allowlist) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::entry::Kind;

    #[test]
    fn exact_and_near_lookups() {
        let list = Allowlist::new(
            vec![
                Entry::new("ABC123", Kind::Resident),
                Entry::new("A8C123", Kind::Blocked),
                Entry::new("XYZ9", Kind::Visitor),
            ],
            1,
        );
        assert_eq!(list.exact("ABC123").map(|e| e.kind), Some(Kind::Resident));
        assert!(list.exact("ABC124").is_none());
        let near = list.near("ABC123");
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].entry.plate, "A8C123");
        assert_eq!(near[0].positions, vec![1]);
        let near = list.near("A8CI23");
        assert_eq!(near.len(), 2);
    }
}
