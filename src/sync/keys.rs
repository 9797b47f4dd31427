//! The public keys a device trusts, by id (more than one during a key rotation), and signature checks
//! against them. The key files themselves are [`crate::keyfile`]'s.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;

pub use crate::keyfile::{generate, read_signing, read_verifying, write_pair, write_public};

use super::SyncError;

/// Trusted public keys by id (more than one during a key rotation).
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(pub HashMap<String, VerifyingKey>);

impl TrustedKeys {
    pub fn add(&mut self, id: &str, key: VerifyingKey) {
        self.0.insert(id.to_string(), key);
    }

    pub fn get(&self, id: &str) -> Option<&VerifyingKey> {
        self.0.get(id)
    }

    /// Checks a base64 ed25519 `signature` of `message` by the trusted key `key_id` (strict verification).
    pub fn verify(&self, key_id: &str, signature: &str, message: &[u8]) -> Result<(), SyncError> {
        use base64::Engine;
        let key = self
            .get(key_id)
            .ok_or_else(|| SyncError::UnknownKey(key_id.to_string()))?;
        let sig: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(signature.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SyncError::BadSignature(key_id.to_string()))?;
        key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| SyncError::BadSignature(key_id.to_string()))
    }

    /// Reads every configured key file (`[sync] trusted_keys`).
    pub fn load(list: &[(String, std::path::PathBuf)]) -> Result<Self, SyncError> {
        let mut keys = Self::default();
        for (id, path) in list {
            keys.add(id, read_verifying(path)?);
        }
        Ok(keys)
    }
}
