//! Writing secrets (keys) to files: created new, mode 0600, synced. When an operator runs the CLI as
//! root in the service's data folder, the new file is given to the folder's owner, so the service (its
//! own user) can still read the key root just made.

use std::io::Write;
use std::path::Path;

/// Creates `path` (it must not exist) with `bytes`, readable by its owner only.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    give_to_folder_owner(path)
}

/// Like [`write_new`], replacing a file that is there.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    write_new(path, bytes)
}

fn give_to_folder_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let (mine, folder) = (std::fs::metadata(path)?, std::fs::metadata(dir)?);
    if mine.uid() == 0 && folder.uid() != 0 {
        std::os::unix::fs::chown(path, Some(folder.uid()), Some(folder.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secrets_are_private_new_and_replaceable() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("k");
        write_new(&p, b"one").expect("write");
        assert_eq!(std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        assert!(write_new(&p, b"two").is_err(), "never overwrites");
        replace(&p, b"three").expect("replace");
        assert_eq!(std::fs::read(&p).expect("read"), b"three");
    }
}
