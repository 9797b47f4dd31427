//! The in-memory allowlist snapshot that decisions read: exact lookups by packed plate key, and
//! confusion-class lookups (0/O/D/Q, 1/I/L, 8/B, 5/S, 2/Z, 6/G) for OCR near-misses, and lookups of
//! sealed (opted-out) entries by the sealed id of the read and of its plausible confusion variants (see
//! [`super::seal`]). Immutable once built; a new list replaces the whole snapshot (see [`SharedAllowlist`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::entry::Entry;
use super::seal::{self, PlateKey};
use crate::plate;
use crate::recognize::CharRead;

/// At most this many confusion variants of a read are sealed and looked up per decision.
const MAX_SEALED_VARIANTS: usize = 256;

#[derive(Debug, Clone)]
enum Bucket {
    One(u32),
    Many(Vec<u32>),
}

/// A near match: an entry whose plate differs from the read only by confusable characters.
#[derive(Debug, Clone)]
pub struct Near<'a> {
    pub entry: &'a Entry,
    /// The listed plate's text (for a sealed entry: the variant of the read that matched; never stored).
    pub listed: Cow<'a, str>,
    /// Positions where the read and the entry differ.
    pub positions: Vec<usize>,
}

#[derive(Debug, Default, Clone)]
pub struct Allowlist {
    entries: Vec<Entry>,
    exact: HashMap<u64, u32>,
    canon: HashMap<u64, Bucket>,
    /// Sealed id -> entry, for opted-out entries (their `plate` is the sealed id).
    sealed: HashMap<String, u32>,
    key: Option<PlateKey>,
    /// Version of the list (from the cloud sync; 0 = local only).
    pub version: u64,
    /// When the cloud signed the newest envelope applied (`None`: local only).
    pub issued: Option<chrono::DateTime<chrono::Utc>>,
}

impl Allowlist {
    /// Builds the indexes of a list without sealed entries (tests, tools).
    pub fn new(entries: Vec<Entry>, version: u64) -> Self {
        Self::with_key(entries, version, None)
    }

    /// Builds the indexes. Entries with plates that cannot be packed are skipped (the store validates);
    /// sealed entries are matched only when the site's key is given.
    pub fn with_key(entries: Vec<Entry>, version: u64, key: Option<PlateKey>) -> Self {
        let mut exact = HashMap::with_capacity(entries.len());
        let mut canon: HashMap<u64, Bucket> = HashMap::with_capacity(entries.len());
        let mut sealed = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            if seal::is_sealed(&e.plate) {
                sealed.insert(e.plate.clone(), i as u32);
                continue;
            }
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
            sealed,
            key,
            version,
            issued: None,
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

    /// The entry for exactly this plate (plain or sealed).
    pub fn exact(&self, plate_text: &str) -> Option<&Entry> {
        let k = plate::pack(plate_text)?;
        if let Some(&i) = self.exact.get(&k) {
            return Some(&self.entries[i as usize]);
        }
        let key = self.key.as_ref().filter(|_| !self.sealed.is_empty())?;
        self.sealed
            .get(&key.seal(plate_text))
            .map(|&i| &self.entries[i as usize])
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
                listed: Cow::Borrowed(entry.plate.as_str()),
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

    /// Sealed entries that a plausible confusion variant of the read matches (not the read itself): at each
    /// position the OCR was unsure of (confidence below `unsure_below`) any character of its confusion
    /// class, elsewhere its runner-up when that is in the class; at most `max_subs` substitutions.
    pub fn near_sealed(&self, text: &str, chars: &[CharRead], unsure_below: f32, max_subs: usize) -> Vec<Near<'_>> {
        let Some(key) = self.key.as_ref().filter(|_| !self.sealed.is_empty()) else {
            return Vec::new();
        };
        let read: Vec<char> = text.chars().collect();
        // Per position: the alternatives to the read character, most doubtful positions first.
        let mut options: Vec<(usize, f32, Vec<char>)> = read
            .iter()
            .enumerate()
            .filter_map(|(p, &ch)| {
                let c = chars.get(p)?;
                let class = plate::confusion_class(ch);
                let alts: Vec<char> = if c.conf < unsure_below {
                    CONFUSABLE
                        .iter()
                        .copied()
                        .filter(|&a| a != ch && plate::confusion_class(a) == class)
                        .collect()
                } else {
                    c.alt
                        .map(|a| a.0)
                        .filter(|&a| a != ch && plate::confusion_class(a) == class)
                        .into_iter()
                        .collect()
                };
                (!alts.is_empty()).then_some((p, c.conf, alts))
            })
            .collect();
        options.sort_by(|a, b| a.1.total_cmp(&b.1));
        // Keep the most doubtful positions that fit the variant budget.
        let mut budget = 1usize;
        let mut kept = Vec::with_capacity(options.len());
        for o in options {
            let next = budget.saturating_mul(o.2.len() + 1);
            if next <= MAX_SEALED_VARIANTS {
                budget = next;
                kept.push(o);
            }
        }
        let options = kept;
        let mut out = Vec::new();
        let mut pick = vec![0usize; options.len()]; // 0 = keep the read character
        let mut variant = read.clone();
        loop {
            // Next combination (odometer), skipping the identity.
            let mut i = 0;
            while i < pick.len() {
                pick[i] += 1;
                if pick[i] <= options[i].2.len() {
                    break;
                }
                pick[i] = 0;
                i += 1;
            }
            if i == pick.len() {
                break;
            }
            let subs = pick.iter().filter(|&&k| k > 0).count();
            if subs > max_subs {
                continue;
            }
            for (k, (p, _, alts)) in options.iter().enumerate() {
                variant[*p] = if pick[k] == 0 { read[*p] } else { alts[pick[k] - 1] };
            }
            let candidate: String = variant.iter().collect();
            if let Some(&idx) = self.sealed.get(&key.seal(&candidate)) {
                let mut positions: Vec<usize> = options
                    .iter()
                    .zip(&pick)
                    .filter(|(_, &k)| k > 0)
                    .map(|((p, _, _), _)| *p)
                    .collect();
                positions.sort_unstable();
                out.push(Near {
                    entry: &self.entries[idx as usize],
                    listed: Cow::Owned(candidate),
                    positions,
                });
            }
        }
        out
    }
}

/// Every character that belongs to a confusion class of more than one member.
const CONFUSABLE: &[char] = &[
    '0', 'O', 'D', 'Q', '1', 'I', 'L', '8', 'B', '5', 'S', '2', 'Z', '6', 'G',
];

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
