//! Store-and-forward. The events table is the outbox: a committed event with no `uploaded_at` is still
//! owed to the cloud. The [`Uploader`] reads owed events in commit order (so order per lane holds),
//! keeps at most `window` of them in flight on an [`Uplink`], and marks an event uploaded only after
//! the far end acknowledged it (an MQTT PUBACK). A link that drops loses nothing: what was in flight is
//! read from the outbox again and re-sent; the cloud drops duplicates by event id (UUIDv7).

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use serde::Serialize;

use super::EventError;

/// One owed event, ready to send.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub rowid: i64,
    pub id: String,
    pub lane: String,
    /// The JSON message (see [`EventMessage`]).
    pub payload: Vec<u8>,
}

/// The event message the cloud receives (schema 1, docs/protocol.md).
#[derive(Debug, Serialize)]
pub struct EventMessage {
    pub schema: u32,
    pub device: String,
    pub id: String,
    pub lane: String,
    pub at: String,
    /// When the device deletes this event under the effective retention: the cloud deletes it then too.
    pub delete_after: Option<String>,
    pub first_seen: Option<String>,
    pub plate: Option<String>,
    pub confidence: Option<f64>,
    pub chars: serde_json::Value,
    pub alternatives: serde_json::Value,
    pub reads: Option<i64>,
    pub action: String,
    pub alert: bool,
    pub reason_code: String,
    pub reason: String,
    pub matched: Option<Matched>,
    pub guard_action: Option<String>,
    pub gate_result: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Matched {
    pub plate: String,
    pub kind: Option<String>,
    pub host: Option<String>,
    pub unit: Option<String>,
}

fn time(ms: Option<i64>) -> Option<String> {
    ms.and_then(DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn json(s: Option<String>) -> serde_json::Value {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Owed events committed after `after_rowid` (0: all), oldest first; `keep` is the effective retention
/// of reads.
pub fn pending_after(
    conn: &Connection,
    after_rowid: i64,
    limit: usize,
    device: &str,
    keep: chrono::Duration,
) -> Result<Vec<OutboxEvent>, EventError> {
    let mut stmt = conn.prepare_cached(
        "SELECT rowid, id, lane, at, first_seen, plate, confidence, chars, alternatives, reads, action, alert,
                reason_code, reason, matched_plate, kind, host, unit, guard_action, gate_result
         FROM events WHERE uploaded_at IS NULL AND rowid > ?1 ORDER BY rowid LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after_rowid, limit as i64], |r| {
        let matched_plate: Option<String> = r.get(14)?;
        let at: Option<i64> = r.get(3)?;
        let msg = EventMessage {
            schema: 1,
            device: device.to_string(),
            id: r.get(1)?,
            lane: r.get(2)?,
            at: time(at).unwrap_or_default(),
            delete_after: time(at.map(|t| t.saturating_add(keep.num_milliseconds()))),
            first_seen: time(r.get(4)?),
            plate: r.get(5)?,
            confidence: r.get(6)?,
            chars: json(r.get(7)?),
            alternatives: json(r.get(8)?),
            reads: r.get(9)?,
            action: r.get(10)?,
            alert: r.get(11)?,
            reason_code: r.get(12)?,
            reason: r.get(13)?,
            matched: matched_plate
                .map(|plate| -> rusqlite::Result<Matched> {
                    Ok(Matched {
                        plate,
                        kind: r.get(15)?,
                        host: r.get(16)?,
                        unit: r.get(17)?,
                    })
                })
                .transpose()?,
            guard_action: r.get(18)?,
            gate_result: r.get(19)?,
        };
        Ok((r.get::<_, i64>(0)?, msg))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (rowid, msg) = row?;
        out.push(OutboxEvent {
            rowid,
            id: msg.id.clone(),
            lane: msg.lane.clone(),
            payload: serde_json::to_vec(&msg).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Rowid and id of the oldest `limit` owed events.
fn owed_ids(conn: &Connection, limit: usize) -> Result<Vec<(i64, String)>, EventError> {
    let mut stmt =
        conn.prepare_cached("SELECT rowid, id FROM events WHERE uploaded_at IS NULL ORDER BY rowid LIMIT ?1")?;
    let rows = stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks acknowledged events uploaded, in one transaction.
pub fn mark_uploaded(conn: &mut Connection, ids: &[String], now: DateTime<Utc>) -> Result<usize, EventError> {
    let tx = conn.transaction()?;
    let mut n = 0;
    {
        let mut stmt = tx.prepare_cached("UPDATE events SET uploaded_at = ?2 WHERE id = ?1 AND uploaded_at IS NULL")?;
        for id in ids {
            n += stmt.execute(params![id, now.timestamp_millis()])?;
        }
    }
    // Kept here so status and heartbeats need not scan the events table for it.
    crate::db::meta_set(
        &tx,
        crate::db::MetaKey::OutboxLastUpload,
        &now.timestamp_millis().to_string(),
    )?;
    tx.commit()?;
    Ok(n)
}

/// How much is still owed: count and the time of the oldest.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Backlog {
    pub pending: u64,
    pub oldest: Option<DateTime<Utc>>,
    pub last_uploaded: Option<DateTime<Utc>>,
}

pub fn backlog(conn: &Connection) -> Result<Backlog, EventError> {
    let (pending, oldest): (i64, Option<i64>) = conn.query_row(
        "SELECT count(*), min(at) FROM events WHERE uploaded_at IS NULL",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let last: Option<i64> = crate::db::meta_get(conn, crate::db::MetaKey::OutboxLastUpload)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok());
    Ok(Backlog {
        pending: pending as u64,
        oldest: oldest.and_then(DateTime::from_timestamp_millis),
        last_uploaded: last.and_then(DateTime::from_timestamp_millis),
    })
}

/// Where owed events go. The real one is the MQTT link (`sync::link`); [`MemoryUplink`] is the fake.
pub trait Uplink {
    /// Hands one event to the link. `Ok(false)`: no room or no connection right now; offer it again later.
    fn offer(&mut self, event: &OutboxEvent) -> Result<bool, EventError>;
    /// Ids the far end acknowledged since the last call.
    fn take_acked(&mut self) -> Vec<String>;
}

#[derive(Debug, Default)]
pub struct UploadStats {
    pub uploaded: AtomicU64,
    pub sent: AtomicU64,
}

/// Moves events from the outbox to an uplink, `window` at a time.
///
/// It remembers which events it has handed over (in flight, or acknowledged and not yet marked) rather
/// than a rowid cursor: SQLite may reuse the rowid of a deleted newest row, and a cursor would then skip
/// the new event until the next reconnect.
#[derive(Debug)]
pub struct Uploader {
    device: String,
    keep: chrono::Duration,
    window: usize,
    outstanding: std::collections::HashSet<String>,
    in_flight: usize,
    acked: Vec<String>,
    last_flush: std::time::Instant,
}

impl Uploader {
    /// `keep_days`: the effective retention of reads (each message says when to delete it).
    pub fn new(device: &str, window: usize, keep_days: u32) -> Self {
        Self {
            device: device.to_string(),
            keep: chrono::Duration::days(keep_days as i64),
            window: window.max(1),
            outstanding: std::collections::HashSet::new(),
            in_flight: 0,
            acked: Vec::new(),
            last_flush: std::time::Instant::now(),
        }
    }

    /// The link was lost: whatever was in flight and not acknowledged will be read from the outbox again.
    pub fn reset(&mut self) {
        self.outstanding.retain(|id| self.acked.contains(id));
        self.in_flight = 0;
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Records acknowledgements (committed in batches: every 128, every 100 ms, or when `flush`), then
    /// tops the window up from the outbox. Returns how many events it offered.
    pub fn pump<U: Uplink>(
        &mut self,
        conn: &mut Connection,
        link: &mut U,
        stats: &UploadStats,
        now: DateTime<Utc>,
        flush: bool,
    ) -> Result<usize, EventError> {
        let acked = link.take_acked();
        self.in_flight = self.in_flight.saturating_sub(acked.len());
        self.acked.extend(acked);
        if !self.acked.is_empty()
            && (flush || self.acked.len() >= 128 || self.last_flush.elapsed() >= std::time::Duration::from_millis(100))
        {
            let n = mark_uploaded(conn, &self.acked, now)?;
            stats.uploaded.fetch_add(n as u64, Ordering::Relaxed);
            for id in self.acked.drain(..) {
                self.outstanding.remove(&id);
            }
            self.last_flush = std::time::Instant::now();
        }
        let mut offered = 0;
        let room = self.window - self.in_flight.min(self.window);
        // Top up in batches (a quarter window at least) or on the periodic flush, not per acknowledgement.
        if room > 0 && (flush || room >= (self.window / 4).max(1)) {
            // The oldest owed events, skipping those already handed over; full rows only for the new ones.
            for (rowid, id) in owed_ids(conn, self.outstanding.len() + room)? {
                if offered == room {
                    break;
                }
                if self.outstanding.contains(&id) {
                    continue;
                }
                let Some(e) = pending_after(conn, rowid - 1, 1, &self.device, self.keep)?
                    .into_iter()
                    .find(|e| e.rowid == rowid)
                else {
                    continue;
                };
                if !link.offer(&e)? {
                    break;
                }
                self.outstanding.insert(id);
                self.in_flight += 1;
                offered += 1;
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(offered)
    }
}

/// An in-memory uplink for tests: records what was offered, acknowledges on request, can refuse.
#[derive(Debug, Default)]
pub struct MemoryUplink {
    pub sent: Vec<OutboxEvent>,
    pub unacked: std::collections::VecDeque<String>,
    pub acked: Vec<String>,
    pub room: Option<usize>,
}

impl MemoryUplink {
    /// Acknowledges the oldest `n` unacknowledged events.
    pub fn ack(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(id) = self.unacked.pop_front() {
                self.acked.push(id);
            }
        }
    }

    /// The connection dropped: nothing in flight will be acknowledged.
    pub fn drop_connection(&mut self) {
        self.unacked.clear();
    }
}

impl Uplink for MemoryUplink {
    fn offer(&mut self, event: &OutboxEvent) -> Result<bool, EventError> {
        if self.room == Some(0) {
            return Ok(false);
        }
        if let Some(r) = self.room.as_mut() {
            *r -= 1;
        }
        self.sent.push(event.clone());
        self.unacked.push_back(event.id.clone());
        Ok(true)
    }

    fn take_acked(&mut self) -> Vec<String> {
        std::mem::take(&mut self.acked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(conn: &Connection, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let id = format!("0190-{i:05}");
                conn.execute(
                    "INSERT INTO events (id, lane, at, plate, action, reason_code, reason, chars)
                     VALUES (?1, ?2, ?3, 'ABC123', 'deny', 'unknown', 'not on the allowlist', '[[\"A\",0.9]]')",
                    params![
                        id,
                        if i % 2 == 0 { "entry" } else { "exit" },
                        1_700_000_000_000i64 + i as i64
                    ],
                )
                .expect("insert");
                id
            })
            .collect()
    }

    #[test]
    fn only_acknowledged_events_leave_and_a_dropped_link_resends_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        let ids = seed(&conn, 25);
        let stats = UploadStats::default();
        let mut up = Uploader::new("site/dev", 10, 60);
        let mut link = MemoryUplink::default();
        assert_eq!(
            up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump"),
            10
        );
        assert_eq!(
            up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump"),
            0,
            "window full"
        );
        link.ack(4);
        assert_eq!(
            up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump"),
            4
        );
        assert_eq!(backlog(&conn).expect("backlog").pending, 21);
        // The connection drops with 10 in flight: they are sent again, oldest first.
        link.drop_connection();
        up.reset();
        let before = link.sent.len();
        up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump");
        let resent: Vec<&str> = link.sent[before..].iter().map(|e| e.id.as_str()).collect();
        assert_eq!(resent, ids[4..14].iter().map(String::as_str).collect::<Vec<_>>());
        while backlog(&conn).expect("backlog").pending > 0 {
            let n = link.unacked.len();
            link.ack(n);
            up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump");
        }
        assert_eq!(stats.uploaded.load(Ordering::Relaxed), 25);
        // Per lane, the first sending of each event kept commit order.
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<&OutboxEvent> = link.sent.iter().filter(|e| seen.insert(e.id.clone())).collect();
        for lane in ["entry", "exit"] {
            let order: Vec<i64> = firsts.iter().filter(|e| e.lane == lane).map(|e| e.rowid).collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{lane}: {order:?}");
        }
        let msg: serde_json::Value = serde_json::from_slice(&link.sent[0].payload).expect("json");
        assert_eq!(msg["device"], "site/dev");
        assert_eq!(msg["chars"][0][0], "A");
        assert_eq!(msg["action"], "deny");
        assert_eq!(msg["at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(msg["delete_after"], "2024-01-13T22:13:20.000Z", "60 days later");
    }

    #[test]
    fn a_reused_rowid_is_not_skipped() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        seed(&conn, 3);
        let stats = UploadStats::default();
        let mut up = Uploader::new("site/dev", 10, 60);
        let mut link = MemoryUplink::default();
        up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump");
        link.ack(3);
        up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump");
        // The newest event is deleted (a DSAR delete); the next one gets its rowid again.
        conn.execute("DELETE FROM events WHERE id = '0190-00002'", [])
            .expect("delete");
        conn.execute(
            "INSERT INTO events (id, lane, at, action, reason_code, reason) VALUES ('new', 'entry', 1, 'deny', 'unknown', 'x')",
            [],
        )
        .expect("insert");
        let rowid: i64 = conn
            .query_row("SELECT rowid FROM events WHERE id = 'new'", [], |r| r.get(0))
            .expect("rowid");
        assert_eq!(rowid, 3, "SQLite reused the rowid");
        up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump");
        assert_eq!(link.sent.last().map(|e| e.id.as_str()), Some("new"));
    }

    #[test]
    fn a_refusing_link_keeps_events_owed() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        seed(&conn, 3);
        let mut link = MemoryUplink {
            room: Some(1),
            ..Default::default()
        };
        let mut up = Uploader::new("site/dev", 10, 60);
        let stats = UploadStats::default();
        assert_eq!(
            up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump"),
            1
        );
        link.room = Some(5);
        assert_eq!(
            up.pump(&mut conn, &mut link, &stats, Utc::now(), true).expect("pump"),
            2
        );
        assert_eq!(link.sent.len(), 3);
        assert_eq!(backlog(&conn).expect("backlog").pending, 3, "nothing acknowledged yet");
    }
}
