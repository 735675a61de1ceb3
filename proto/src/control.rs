//! The control protocol between the peer CLI and its HOME's daemon: one JSON request per line on
//! the Unix socket `HOME/daemon.sock`, one JSON response line back. Plain serde types; the
//! socket I/O is the peer's (`peer::control`). The socket is 0600 and the daemon answers only
//! callers of its own uid; anyone else gets one `Error` line with code `not_allowed`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::FileMetaBody;
use crate::error::ApiErrorCode;

/// The codes a failed download's message carries as a prefix of their own in its JSON form;
/// any other failure is `download_failed`.
const PREFIXED: [ApiErrorCode; 2] = [ApiErrorCode::NoPeers, ApiErrorCode::DestExists];

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

impl fmt::Display for DownloadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a download failed: a code and one sentence. In JSON (the control socket, downloads.json,
/// `show-downloads --json`) it is one string: `"no_peers: <message>"` and
/// `"dest_exists: <message>"` for the codes of their own, the bare message for
/// `download_failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadFailure {
    /// `no_peers`, `dest_exists` or `download_failed`.
    pub code: ApiErrorCode,
    pub message: String,
}

impl DownloadFailure {
    /// Nobody shares the file.
    pub fn no_peers(message: impl Into<String>) -> Self {
        DownloadFailure { code: ApiErrorCode::NoPeers, message: message.into() }
    }

    /// Something is at the destination.
    pub fn dest_exists(message: impl Into<String>) -> Self {
        DownloadFailure { code: ApiErrorCode::DestExists, message: message.into() }
    }

    /// A failure without a code of its own (`download_failed`).
    pub fn other(message: impl Into<String>) -> Self {
        DownloadFailure { code: ApiErrorCode::DownloadFailed, message: message.into() }
    }

    /// Reads the JSON form back (see the type's documentation).
    pub fn parse(s: &str) -> Self {
        PREFIXED
            .into_iter()
            .find_map(|code| {
                let message = s.strip_prefix(code.as_str())?.strip_prefix(": ")?.to_string();
                Some(DownloadFailure { code, message })
            })
            .unwrap_or_else(|| DownloadFailure::other(s))
    }
}

impl fmt::Display for DownloadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if PREFIXED.contains(&self.code) {
            write!(f, "{}: {}", self.code.as_str(), self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl Serialize for DownloadFailure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DownloadFailure {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(DownloadFailure::parse(&s))
    }
}

/// What `download` answers once the download is under way (or needed none): which file,
/// where to, and at most one of how it began otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadStarted {
    pub group: String,
    pub name: String,
    pub dest: String,
    pub size: u64,
    /// Sharers other than this peer when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharers: Option<usize>,
    /// A download to `dest` was already running.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_running: bool,
    /// The same file was paused at `dest`: it is resumed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
    /// `dest` already held this very file: it is shared, nothing was fetched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_present: bool,
}

impl DownloadStarted {
    /// A download of `name` in `group` to `dest`, `size` bytes, with no flag set.
    pub fn new(group: &str, name: &str, dest: &str, size: u64) -> Self {
        DownloadStarted {
            group: group.into(),
            name: name.into(),
            dest: dest.into(),
            size,
            sharers: None,
            already_running: false,
            resumed: false,
            already_present: false,
        }
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
    pub error: Option<DownloadFailure>,
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
    Pong {
        pid: u32,
        peer_addr: String,
        /// Where the piece server listens (`peer status`); absent from older daemons.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
        /// The address the tracker lists this daemon at, while it lists it (`peer status`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listed_as: Option<String>,
    },
    /// Success, with the fields the command reports (`{"ok": true, ...fields}` in the CLI's
    /// `--json`).
    Ok {
        fields: serde_json::Value,
    },
    Downloads {
        rows: Vec<DownloadRow>,
    },
    Watch {
        row: Option<DownloadRow>,
        cancelled: bool,
    },
    Shares {
        rows: Vec<ShareRow>,
    },
    Error {
        code: ApiErrorCode,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_one_string_in_json_with_its_code_as_a_prefix_when_it_has_one() {
        let table = [
            (ApiErrorCode::NoPeers, "nobody shares f in g any more", "no_peers: nobody shares f in g any more"),
            (ApiErrorCode::DestExists, "/d/f exists", "dest_exists: /d/f exists"),
            (ApiErrorCode::DownloadFailed, "not_member: removed", "not_member: removed"),
            (ApiErrorCode::DownloadFailed, "no sharer answered for 30 s", "no sharer answered for 30 s"),
        ];
        for (code, message, json) in table {
            let f = DownloadFailure { code, message: message.into() };
            assert_eq!(f.to_string(), json);
            assert_eq!(serde_json::to_value(&f).unwrap(), serde_json::json!(json));
            let back: DownloadFailure = serde_json::from_value(serde_json::json!(json)).unwrap();
            assert_eq!(back, f, "{json}");
        }
    }

    #[test]
    fn a_download_answer_carries_only_the_flag_that_is_set() {
        let started = DownloadStarted { sharers: Some(2), ..DownloadStarted::new("g", "f", "/d/f", 7) };
        assert_eq!(
            serde_json::to_value(&started).unwrap(),
            serde_json::json!({"group": "g", "name": "f", "dest": "/d/f", "size": 7, "sharers": 2})
        );
        let resumed = DownloadStarted { resumed: true, ..DownloadStarted::new("g", "f", "/d/f", 7) };
        assert_eq!(
            serde_json::to_value(&resumed).unwrap(),
            serde_json::json!({"group": "g", "name": "f", "dest": "/d/f", "size": 7, "resumed": true})
        );
    }

    #[test]
    fn a_row_reads_and_writes_the_same_json() {
        let line = r#"{"group":"g","name":"f","dest":"/d/f","state":"failed","bytes_done":0,"size":1,"error":"no_peers: nobody","rate_bytes_per_s":0,"peers":0}"#;
        let row: DownloadRow = serde_json::from_str(line).unwrap();
        assert_eq!(row.error.as_ref().map(|e| &e.code), Some(&ApiErrorCode::NoPeers));
        assert_eq!(serde_json::to_string(&row).unwrap(), line);
    }
}
