//! Downloads: the table of this peer's downloads (persisted in HOME/downloads.json), starting
//! one, resuming them after a restart, and finishing (whole-file check, rename, share).
//! See STATE.md beside this file for the states and the lock order.
//!
//! The tracker gives a download the file's `piece_list_sha1`, not its piece hashes: the first
//! connection to get its turn fetches the list from its sharer (`piece_list.rs`), checks it, and
//! stores it in HOME/piece-lists/ before any piece is requested. A restarted daemon resumes with
//! the stored list (re-checked against the digest) and fetches it again only if it is missing.

pub mod conn;
pub mod picker;
pub mod piece_list;
pub mod swarm;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use proto::api::FileMetaBody;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;

use super::control_server::client_error;
use super::{disk, Daemon};
use crate::control::{ControlResponse, DownloadRow};
use crate::hashing::{
    check_size, parse_sha1_hex, piece_count, piece_list_sha1, PieceHash, MAX_FILE_SIZE_BYTES, PIECE_LEN_BYTES,
};
use crate::home::{read_json, write_json, Home};
use picker::Picker;

/// What is persisted of a download.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DownloadRecord {
    pub group: String,
    pub name: String,
    /// Final path of the file.
    pub dest: String,
    pub meta: FileMetaBody,
    /// "downloading" | "complete" | "failed"
    pub state: String,
    pub error: Option<String>,
}

impl DownloadRecord {
    pub fn part_path(&self) -> PathBuf {
        PathBuf::from(format!("{}.part", self.dest))
    }
}

/// A download in this daemon's memory.
pub struct Live {
    pub record: Mutex<DownloadRecord>,
    pub bytes_done: AtomicU64,
    /// Verified pieces and who is fetching what. Lock order: `picker` before `record`.
    pub picker: Mutex<Picker>,
    /// Announces each newly verified piece to the connections serving this file.
    pub have_tx: broadcast::Sender<u32>,
    /// The `.part` file while downloading.
    pub part: Mutex<Option<Arc<File>>>,
    /// The piece list, once verified against `meta.piece_list_sha1` (set once, never changed).
    /// No piece is requested or trusted before it is set.
    pub piece_list: OnceLock<Arc<Vec<PieceHash>>>,
    /// Held by the one connection fetching the piece list, so a download holds at most one
    /// unverified list in memory and asks one sharer at a time.
    pub list_fetch: tokio::sync::Mutex<()>,
}

impl Live {
    pub fn state(&self) -> String {
        self.record.lock().unwrap_or_else(|p| p.into_inner()).state.clone()
    }
    pub fn meta(&self) -> FileMetaBody {
        self.record.lock().unwrap_or_else(|p| p.into_inner()).meta.clone()
    }
    pub fn group_and_sha1(&self) -> (String, String) {
        let r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        (r.group.clone(), r.meta.sha1.clone())
    }
}

pub struct DownloadTable {
    path: PathBuf,
    items: Mutex<Vec<Arc<Live>>>,
}

fn live_from(record: DownloadRecord, have: Vec<bool>) -> Arc<Live> {
    let size = record.meta.size;
    let done: u64 = have
        .iter()
        .enumerate()
        .filter(|(_, h)| **h)
        .map(|(i, _)| crate::hashing::piece_range(size, i as u64).1 as u64)
        .sum();
    let (have_tx, _) = broadcast::channel(1024);
    Arc::new(Live {
        bytes_done: AtomicU64::new(if record.state == "complete" { size } else { done }),
        picker: Mutex::new(Picker::new(have)),
        have_tx,
        part: Mutex::new(None),
        piece_list: OnceLock::new(),
        list_fetch: tokio::sync::Mutex::new(()),
        record: Mutex::new(record),
    })
}

impl DownloadTable {
    pub fn load(home: &Home) -> anyhow::Result<Self> {
        let path = home.downloads_path();
        let records: Vec<serde_json::Value> = read_json(&path)?.unwrap_or_default();
        let items = records
            .into_iter()
            .filter_map(|v| match serde_json::from_value::<DownloadRecord>(v) {
                Ok(r) if r.meta.size <= MAX_FILE_SIZE_BYTES => Some(r),
                Ok(r) => {
                    tracing::warn!(name = %r.name, size = r.meta.size, "dropping a download record over the size bound");
                    None
                }
                // Records of an older version carried the piece hashes instead of their digest.
                Err(e) => {
                    tracing::warn!("dropping a download record this version cannot read: {e}");
                    None
                }
            })
            .map(|r| {
                let n = piece_count(r.meta.size) as usize;
                let complete = r.state == "complete";
                live_from(r, vec![complete; n])
            })
            .collect();
        Ok(DownloadTable { path, items: Mutex::new(items) })
    }

