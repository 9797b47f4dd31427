//! The single event writer (its own thread, owning the connection) and read-side queries.
//!
//! A decided event is never dropped. The writer commits each batch; when the database cannot take it (a
//! full disk, a damaged or missing file) the events are held, in order, in memory (at most [`MAX_HELD`];
//! past that the writer stops taking more, so the queue in front of it waits) and in the spill file
//! ([`super::spill`]), an alert is raised (`events_unstored`) and the `gatehouse_events_unstored` gauge
//! counts them. Held events are retried with a back-off (1 s doubling to 30 s) and go first, so order
//! holds. A commit that finds the disk full first releases the database reserve
//! ([`super::storage::Reserve`]) and tries again at once.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::spill::{self, Spill};
use super::storage::{Reserve, StorageGuard};
use super::{EventError, GateEvent};
use crate::plate;
use crate::supervise::Alerts;

/// Events held in memory at most while the database cannot take them (about days of traffic at a gate).
pub const MAX_HELD: usize = 10_000;

/// The alert raised while events wait unstored.
pub const ALERT_UNSTORED: &str = "events_unstored";

/// Sends events to the writer. Bounded: a full queue makes the sender wait (decisions are already acted on).
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<GateEvent>,
}

impl EventSink {
    /// A sink whose events land in the returned receiver instead of a writer (tests and tools).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<GateEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    pub async fn send(&self, e: GateEvent) -> Result<(), EventError> {
        self.tx.send(e).await.map_err(|_| EventError::Stopped)
    }

    /// Waits for room in the writer's queue.
    pub async fn reserve(&self) -> Result<mpsc::Permit<'_, GateEvent>, EventError> {
        self.tx.reserve().await.map_err(|_| EventError::Stopped)
    }
}

#[derive(Debug, Default)]
pub struct WriterStats {
    pub committed: AtomicU64,
    pub opted_out: AtomicU64,
    /// Events lost: held in memory only (the spill file full or missing) when the daemon stopped.
    pub failed: AtomicU64,
    /// Crop images deleted because storage ran short.
    pub crops_pruned: AtomicU64,
    /// Events stored without their crop because storage was short.
    pub crops_skipped: AtomicU64,
    /// Decided events waiting unstored right now (a gauge).
    pub held: AtomicU64,
    /// Events written to the spill file.
    pub spilled: AtomicU64,
    /// Times the database reserve was released because the disk was full.
    pub reserve_released: AtomicU64,
}

/// What the writer needs to know.
#[derive(Clone)]
pub struct WriterOptions {
    pub db_path: PathBuf,
    pub crops_dir: PathBuf,
    /// Plates in full in the log (otherwise redacted).
    pub log_plates: bool,
    /// Free space kept on the data folder (crops give way below it).
    pub min_free: u64,
    /// Size of the database reserve (`db-reserve` beside the database; 0: none).
    pub reserve: u64,
    pub alerts: Alerts,
}

impl WriterOptions {
    /// Options for a writer on `db_path` with crops in `crops_dir` and no reserve (tools, tests).
    pub fn new(db_path: PathBuf, crops_dir: PathBuf) -> Self {
        Self {
            db_path,
            crops_dir,
            log_plates: false,
            min_free: 0,
            reserve: 0,
            alerts: Alerts::default(),
        }
    }
}

/// Starts the writer thread. It ends when every sink is dropped and the queue is drained (held events
/// are tried once more; those still unstored stay in the spill file for the next start).
pub fn spawn_writer(
    opts: WriterOptions,
) -> Result<(EventSink, std::thread::JoinHandle<()>, Arc<WriterStats>), EventError> {
    let (tx, mut rx) = mpsc::channel::<GateEvent>(256);
    let stats = Arc::new(WriterStats::default());
    let guard = StorageGuard::new(opts.crops_dir.clone(), opts.min_free);
    let st = stats.clone();
    let handle = std::thread::Builder::new()
        .name("event-writer".into())
        .spawn(move || {
            let mut w = Writer::new(opts, guard, st);
            loop {
                let first = if w.held.is_empty() {
                    match rx.blocking_recv() {
                        Some(e) => e,
                        None => break,
                    }
                } else if w.held.len() >= MAX_HELD {
                    // Full: take nothing more until the database takes some.
                    w.wait_and_flush();
                    continue;
                } else {
                    match rx.try_recv() {
                        Ok(e) => e,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            w.wait_and_flush();
                            continue;
                        }
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                    }
                };
                let mut batch = vec![first];
                while batch.len() < 64 {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                w.store(batch);
            }
            w.finish();
        })
        .map_err(|e| EventError::Crop {
            path: "event-writer thread".into(),
            source: e,
        })?;
    Ok((EventSink { tx }, handle, stats))
}

