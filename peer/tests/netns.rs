//! Peers on hosts of their own (network namespaces made by `testkit::netns`): a sharer and a
//! downloader on two hosts, daemons listening on 0.0.0.0, the trackers on three more. The
//! tracker lists each daemon at its own host's address (not 127.0.0.1), and a file of a few
//! MiB crosses the bridge byte for byte. Skips, saying so, where namespaces cannot be made.

use std::time::{Duration, Instant};

use testkit::netns::{self, Net};
use testkit::*;

const MIB: usize = 1024 * 1024;

#[test]
fn a_download_between_two_hosts_of_their_own() {
    if netns::skip("a_download_between_two_hosts_of_their_own") {
        return;
    }
    let started = Instant::now();
    // Dropped last: every process is stopped before the namespaces go.
    let net = Net::new(5).expect("the test network");
    let mut cluster = Cluster::start_with(ClusterOptions { start: 0, ..Default::default() });
    netns::place_cluster(&net, &mut cluster);
    let (alice_host, bob_host) = (3, 4);
    let (alice_port, bob_port) = (free_port(), free_port());
    let mut alice = Peer::new(&cluster, "alice");
    alice.wrapper = net.wrapper(alice_host);
    // No --advertise: the daemon announces its port; the tracker lists the address its calls
    // come from, which is this host's.
    alice.daemon_args = vec!["--listen".into(), format!("0.0.0.0:{alice_port}")];
    let mut bob = Peer::new(&cluster, "bob");
    bob.wrapper = net.wrapper(bob_host);
    bob.daemon_args = vec![
        "--listen".into(),
        format!("0.0.0.0:{bob_port}"),
        "--advertise".into(),
        format!("{}:{bob_port}", net.ip(bob_host)),
    ];

    // The test's own calls (status polls, the tracker client) go from Bob's host.
    net.run_in(bob_host, || {
        for id in cluster.ids() {
            cluster.start_node(id);
        }
        cluster.wait_stable_leader();
        alice.start_daemon();
        bob.start_daemon();
        alice.register_and_login("alice");
        bob.register_and_login("bob");
        alice.ok(&["create-group", "team"]);
        bob.ok(&["join-group", "team"]);
        alice.ok(&["accept-request", "team", "bob"]);

        let (file, sha1) = random_file(cluster.dir.path(), "big.bin", 6 * MIB + 12_345, 7);
        alice.ok(&["upload", file.to_str().unwrap(), "team"]);
        let dest = cluster.dir.path().join("bob-dl");
        std::fs::create_dir_all(&dest).unwrap();
        let t0 = Instant::now();
        bob.ok(&["download", "team", "big.bin", dest.to_str().unwrap()]);
        let took = t0.elapsed();
        assert_eq!(file_sha1(&dest.join("big.bin")), sha1, "the file crossed the bridge byte for byte");

        // Where the tracker says the sharers are: each on its own host, never 127.0.0.1.
        let rt = runtime();
        let client = cluster.client().with_token(bob.token());
        let mut sharers: Vec<(String, String)> = Vec::new();
        wait_until("both peers listed as sharers", Duration::from_secs(20), || {
            let d = rt.block_on(client.file_details("team", "big.bin")).expect("file details");
            sharers = d.sharers.into_iter().map(|s| (s.user, s.peer_addr)).collect();
            sharers.len() == 2
        });
        sharers.sort();
        assert_eq!(
            sharers,
            vec![
                ("alice".to_string(), format!("{}:{alice_port}", net.ip(alice_host))),
                ("bob".to_string(), format!("{}:{bob_port}", net.ip(bob_host))),
            ],
            "each daemon is listed at its own host's address"
        );
        eprintln!("6 MiB between two hosts in {took:?}; sharers {sharers:?}");
    });
    drop((alice, bob, cluster));
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}
