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
        log.purge_done().await;
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
        log.purge_done().await;
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

fn upload_entry(index: u64, group: &str, name: &str, token: &str) -> Entry {
    use crate::command::{FileMeta, Sha1Digest, PIECE_LEN_BYTES};
    Entry {
        log_id: lid(1, index),
        payload: EntryPayload::Normal(Request {
            request_id: Some(format!("req-{index}")),
            now_ms: 1_700_000_000_000 + index,
            command: Command::UploadFile {
                token_hash: token.to_string(),
                group: group.to_string(),
                file: FileMeta {
                    name: name.to_string(),
                    size: 1 << 30,
                    piece_len: PIECE_LEN_BYTES,
                    piece_list_sha1: Sha1Digest([index as u8; 20]),
                    sha1: Sha1Digest([!(index as u8); 20]),
                },
                peer_addr: "127.0.0.1:6000".into(),
                peer_key: "a".repeat(64),
            },
        }),
    }
}

fn normal(index: u64, command: Command) -> Entry {
    Entry {
        log_id: lid(1, index),
        payload: EntryPayload::Normal(Request {
            request_id: Some(format!("req-{index}")),
            now_ms: 1_700_000_000_000 + index,
            command,
        }),
    }
}

/// A snapshot file is written from a clone of the state that shares its nodes with the live
/// state; applies after the clone (as happen while the file is written) must not reach the file.
#[tokio::test]
async fn snapshot_written_after_later_applies_holds_the_state_as_of_its_clone() {
    let dir = TempDir::new().unwrap();
    let (_log, mut sm) = open_store(&StoreOptions::new(dir.path())).unwrap();
    let token = "1".repeat(64);
    let mut entries = vec![
        app_entry(1, 1, "alice"),
        normal(2, Command::Login { user: "alice".into(), token_hash: token.clone(), expires_at_ms: u64::MAX / 2 }),
    ];
    let mut index = 3;
    for g in 0..20 {
        entries.push(normal(index, Command::CreateGroup { token_hash: token.clone(), group: format!("g{g}") }));
        index += 1;
        for f in 0..30 {
            entries.push(upload_entry(index, &format!("g{g}"), &format!("f{f}.bin"), &token));
            index += 1;
        }
    }
    sm.apply(entries).await.unwrap();
    let (clone, meta_log_id, digest) = sm.read(|d| (d.state.clone(), d.last_applied, d.state.digest()));
    // Writes after the clone: new files in every group, stop-shares, a whole group gone.
    let mut later = Vec::new();
    for g in 0..20 {
        later.push(upload_entry(index, &format!("g{g}"), "late.bin", &token));
        index += 1;
        later.push(normal(
            index,
            Command::StopShare { token_hash: token.clone(), group: format!("g{g}"), name: "f7.bin".into() },
        ));
        index += 1;
    }
    later.push(normal(index, Command::LeaveGroup { token_hash: token.clone(), group: "g3".into() }));
    sm.apply(later).await.unwrap();
    assert_ne!(sm.read(|d| d.state.digest()), digest);

    let snap_dir = dir.path().join("snapshots");
    let meta = crate::SnapshotMeta {
        last_log_id: meta_log_id,
        last_membership: Default::default(),
        snapshot_id: "clone-test".into(),
    };
    let tmp = snapshot::write_tmp(&snap_dir, &meta, &clone).unwrap();
    drop(clone);
    let (read_meta, read_state) = snapshot::read_file(&tmp).unwrap();
    assert_eq!(read_meta.last_log_id, meta_log_id);
    assert_eq!(read_state.digest(), digest, "the file holds the state as of the clone");
    assert_eq!(read_state.counts(), (1, 20, 600));
}

