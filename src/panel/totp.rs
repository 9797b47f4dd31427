//! TOTP second factor (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits) and single-use recovery codes.
//! A code is accepted one step either side of now, and only for a step later than the last one used,
//! so a code (or an older one) works once.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const STEP_SECONDS: i64 = 30;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new 160-bit secret, base32 (what authenticator apps take).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    crate::panel::random_bytes(&mut bytes);
    base32(&bytes)
}

pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !matches!(c, b' ' | b'=' | b'-')) {
        let v = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buf >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// The time step of an instant.
pub fn step_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(STEP_SECONDS)
}

/// The 6-digit code of a secret at a step (the code an authenticator app shows).
pub fn code_at_step(secret_b32: &str, step: i64) -> Option<String> {
    let key = base32_decode(secret_b32)?;
    let mut mac = Hmac::<Sha1>::new_from_slice(&key).ok()?;
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin =
        ((h[off] as u32 & 0x7f) << 24) | ((h[off + 1] as u32) << 16) | ((h[off + 2] as u32) << 8) | h[off + 3] as u32;
    Some(format!("{:06}", bin % 1_000_000))
}

/// The code at an instant.
pub fn code(secret_b32: &str, at: DateTime<Utc>) -> Option<String> {
    code_at_step(secret_b32, step_of(at))
}

/// Checks a code; returns the step it matched when it is valid now and later than `last_step`.
pub fn check(secret_b32: &str, input: &str, now: DateTime<Utc>, last_step: i64) -> Option<i64> {
    let input: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if input.len() != 6 || !input.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now_step = step_of(now);
    (now_step - 1..=now_step + 1)
        .filter(|&s| s > last_step)
        .find(|&s| code_at_step(secret_b32, s).is_some_and(|c| constant_eq(c.as_bytes(), input.as_bytes())))
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `otpauth://` URI an authenticator app imports.
pub fn uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    use crate::panel::html::percent_encode as enc;
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

/// Random bits in a recovery code (24 base32 characters). With this many, an unsalted SHA-256 of the
/// code is as safe to store as a slow hash: the code cannot be found by trying.
pub const RECOVERY_BITS: usize = 120;

/// Ten recovery codes (shown once, as six groups of four) and their hashes (stored).
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..10)
        .map(|_| {
            let mut b = [0u8; RECOVERY_BITS / 8];
            crate::panel::random_bytes(&mut b);
            let s = base32(&b).to_ascii_lowercase();
            s.as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

pub fn recovery_hash(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(norm.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, secret "12345678901234567890", last six digits.
        let secret = base32(b"12345678901234567890");
        for (t, want) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            let at = Utc.timestamp_opt(t, 0).single().expect("time");
            assert_eq!(code(&secret, at).as_deref(), Some(want), "t={t}");
        }
    }

    #[test]
    fn base32_round_trips() {
        for n in 0..25 {
            let v: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base32_decode(&base32(&v)).expect("decode"), v);
        }
    }

    #[test]
    fn a_code_works_once_and_not_after_a_later_one() {
        let secret = new_secret();
        let now = Utc.timestamp_opt(1_800_000_000, 0).single().expect("time");
        let c = code(&secret, now).expect("code");
        let step = check(&secret, &c, now, 0).expect("valid");
        assert_eq!(check(&secret, &c, now, step), None, "replay refused");
        let prev = code_at_step(&secret, step - 1).expect("code");
        assert_eq!(check(&secret, &prev, now, step), None, "older code refused");
        let wrong = if c == "000000" { "000001" } else { "000000" };
        assert_eq!(check(&secret, wrong, now, 0), None);
        assert_eq!(check(&secret, "12345", now, 0), None);
    }

    #[test]
    fn recovery_codes_hash_without_formatting() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let bits: usize = codes[0].chars().filter(|c| c.is_ascii_alphanumeric()).count() * 5;
        assert!(bits >= 112, "{} carries {bits} bits", codes[0]);
        assert_eq!(recovery_hash(&codes[0].to_uppercase().replace('-', " ")), hashes[0]);
    }
}
