//! The single event writer (its own thread, owning the connection) and read-side queries.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{EventError, GateEvent};
use crate::plate;

/// Sends events to the writer. Bounded: a full queue makes the sender wait (decisions are already acted on).
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<GateEvent>,
}

impl EventSink {
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
    pub failed: AtomicU64,
    /// Crop images deleted because storage ran short.
    pub crops_pruned: AtomicU64,
    /// Events stored without their crop because storage was short.
    pub crops_skipped: AtomicU64,
}

/// Starts the writer thread. It ends when every sink is dropped and the queue is drained.
pub fn spawn_writer(
    db_path: PathBuf,
    crops_dir: PathBuf,
    log_plates: bool,
    min_free: u64,
) -> Result<(EventSink, std::thread::JoinHandle<()>, Arc<WriterStats>), EventError> {
    let mut conn = crate::db::open(&db_path)?;
    let (tx, mut rx) = mpsc::channel::<GateEvent>(256);
    let stats = Arc::new(WriterStats::default());
    let st = stats.clone();
    let mut guard = super::storage::StorageGuard::new(crops_dir.clone(), min_free);
    let handle = std::thread::Builder::new()
        .name("event-writer".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < 64 {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                let crops_ok = guard.check(&conn, &st);
                if !crops_ok {
                    let n = batch.iter().filter(|e| !e.crop_jpeg.is_empty()).count() as u64;
                    st.crops_skipped.fetch_add(n, Ordering::Relaxed);
                }
                // Storage hiccups (a busy lock, a slow card) are retried with back-off; the batch is kept.
                let mut attempt = 0u32;
                let result = loop {
                    match write_batch(&mut conn, &crops_dir, &batch, crops_ok) {
                        Ok(n) => break Ok(n),
                        Err(e) if attempt < 6 => {
                            attempt += 1;
                            let wait = std::time::Duration::from_millis(100 << attempt);
                            tracing::warn!(error = %e, events = batch.len(), retry_in = ?wait, "storing events failed; retrying");
                            std::thread::sleep(wait);
                        }
                        Err(e) => break Err(e),
                    }
                };
                match result {
                    Ok(_) => {
                        for e in &batch {
                            if e.opted_out() {
                                st.opted_out.fetch_add(1, Ordering::Relaxed);
                                tracing::info!(lane = %e.lane, "opted-out resident passed; nothing stored");
                                continue;
                            }
                            st.committed.fetch_add(1, Ordering::Relaxed);
                            let shown = if log_plates { e.plate.clone() } else { plate::redact(&e.plate) };
                            tracing::info!(
                                id = %e.id, lane = %e.lane, plate = %shown, action = ?e.decision.action,
                                reason = %e.decision.reason, "event committed"
                            );
                        }
                    }
                    Err(err) => {
                        // No row points at these crops: remove them rather than keep plate images forever.
                        for e in &batch {
                            let _ = std::fs::remove_file(crop_path(&crops_dir, e));
                        }
                        st.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        tracing::error!(error = %err, events = batch.len(), "could not store events after retries; they are lost");
                    }
                }
            }
        })
        .map_err(|e| EventError::Crop {
            path: "event-writer thread".into(),
            source: e,
        })?;
    Ok((EventSink { tx }, handle, stats))
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
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

fn write_batch(
    conn: &mut Connection,
    crops_dir: &Path,
    batch: &[GateEvent],
    crops_ok: bool,
) -> Result<usize, EventError> {
    let mut crops = Vec::with_capacity(batch.len());
    for e in batch {
        if !crops_ok || e.opted_out() || e.crop_jpeg.is_empty() {
            crops.push(None);
            continue;
        }
        let p = crop_path(crops_dir, e);
        match write_crop(&p, &e.crop_jpeg) {
            Ok(()) => crops.push(Some(p)),
            Err(err) => {
                // The event matters more than its picture: store it without the crop.
                tracing::error!(error = %err, id = %e.id, "crop not saved; storing the event without it");
                crops.push(None);
            }
        }
    }
    let tx = conn.transaction()?;
    let mut n = 0;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO events (id, lane, at, first_seen, plate, confidence, chars, alternatives, reads,
                action, alert, reason_code, reason, matched_plate, kind, host, unit, crop_path, guard_action, gate_result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        )?;
        for (e, crop) in batch.iter().zip(&crops) {
            if e.opted_out() {
                continue;
            }
            let chars: Vec<(char, f32)> = e.chars.iter().map(|c| (c.ch, c.conf)).collect();
            let m = e.decision.matched.as_ref();
            n += stmt.execute(params![
                e.id.to_string(),
                e.lane.as_ref(),
                e.at.timestamp_millis(),
                e.first_seen.timestamp_millis(),
                e.plate,
                e.confidence,
                serde_json::to_string(&chars).unwrap_or_default(),
                serde_json::to_string(&e.alternatives).unwrap_or_default(),
                e.reads as i64,
                serde_json::to_value(e.decision.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string)),
                e.decision.alert,
                e.decision.reason.code(),
                e.decision.reason.to_string(),
                m.map(|m| m.plate.clone()),
                m.map(|m| m.kind.as_str()),
                m.and_then(|m| m.host.clone()),
                m.and_then(|m| m.unit.clone()),
                crop.as_ref().map(|p| p.display().to_string()),
                e.guard_action,
                e.gate_result,
            ])?;
        }
    }
    tx.commit()?;
    Ok(n)
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
