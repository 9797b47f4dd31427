//! When storage runs short, what gives way: crop images, oldest first, and new crops are not saved;
//! event rows (small, and owed to the cloud) keep being committed. Every step is logged and counted.
//! If the disk fills completely anyway, the writer's retries and its "could not store" error say so.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::WriterStats;

/// Free bytes available to this process on the file system holding `path` (or its nearest existing parent).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let c = CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly sized out-buffer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (32-bit ARM has narrower ones).
    #[allow(clippy::unnecessary_cast)]
    let bytes = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
    Some(bytes)
}

/// Watches free space before each batch of events.
pub struct StorageGuard {
    crops_dir: PathBuf,
    min_free: u64,
    low: bool,
    free: FreeProbe,
}

type FreeProbe = Box<dyn FnMut(&Path) -> Option<u64> + Send>;

impl StorageGuard {
    pub fn new(crops_dir: PathBuf, min_free: u64) -> Self {
        Self::with_probe(crops_dir, min_free, Box::new(free_bytes))
    }

    /// With a stand-in for `statvfs` (tests).
    pub fn with_probe(crops_dir: PathBuf, min_free: u64, free: FreeProbe) -> Self {
        Self {
            crops_dir,
            min_free,
            low: false,
            free,
        }
    }

    /// Returns whether crops may be saved now. When space is short it first deletes the oldest crops
    /// (and clears their paths in `conn`) until the floor is met again.
    pub fn check(&mut self, conn: &Connection, stats: &WriterStats) -> bool {
        let Some(free) = (self.free)(&self.crops_dir) else {
            return true;
        };
        if free >= self.min_free {
            if self.low {
                self.low = false;
                tracing::info!(free_mb = free / 1_048_576, "storage recovered; crops are saved again");
            }
            return true;
        }
        if !self.low {
            self.low = true;
            tracing::warn!(
                free_mb = free / 1_048_576,
                floor_mb = self.min_free / 1_048_576,
                "storage short: pruning the oldest crop images and saving events without crops until space returns"
            );
        }
        let mut days: Vec<PathBuf> = std::fs::read_dir(&self.crops_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        days.sort();
        for day in days {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&day)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            files.sort();
            let (removed, kept) = prune_day(conn, &files);
            if kept == 0 {
                let _ = std::fs::remove_dir(&day);
            }
            stats.crops_pruned.fetch_add(removed, Ordering::Relaxed);
            tracing::warn!(
                day = %day.display(), crops = removed, held = kept,
                "storage short: deleted a day of crop images (crops under legal hold kept)"
            );
            if (self.free)(&self.crops_dir).is_some_and(|f| f >= self.min_free) {
                return true;
            }
        }
        false
    }
}

/// Deletes one day's crops except those of events under legal hold, clearing the events' crop paths
/// in one transaction. Returns (deleted, kept).
fn prune_day(conn: &Connection, files: &[PathBuf]) -> (u64, u64) {
    let held = |id: &str| -> bool {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM legal_holds h WHERE h.event_id = ?1
                OR (h.plate IS NOT NULL AND h.plate = (SELECT plate FROM events WHERE id = ?1)))",
            [id],
            |r| r.get::<_, bool>(0),
        )
        // When in doubt, keep it.
        .unwrap_or(true)
    };
    let (mut removed, mut kept) = (0, 0);
    let mut cleared = Vec::new();
    for f in files {
        let id = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if held(&id) {
            kept += 1;
            continue;
        }
        if std::fs::remove_file(f).is_ok() {
            removed += 1;
            cleared.push(id);
        }
    }
    let result = conn.unchecked_transaction().and_then(|tx| {
        {
            let mut stmt = tx.prepare_cached("UPDATE events SET crop_path = NULL WHERE id = ?1")?;
            for id in &cleared {
                stmt.execute([id])?;
            }
        }
        tx.commit()
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "crop paths of pruned images not cleared; they point at deleted files");
    }
    (removed, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(free_bytes(&dir.path().join("not/yet/made")).is_some_and(|b| b > 0));
    }

    #[test]
    fn short_storage_prunes_oldest_crops_first_and_clears_their_paths() {
        let dir = tempfile::tempdir().expect("tmp");
        let crops = dir.path().join("crops");
        let conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        for day in ["2026-11-01", "2026-11-02"] {
            std::fs::create_dir_all(crops.join(day)).expect("mkdir");
            let f = crops.join(day).join(format!("{day}.jpg"));
            std::fs::write(&f, b"jpg").expect("write");
            conn.execute(
                "INSERT INTO events (id, lane, at, action, reason_code, reason, crop_path)
                 VALUES (?1, 'entry', 0, 'deny', 'unknown', 'x', ?2)",
                [day.to_string(), f.display().to_string()],
            )
            .expect("insert");
        }
        // Short by one day's worth: the first pruned day brings it back.
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = calls.clone();
        let probe = Box::new(move |_: &Path| {
            Some(if c.fetch_add(1, Ordering::Relaxed) == 0 {
                10
            } else {
                1000
            })
        });
        let stats = WriterStats::default();
        let mut g = StorageGuard::with_probe(crops.clone(), 100, probe);
        assert!(g.check(&conn, &stats));
        assert!(!crops.join("2026-11-01").exists(), "the oldest day goes first");
        assert!(crops.join("2026-11-02/2026-11-02.jpg").exists());
        let cleared: Option<String> = conn
            .query_row("SELECT crop_path FROM events WHERE id = '2026-11-01'", [], |r| r.get(0))
            .expect("row");
        assert_eq!(cleared, None);
        assert_eq!(stats.crops_pruned.load(Ordering::Relaxed), 1);
        // Never enough: everything goes except what is under legal hold; new crops are refused.
        conn.execute(
            "INSERT INTO legal_holds (event_id, reason, created_at) VALUES ('2026-11-02', 'subpoena', 0)",
            [],
        )
        .expect("hold");
        std::fs::write(crops.join("2026-11-02/other.jpg"), b"jpg").expect("write");
        let mut g = StorageGuard::with_probe(crops.clone(), u64::MAX, Box::new(|_: &Path| Some(0)));
        assert!(!g.check(&conn, &stats));
        assert!(crops.join("2026-11-02/2026-11-02.jpg").exists(), "a held crop is kept");
        assert!(!crops.join("2026-11-02/other.jpg").exists());
    }
}