/// An event as one row of the events table: what the writer commits, holds and spills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub id: String,
    pub lane: String,
    pub at: i64,
    pub first_seen: i64,
    pub plate: String,
    pub confidence: f32,
    pub chars: String,
    pub alternatives: String,
    pub reads: i64,
    pub action: String,
    pub alert: bool,
    pub reason_code: String,
    pub reason: String,
    pub matched_plate: Option<String>,
    pub kind: Option<String>,
    pub host: Option<String>,
    pub unit: Option<String>,
    pub crop_path: Option<String>,
    pub guard_action: Option<String>,
    pub gate_result: Option<String>,
}

impl EventRow {
    fn of(e: &GateEvent, crop: Option<&Path>) -> Self {
        let chars: Vec<(char, f32)> = e.chars.iter().map(|c| (c.ch, c.conf)).collect();
        let m = e.decision.matched.as_ref();
        Self {
            id: e.id.to_string(),
            lane: e.lane.to_string(),
            at: e.at.timestamp_millis(),
            first_seen: e.first_seen.timestamp_millis(),
            plate: e.plate.clone(),
            confidence: e.confidence,
            chars: serde_json::to_string(&chars).unwrap_or_default(),
            alternatives: serde_json::to_string(&e.alternatives).unwrap_or_default(),
            reads: e.reads as i64,
            action: serde_json::to_value(e.decision.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:?}", e.decision.action).to_lowercase()),
            alert: e.decision.alert,
            reason_code: e.decision.reason.code().to_string(),
            reason: e.decision.reason.to_string(),
            matched_plate: m.map(|m| m.plate.clone()),
            kind: m.map(|m| m.kind.as_str().to_string()),
            host: m.and_then(|m| m.host.clone()),
            unit: m.and_then(|m| m.unit.clone()),
            crop_path: crop.map(|p| p.display().to_string()),
            guard_action: e.guard_action.clone(),
            gate_result: e.gate_result.clone(),
        }
    }
}

