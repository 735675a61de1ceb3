//! Peers on hosts of their own (network namespaces made by `testkit::netns`): a sharer and a
//! downloader on two hosts, daemons listening on 0.0.0.0, the trackers on three more. The
//! tracker lists each daemon at its own host's address (not 127.0.0.1), and a file of a few
//! MiB crosses the bridge byte for byte. Skips, saying so, where namespaces cannot be made.

use std::time::{Duration, Instant};

use testkit::netns::{self, Net};
use testkit::*;

const MIB: usize = 1024 * 1024;

/// Starts the cluster's nodes and both daemons (each where its wrapper puts it), registers and
/// logs in alice and bob, and forms "team" with both in it. Runs on the caller's host.
fn team_of_two(cluster: &mut Cluster, alice: &mut Peer, bob: &mut Peer) {
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    cluster.wait_stable_leader();
    alice.start_daemon();
    bob.start_daemon();
    alice.register_and_login("alice");
    bob.register_and_login("bob");
    alice.form_group("team", bob, "bob");
}

/// Alice uploads `file` to "team" and Bob downloads it (blocking); how long the download took,
/// after checking that the file arrived byte for byte.
fn alice_shares_bob_downloads(
    cluster: &Cluster,
    alice: &Peer,
    bob: &Peer,
    file: &std::path::Path,
    sha1: &str,
) -> Duration {
    alice.ok(&["upload", file.to_str().unwrap(), "team"]);
    let name = file.file_name().unwrap().to_str().unwrap();
    let dest = cluster.dir.path().join("bob-dl");
    std::fs::create_dir_all(&dest).unwrap();
    let t0 = Instant::now();
    bob.ok(&["download", "team", name, dest.to_str().unwrap()]);
    let took = t0.elapsed();
    assert_eq!(file_sha1(&dest.join(name)), sha1, "the file crossed the bridge byte for byte");
    took
}

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
        team_of_two(&mut cluster, &mut alice, &mut bob);

        let (file, sha1) = random_file(cluster.dir.path(), "big.bin", 6 * MIB + 12_345, 7);
        let took = alice_shares_bob_downloads(&cluster, &alice, &bob, &file, &sha1);

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
    eprintln!("the whole test took {:?}", started.elapsed());
}

/// Not a check but a measurement (docs/BENCH.md, "Downloads between two hosts"): a file of
/// `NETNS_BENCH_MIB` MiB (default 1024) from a sharer on one host to a downloader on another,
/// `NETNS_BENCH_RUNS` times (default 3) each way: through a `chaos relay` in the sharer's
/// namespace that delays every byte `NETNS_BENCH_DELAY_MS` (default 5) one way, both ways (a
/// 10 ms round trip; the daemon advertises the relay's port), and straight over the bridge.
/// Every run on a fresh cluster and network, alternating. Run it with:
/// `cargo test --release -p peer --test netns -- --ignored --nocapture`
#[test]
#[ignore = "a measurement of minutes; run by hand (see the doc comment)"]
fn netns_download_timing() {
    if netns::skip("netns_download_timing") {
        return;
    }
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (mib, runs, delay_ms) =
        (env("NETNS_BENCH_MIB", 1024), env("NETNS_BENCH_RUNS", 3), env("NETNS_BENCH_DELAY_MS", 5));
    let files = tempfile::tempdir().unwrap();
    let (file, sha1) = random_file(files.path(), "big.bin", mib as usize * MIB, 11);
    let relay_bin = workspace_bin("chaos");
    let mut times: Vec<(bool, Duration)> = Vec::new();
    for run in 0..runs * 2 {
        let relayed = run % 2 == 0;
        let net = Net::new(5).expect("the test network");
        let mut cluster = Cluster::start_with(ClusterOptions { start: 0, ..Default::default() });
        netns::place_cluster(&net, &mut cluster);
        let (alice_port, relay_port, bob_port) = (free_port(), free_port(), free_port());
        // The relay runs in the sharer's namespace: every byte between the two hosts crosses it.
        let mut relay = relayed.then(|| {
            let mut child = net
                .command(3, &relay_bin)
                .args(["relay", "--route", &format!("0.0.0.0:{relay_port}=127.0.0.1:{alice_port}")])
                .args(["--delay-ms", &delay_ms.to_string(), "--jitter-ms", "0"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
            assert_eq!(line.trim(), "ready");
            child
        });
        let advertised = if relayed { relay_port } else { alice_port };
        let mut alice = Peer::new(&cluster, "alice");
        alice.wrapper = net.wrapper(3);
        alice.daemon_args = vec![
            "--listen".into(),
            format!("0.0.0.0:{alice_port}"),
            "--advertise".into(),
            format!("{}:{advertised}", net.ip(3)),
        ];
        let mut bob = Peer::new(&cluster, "bob");
        bob.wrapper = net.wrapper(4);
        bob.daemon_args = vec!["--listen".into(), format!("0.0.0.0:{bob_port}")];
        let took = net.run_in(4, || {
            team_of_two(&mut cluster, &mut alice, &mut bob);
            alice_shares_bob_downloads(&cluster, &alice, &bob, &file, &sha1)
        });
        eprintln!(
            "run {run}: {mib} MiB {} in {} ms",
            if relayed { format!("through the relay ({delay_ms} ms each way)") } else { "straight".into() },
            took.as_millis()
        );
        times.push((relayed, took));
        drop((alice, bob, cluster));
        if let Some(mut r) = relay.take() {
            // SAFETY: kill(2) on the PID of a child this test spawned and has not reaped.
            unsafe { libc::kill(r.id() as i32, libc::SIGKILL) };
            let _ = r.wait();
        }
    }
    let median = |relayed: bool| {
        let mut v: Vec<u128> = times.iter().filter(|(r, _)| *r == relayed).map(|(_, t)| t.as_millis()).collect();
        v.sort();
        (v[v.len() / 2], v)
    };
    let ((with, all_with), (without, all_without)) = (median(true), median(false));
    println!(
        "{mib} MiB between two hosts: through the relay ({delay_ms} ms each way) median {with} ms {all_with:?}; \
         straight median {without} ms {all_without:?}; ratio {:.2}",
        with as f64 / without as f64
    );
}
