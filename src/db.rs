//! The local SQLite database: one file, WAL journal, `synchronous = FULL` so a committed transaction
//! survives a power cut, `secure_delete` so deleted records (purged, DSAR-deleted, opted-out plates
//! re-listed sealed) are overwritten rather than left in free pages, and schema migrations keyed by
//! `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database {path}: cannot create it: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path}: cannot create its folder: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

const MIGRATIONS: &[&str] = &[
    // 1: allowlist, events, meta
    "CREATE TABLE allowlist (
        plate TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('resident','visitor','vendor','blocked')),
        host TEXT, unit TEXT,
        valid_from INTEGER, valid_until INTEGER,
        schedule TEXT,
        do_not_log INTEGER NOT NULL DEFAULT 0,
        note TEXT,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        lane TEXT NOT NULL,
        at INTEGER NOT NULL,
        first_seen INTEGER,
        plate TEXT,
        confidence REAL,
        chars TEXT,
        alternatives TEXT,
        reads INTEGER,
        action TEXT NOT NULL,
        alert INTEGER NOT NULL DEFAULT 0,
        reason_code TEXT NOT NULL,
        reason TEXT NOT NULL,
        matched_plate TEXT, kind TEXT, host TEXT, unit TEXT,
        crop_path TEXT,
        guard_action TEXT,
        uploaded_at INTEGER
    );
    CREATE INDEX events_at ON events(at);",
    // 2: what happened to the gate command of an opening decision
    "ALTER TABLE events ADD COLUMN gate_result TEXT;",
    // 3: legal holds pause deletion of named records (by event, or every event of a plate)
    "CREATE TABLE legal_holds (
        id INTEGER PRIMARY KEY,
        event_id TEXT,
        plate TEXT,
        reason TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        CHECK (event_id IS NOT NULL OR plate IS NOT NULL)
    );
    CREATE INDEX legal_holds_event ON legal_holds(event_id);
    CREATE INDEX legal_holds_plate ON legal_holds(plate);
    CREATE INDEX events_plate ON events(plate);",
    // 4: the access log of plate-data queries and exports
    "CREATE TABLE access_log (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        query TEXT NOT NULL,
        purpose TEXT NOT NULL
    );",
    // 5: the hash-chained audit log and its signed checkpoints
    "CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        session TEXT,
        source TEXT,
        action TEXT NOT NULL,
        target TEXT,
        before TEXT,
        after TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TABLE audit_checkpoints (
        seq INTEGER PRIMARY KEY,
        head_hash TEXT NOT NULL,
        at INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL
    );",
    // 6: the outbox is the events not uploaded yet; find them without a scan
    "CREATE INDEX events_outbox ON events(uploaded_at) WHERE uploaded_at IS NULL;",
    // 7: panel accounts and sessions (session ids stored as SHA-256 only)
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('guard','supervisor','admin','installer')),
        password TEXT NOT NULL,
        totp_secret TEXT,
        totp_last_step INTEGER NOT NULL DEFAULT 0,
        recovery TEXT NOT NULL DEFAULT '[]',
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        password_changed_at INTEGER NOT NULL
    );
    CREATE TABLE panel_sessions (
        id_hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        stage TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        source TEXT,
        agent TEXT
    );
    CREATE INDEX panel_sessions_user ON panel_sessions(user);",
    // 8: signed cloud commands that ran (each id runs once)
    "CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        action TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        outcome TEXT NOT NULL
    );",
];

/// Opens (creating if needed) the database with the daemon's pragmas and brings the schema up to date.
/// A new database (and its folder) is created private whatever the umask: file 0600 (it holds password
/// hashes and TOTP secrets; SQLite gives its -wal and -shm files the same mode), folder 0750.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::secret_file::create_dir_all(dir, 0o750).map_err(|source| DbError::Folder {
            path: path.display().to_string(),
            source,
        })?;
    }
    create_private(path)?;
    let conn = Connection::open(path).map_err(|source| DbError::Open {
        path: path.display().to_string(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    migrate(&conn)?;
    Ok(conn)
}

/// Creates an empty database file, mode 0600 (given to the folder's owner when root makes it), unless
/// one is there; SQLite would otherwise create it with the umask's mode (0644 for root outside systemd).
fn create_private(path: &Path) -> Result<(), DbError> {
    if std::fs::symlink_metadata(path).is_ok() {
        // Made by an older version (0644 under root's umask): other users lose access, the group keeps it.
        match crate::secret_file::close_to_others(path) {
            Ok(true) => {
                tracing::warn!(path = %path.display(), "the database was readable by every user; closed to others")
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "could not check the database's mode"),
        }
        return Ok(());
    }
    match crate::secret_file::write_new(path, b"") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(DbError::Create {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn migrate(conn: &Connection) -> Result<(), DbError> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("sub/g.db");
        {
            let c = open(&p).expect("open");
            let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("mode");
            assert_eq!(mode, "wal");
        }
        let c = open(&p).expect("reopen");
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).expect("v");
        assert_eq!(v as usize, MIGRATIONS.len());
    }

    #[test]
    fn a_new_database_and_its_folder_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("data/g.db");
        let c = open(&p).expect("open");
        c.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')", [])
            .expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600, "holds TOTP secrets and password hashes");
        let wal = dir.path().join("data/g.db-wal");
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600);
        }
        assert_eq!(mode(&dir.path().join("data")) & 0o027, 0, "folder closed to others");
        drop(c);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        open(&p).expect("reopen");
        assert_eq!(mode(&p), 0o640, "an old world-readable database is closed to others");
    }
}
