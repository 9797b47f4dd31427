//! Sealed files: `GHS1` | 12-byte random nonce | AES-256-GCM ciphertext and tag. The authenticated data is
//! the magic and a context (a file's name), so a sealed crop copied over another one's name is refused,
//! not shown. Files written before encryption was switched on (no magic) are read as they are; key files
//! found in clear are sealed in place when read ([`read_secret`]).

use std::io;
use std::path::Path;

use aws_lc_rs::aead::{Aad, Nonce, NONCE_LEN};

use super::{installed, AtRest};

pub const MAGIC: &[u8; 4] = b"GHS1";
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed data is cut short ({0} bytes)")]
    Short(usize),
    #[error(
        "sealed data does not open with this device's key (another device's file, a changed master key, or tampering)"
    )]
    Tampered,
    #[error("the file is sealed but no master key is configured ([secrets] in the config)")]
    NoKey,
    #[error("no OS random source: {0}")]
    Random(String),
}

/// Whether `bytes` start like sealed data.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

fn aad(context: &str) -> Vec<u8> {
    let mut a = MAGIC.to_vec();
    a.extend_from_slice(context.as_bytes());
    a
}

/// Seals `plain` under `keys` for `context`.
pub fn seal(keys: &AtRest, context: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
    let mut buf = Vec::with_capacity(MAGIC.len() + NONCE_LEN + plain.len() + TAG_LEN);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&nonce);
    let mut body = plain.to_vec();
    keys.file_key()
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(context)), &mut body)
        .map_err(|_| SealError::Tampered)?;
    buf.extend_from_slice(&body);
    Ok(buf)
}

/// Opens what [`seal`] made for the same `context`.
pub fn open(keys: &AtRest, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let head = MAGIC.len() + NONCE_LEN;
    if !is_sealed(sealed) || sealed.len() < head + TAG_LEN {
        return Err(SealError::Short(sealed.len()));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[MAGIC.len()..head]);
    let mut body = sealed[head..].to_vec();
    let plain_len = keys
        .file_key()
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad(context)), &mut body)
        .map_err(|_| SealError::Tampered)?
        .len();
    body.truncate(plain_len);
    Ok(body)
}

/// The context of a file: its name (not the folder, so a data folder can move or be restored elsewhere).
pub fn context_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What goes on disk for `plain` at `path`: sealed when the process has at-rest keys, as is otherwise.
pub fn for_disk(path: &Path, plain: &[u8]) -> io::Result<Vec<u8>> {
    match installed() {
        Some(k) => seal(k, &context_of(path), plain).map_err(io::Error::other),
        None => Ok(plain.to_vec()),
    }
}

/// What `on_disk` (read from `path`) holds: opened when sealed, as is when written in clear.
pub fn from_disk(path: &Path, on_disk: Vec<u8>) -> io::Result<Vec<u8>> {
    if !is_sealed(&on_disk) {
        return Ok(on_disk);
    }
    let keys = installed().ok_or_else(|| io::Error::other(SealError::NoKey))?;
    open(keys, &context_of(path), &on_disk).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads a file that may be sealed (crops, snapshots).
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    from_disk(path, std::fs::read(path)?)
}

/// Reads a secret file (a key); one found in clear while the process has at-rest keys is sealed in place
/// first (the clear copy is replaced atomically; flash may keep the old blocks until they are reused).
pub fn read_secret(path: &Path) -> io::Result<Vec<u8>> {
    let on_disk = std::fs::read(path)?;
    if installed().is_some() && !is_sealed(&on_disk) {
        // A key the site keeps elsewhere (read-only under the unit's ProtectSystem=) is used as it is.
        match for_disk(path, &on_disk).and_then(|b| crate::secret_file::replace(path, &b)) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), "sealed a key file that was in clear (encryption at rest is on)")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "a key file in clear could not be sealed in place; using it as it is")
            }
        }
        return Ok(on_disk);
    }
    from_disk(path, on_disk)
}

/// [`crate::secret_file::write_new`], sealed when the process has at-rest keys.
pub fn write_new(path: &Path, plain: &[u8]) -> io::Result<()> {
    crate::secret_file::write_new(path, &for_disk(path, plain)?)
}

/// [`crate::secret_file::replace`], sealed when the process has at-rest keys.
pub fn replace(path: &Path, plain: &[u8]) -> io::Result<()> {
    crate::secret_file::replace(path, &for_disk(path, plain)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> AtRest {
        AtRest::from_master(&[b; 32], "test")
    }

    #[test]
    fn sealed_bytes_open_with_the_same_key_and_context_only() {
        let k = keys(1);
        let s = seal(&k, "a.jpg", b"plate ABC123").expect("seal");
        assert!(is_sealed(&s));
        assert!(!s.windows(6).any(|w| w == b"ABC123"), "no clear text");
        assert_eq!(open(&k, "a.jpg", &s).expect("open"), b"plate ABC123");
        assert!(
            matches!(open(&k, "b.jpg", &s), Err(SealError::Tampered)),
            "another name"
        );
        assert!(
            matches!(open(&keys(2), "a.jpg", &s), Err(SealError::Tampered)),
            "another key"
        );
        let mut flipped = s.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(open(&k, "a.jpg", &flipped), Err(SealError::Tampered)));
        assert!(matches!(open(&k, "a.jpg", &s[..10]), Err(SealError::Short(10))));
        let again = seal(&k, "a.jpg", b"plate ABC123").expect("seal");
        assert_ne!(again, s, "a fresh nonce each time");
    }
}
