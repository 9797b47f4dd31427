//! Sealed plates: how an opted-out ("do not log") resident's plate is kept without its text.
//!
//! The allowlist stores such an entry under a *sealed id*, `~` + 32 hex digits of
//! HMAC-SHA256(site key, "gatehouse-plate-v1:" + PLATE). The site key is a 32-byte secret in a file of
//! its own (`[privacy] plate_key`, default `<data_dir>/plate.key`, mode 0600), shared with the cloud so
//! the cloud can send opted-out entries already sealed (docs/protocol.md). A read is matched by sealing
//! it (and its plausible OCR-confusion variants) and looking the result up: the plate text itself is
//! never written to the database, the wire or the logs.
//!
//! What this protects: a copy of the database, a log or a capture of the link does not show the plate.
//! What it does not: someone holding both the database and the key file can test guesses one by one
//! (plates are short), which is why the key lives apart from the data and is readable by the service only.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AccessError;

const DOMAIN: &[u8] = b"gatehouse-plate-v1:";
/// `~` + 32 lowercase hex digits.
pub const SEALED_LEN: usize = 33;

/// The site's plate key.
#[derive(Clone)]
pub struct PlateKey([u8; 32]);

impl fmt::Debug for PlateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlateKey(..)")
    }
}

impl PlateKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses the key file's text: 64 hex digits (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        crate::keyfile::parse_hex32(text, "the plate key").map(Self)
    }

    /// Reads the key file, or creates it (random, mode 0600) when it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, AccessError> {
        let bad = |m: String| AccessError::Key(format!("{}: {m}", path.display()));
        // Sealed when the data folder is encrypted (a clear one found then is sealed in place).
        match crate::secrets::sealed::read_secret(path).map(|b| String::from_utf8_lossy(&b).into_owned()) {
            Ok(text) => Self::parse(&text).map_err(|e| {
                bad(format!(
                    "{e}; restore the site's key (the cloud holds a copy) or remove the file to start a new one \
                     (opted-out entries sealed with the old key then need re-adding)"
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| bad(format!("no OS random source: {e}")))?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    crate::secret_file::create_dir_all(dir, 0o750).map_err(|e| bad(e.to_string()))?;
                }
                match crate::secrets::sealed::write_new(path, format!("{}\n", hex::encode(bytes)).as_bytes()) {
                    Ok(()) => {}
                    // Another task made it first (atomically, so it is whole): use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = crate::secrets::sealed::read_secret(path)
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .map_err(|e| bad(e.to_string()))?;
                        return Self::parse(&text).map_err(bad);
                    }
                    Err(e) => return Err(bad(e.to_string())),
                }
                tracing::info!(path = %path.display(), "created the site's plate key (share it with the cloud to sync opted-out entries)");
                Ok(Self(bytes))
            }
            Err(e) => Err(bad(e.to_string())),
        }
    }

    /// The sealed id of a normalised plate.
    pub fn seal(&self, plate: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(plate.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("~{}", hex::encode(&tag[..16]))
    }
}

/// Whether `s` is a sealed id (not a plate).
pub fn is_sealed(s: &str) -> bool {
    s.len() == SEALED_LEN
        && s.starts_with('~')
        && s[1..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks what the allowlist may store as its key: a plate, or a sealed id.
pub fn validate_listed(s: &str) -> Result<(), String> {
    if s.starts_with('~') {
        return if is_sealed(s) {
            Ok(())
        } else {
            Err(format!(
                "{s:?} is not a sealed id (\"~\" followed by 32 lowercase hex digits)"
            ))
        };
    }
    crate::plate::validate(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_is_keyed_stable_and_validated() {
        let k = PlateKey::from_bytes([7; 32]);
        let s = k.seal("ABC123");
        assert!(is_sealed(&s), "{s}");
        assert_eq!(s, k.seal("ABC123"));
        assert_ne!(s, k.seal("ABC124"));
        assert_ne!(s, PlateKey::from_bytes([8; 32]).seal("ABC123"));
        assert!(validate_listed(&s).is_ok());
        assert!(validate_listed("~abc").is_err());
        assert!(validate_listed("ABC123").is_ok());
    }

    #[test]
    fn the_key_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("keys/plate.key");
        let a = PlateKey::load_or_create(&p).expect("create");
        let b = PlateKey::load_or_create(&p).expect("read");
        assert_eq!(a.seal("X1"), b.seal("X1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::write(&p, "nothex").expect("write");
        let e = PlateKey::load_or_create(&p).expect_err("bad key").to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }
}
