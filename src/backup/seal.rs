//! Encryption to a recipient: `GHB1` | ephemeral X25519 public key (32) | nonce (12) | AES-256-GCM
//! ciphertext and tag. The key is HKDF-SHA256 of the X25519 shared secret, salted with both public keys;
//! the header is the authenticated data. Recipient keys are text files: 64 hex digits (the private key
//! `backup.key`, 0600, kept off the box) and 64 hex digits (the public key `backup.pub`, on the box).

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::encoding::{AsBigEndian, Curve25519SeedBin};
use aws_lc_rs::hkdf;

use super::BackupError;

pub const MAGIC: &[u8; 4] = b"GHB1";
const KEY_LEN: usize = 32;

fn crypto(what: &str) -> BackupError {
    BackupError::Crypto(what.to_string())
}

fn derive(secret: &[u8], eph_pub: &[u8], recipient_pub: &[u8]) -> Result<LessSafeKey, BackupError> {
    let mut salt = eph_pub.to_vec();
    salt.extend_from_slice(recipient_pub);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(secret);
    let mut key = [0u8; KEY_LEN];
    prk.expand(&[b"gatehouse backup v1"], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut key))
        .map_err(|_| crypto("key derivation failed"))?;
    let k = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| crypto("bad key"))?;
    Ok(LessSafeKey::new(k))
}

fn header(eph_pub: &[u8], recipient_pub: &[u8]) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(eph_pub);
    h.extend_from_slice(recipient_pub);
    h
}

/// Encrypts `plain` to `recipient` (an X25519 public key).
pub fn encrypt(recipient: &[u8; 32], plain: &[u8]) -> Result<Vec<u8>, BackupError> {
    let eph = PrivateKey::generate(&X25519).map_err(|_| crypto("no random source"))?;
    let eph_pub = eph.compute_public_key().map_err(|_| crypto("key"))?;
    let eph_pub = eph_pub.as_ref().to_vec();
    let secret = agreement::agree(
        &eph,
        UnparsedPublicKey::new(&X25519, recipient),
        crypto("the recipient key is not an X25519 public key"),
        |s| Ok(s.to_vec()),
    )?;
    let key = derive(&secret, &eph_pub, recipient)?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| BackupError::Crypto(e.to_string()))?;
    let mut body = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(header(&eph_pub, recipient)),
        &mut body,
    )
    .map_err(|_| crypto("encryption failed"))?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&eph_pub);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decrypts what [`encrypt`] made for the public half of `private`.
pub fn decrypt(private: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, BackupError> {
    let head = MAGIC.len() + 32 + NONCE_LEN;
    if !sealed.starts_with(MAGIC) || sealed.len() < head + 16 {
        return Err(crypto("not a Gatehouse backup (no GHB1 header, or cut short)"));
    }
    let me = PrivateKey::from_private_key(&X25519, private).map_err(|_| crypto("bad private key"))?;
    let my_pub = me.compute_public_key().map_err(|_| crypto("key"))?;
    let eph_pub = &sealed[MAGIC.len()..MAGIC.len() + 32];
    let secret = agreement::agree(
        &me,
        UnparsedPublicKey::new(&X25519, eph_pub),
        crypto("the backup's key is damaged"),
        |s| Ok(s.to_vec()),
    )?;
    let key = derive(&secret, eph_pub, my_pub.as_ref())?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[MAGIC.len() + 32..head]);
    let mut body = sealed[head..].to_vec();
    let n = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(header(eph_pub, my_pub.as_ref())),
            &mut body,
        )
        .map_err(|_| crypto("the backup does not open with this key (made for another recipient, or damaged)"))?
        .len();
    body.truncate(n);
    Ok(body)
}

/// A new recipient pair: (private, public).
pub fn generate() -> Result<([u8; 32], [u8; 32]), BackupError> {
    let k = PrivateKey::generate(&X25519).map_err(|_| crypto("no random source"))?;
    let seed: Curve25519SeedBin = k.as_be_bytes().map_err(|_| crypto("key"))?;
    let public = k.compute_public_key().map_err(|_| crypto("key"))?;
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    a.copy_from_slice(seed.as_ref());
    b.copy_from_slice(public.as_ref());
    Ok((a, b))
}

/// Writes `<dir>/<id>.key` (0600) and `<dir>/<id>.pub` (0644), never over existing files.
pub fn write_pair(dir: &Path, id: &str) -> Result<(PathBuf, PathBuf), BackupError> {
    let (private, public) = generate()?;
    let file = |p: &Path, e: std::io::Error| BackupError::File {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    crate::secret_file::create_dir_all(dir, 0o700).map_err(|e| file(dir, e))?;
    let (kp, pp) = (dir.join(format!("{id}.key")), dir.join(format!("{id}.pub")));
    crate::secret_file::write_new(&kp, format!("{}\n", hex::encode(private)).as_bytes()).map_err(|e| file(&kp, e))?;
    crate::secret_file::write_new_mode(
        &pp,
        format!("{}\n", hex::encode(public)).as_bytes(),
        crate::secret_file::PUBLIC,
    )
    .map_err(|e| file(&pp, e))?;
    Ok((kp, pp))
}

/// Reads a key file written by [`write_pair`] (either half).
pub fn read_key(path: &Path) -> Result<[u8; 32], BackupError> {
    let text = std::fs::read_to_string(path).map_err(|e| BackupError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    crate::keyfile::parse_hex32(&text, "a backup key").map_err(|e| BackupError::Key(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_a_backup_and_any_change_is_refused() {
        let (private, public) = generate().expect("pair");
        let sealed = encrypt(&public, b"allowlist ABC123").expect("encrypt");
        assert!(!sealed.windows(6).any(|w| w == b"ABC123"));
        assert_eq!(decrypt(&private, &sealed).expect("open"), b"allowlist ABC123");
        let (other, _) = generate().expect("pair");
        assert!(decrypt(&other, &sealed).is_err(), "another recipient");
        for i in [0, 5, 40, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(decrypt(&private, &bad).is_err(), "byte {i} changed");
        }
        assert!(decrypt(&private, &sealed[..20]).is_err());
    }
}
