//! Passwords: Argon2id (19 MiB, 2 passes: OWASP's minimum), 8 to 128 characters, no composition rules,
//! refused when among the most common breached passwords ([`super::breached`]: a compact filter of 11,651),
//! on the small built-in list, or in an optional site file.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

const COMMON: &str = include_str!("common-passwords.txt");

fn argon() -> Argon2<'static> {
    // m = 19 MiB, t = 2, p = 1; ~50 ms on a Cortex-A72.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn common() -> &'static HashSet<String> {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        let mut set: HashSet<String> = COMMON
            .lines()
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        // A site can add a longer list (e.g. a breached-password corpus) at this path.
        if let Ok(extra) = std::fs::read_to_string("/etc/gatehouse/common-passwords.txt") {
            set.extend(extra.lines().map(|l| l.trim().to_lowercase()).filter(|l| !l.is_empty()));
        }
        set
    })
}

/// Why a new password is refused, in words a person can act on; `None` when it is acceptable.
pub fn weakness(password: &str, user: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Some(format!(
            "use at least {MIN_LEN} characters (a few words make a good one)"
        ));
    }
    if n > MAX_LEN {
        return Some(format!("use at most {MAX_LEN} characters"));
    }
    let lower = password.to_lowercase();
    if super::breached::filter().is_some_and(|f| f.contains(&lower)) || common().contains(&lower) {
        return Some(
            "that password is among the most common breached passwords (attackers try these first); choose another"
                .into(),
        );
    }
    if lower.contains(&user.to_lowercase()) && user.len() >= 3 {
        return Some("the password must not contain the user name".into());
    }
    if lower.chars().all(|c| lower.starts_with(c)) {
        return Some("the password must not be one repeated character".into());
    }
    None
}

/// Argon2's working memory (19 MiB), kept and reused. A fresh allocation per check let glibc's
/// per-thread arenas keep every one of them: 3.4 GiB resident after 400 wrong logins from 128
/// addresses, with never more than two hashes running (`cargo bench --bench panel_load -- abuse`).
/// Callers are bounded by [`super::limits::Hashing`]; a few spare buffers are kept for the command line
/// and tests, more are freed.
fn with_blocks<T>(count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    static POOL: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());
    const KEEP: usize = super::limits::HASH_PERMITS + 2;
    let found = {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        pool.iter().position(|b| b.len() == count).map(|i| pool.swap_remove(i))
    };
    let mut blocks = found.unwrap_or_else(|| vec![Block::default(); count]);
    let out = f(&mut blocks);
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < KEEP {
        pool.push(blocks);
    }
    out
}

/// The PHC string of a password (Argon2id, random salt).
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    crate::panel::random_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let argon = argon();
    let mut raw = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut raw).map_err(|e| e.to_string())?;
    let mut out = [0u8; 32];
    with_blocks(argon.params().block_count(), |blocks| {
        argon.hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut out, blocks)
    })
    .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether a password matches a stored PHC string (any Argon2 variant and parameters it names).
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let version = match h.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&h) else { return false };
    let argon = Argon2::new(algorithm, version, params);
    let mut raw = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut raw) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let ok = with_blocks(argon.params().block_count(), |blocks| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut out, blocks)
            .is_ok()
    });
    // Output's equality is constant-time.
    ok && Output::new(&out).is_ok_and(|o| o == expected)
}

/// Spends the time of one verification (for unknown users, so timing does not tell who exists).
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("gatehouse-dummy-password").unwrap_or_default());
    let _ = verify(password, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash("correct horse battery staple").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery staple", &h));
        assert!(!verify("correct horse battery stapler", &h));
        assert!(!verify("x", "not a phc string"));
    }

    /// Hashes stored before the reused-memory change (the crate's own hasher) still verify, and ours
    /// verify with the crate's verifier: the format is the same.
    #[test]
    fn same_phc_format_as_the_crates_own_hasher() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::encode_b64(&[7u8; 16]).expect("salt");
        let theirs = argon()
            .hash_password(b"night shift coffee", &salt)
            .expect("hash")
            .to_string();
        assert!(verify("night shift coffee", &theirs));
        assert!(!verify("night shift tea", &theirs));
        let ours = hash("night shift coffee").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("phc");
        assert!(argon().verify_password(b"night shift coffee", &parsed).is_ok());
        // Another cost (an older or site-tuned hash) is read from the string itself.
        let light = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).expect("params"),
        );
        let phc = light
            .hash_password(b"pw for a light hash", &salt)
            .expect("hash")
            .to_string();
        assert!(verify("pw for a light hash", &phc));
    }

    #[test]
    fn rules_are_length_and_common_list_only() {
        assert!(weakness("short", "ann").is_some());
        assert!(weakness("password1", "ann").is_some(), "common");
        assert!(weakness("Qwerty123", "ann").is_some(), "common, any case");
        assert!(weakness("aaaaaaaaaa", "ann").is_some());
        assert!(weakness("ann-at-the-gate", "ann").is_some());
        assert_eq!(
            weakness("lowercase words only here", "ann"),
            None,
            "no composition rules"
        );
        assert_eq!(weakness(&("x".repeat(64) + "y"), "ann"), None, "64+ allowed");
        assert!(weakness(&"xy".repeat(65), "ann").is_some());
    }
}
