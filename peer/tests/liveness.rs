//! Peer liveness and addresses, on a real three-node tracker cluster and real peer daemons: a
//! sharer counts only while its daemon is alive (docs/CONTRACT.md: a daemon that died drops out
//! within the liveness period, 30 s by default), a clean stop drops out at once, a failover
//! drops nobody, and the tracker lists a dialable address for a daemon that listens on all
//! interfaces or behind a port forward.
//!
//! The clusters here set `peer_liveness_ms` to 6 s: the period is the cluster's, and the
//! daemons learn from the tracker to call every 2 s (with the default 10 s they would drop out
//! of the failover test's window).

use testkit::*;

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The liveness period of these tests' clusters (docs/API.md, "Peer liveness").
const LIVENESS_MS: u64 = 6_000;
const LIVENESS: Duration = Duration::from_millis(LIVENESS_MS);
const MARGIN: Duration = Duration::from_secs(4);

/// Three nodes whose liveness period is `LIVENESS`, with a leader.
fn cluster() -> Cluster {
    let opts = ClusterOptions { extra: format!("peer_liveness_ms = {LIVENESS_MS}"), ..Default::default() };
    let c = Cluster::start_with(opts);
    c.wait_leader(&[]);
    c
}

/// Polls `f` every 250 ms until it holds; fails after `timeout`. Returns the time it took.
fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `list-files`' sharer count for `name`, as `p` sees it.
fn sharers(p: &Peer, group: &str, name: &str) -> u64 {
    let files = p.ok(&["list-files", group]);
    let row = files.as_array().unwrap().iter().find(|f| f["name"] == name).cloned();
    row.unwrap_or_else(|| panic!("{name} is not listed in {group}: {files}"))["sharers"].as_u64().unwrap()
}

