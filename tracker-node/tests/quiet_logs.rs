//! The default log stays readable: a node's start is a few lines, a node that is down costs
//! its peers one line and then a summary every 10 s (not one line per retry), the state
//! changes are there at info, and `RUST_LOG` still brings back everything.

use std::time::Duration;

use testkit::*;

fn lines(cluster: &Cluster, id: u64) -> usize {
    cluster.log(id).lines().count()
}

#[test]
fn the_default_log_is_short_at_start_and_bounded_while_a_node_is_down() {
    // Alone: it counts log lines in a window: no other load beside it.
    let _alone = alone();
    // The default filter is what is tested; an inherited RUST_LOG would replace it.
    std::env::remove_var("RUST_LOG");
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_stable_leader();
    std::thread::sleep(Duration::from_millis(500));
    for id in cluster.ids() {
        let log = cluster.log(id);
        assert!(log.lines().count() < 40, "node {id}'s start is fewer than 40 lines:\n{log}");
        assert!(!log.contains("openraft::engine"), "openraft's info lines are held back:\n{log}");
    }
    assert!(cluster.log(leader).contains("became leader"), "the leader says so:\n{}", cluster.log(leader));

    // A follower dies: the leader retries it every few tens of milliseconds.
    let victim = cluster.other_than(&[leader]);
    let other = cluster.other_than(&[leader, victim]);
    let at_kill = cluster.log(leader).len();
    cluster.kill(victim);
    std::thread::sleep(Duration::from_secs(1));
    let before = (lines(&cluster, leader), lines(&cluster, other));
    std::thread::sleep(Duration::from_secs(3));
    let after = (lines(&cluster, leader), lines(&cluster, other));
    let log = cluster.log(leader)[at_kill..].to_string();
    assert!(after.0 - before.0 < 10, "the leader logged {} lines in 3 s:\n{log}", after.0 - before.0);
    assert!(after.1 - before.1 < 10, "node {other} logged {} lines in 3 s", after.1 - before.1);
    let first = format!("node {victim} unreachable: ");
    assert_eq!(log.matches(&first).count(), 1, "the first failure is logged once:\n{log}");

    // It comes back: one line says so.
    cluster.start_node(victim);
    wait_until("the leader to reach the node again", Duration::from_secs(20), || {
        cluster.log(leader).contains(&format!("node {victim} reachable again"))
    });

    // RUST_LOG replaces the default: openraft's own info lines are back.
    let mut cluster = cluster;
    cluster.kill(victim);
    let len = cluster.log(victim).len();
    cluster.set_node_env(victim, "RUST_LOG", "info");
    cluster.start_node(victim);
    wait_until("the node restarted with RUST_LOG=info to log openraft's lines", Duration::from_secs(20), || {
        cluster.log(victim)[len..].contains("openraft::")
    });
}
