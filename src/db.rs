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
    #[error(
        "database {path} is empty (0 bytes): it was truncated or never written, and an empty allowlist would deny \
         every resident. Restore it from a backup, or move it aside to start a new database (the allowlist then \
         comes from the last-good snapshot beside it or the next sync)"
    )]
    Empty { path: String },
    #[error(
        "database {path} is not a SQLite database (it starts with {head:?}): point [site] data_dir at the right \
         folder, or restore the file from a backup"
    )]
    Foreign { path: String, head: String },
    #[error(
        "database {path} is damaged ({detail}): stop the daemon and restore it from a backup, or move it aside to \
         start a new one (the allowlist then comes from the last-good snapshot beside it)"
    )]
    Damaged { path: String, detail: String },
    #[error(
        "database {path} does not open with this device's key ({source_name}): the master key changed, or the file \
         comes from another device. Restore the credential that sealed it, or restore the database from a backup"
    )]
    WrongKey { path: String, source_name: String },
    #[error("database {path}: encrypting it (it was written in clear) failed: {reason}; the clear file is untouched")]
    Encrypt { path: String, reason: String },
    #[error("database {path}: cannot read it: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl DbError {
    /// Whether this looks like a full file system (SQLITE_FULL, an I/O error while writing, ENOSPC).
    pub fn is_full(&self) -> bool {
        match self {
            DbError::Open { source, .. } | DbError::Sql(source) => sql_is_full(source),
            DbError::Folder { source, .. } | DbError::Read { source, .. } => {
                source.raw_os_error() == Some(libc::ENOSPC)
            }
            _ => false,
        }
    }
}

/// Whether a SQLite error means the disk (or the database's page limit) is full. A write that fails with
/// ENOSPC inside the WAL or its index shows as a generic I/O error, so those count too.
pub fn sql_is_full(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DiskFull) | Some(rusqlite::ErrorCode::SystemIoFailure)
    )
}

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses a file where a database is expected that is empty (0 bytes) or not SQLite at all. A missing
/// file is fine: [`open`] creates it.
pub fn check_file(path: &Path) -> Result<(), DbError> {
    use std::io::Read;
    let shown = || path.display().to_string();
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(DbError::Read { path: shown(), source }),
    };
    let mut head = Vec::with_capacity(16);
    (&mut f)
        .take(16)
        .read_to_end(&mut head)
        .map_err(|source| DbError::Read { path: shown(), source })?;
    if head.is_empty() {
        return Err(DbError::Empty { path: shown() });
    }
    // An encrypted database starts with its random salt, not the header; its key is checked at open.
    if head.as_slice() != SQLITE_HEADER && crate::secrets::installed().is_none() {
        return Err(DbError::Foreign {
            path: shown(),
            head: String::from_utf8_lossy(&head).into_owned(),
        });
    }
    Ok(())
}

/// `PRAGMA quick_check` (a few seconds at most; run at start): the file's pages and records are well
/// formed. `PRAGMA integrity_check` (`full`, for `gatehouse check-config`) also checks every index.
pub fn check_integrity(conn: &Connection, path: &Path, full: bool) -> Result<(), DbError> {
    let pragma = if full {
        "PRAGMA integrity_check(5)"
    } else {
        "PRAGMA quick_check(5)"
    };
    let damaged = |detail: String| DbError::Damaged {
        path: path.display().to_string(),
        detail,
    };
    let rows: Vec<String> = conn
        .prepare(pragma)
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(|e| classify(path, e))?;
    match rows.as_slice() {
        [one] if one == "ok" => Ok(()),
        [] => Err(damaged("the check returned nothing".into())),
        rows => Err(damaged(rows.join("; "))),
    }
}

/// Names a damaged or foreign file for what it is; other errors pass through.
fn classify(path: &Path, e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => DbError::Damaged {
            path: path.display().to_string(),
            detail: e.to_string(),
        },
        Some(rusqlite::ErrorCode::NotADatabase) if crate::secrets::installed().is_some() => DbError::WrongKey {
            path: path.display().to_string(),
            source_name: crate::secrets::installed()
                .map(|k| k.source().to_string())
                .unwrap_or_default(),
        },
        Some(rusqlite::ErrorCode::NotADatabase) => DbError::Foreign {
            path: path.display().to_string(),
            head: "(unreadable header)".into(),
        },
        _ => DbError::Sql(e),
    }
}

/// The alert raised while the database cannot be used and the gate decides on the last-good allowlist.
pub const ALERT_DATABASE: &str = "database";

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
/// An existing file that is empty or not SQLite is refused (see [`check_file`]).
pub fn open(path: &Path) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::secret_file::create_dir_all(dir, 0o750).map_err(|source| DbError::Folder {
            path: path.display().to_string(),
            source,
        })?;
    }
    check_file(path)?;
    create_private(path)?;
    if crate::secrets::installed().is_some() && starts_in_clear(path)? {
        encrypt_in_place(path)?;
    }
    let conn = connect(path)?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        Ok(())
    };
    setup().map_err(|e| classify(path, e))?;
    migrate(&conn).map_err(|e| match e {
        DbError::Sql(e) => classify(path, e),
        other => other,
    })?;
    Ok(conn)
}