/// `GET /v1/groups/{group}/files/{name}` with `p`'s session, from whichever node leads.
fn details(cluster: &Cluster, p: &Peer, group: &str, name: &str) -> Value {
    let token = p.token().expect("logged in");
    let path = format!("/v1/groups/{group}/files/{name}");
    let mut last = String::new();
    for _ in 0..100 {
        for id in cluster.running() {
            if let Some(r) = http(cluster.api(id), "GET", &path, &[("authorization", &format!("Bearer {token}"))], None)
            {
                if r.status == 200 {
                    return r.json();
                }
                last = format!("{} {}", r.status, r.body);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no node answered {path}: {last}");
}

/// The sharers' `(user, peer_addr)` in a file's details.
fn sharer_addrs(details: &Value) -> Vec<(String, String)> {
    details["sharers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["user"].as_str().unwrap().to_string(), s["peer_addr"].as_str().unwrap().to_string()))
        .collect()
}

fn upload(p: &Peer, cluster: &Cluster, name: &str, seed: u64) -> String {
    let (_, sha1) = p.upload_random(cluster.dir.path(), name, 700_000, seed, "g");
    sha1
}

fn download(p: &Peer, cluster: &Cluster, name: &str, dir: &str) -> Run {
    let dest = cluster.dir.path().join(dir);
    std::fs::create_dir_all(&dest).unwrap();
    p.run(&["download", "g", name, dest.to_str().unwrap()])
}

fn downloaded_sha1(cluster: &Cluster, dir: &str, name: &str) -> String {
    file_sha1(&cluster.dir.path().join(dir).join(name))
}

#[test]
fn a_killed_daemon_drops_out_within_the_liveness_period() {
    let cluster = cluster();
    let (mut alice, bob) = team(&cluster, "g");
    upload(&alice, &cluster, "a.bin", 1);
    assert_eq!(sharers(&bob, "g", "a.bin"), 1);

    alice.kill_daemon();
    let took = wait_for("alice's killed daemon to drop out of the sharers", LIVENESS + MARGIN, || {
        sharers(&bob, "g", "a.bin") == 0
    });
    eprintln!("a SIGKILLed sharer dropped out after {took:?}");
    assert!(details(&cluster, &bob, "g", "a.bin")["sharers"].as_array().unwrap().is_empty());

    // The file stays listed; a download fails at once instead of dialling a dead address.
    let started = Instant::now();
    let r = download(&bob, &cluster, "a.bin", "bob");
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.error_code(), "no_peers", "{}", r.stdout);
    assert!(started.elapsed() < Duration::from_secs(5), "no_peers took {:?}", started.elapsed());
}

#[test]
fn a_daemon_stopped_with_sigterm_drops_out_at_once() {
    let cluster = cluster();
    let (mut alice, bob) = team(&cluster, "g");
    let sha1 = upload(&alice, &cluster, "a.bin", 2);
    assert_eq!(sharers(&bob, "g", "a.bin"), 1);

    let status = alice.signal_daemon(libc::SIGTERM, Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "the daemon stops cleanly on SIGTERM: {status:?}");
    let took =
        wait_for("alice's stopped daemon to drop out", Duration::from_secs(2), || sharers(&bob, "g", "a.bin") == 0);
    eprintln!("a SIGTERMed sharer dropped out after {took:?}");
    assert!(alice.daemon_log().contains("going away"), "{}", alice.daemon_log());

    // Started again, it announces itself and counts again at once.
    alice.start_daemon();
    wait_for("alice's restarted daemon to be listed", Duration::from_secs(10), || sharers(&bob, "g", "a.bin") == 1);
    let r = download(&bob, &cluster, "a.bin", "bob");
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(downloaded_sha1(&cluster, "bob", "a.bin"), sha1);
}

#[test]
fn a_leader_failover_drops_no_live_sharer() {
    let mut cluster = cluster();
    let (alice, bob) = team(&cluster, "g");
    let sha1 = upload(&alice, &cluster, "a.bin", 3);
    assert_eq!(sharers(&bob, "g", "a.bin"), 1);

    let old = cluster.wait_leader(&[]);
    cluster.kill(old);
    cluster.wait_leader(&[old]);
    let elected = Instant::now();
    // The new leader starts with an empty liveness table and a grace period: alice stays.
    assert_eq!(sharers(&bob, "g", "a.bin"), 1);
    let r = download(&bob, &cluster, "a.bin", "bob1");
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(downloaded_sha1(&cluster, "bob1", "a.bin"), sha1);

    // And after the grace period too: alice's daemon tells the new leader it is alive.
    while elected.elapsed() < LIVENESS + Duration::from_secs(5) {
        let users: Vec<String> =
            sharer_addrs(&details(&cluster, &bob, "g", "a.bin")).into_iter().map(|(u, _)| u).collect();
        assert!(users.contains(&"alice".to_string()), "alice dropped out {:?} after the failover", elected.elapsed());
        std::thread::sleep(Duration::from_secs(1));
    }
    // bob shares it now too; his own download skips himself and fetches from alice.
    assert_eq!(sharers(&bob, "g", "a.bin"), 2);
    let r = download(&bob, &cluster, "a.bin", "bob2");
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(downloaded_sha1(&cluster, "bob2", "a.bin"), sha1);
}

/// Forwards every connection to 127.0.0.1:`from` on to 127.0.0.1:`to` (a port forward).
fn forward(from: u16, to: u16) {
    let listener = TcpListener::bind(("127.0.0.1", from)).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(a) = conn else { continue };
            let Ok(b) = TcpStream::connect(("127.0.0.1", to)) else { continue };
            for (mut src, mut dst) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut src, &mut dst);
                    let _ = dst.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

#[test]
fn listen_on_all_interfaces_and_advertise_a_forwarded_port() {
    let cluster = cluster();
    let owner = Peer::owner(&cluster, "owner", "g", &[]);
    let bob = Peer::member(&cluster, "bob", "g", &owner, &[]);

    // Listening on 0.0.0.0: the tracker lists the address the daemon's calls come from.
    let alice = Peer::member(&cluster, "alice", "g", &owner, &["--listen", "0.0.0.0:0"]);
    let info: Value = serde_json::from_slice(&std::fs::read(alice.home.join("daemon.json")).unwrap()).unwrap();
    let listen: std::net::SocketAddr = info["listen"].as_str().unwrap().parse().unwrap();
    assert!(listen.ip().is_unspecified(), "{info}");
    let sha1 = upload(&alice, &cluster, "a.bin", 4);
    let listed = sharer_addrs(&details(&cluster, &bob, "g", "a.bin"));
    assert_eq!(listed, vec![("alice".to_string(), format!("127.0.0.1:{}", listen.port()))]);
    let r = download(&bob, &cluster, "a.bin", "bob-a");
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(downloaded_sha1(&cluster, "bob-a", "a.bin"), sha1);

    // Behind a port forward: --advertise names the port peers are told; the host the tracker
    // lists is still the connection's, never the one the daemon names.
    let (port, forwarded) = (free_port(), free_port());
    forward(forwarded, port);
    let advertise = format!("203.0.113.7:{forwarded}");
    let carol = Peer::member(
        &cluster,
        "carol",
        "g",
        &owner,
        &["--listen", &format!("127.0.0.1:{port}"), "--advertise", &advertise],
    );
    let sha1 = upload(&carol, &cluster, "c.bin", 5);
    let listed = sharer_addrs(&details(&cluster, &bob, "g", "c.bin"));
    assert_eq!(listed, vec![("carol".to_string(), format!("127.0.0.1:{forwarded}"))]);
    wait_for("carol's warning about the --advertise host", Duration::from_secs(10), || {
        carol.daemon_log().contains("takes only the port from --advertise")
    });
    let r = download(&bob, &cluster, "c.bin", "bob-c");
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(downloaded_sha1(&cluster, "bob-c", "c.bin"), sha1);
}

#[test]
fn advertise_must_be_host_and_port() {
    let home = tempfile::tempdir().unwrap();
    for bad in ["6881", "host:0", ":6881", "host:99999", "::1:6881", "[host]:1"] {
        let out = std::process::Command::new(peer_bin())
            .args(["daemon", "--advertise", bad])
            .env("PEER_HOME", home.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--advertise {bad}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
