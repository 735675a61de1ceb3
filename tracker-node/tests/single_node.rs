//! A one-node cluster is its own quorum: it takes writes at once, and still after idling for
//! many leader leases (a leader that counted only acknowledgements from *other* nodes would
//! think it lost its quorum and refuse, or step down and hold an election). The node runs in
//! this process (testkit::inproc).

use std::time::{Duration, Instant};

use testkit::inproc::InprocCluster;
use testkit::*;

/// Longest a leader goes without hearing from a quorum before it stops serving: the node's
/// lease is the election timeout's maximum (tracker-node `quorum_contact`; testkit's clusters
/// use 80-160 ms).
const LEASE_MS: u64 = 160;

#[test]
fn a_single_node_cluster_takes_writes_after_idling() {
    let cluster = InprocCluster::start(1);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    rt.block_on(admin.create_group("first")).unwrap();
    // openraft answers a write before its metrics show it applied: wait for them to catch up,
    // so that "before" is the state the idling starts from.
    let mut before = serde_json::Value::Null;
    wait_until("the node to report its whole log applied", Duration::from_secs(5), || {
        before = cluster.status(1).unwrap();
        before["applied_index"] == before["last_log_index"]
    });

    // The point is the passage of time with nothing to do, so this is a plain sleep, not a
    // wait on a condition: eight leases with no client request.
    std::thread::sleep(Duration::from_millis(8 * LEASE_MS));

    let after = cluster.status(1).unwrap();
    assert_eq!(after["role"], "leader", "{after}");
    assert_eq!(after["term"], before["term"], "no election happened while idle: {before} -> {after}");
    assert_eq!(
        after["applied_index"], before["applied_index"],
        "nothing was written while idle (no new leader's blank entry either)"
    );
    assert_eq!(after["leader"], 1);

    // The first write after idling is accepted by the node at the first attempt (a raw request:
    // no client retrying through a 503), and promptly.
    let auth = format!("Bearer {}", admin.token().unwrap());
    let started = Instant::now();
    let r = http(cluster.api(1), "POST", "/v1/groups", &[("authorization", &auth)], Some(r#"{"group":"after_idle"}"#))
        .expect("the node answers");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "the write took {:?}", started.elapsed());
    assert_eq!(rt.block_on(group_names(&admin)), vec!["after_idle", "first"]);
}
