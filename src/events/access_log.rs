//! The access log (California Civ. Code 1798.90.52): every query or export of plate data records who,
//! when, what and why. The CLI requires a stated purpose; the panel will too.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::EventError;

/// Records one access. An empty purpose is refused.
pub fn record(
    conn: &Connection,
    actor: &str,
    action: &str,
    query: &str,
    purpose: &str,
    now: DateTime<Utc>,
) -> Result<(), EventError> {
    if purpose.trim().len() < 3 {
        return Err(EventError::Purpose);
    }
    conn.execute(
        "INSERT INTO access_log (at, actor, action, query, purpose) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now.timestamp_millis(), actor, action, query, purpose.trim()],
    )?;
    Ok(())
}

/// How a plate is named in the access and audit logs: its sealed id when it belongs to an opted-out
/// resident (their plate text is never written), else the plate.
pub fn plate_as_logged(
    conn: &Connection,
    plate_text: &str,
    key: &crate::access::PlateKey,
) -> Result<String, crate::access::AccessError> {
    Ok(match crate::access::store::get(conn, plate_text, key)? {
        Some(e) if e.do_not_log => e.plate,
        _ => plate_text.to_string(),
    })
}

/// Who is asking (the OS user; `sudo` keeps the original one).
pub fn current_actor() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}

/// One access: when, who, what action, which query, why.
pub type AccessEntry = (DateTime<Utc>, String, String, String, String);

/// The log, newest first.
pub fn entries(conn: &Connection, limit: usize) -> Result<Vec<AccessEntry>, EventError> {
    let mut st = conn.prepare("SELECT at, actor, action, query, purpose FROM access_log ORDER BY id DESC LIMIT ?1")?;
    let rows = st.query_map([limit as i64], |r| {
        Ok((
            DateTime::from_timestamp_millis(r.get(0)?).unwrap_or_default(),
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
