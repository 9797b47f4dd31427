//! When storage runs short, what gives way, and what is kept for the database.
//!
//! - Crop images give way first: new crops are not saved while space is short, and crops of events the
//!   cloud already has (uploaded) go, oldest first, one file at a time until the floor (`[site]
//!   min_free_mb`) is met again. Crops of events not uploaded (owed to the cloud, or no cloud link), not
//!   stored yet, or under legal hold are never deleted for space; retention removes them at their age.
//! - The database reserve (`db-reserve`, `[site] db_reserve_mb`) is a file of zeros made while space is
//!   plentiful; when a commit fails because the disk is full it is deleted, so the commit can go through,
//!   and it is made again once space returns.
//! - If the disk is full anyway, the writer holds events (memory and `events.spill`, see [`super::spill`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::WriterStats;

/// Free bytes available to this process on the file system holding `path` (or its nearest existing parent).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let st = rustix::fs::statvfs(existing).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Creates `path` holding `size` zero bytes (written, not sparse, so the blocks are really taken) via a
/// temporary file and a rename. On failure nothing is left behind.
pub fn preallocate(path: &Path, size: u64) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        let chunk = vec![0u8; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Space kept for the database: a file of `size` bytes released when a commit finds the disk full.
#[derive(Debug, Clone)]
pub struct Reserve {
    path: PathBuf,
    size: u64,
}

impl Reserve {
    /// The reserve of the database in `data_dir`.
    pub fn new(data_dir: &Path, size: u64) -> Self {
        Self {
            path: data_dir.join("db-reserve"),
            size,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the reserve is in place (always true when none is configured).
    pub fn present(&self) -> bool {
        self.size == 0 || std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.size)
    }

    /// Makes the reserve when it is missing and `free` bytes leave room for it with `spare` more to spare.
    /// Returns whether it is in place.
    pub fn ensure(&self, free: Option<u64>, spare: u64) -> bool {
        if self.present() {
            return true;
        }
        if free.is_some_and(|f| f < self.size.saturating_add(spare)) {
            return false;
        }
        match preallocate(&self.path, self.size) {
            Ok(()) => {
                tracing::info!(path = %self.path.display(), mb = self.size / 1_048_576, "database reserve in place");
                true
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "could not make the database reserve");
                false
            }
        }
    }

    /// Deletes the reserve so the database can grow into its space. Returns whether there was one.
    pub fn release(&self) -> bool {
        if self.size == 0 {
            return false;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::warn!(
                    path = %self.path.display(),
                    mb = self.size / 1_048_576,
                    "disk full: released the database reserve so events can be stored; free space on the data folder"
                );
                true
            }
            Err(_) => false,
        }
    }
}

/// Watches free space before each batch of events.
pub struct StorageGuard {
    crops_dir: PathBuf,
    min_free: u64,
    low: bool,
    free: FreeProbe,
    /// After a scan that could not free enough, the next one waits until then (a scan reads every crop
    /// folder and looks up every file's event).
    rescan_at: Option<std::time::Instant>,
}

/// How long a scan that could not free enough waits before the next.
const RESCAN: std::time::Duration = std::time::Duration::from_secs(60);

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
            rescan_at: None,
        }
    }

    /// Free bytes on the crops' file system, as the probe sees them.
    pub fn free(&mut self) -> Option<u64> {
        (self.free)(&self.crops_dir)
    }

    /// Returns whether crops may be saved now. When space is short it first deletes the oldest crops
    /// (and clears their paths in `conn`) until the floor is met again.
    pub fn check(&mut self, conn: &Connection, stats: &WriterStats) -> bool {
        let Some(free) = (self.free)(&self.crops_dir) else {
            return true;
        };
        if free >= self.min_free {
            self.rescan_at = None;
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
        if self.rescan_at.is_some_and(|t| std::time::Instant::now() < t) {
            return false;
        }
        self.rescan_at = Some(std::time::Instant::now() + RESCAN);
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
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
                        .collect()
                })
                .unwrap_or_default();
            // UUIDv7 names: sorted by name is oldest first.
            files.sort();
            let (mut removed, mut kept, mut cleared) = (0u64, 0u64, Vec::new());
            let mut enough = false;
            for f in &files {
                let id = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                if !may_go(conn, &id) {
                    kept += 1;
                    continue;
                }
                if std::fs::remove_file(f).is_ok() {
                    removed += 1;
                    cleared.push(id);
                    if (self.free)(&self.crops_dir).is_some_and(|f| f >= self.min_free) {
                        enough = true;
                        break;
                    }
                }
            }
            clear_paths(conn, &cleared);
            stats.crops_pruned.fetch_add(removed, Ordering::Relaxed);
            if removed > 0 {
                tracing::warn!(
                    day = %day.display(), crops = removed, kept,
                    "storage short: deleted the oldest uploaded crop images (kept: held, not uploaded or not stored yet)"
                );
            }
            // Only goes when empty.
            let _ = std::fs::remove_dir(&day);
            if enough {
                return true;
            }
        }
        false
    }
}

/// Whether the crop of event `id` may be deleted for space: the event is stored, uploaded and not under
/// legal hold. No row (the event is not stored yet) or any doubt: keep it.
fn may_go(conn: &Connection, id: &str) -> bool {
    conn.query_row(
        "SELECT e.uploaded_at IS NOT NULL, EXISTS (SELECT 1 FROM legal_holds h WHERE h.event_id = e.id
            OR (h.plate IS NOT NULL AND h.plate = e.plate))
         FROM events e WHERE e.id = ?1",
        [id],
        |r| Ok((r.get::<_, bool>(0)?, r.get::<_, bool>(1)?)),
    )
    .map(|(uploaded, held)| uploaded && !held)
    .unwrap_or(false)
}

