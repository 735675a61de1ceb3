//! The table of this peer's downloads: one handle per download (its task owns the rest),
//! persisted in HOME/downloads.json from the tasks' snapshots.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::messages::DownloadHandle;
use super::record::DownloadRecord;
use crate::control::{DownloadRow, DownloadState};
use crate::hashing::MAX_FILE_SIZE_BYTES;
use crate::home::{read_json, Home, TableFile};

/// Most downloads whose swarms run at once (each with up to `engine::MAX_PEERS_PER_DOWNLOAD`
/// connections); the others wait for a slot.
pub const MAX_RUNNING_SWARMS: usize = 8;

/// How long a cancelled download's destination is remembered as cancelled, for the CLI that
/// was waiting for it.
const CANCELLED_MEMORY: Duration = Duration::from_secs(600);
/// Most cancelled destinations remembered.
const CANCELLED_MAX: usize = 64;

pub struct DownloadTable {
    /// HOME/downloads.json, written outside the lock (`TableFile`).
    file: TableFile,
    /// One permit per swarm running: at most `MAX_RUNNING_SWARMS` downloads fetch at once; the
    /// others stay `downloading` with no sharer connected until one ends.
    swarm_slots: Arc<Semaphore>,
    /// The handles, in the order the downloads began. The lock guards the list only: a
    /// download's state is its task's, read through the handle's snapshot.
    items: Mutex<Vec<DownloadHandle>>,
    /// Records read from downloads.json whose tasks `download::resume_all` starts.
    loaded: Mutex<Vec<DownloadRecord>>,
    /// Destinations of recently cancelled downloads (in memory only), newest last.
    cancelled: Mutex<VecDeque<(String, Instant)>>,
}

impl DownloadTable {
    pub fn load(home: &Home) -> anyhow::Result<Self> {
        let path = home.downloads_path();
        let records: Vec<serde_json::Value> = read_json(&path)?.unwrap_or_default();
        let loaded = records
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
            .collect();
        Ok(DownloadTable {
            file: TableFile::new(path),
            swarm_slots: Arc::new(Semaphore::new(MAX_RUNNING_SWARMS)),
            items: Mutex::new(Vec::new()),
            loaded: Mutex::new(loaded),
            cancelled: Mutex::new(VecDeque::new()),
        })
    }

    /// The records read at start, for `download::resume_all` to start their tasks.
    pub fn loaded(&self) -> Vec<DownloadRecord> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The tasks of the records read at start, in their order: from now on the table is theirs.
    pub fn adopt(&self, handles: Vec<DownloadHandle>) {
        {
            let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            items.extend(handles);
            self.loaded.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        self.save();
    }

    pub fn swarm_slots(&self) -> Arc<Semaphore> {
        self.swarm_slots.clone()
    }

    /// Writes every record to downloads.json; the snapshot is taken under the table's lock, the
    /// file written outside it, and an older snapshot never replaces a newer one.
    pub fn save(&self) {
        let (n, records) = {
            let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            let mut records: Vec<DownloadRecord> = items.iter().map(|h| h.with_record(|r| r.clone())).collect();
            // Not started yet (the daemon is starting): kept as they were.
            records.extend(self.loaded.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned());
            (self.file.next(), records)
        };
        self.file.write(n, &records);
    }

    pub fn all(&self) -> Vec<DownloadHandle> {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn rows(&self) -> Vec<DownloadRow> {
        self.all().iter().map(|h| h.row()).collect()
    }

    /// The downloads of `name` in `group` (to any destination).
    pub fn matching(&self, group: &str, name: &str) -> Vec<DownloadHandle> {
        self.all().into_iter().filter(|h| h.with_record(|r| r.group == group && r.name == name)).collect()
    }

    /// The download to `dest`, if there is one.
    pub fn at(&self, dest: &str) -> Option<DownloadHandle> {
        self.all().into_iter().find(|h| h.with_record(|r| r.dest == dest))
    }

    /// The download to `dest`, or else whether one was cancelled lately.
    pub fn watch(&self, dest: &str) -> (Option<DownloadRow>, bool) {
        match self.at(dest) {
            Some(h) => (Some(h.row()), false),
            None => {
                let now = Instant::now();
                let c = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
                (None, c.iter().any(|(d, at)| d == dest && now.duration_since(*at) < CANCELLED_MEMORY))
            }
        }
    }

    /// Drops `handle` from the table (and downloads.json); `cancelled` remembers its destination
    /// as cancelled for a CLI waiting for it. Its task ends once no handle is left.
    pub fn remove(&self, handle: &DownloadHandle, cancelled: bool) {
        let dest = handle.with_record(|r| r.dest.clone());
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
            items.retain(|h| !h.same(handle));
        }
        self.save();
    }

    /// The in-progress download of content `sha1` in `group`, for serving its pieces.
    pub fn find_active(&self, group: &str, sha1: &str) -> Option<DownloadHandle> {
        self.all().into_iter().find(|h| {
            h.with_record(|r| r.state == DownloadState::Downloading && r.group == group && r.meta.sha1 == sha1)
        })
    }

    /// Adds a download, replacing any other to the same destination, and saves the table.
    pub fn insert(&self, handle: DownloadHandle) {
        let dest = handle.with_record(|r| r.dest.clone());
        {
            let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            self.cancelled.lock().unwrap_or_else(|p| p.into_inner()).retain(|(d, _)| *d != dest);
            items.retain(|h| h.with_record(|r| r.dest != dest));
            items.push(handle);
        }
        self.save();
    }
}
