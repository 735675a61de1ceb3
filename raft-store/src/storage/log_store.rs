//! The Raft log, vote and committed log id, in sled.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, Vote};

use crate::error::{sto_err, StoreError};
use crate::{Entry, LogId, NodeId, StorageError, TypeConfig};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Log storage; cheap to clone (sled handles are shared), each clone is also a log reader.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
    /// How long appends and their flushes take (shared by the clones).
    timings: std::sync::Arc<super::timing::DiskTimings>,
    /// Held by the purge deleting entries in the background (see `purge`).
    purging: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Log entries removed per sled batch when the log is purged.
const PURGE_BATCH_ENTRIES: usize = 500;

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}

fn read_logs_err<E: std::error::Error + 'static>(e: &E) -> StorageError {
    sto_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs_err<E: std::error::Error + 'static>(e: &E) -> StorageError {
    sto_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    pub(crate) fn new(db: sled::Db, path: &Path) -> Result<Self, StoreError> {
        let open = |name: &str| {
            db.open_tree(name).map_err(|source| StoreError::Sled { path: path.display().to_string(), source })
        };
        Ok(LogStore {
            logs: open("logs")?,
            meta: open("meta")?,
            db,
            timings: Default::default(),
            purging: Default::default(),
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.meta.get(key).map_err(|e| sto_err(subject.clone(), ErrorVerb::Read, &e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| sto_err(subject, ErrorVerb::Read, &e))
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| sto_err(subject.clone(), ErrorVerb::Write, &e))?;
        self.meta.insert(key, bytes).map_err(|e| sto_err(subject, ErrorVerb::Write, &e))?;
        Ok(())
    }

    async fn flush(&self, subject: ErrorSubject<NodeId>) -> Result<(), StorageError> {
        self.db.flush_async().await.map_err(|e| sto_err(subject, ErrorVerb::Write, &e))?;
        Ok(())
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        self.get_meta(KEY_LAST_PURGED, ErrorSubject::Logs)
    }

    /// Bytes sled uses on disk (for tests and metrics).
    pub fn size_on_disk_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Number of entries in the log (for tests and metrics).
    pub fn entry_count(&self) -> usize {
        self.logs.len()
    }

    /// Flushes everything to disk: called on clean shutdown.
    /// The latencies of this log's appends and flushes so far (shared, updated as they happen).
    pub fn timings(&self) -> std::sync::Arc<super::timing::DiskTimings> {
        self.timings.clone()
    }

    /// Waits until the entries of every purge so far are deleted (tests; see `purge`).
    pub async fn purge_done(&self) {
        let _ = self.purging.lock().await;
    }

    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|source| StoreError::Sled { path: "log store".into(), source })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Bound::Included(index_key(*x)),
            Bound::Excluded(x) => Bound::Excluded(index_key(*x)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.logs.range((Bound::Included(index_key(start)), end)) {
            let (key, value) = item.map_err(|e| read_logs_err(&e))?;
            let entry: Entry = serde_json::from_slice(&value).map_err(|e| read_logs_err(&e))?;
            let index = key_index(&key);
            if entry.log_id.index != index {
                let e = StoreError::corrupt("log", format!("entry at key {index} has index {}", entry.log_id.index));
                return Err(read_logs_err(&e));
            }
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        let last = match self.logs.last().map_err(|e| read_logs_err(&e))? {
            Some((_, value)) => {
                let entry: Entry = serde_json::from_slice(&value).map_err(|e| read_logs_err(&e))?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, ErrorSubject::Vote)?;
        // A vote must be durable before it is acted on, or a node could vote twice in a term.
        self.flush(ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: it only speeds up recovery (re-applying the committed tail at
        // start), and the next append's flush carries it to disk.
        self.put_meta(KEY_COMMITTED, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED, ErrorSubject::Store)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| write_logs_err(&e))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.logs.apply_batch(batch).map_err(|e| write_logs_err(&e))?;
        // One flush for the whole batch (group commit); openraft may acknowledge the entries
        // only once they are durable, so the callback comes after the flush.
        let flush_started = std::time::Instant::now();
        let flushed = self.db.flush_async().await;
        self.timings.fsync.lock().unwrap_or_else(|p| p.into_inner()).observe(flush_started.elapsed());
        self.timings.append.lock().unwrap_or_else(|p| p.into_inner()).observe(started.elapsed());
        match flushed {
            Ok(_) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_err(&e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.logs.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(|e| write_logs_err(&e))?;
            batch.remove(key);
        }
        self.logs.apply_batch(batch).map_err(|e| write_logs_err(&e))?;
        self.flush(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // "Last purged" is written and made durable before anything is deleted, so a crash in
        // between leaves a log that starts after a known point, never a hole.
        self.put_meta(KEY_LAST_PURGED, &log_id, ErrorSubject::Logs)?;
        self.flush(ErrorSubject::Logs).await?;
        // The deletion runs in the background: openraft awaits `purge` in its core, and deleting
        // the ~20-45k entries between two snapshots took 250-300 ms, long enough (with a
        // snapshot's CPU and fsync next to it) for followers to campaign against a leader that
        // was only purging. Nothing reads below "last purged", new entries have other keys,
        // and one purge at a time holds `purging`, so the next one waits for this one.
        let guard = self.purging.clone().lock_owned().await;
        let logs = self.logs.clone();
        let upto = log_id.index;
        tokio::task::spawn_blocking(move || {
            if let Err(e) = delete_upto(&logs, upto) {
                // The entries stay below "last purged", where nothing reads them; the next
                // purge removes them.
                tracing::warn!(error = %e, upto, "deleting purged log entries failed");
            }
            drop(guard);
        });
        Ok(())
    }
}

/// Deletes the entries up to `upto` in batches: one sled batch removing the ~45k entries between
/// two snapshots of a 100k-file state took 230 MiB of memory for a moment (raft-store's
/// `purge_memory` test), on every node at once. An interrupted deletion leaves entries below
/// "last purged", which nothing reads and the next purge removes.
fn delete_upto(logs: &sled::Tree, upto: u64) -> Result<(), sled::Error> {
    let upto = index_key(upto);
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in logs.range(..=upto).take(PURGE_BATCH_ENTRIES) {
            let (key, _) = item?;
            batch.remove(key);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        logs.apply_batch(batch)?;
    }
}
