//! Secrets and plate data at rest: one master key, never in clear on the device's disk, from which the
//! keys that lock the data folder are derived.
//!
//! - Where the master key comes from ([`MasterKeySource`], `[secrets]` in the config): a systemd credential
//!   (`LoadCredentialEncrypted=gatehouse-master:/etc/credstore.encrypted/gatehouse-master`, sealed by
//!   `systemd-creds` to the TPM2 where there is one, to the host key otherwise; systemd decrypts it into
//!   `$CREDENTIALS_DIRECTORY`, a non-swappable memory file system, for this service only), or, for
//!   development, a clear file clearly named insecure, which is refused under systemd.
//! - What it locks ([`AtRest`]): the SQLite database (SQLCipher, every page and the WAL, with a raw
//!   256-bit key derived by HKDF-SHA256, so start-up runs no password stretching), and every file the
//!   daemon writes that holds plates or secrets (crops, the spill file, the allowlist snapshot, the plate
//!   key, the audit key, the self-signed panel key), sealed with AES-256-GCM, a random nonce per file
//!   ([`sealed`]). TOTP secrets and password hashes live in the database.
//! - No `[secrets]`: nothing is encrypted, as before; `check-config` and the start-up log say so.
//!
//! A low module: it knows keys and bytes, not what the files are for.

pub mod sealed;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf;

/// The credential name the shipped systemd unit loads (`LoadCredentialEncrypted=`).
pub const DEFAULT_CREDENTIAL: &str = "gatehouse-master";

/// Where the master key comes from (`[secrets]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `credential = "NAME"`: `$CREDENTIALS_DIRECTORY/NAME`, set up by systemd.
    Credential(String),
    /// `insecure_dev_key_file = "PATH"`: a clear file (made on first use); development only.
    InsecureDevFile(PathBuf),
}

impl MasterKeySource {
    pub fn describe(&self) -> String {
        match self {
            Self::Credential(n) => format!("systemd credential {n}"),
            Self::InsecureDevFile(p) => {
                format!("INSECURE development key file {} (refused under systemd)", p.display())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "[secrets] credential = {name:?}: $CREDENTIALS_DIRECTORY is not set (systemd did not load it) and \
         /etc/credstore.encrypted/{name} could not be decrypted here (run as root, or from the unit, which has \
         LoadCredentialEncrypted={name}:...); seal the key once with systemd/seal-master-key.sh (docs/operations.md)"
    )]
    NoCredentials { name: String },
    #[error(
        "[secrets] credential {name:?}: {path} cannot be read ({reason}); seal the key with \
         systemd/seal-master-key.sh and check LoadCredentialEncrypted= in the unit"
    )]
    Credential { name: String, path: String, reason: String },
    #[error(
        "[secrets] insecure_dev_key_file is refused under systemd (INVOCATION_ID is set): a clear key file on the \
         box protects nothing; seal a master key as a credential (systemd/seal-master-key.sh) and set \
         credential = \"{DEFAULT_CREDENTIAL}\" instead"
    )]
    DevUnderSystemd,
    #[error("[secrets] key file {path}: {reason}")]
    DevFile { path: String, reason: String },
    #[error("master key from {source_name}: {reason}")]
    Format { source_name: String, reason: String },
}

/// The keys that lock the data folder, derived from the master key.
pub struct AtRest {
    db_key: [u8; 32],
    file_key: LessSafeKey,
    source: String,
}

impl std::fmt::Debug for AtRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AtRest({})", self.source)
    }
}

impl AtRest {
    /// The keys derived from a 32-byte master key; `source` says where it came from (logs, errors).
    pub fn from_master(master: &[u8; 32], source: &str) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"gatehouse at rest v1").extract(master);
        let derive = |info: &[u8]| -> [u8; 32] {
            let mut out = [0u8; 32];
            let infos = [info];
            // Expanding 32 bytes from SHA-256 cannot fail (the limit is 255 blocks).
            if let Ok(okm) = prk.expand(&infos, hkdf::HKDF_SHA256) {
                let _ = okm.fill(&mut out);
            }
            out
        };
        let file = derive(b"files");
        // A 32-byte key is what AES-256-GCM takes; this cannot fail.
        let file_key = match UnboundKey::new(&AES_256_GCM, &file) {
            Ok(k) => LessSafeKey::new(k),
            Err(_) => unreachable!("AES-256-GCM takes a 32-byte key"),
        };
        Self {
            db_key: derive(b"database"),
            file_key,
            source: source.to_string(),
        }
    }

    /// The SQLCipher key as SQLCipher takes a raw key (`x'HEX'`: no password stretching at open).
    pub fn sqlcipher_raw_key(&self) -> String {
        format!("x'{}'", hex::encode_upper(self.db_key))
    }

    /// The SQLCipher key statement.
    pub fn sqlcipher_key_sql(&self) -> String {
        format!("PRAGMA key = \"{}\";", self.sqlcipher_raw_key())
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn file_key(&self) -> &LessSafeKey {
        &self.file_key
    }
}

static INSTALLED: OnceLock<AtRest> = OnceLock::new();

/// Makes `keys` the process's at-rest keys (once, at start, before any file is opened): the database and
/// every sealed file use them from then on. A second call is ignored (returns false).
pub fn install(keys: AtRest) -> bool {
    INSTALLED.set(keys).is_ok()
}

/// The process's at-rest keys, when the data folder is encrypted.
pub fn installed() -> Option<&'static AtRest> {
    INSTALLED.get()
}

