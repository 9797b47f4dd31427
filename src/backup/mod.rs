//! Backup and restore of a site: what a fresh box needs to take over a gate.
//!
//! A backup is made online, from one read transaction (a consistent snapshot while the daemon runs: the
//! WAL lets it write on), and holds the allowlist, the users (password hashes, TOTP secrets, recovery
//! codes), the audit log with its signed checkpoints, legal holds, the access log, processed cloud
//! commands, the meta table (allowlist version, sync state), the config file, the plate key and the
//! audit key, and optionally the events. It is encrypted to a recipient's X25519 public key: an
//! ephemeral key agreement, HKDF-SHA256, AES-256-GCM (`GHB1` | ephemeral public key | nonce | ciphertext),
//! so the box that makes backups cannot read them back; only whoever holds the private key (the office,
//! the cloud) can restore. Panel sessions are never backed up.
//!
//! A restore goes onto a fresh data folder, refuses a backup of another site unless told, writes the
//! rows into the current schema (a backup from an older version restores into a newer one), puts the
//! keys back (sealed when the data folder is encrypted) and verifies the audit chain and its signatures.

pub mod seal;

use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::{DateTime, Utc};
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

/// Tables a backup holds, in the order a restore writes them. `events` only when asked.
pub const TABLES: &[&str] = &[
    "meta",
    "allowlist",
    "users",
    "legal_holds",
    "access_log",
    "audit_log",
    "audit_checkpoints",
    "commands",
];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup: database: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("backup: database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("backup file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("backup: {0}")]
    Crypto(String),
    #[error("backup contents: {0}")]
    Invalid(String),
    #[error(
        "this backup is of site {backup:?}, this box is configured as {here:?}: restoring it would give this gate \
         another site's residents and users. Check the config's [site] name and [sync] device, or pass \
         --other-site if this box really takes over that site"
    )]
    OtherSite { backup: String, here: String },
    #[error(
        "the data folder {path} is not fresh ({what}): restore onto a fresh box, or stop the daemon and move the \
         data folder aside first"
    )]
    NotFresh { path: String, what: String },
    #[error("the restored audit log does not verify: {0}")]
    Audit(String),
    #[error("backup: {0}")]
    Key(String),
}

/// One table's rows.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// What a backup holds (the encrypted body).
#[derive(Debug, Serialize, Deserialize)]
pub struct Contents {
    pub format: u32,
    pub made_at: DateTime<Utc>,
    pub version: String,
    /// `[site] name`, and `[sync] device` when there is one: which site this is.
    pub site: String,
    pub device: Option<String>,
    pub config: String,
    /// The site's plate key (hex) and the device's audit key (base64), as their files hold them.
    pub plate_key: Option<String>,
    pub audit_key: Option<String>,
    pub schema_version: i64,
    pub with_events: bool,
    pub tables: Vec<(String, Table)>,
}

