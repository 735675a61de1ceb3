//! openraft's storage (0.9, storage-v2) for the tracker.
//!
//! Layout of a node's data_dir:
//! - `sled/`: one sled database: tree `logs` (big-endian u64 index -> JSON entry) and tree
//!   `meta` (vote, committed log id, last purged log id).
//! - `snapshots/current.snap`: the last snapshot, a stream of JSON lines (header with the
//!   snapshot meta, one line per state record, a trailer with the record count). Temporary
//!   files beside it (`*.tmp`) are half-written snapshots and are deleted at open.
//!
//! Every folder is made 0700 and every file this crate writes 0600: the log holds every
//! account's password hash (the node also runs with umask 077, which covers sled's own files).
//!
//! The state machine lives in memory: at open it is rebuilt from the snapshot, and openraft
//! re-applies the committed tail of the log (`read_committed`). Every applied index is thus
//! durable as log entries (fsynced before acknowledgement) or as a snapshot (fsynced before
//! the log below it is purged).

mod log_store;
mod snapshot;
mod state_machine;
pub mod timing;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use log_store::LogStore;
pub use state_machine::{seed_snapshot, seed_state, snapshot_meta_of, SmData, SnapshotStats, StateMachineStore};

use crate::error::StoreError;

/// Where and how to open a node's storage.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub dir: PathBuf,
    /// sled's page cache, in bytes. sled's default is 1 GiB, too much when several nodes share
    /// a machine; the log is read back only for followers that lag, so 16 MiB of hot tail is
    /// plenty (sled's real use runs above its nominal cache).
    pub cache_capacity_bytes: u64,
    /// Run at the start of the thread that writes a snapshot (e.g. to lower its priority, so
    /// that a long build never competes with Raft's heartbeats for the CPU).
    pub snapshot_thread_init: Option<fn()>,
}

impl StoreOptions {
    pub const DEFAULT_CACHE_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

    pub fn new(dir: impl AsRef<Path>) -> Self {
        StoreOptions {
            dir: dir.as_ref().to_path_buf(),
            cache_capacity_bytes: Self::DEFAULT_CACHE_CAPACITY_BYTES,
            snapshot_thread_init: None,
        }
    }
}

/// Opens (creating if needed) the log store and the state machine of one node.
pub fn open_store(opts: &StoreOptions) -> Result<(LogStore, StateMachineStore), StoreError> {
    create_private_dir(&opts.dir)
        .map_err(|e| StoreError::io(format!("cannot create data dir {}", opts.dir.display()), e))?;
    let sled_path = opts.dir.join("sled");
    let db = sled::Config::new()
        .path(&sled_path)
        .cache_capacity(opts.cache_capacity_bytes)
        .open()
        .map_err(|source| StoreError::Sled { path: sled_path.display().to_string(), source })?;
    let log_store = LogStore::new(db, &sled_path)?;
    let sm = StateMachineStore::open(&opts.dir.join("snapshots"), opts.snapshot_thread_init)?;
    Ok((log_store, sm))
}

/// Mode of every file of a data_dir: the user's only.
pub(crate) const PRIVATE_FILE_MODE: u32 = 0o600;

/// How a data_dir file is created: new or truncated, [`PRIVATE_FILE_MODE`] from the start, open
/// for reading and writing (tokio's `OpenOptions` converts from it).
pub(crate) fn private_file_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(true).mode(PRIVATE_FILE_MODE);
    options
}

/// Creates `dir` and its missing parents 0700 (an existing folder keeps its mode: the node
/// checks it, tracker-node's `datadir`).
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests;