/// Opens the file with the process's at-rest key when there is one (SQLCipher: the key statement must
/// come first), without pragmas or migrations: what `check-config` and [`open`] build on.
pub fn connect(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open(path).map_err(|source| DbError::Open {
        path: path.display().to_string(),
        source,
    })?;
    if let Some(keys) = crate::secrets::installed() {
        conn.execute_batch(&keys.sqlcipher_key_sql())
            .map_err(|e| classify(path, e))?;
        // The key is only tried on the first read.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(|e| classify(path, e))?;
    }
    Ok(conn)
}

/// Whether the file holds a database written in clear (its header; an empty new file does not count).
pub fn starts_in_clear(path: &Path) -> Result<bool, DbError> {
    use std::io::Read;
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|source| DbError::Read {
            path: path.display().to_string(),
            source,
        })?;
    Ok(head.as_slice() == SQLITE_HEADER)
}

/// Serializes the switch from clear to encrypted within this process (tasks open the database together).
static ENCRYPTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Rewrites a database written in clear as an encrypted one (`sqlcipher_export`), then moves it into place:
/// the clear file stays whole until the encrypted one is complete and synced. Run once, when encryption
/// at rest is switched on; stop other processes using the file first (docs/operations.md).
fn encrypt_in_place(path: &Path) -> Result<(), DbError> {
    let _one = ENCRYPTING.lock().unwrap_or_else(|p| p.into_inner());
    if !starts_in_clear(path)? {
        return Ok(()); // another task did it
    }
    let Some(keys) = crate::secrets::installed() else {
        return Ok(());
    };
    let fail = |reason: String| DbError::Encrypt {
        path: path.display().to_string(),
        reason,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".encrypting");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    {
        let plain = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        plain
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| fail(e.to_string()))?;
        let version: i64 = plain
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| fail(e.to_string()))?;
        let raw = keys.sqlcipher_raw_key();
        let tmp_s = tmp.to_str().ok_or_else(|| fail("the path is not UTF-8".into()))?;
        plain
            .execute("ATTACH DATABASE ?1 AS encrypted KEY ?2", rusqlite::params![tmp_s, raw])
            .map_err(|e| fail(e.to_string()))?;
        plain
            .query_row("SELECT sqlcipher_export('encrypted')", [], |_| Ok(()))
            .map_err(|e| fail(e.to_string()))?;
        plain
            .execute_batch(&format!(
                "PRAGMA encrypted.user_version = {version}; DETACH DATABASE encrypted;"
            ))
            .map_err(|e| fail(e.to_string()))?;
    }
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail(e.to_string()))?;
    // The clear file's WAL and index belong to it: gone before the encrypted file takes its name.
    for ext in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(ext);
        let _ = std::fs::remove_file(std::path::PathBuf::from(p));
    }
    std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    tracing::warn!(path = %path.display(), "encrypted the database, which was in clear (encryption at rest is on); free blocks of the old file may stay on flash until reused");
    Ok(())
}

/// [`open`], then a quick integrity check: what the daemon does at start and before it writes to a file
/// it could not use earlier.
pub fn open_checked(path: &Path) -> Result<Connection, DbError> {
    let conn = open(path)?;
    check_integrity(&conn, path, false)?;
    Ok(conn)
}

/// Creates an empty database file, mode 0600 (given to the folder's owner when root makes it), unless
/// one is there; SQLite would otherwise create it with the umask's mode (0644 for root outside systemd).
fn create_private(path: &Path) -> Result<(), DbError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            // A symbolic link (planted by whoever owns the folder) would make SQLite, run as root by
            // `gatehouse user add`, write wherever it points.
            return Err(DbError::Create {
                path: path.display().to_string(),
                source: std::io::Error::other(
                    "it is a symbolic link or not a regular file; move it away and give the database's real path",
                ),
            });
        }
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

/// A key of the `meta` table (one text value each). This is the one place that names them; read and
/// write them with [`meta_get`] and [`meta_set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// Version of the applied allowlist.
    AllowlistVersion,
    /// sha256 of the applied allowlist's body (hex), as signed by the cloud.
    AllowlistSha256,
    /// When the cloud signed the newest envelope applied (RFC 3339): the list's age counts from it.
    AllowlistIssued,
    /// When the cloud last acknowledged an event (Unix milliseconds).
    OutboxLastUpload,
    /// The last envelope refused, and why (JSON).
    SyncLastRejection,
    /// The cloud link's state as last recorded (JSON).
    SyncLink,
    /// Lanes' regions of interest saved on the panel's setup page (JSON: lane -> region); they override
    /// the config's `roi` at start.
    LaneRegions,
}

impl MetaKey {
    pub fn as_str(self) -> &'static str {
        match self {
            MetaKey::AllowlistVersion => "allowlist_version",
            MetaKey::AllowlistSha256 => "allowlist_sha256",
            MetaKey::AllowlistIssued => "allowlist_issued",
            MetaKey::OutboxLastUpload => "outbox_last_upload",
            MetaKey::SyncLastRejection => "sync_last_rejection",
            MetaKey::SyncLink => "sync_link",
            MetaKey::LaneRegions => "lane_regions",
        }
    }
}

