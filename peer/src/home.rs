//! One HOME is one peer identity: its session, its daemon's control socket and state files.
//!
//! Layout: `session.json` (user and token, mode 0600), `daemon.sock` (control socket, 0600),
//! `daemon.json` (the running daemon's pid and piece address), `shares.json` (what this peer
//! serves), `downloads.json` (downloads and their state), `piece-lists/` (the piece hashes of
//! every file this peer shares or downloads, see `piece_lists.rs`). Files are replaced
//! atomically (write to a temporary file, fsync, rename).
//!
//! HOME is private: created 0700 (its subdirectories too), an existing HOME open to others is
//! made 0700 with a warning, and one owned by another uid is refused. Files are created with
//! their final mode (a secret is never readable by others, not even for a moment).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug)]
pub struct Home {
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub token: String,
    pub expires_at_ms: u64,
}

impl Home {
    /// `--home`, else `PEER_HOME` (both handled by clap), else the platform data dir.
    pub fn resolve(dir: Option<PathBuf>) -> anyhow::Result<Home> {
        let dir = match dir {
            Some(d) => d,
            None => dirs::data_dir()
                .ok_or_else(|| anyhow::anyhow!("no platform data directory; pass --home DIR"))?
                .join("p2p-share")
                .join("peer"),
        };
        let dir = if dir.is_absolute() { dir } else { std::env::current_dir()?.join(dir) };
        Ok(Home { dir })
    }

    /// Creates HOME 0700, or checks an existing one: ours, and made 0700 if others could get in.
    pub fn ensure(&self) -> anyhow::Result<()> {
        create_private_dir(&self.dir).map_err(|e| anyhow::anyhow!("cannot create HOME {}: {e}", self.dir.display()))?;
        let meta =
            fs::metadata(&self.dir).map_err(|e| anyhow::anyhow!("cannot read HOME {}: {e}", self.dir.display()))?;
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        match home_check(meta.is_dir(), meta.uid(), meta.mode(), me) {
            HomeCheck::Fine => Ok(()),
            HomeCheck::Tighten => {
                fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| anyhow::anyhow!("cannot make HOME {} private: {e}", self.dir.display()))?;
                tracing::warn!(
                    "HOME {} was open to other users (mode {:o}); made it 0700",
                    self.dir.display(),
                    meta.mode() & 0o777
                );
                Ok(())
            }
            HomeCheck::NotADir => anyhow::bail!("HOME {} is not a directory", self.dir.display()),
            HomeCheck::NotOurs(uid) => anyhow::bail!(
                "HOME {} belongs to uid {uid}, not to you (uid {me}): every user needs a HOME of their own (--home DIR)",
                self.dir.display()
            ),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("daemon.sock")
    }
    pub fn session_path(&self) -> PathBuf {
        self.dir.join("session.json")
    }
    pub fn daemon_info_path(&self) -> PathBuf {
        self.dir.join("daemon.json")
    }
    pub fn shares_path(&self) -> PathBuf {
        self.dir.join("shares.json")
    }
    pub fn downloads_path(&self) -> PathBuf {
        self.dir.join("downloads.json")
    }

    pub fn session(&self) -> Option<Session> {
        read_json(&self.session_path()).ok().flatten()
    }

    pub fn save_session(&self, s: &Session) -> anyhow::Result<()> {
        self.ensure()?;
        write_json_private(&self.session_path(), s)
    }

    pub fn clear_session(&self) {
        let _ = fs::remove_file(self.session_path());
    }
}

/// What `Home::ensure` does about an existing HOME.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HomeCheck {
    Fine,
    /// Ours, but group or others have some access: chmod 0700 and warn.
    Tighten,
    /// Owned by another uid: refused.
    NotOurs(u32),
    NotADir,
}

pub fn home_check(is_dir: bool, owner: u32, mode: u32, me: u32) -> HomeCheck {
    if !is_dir {
        HomeCheck::NotADir
    } else if owner != me {
        HomeCheck::NotOurs(owner)
    } else if mode & 0o077 != 0 {
        HomeCheck::Tighten
    } else {
        HomeCheck::Fine
    }
}

