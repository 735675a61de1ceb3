//! The tracker at realistic sizes: a follower that was down while tens of thousands of entries
//! (many files, the largest names the API allows) were written catches up under a steady write
//! load; the whole cluster killed with -9 and restarted on a log of more than 50 MB serves a
//! linearizable read again within 10 s; and a lagging follower catches up through a snapshot of
//! a large state sent in bounded chunks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::api::FileMetaBody;
use testkit::*;
use tracker_client::TrackerClient;

const WAIT: Duration = Duration::from_secs(120);
/// Concurrent writers of the bulk load.
const WRITERS: u64 = 32;

/// A file name of 255 bytes (the longest allowed), unique per `n`; multi-byte characters
/// make it as heavy as a name can be.
fn long_name(n: u64) -> String {
    let head = format!("{n:08}-");
    let mut name = head.clone();
    while name.len() + "é".len() <= 255 {
        name.push('é');
    }
    while name.len() < 255 {
        name.push('x');
    }
    name
}

fn meta(n: u64) -> FileMetaBody {
    FileMetaBody {
        name: long_name(n),
        // 1 GiB to 64 GiB: the sizes no longer weigh on the entry.
        size: (1u64 << 30) * (1 + n % 64),
        piece_len: 512 * 1024,
        piece_list_sha1: format!("{:040x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        sha1: format!("{:040x}", n),
    }
}

/// Uploads files `from..to` spread over `groups`, with `WRITERS` concurrent clients; every
/// upload must be acknowledged.
fn load(rt: &tokio::runtime::Runtime, admin: &TrackerClient, groups: &[String], from: u64, to: u64) {
    let next = Arc::new(AtomicU64::new(from));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let (admin, next, groups) = (admin.clone(), next.clone(), groups.to_vec());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= to {
                        return;
                    }
                    let g = &groups[(n % groups.len() as u64) as usize];
                    admin
                        .upload(g, meta(n), "127.0.0.1:7000", &"ab".repeat(32))
                        .await
                        .unwrap_or_else(|e| panic!("upload {n}: {e}"));
                }
            }));
        }
        for t in tasks {
            t.await.expect("a writer panicked");
        }
    });
    let secs = started.elapsed().as_secs_f64();
    eprintln!("loaded {} uploads in {secs:.1} s ({:.0}/s)", to - from, (to - from) as f64 / secs);
}

/// A 3-node cluster taking a snapshot every `snapshot_logs_threshold` entries, where alice owns
/// `groups` groups (`team_<i>`) and one follower has just been killed, before a load.
struct FollowerDown {
    cluster: Cluster,
    rt: tokio::runtime::Runtime,
    admin: TrackerClient,
    groups: Vec<String>,
    leader: u64,
    follower: u64,
}

fn follower_down(snapshot_logs_threshold: u64, groups: usize) -> FollowerDown {
    let mut cluster = Cluster::start_with(ClusterOptions {
        extra: format!("snapshot_logs_threshold = {snapshot_logs_threshold}"),
        ..Default::default()
    });
    let leader = cluster.wait_leader(&[]);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    let groups: Vec<String> = (0..groups).map(|i| format!("team_{i}")).collect();
    for g in &groups {
        rt.block_on(admin.create_group(g)).unwrap();
    }
    let follower = cluster.other_than(&[leader]);
    cluster.kill(follower);
    FollowerDown { cluster, rt, admin, groups, leader, follower }
}

