//! A node's hold on its data_dir: checked before anything starts, so that a second node on the
//! same folder, a folder that is a file or cannot be written each stop with one line naming it.
//! The lock is `flock` on `data_dir/tracker-node.lock`, which holds the holder's pid; the
//! kernel drops it when the process ends, however it ends.

use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

pub const LOCK_FILE: &str = "tracker-node.lock";

/// Held for as long as the node runs.
pub struct DataDirLock {
    _file: std::fs::File,
}

pub fn lock(dir: &Path) -> Result<DataDirLock, String> {
    let shown = dir.display();
    if dir.exists() && !dir.is_dir() {
        return Err(format!("data_dir {shown} is not a directory"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("data_dir {shown} cannot be created: {e}"))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
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
    let write_pid = |file: &mut std::fs::File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()
    };
    write_pid(&mut file).map_err(|e| format!("data_dir {shown} is not writable: {e}"))?;
    Ok(DataDirLock { _file: file })
}
