//! Downloads: the table of this peer's downloads (persisted in HOME/downloads.json), starting
//! one, resuming them after a restart, and finishing (whole-file check, rename, share).
//! See STATE.md beside this file for the states and the lock order.
//!
//! The tracker gives a download the file's `piece_list_sha1`, not its piece hashes: the first
//! connection to get its turn fetches the list from its sharer (`piece_list.rs`), checks it, and
//! stores it in HOME/piece-lists/ before any piece is requested. A restarted daemon resumes with
//! the stored list (re-checked against the digest) and fetches it again only if it is missing.
//!
//! A person manages downloads with `manage.rs`: pause (the swarm stops, the `.part` and its
//! verified pieces stay, `paused` is persisted), resume (the `.part` is re-verified and the
//! swarm starts again), cancel (the swarm stops, the `.part` is unlinked, the row goes) and
//! forget (a finished or failed row goes).
//!
//! Files on disk (see `disk.rs`): before anything is written, an existing destination is
//! refused (`dest_exists`) unless it already holds this very file (then the download is done at
//! once and shared) or `--force` was given (then it is replaced at the end, atomically; a symlink
//! there is replaced, never followed). The `.part` is created exclusively without following a
//! symlink, and the finished file is renamed into place without replacing anything that
//! appeared meanwhile, unless forced.

pub mod conn;
pub mod engine;
pub mod manage;
pub mod picker;
pub mod piece_list;
pub mod swarm;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use proto::api::FileMetaBody;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::control_server::client_error;
use super::shares::Share;
use super::{disk, Daemon};
use crate::control::{ControlResponse, DownloadRow, DownloadState};
use crate::hashing::{
    check_size, parse_sha1_hex, piece_count, piece_list_sha1, PieceHash, MAX_FILE_SIZE_BYTES, PIECE_LEN_BYTES,
};
use crate::home::{read_json, Home, TableFile};
use crate::progress::{RateMeter, RATE_WINDOW};
use picker::Picker;

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
    pub error: Option<String>,
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
    /// Stops this download's swarm and its connections (pause, cancel); a child of the daemon's
    /// shutdown token, replaced by a fresh one each time the swarm starts.
    pub stop: Mutex<CancellationToken>,
    /// The task running the swarm (and the re-verification before it), awaited when stopped.
    pub task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// One pause / resume / cancel / forget of this download at a time.
    pub manage: tokio::sync::Mutex<()>,
    /// Every piece is verified and the swarm is finishing (whole-file SHA-1, rename): too late
    /// to pause or cancel.
    pub finishing: AtomicBool,
    /// Sharers connected now.
    pub peers: AtomicUsize,
    /// Samples of `bytes_done` while the swarm runs, for `rate_bytes_per_s`.
    pub rate: Mutex<RateMeter>,
}