/// The value of `key`, `None` when it was never written.
pub fn meta_get(conn: &Connection, key: MetaKey) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key.as_str()], |r| r.get(0))
        .optional()
}

/// Writes `key` (inside the caller's transaction when `conn` is one).
pub fn meta_set(conn: &Connection, key: MetaKey, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        [key.as_str(), value],
    )
    .map(|_| ())
}

/// Opens the database for a background loop. One that was usable at start is opened as it is (an error
/// turns the loop off: `what` names it in the log); one that was not is tried every `retry` until it
/// passes the quick check. `None` when the loop is off or cancelled.
pub fn open_when_usable(
    path: &std::path::Path,
    db_ok: bool,
    what: &str,
    retry: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> Option<rusqlite::Connection> {
    loop {
        let opened = if db_ok { open(path) } else { open_checked(path) };
        match opened {
            Ok(c) => return Some(c),
            Err(e) if db_ok => {
                tracing::error!(error = %e, "{what} disabled");
                return None;
            }
            Err(_) => {
                let until = std::time::Instant::now() + retry;
                while !cancel.is_cancelled() && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if cancel.is_cancelled() {
                    return None;
                }
            }
        }
    }
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

    #[test]
    fn an_empty_or_foreign_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tmp");
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").expect("write");
        let err = open(&empty).expect_err("empty");
        assert!(matches!(err, DbError::Empty { .. }), "{err}");
        assert!(err.to_string().contains("empty.db is empty (0 bytes)"), "{err}");
        assert_eq!(
            std::fs::metadata(&empty).expect("meta").len(),
            0,
            "not turned into a new database"
        );
        let foreign = dir.path().join("foreign.db");
        std::fs::write(&foreign, b"plate,kind\nABC123,resident\n").expect("write");
        let err = open(&foreign).expect_err("foreign");
        assert!(matches!(err, DbError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("not a SQLite database"), "{err}");
    }

    /// Fills the events table, then overwrites its pages (as the fault run did) with garbage.
    pub(crate) fn scribble_events_table(path: &Path) {
        {
            let c = open(path).expect("open");
            for i in 0..400 {
                c.execute(
                    "INSERT INTO events (id, lane, at, action, reason_code, reason, plate)
                     VALUES (?1, 'entry', ?2, 'deny', 'unknown', 'not on the allowlist', 'ABC123')",
                    rusqlite::params![format!("e{i:05}"), i],
                )
                .expect("insert");
            }
            c.pragma_update(None, "wal_checkpoint", "TRUNCATE").expect("checkpoint");
        }
        let (root, page, pages): (i64, i64, i64) = {
            let c = Connection::open(path).expect("open");
            let root = c
                .query_row("SELECT rootpage FROM sqlite_master WHERE name = 'events'", [], |r| {
                    r.get(0)
                })
                .expect("root");
            let page = c.pragma_query_value(None, "page_size", |r| r.get(0)).expect("size");
            let pages = c.pragma_query_value(None, "page_count", |r| r.get(0)).expect("count");
            (root, page, pages)
        };
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(path).expect("open file");
        // The table's root page and the pages after it (its leaves), not the schema on page 1.
        for p in root..(root + 8).min(pages + 1) {
            f.write_all_at(&vec![0xA5; page as usize], ((p - 1) * page) as u64)
                .expect("scribble");
        }
        f.sync_all().expect("sync");
    }

    #[test]
    fn a_scribbled_events_table_fails_the_quick_check() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("g.db");
        scribble_events_table(&p);
        // It still opens (the schema is intact): only the check finds it.
        let c = open(&p).expect("opens");
        let err = check_integrity(&c, &p, false).expect_err("damaged");
        assert!(matches!(err, DbError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("is damaged"), "{err}");
        let err = open_checked(&p).expect_err("damaged");
        assert!(matches!(err, DbError::Damaged { .. }), "{err}");
        assert!(check_integrity(&c, &p, true).is_err());
        let good = dir.path().join("good.db");
        let c = open_checked(&good).expect("a healthy file passes");
        check_integrity(&c, &good, true).expect("full check");
    }

    #[test]
    fn meta_values_are_read_back_by_their_typed_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = open(&dir.path().join("g.db")).expect("open");
        assert_eq!(meta_get(&c, MetaKey::SyncLink).expect("read"), None);
        meta_set(&c, MetaKey::SyncLink, "{\"state\":\"online\"}").expect("write");
        meta_set(&c, MetaKey::AllowlistVersion, "7").expect("write");
        meta_set(&c, MetaKey::AllowlistVersion, "8").expect("overwrite");
        assert_eq!(
            meta_get(&c, MetaKey::AllowlistVersion).expect("read").as_deref(),
            Some("8")
        );
        assert_eq!(
            meta_get(&c, MetaKey::SyncLink).expect("read").as_deref(),
            Some("{\"state\":\"online\"}")
        );
    }
}