/// The writer's state: the connection (none while the database cannot be opened), the events held
/// unstored, the spill file and the reserve.
struct Writer {
    opts: WriterOptions,
    conn: Option<Connection>,
    guard: StorageGuard,
    reserve: Reserve,
    spill: Spill,
    held: VecDeque<EventRow>,
    /// How many of the newest held events are in memory only (the spill file was full or missing).
    memory_only: usize,
    stats: Arc<WriterStats>,
    retry_at: Instant,
    backoff: Duration,
    /// When a missing reserve is next tried.
    reserve_at: Instant,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Writer {
    fn new(opts: WriterOptions, mut guard: StorageGuard, stats: Arc<WriterStats>) -> Self {
        let data_dir = opts.db_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let reserve = Reserve::new(&data_dir, opts.reserve);
        let _ = std::fs::create_dir_all(&data_dir);
        let (spill, replay) = Spill::open(Spill::path_for(&opts.db_path), spill::SIZE);
        reserve.ensure(guard.free(), 0);
        let mut w = Self {
            opts,
            conn: None,
            guard,
            reserve,
            spill,
            held: replay.into(),
            memory_only: 0,
            stats,
            retry_at: Instant::now(),
            backoff: FIRST_BACKOFF,
            reserve_at: Instant::now(),
        };
        if !w.held.is_empty() {
            tracing::warn!(
                events = w.held.len(),
                "events from the spill file (not stored before the last stop) are stored first"
            );
            w.stats.held.store(w.held.len() as u64, Ordering::Relaxed);
        }
        match w.connect().map(|_| ()) {
            Ok(()) => w.flush(true),
            Err(e) if w.held.is_empty() => {
                tracing::error!(error = %e, "event database unavailable; events will be held until it takes them")
            }
            Err(e) => w.note_failure(&e.to_string()),
        }
        w
    }

    /// Opens the database (with a quick integrity check) when there is no connection.
    fn connect(&mut self) -> Result<&mut Connection, EventError> {
        if self.conn.is_none() {
            let conn = match crate::db::open_checked(&self.opts.db_path) {
                Err(e) if e.is_full() && self.release_reserve() => crate::db::open_checked(&self.opts.db_path)?,
                other => other?,
            };
            self.conn = Some(conn);
        }
        self.conn.as_mut().ok_or(EventError::Stopped)
    }

    fn release_reserve(&mut self) -> bool {
        let released = self.reserve.release();
        if released {
            self.stats.reserve_released.fetch_add(1, Ordering::Relaxed);
        }
        released
    }

    /// Crops, then rows, for a batch of new events; stored now, or held behind those already waiting.
    fn store(&mut self, batch: Vec<GateEvent>) {
        let crops_ok = match self.conn.as_ref() {
            Some(conn) => self.guard.check(conn, &self.stats),
            None => false,
        };
        let mut rows = Vec::with_capacity(batch.len());
        let mut crops_ok = crops_ok;
        for e in &batch {
            if e.opted_out() {
                self.stats.opted_out.fetch_add(1, Ordering::Relaxed);
                tracing::info!(lane = %e.lane, "opted-out resident passed; nothing stored");
                continue;
            }
            if !crops_ok && !e.crop_jpeg.is_empty() {
                self.stats.crops_skipped.fetch_add(1, Ordering::Relaxed);
            }
            let crop = if crops_ok && !e.crop_jpeg.is_empty() {
                let p = crop_path(&self.opts.crops_dir, e);
                match write_crop(&p, &e.crop_jpeg) {
                    Ok(()) => Some(p),
                    Err(err) => {
                        // The event matters more than its picture: store it (and the rest of the batch)
                        // without the crop.
                        tracing::error!(error = %err, id = %e.id, "crop not saved; storing the event without it");
                        crops_ok = false;
                        None
                    }
                }
            } else {
                None
            };
            rows.push(EventRow::of(e, crop.as_deref()));
        }
        if rows.is_empty() {
            return;
        }
        if !self.held.is_empty() {
            // Behind those already waiting, so order holds.
            self.hold(rows);
            self.flush(false);
            return;
        }
        if let Err(e) = self.commit_with_reserve(&rows) {
            self.hold(rows);
            self.note_failure(&e.to_string());
        }
    }

    /// Commits rows; a full disk releases the reserve and tries once more.
    fn commit_with_reserve(&mut self, rows: &[EventRow]) -> Result<(), EventError> {
        let result = match self.connect() {
            Ok(conn) => commit(conn, rows),
            Err(e) => Err(e),
        };
        let result = match result {
            Err(e) if is_full(&e) && self.release_reserve() => match self.connect() {
                Ok(conn) => commit(conn, rows),
                Err(e) => Err(e),
            },
            other => other,
        };
        match &result {
            Ok(()) => {
                self.stats.committed.fetch_add(rows.len() as u64, Ordering::Relaxed);
                for r in rows {
                    let shown = if self.opts.log_plates {
                        r.plate.clone()
                    } else {
                        plate::redact(&r.plate)
                    };
                    tracing::info!(
                        id = %r.id, lane = %r.lane, plate = %shown, action = %r.action,
                        reason = %r.reason, "event committed"
                    );
                }
                if Instant::now() >= self.reserve_at && !self.reserve.present() {
                    // Made again once space returns; tried at most once a minute.
                    self.reserve_at = Instant::now() + Duration::from_secs(60);
                    let free = self.guard.free();
                    self.reserve.ensure(free, self.opts.min_free);
                }
            }
            // Not a full disk: the connection may be unusable (a damaged file); open it again next time.
            Err(e) if !is_full(e) => self.conn = None,
            Err(_) => {}
        }
        result
    }

    /// Holds rows unstored: memory and the spill file.
    fn hold(&mut self, rows: Vec<EventRow>) {
        // Once one batch did not fit, the later ones stay in memory too (the spill keeps the oldest).
        let spilled = if self.memory_only > 0 {
            Err(None)
        } else {
            self.spill.append(&rows).map_err(Some)
        };
        match spilled {
            Ok(()) => {
                self.stats.spilled.fetch_add(rows.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                if let Some(e) = e {
                    tracing::error!(error = %e, "the spill file takes no more events");
                }
                self.memory_only += rows.len();
                tracing::error!(
                    events = rows.len(),
                    memory_only = self.memory_only,
                    "events held in memory only: they are lost if the daemon stops before the database takes them"
                );
            }
        }
        self.held.extend(rows);
        self.stats.held.store(self.held.len() as u64, Ordering::Relaxed);
    }

    /// Raises the alert and schedules the next try.
    fn note_failure(&mut self, why: &str) {
        self.retry_at = Instant::now() + self.backoff;
        tracing::error!(
            error = %why, held = self.held.len(), retry_in = ?self.backoff,
            "events cannot be stored; they are held (memory and spill file) and retried"
        );
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.opts.alerts.raise(
            ALERT_UNSTORED,
            format!(
                "events cannot be stored ({why}); decided events are held in memory and in {} (how many: \
                 events_unstored) and are stored once the database takes them: free space on {} or repair the \
                 database",
                self.spill_path(),
                self.opts.db_path.parent().unwrap_or(Path::new(".")).display()
            ),
        );
    }

    fn spill_path(&self) -> String {
        Spill::path_for(&self.opts.db_path).display().to_string()
    }

    /// Tries the held events (oldest first, in chunks) when the retry is due or `now`.
    fn flush(&mut self, now: bool) {
        if self.held.is_empty() || (!now && Instant::now() < self.retry_at) {
            return;
        }
        while !self.held.is_empty() {
            let n = self.held.len().min(256);
            let chunk: Vec<EventRow> = self.held.iter().take(n).cloned().collect();
            if let Err(e) = self.commit_with_reserve(&chunk) {
                self.note_failure(&e.to_string());
                return;
            }
            self.held.drain(..n);
            self.memory_only = self.memory_only.min(self.held.len());
            self.stats.held.store(self.held.len() as u64, Ordering::Relaxed);
        }
        if let Err(e) = self.spill.clear() {
            tracing::error!(error = %e, "could not clear the spill file; its events will be replayed (harmlessly) at start");
        }
        self.backoff = FIRST_BACKOFF;
        tracing::info!("held events stored; the database takes events again");
        self.opts.alerts.clear(ALERT_UNSTORED);
    }

    /// Sleeps a little, then tries the held events if due.
    fn wait_and_flush(&mut self) {
        std::thread::sleep(Duration::from_millis(50));
        self.flush(false);
    }

    /// At the end: one more try; what is left stays in the spill file for the next start.
    fn finish(&mut self) {
        self.flush(true);
        if self.held.is_empty() {
            return;
        }
        let lost = self.memory_only.min(self.held.len());
        let kept = self.held.len() - lost;
        if kept > 0 {
            tracing::error!(
                events = kept, spill = %self.spill_path(),
                "events not stored at shutdown; the spill file keeps them and the next start stores them"
            );
        }
        if lost > 0 {
            self.stats.failed.fetch_add(lost as u64, Ordering::Relaxed);
            tracing::error!(
                events = lost,
                "events held in memory only (the spill file was full) are lost at shutdown"
            );
        }
    }
}

/// Whether an event error means a full disk.
fn is_full(e: &EventError) -> bool {
    match e {
        EventError::Sql(e) => crate::db::sql_is_full(e),
        EventError::Db(e) => e.is_full(),
        _ => false,
    }
}

fn crop_path(crops_dir: &Path, e: &GateEvent) -> PathBuf {
    crops_dir
        .join(e.at.format("%Y-%m-%d").to_string())
        .join(format!("{}.jpg", e.id))
}

fn write_crop(path: &Path, bytes: &[u8]) -> Result<(), EventError> {
    let err = |source| EventError::Crop {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("jpg.tmp");
    let result = (|| {
        // Sealed (bound to its final name) when the data folder is encrypted.
        let bytes = crate::secrets::sealed::for_disk(path, bytes)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // A short disk must not keep half a picture.
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Commits rows in one transaction; an event already stored (a replayed spill) is left as it is.
fn commit(conn: &mut Connection, rows: &[EventRow]) -> Result<(), EventError> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO events (id, lane, at, first_seen, plate, confidence, chars, alternatives, reads,
                action, alert, reason_code, reason, matched_plate, kind, host, unit, crop_path, guard_action, gate_result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        )?;
        for r in rows {
            stmt.execute(params![
                r.id,
                r.lane,
                r.at,
                r.first_seen,
                r.plate,
                r.confidence,
                r.chars,
                r.alternatives,
                r.reads,
                r.action,
                r.alert,
                r.reason_code,
                r.reason,
                r.matched_plate,
                r.kind,
                r.host,
                r.unit,
                r.crop_path,
                r.guard_action,
                r.gate_result,
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// An event as stored (for `gatehouse events list` and tests).
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub id: String,
    pub lane: String,
    pub at: DateTime<Utc>,
    pub plate: Option<String>,
    pub confidence: Option<f64>,
    pub action: String,
    pub alert: bool,
    pub reason_code: String,
    pub reason: String,
    pub matched_plate: Option<String>,
    pub kind: Option<String>,
    pub host: Option<String>,
    pub crop_path: Option<String>,
}

/// The most recent events, newest first.
pub fn list_recent(conn: &Connection, limit: usize) -> Result<Vec<StoredEvent>, EventError> {
    let mut stmt = conn.prepare(
        "SELECT id, lane, at, plate, confidence, action, alert, reason_code, reason, matched_plate, kind, host, crop_path
         FROM events ORDER BY at DESC, id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(StoredEvent {
            id: r.get(0)?,
            lane: r.get(1)?,
            at: DateTime::from_timestamp_millis(r.get(2)?).unwrap_or_default(),
            plate: r.get(3)?,
            confidence: r.get(4)?,
            action: r.get(5)?,
            alert: r.get(6)?,
            reason_code: r.get(7)?,
            reason: r.get(8)?,
            matched_plate: r.get(9)?,
            kind: r.get(10)?,
            host: r.get(11)?,
            crop_path: r.get(12)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Action, Decision, Reason};

    fn event(i: usize) -> GateEvent {
        let now = Utc::now();
        GateEvent {
            id: GateEvent::new_id(now),
            lane: "entry".into(),
            at: now,
            first_seen: now,
            plate: format!("HLD{i:04}"),
            confidence: 0.9,
            chars: Vec::new(),
            alternatives: Vec::new(),
            reads: 3,
            decision: Decision {
                action: if i.is_multiple_of(3) {
                    Action::Open
                } else {
                    Action::Deny
                },
                alert: false,
                reason: Reason::Unknown,
                matched: None,
            },
            crop_jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
            guard_action: None,
            gate_result: None,
        }
    }

    fn stored_ids(db: &Path) -> Vec<String> {
        let c = crate::db::open(db).expect("db");
        let mut stmt = c
            .prepare("SELECT id FROM events WHERE lane != 'fill' ORDER BY rowid")
            .expect("stmt");
        #[allow(clippy::let_and_return)]
        let ids = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<Vec<String>, _>>()
            .expect("ids");
        ids
    }

    /// A writer whose database can grow no further (SQLITE_FULL, as on a full disk) after a burst.
    fn full_writer(dir: &Path, events: &[GateEvent]) -> (Writer, Arc<WriterStats>, WriterOptions) {
        let opts = WriterOptions::new(dir.join("g.db"), dir.join("crops"));
        let stats = Arc::new(WriterStats::default());
        let guard = StorageGuard::new(opts.crops_dir.clone(), 0);
        let mut w = Writer::new(opts.clone(), guard, stats.clone());
        {
            let conn = w.conn.as_ref().expect("open");
            let pages: i64 = conn
                .pragma_query_value(None, "page_count", |r| r.get(0))
                .expect("pages");
            conn.pragma_update(None, "max_page_count", pages).expect("limit");
            // Fill what is left of its pages.
            for i in 0.. {
                let filled = conn.execute(
                    "INSERT INTO events (id, lane, at, action, reason_code, reason) VALUES (?1, 'fill', 0, 'deny', 'x', 'x')",
                    [format!("fill{i}")],
                );
                if filled.is_err() {
                    break;
                }
            }
        }
        for chunk in events.chunks(20) {
            w.store(chunk.to_vec());
        }
        (w, stats, opts)
    }

    #[test]
    fn a_full_database_holds_every_decided_event_until_space_returns() {
        let dir = tempfile::tempdir().expect("tmp");
        let events: Vec<GateEvent> = (0..60).map(event).collect();
        let (mut w, stats, opts) = full_writer(dir.path(), &events);
        assert_eq!(stats.committed.load(Ordering::Relaxed), 0);
        assert_eq!(stats.held.load(Ordering::Relaxed), 60, "every decided event is held");
        assert_eq!(stats.failed.load(Ordering::Relaxed), 0);
        let alerts = opts.alerts.list();
        assert!(
            alerts
                .iter()
                .any(|(n, m)| *n == ALERT_UNSTORED && m.contains("disk is full")),
            "{alerts:?}"
        );
        // On disk too, in order, before any of it is stored.
        let (_, spilled) = Spill::open(Spill::path_for(&opts.db_path), spill::SIZE);
        let want: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(spilled.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), want);
        // Their crops are kept (nothing deletes a crop whose event is not stored).
        assert!(events.iter().all(|e| crop_path(&opts.crops_dir, e).exists()));

        // Space returns: the held events are stored, in order, the alert clears and the spill empties.
        w.conn
            .as_ref()
            .expect("conn")
            .pragma_update(None, "max_page_count", 1_000_000)
            .expect("limit");
        w.flush(true);
        assert_eq!(stats.held.load(Ordering::Relaxed), 0);
        assert_eq!(stats.committed.load(Ordering::Relaxed), 60);
        assert!(opts.alerts.list().is_empty());
        assert_eq!(stored_ids(&opts.db_path), want);
        let (_, spilled) = Spill::open(Spill::path_for(&opts.db_path), spill::SIZE);
        assert!(spilled.is_empty());
        // New events go straight in again.
        w.store(vec![event(99)]);
        assert_eq!(stats.committed.load(Ordering::Relaxed), 61);
    }

    #[test]
    fn held_events_survive_a_restart_and_are_stored_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let events: Vec<GateEvent> = (0..30).map(event).collect();
        let (w, _, opts) = full_writer(dir.path(), &events);
        // The process dies while the events are held (no orderly finish).
        drop(w);
        let stats = Arc::new(WriterStats::default());
        let guard = StorageGuard::new(opts.crops_dir.clone(), 0);
        let w = Writer::new(opts.clone(), guard, stats.clone());
        let want: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(stored_ids(&opts.db_path), want, "replayed from the spill file at start");
        assert_eq!(stats.held.load(Ordering::Relaxed), 0);
        drop(w);
        // A spill replayed twice (a stop between the commit and the clear) stores nothing twice.
        let (mut spill, _) = Spill::open(Spill::path_for(&opts.db_path), spill::SIZE);
        let rows: Vec<EventRow> = events.iter().map(|e| EventRow::of(e, None)).collect();
        spill.append(&rows).expect("spill");
        let _w = Writer::new(opts.clone(), StorageGuard::new(opts.crops_dir.clone(), 0), stats);
        assert_eq!(stored_ids(&opts.db_path), want);
    }
}
