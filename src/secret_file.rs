//! Writing keys, certificates and other private files safely, even as root in a folder another user owns
//! (an operator running the CLI in the service's data folder, which the service user can write to).
//!
//! - Every file is created new (`O_EXCL`) and never through a symbolic link (`O_NOFOLLOW`): a link planted
//!   where the file goes is refused, and its target is not touched.
//! - Mode and owner are set on the open handle (`fchmod`, `fchown`), never again by path, so a file swapped
//!   for a link after it was created cannot redirect them to a system file.
//! - The bytes go to a temporary file beside the target, synced, then linked (new files) or renamed
//!   (replacements) into place: a reader sees the whole file or none, and two processes creating the same
//!   file at once get one winner and one `AlreadyExists` (the loser reads the winner's file).
//! - When root creates a file in a folder owned by someone else, the file is given to the folder's owner,
//!   so the service (its own user) can still read what root just made.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of secrets (keys): readable by their owner only.
pub const PRIVATE: u32 = 0o600;
/// Mode of public material (public keys, certificates).
pub const PUBLIC: u32 = 0o644;

/// Opens a new file for writing: created here (`O_EXCL`), never through a symbolic link (`O_NOFOLLOW`),
/// with exactly `mode` (set on the handle, whatever the umask).
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// Creates `path` (nothing may be there, not even a dangling link) with `bytes`, readable by its owner
/// only. Fails with `AlreadyExists` when something is there.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_new_mode(path, bytes, PRIVATE)
}

/// Like [`write_new`], with `mode`.
pub fn write_new_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    place(path, bytes, mode, Place::New)
}

/// Like [`write_new`], replacing a file that is there (a link there is replaced, its target untouched).
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_mode(path, bytes, PRIVATE)
}

/// Like [`replace`], with `mode`.
pub fn replace_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    place(path, bytes, mode, Place::Replace)
}

/// Creates a folder and its missing parents with `mode` (0700 or 0750 for data folders); a folder that is
/// already there keeps its mode.
pub fn create_dir_all(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(mode).create(path)
}

/// Takes every permission for other users off `path` (a file or folder made by an older version with
/// the umask's mode), through a handle opened without following a link. Returns whether it changed.
pub fn close_to_others(path: &Path) -> io::Result<bool> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mode = f.metadata()?.permissions().mode() & 0o7777;
    if mode & 0o007 == 0 {
        return Ok(false);
    }
    f.set_permissions(std::fs::Permissions::from_mode(mode & !0o007))?;
    Ok(true)
}

#[derive(Clone, Copy, PartialEq)]
enum Place {
    New,
    Replace,
}

fn place(path: &Path, bytes: &[u8], mode: u32, how: Place) -> io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), hex::encode(tag)));
    let mut f = create_new(&tmp, mode)?;
    let written = (|| {
        f.write_all(bytes)?;
        give_to_folder_owner(&f, &dir)?;
        f.sync_all()?;
        match how {
            // link(2) never follows or replaces what is at the target: EEXIST for a file or a link there.
            Place::New => match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    // A file system without hard links (a FAT stick for the signing key): create in place.
                    let mut direct = create_new(path, mode)?;
                    direct.write_all(bytes)?;
                    give_to_folder_owner(&direct, &dir)?;
                    direct.sync_all()?;
                    return Ok(());
                }
                r => r?,
            },
            // rename(2) replaces a link at the target itself, never the file it points to.
            Place::Replace => std::fs::rename(&tmp, path)?,
        }
        // The temporary name could have been swapped for something else before it was linked or renamed:
        // what is now at `path` must be the file written here.
        let placed = std::fs::symlink_metadata(path)?;
        let ours = f.metadata()?;
        if placed.ino() != ours.ino() || placed.dev() != ours.dev() {
            let _ = std::fs::remove_file(path);
            return Err(io::Error::other(format!(
                "{} was swapped while it was written; refusing it",
                path.display()
            )));
        }
        Ok(())
    })();
    if how == Place::New || written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Root created `f` in a folder someone else owns: give it to the folder's owner (by the handle).
fn give_to_folder_owner(f: &File, dir: &Path) -> io::Result<()> {
    let (mine, folder) = (f.metadata()?, std::fs::metadata(dir)?);
    if mine.uid() == 0 && folder.uid() != 0 {
        std::os::unix::fs::fchown(f, Some(folder.uid()), Some(folder.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn secrets_are_private_new_and_replaceable() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("k");
        write_new(&p, b"one").expect("write");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(
            write_new(&p, b"two").map_err(|e| e.kind()),
            Err(io::ErrorKind::AlreadyExists),
            "never overwrites"
        );
        replace(&p, b"three").expect("replace");
        assert_eq!(std::fs::read(&p).expect("read"), b"three");
        write_new_mode(&dir.path().join("pub"), b"p", PUBLIC).expect("public");
        assert_eq!(mode(&dir.path().join("pub")), 0o644);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "no temporary file left behind: {left:?}");
    }

    #[test]
    fn a_planted_link_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tmp");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let link = dir.path().join("k");
        std::os::unix::fs::symlink(&victim, &link).expect("link");
        assert!(
            write_new(&link, b"key").is_err(),
            "a link where the key goes is refused"
        );
        let dangling = dir.path().join("d");
        std::os::unix::fs::symlink(dir.path().join("made-by-link"), &dangling).expect("link");
        assert!(write_new(&dangling, b"key").is_err(), "a dangling link is refused too");
        assert!(!dir.path().join("made-by-link").exists(), "nothing created through it");
        // A replacement replaces the link itself, never the file it points to.
        replace(&link, b"new").expect("replace");
        assert!(!std::fs::symlink_metadata(&link).expect("meta").file_type().is_symlink());
        assert_eq!(std::fs::read(&link).expect("read"), b"new");
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert_eq!(mode(&victim), 0o644, "target's mode untouched");
    }

    #[test]
    fn the_panel_certificate_is_not_written_through_a_planted_link() {
        let dir = tempfile::tempdir().expect("tmp");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        std::os::unix::fs::symlink(&victim, dir.path().join("panel-cert.pem")).expect("link");
        std::os::unix::fs::symlink(&victim, dir.path().join("panel-key.pem")).expect("link");
        let (cert, key) = crate::panel::tls::self_signed(dir.path(), &["gate.local".into()]).expect("cert");
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        for p in [&cert, &key] {
            assert!(!std::fs::symlink_metadata(p).expect("meta").file_type().is_symlink());
        }
        assert_eq!(mode(&key), 0o600);
    }

    #[test]
    fn an_old_world_readable_file_or_folder_is_closed_to_others() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("g.db");
        std::fs::write(&f, b"").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(close_to_others(&f).expect("close"));
        assert_eq!(mode(&f), 0o640);
        assert!(!close_to_others(&f).expect("again"), "nothing to do");
        let d = dir.path().join("crops");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(close_to_others(&d).expect("close"));
        assert_eq!(mode(&d), 0o750);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).expect("link");
        assert!(close_to_others(&link).is_err(), "never through a link");
    }

    #[test]
    fn data_folders_get_their_mode() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path().join("a/b");
        create_dir_all(&d, 0o750).expect("mkdir");
        for p in [&d, &dir.path().join("a")] {
            assert_eq!(mode(p) & 0o027, 0, "no group write, nothing for others: {:o}", mode(p));
        }
    }
}
