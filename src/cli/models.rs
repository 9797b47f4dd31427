//! Finding the models and describing the build (`--version`).

use std::path::PathBuf;

pub use crate::VERSION;

/// The model manifest when none is given.
pub fn default_manifest() -> PathBuf {
    let mut candidates = vec![PathBuf::from("models/manifest.toml")];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.to_path_buf()))
    {
        candidates.push(dir.join("models/manifest.toml"));
        candidates.push(dir.join("../../models/manifest.toml"));
    }
    candidates.push(PathBuf::from("/usr/share/gatehouse/models/manifest.toml"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}
