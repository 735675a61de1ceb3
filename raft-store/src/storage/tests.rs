//! Storage tests: openraft's own suite on the sled store, reopening after writes, and the
//! on-disk size staying bounded when the log is purged after snapshots.

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, Membership, Vote};
use tempfile::TempDir;

use super::*;
use crate::command::{Command, Request};
use crate::{Entry, LogId, StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().expect("temp dir");
        let (log, sm) = open_store(&StoreOptions::new(dir.path())).expect("open store");
        Ok((dir, log, sm))
    }
}

/// openraft's storage test suite (`openraft::testing::Suite::test_all`) on the sled store.
#[test]
fn openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(Builder)?;
    Ok(())
}

fn lid(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn app_entry(term: u64, index: u64, user: &str) -> Entry {
    Entry {
        log_id: lid(term, index),
        payload: EntryPayload::Normal(Request {
            request_id: Some(format!("req-{index}")),
            now_ms: 1_700_000_000_000 + index,
            command: Command::Register { user: user.to_string(), password_hash: "$argon2id$x".into() },
        }),
    }
}

async fn append(log: &mut LogStore, entries: Vec<Entry>) {
    // blocking_append waits for the flush callback, as openraft does.
    log.blocking_append(entries).await.expect("append");
}

#[tokio::test]
async fn reopen_finds_vote_log_applied_state_and_snapshot() {
    let dir = TempDir::new().unwrap();
    let opts = StoreOptions::new(dir.path());
    let digest;
    {
        let (mut log, mut sm) = open_store(&opts).unwrap();
        log.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
        let membership =
            Entry { log_id: lid(3, 1), payload: EntryPayload::Membership(Membership::new(vec![[1u64].into()], None)) };
        let mut entries = vec![membership];
        entries.extend((2..=20).map(|i| app_entry(3, i, &format!("u{i}"))));
        append(&mut log, entries.clone()).await;
        sm.apply(entries[..10].to_vec()).await.unwrap();
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id, Some(lid(3, 10)));
        sm.apply(entries[10..].to_vec()).await.unwrap();
        log.save_committed(Some(lid(3, 20))).await.unwrap();
        log.purge(lid(3, 5)).await.unwrap();
        digest = sm.read(|d| d.state.digest());
        log.flush_blocking().unwrap();
    }
    let (mut log, mut sm) = open_store(&opts).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new_committed(3, 1)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(lid(3, 5)));
    assert_eq!(state.last_log_id, Some(lid(3, 20)));
    let entries = log.try_get_log_entries(6..=20).await.unwrap();
    assert_eq!(entries.len(), 15);
    assert!(entries.iter().zip(6..).all(|(e, i)| e.log_id.index == i));
    assert_eq!(log.read_committed().await.unwrap(), Some(lid(3, 20)));
    // The state machine comes back at the snapshot; openraft re-applies 11..=20 (committed).
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(lid(3, 10)));
    assert_eq!(membership.log_id(), &Some(lid(3, 1)));
    assert_eq!(sm.read(|d| d.state.counts().0), 9);
    let snap = sm.get_current_snapshot().await.unwrap().expect("snapshot survives");
    assert_eq!(snap.meta.last_log_id, Some(lid(3, 10)));
    sm.apply(entries[5..].to_vec()).await.unwrap();
    assert_eq!(sm.read(|d| d.state.digest()), digest, "snapshot + log tail = the state before");
}

#[tokio::test]
async fn torn_snapshot_file_is_ignored_and_removed() {
    let dir = TempDir::new().unwrap();
    let opts = StoreOptions::new(dir.path());
    drop(open_store(&opts).unwrap());
    let tmp = dir.path().join("snapshots").join("build-x.tmp");
    std::fs::write(&tmp, b"{\"format\":1,").unwrap();
    let (_log, mut sm) = open_store(&opts).unwrap();
    assert!(!tmp.exists());
    assert!(sm.get_current_snapshot().await.unwrap().is_none());
}

/// Writes many entries in rounds, snapshotting and purging after each, and checks that the
/// sled files stop growing. Prints the figures (`cargo test -p raft-store disk -- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_size_stays_bounded_with_snapshots_and_purge() {
    let dir = TempDir::new().unwrap();
    let (mut log, mut sm) = open_store(&StoreOptions::new(dir.path())).unwrap();
    const ROUNDS: u64 = 8;
    const PER_ROUND: u64 = 2_000;
    let mut sizes = Vec::new();
    let mut index = 1;
    for round in 0..ROUNDS {
        for chunk in 0..(PER_ROUND / 100) {
            let entries: Vec<Entry> =
                (0..100).map(|k| app_entry(1, index + k, &format!("user{round}_{chunk}_{k}"))).collect();
            index += 100;
            append(&mut log, entries.clone()).await;
            sm.apply(entries).await.unwrap();
        }
        let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let upto = snap.meta.last_log_id.unwrap();
        log.purge(upto).await.unwrap();
        log.flush_blocking().unwrap();
        sizes.push(log.size_on_disk_bytes());
        assert_eq!(log.entry_count(), 0);
    }
    let users = sm.read(|d| d.state.counts().0);
    assert_eq!(users, ROUNDS * PER_ROUND);
    println!("sled size on disk after each round of {PER_ROUND} entries (bytes): {sizes:?}");
    // Every round writes as much as the first; with purging, sled reuses its segments, so the
    // last rounds must not keep growing the files by a round's worth each.
    let first_half_max = *sizes[..(ROUNDS as usize / 2)].iter().max().unwrap();
    let last = *sizes.last().unwrap();
    assert!(last <= first_half_max * 2, "sled keeps growing despite purging: {sizes:?}");
}