fn metric(cluster: &Cluster, id: u64, name: &str) -> Option<f64> {
    let r = http(cluster.api(id), "GET", "/metrics", &[], None)?;
    r.body.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn a_follower_down_for_20k_entries_catches_up_under_load_then_a_full_kill9_restart_serves_reads_fast() {
    // Alone: tens of thousands of writes and a full restart: the machine to itself.
    let _alone = alone();
    // No snapshot during the test: the whole log stays in sled, and the follower catches up
    // through append batches alone (the byte-bounded transport is what is under test).
    let FollowerDown { mut cluster, rt, admin, groups, leader, follower } = follower_down(10_000_000, 20);
    let behind = rt.block_on(cluster.client().node_status(cluster.api(leader))).unwrap().last_log_index.unwrap();

    load(&rt, &admin, &groups, 0, 20_000);
    let leader = cluster.wait_leader(&[follower]);
    let ahead = cluster.status(leader).unwrap()["last_log_index"].as_u64().unwrap();
    assert!(ahead >= behind + 20_000, "20k entries written while the follower was down: {behind} -> {ahead}");

    // The follower returns while writes keep coming.
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (admin, acked, groups) = (admin.clone(), acked.clone(), groups.clone());
        SteadyWrites::start(move |rt, i| {
            let n = 1_000_000 + i;
            rt.block_on(admin.upload(&groups[(n % 20) as usize], meta(n), "127.0.0.1:7000", &"ab".repeat(32)))
                .expect("steady write");
            acked.fetch_add(1, Ordering::Relaxed);
        })
    };
    cluster.start_node(follower);
    cluster.wait_caught_up(follower, WAIT);
    let during = acked.load(Ordering::Relaxed);
    writer.stop();
    assert!(during > 0, "the follower caught up while writes were being acknowledged");
    let digest = cluster.wait_converged(WAIT);
    assert_eq!(cluster.digest(follower).unwrap().0, digest);
    assert!(!cluster.log(follower).contains("snapshot installed"), "caught up from the log, not a snapshot");

    // Grow the log past 50 MB, then kill -9 every node and restart them all.
    load(&rt, &admin, &groups, 20_000, 75_000);
    let files: u64 = cluster.status(leader).unwrap()["files"].as_u64().unwrap();
    assert!(files >= 75_000, "{files} files");
    let sled_bytes = metric(&cluster, leader, "tracker_sled_size_bytes").unwrap();
    eprintln!("log on disk before the kill: {:.1} MB", sled_bytes / 1e6);
    assert!(sled_bytes >= 50e6, "the log must weigh at least 50 MB, it is {sled_bytes} bytes");
    let digest = cluster.wait_converged(WAIT);
    for id in cluster.ids() {
        cluster.kill(id);
    }
    let restarted = Instant::now();
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    // A linearizable read through any node, with alice's old session.
    let mut answered = None;
    wait_until("a linearizable read after the full restart", Duration::from_secs(10), || {
        let ok = rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), admin.list_files("team_3")).await });
        if let Ok(Ok(files)) = ok {
            answered = Some(files.len());
            true
        } else {
            false
        }
    });
    let took = restarted.elapsed();
    eprintln!("full cluster kill -9 and restart: first linearizable read after {took:?}");
    assert!(answered.unwrap() >= 75_000 / 20, "every file of team_3 is back");
    assert_eq!(cluster.wait_converged(WAIT), digest, "the restarted cluster holds exactly the state it had");
}

#[test]
fn a_follower_behind_a_large_snapshot_installs_it_in_bounded_chunks() {
    let FollowerDown { mut cluster, rt, admin, groups, follower, .. } = follower_down(2_000, 10);
    load(&rt, &admin, &groups, 0, 12_000);
    let leader = cluster.wait_leader(&[follower]);
    wait_until("the leader to build a snapshot and purge", WAIT, || {
        cluster.status(leader).unwrap()["purged_index"].as_u64().unwrap_or(0) > 2_000
    });
    let snapshot_bytes = metric(&cluster, leader, "tracker_snapshot_file_bytes").unwrap();
    let chunk = 1024.0 * 1024.0;
    assert!(snapshot_bytes > 3.0 * chunk, "the snapshot spans several chunks: {snapshot_bytes} bytes");

    cluster.start_node(follower);
    let digest = cluster.wait_converged(WAIT);
    assert_eq!(cluster.digest(follower).unwrap().0, digest);
    assert!(cluster.log(follower).contains("snapshot installed"), "{}", cluster.log(follower));
    assert_eq!(cluster.status(follower).unwrap()["files"], 12_000);
}
