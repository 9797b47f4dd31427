//! Passwords: Argon2id (19 MiB, 2 passes: OWASP's minimum), 8 to 128 characters, no composition rules,
//! refused when on the list of common passwords (a built-in list plus an optional site file).

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

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
    if common().contains(&lower) {
        return Some("that password is on the list of common passwords; choose another".into());
    }
    if lower.contains(&user.to_lowercase()) && user.len() >= 3 {
        return Some("the password must not contain the user name".into());
    }
    if lower.chars().all(|c| lower.starts_with(c)) {
        return Some("the password must not be one repeated character".into());
    }
    None
}

/// The PHC string of a password (Argon2id, random salt).
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    crate::panel::random_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether a password matches a stored PHC string.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon().verify_password(password.as_bytes(), &h).is_ok())
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
