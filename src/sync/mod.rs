//! Cloud sync: the signed allowlist envelope (make, verify, apply) and signed DSAR commands, carried by
//! the MQTT link. The verifier is pure and strict: a payload is applied only if it is
//! well-formed, within size, signed by a trusted key, for this device, issued no later than now (give or
//! take [`envelope::ISSUED_SKEW`]), not expired and not valid for longer than its cap, newer than the
//! applied list and (for a delta) based on exactly the applied version. [`freshness`] says when the
//! applied list has grown older than `[sync] allowlist_max_age_hours`.

pub mod apply;
pub mod chunk;
pub mod command;
pub mod envelope;
pub mod freshness;
pub mod keys;
pub mod link;
pub mod mqtt;
pub mod pairing;
pub(crate) mod tls;
pub mod topics;

pub use envelope::{Envelope, EnvelopeKind, ListBody, Verified};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SyncError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("envelope of {size} bytes is over the {limit}-byte limit")]
    Oversized { size: usize, limit: usize },
    #[error("envelope signed with unknown key {0:?}")]
    UnknownKey(String),
    #[error("bad signature (key {0:?})")]
    BadSignature(String),
    #[error("envelope is for {got:?}, this device is {expected:?}")]
    WrongAudience { expected: String, got: String },
    #[error("envelope expired at {0}")]
    Expired(String),
    #[error("{0}")]
    Lifetime(String),
    #[error("envelope version {got} is not newer than the applied version {applied} (replay or rollback)")]
    NotNewer { got: u64, applied: u64 },
    #[error("delta is based on version {base}, the applied version is {applied}: a snapshot is needed")]
    BaseMismatch { base: u64, applied: u64 },
    #[error("body does not match its sha256 (tampered)")]
    BodyHash,
    #[error("body: {0}")]
    Body(String),
    #[error("key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("database: {0}")]
    Db(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("command {0} already ran (replay)")]
    AlreadyRan(String),
}

impl From<crate::keyfile::KeyFileError> for SyncError {
    fn from(e: crate::keyfile::KeyFileError) -> Self {
        SyncError::Key {
            path: e.path,
            reason: e.reason,
        }
    }
}
