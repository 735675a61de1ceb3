//! Membership changes under a running write load, and a follower that was down past a
//! snapshot and log purge catching up by snapshot install. The first runs its nodes in this
//! process (testkit::inproc; node 1, removed, is then stopped at once: `crash`) and the
//! operator's commands as processes; the second reads a node's log, so its nodes are processes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use testkit::inproc::InprocCluster;
use testkit::*;

const WAIT: Duration = Duration::from_secs(30);

fn members_cmd(cluster: &InprocCluster, action: &str, id: u64) -> std::process::Output {
    std::process::Command::new(workspace_bin("tracker-node"))
        .args(["members", action, "--config"])
        .arg(&cluster.config)
        .args(["--id", &id.to_string(), "--json"])
        .output()
        .unwrap()
}

#[test]
fn members_add_and_remove_under_write_load_lose_nothing() {
    let mut cluster = InprocCluster::start_with(ClusterOptions {
        nodes: 4,
        start: 3,
        extra: "initial_members = [1, 2, 3]".into(),
        ..Default::default()
    });
    cluster.wait_leader(&[]);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));

    // A writer that keeps creating groups and records each acknowledged one.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (acked, failures, admin) = (acked.clone(), failures.clone(), admin.clone());
        SteadyWrites::start(move |rt, i| {
            let g = format!("load_{i}");
            match rt.block_on(admin.create_group(&g)) {
                Ok(_) => acked.lock().unwrap().push(g),
                Err(e) => failures.lock().unwrap().push(format!("{g}: {e}")),
            }
        })
    };
    let acked_count = |n: usize| {
        let acked = acked.clone();
        move || acked.lock().unwrap().len() >= n
    };
    wait_until("the write load to start", WAIT, acked_count(20));

    // Node 4 starts empty (not an initial member: it waits to be added), then joins as a voter.
    cluster.start_node(4);
    let out = members_cmd(&cluster, "add", 4);
    assert!(out.status.success(), "members add 4: {}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["voters"], serde_json::json!([1, 2, 3, 4]));
    let n = acked.lock().unwrap().len();
    wait_until("more writes after the add", WAIT, acked_count(n + 20));

    // Node 1 leaves the voters (it may be the leader: then leadership moves).
    let out = members_cmd(&cluster, "remove", 1);
    assert!(out.status.success(), "members remove 1: {}", String::from_utf8_lossy(&out.stderr));
    let n = acked.lock().unwrap().len();
    wait_until("more writes after the remove", WAIT, acked_count(n + 20));
    writer.stop();
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "writes failed during membership changes: {failures:?}");

    cluster.crash(1);
    let leader = cluster.wait_leader(&[1]);
    let st = cluster.status(leader).unwrap();
    assert_eq!(st["voters"], serde_json::json!([2, 3, 4]), "{st}");
    let mut want = acked.lock().unwrap().clone();
    want.sort();
    let mut have = rt.block_on(group_names(&admin));
    have.retain(|g| g.starts_with("load_"));
    assert_eq!(have, want, "every acknowledged write is there, and nothing else");
    cluster.wait_converged(WAIT);
}

#[test]
fn a_follower_down_past_a_snapshot_catches_up_by_installing_it() {
    let mut cluster =
        Cluster::start_with(ClusterOptions { extra: "snapshot_logs_threshold = 50".into(), ..Default::default() });
    let leader = cluster.wait_leader(&[]);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    for i in 0..10 {
        rt.block_on(admin.create_group(&format!("early_{i}"))).unwrap();
    }
    let follower = cluster.other_than(&[leader]);
    cluster.wait_converged(WAIT);
    let behind = cluster.status(follower).unwrap()["last_log_index"].as_u64().unwrap();
    cluster.kill(follower);

    for i in 0..300 {
        rt.block_on(admin.create_group(&format!("late_{i}"))).unwrap();
    }
    let leader = cluster.wait_leader(&[follower]);
    wait_until("the leader to snapshot and purge past the follower's log", WAIT, || {
        cluster.status(leader).unwrap()["purged_index"].as_u64().unwrap_or(0) > behind
    });

    cluster.start_node(follower);
    let digest = cluster.wait_converged(WAIT);
    assert_eq!(cluster.digest(follower).unwrap().0, digest);
    assert_eq!(cluster.status(follower).unwrap()["groups"], 310);
    assert!(
        cluster.log(follower).contains("snapshot installed"),
        "the follower caught up by snapshot:\n{}",
        cluster.log(follower)
    );
    // Disk stays bounded: the leader keeps a bounded tail of the log, not all 300+ entries.
    let st = cluster.status(leader).unwrap();
    assert!(st["snapshot_index"].as_u64().unwrap() > behind, "{st}");
}
