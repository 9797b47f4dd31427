//! Retention: deletes what the law and the property no longer allow us to keep. Events older than the
//! effective read retention go (with their crops); crops older than the image retention go first (the
//! row keeps its text, `crop_path` becomes NULL). Records under legal hold (by event or by plate) are
//! skipped. Work is done in bounded batches so the database is never locked for long.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, Connection};

use super::EventError;
use crate::privacy::Effective;

/// What one purge run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub events: usize,
    pub crops: usize,
    /// Events past their retention kept because the cloud has not acknowledged them.
    pub kept_owed: usize,
}

/// Places a legal hold on one event or on every event of a plate (with a reason).
pub fn hold(
    conn: &Connection,
    event_id: Option<&str>,
    plate: Option<&str>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), EventError> {
    conn.execute(
        "INSERT INTO legal_holds (event_id, plate, reason, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![event_id, plate, reason, now.timestamp_millis()],
    )?;
    Ok(())
}

const HELD: &str = "NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.event_id = events.id OR (h.plate IS NOT NULL AND h.plate = events.plate))";

/// Runs one purge at `now`, `batch` rows per transaction. With `keep_owed` (a cloud link is configured)
/// an event the cloud has not acknowledged yet is kept past its retention: a clock that jumps forward
/// (a wrong RTC, a bad NTP answer) must not delete events nobody else holds; they go once uploaded.
pub fn purge(
    conn: &mut Connection,
    retention: &Effective,
    now: DateTime<Utc>,
    batch: usize,
    keep_owed: bool,
) -> Result<Purged, EventError> {
    let mut out = Purged::default();
    let image_cutoff = (now - Duration::days(retention.images.days as i64)).timestamp_millis();
    let read_cutoff = (now - Duration::days(retention.reads.days as i64)).timestamp_millis();
    // Crops past the image retention (also those of events about to go).
    loop {
        let rows: Vec<(String, String)> = {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id, crop_path FROM events WHERE crop_path IS NOT NULL AND at < ?1 AND {HELD} LIMIT ?2"
            ))?;
            let r = stmt.query_map(params![image_cutoff, batch as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            r.collect::<Result<_, _>>()?
        };
        if rows.is_empty() {
            break;
        }
        for (_, path) in &rows {
            match std::fs::remove_file(Path::new(path)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, "could not delete an expired crop; will retry"),
            }
        }
        let tx = conn.transaction()?;
        {
            let mut up = tx.prepare_cached("UPDATE events SET crop_path = NULL WHERE id = ?1")?;
            for (id, _) in &rows {
                up.execute([id])?;
            }
        }
        tx.commit()?;
        out.crops += rows.len();
    }
    // Events past the read retention.
    let owed = if keep_owed { "AND uploaded_at IS NOT NULL" } else { "" };
    loop {
        let n = conn.execute(
            &format!("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ?1 AND {HELD} {owed} LIMIT ?2)"),
            params![read_cutoff, batch as i64],
        )?;
        out.events += n;
        if n == 0 {
            break;
        }
    }
    if keep_owed {
        out.kept_owed = conn.query_row(
            "SELECT count(*) FROM events WHERE at < ?1 AND uploaded_at IS NULL",
            [read_cutoff],
            |r| r.get::<_, i64>(0),
        )? as usize;
    }
    Ok(out)
}

