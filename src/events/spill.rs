//! The spill file (`events.spill` beside the database): where decided events wait, besides memory, while
//! the database cannot take them (full disk, damaged or missing file). It is made at start, while space is
//! there, as `SIZE` bytes of zeros, so on a full disk the writer still has room it owns: records are
//! written into that space, never appended past it. Each record is one JSON line (an [`EventRow`]); a zero
//! byte ends the list. Every write is fsynced before the writer counts the events as held on disk. The
//! writer replays the file into SQLite at start and clears it (one zero byte at offset 0) once every
//! record it holds is committed; replays are idempotent (`INSERT OR IGNORE` by event id).
//!
//! On copy-on-write file systems (btrfs, ZFS) rewriting preallocated blocks may itself need space: there
//! the file is a best effort and memory is the bound.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::store::EventRow;

/// The spill file's size: about 1,500 events (about 1,000 when the data folder is encrypted).
pub const SIZE: u64 = 1024 * 1024;

/// An open spill file (or none, when it could not be made).
pub struct Spill {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    used: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spill file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("spill file {path} is full ({size} bytes); further events are held in memory only")]
    Full { path: String, size: u64 },
    #[error("spill file {path} could not be made; events are held in memory only")]
    Missing { path: String },
}

impl Spill {
    /// The spill file of the database at `db_path`.
    pub fn path_for(db_path: &Path) -> PathBuf {
        db_path.with_file_name("events.spill")
    }

    /// Opens the spill file, making it (`size` bytes) when missing, and returns the events it holds.
    /// Lines that do not parse (a write cut short by a power cut) are skipped with a warning.
    pub fn open(path: PathBuf, size: u64) -> (Self, Vec<EventRow>) {
        // An existing file is used as it is (never replaced: it may hold events).
        if !path.exists() {
            if let Err(e) = super::storage::preallocate(&path, size) {
                tracing::warn!(path = %path.display(), error = %e, "could not make the event spill file");
            }
        }
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).ok();
        let mut rows = Vec::new();
        let mut used = 0;
        if let Some(f) = &file {
            let mut bytes = Vec::new();
            if let Err(e) = f.take(size).read_to_end(&mut bytes) {
                tracing::warn!(path = %path.display(), error = %e, "could not read the event spill file");
            }
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            used = end as u64;
            for line in bytes[..end].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match decode(line).and_then(|l| serde_json::from_slice::<EventRow>(&l).map_err(|e| e.to_string())) {
                    Ok(r) => rows.push(r),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipped a damaged spilled event"),
                }
            }
        }
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
            .unwrap_or(0);
        (Self { path, file, size, used }, rows)
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    /// Writes `rows` after those already there and syncs them.
    pub fn append(&mut self, rows: &[EventRow]) -> Result<(), SpillError> {
        let Some(f) = &self.file else {
            return Err(SpillError::Missing { path: self.shown() });
        };
        let mut buf = Vec::new();
        for r in rows {
            // An EventRow always serializes (plain strings and numbers).
            if let Ok(line) = serde_json::to_vec(r) {
                let line = encode(line).map_err(|source| SpillError::Io {
                    path: self.path.display().to_string(),
                    source,
                })?;
                buf.extend_from_slice(&line);
                buf.push(b'\n');
            }
        }
        // The zero byte that ends the list.
        buf.push(0);
        if self.used + buf.len() as u64 > self.size {
            return Err(SpillError::Full {
                path: self.shown(),
                size: self.size,
            });
        }
        let io = |source| SpillError::Io {
            path: self.path.display().to_string(),
            source,
        };
        f.write_all_at(&buf, self.used).map_err(io)?;
        f.sync_data().map_err(io)?;
        self.used += buf.len() as u64 - 1;
        Ok(())
    }

    /// Forgets every record (they are committed).
    pub fn clear(&mut self) -> Result<(), SpillError> {
        if self.used == 0 {
            return Ok(());
        }
        let Some(f) = &self.file else {
            return Ok(());
        };
        let io = |source| SpillError::Io {
            path: self.path.display().to_string(),
            source,
        };
        f.write_all_at(&[0], 0).map_err(io)?;
        f.sync_data().map_err(io)?;
        self.used = 0;
        Ok(())
    }
}

/// The context sealed spill lines are bound to.
const SPILL_CONTEXT: &str = "events.spill";

/// A record line as written: its JSON, or, when the data folder is encrypted, `S` and the base64 of the
/// sealed JSON (a line holds no newline and no zero byte either way).
fn encode(json: Vec<u8>) -> std::io::Result<Vec<u8>> {
    use base64::Engine;
    match crate::secrets::installed() {
        Some(k) => {
            let sealed = crate::secrets::sealed::seal(k, SPILL_CONTEXT, &json).map_err(std::io::Error::other)?;
            let mut line = b"S".to_vec();
            line.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(sealed).as_bytes());
            Ok(line)
        }
        None => Ok(json),
    }
}

/// The JSON of a line [`encode`] wrote.
fn decode(line: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let Some(b64) = line.strip_prefix(b"S") else {
        return Ok(line.to_vec());
    };
    let keys = crate::secrets::installed().ok_or("a sealed spilled event and no master key ([secrets])")?;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    crate::secrets::sealed::open(keys, SPILL_CONTEXT, &sealed).map_err(|e| e.to_string())
}
