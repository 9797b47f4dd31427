//! Ed25519 keys as small text files: the private key (base64 of 32 bytes, mode 0600) and the public key
//! (base64 of 32 bytes). `gatehouse keys generate` makes a pair for the cloud; the audit log signs its
//! checkpoints with one; devices trust public keys by id ([`crate::sync::keys::TrustedKeys`]).
//! A low module: it knows files, not what the keys are for.

use std::path::{Path, PathBuf};

use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};

/// A key file that cannot be made or read: which file, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key file {path}: {reason}")]
pub struct KeyFileError {
    pub path: String,
    pub reason: String,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn key_err(path: &Path, reason: impl Into<String>) -> KeyFileError {
    KeyFileError {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Parses a 32-byte secret written as 64 hex digits (surrounding white space ignored); `what` names it
/// in the error (the site's plate key is such a file).
pub fn parse_hex32(text: &str, what: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|_| format!("{what} must be 64 hex digits"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{what} must be 64 hex digits (32 bytes)"))
}

/// A new random signing key.
pub fn generate() -> Result<SigningKey, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyFileError {
        path: "(random)".into(),
        reason: e.to_string(),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `<dir>/<id>.key` (0600) and `<dir>/<id>.pub` (0644); refuses to overwrite anything, a planted
/// symbolic link included (see [`crate::secret_file`]).
pub fn write_pair(dir: &Path, id: &str, key: &SigningKey) -> Result<(PathBuf, PathBuf), KeyFileError> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(key_err(dir, format!("key id {id:?}: use letters, digits, - _ .")));
    }
    crate::secret_file::create_dir_all(dir, 0o750).map_err(|e| key_err(dir, e.to_string()))?;
    let private = dir.join(format!("{id}.key"));
    let public = dir.join(format!("{id}.pub"));
    for p in [&private, &public] {
        // symlink_metadata: a link is "something there" even when it points nowhere.
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(key_err(p, "exists; refusing to overwrite a key"));
        }
    }
    crate::secret_file::write_new(&private, format!("{}\n", B64.encode(key.to_bytes())).as_bytes())
        .map_err(|e| key_err(&private, e.to_string()))?;
    write_public(&public, key, false)?;
    Ok((private, public))
}

/// Writes the public half of `key` to `path` (0644): new only, or replacing what is there (never through
/// a symbolic link either way).
pub fn write_public(path: &Path, key: &SigningKey, replace: bool) -> Result<(), KeyFileError> {
    let text = format!("{}\n", B64.encode(key.verifying_key().to_bytes()));
    let r = if replace {
        crate::secret_file::replace_mode(path, text.as_bytes(), crate::secret_file::PUBLIC)
    } else {
        crate::secret_file::write_new_mode(path, text.as_bytes(), crate::secret_file::PUBLIC)
    };
    r.map_err(|e| key_err(path, e.to_string()))
}

fn read32(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_err(path, e.to_string()))?;
    decode32(&text).map_err(|reason| key_err(path, reason))
}

fn decode32(text: &str) -> Result<[u8; 32], String> {
    let bytes = B64.decode(text.trim()).map_err(|e| format!("not base64: {e}"))?;
    bytes.try_into().map_err(|_| "not a 32-byte ed25519 key".to_string())
}

/// A signing key from a key file's text (read by the caller, e.g. opened from a sealed file).
pub fn parse_signing(text: &str) -> Result<SigningKey, String> {
    Ok(SigningKey::from_bytes(&decode32(text)?))
}

pub fn read_signing(path: &Path) -> Result<SigningKey, KeyFileError> {
    Ok(SigningKey::from_bytes(&read32(path)?))
}

pub fn read_verifying(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    VerifyingKey::from_bytes(&read32(path)?).map_err(|e| key_err(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_written_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = generate().expect("key");
        let (private, public) = write_pair(dir.path(), "cloud-1", &key).expect("write");
        assert_eq!(read_signing(&private).expect("read").to_bytes(), key.to_bytes());
        assert_eq!(read_verifying(&public).expect("read"), key.verifying_key());
        assert!(write_pair(dir.path(), "cloud-1", &key).is_err(), "never overwrites");
    }

    #[test]
    fn a_link_planted_where_the_public_key_goes_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tmp");
        let victim = dir.path().join("etc-passwd");
        std::os::unix::fs::symlink(&victim, dir.path().join("k.pub")).expect("link");
        let key = generate().expect("key");
        assert!(write_pair(dir.path(), "k", &key).is_err());
        assert!(!victim.exists(), "nothing written through the link");
        std::fs::write(&victim, b"root:x:0:0").expect("victim");
        assert!(write_pair(dir.path(), "k", &key).is_err());
        assert_eq!(std::fs::read(&victim).expect("read"), b"root:x:0:0");
    }
}
