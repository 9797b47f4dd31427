//! Gate events: every decided pass becomes one event (UUIDv7 id, lane, UTC time, plate, confidences,
//! decision and reason, matched entry, crop) committed to SQLite by a single writer thread. A crop is
//! written (and synced) before the row that points at it; a row is reported "committed" only after its
//! transaction commits with `synchronous = FULL`, so a kill -9 or power cut never loses it. A decided
//! event is never dropped: while the database cannot take it, it is held in memory and in a spill file
//! (see [`store`] and [`spill`]).

pub mod access_log;
pub mod dsar;
pub mod outbox;
mod record;
pub mod retention;
pub mod spill;
pub mod storage;
mod store;

pub use record::GateEvent;
pub use store::{
    list_recent, spawn_writer, EventRow, EventSink, StoredEvent, WriterOptions, WriterStats, ALERT_UNSTORED, MAX_HELD,
};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("events database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("crop {path}: {source}")]
    Crop {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("event writer has stopped")]
    Stopped,
    #[error("a stated purpose is required to query or export plate data (--purpose \"...\")")]
    Purpose,
}