/// A version-1 snapshot file, exactly as the code before the persistent maps wrote it (a user,
/// a session, a group with a file shared by two users, a remembered request): it still loads,
/// and writing the loaded state again gives the same bytes.
#[test]
fn format_1_file_loads_and_is_rewritten_byte_for_byte() {
    let text = concat!(
        r#"{"format":1,"meta":{"last_log_id":{"leader_id":{"term":2,"node_id":1},"index":9},"last_membership":{"log_id":null,"membership":{"configs":[],"nodes":{}}},"snapshot_id":"2-1-9-0"}}"#,
        "\n",
        r#"{"t":"user","name":"alice","user":{"password_hash":"$argon2id$x","sessions":1,"shares_paused":false,"peer_addr":"127.0.0.1:6000","peer_key":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}"#,
        "\n",
        r#"{"t":"user","name":"bob","user":{"password_hash":"$argon2id$y","sessions":0,"shares_paused":true,"peer_addr":null,"peer_key":null}}"#,
        "\n",
        r#"{"t":"session","token_hash":"1111111111111111111111111111111111111111111111111111111111111111","session":{"user":"alice","expires_at_ms":1700000999999}}"#,
        "\n",
        r#"{"t":"group","name":"g0","group":{"owner":"alice","members":["alice","bob"],"pending":["carol"],"files":{}}}"#,
        "\n",
        r#"{"t":"file","group":"g0","name":"a.bin","file":{"meta":{"name":"a.bin","size":1073741824,"piece_len":524288,"piece_list_sha1":"0303030303030303030303030303030303030303","sha1":"fcfcfcfcfcfcfcfcfcfcfcfcfcfcfcfcfcfcfcfc"},"uploader":"bob","sharers":["alice","bob"]}}"#,
        "\n",
        r#"{"t":"dedup","id":"0101010101010101010101010101010101010101","at_ms":1700000000005,"fingerprint":"0202020202020202020202020202020202020202","response":{"ok":{"reply":"file_shared","group":"g0","name":"a.bin","new_file":true}}}"#,
        "\n",
        r#"{"end":6}"#,
        "\n",
    );
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("v1.snap");
    std::fs::write(&path, text).unwrap();
    let (meta, state) = snapshot::read_file(&path).unwrap();
    assert_eq!(state.counts(), (2, 1, 1));
    let f = &state.groups()["g0"].files["a.bin"];
    assert_eq!(f.sharers.iter().map(String::as_str).collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(state.authenticate(&"1".repeat(64), 1_700_000_000_000).unwrap(), "alice");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let tmp = snapshot::write_tmp(&out, &meta, &state).unwrap();
    assert_eq!(std::fs::read_to_string(tmp).unwrap(), text);
}

fn vm_mib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// What purging a long log costs in memory (alone in its process, since it reads VmHWM:
/// `cargo test --release -p raft-store purge_memory -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn purge_memory() {
    let dir = TempDir::new().unwrap();
    let (mut log, _sm) = open_store(&StoreOptions::new(dir.path())).unwrap();
    let token = "1".repeat(64);
    let mut index = 1;
    for _ in 0..450 {
        let entries: Vec<Entry> =
            (0..100).map(|k| upload_entry(index + k, "g00042", &format!("f{:06}.bin", index + k), &token)).collect();
        index += 100;
        append(&mut log, entries).await;
    }
    println!("appended {} entries: RSS {:.1} MiB, VmHWM {:.1} MiB", index - 1, vm_mib("VmRSS:"), vm_mib("VmHWM:"));
    let before = vm_mib("VmHWM:");
    let t = std::time::Instant::now();
    log.purge(lid(1, index - 1001)).await.unwrap();
    log.purge_done().await;
    println!(
        "purged in {} ms: RSS {:.1} MiB, VmHWM {:.1} MiB",
        t.elapsed().as_millis(),
        vm_mib("VmRSS:"),
        vm_mib("VmHWM:")
    );
    // One sled batch for the whole purge took +228 MiB here; batches of 500 take under 10.
    assert!(vm_mib("VmHWM:") - before < 64.0, "purging 44k entries took {:.1} MiB", vm_mib("VmHWM:") - before);
    let t = std::time::Instant::now();
    let e = log.try_get_log_entries(index - 1000..index).await.unwrap();
    println!(
        "read {} in {} ms: RSS {:.1} MiB, VmHWM {:.1} MiB",
        e.len(),
        t.elapsed().as_millis(),
        vm_mib("VmRSS:"),
        vm_mib("VmHWM:")
    );
}

/// A purge longer than one batch removes every entry up to the purged index, and only those.
#[tokio::test]
async fn purge_in_batches_removes_exactly_the_prefix() {
    let dir = TempDir::new().unwrap();
    let (mut log, _sm) = open_store(&StoreOptions::new(dir.path())).unwrap();
    let entries: Vec<Entry> = (1..=1300).map(|i| app_entry(1, i, &format!("u{i}"))).collect();
    append(&mut log, entries).await;
    log.purge(lid(1, 1234)).await.unwrap();
    log.purge_done().await;
    assert_eq!(log.entry_count(), 66);
    assert!(log.try_get_log_entries(1..=1234).await.unwrap().is_empty());
    let kept = log.try_get_log_entries(1235..=1300).await.unwrap();
    assert!(kept.iter().zip(1235..).all(|(e, i)| e.log_id.index == i) && kept.len() == 66);
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(lid(1, 1234)));
}

/// A data_dir holds every password hash: what this crate creates is the user's only, whatever
/// the process's umask (a restore runs without the node's 077).
#[test]
fn seeded_data_dirs_and_snapshot_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let data_dir = dir.path().join("data/node-1");
    let voters = [(1, crate::TrackerNode { api: "127.0.0.1:1".into(), raft: "127.0.0.1:2".into() })].into();
    seed_state(&data_dir, &crate::TrackerState::default(), 7, voters).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&data_dir.join("snapshots")), 0o700);
    assert_eq!(mode(&data_dir.join("snapshots/current.snap")), 0o600);
}