impl Contents {
    /// Rows per table (what `backup` and `restore` print).
    pub fn counts(&self) -> String {
        self.tables
            .iter()
            .map(|(n, t)| format!("{n} {}", t.rows.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn to_json(v: ValueRef<'_>) -> serde_json::Value {
    match v {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => serde_json::json!(i),
        ValueRef::Real(f) => serde_json::json!(f),
        ValueRef::Text(t) => serde_json::json!(String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => serde_json::json!({ "blob": base64::engine::general_purpose::STANDARD.encode(b) }),
    }
}

fn from_json(v: &serde_json::Value) -> Result<Value, String> {
    Ok(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(*b as i64),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().ok_or("a number out of range")?),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        serde_json::Value::Object(o) => match o.get("blob").and_then(|b| b.as_str()) {
            Some(b) => Value::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| e.to_string())?,
            ),
            None => return Err("an object that is not a blob".into()),
        },
        serde_json::Value::Array(_) => return Err("an array where a value goes".into()),
    })
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Reads the tables from one read transaction (consistent while the daemon writes on).
pub fn dump(conn: &mut Connection, with_events: bool) -> Result<(i64, Vec<(String, Table)>), BackupError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut names: Vec<&str> = TABLES.to_vec();
    if with_events {
        names.push("events");
    }
    let mut out = Vec::new();
    for name in names {
        if !table_exists(&tx, name)? {
            continue;
        }
        // Names come from TABLES, never from input.
        let mut st = tx.prepare(&format!("SELECT * FROM {name}"))?;
        let columns: Vec<String> = st.column_names().map(|c| c.to_string()).collect();
        let n = columns.len();
        let rows = st
            .query_map([], |r| (0..n).map(|i| r.get_ref(i).map(to_json)).collect())?
            .collect::<Result<Vec<Vec<_>>, _>>()?;
        out.push((name.to_string(), Table { columns, rows }));
    }
    tx.finish()?;
    Ok((version, out))
}

/// Whether the database already holds a site (anything in the tables a restore fills).
pub fn holds_a_site(conn: &Connection) -> Result<Option<String>, BackupError> {
    for name in ["allowlist", "users", "audit_log", "events"] {
        if table_exists(conn, name)? {
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {name}"), [], |r| r.get(0))?;
            if n > 0 {
                return Ok(Some(format!("{n} rows in {name}")));
            }
        }
    }
    Ok(None)
}

/// Writes the backed-up rows into `conn` (the current schema), in one transaction. Columns the current
/// schema lacks are refused by name; columns it added keep their defaults.
pub fn load(conn: &mut Connection, tables: &[(String, Table)]) -> Result<usize, BackupError> {
    let tx = conn.transaction()?;
    let mut n = 0;
    for (name, t) in tables {
        if !TABLES.contains(&name.as_str()) && name != "events" {
            return Err(BackupError::Invalid(format!("unknown table {name:?} in the backup")));
        }
        if t.columns.is_empty()
            || !t
                .columns
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
        {
            return Err(BackupError::Invalid(format!("table {name}: bad column names")));
        }
        // The meta row a fresh database already has (the schema) is replaced by the backup's.
        let verb = if name == "meta" { "INSERT OR REPLACE" } else { "INSERT" };
        let sql = format!(
            "{verb} INTO {name} ({}) VALUES ({})",
            t.columns.join(", "),
            (1..=t.columns.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut st = tx.prepare(&sql)?;
        for row in &t.rows {
            let values = row
                .iter()
                .map(from_json)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BackupError::Invalid(format!("table {name}: {e}")))?;
            st.execute(rusqlite::params_from_iter(values))?;
            n += 1;
        }
    }
    tx.commit()?;
    Ok(n)
}

/// Reads a file the backup takes whole (the config, a key file): opened when sealed.
pub fn read_text(path: &Path) -> Result<Option<String>, BackupError> {
    match crate::secrets::sealed::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Writes the backup file (new only, 0600).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    crate::secret_file::write_new(path, bytes).map_err(|e| BackupError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The key files a restore puts back: (plate key, audit key) paths.
pub fn key_paths(plate_key: PathBuf, data_dir: &Path) -> (PathBuf, PathBuf) {
    (plate_key, data_dir.join("audit-device.key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_through_a_fresh_database_blobs_and_nulls_included() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut a = crate::db::open(&dir.path().join("a.db")).expect("db");
        a.execute(
            "INSERT INTO allowlist (plate, kind, host, unit, do_not_log, updated_at) VALUES ('ABC123', 'resident', 'Ana', NULL, 0, 5)",
            [],
        )
        .expect("insert");
        a.execute("INSERT INTO meta (key, value) VALUES ('blob_test', 'v')", [])
            .expect("meta");
        let (version, tables) = dump(&mut a, false).expect("dump");
        assert!(version > 0);
        assert!(tables.iter().all(|(n, _)| n != "events"), "no events unless asked");
        let mut b = crate::db::open(&dir.path().join("b.db")).expect("db");
        assert_eq!(holds_a_site(&b).expect("fresh"), None);
        load(&mut b, &tables).expect("load");
        let (_, again) = dump(&mut b, false).expect("dump");
        assert_eq!(again, tables);
        assert!(holds_a_site(&b).expect("q").is_some());
        assert!(load(&mut b, &tables).is_err(), "not onto rows already there");
    }

    #[test]
    fn values_survive_json() {
        for v in [
            Value::Null,
            Value::Integer(-5),
            Value::Real(0.25),
            Value::Text("x".into()),
            Value::Blob(vec![0, 255, 7]),
        ] {
            let j = to_json(ValueRef::from(&v));
            assert_eq!(from_json(&j).expect("back"), v);
        }
        assert!(from_json(&serde_json::json!([1])).is_err());
    }
}
