//! Stage 4: the access decision. The allowlist lives in SQLite ([`store`]) and is served from an
//! in-memory snapshot ([`SharedAllowlist`]) so a decision never waits on disk; [`decide`] matches a voted
//! read exactly, then across OCR confusions, and returns the action with its reason; [`stage`] adds the
//! rules beyond the match (enough reads, lockdown) and is what the daemon calls.

pub mod allowlist;
pub mod decision;
pub mod entry;
pub mod schedule;
pub mod seal;
pub mod snapshot;
pub mod stage;
pub mod store;

pub use allowlist::{Allowlist, SharedAllowlist};
pub use decision::{decide, Action, Decision, Matched, Reason};
pub use entry::{Entry, Kind};
pub use schedule::Schedule;
pub use seal::PlateKey;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("allowlist: {0}")]
    Invalid(String),
    #[error("allowlist database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("plate key {0}")]
    Key(String),
}

/// Loads the snapshot from the database; `key` matches its sealed (opted-out) entries.
pub fn load_snapshot(conn: &rusqlite::Connection, key: &PlateKey) -> Result<Allowlist, AccessError> {
    let mut list = Allowlist::with_key(store::load_all(conn)?, store::version(conn)?, Some(key.clone()));
    list.issued = store::issued(conn)?;
    Ok(list)
}
