//! The last-good allowlist, kept beside the database (`allowlist.last-good.json`, mode 0600). The daemon
//! writes it atomically (new file, fsync, rename, folder fsync) whenever it loads a list from a database
//! that passed its integrity check, and reads it back when the database is empty, damaged or cannot be
//! opened, so the gate keeps deciding on the last list it had (with an alert). Line 1 is the SHA-256 of
//! line 2, the JSON body; a damaged snapshot is refused. Opted-out entries stay sealed, as in the database.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::StoredRow;
use super::{AccessError, Entry};

/// The snapshot file for the database at `db_path`.
pub fn path_for(db_path: &Path) -> PathBuf {
    db_path.with_file_name("allowlist.last-good.json")
}

#[derive(Serialize, Deserialize)]
struct Body {
    format: u32,
    /// When it was written (Unix milliseconds).
    written_at: i64,
    version: u64,
    entries: Vec<StoredRow>,
}

/// A snapshot read back.
#[derive(Debug, Clone)]
pub struct LastGood {
    pub entries: Vec<Entry>,
    pub version: u64,
    pub written_at: Option<DateTime<Utc>>,
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> AccessError {
    AccessError::Invalid(format!("last-good snapshot {}: {what}", path.display()))
}

/// Writes the snapshot of `entries` (as loaded from the database) atomically.
pub fn write(path: &Path, entries: &[Entry], version: u64, now: DateTime<Utc>) -> Result<(), AccessError> {
    let body = serde_json::to_string(&Body {
        format: 1,
        written_at: now.timestamp_millis(),
        version,
        entries: entries.iter().map(StoredRow::of).collect(),
    })
    .map_err(|e| invalid(path, e))?;
    let sum = hex::encode(Sha256::digest(body.as_bytes()));
    // Written whole or not at all, fsynced, 0600, never through a planted link.
    // Sealed when the data folder is encrypted (it names every resident's plate).
    crate::secrets::sealed::replace(path, format!("{sum}\n{body}\n").as_bytes()).map_err(|e| invalid(path, e))
}

/// Puts a last-good list into a new database: its entries and its applied version, in one transaction.
pub fn restore_into(
    conn: &mut rusqlite::Connection,
    last: &LastGood,
    key: &super::PlateKey,
    now: DateTime<Utc>,
) -> Result<(), AccessError> {
    let tx = conn.transaction()?;
    super::store::upsert_in(&tx, &last.entries, now, key)?;
    crate::db::meta_set(&tx, crate::db::MetaKey::AllowlistVersion, &last.version.to_string())?;
    tx.commit()?;
    Ok(())
}

/// Reads and verifies the snapshot.
pub fn read(path: &Path) -> Result<LastGood, AccessError> {
    let bytes = crate::secrets::sealed::read(path).map_err(|e| invalid(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| invalid(path, e))?;
    let (sum, body) = text
        .split_once('\n')
        .ok_or_else(|| invalid(path, "truncated (no checksum line)"))?;
    let body = body.strip_suffix('\n').unwrap_or(body);
    if hex::encode(Sha256::digest(body.as_bytes())) != sum.trim() {
        return Err(invalid(path, "checksum mismatch: the file is damaged"));
    }
    let body: Body = serde_json::from_str(body).map_err(|e| invalid(path, e))?;
    if body.format != 1 {
        return Err(invalid(path, format!("unknown format {}", body.format)));
    }
    let entries = body
        .entries
        .into_iter()
        .map(StoredRow::into_entry)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e))?;
    Ok(LastGood {
        entries,
        version: body.version,
        written_at: DateTime::from_timestamp_millis(body.written_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Kind;

    #[test]
    fn round_trips_and_refuses_a_damaged_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = path_for(&dir.path().join("gatehouse.db"));
        let mut e = Entry::new("ABC123", Kind::Resident);
        e.host = Some("Ana Diaz".into());
        e.schedule = Some(crate::access::Schedule::parse("mon-fri 07:00-19:00").expect("schedule"));
        let entries = vec![e, Entry::new("BLK666", Kind::Blocked)];
        write(&p, &entries, 7, Utc::now()).expect("write");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = read(&p).expect("read");
        assert_eq!(back.entries, entries);
        assert_eq!(back.version, 7);
        // Written again over the old one (atomic replace).
        write(&p, &entries[..1], 8, Utc::now()).expect("rewrite");
        assert_eq!(read(&p).expect("read").entries.len(), 1);
        let text = std::fs::read_to_string(&p).expect("read");
        std::fs::write(&p, text.replace("ABC123", "ABC124")).expect("scribble");
        let err = read(&p).expect_err("damaged").to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
}
