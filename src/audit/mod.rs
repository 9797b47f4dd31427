//! The tamper-evident audit log: every guard, admin and operator action is appended with a sequence
//! number, UTC time, actor, role, session, source, action, target and before/after values, chained by
//! SHA-256(previous hash || canonical entry). Checkpoints (sequence + head hash) are signed with the
//! device's ed25519 key (and, with the cloud link, published). [`verify`] names the first bad sequence.

use std::path::Path;

use base64::Engine;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("audit key {path}: {reason}")]
    Key { path: String, reason: String },
}

/// One action to record.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Action {
    pub actor: String,
    pub role: String,
    pub session: Option<String>,
    pub source: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The canonical bytes of an entry: fixed field order, JSON.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    at: i64,
    #[serde(flatten)]
    action: &'a Action,
}

fn canonical(seq: i64, at: i64, a: &Action) -> String {
    serde_json::to_string(&Canonical { seq, at, action: a }).unwrap_or_default()
}

fn chain(prev: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// Appends an action; returns its sequence number.
pub fn append(conn: &mut Connection, a: &Action, now: DateTime<Utc>) -> Result<i64, AuditError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (last_seq, prev): (i64, String) = tx
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
        .unwrap_or((0, GENESIS.to_string()));
    let seq = last_seq + 1;
    let at = now.timestamp_millis();
    let hash = chain(&prev, &canonical(seq, at, a));
    tx.execute(
        "INSERT INTO audit_log (seq, at, actor, role, session, source, action, target, before, after, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![seq, at, a.actor, a.role, a.session, a.source, a.action, a.target, a.before, a.after, prev, hash],
    )?;
    tx.commit()?;
    Ok(seq)
}

fn checkpoint_message(seq: i64, head: &str) -> String {
    format!("gatehouse-audit/1\n{seq}\n{head}\n")
}

/// Signs the current head (sequence + hash) and stores the checkpoint; returns its sequence.
pub fn checkpoint(
    conn: &Connection,
    key: &SigningKey,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<i64>, AuditError> {
    let head: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((seq, hash)) = head else { return Ok(None) };
    let sig = B64.encode(key.sign(checkpoint_message(seq, &hash).as_bytes()).to_bytes());
    conn.execute(
        "INSERT OR REPLACE INTO audit_checkpoints (seq, head_hash, at, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![seq, hash, now.timestamp_millis(), key_id, sig],
    )?;
    Ok(Some(seq))
}

/// The device's checkpoint key (created on first use, 0600, with its public half beside it as `.pub`).
/// Tasks that start together may all find it missing: it is created once, atomically (the whole file
/// appears or none), and whoever loses that race reads the winner's key.
pub fn device_key(path: &Path) -> Result<SigningKey, AuditError> {
    let err = |reason: String| AuditError::Key {
        path: path.display().to_string(),
        reason,
    };
    // Sealed when the data folder is encrypted (a clear one found then is sealed in place).
    let read = || {
        let bytes = crate::secrets::sealed::read_secret(path).map_err(|e| err(e.to_string()))?;
        crate::keyfile::parse_signing(&String::from_utf8_lossy(&bytes)).map_err(|e| err(e.to_string()))
    };
    if std::fs::symlink_metadata(path).is_ok() {
        return read();
    }
    let key = crate::keyfile::generate().map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::secret_file::create_dir_all(dir, 0o750).map_err(|e| err(e.to_string()))?;
    }
    match crate::secrets::sealed::write_new(path, format!("{}\n", B64.encode(key.to_bytes())).as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return read(),
        Err(e) => return Err(err(e.to_string())),
    }
    crate::keyfile::write_public(&path.with_extension("pub"), &key, true).map_err(|e| err(e.to_string()))?;
    Ok(key)
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub entries: i64,
    pub checkpoints: usize,
    /// The first bad sequence number and what is wrong there.
    pub first_bad: Option<(i64, String)>,
}