/// Purges expired events and crops at start and then hourly, in small batches, off the async runtime.
/// When the database was not usable at start, it waits (trying every minute) until it passes the check.
pub fn run_loop(
    path: std::path::PathBuf,
    retention: crate::privacy::Effective,
    clock: crate::clock::SharedClock,
    cancel: tokio_util::sync::CancellationToken,
    db_ok: bool,
    keep_owed: bool,
) {
    // A database that was not usable at start is not written to until it passes the quick check.
    let Some(mut conn) = crate::db::open_when_usable(
        &path,
        db_ok,
        "retention purge",
        std::time::Duration::from_secs(60),
        &cancel,
    ) else {
        return;
    };
    while !cancel.is_cancelled() {
        match purge(&mut conn, &retention, clock.now(), 500, keep_owed) {
            Ok(p) => {
                if p.events + p.crops > 0 {
                    tracing::info!(events = p.events, crops = p.crops, "retention purge");
                }
                if p.kept_owed > 0 {
                    tracing::warn!(
                        events = p.kept_owed,
                        "events past their retention are kept until the cloud acknowledges them (the link is down, or the clock jumped forward)"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "retention purge failed; will retry"),
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        while !cancel.is_cancelled() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::{Effective, Period};

    fn retention(reads: u32, images: u32) -> Effective {
        Effective {
            state: None,
            reads: Period {
                days: reads,
                why: String::new(),
            },
            images: Period {
                days: images,
                why: String::new(),
            },
            duties: vec![],
            citations: vec![],
        }
    }

    fn insert(conn: &Connection, id: &str, plate: &str, at: DateTime<Utc>, crop: Option<&Path>) {
        conn.execute(
            "INSERT INTO events (id, lane, at, plate, action, reason_code, reason, crop_path)
             VALUES (?1, 'entry', ?2, ?3, 'deny', 'unknown', 'not on the list', ?4)",
            params![id, at.timestamp_millis(), plate, crop.map(|p| p.display().to_string())],
        )
        .expect("insert");
    }

    fn ids(conn: &Connection) -> Vec<String> {
        let mut s = conn.prepare("SELECT id FROM events ORDER BY id").expect("stmt");
        let r = s.query_map([], |r| r.get(0)).expect("q");
        r.collect::<Result<_, _>>().expect("rows")
    }

    /// The clock jumps 400 days forward: with a cloud link, the events the cloud has acknowledged go (it
    /// holds them), those still owed stay until they are uploaded; nothing committed is lost.
    #[test]
    fn a_forward_clock_jump_never_purges_events_the_cloud_has_not_acknowledged() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        let t0 = Utc::now();
        insert(&conn, "sent", "ABC123", t0, None);
        insert(&conn, "owed", "XYZ789", t0, None);
        conn.execute("UPDATE events SET uploaded_at = 1 WHERE id = 'sent'", [])
            .expect("mark");
        let r = retention(180, 60);
        let jumped = t0 + Duration::days(400);
        let p = purge(&mut conn, &r, jumped, 100, true).expect("purge");
        assert_eq!((p.events, p.kept_owed), (1, 1));
        assert_eq!(ids(&conn), vec!["owed"]);
        // Uploaded later: the next purge removes it.
        conn.execute("UPDATE events SET uploaded_at = 2 WHERE id = 'owed'", [])
            .expect("mark");
        let p = purge(&mut conn, &r, jumped, 100, true).expect("purge");
        assert_eq!((p.events, p.kept_owed), (1, 0));
        // Without a cloud link the events are the site's own record: retention applies as written.
        insert(&conn, "local", "LOC111", t0, None);
        assert_eq!(purge(&mut conn, &r, jumped, 100, false).expect("purge").events, 1);
    }

    #[test]
    fn kept_the_day_before_gone_the_day_after_crops_included_holds_survive() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("t");
        let crop = dir.path().join("a.jpg");
        std::fs::write(&crop, b"jpeg").expect("crop");
        let held_crop = dir.path().join("h.jpg");
        std::fs::write(&held_crop, b"jpeg").expect("crop");
        insert(&conn, "a", "ABC123", t0, Some(&crop));
        insert(&conn, "h", "HLD999", t0, Some(&held_crop));
        hold(&conn, None, Some("HLD999"), "subpoena 2026-17", t0).expect("hold");
        let r = retention(60, 30);

        // Day 29 after: everything kept.
        assert_eq!(
            purge(&mut conn, &r, t0 + Duration::days(29), 100, false).expect("purge"),
            Purged::default()
        );
        assert!(crop.exists());
        // Day 31: the crop is past its 30 days; the row stays.
        assert_eq!(
            purge(&mut conn, &r, t0 + Duration::days(31), 100, false).expect("purge"),
            Purged {
                events: 0,
                crops: 1,
                kept_owed: 0
            }
        );
        assert!(!crop.exists() && held_crop.exists());
        assert_eq!(ids(&conn), vec!["a", "h"]);
        // Day 59 (the day before the read retention ends): kept. Day 61: gone, except the held one.
        assert_eq!(
            purge(&mut conn, &r, t0 + Duration::days(59), 100, false)
                .expect("purge")
                .events,
            0
        );
        assert_eq!(
            purge(&mut conn, &r, t0 + Duration::days(61), 100, false)
                .expect("purge")
                .events,
            1
        );
        assert_eq!(ids(&conn), vec!["h"]);
        assert!(held_crop.exists());
    }
}
