//! A node's hold on its data_dir: checked before anything starts, so that a second node on the
//! same folder, a folder that is a file or cannot be written, or one that other users can read
//! each stop with one line naming it. The lock is `flock` on `data_dir/tracker-node.lock`, which
//! holds the holder's pid; the kernel drops it when the process ends, however it ends.
//!
//! The data_dir holds every account's argon2 hash (sled's log) and the snapshots: it is the
//! node's user's only. From `lock` on, the process creates everything private (umask 077: sled's
//! files, snapshots, the lock file, the TLS files), the data_dir is made 0700, and a node refuses
//! to start on a data_dir of which the folder or anything in it is open to group or others (as
//! for `tls/`), telling the operator the fix. It never changes the modes of an existing folder
//! itself: a folder someone opened up on purpose is the operator's to close.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "tracker-node.lock";
/// Mode bits of the group and others: none may be set on anything in a data_dir.
pub const OPEN_TO_OTHERS: u32 = 0o077;
/// Most entries looked at when checking a data_dir (sled's few files, a snapshot, the lock
/// file: tens in practice). Beyond it the check stops; what it saw was private.
pub const MAX_CHECKED_ENTRIES: usize = 10_000;

/// Held for as long as the node runs.
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Whatever this process creates from now on is its user's only (files 0600, folders 0700),
/// however it is created (sled opens its files with the default 0666).
pub fn private_umask() {
    // SAFETY: umask(2) has no failure mode; it sets this process's mask and returns the old one.
    unsafe { libc::umask(0o077) };
}

/// The first entry of `dir` (itself included, then depth first, links not followed) whose mode
/// is open to group or others: `(path, mode)`. At most `MAX_CHECKED_ENTRIES` are looked at.
pub fn first_open_to_others(dir: &Path) -> std::io::Result<Option<(PathBuf, u32)>> {
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(p) = todo.pop() {
        seen += 1;
        if seen > MAX_CHECKED_ENTRIES {
            break;
        }
        // The data_dir itself may be a link to the real folder; nothing inside is followed.
        let meta = if p == dir { std::fs::metadata(&p)? } else { std::fs::symlink_metadata(&p)? };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & OPEN_TO_OTHERS != 0 {
            return Ok(Some((p, mode)));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p)? {
                todo.push(entry?.path());
            }
        }
    }
    Ok(None)
}

/// The refusal for a data_dir `dir` in which `path` has `mode`: one line with the fix.
pub fn open_to_others_error(dir: &Path, path: &Path, mode: u32) -> String {
    let what =
        if path == dir { format!("data_dir {}", dir.display()) } else { format!("{} in data_dir", path.display()) };
    format!(
        "{what} is open to other users (mode {mode:04o}), and the data_dir holds every account's password hash; \
         make it private with: chmod -R go-rwx {}",
        dir.display()
    )
}

/// Takes node's hold on `dir`: makes this process's files private (`private_umask`), creates
/// `dir` (0700) if needed, locks it, and refuses it if anything in it is open to other users.
pub fn lock(dir: &Path) -> Result<DataDirLock, String> {
    private_umask();
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        return Err(format!("data_dir {shown} is not a directory"));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("data_dir {shown} cannot be created: {e}"))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("data_dir {shown} is not writable: {e}"))?;
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let pid = match text.trim().parse::<u32>() {
                Ok(pid) => format!(" (pid {pid})"),
                Err(_) => String::new(),
            };
            return Err(format!("data_dir {shown} is in use by another tracker-node{pid}"));
        }
        return Err(format!("data_dir {shown} cannot be locked: {e}"));
    }
    // Checked under the lock, so no other node of this folder is changing it meanwhile.
    match first_open_to_others(dir) {
        Ok(None) => {}
        Ok(Some((path, mode))) => return Err(open_to_others_error(dir, &path, mode)),
        Err(e) => return Err(format!("data_dir {shown} cannot be checked: {e}")),
    }
    let write_pid = |file: &mut std::fs::File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()
    };
    write_pid(&mut file).map_err(|e| format!("data_dir {shown} is not writable: {e}"))?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_tree_passes_and_the_first_open_entry_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node-1");
        std::fs::create_dir_all(dir.join("sled")).unwrap();
        std::fs::write(dir.join("sled/db"), b"hashes").unwrap();
        chmod(&dir, 0o700);
        chmod(&dir.join("sled"), 0o700);
        chmod(&dir.join("sled/db"), 0o600);
        assert_eq!(first_open_to_others(&dir).unwrap(), None);
        // A link inside is not followed (its own mode is always 0777).
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        assert_eq!(first_open_to_others(&dir).unwrap(), None);

        for (path, mode) in [(dir.join("sled/db"), 0o644), (dir.join("sled/db"), 0o640), (dir.join("sled"), 0o701)] {
            chmod(&path, mode);
            assert_eq!(first_open_to_others(&dir).unwrap(), Some((path.clone(), mode)));
            chmod(&path, if path.is_dir() { 0o700 } else { 0o600 });
        }
        chmod(&dir, 0o755);
        assert_eq!(first_open_to_others(&dir).unwrap(), Some((dir.clone(), 0o755)));
    }

    #[test]
    fn the_refusal_names_the_path_the_mode_and_the_fix() {
        let dir = Path::new("/srv/tracker/node-1");
        let e = open_to_others_error(dir, dir, 0o755);
        assert!(e.starts_with("data_dir /srv/tracker/node-1 is open to other users (mode 0755)"), "{e}");
        assert!(e.ends_with("chmod -R go-rwx /srv/tracker/node-1"), "{e}");
        let e = open_to_others_error(dir, &dir.join("sled/db"), 0o644);
        assert!(e.starts_with("/srv/tracker/node-1/sled/db in data_dir is open to other users (mode 0644)"), "{e}");
    }

    #[test]
    fn lock_makes_a_new_data_dir_private_and_refuses_an_open_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/node-1");
        let held = lock(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
        drop(held);
        chmod(&dir, 0o750);
        let e = lock(&dir).err().expect("refused");
        assert!(e.contains("(mode 0750)") && e.contains("chmod -R go-rwx"), "{e}");
        assert_eq!(mode(&dir), 0o750, "left as the operator set it");
    }
}