/// Creates `dir` and any missing parent with mode 0700 (an existing one is left as it is).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{} is corrupt: {e}", path.display()))?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Replaces `path` atomically with `value` as JSON.
/// One table's JSON file in HOME, written from snapshots outside the table's lock, so that a
/// reader of the table (a piece connection's handshake) never waits on a write and its fsync.
/// Each snapshot takes a number under the table's lock (`next`); a snapshot older than one
/// already written is dropped, so the file always ends with the newest state.
pub struct TableFile {
    path: std::path::PathBuf,
    taken: std::sync::atomic::AtomicU64,
    /// The number of the snapshot last written; held while writing.
    written: std::sync::Mutex<u64>,
}

impl TableFile {
    pub fn new(path: std::path::PathBuf) -> Self {
        TableFile { path, taken: std::sync::atomic::AtomicU64::new(0), written: std::sync::Mutex::new(0) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of a snapshot about to be taken: call it under the table's lock.
    pub fn next(&self) -> u64 {
        self.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }

    /// Writes snapshot number `n` unless a newer one is already written. Errors are logged.
    pub fn write<T: Serialize>(&self, n: u64, value: &T) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if n <= *written {
            return;
        }
        match write_json(&self.path, value) {
            Ok(()) => *written = n,
            Err(e) => tracing::error!("cannot save {}: {e}", self.path.display()),
        }
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(value)?, 0o644)
}

/// Like `write_json`, readable by the owner only (session tokens).
pub fn write_json_private<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(value)?, 0o600)
}

/// Replaces `path` atomically with `bytes`, readable by the owner only: for secrets (tokens, keys).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic(path, bytes, 0o600)
}

/// Writes a new temporary file beside `path` and renames it onto `path`. The temporary is
/// created exclusively (O_EXCL, O_NOFOLLOW) with `mode` from the start, so its mode is never
/// that of a leftover and never wider than asked (the umask can only narrow it).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.{}.tmp", std::process::id(), uuid::Uuid::new_v4().simple()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_decisions() {
        assert_eq!(home_check(true, 7, 0o40700, 7), HomeCheck::Fine);
        assert_eq!(home_check(true, 7, 0o40750, 7), HomeCheck::Tighten);
        assert_eq!(home_check(true, 7, 0o40701, 7), HomeCheck::Tighten);
        assert_eq!(home_check(true, 8, 0o40700, 7), HomeCheck::NotOurs(8));
        assert_eq!(home_check(false, 7, 0o100600, 7), HomeCheck::NotADir);
    }

    /// Sets the process umask for the duration of a test body; umask is per process, so the
    /// tests that use it serialize on this lock.
    static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
        let _g = UMASK.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: umask(2) cannot fail; the old mask is restored below.
        let old = unsafe { libc::umask(mask as libc::mode_t) };
        let r = f();
        unsafe { libc::umask(old) };
        r
    }

    #[test]
    fn home_and_session_are_private_even_under_umask_0() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home { dir: dir.path().join("a/b/home") };
        with_umask(0, || {
            home.ensure().unwrap();
            home.save_session(&Session { user: "u".into(), token: "t".into(), expires_at_ms: 1 }).unwrap();
        });
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&home.dir), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700, "missing parents are created private too");
        assert_eq!(mode(&home.session_path()), 0o600);
        assert_eq!(home.session().unwrap().token, "t");
        // A leftover temporary of a crashed writer does not lend its mode to the next write.
        fs::write(home.dir.join(format!(".session.json.{}.tmp", std::process::id())), b"x").unwrap();
        home.save_session(&Session { user: "u".into(), token: "t2".into(), expires_at_ms: 1 }).unwrap();
        assert_eq!(mode(&home.session_path()), 0o600);
        // An existing HOME open to others is tightened.
        fs::set_permissions(&home.dir, fs::Permissions::from_mode(0o755)).unwrap();
        home.ensure().unwrap();
        assert_eq!(mode(&home.dir), 0o700);
    }
}
