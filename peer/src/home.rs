//! One HOME is one peer identity: its session, its daemon's control socket and state files.
//!
//! Layout: `session.json` (user and token, mode 0600), `daemon.sock` (control socket),
//! `daemon.json` (the running daemon's pid and piece address), `shares.json` (what this peer
//! serves), `downloads.json` (downloads and their state), `piece-lists/` (the piece hashes of
//! every file this peer shares or downloads, see `piece_lists.rs`). Files are replaced
//! atomically (write to a temporary file, fsync, rename).

use std::fs;
use std::io::Write;
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

    pub fn ensure(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| anyhow::anyhow!("cannot create HOME {}: {e}", self.dir.display()))
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
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(value)?, 0o644)
}

/// Like `write_json`, readable by the owner only (session tokens).
pub fn write_json_private<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(value)?, 0o600)
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}