impl Live {
    pub fn state(&self) -> DownloadState {
        self.record.lock().unwrap_or_else(|p| p.into_inner()).state
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
    /// HOME/downloads.json, written outside the locks (`TableFile`).
    file: TableFile,
    /// One permit per swarm running: at most `MAX_RUNNING_SWARMS` downloads fetch at once; the
    /// others stay `downloading` with no sharer connected until one ends.
    swarm_slots: Arc<tokio::sync::Semaphore>,
    items: Mutex<Vec<Arc<Live>>>,
    /// Destinations of recently cancelled downloads (in memory only), newest last.
    cancelled: Mutex<VecDeque<(String, Instant)>>,
}

fn live_from(record: DownloadRecord, have: Vec<bool>) -> Arc<Live> {
    let size = record.meta.size;
    let done: u64 = have
        .iter()
        .enumerate()
        .filter(|(_, h)| **h)
        .map(|(i, _)| crate::hashing::piece_range(size, i as u64).1 as u64)
        .sum();
    let bytes_done = match record.state {
        DownloadState::Complete => size,
        DownloadState::Paused => record.bytes_done.min(size),
        _ => done,
    };
    let (have_tx, _) = broadcast::channel(1024);
    Arc::new(Live {
        bytes_done: AtomicU64::new(bytes_done),
        picker: Mutex::new(Picker::new(have)),
        have_tx,
        part: Mutex::new(None),
        piece_list: OnceLock::new(),
        list_fetch: tokio::sync::Mutex::new(()),
        record: Mutex::new(record),
        stop: Mutex::new(CancellationToken::new()),
        task: Mutex::new(None),
        manage: tokio::sync::Mutex::new(()),
        finishing: AtomicBool::new(false),
        peers: AtomicUsize::new(0),
        rate: Mutex::new(RateMeter::new(RATE_WINDOW)),
    })
}

/// Most downloads whose swarms run at once (each with up to `engine::MAX_PEERS_PER_DOWNLOAD`
/// connections); the others wait for a slot.
pub const MAX_RUNNING_SWARMS: usize = 8;

/// How long a cancelled download's destination is remembered as cancelled, for the CLI that
/// was waiting for it.
const CANCELLED_MEMORY: Duration = Duration::from_secs(600);
/// Most cancelled destinations remembered.
const CANCELLED_MAX: usize = 64;

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
                let complete = r.state == DownloadState::Complete;
                live_from(r, vec![complete; n])
            })
            .collect();
        Ok(DownloadTable {
            file: TableFile::new(path),
            swarm_slots: Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING_SWARMS)),
            items: Mutex::new(items),
            cancelled: Mutex::new(VecDeque::new()),
        })
    }

    /// Writes every record to downloads.json; the snapshot is taken under the table's lock, the
    /// file written outside it, and an older snapshot never replaces a newer one.
    pub fn save(&self) {
        let (n, records) = {
            let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            let records: Vec<DownloadRecord> =
                items.iter().map(|l| l.record.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect();
            (self.file.next(), records)
        };
        self.file.write(n, &records);
    }

    pub fn all(&self) -> Vec<Arc<Live>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn rows(&self) -> Vec<DownloadRow> {
        self.all().iter().map(|l| row_of(l)).collect()
    }

    /// The downloads of `name` in `group` (to any destination).
    pub fn matching(&self, group: &str, name: &str) -> Vec<Arc<Live>> {
        self.all()
            .into_iter()
            .filter(|l| {
                let r = l.record.lock().unwrap_or_else(|p| p.into_inner());
                r.group == group && r.name == name
            })
            .collect()
    }

    /// The download to `dest`, or else whether one was cancelled lately.
    pub fn watch(&self, dest: &str) -> (Option<DownloadRow>, bool) {
        let live = self.all().into_iter().find(|l| l.record.lock().unwrap_or_else(|p| p.into_inner()).dest == dest);
        match live {
            Some(l) => (Some(row_of(&l)), false),
            None => {
                let now = Instant::now();
                let c = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
                (None, c.iter().any(|(d, at)| d == dest && now.duration_since(*at) < CANCELLED_MEMORY))
            }
        }
    }

    /// Drops `live` from the table (and downloads.json); `cancelled` remembers its destination
    /// as cancelled for a CLI waiting for it.
    pub fn remove(&self, live: &Arc<Live>, cancelled: bool) {
        let dest = live.record.lock().unwrap_or_else(|p| p.into_inner()).dest.clone();
        {
            let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            if cancelled {
                let mut c = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
                c.retain(|(d, _)| *d != dest);
                c.push_back((dest, Instant::now()));
                while c.len() > CANCELLED_MAX {
                    c.pop_front();
                }
            }
            items.retain(|l| !Arc::ptr_eq(l, live));
        }
        self.save();
    }

    /// The in-progress download of content `sha1` in `group`, for serving its pieces.
    pub fn find_active(&self, group: &str, sha1: &str) -> Option<Arc<Live>> {
        self.all().into_iter().find(|l| {
            let r = l.record.lock().unwrap_or_else(|p| p.into_inner());
            r.state == DownloadState::Downloading && r.group == group && r.meta.sha1 == sha1
        })
    }

    fn insert(&self, live: Arc<Live>) {
        let dest = live.record.lock().unwrap_or_else(|p| p.into_inner()).dest.clone();
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        self.cancelled.lock().unwrap_or_else(|p| p.into_inner()).retain(|(d, _)| *d != dest);
        items.retain(|l| l.record.lock().unwrap_or_else(|p| p.into_inner()).dest != dest);
        items.push(live);
    }
}

