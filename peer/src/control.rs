//! The control protocol between the CLI and its HOME's daemon: one JSON request per line on
//! the Unix socket `HOME/daemon.sock`, one JSON response line back. The socket is 0600 and the
//! daemon answers only callers of its own uid (SO_PEERCRED); anyone else gets one `Error` line
//! with code `not_allowed`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use proto::api::FileMetaBody;

/// Longest control line, in bytes: a request carries names, paths and digests (an upload's
/// piece list stays in HOME/piece-lists/, stored there by the CLI).
pub const MAX_CONTROL_LINE_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    Ping,
    /// Share `path` (already hashed by the CLI into `meta`, its piece list stored in HOME) in `group`.
    Upload {
        path: String,
        group: String,
        meta: FileMetaBody,
    },
    /// Download `name` of `group` to `dest`, an absolute file path (DEST/NAME resolved by the CLI).
    Download {
        group: String,
        name: String,
        dest: String,
        /// Replace whatever is at `dest` (a file or a symlink itself, never a symlink's target).
        /// Without it, an existing `dest` is `dest_exists` unless it already holds this file.
        #[serde(default)]
        force: bool,
    },
    ShowDownloads,
    /// The download to `dest` (absolute file path), for a CLI that waits for it to end: the
    /// answer is its row, or none (then whether it was cancelled).
    Watch {
        dest: String,
    },
    /// Stop the active (downloading or paused) download(s) of `name` in `group` and delete the `.part`.
    Cancel {
        group: String,
        name: String,
    },
    /// Stop fetching, keep the `.part` and its verified pieces: state `paused`, across restarts.
    Pause {
        group: String,
        name: String,
    },
    /// Continue a paused download from its verified pieces.
    Resume {
        group: String,
        name: String,
    },
    /// Drop the complete or failed download(s) of `name` in `group` from the table.
    Forget {
        group: String,
        name: String,
    },
    /// What this daemon shares.
    ListShares,
    StopShare {
        group: String,
        name: String,
    },
    /// The CLI logged in or out: re-read the session, announce or pause; after a login, resume
    /// the downloads the logout paused.
    SessionChanged,
    /// The CLI is about to log out: pause the running downloads (resumed at the next login).
    LoggingOut,
}

/// Where a download stands (peer/src/daemon/download/STATE.md). In JSON, its lowercase name:
/// "downloading", "paused", "complete", "failed".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DownloadState {
    Downloading,
    Paused,
    Complete,
    Failed,
}

impl DownloadState {
    pub const ALL: [DownloadState; 4] =
        [DownloadState::Downloading, DownloadState::Paused, DownloadState::Complete, DownloadState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            DownloadState::Downloading => "downloading",
            DownloadState::Paused => "paused",
            DownloadState::Complete => "complete",
            DownloadState::Failed => "failed",
        }
    }

    /// Downloading or paused: what `show-downloads` lists without `--all`.
    pub fn is_active(self) -> bool {
        matches!(self, DownloadState::Downloading | DownloadState::Paused)
    }
}

impl std::fmt::Display for DownloadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DownloadRow {
    pub group: String,
    pub name: String,
    pub dest: String,
    pub state: DownloadState,
    pub bytes_done: u64,
    pub size: u64,
    pub error: Option<String>,
    /// Bytes per second over the last few seconds (0 unless downloading).
    #[serde(default)]
    pub rate_bytes_per_s: u64,
    /// Sharers this download is connected to now.
    #[serde(default)]
    pub peers: usize,
}

/// One file this daemon shares (`list-shares`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShareRow {
    pub group: String,
    pub name: String,
    pub size: u64,
    pub sha1: String,
    /// Absolute path of the local copy.
    pub path: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ControlResponse {
    Pong { pid: u32, peer_addr: String },
    Ok { fields: serde_json::Value },
    Downloads { rows: Vec<DownloadRow> },
    Watch { row: Option<DownloadRow>, cancelled: bool },
    Shares { rows: Vec<ShareRow> },
    Error { code: String, message: String },
}

/// Sends one request to the daemon of the HOME whose socket is `socket`.
pub async fn call(socket: &Path, req: &ControlRequest, timeout: Duration) -> std::io::Result<ControlResponse> {
    let fut = async {
        let stream = UnixStream::connect(socket).await?;
        let (r, mut w) = stream.into_split();
        let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        line.push(b'\n');
        w.write_all(&line).await?;
        w.flush().await?;
        let mut reader = BufReader::new(r);
        let mut resp = String::new();
        reader.read_line(&mut resp).await?;
        if resp.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the daemon closed the connection"));
        }
        serde_json::from_str(&resp).map_err(std::io::Error::other)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the daemon did not answer in time"))?
}
