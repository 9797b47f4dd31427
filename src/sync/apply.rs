//! Applying a verified envelope: one SQLite transaction (replace the list for a snapshot, upsert/remove
//! for a delta, record version and body hash). The daemon's in-memory snapshot follows the committed
//! database (see `app::reload_allowlist`), so a decision never sees a half-applied list.

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::envelope::{EnvelopeKind, Verified};
use super::SyncError;
use crate::access::{seal, store, PlateKey};
use crate::db::MetaKey;

fn db<E: std::fmt::Display>(e: E) -> SyncError {
    SyncError::Db(e.to_string())
}

/// Applies `v`; returns the number of entries the list now has. Opted-out entries are stored sealed with
/// `key` (the cloud should send them sealed already: docs/protocol.md).
pub fn apply(conn: &mut Connection, v: &Verified, now: DateTime<Utc>, key: &PlateKey) -> Result<usize, SyncError> {
    // IMMEDIATE: take the write lock first, so the checks below hold until the commit.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    // Re-check against the applied version inside the transaction: another writer may have applied
    // something since the envelope was verified.
    let applied = store::version(&tx).map_err(db)?;
    if v.version <= applied {
        return Err(SyncError::NotNewer {
            got: v.version,
            applied,
        });
    }
    if let Some(base) = v.base_version.filter(|_| v.kind == EnvelopeKind::Delta) {
        if base != applied {
            return Err(SyncError::BaseMismatch { base, applied });
        }
    }
    if v.kind == EnvelopeKind::Snapshot {
        tx.execute("DELETE FROM allowlist", []).map_err(db)?;
    }
    let clear = v
        .upsert
        .iter()
        .filter(|e| e.do_not_log && !seal::is_sealed(&e.plate))
        .count();
    if clear > 0 {
        tracing::warn!(
            entries = clear,
            "the cloud sent opted-out plates in clear; stored sealed (the cloud should seal them: docs/protocol.md)"
        );
    }
    store::upsert_in(&tx, &v.upsert, now, key).map_err(db)?;
    for p in &v.remove {
        let sealed = if seal::is_sealed(p) { p.clone() } else { key.seal(p) };
        tx.execute("DELETE FROM allowlist WHERE plate IN (?1, ?2)", [p, &sealed])
            .map_err(db)?;
    }
    for (k, val) in [
        (MetaKey::AllowlistVersion, v.version.to_string()),
        (MetaKey::AllowlistSha256, v.body_sha256.clone()),
        // The list's age counts from when the cloud signed the newest envelope applied (sync::freshness).
        (MetaKey::AllowlistIssued, v.issued.to_rfc3339()),
    ] {
        crate::db::meta_set(&tx, k, &val).map_err(db)?;
    }
    let n: i64 = tx
        .query_row("SELECT count(*) FROM allowlist", [], |r| r.get(0))
        .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Entry, Kind};

    #[test]
    fn snapshot_replaces_and_delta_edits_atomically() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        let key = PlateKey::from_bytes([5; 32]);
        store::upsert(&mut conn, &[Entry::new("OLD111", Kind::Resident)], Utc::now(), &key).expect("seed");
        let snap = Verified {
            kind: EnvelopeKind::Snapshot,
            version: 3,
            base_version: None,
            body_sha256: "aa".into(),
            issued: Utc::now(),
            upsert: vec![
                Entry::new("ABC123", Kind::Resident),
                Entry::new("BLK666", Kind::Blocked),
            ],
            remove: vec![],
        };
        assert_eq!(apply(&mut conn, &snap, Utc::now(), &key), Ok(2));
        assert_eq!(store::version(&conn).expect("v"), 3);
        assert_eq!(
            store::issued(&conn).expect("issued").map(|t| t.timestamp()),
            Some(snap.issued.timestamp()),
            "the list's age counts from the envelope's issue time"
        );
        let delta = Verified {
            kind: EnvelopeKind::Delta,
            version: 4,
            base_version: Some(3),
            body_sha256: "bb".into(),
            issued: Utc::now(),
            upsert: vec![Entry::new("NEW222", Kind::Visitor)],
            remove: vec!["BLK666".into()],
        };
        assert_eq!(apply(&mut conn, &delta, Utc::now(), &key), Ok(2));
        let plates: Vec<String> = store::load_all(&conn)
            .expect("load")
            .into_iter()
            .map(|e| e.plate)
            .collect();
        assert_eq!(plates, vec!["ABC123", "NEW222"]);
        assert_eq!(
            apply(&mut conn, &delta, Utc::now(), &key),
            Err(SyncError::NotNewer { got: 4, applied: 4 })
        );
        // A bad entry rolls the whole envelope back.
        let bad = Verified {
            kind: EnvelopeKind::Snapshot,
            version: 5,
            base_version: None,
            body_sha256: "cc".into(),
            issued: Utc::now(),
            upsert: vec![
                Entry::new("GOOD11", Kind::Resident),
                Entry::new("bad plate", Kind::Resident),
            ],
            remove: vec![],
        };
        assert!(apply(&mut conn, &bad, Utc::now(), &key).is_err());
        assert_eq!(store::version(&conn).expect("v"), 4);
        assert_eq!(store::load_all(&conn).expect("load").len(), 2);
    }
}