/// A download as `show-downloads` shows it.
fn row_of(l: &Live) -> DownloadRow {
    let bytes_done = l.bytes_done.load(Ordering::Relaxed);
    let r = l.record.lock().unwrap_or_else(|p| p.into_inner());
    let downloading = r.state == DownloadState::Downloading;
    let rate =
        if downloading { l.rate.lock().unwrap_or_else(|p| p.into_inner()).rate(Instant::now(), bytes_done) } else { 0 };
    DownloadRow {
        group: r.group.clone(),
        name: r.name.clone(),
        dest: r.dest.clone(),
        state: r.state,
        bytes_done,
        size: r.meta.size,
        error: r.error.clone(),
        rate_bytes_per_s: rate,
        peers: if downloading { l.peers.load(Ordering::Relaxed) } else { 0 },
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

/// What is at a download's destination, as far as the download is concerned.
enum AtDest {
    /// Nothing, or something `--force` replaces at the end.
    Proceed,
    /// A regular file that already holds this file: its piece list.
    Identical(Vec<PieceHash>),
}

/// Looks at `dest` before anything is written (see `disk::dest_plan`).
fn check_dest(dest: &Path, meta: &FileMetaBody, force: bool) -> Result<AtDest, ControlResponse> {
    let io = |e: std::io::Error| err("download_failed", format!("cannot look at {}: {e}", dest.display()));
    let found = disk::Found::at(dest).map_err(io)?;
    match disk::dest_plan(found, meta.size, force) {
        disk::DestPlan::Download | disk::DestPlan::Replace => Ok(AtDest::Proceed),
        disk::DestPlan::Refuse => Err(err("dest_exists", disk::dest_exists_message(dest))),
        disk::DestPlan::IsDir => Err(err("dest_exists", format!("{} is a directory", dest.display()))),
        disk::DestPlan::Compare => {
            // Opened without following a link (one may have replaced the file since the lstat).
            let same = disk::open_existing(dest).and_then(|f| {
                if f.metadata()?.len() != meta.size {
                    return Ok(None);
                }
                let (sha1, pieces) = disk::hash_open(&f, meta.size)?;
                let list = hex::encode(piece_list_sha1(&pieces));
                Ok((sha1.eq_ignore_ascii_case(&meta.sha1) && list.eq_ignore_ascii_case(&meta.piece_list_sha1))
                    .then_some(pieces))
            });
            match same {
                Ok(Some(pieces)) => Ok(AtDest::Identical(pieces)),
                _ if force => Ok(AtDest::Proceed),
                _ => Err(err("dest_exists", disk::dest_exists_message(dest))),
            }
        }
    }
}

/// The destination already holds the file: record the download as complete and share it, as a
/// finished download would be.
async fn already_there(
    d: &Arc<Daemon>,
    client: &tracker_client::TrackerClient,
    record: DownloadRecord,
    pieces: Vec<PieceHash>,
) -> Result<serde_json::Value, ControlResponse> {
    let (store, key) = (d.piece_lists.clone(), record.meta.piece_list_sha1.clone());
    tokio::task::spawn_blocking(move || store.save(&key, &pieces))
        .await
        .map_err(|e| err("download_failed", e.to_string()))?
        .map_err(|e| err("download_failed", format!("cannot store the piece list in HOME: {e}")))?;
    d.shares.add(Share {
        group: record.group.clone(),
        name: record.name.clone(),
        path: record.dest.clone(),
        size: record.meta.size,
        sha1: record.meta.sha1.clone(),
        piece_list_sha1: Some(record.meta.piece_list_sha1.clone()),
    });
    let fields = json!({"group": record.group, "name": record.name, "dest": record.dest, "size": record.meta.size,
        "already_present": true});
    tracing::info!(name = %record.name, group = %record.group, dest = %record.dest, "the destination already holds the file: sharing it");
    if let Err(e) = client.upload(&record.group, record.meta.clone(), &d.peer_addr, &d.identity.public_hex()).await {
        tracing::warn!("cannot register as a sharer of {}: {e}", record.name);
    }
    let n = piece_count(record.meta.size) as usize;
    d.downloads.insert(live_from(DownloadRecord { state: DownloadState::Complete, ..record }, vec![true; n]));
    d.downloads.save();
    Ok(fields)
}

/// Moves the finished `.part` onto `dest`: never replacing anything there unless the download
/// was forced, and only if the `.part` path still names the file this download wrote.
///
/// The whole file is not read again for its SHA-1: every piece was checked against its hash in
/// a piece list whose SHA-1 is the tracker's `piece_list_sha1` before it was written, so the
/// bytes are those the uploader hashed, on the same assumption (SHA-1's second-preimage
/// resistance) a whole-file check would rest on; BitTorrent's v1 has no other check either. The
/// pass cost ~0.6 s per GiB (docs/BENCH.md). A resumed download re-verifies every piece of its
/// `.part` against the same list.
pub fn place_finished(part: Option<Arc<File>>, record: &DownloadRecord) -> Result<(), String> {
    let part_path = record.part_path();
    let dest = PathBuf::from(&record.dest);
    let f = match part {
        Some(f) => f,
        None => {
            Arc::new(disk::open_existing(&part_path).map_err(|e| format!("cannot read {}: {e}", part_path.display()))?)
        }
    };
    // No fsync here: like other download managers we leave write-back to the kernel; a crash
    // before it is caught when the resumed download re-verifies the `.part` piece by piece.
    if !disk::is_same_file(&part_path, &f).unwrap_or(false) {
        return Err(format!("{} was replaced during the download; not moving it into place", part_path.display()));
    }
    drop(f);
    disk::place(&part_path, &dest, record.force).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "dest_exists: {}; the finished file stays in {}",
                disk::dest_exists_message(&dest),
                part_path.display()
            )
        } else {
            format!("cannot move {} to {}: {e}", part_path.display(), dest.display())
        }
    })
}

