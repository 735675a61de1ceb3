//! A one-node cluster is its own quorum: it takes writes at once and after idling.

use std::time::Duration;

use testkit::*;

#[test]
fn a_single_node_cluster_takes_writes_after_idling() {
    let cluster = Cluster::start(1);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    rt.block_on(admin.create_group("first")).unwrap();
    // Idle for several leader leases: the node must not think it lost its quorum.
    let applied = cluster.status(1).unwrap()["applied_index"].as_u64().unwrap();
    let start = std::time::Instant::now();
    wait_until("a second of idling", Duration::from_secs(5), || start.elapsed() > Duration::from_secs(1));
    assert_eq!(cluster.status(1).unwrap()["applied_index"].as_u64().unwrap(), applied, "nothing was written while idle");
    rt.block_on(admin.create_group("after_idle")).unwrap();
    assert_eq!(rt.block_on(group_names(&admin)), vec!["after_idle", "first"]);
}
