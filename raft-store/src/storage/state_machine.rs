//! The state machine store: the in-memory `TrackerState`, its last applied log id and
//! membership, and the snapshot files that make it durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb};
use tokio::io::AsyncSeekExt;

use super::snapshot;
use crate::error::{sto_err, StoreError};
use crate::state::TrackerState;
use crate::{Entry, LogId, Reply, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// What the state machine holds; readers take the lock briefly and never across an await.
#[derive(Debug, Default)]
pub struct SmData {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub state: TrackerState,
}

struct SnapshotDir {
    dir: PathBuf,
    /// Meta of `current.snap`; the lock also serialises building against installing.
    current: tokio::sync::Mutex<Option<SnapshotMeta>>,
    /// Distinguishes snapshots built at the same log id.
    seq: AtomicU64,
    /// Files handed out by `begin_receiving_snapshot`, deleted after an install.
    receiving: std::sync::Mutex<Vec<PathBuf>>,
    /// How the last snapshot built here went, for metrics.
    last_build: std::sync::Mutex<Option<SnapshotStats>>,
    /// Run first on each snapshot-writing thread.
    thread_init: Option<fn()>,
}

/// Figures of the last snapshot this node built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotStats {
    /// From the copy of the state to the file's rename, in milliseconds.
    pub build_ms: u64,
    pub size_bytes: u64,
    pub last_log_index: u64,
}

/// The state machine; cheap to clone, all clones share one state.
#[derive(Clone)]
pub struct StateMachineStore {
    data: Arc<RwLock<SmData>>,
    snapshots: Arc<SnapshotDir>,
}

fn snap_err<E: std::error::Error + 'static>(verb: ErrorVerb, e: &E) -> StorageError {
    sto_err(ErrorSubject::Snapshot(None), verb, e)
}

/// A new snapshot file of the data_dir's (`private_file_options`).
async fn create_private(path: &Path) -> Result<tokio::fs::File, StorageError> {
    let options = tokio::fs::OpenOptions::from(super::private_file_options());
    options.open(path).await.map_err(|e| snap_err(ErrorVerb::Write, &e))
}

impl StateMachineStore {
    /// Opens the snapshot directory and rebuilds the state from its current snapshot.
    pub(crate) fn open(dir: &Path, thread_init: Option<fn()>) -> Result<Self, StoreError> {
        super::create_private_dir(dir).map_err(|e| StoreError::io(format!("cannot create {}", dir.display()), e))?;
        snapshot::remove_tmp_files(dir)?;
        let current_path = dir.join(snapshot::CURRENT);
        let (data, current) = if current_path.exists() {
            let (meta, state) = snapshot::read_file(&current_path)?;
            let data = SmData { last_applied: meta.last_log_id, last_membership: meta.last_membership.clone(), state };
            (data, Some(meta))
        } else {
            (SmData::default(), None)
        };
        Ok(StateMachineStore {
            data: Arc::new(RwLock::new(data)),
            snapshots: Arc::new(SnapshotDir {
                dir: dir.to_path_buf(),
                current: tokio::sync::Mutex::new(current),
                seq: AtomicU64::new(0),
                receiving: std::sync::Mutex::new(Vec::new()),
                last_build: std::sync::Mutex::new(None),
                thread_init,
            }),
        })
    }

    /// Figures of the last snapshot built by this node since it started, if any.
    pub fn last_snapshot_build(&self) -> Option<SnapshotStats> {
        *self.snapshots.last_build.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Size of the current snapshot file, in bytes (0 when there is none).
    pub fn snapshot_file_bytes(&self) -> u64 {
        std::fs::metadata(self.snapshots.dir.join(snapshot::CURRENT)).map(|m| m.len()).unwrap_or(0)
    }

    /// Runs `f` on the current state under a read lock.
    pub fn read<R>(&self, f: impl FnOnce(&SmData) -> R) -> R {
        let data = self.data.read().unwrap_or_else(|p| p.into_inner());
        f(&data)
    }

    fn open_current(
        &self,
        meta: &SnapshotMeta,
    ) -> impl std::future::Future<Output = Result<Snapshot<TypeConfig>, StorageError>> + '_ {
        let path = self.snapshots.dir.join(snapshot::CURRENT);
        let meta = meta.clone();
        async move {
            let file = tokio::fs::File::open(&path).await.map_err(|e| snap_err(ErrorVerb::Read, &e))?;
            Ok(Snapshot { meta, snapshot: Box::new(file) })
        }
    }
}

fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    verb: ErrorVerb,
) -> impl std::future::Future<Output = Result<T, StorageError>> {
    async move {
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(snap_err(verb, &e)),
            Err(join) => Err(snap_err(verb, &std::io::Error::other(join.to_string()))),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        // A clone taken under a short read lock: applying goes on while the file is written. The
        // state's maps are persistent, so the clone is O(1) and shares every node with the live
        // state; a write after it copies only the nodes on its path.
        let (state, last_applied, last_membership) =
            self.read(|d| (d.state.clone(), d.last_applied, d.last_membership.clone()));
        let seq = self.snapshots.seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}-{seq}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id };
        let mut current = self.snapshots.current.lock().await;
        if let Some(cur) = current.as_ref() {
            if cur.last_log_id > meta.last_log_id {
                // A newer snapshot was installed meanwhile: it is the better answer.
                let cur = cur.clone();
                return self.open_current(&cur).await;
            }
        }
        let dir = self.snapshots.dir.clone();
        let m = meta.clone();
        let init = self.snapshots.thread_init;
        // A thread of its own rather than the blocking pool: its priority may be lowered for
        // the build without touching a pool thread that other work reuses.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("snapshot-build".into())
            .spawn(move || {
                if let Some(init) = init {
                    init();
                }
                let result = snapshot::write_tmp(&dir, &m, &state).and_then(|tmp| snapshot::promote(&dir, &tmp));
                // The clone is dropped here, on this thread, not on a Raft worker: the nodes the
                // live state replaced meanwhile are freed with it.
                drop(state);
                let _ = tx.send(result);
            })
            .map_err(|e| snap_err(ErrorVerb::Write, &e))?;
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(snap_err(ErrorVerb::Write, &e)),
            Err(e) => return Err(snap_err(ErrorVerb::Write, &std::io::Error::other(e.to_string()))),
        }
        *current = Some(meta.clone());
        let stats = SnapshotStats {
            build_ms: started.elapsed().as_millis() as u64,
            size_bytes: self.snapshot_file_bytes(),
            last_log_index: meta.last_log_id.map(|l| l.index).unwrap_or(0),
        };
        *self.snapshots.last_build.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
        tracing::info!(snapshot_id = %meta.snapshot_id, last_log_id = ?meta.last_log_id, build_ms = stats.build_ms, size_bytes = stats.size_bytes, "snapshot built");
        self.open_current(&meta).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self.read(|d| (d.last_applied, d.last_membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut data = self.data.write().unwrap_or_else(|p| p.into_inner());
        let mut responses = Vec::new();
        for entry in entries {
            data.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::Ok(Reply::Internal),
                EntryPayload::Normal(req) => data.state.apply(&req),
                EntryPayload::Membership(m) => {
                    data.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::Ok(Reply::Internal)
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let seq = self.snapshots.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.snapshots.dir.join(format!("recv-{}-{seq}.tmp", std::process::id()));
        let file = create_private(&path).await?;
        self.snapshots.receiving.lock().unwrap_or_else(|p| p.into_inner()).push(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let mut current = self.snapshots.current.lock().await;
        // Copy the received stream into our own file: the handle may be any file, positioned
        // anywhere, and the copy is what we fsync and keep.
        let seq = self.snapshots.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.snapshots.dir.join(format!("install-{seq}.tmp"));
        snapshot.seek(std::io::SeekFrom::Start(0)).await.map_err(|e| snap_err(ErrorVerb::Read, &e))?;
        {
            let mut out = create_private(&tmp).await?;
            tokio::io::copy(&mut *snapshot, &mut out).await.map_err(|e| snap_err(ErrorVerb::Write, &e))?;
            out.sync_all().await.map_err(|e| snap_err(ErrorVerb::Write, &e))?;
        }
        drop(snapshot);
        let dir = self.snapshots.dir.clone();
        let want = meta.clone();
        let state = run_blocking(
            move || {
                let (file_meta, state) = snapshot::read_file(&tmp)?;
                if file_meta.last_log_id != want.last_log_id {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(StoreError::corrupt(
                        "received snapshot",
                        format!("its header says {:?}, the leader said {:?}", file_meta.last_log_id, want.last_log_id),
                    ));
                }
                snapshot::promote(&dir, &tmp)?;
                Ok(state)
            },
            ErrorVerb::Write,
        )
        .await?;
        {
            let mut data = self.data.write().unwrap_or_else(|p| p.into_inner());
            data.state = state;
            data.last_applied = meta.last_log_id;
            data.last_membership = meta.last_membership.clone();
        }
        *current = Some(meta.clone());
        for path in self.snapshots.receiving.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!(snapshot_id = %meta.snapshot_id, last_log_id = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.snapshots.current.lock().await;
        match current.as_ref() {
            Some(meta) => Ok(Some(self.open_current(meta).await?)),
            None => Ok(None),
        }
    }
}

impl StateMachineStore {
    /// The applied state as a snapshot file's bytes (the format of `current.snap`), with its
    /// meta: for `tracker-node snapshot save`. The state is copied under a short read lock and
    /// written to a temporary file in the snapshot folder, read back and deleted.
    pub fn export_snapshot(&self) -> Result<(SnapshotMeta, Vec<u8>), StoreError> {
        let (state, last_applied, last_membership) =
            self.read(|d| (d.state.clone(), d.last_applied, d.last_membership.clone()));
        let seq = self.snapshots.seq.fetch_add(1, Ordering::Relaxed);
        let index = last_applied.map(|l| l.index).unwrap_or(0);
        let meta =
            SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id: format!("export-{index}-{seq}") };
        let tmp = snapshot::write_tmp(&self.snapshots.dir, &meta, &state)?;
        let bytes = std::fs::read(&tmp).map_err(|e| StoreError::io(format!("cannot read {}", tmp.display()), e));
        let _ = std::fs::remove_file(&tmp);
        Ok((meta, bytes?))
    }
}

/// Seeds a new node's `data_dir` with the state of the snapshot file `from`, for
/// `tracker-node restore`: `data_dir/snapshots/current.snap` holds that state at the same index,
/// with the log id's term set to 0 (a new cluster's terms start at 1) and `voters` as the
/// membership. A node started on it recovers that state and, its membership being set, elects a
/// leader among `voters` without initialising. Returns the new snapshot's meta.
pub fn seed_snapshot(
    data_dir: &Path,
    from: &Path,
    voters: std::collections::BTreeMap<crate::NodeId, crate::TrackerNode>,
) -> Result<SnapshotMeta, StoreError> {
    let (meta, state) = snapshot::read_file(from)?;
    let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
    seed_state(data_dir, &state, index, voters)
}

/// Makes `data_dir` start from `state` as of log `index` (see [`seed_snapshot`]); for
/// `seed_snapshot` and for benchmarks that build a large state without going through the log.
pub fn seed_state(
    data_dir: &Path,
    state: &crate::TrackerState,
    index: u64,
    voters: std::collections::BTreeMap<crate::NodeId, crate::TrackerNode>,
) -> Result<SnapshotMeta, StoreError> {
    let log_id = LogId::new(openraft::CommittedLeaderId::new(0, 0), index);
    let ids: std::collections::BTreeSet<crate::NodeId> = voters.keys().copied().collect();
    let membership = openraft::Membership::new(vec![ids], voters);
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: format!("restore-{index}"),
    };
    let dir = data_dir.join("snapshots");
    super::create_private_dir(&dir).map_err(|e| StoreError::io(format!("cannot create {}", dir.display()), e))?;
    let tmp = snapshot::write_tmp(&dir, &meta, state)?;
    snapshot::promote(&dir, &tmp)?;
    Ok(meta)
}

/// Reads a snapshot file's header (for tests and tools).
pub fn snapshot_meta_of(path: &Path) -> Result<SnapshotMeta, StoreError> {
    snapshot::read_meta(path)
}