    pub fn save(&self) {
        let records: Vec<DownloadRecord> = {
            let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            items.iter().map(|l| l.record.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect()
        };
        if let Err(e) = write_json(&self.path, &records) {
            tracing::error!("cannot save {}: {e}", self.path.display());
        }
    }

    pub fn all(&self) -> Vec<Arc<Live>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn rows(&self) -> Vec<DownloadRow> {
        self.all()
            .iter()
            .map(|l| {
                let r = l.record.lock().unwrap_or_else(|p| p.into_inner());
                DownloadRow {
                    group: r.group.clone(),
                    name: r.name.clone(),
                    dest: r.dest.clone(),
                    state: r.state.clone(),
                    bytes_done: l.bytes_done.load(Ordering::Relaxed),
                    size: r.meta.size,
                    error: r.error.clone(),
                }
            })
            .collect()
    }

    /// The in-progress download of content `sha1` in `group`, for serving its pieces.
    pub fn find_active(&self, group: &str, sha1: &str) -> Option<Arc<Live>> {
        self.all().into_iter().find(|l| {
            let r = l.record.lock().unwrap_or_else(|p| p.into_inner());
            r.state == "downloading" && r.group == group && r.meta.sha1 == sha1
        })
    }

    fn insert(&self, live: Arc<Live>) {
        let dest = live.record.lock().unwrap_or_else(|p| p.into_inner()).dest.clone();
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items.retain(|l| l.record.lock().unwrap_or_else(|p| p.into_inner()).dest != dest);
        items.push(live);
    }
}

fn err(code: &str, message: impl Into<String>) -> ControlResponse {
    ControlResponse::Error { code: code.into(), message: message.into() }
}

/// Checks that metadata from the tracker describes a file we can fetch and verify.
fn check_meta(meta: &FileMetaBody, name: &str) -> Result<(), String> {
    if meta.name != name {
        return Err(format!("the tracker described {:?} instead of {name:?}", meta.name));
    }
    check_size(name, meta.size)?;
    if meta.piece_len != PIECE_LEN_BYTES {
        return Err(format!(
            "the tracker's metadata has pieces of {} bytes; this peer uses {PIECE_LEN_BYTES}",
            meta.piece_len
        ));
    }
    let Some(list_digest) = parse_sha1_hex(&meta.piece_list_sha1) else {
        return Err("the tracker's metadata has a malformed piece_list_sha1".into());
    };
    if parse_sha1_hex(&meta.sha1).is_none() {
        return Err("the tracker's metadata has a malformed sha1".into());
    }
    if meta.size == 0 && list_digest != piece_list_sha1(&[]) {
        return Err("the tracker's metadata is inconsistent: an empty file's piece list is empty".into());
    }
    Ok(())
}

/// An empty file's piece list is known without asking anyone (and checked by `check_meta`).
fn set_empty_list(live: &Live) {
    if live.meta().size == 0 {
        let _ = live.piece_list.set(Arc::new(Vec::new()));
    }
}

/// Starts downloading `name` of `group` to `dest` (a final file path, resolved by the CLI).
pub async fn start(
    d: &Arc<Daemon>,
    group: String,
    name: String,
    dest: String,
) -> Result<serde_json::Value, ControlResponse> {
    proto::names::validate_file_name(&name).map_err(|m| err("invalid_name", m))?;
    let dest_path = PathBuf::from(&dest);
    if !dest_path.is_absolute() || dest_path.file_name().is_none() {
        return Err(err("invalid_request", format!("destination {dest:?} must be an absolute file path")));
    }
    let Some(client) = d.session_client() else {
        return Err(err("unauthenticated", "not logged in (run: peer login USER)"));
    };
    if let Some(existing) = d.downloads.all().into_iter().find(|l| {
        let r = l.record.lock().unwrap_or_else(|p| p.into_inner());
        r.dest == dest && r.state == "downloading"
    }) {
        let r = existing.record.lock().unwrap_or_else(|p| p.into_inner());
        return Ok(
            json!({"group": r.group, "name": r.name, "dest": r.dest, "size": r.meta.size, "already_running": true}),
        );
    }
    let details = client.file_details(&group, &name).await.map_err(client_error)?;
    check_meta(&details.file, &name).map_err(|m| err("download_failed", m))?;
    let others = details.sharers.iter().filter(|s| s.peer_addr != d.peer_addr).count();
    let record = DownloadRecord {
        group: group.clone(),
        name: name.clone(),
        dest: dest.clone(),
        meta: details.file.clone(),
        state: "downloading".into(),
        error: None,
    };
    let n = piece_count(record.meta.size) as usize;
    let live = live_from(record, vec![false; n]);
    set_empty_list(&live);
    d.downloads.insert(live.clone());
    if others == 0 {
        let msg = format!("nobody shares {name} in {group} right now");
        finish_failed(d, &live, &format!("no_peers: {msg}"));
        return Err(err("no_peers", msg));
    }
    let part = disk::open_part(&live.record.lock().unwrap_or_else(|p| p.into_inner()).part_path(), details.file.size)
        .map_err(|e| err("download_failed", format!("cannot create {dest}.part: {e}")))?;
    *live.part.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(part));
    d.downloads.save();
    // Register as a sharer now: other downloaders find us and fetch the pieces we verify.
    if let Err(e) = client.upload(&group, details.file.clone(), &d.peer_addr).await {
        tracing::warn!("cannot register as a sharer of {name} while downloading: {e}");
    }
    tokio::spawn(swarm::run(d.clone(), live.clone()));
    Ok(json!({"group": group, "name": name, "dest": dest, "size": details.file.size, "sharers": others}))
}

