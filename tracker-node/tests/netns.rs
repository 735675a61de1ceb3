//! Three tracker nodes on three hosts of their own (network namespaces made by
//! `testkit::netns`, each node bound to its host's 10.77.0.x address as cluster.toml lists it),
//! a client on a fourth host: election, writes, a leader kill, and a leader whose cable is
//! pulled (`ip link set down`) and plugged back. Skips, saying so, where namespaces cannot be
//! made (not root).

use std::time::{Duration, Instant};

use testkit::netns::{self, Net};
use testkit::*;

const WAIT: Duration = Duration::from_secs(20);

/// Writes `names` as groups; each must be acknowledged (the client retries within its budget).
fn write_all(rt: &tokio::runtime::Runtime, c: &tracker_client::TrackerClient, names: &[String]) {
    for n in names {
        rt.block_on(c.create_group(n)).unwrap_or_else(|e| panic!("write {n}: {e}"));
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn three_nodes_on_their_own_hosts_elect_serve_and_survive_a_kill_and_a_pulled_cable() {
    if netns::skip("three_nodes_on_their_own_hosts_elect_serve_and_survive_a_kill_and_a_pulled_cable") {
        return;
    }
    // Declared first, dropped last: the nodes are stopped before their namespaces go.
    let net = Net::new(4).expect("the test network");
    let mut cluster = Cluster::start_with(ClusterOptions { start: 0, ..Default::default() });
    netns::place_cluster(&net, &mut cluster);
    let toml = std::fs::read_to_string(&cluster.config).unwrap();
    for id in 1..=3u64 {
        assert!(toml.contains(&format!("api = \"10.77.0.{id}:")), "node {id} listed at its host's address: {toml}");
    }
    let started = Instant::now();

    // Everything below runs on host 3 (10.77.0.4), the client's: it sees the nodes only over
    // the bridge.
    net.run_in(3, || {
        for id in cluster.ids() {
            cluster.start_node(id);
        }
        let (leader, term) = cluster.wait_stable_leader();
        for id in cluster.ids() {
            let st = cluster.status(id).expect("every node answers at its own address");
            assert_eq!(st["voters"], serde_json::json!([1, 2, 3]), "node {id}: {st}");
        }
        eprintln!("leader {leader} in term {term} after {:?}", started.elapsed());

        let rt = runtime();
        let alice = rt.block_on(logged_in(&cluster.client(), "alice"));
        let mut acked = names("before_", 20);
        write_all(&rt, &alice, &acked);

        // Kill the leader: another is elected, every acknowledged write is still there.
        cluster.kill(leader);
        let second = cluster.wait_leader(&[leader]);
        assert_ne!(second, leader);
        let after_kill = names("after_kill_", 10);
        write_all(&rt, &alice, &after_kill);
        acked.extend(after_kill);
        let seen = rt.block_on(group_names(&alice));
        for n in &acked {
            assert!(seen.contains(n), "acknowledged write {n} lost after the leader kill: {seen:?}");
        }
        cluster.start_node(leader);
        cluster.wait_caught_up(leader, WAIT);

        // Pull the current leader's cable: the other two elect a leader and serve; plug it back
        // in: it rejoins, and every node converges on the same state.
        let (cut, _) = cluster.wait_stable_leader();
        net.cut((cut - 1) as usize).unwrap();
        let others: Vec<u64> = cluster.ids().into_iter().filter(|i| *i != cut).collect();
        let mut third = 0;
        wait_until("the two connected nodes to elect a leader of their own", WAIT, || {
            cluster.stable_view_of(&others).is_some_and(|(l, _, _)| {
                third = l;
                l != cut
            })
        });
        let during_cut = names("during_cut_", 10);
        write_all(&rt, &alice, &during_cut);
        acked.extend(during_cut);
        net.heal((cut - 1) as usize).unwrap();
        let (l, _) = cluster.wait_stable_leader();
        eprintln!("killed {leader} (then {second} led), cut {cut} ({third} led), healed: {l} leads");
        let digest = cluster.wait_converged(WAIT);
        let seen = rt.block_on(group_names(&alice));
        for n in &acked {
            assert!(seen.contains(n), "acknowledged write {n} lost: {seen:?}");
        }
        eprintln!("{} writes acknowledged and read back; every node at digest {}", acked.len(), &digest[..12]);
    });
    drop(cluster);
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}