/// Clears the crop paths of deleted crops in one transaction.
fn clear_paths(conn: &Connection, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let result = conn.unchecked_transaction().and_then(|tx| {
        {
            let mut stmt = tx.prepare_cached("UPDATE events SET crop_path = NULL WHERE id = ?1")?;
            for id in ids {
                stmt.execute([id])?;
            }
        }
        tx.commit()
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "crop paths of pruned images not cleared; they point at deleted files");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_made_released_and_made_again_only_with_room() {
        let dir = tempfile::tempdir().expect("tmp");
        let r = Reserve::new(dir.path(), 64 * 1024);
        assert!(!r.present());
        assert!(!r.ensure(Some(64 * 1024), 1), "no room for it and the spare");
        assert!(r.ensure(Some(1 << 30), 1));
        assert_eq!(std::fs::metadata(r.path()).expect("reserve").len(), 64 * 1024);
        assert!(r.release(), "released");
        assert!(!r.path().exists());
        assert!(!r.release(), "nothing left to release");
        let none = Reserve::new(dir.path(), 0);
        assert!(none.present() && !none.release(), "a reserve of 0 is off");
    }

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
                "INSERT INTO events (id, lane, at, action, reason_code, reason, crop_path, uploaded_at)
                 VALUES (?1, 'entry', 0, 'deny', 'unknown', 'x', ?2, 1)",
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
        conn.execute(
            "INSERT INTO events (id, lane, at, action, reason_code, reason, uploaded_at)
             VALUES ('other', 'entry', 0, 'deny', 'unknown', 'x', 1)",
            [],
        )
        .expect("insert");
        // A crop whose event is not stored yet (held by the writer) is never pruned.
        std::fs::write(crops.join("2026-11-02/unstored.jpg"), b"jpg").expect("write");
        let mut g = StorageGuard::with_probe(crops.clone(), u64::MAX, Box::new(|_: &Path| Some(0)));
        assert!(!g.check(&conn, &stats));
        assert!(crops.join("2026-11-02/2026-11-02.jpg").exists(), "a held crop is kept");
        assert!(!crops.join("2026-11-02/other.jpg").exists());
        assert!(crops.join("2026-11-02/unstored.jpg").exists(), "no stored event, kept");
    }

    #[test]
    fn only_uploaded_crops_go_oldest_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let crops = dir.path().join("crops");
        let conn = crate::db::open(&dir.path().join("g.db")).expect("db");
        let day = crops.join("2026-11-03");
        std::fs::create_dir_all(&day).expect("mkdir");
        // Five events of one day (today's folder): the two oldest are uploaded, the rest still owed.
        for i in 0..5 {
            let id = format!("0190-{i}");
            let f = day.join(format!("{id}.jpg"));
            std::fs::write(&f, b"jpg").expect("write");
            conn.execute(
                "INSERT INTO events (id, lane, at, action, reason_code, reason, crop_path, uploaded_at)
                 VALUES (?1, 'entry', ?2, 'deny', 'unknown', 'x', ?3, ?4)",
                rusqlite::params![id, i, f.display().to_string(), (i < 2).then_some(1i64)],
            )
            .expect("insert");
        }
        let stats = WriterStats::default();
        let mut g = StorageGuard::with_probe(crops.clone(), u64::MAX, Box::new(|_: &Path| Some(0)));
        assert!(!g.check(&conn, &stats), "still short");
        assert_eq!(stats.crops_pruned.load(Ordering::Relaxed), 2);
        for i in 0..5 {
            assert_eq!(day.join(format!("0190-{i}.jpg")).exists(), i >= 2, "crop {i}");
        }
        // A scan that could not free enough is not repeated at once (it reads every folder).
        conn.execute("UPDATE events SET uploaded_at = 1 WHERE id = '0190-2'", [])
            .expect("upload");
        assert!(!g.check(&conn, &stats));
        assert!(day.join("0190-2.jpg").exists(), "no rescan within a minute");
        // The first uploaded crop is enough when one file brings space back: oldest first.
        let dir2 = tempfile::tempdir().expect("tmp");
        let crops2 = dir2.path().join("crops");
        let day2 = crops2.join("2026-11-04");
        std::fs::create_dir_all(&day2).expect("mkdir");
        let conn2 = crate::db::open(&dir2.path().join("g.db")).expect("db");
        for id in ["0190-a", "0190-b"] {
            std::fs::write(day2.join(format!("{id}.jpg")), b"jpg").expect("write");
            conn2
                .execute(
                    "INSERT INTO events (id, lane, at, action, reason_code, reason, uploaded_at)
                     VALUES (?1, 'entry', 0, 'deny', 'unknown', 'x', 1)",
                    [id],
                )
                .expect("insert");
        }
        let free = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let f = free.clone();
        let day2c = day2.clone();
        let probe = Box::new(move |_: &Path| {
            // Space returns once the oldest is gone.
            Some(if day2c.join("0190-a.jpg").exists() {
                f.load(Ordering::Relaxed)
            } else {
                100
            })
        });
        let mut g = StorageGuard::with_probe(crops2.clone(), 50, probe);
        assert!(g.check(&conn2, &stats));
        assert!(!day2.join("0190-a.jpg").exists());
        assert!(day2.join("0190-b.jpg").exists(), "only as much as needed");
    }
}