/// Whether this process was started by systemd (it sets `INVOCATION_ID` for every unit it runs).
pub fn under_systemd() -> bool {
    std::env::var_os("INVOCATION_ID").is_some_and(|v| !v.is_empty())
}

/// Reads the master key: from the credential, or the development file (made, random, when missing).
/// `credentials_dir` is `$CREDENTIALS_DIRECTORY`; `systemd` whether systemd started this process.
pub fn load(source: &MasterKeySource, credentials_dir: Option<&Path>, systemd: bool) -> Result<AtRest, SecretsError> {
    match source {
        MasterKeySource::Credential(name) => {
            let Some(dir) = credentials_dir else {
                // By hand on the box (root running `gatehouse user add`, `check-config`): systemd-creds
                // decrypts the same credential the unit loads.
                let what = format!("systemd credential {name} (decrypted with systemd-creds)");
                let bytes = decrypt_stored(name).ok_or_else(|| SecretsError::NoCredentials { name: name.clone() })?;
                return Ok(AtRest::from_master(&parse_master(&bytes, &what)?, &what));
            };
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| SecretsError::Credential {
                name: name.clone(),
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let what = format!("systemd credential {name}");
            Ok(AtRest::from_master(&parse_master(&bytes, &what)?, &what))
        }
        MasterKeySource::InsecureDevFile(path) => {
            if systemd {
                return Err(SecretsError::DevUnderSystemd);
            }
            let what = format!("INSECURE development key file {}", path.display());
            let dev = |reason: String| SecretsError::DevFile {
                path: path.display().to_string(),
                reason,
            };
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut key = [0u8; 32];
                    getrandom::fill(&mut key).map_err(|e| dev(format!("no OS random source: {e}")))?;
                    let text = format!("{}\n", hex::encode(key));
                    match crate::secret_file::write_new(path, text.as_bytes()) {
                        Ok(()) => {
                            tracing::warn!(path = %path.display(), "made an INSECURE development master key: fine for a demo, never for a gate (docs/operations.md: at rest)");
                            text.into_bytes()
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            std::fs::read(path).map_err(|e| dev(e.to_string()))?
                        }
                        Err(e) => return Err(dev(e.to_string())),
                    }
                }
                Err(e) => return Err(dev(e.to_string())),
            };
            Ok(AtRest::from_master(&parse_master(&bytes, &what)?, &what))
        }
    }
}

/// Where the shipped unit keeps its encrypted credentials.
pub const CREDSTORE: &str = "/etc/credstore.encrypted";

/// The credential decrypted by `systemd-creds` from [`CREDSTORE`] (root only: the host key and the TPM
/// are root's), when it is there.
fn decrypt_stored(name: &str) -> Option<Vec<u8>> {
    let path = Path::new(CREDSTORE).join(name);
    if !path.is_file() {
        return None;
    }
    let out = std::process::Command::new("systemd-creds")
        .args(["decrypt", &format!("--name={name}")])
        .arg(&path)
        .arg("-")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// A master key is 32 raw bytes (what `head -c 32 /dev/urandom | systemd-creds encrypt` seals) or 64 hex
/// digits with an optional line end.
pub fn parse_master(bytes: &[u8], what: &str) -> Result<[u8; 32], SecretsError> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Ok(raw);
    }
    let text = std::str::from_utf8(bytes).unwrap_or("");
    crate::keyfile::parse_hex32(text, "the master key").map_err(|reason| SecretsError::Format {
        source_name: what.to_string(),
        reason: format!("{reason}, or exactly 32 raw bytes ({} bytes here)", bytes.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_key_is_32_raw_bytes_or_64_hex_digits() {
        let raw = [7u8; 32];
        assert_eq!(parse_master(&raw, "t").expect("raw"), raw);
        let hexed = format!("{}\n", hex::encode(raw));
        assert_eq!(parse_master(hexed.as_bytes(), "t").expect("hex"), raw);
        let e = parse_master(b"short", "t").expect_err("short").to_string();
        assert!(e.contains("64 hex digits") && e.contains("5 bytes"), "{e}");
    }

    #[test]
    fn a_credential_is_read_from_the_credentials_directory_and_nowhere_else() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = MasterKeySource::Credential("gatehouse-master".into());
        assert!(matches!(
            load(&src, None, true),
            Err(SecretsError::NoCredentials { .. })
        ));
        assert!(matches!(
            load(&src, Some(dir.path()), true),
            Err(SecretsError::Credential { .. })
        ));
        std::fs::write(dir.path().join("gatehouse-master"), [9u8; 32]).expect("cred");
        let a = load(&src, Some(dir.path()), true).expect("loads");
        let b = AtRest::from_master(&[9u8; 32], "x");
        assert_eq!(a.sqlcipher_key_sql(), b.sqlcipher_key_sql(), "same master, same keys");
        assert_ne!(
            a.sqlcipher_key_sql(),
            AtRest::from_master(&[8u8; 32], "x").sqlcipher_key_sql()
        );
    }

    #[test]
    fn the_development_file_is_made_once_and_refused_under_systemd() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("dev-master.key");
        let src = MasterKeySource::InsecureDevFile(path.clone());
        assert!(matches!(load(&src, None, true), Err(SecretsError::DevUnderSystemd)));
        assert!(!path.exists(), "nothing made when refused");
        let a = load(&src, None, false).expect("made");
        let b = load(&src, None, false).expect("read back");
        assert_eq!(a.sqlcipher_key_sql(), b.sqlcipher_key_sql());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