/// Checks the chain from the start and every checkpoint (signature, and that the chain still reaches it).
pub fn verify(conn: &Connection, key: &VerifyingKey) -> Result<Report, AuditError> {
    let mut st = conn.prepare(
        "SELECT seq, at, actor, role, session, source, action, target, before, after, prev_hash, hash FROM audit_log ORDER BY seq",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            Action {
                actor: r.get(2)?,
                role: r.get(3)?,
                session: r.get(4)?,
                source: r.get(5)?,
                action: r.get(6)?,
                target: r.get(7)?,
                before: r.get(8)?,
                after: r.get(9)?,
            },
            r.get::<_, String>(10)?,
            r.get::<_, String>(11)?,
        ))
    })?;
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_string();
    let mut hashes = std::collections::HashMap::new();
    let mut first_bad = None;
    let mut n = 0;
    for row in rows {
        let (seq, at, a, prev_hash, hash) = row?;
        n += 1;
        if first_bad.is_none() {
            if seq != expected_seq {
                first_bad = Some((expected_seq, format!("entry {expected_seq} is missing (next is {seq})")));
            } else if prev_hash != prev {
                first_bad = Some((
                    seq,
                    "does not link to the entry before it (rows removed or reordered)".into(),
                ));
            } else if chain(&prev, &canonical(seq, at, &a)) != hash {
                first_bad = Some((seq, "content does not match its hash (altered)".into()));
            }
        }
        hashes.insert(seq, hash.clone());
        prev = hash;
        expected_seq = seq + 1;
    }
    let mut cps = conn.prepare("SELECT seq, head_hash, signature FROM audit_checkpoints ORDER BY seq")?;
    let cps: Vec<(i64, String, String)> = cps
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (seq, head, sig) in &cps {
        let sig_ok = B64
            .decode(sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .is_some_and(|b| {
                key.verify_strict(checkpoint_message(*seq, head).as_bytes(), &Signature::from_bytes(&b))
                    .is_ok()
            });
        let last_seq = expected_seq - 1;
        let problem = if !sig_ok {
            Some((*seq, "checkpoint signature is invalid".to_string()))
        } else {
            match hashes.get(seq) {
                None => Some((
                    last_seq + 1,
                    format!("the log ends at {last_seq}, before signed checkpoint {seq} (truncated)"),
                )),
                Some(h) if h != head => Some((*seq, format!("chain no longer matches signed checkpoint {seq}"))),
                _ => None,
            }
        };
        if let Some((at, why)) = problem {
            if first_bad.as_ref().is_none_or(|(s, _)| at < *s) {
                first_bad = Some((at, why));
            }
        }
    }
    Ok(Report {
        entries: n,
        checkpoints: cps.len(),
        first_bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Connection, SigningKey) {
        let dir = tempfile::tempdir().expect("tmp");
        let mut conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        let key = crate::keyfile::generate().expect("key");
        for i in 0..10 {
            let a = Action {
                actor: format!("guard{}", i % 3),
                role: "guard".into(),
                action: "gate.open".into(),
                target: Some("main".into()),
                after: Some(format!("reason {i}")),
                ..Default::default()
            };
            append(&mut conn, &a, Utc::now()).expect("append");
            if i == 7 {
                checkpoint(&conn, &key, "dev", Utc::now()).expect("checkpoint");
            }
        }
        (dir, conn, key)
    }

    #[test]
    fn tasks_starting_together_share_one_device_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join("audit-device.key");
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let keys: Vec<_> = (0..8)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        device_key(&path).map(|k| k.to_bytes())
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().expect("thread"))
                .collect();
            let first = keys[0].as_ref().expect("key");
            for k in &keys {
                assert_eq!(k.as_ref().expect("every task gets the key"), first);
            }
            assert_eq!(device_key(&path).expect("again").to_bytes(), *first);
            let public = crate::keyfile::read_verifying(&path.with_extension("pub")).expect("pub");
            assert_eq!(
                public.to_bytes(),
                SigningKey::from_bytes(first).verifying_key().to_bytes()
            );
        }
    }

    fn bad(conn: &Connection, key: &SigningKey) -> Option<i64> {
        verify(conn, &key.verifying_key())
            .expect("verify")
            .first_bad
            .map(|(s, _)| s)
    }

    #[test]
    fn an_untouched_log_verifies() {
        let (_d, conn, key) = setup();
        let r = verify(&conn, &key.verifying_key()).expect("verify");
        assert_eq!((r.entries, r.checkpoints, r.first_bad), (10, 1, None));
    }

    #[test]
    fn a_flipped_byte_is_found() {
        let (_d, conn, key) = setup();
        conn.execute("UPDATE audit_log SET after = 'reason X' WHERE seq = 4", [])
            .expect("tamper");
        assert_eq!(bad(&conn, &key), Some(4));
    }

    #[test]
    fn a_deleted_row_is_found() {
        let (_d, conn, key) = setup();
        conn.execute("DELETE FROM audit_log WHERE seq = 6", []).expect("tamper");
        assert_eq!(bad(&conn, &key), Some(6));
    }

    #[test]
    fn two_swapped_rows_are_found() {
        let (_d, conn, key) = setup();
        // swap the contents of rows 3 and 5, keeping their sequence numbers
        conn.execute_batch(
            "UPDATE audit_log SET seq = -3 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 5; UPDATE audit_log SET seq = 5 WHERE seq = -3;",
        )
        .expect("tamper");
        assert_eq!(bad(&conn, &key), Some(3));
    }

    #[test]
    fn truncation_below_the_last_checkpoint_is_found() {
        let (_d, conn, key) = setup();
        conn.execute("DELETE FROM audit_log WHERE seq >= 7", [])
            .expect("tamper");
        assert_eq!(bad(&conn, &key), Some(7), "the first missing entry");
        // truncation above the checkpoint cannot be told from a log that just ended: documented limit
    }
}
