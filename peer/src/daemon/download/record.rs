//! What is persisted of a download (HOME/downloads.json, one record each).

use std::path::PathBuf;

use proto::api::FileMetaBody;
use serde::{Deserialize, Serialize};

use crate::control::{DownloadFailure, DownloadState};

/// What is persisted of a download.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DownloadRecord {
    pub group: String,
    pub name: String,
    /// Final path of the file.
    pub dest: String,
    pub meta: FileMetaBody,
    /// See STATE.md.
    pub state: DownloadState,
    pub error: Option<DownloadFailure>,
    /// `--force`: replace what is at `dest` when the download finishes.
    #[serde(default)]
    pub force: bool,
    /// The verified bytes when the download was paused: what a paused download shows, also
    /// after a restart (its `.part` is re-verified only when it is resumed).
    #[serde(default)]
    pub bytes_done: u64,
    /// Paused by `logout` (or a session that ended), not by a person: the next login resumes it.
    #[serde(default)]
    pub paused_by_logout: bool,
}

impl DownloadRecord {
    pub fn part_path(&self) -> PathBuf {
        PathBuf::from(format!("{}.part", self.dest))
    }
}