/// Starts downloading `name` of `group` to `dest` (a final file path, resolved by the CLI).
/// With `force`, whatever is at `dest` is replaced when the download finishes.
pub async fn start(
    d: &Arc<Daemon>,
    group: String,
    name: String,
    dest: String,
    force: bool,
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
        r.dest == dest && r.state == DownloadState::Downloading
    }) {
        let r = existing.record.lock().unwrap_or_else(|p| p.into_inner());
        return Ok(
            json!({"group": r.group, "name": r.name, "dest": r.dest, "size": r.meta.size, "already_running": true}),
        );
    }
    // The same file paused at the same place: downloading it again resumes it.
    if let Some(paused) = d.downloads.matching(&group, &name).into_iter().find(|l| {
        let r = l.record.lock().unwrap_or_else(|p| p.into_inner());
        r.dest == dest && r.state == DownloadState::Paused
    }) {
        manage::resume_one(d, &paused).await.map_err(|m| err("download_failed", m))?;
        let size = paused.meta().size;
        return Ok(json!({"group": group, "name": name, "dest": dest, "size": size, "resumed": true}));
    }
    let details = client.file_details(&group, &name).await.map_err(client_error)?;
    check_meta(&details.file, &name).map_err(|m| err("download_failed", m))?;
    let others = details.sharers.iter().filter(|s| s.peer_key != d.identity.public_hex()).count();
    let record = DownloadRecord {
        group: group.clone(),
        name: name.clone(),
        dest: dest.clone(),
        meta: details.file.clone(),
        state: DownloadState::Downloading,
        error: None,
        force,
        bytes_done: 0,
        paused_by_logout: false,
    };
    // Nothing is written before this: an existing destination is refused, or already complete.
    let at_dest = {
        let (path, meta) = (dest_path.clone(), details.file.clone());
        tokio::task::spawn_blocking(move || check_dest(&path, &meta, force))
            .await
            .map_err(|e| err("download_failed", e.to_string()))??
    };
    if let AtDest::Identical(pieces) = at_dest {
        return already_there(d, &client, record, pieces).await;
    }
    let n = piece_count(record.meta.size) as usize;
    let live = live_from(record, vec![false; n]);
    set_empty_list(&live);
    d.downloads.insert(live.clone());
    if others == 0 {
        let msg = format!("nobody shares {name} in {group} right now");
        finish_failed(d, &live, &format!("no_peers: {msg}"));
        return Err(err("no_peers", msg));
    }
    let part = match disk::create_part(&PathBuf::from(format!("{dest}.part")), details.file.size) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!("cannot create {dest}.part: {e}");
            finish_failed(d, &live, &msg);
            return Err(err("download_failed", msg));
        }
    };
    *live.part.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(part));
    d.downloads.save();
    // Register as a sharer now: other downloaders find us and fetch the pieces we verify.
    if let Err(e) = client.upload(&group, details.file.clone(), &d.peer_addr, &d.identity.public_hex()).await {
        tracing::warn!("cannot register as a sharer of {name} while downloading: {e}");
    }
    spawn_swarm(d, &live, false);
    Ok(json!({"group": group, "name": name, "dest": dest, "size": details.file.size, "sharers": others}))
}