/// After a restart: re-verify what the `.part` files hold and continue.
pub fn resume_all(d: &Arc<Daemon>) {
    for live in d.downloads.all() {
        if live.state() != "downloading" {
            continue;
        }
        let d = d.clone();
        tokio::spawn(async move {
            let record = live.record.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let part_path = record.part_path();
            let meta = record.meta.clone();
            let store = d.piece_lists.clone();
            type Scanned = (File, Option<Vec<PieceHash>>, Vec<bool>);
            let scanned = tokio::task::spawn_blocking(move || -> std::io::Result<Scanned> {
                let f = disk::open_part(&part_path, meta.size)?;
                let n = piece_count(meta.size);
                // The list was stored before any piece was written against it; without it,
                // nothing in the .part can be trusted, and the swarm fetches the list again.
                let list = match store.load(&meta.piece_list_sha1, n) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(name = %meta.name, "cannot read the stored piece list: {e}");
                        None
                    }
                };
                let mut buf = Vec::new();
                let have = match &list {
                    Some(l) => {
                        (0..n).map(|i| disk::piece_matches(&f, meta.size, i, &l[i as usize], &mut buf)).collect()
                    }
                    None => vec![false; n as usize],
                };
                Ok((f, list, have))
            })
            .await;
            match scanned {
                Ok(Ok((f, list, have))) => {
                    match list {
                        Some(l) => {
                            let _ = live.piece_list.set(Arc::new(l));
                        }
                        None if record.meta.size > 0 => {
                            tracing::info!(name = %record.name, "the piece list is not stored: fetching it again from a sharer");
                        }
                        None => set_empty_list(&live),
                    }
                    let done = have.iter().filter(|h| **h).count();
                    let bytes: u64 = have
                        .iter()
                        .enumerate()
                        .filter(|(_, h)| **h)
                        .map(|(i, _)| crate::hashing::piece_range(record.meta.size, i as u64).1 as u64)
                        .sum();
                    tracing::info!(name = %record.name, verified_pieces = done, "resuming download");
                    *live.picker.lock().unwrap_or_else(|p| p.into_inner()) = Picker::new(have);
                    live.bytes_done.store(bytes, Ordering::Relaxed);
                    *live.part.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(f));
                    swarm::run(d, live).await;
                }
                Ok(Err(e)) => finish_failed(&d, &live, &format!("cannot reopen the .part file: {e}")),
                Err(e) => finish_failed(&d, &live, &e.to_string()),
            }
        });
    }
}

pub fn finish_failed(d: &Daemon, live: &Live, error: &str) {
    {
        let mut r = live.record.lock().unwrap_or_else(|p| p.into_inner());
        r.state = "failed".into();
        r.error = Some(error.to_string());
        tracing::warn!(name = %r.name, group = %r.group, "download failed: {error}");
    }
    *live.part.lock().unwrap_or_else(|p| p.into_inner()) = None;
    d.downloads.save();
}