/// After a restart: re-verify what the `.part` files hold and continue. Paused downloads stay
/// paused.
pub fn resume_all(d: &Arc<Daemon>) {
    for live in d.downloads.all() {
        if live.state() == DownloadState::Downloading {
            spawn_swarm(d, &live, true);
        }
    }
}

/// Starts the swarm of `live` in a task of its own, with a fresh stop token (see `Live::stop`);
/// with `reverify`, the `.part` is reopened and re-verified first (a restart, a resume).
pub fn spawn_swarm(d: &Arc<Daemon>, live: &Arc<Live>, reverify: bool) {
    let stop = d.shutdown.child_token();
    *live.stop.lock().unwrap_or_else(|p| p.into_inner()) = stop.clone();
    live.rate.lock().unwrap_or_else(|p| p.into_inner()).clear();
    live.finishing.store(false, Ordering::SeqCst);
    let (d2, l2) = (d.clone(), live.clone());
    let slots = d.downloads.swarm_slots.clone();
    // The task lock is held while spawning, so that a stop finds the handle.
    let mut task = live.task.lock().unwrap_or_else(|p| p.into_inner());
    *task = Some(tokio::spawn(async move {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::info!(
                    running = MAX_RUNNING_SWARMS,
                    "waiting for a running download to end before this one starts"
                );
                tokio::select! {
                    p = slots.acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    _ = stop.cancelled() => return,
                }
            }
        };
        let _running = permit;
        if reverify && !reopen_part(&d2, &l2).await {
            return;
        }
        swarm::run(d2, l2).await;
    }));
}

/// Reopens the `.part` of `live` and re-hashes each piece against the stored piece list, so
/// that the swarm continues from the pieces that are really there. False when the download
/// failed (recorded) or was stopped meanwhile.
async fn reopen_part(d: &Arc<Daemon>, live: &Arc<Live>) -> bool {
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
            Some(l) => (0..n).map(|i| disk::piece_matches(&f, meta.size, i, &l[i as usize], &mut buf)).collect(),
            None => vec![false; n as usize],
        };
        Ok((f, list, have))
    })
    .await;
    if live.stop.lock().unwrap_or_else(|p| p.into_inner()).is_cancelled() {
        return false;
    }
    match scanned {
        Ok(Ok((f, list, have))) => {
            match list {
                Some(l) => {
                    let _ = live.piece_list.set(Arc::new(l));
                }
                None if record.meta.size > 0 => {
                    tracing::info!(name = %record.name, "the piece list is not stored: fetching it again from a sharer");
                }
                None => set_empty_list(live),
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
            true
        }
        Ok(Err(e)) => {
            finish_failed(d, live, &format!("cannot reopen the .part file: {e}"));
            false
        }
        Err(e) => {
            finish_failed(d, live, &e.to_string());
            false
        }
    }
}

/// The swarm found no session (logged out, or the session ended at the tracker): the download
/// is paused, to be resumed by the next login (`manage::resume_after_login`), not failed.
pub fn pause_logged_out(d: &Daemon, live: &Live) {
    {
        let mut r = live.record.lock().unwrap_or_else(|p| p.into_inner());
        if r.state != DownloadState::Downloading {
            return;
        }
        r.state = DownloadState::Paused;
        r.error = None;
        r.paused_by_logout = true;
        r.bytes_done = live.bytes_done.load(Ordering::Relaxed);
        tracing::info!(name = %r.name, group = %r.group, "logged out: download paused until the next login");
    }
    *live.part.lock().unwrap_or_else(|p| p.into_inner()) = None;
    d.downloads.save();
}

pub fn finish_failed(d: &Daemon, live: &Live, error: &str) {
    {
        let mut r = live.record.lock().unwrap_or_else(|p| p.into_inner());
        r.state = DownloadState::Failed;
        r.error = Some(error.to_string());
        tracing::warn!(name = %r.name, group = %r.group, "download failed: {error}");
    }
    *live.part.lock().unwrap_or_else(|p| p.into_inner()) = None;
    d.downloads.save();
}
