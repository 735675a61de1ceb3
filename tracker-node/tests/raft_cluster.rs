//! A real tracker cluster: election, writes through any node, redirects, leader failover,
//! a full restart, and quorum loss on a five-node cluster. Every node is a `tracker-node run`
//! process on 127.0.0.1 with run-time ports (kill -9 is what these tests are about), but for the
//! redirect test's, which run in this process; waits are on conditions.

use std::time::Duration;

use testkit::inproc::InprocCluster;
use testkit::*;
use tracker_client::TrackerClient;

const WAIT: Duration = Duration::from_secs(20);

/// A client that knows only `api`: it must follow redirects to reach the leader.
fn client_of(api: &str) -> TrackerClient {
    TrackerClient::new(vec![api.to_string()], tracker_client::RetryPolicy::default())
}

/// With its nodes in this process (testkit::inproc): nothing here needs a process of its own.
#[test]
fn writes_through_any_node_and_followers_redirect() {
    let cluster = InprocCluster::start(3);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    let token = admin.token().unwrap().to_string();

    // Every node accepts writes from a client that knows only that node.
    for id in cluster.ids() {
        let c = client_of(cluster.api(id)).with_token(Some(token.clone()));
        rt.block_on(c.create_group(&format!("via_node_{id}")))
            .unwrap_or_else(|e| panic!("write through node {id}: {e}"));
    }
    let names = rt.block_on(group_names(&admin));
    assert_eq!(names, vec!["via_node_1", "via_node_2", "via_node_3"]);

    // Raw HTTP: a follower answers 307 with the leader's address, in Location and in the body.
    // Checked against one stable view of who leads; an election in between moves the term, and
    // is a reason to look again, not a failure.
    let auth = format!("Bearer {token}");
    let mut checked = false;
    for _ in 0..5 {
        let (leader, term) = cluster.wait_stable_leader();
        let follower = cluster.other_than(&[leader]);
        let r =
            http(cluster.api(follower), "POST", "/v1/groups", &[("Authorization", &auth)], Some(r#"{"group":"raw"}"#))
                .expect("follower answers");
        if cluster.stable_view().map(|(l, t, _)| (l, t)) != Some((leader, term)) {
            continue; // leadership moved while we asked
        }
        assert_eq!(r.status, 307, "{r:?}");
        assert_eq!(r.header("location"), Some(format!("http://{}/v1/groups", cluster.api(leader)).as_str()));
        let body = r.json();
        assert_eq!(body["error"]["code"], "not_leader");
        assert_eq!(body["leader"]["id"], leader);
        assert_eq!(body["leader"]["api"], cluster.api(leader));
        // The follower did not apply anything itself.
        assert!(!rt.block_on(group_names(&admin)).contains(&"raw".to_string()));
        checked = true;
        break;
    }
    assert!(checked, "no stable leader for long enough to ask a follower");

    // The leader answers the same request itself (a raw client that followed the redirect).
    let r = loop {
        let (leader, _) = cluster.wait_stable_leader();
        let r =
            http(cluster.api(leader), "POST", "/v1/groups", &[("Authorization", &auth)], Some(r#"{"group":"raw"}"#))
                .unwrap();
        if r.status != 307 {
            break r;
        }
    };
    assert_eq!(r.status, 200, "{r:?}");
    assert!(rt.block_on(group_names(&admin)).contains(&"raw".to_string()));

    // Status on every node names the same leader in the same term, the same members, and
    // each node's role agrees: waited for as one view, then every role checked in it.
    let (leader, term, view) = {
        let mut v = None;
        wait_until("one view of the cluster", WAIT, || {
            v = cluster.stable_view();
            v.is_some()
        });
        v.unwrap()
    };
    for (id, st) in &view {
        assert_eq!(st["term"], term);
        assert_eq!(st["voters"], serde_json::json!([1, 2, 3]), "{st}");
        assert_eq!(st["role"], if *id == leader { "leader" } else { "follower" }, "node {id} in term {term}: {st}");
    }
    let follower = cluster.other_than(&[leader]);
    let metrics = http(cluster.api(follower), "GET", "/metrics", &[], None).unwrap();
    assert_eq!(metrics.status, 200);
    let term_now = cluster.status(follower).unwrap()["term"].as_u64();
    if term_now == Some(term) {
        assert!(metrics.body.contains(&format!("tracker_leader_id {leader}")), "{}", metrics.body);
        assert!(metrics.body.contains(&format!("tracker_term {term}")), "{}", metrics.body);
    }
}

/// A node killed with SIGKILL is gone: no process, nothing listening on its ports.
fn assert_gone(cluster: &Cluster, id: u64, pid: u32) {
    // SAFETY: kill(2) with signal 0 only checks whether the process exists.
    assert!(unsafe { libc::kill(pid as i32, 0) } != 0, "node {id} (pid {pid}) still runs");
    for addr in [cluster.api(id), cluster.rafts[(id - 1) as usize].as_str()] {
        let r = std::net::TcpStream::connect(addr);
        assert!(
            r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
            "node {id}'s {addr} answers: {r:?}"
        );
    }
}

#[test]
fn leader_killed_writes_continue_and_nothing_acknowledged_is_lost() {
    let mut cluster = Cluster::start(3);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    let mut acked = Vec::new();
    for i in 0..20 {
        let g = format!("before_{i}");
        rt.block_on(admin.create_group(&g)).unwrap();
        acked.push(g);
    }
    let (old, term_before) = cluster.wait_stable_leader();
    let pid = cluster.pid(old).unwrap();
    cluster.kill(old);
    assert_gone(&cluster, old, pid);

    // The next write goes through once a new leader is elected (the client rides the election).
    rt.block_on(admin.create_group("after_kill")).unwrap();
    acked.push("after_kill".into());
    // The survivors agree on a leader among themselves, elected in a later term: a leader
    // cannot be re-elected in the term it led.
    let (new, term_after) = cluster.wait_stable_leader();
    assert!(term_after > term_before, "new leader {new} in term {term_after}, the killed {old} led term {term_before}");
    // Every write acknowledged so far is there (a linearizable read, through the new leader),
    // and nothing else.
    let mut so_far = acked.clone();
    so_far.sort();
    assert_eq!(rt.block_on(group_names(&admin)), so_far, "after the kill, before any more writes");
    for i in 0..20 {
        let g = format!("during_{i}");
        rt.block_on(admin.create_group(&g)).unwrap();
        acked.push(g);
    }
    let mut names = rt.block_on(group_names(&admin));
    acked.sort();
    names.retain(|n| acked.contains(n));
    assert_eq!(names, acked, "every acknowledged write survives the leader's death");
    // The new leader's metrics saw the change of leader, and count what it committed.
    let m = http(cluster.api(new), "GET", "/metrics", &[], None).unwrap().body;
    let sample = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{m}"))
    };
    assert!(sample("tracker_leader_changes_seen_total") >= 2.0, "the first leader, then the new one");
    assert_eq!(sample("tracker_has_leader"), 1.0);
    assert!(sample("tracker_proposals_committed_total") >= 20.0, "the 20 writes after the kill went through it");
    assert_eq!(sample("tracker_proposals_pending"), 0.0);
    assert!(sample("tracker_disk_wal_fsync_seconds_count") > 0.0);
    assert!(sample("process_resident_memory_bytes") > 0.0);

    // The killed node restarts from its sled files and catches up.
    cluster.start_node(old);
    let digest = cluster.wait_converged(WAIT);
    let (d_old, _) = cluster.digest(old).unwrap();
    assert_eq!(d_old, digest);
    assert_eq!(cluster.status(old).unwrap()["groups"], 41);
}

#[test]
fn all_nodes_killed_and_restarted_keep_the_full_state() {
    let mut cluster = Cluster::start(3);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    let bob = rt.block_on(logged_in(&cluster.client(), "bob"));
    for i in 0..15 {
        rt.block_on(admin.create_group(&format!("g{i}"))).unwrap();
    }
    rt.block_on(bob.join_group("g3")).unwrap();
    rt.block_on(admin.accept_request("g3", "bob")).unwrap();
    let digest = cluster.wait_converged(WAIT);
    let groups = rt.block_on(group_names(&admin));

    for id in cluster.ids() {
        cluster.kill(id);
    }
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    cluster.wait_leader(&[]);
    assert_eq!(cluster.wait_converged(WAIT), digest, "the state machine is back, byte for byte");
    // Sessions survived too: the same tokens still work.
    assert_eq!(rt.block_on(group_names(&admin)), groups);
    let rows = rt.block_on(bob.list_groups()).unwrap();
    assert!(rows.iter().any(|r| r.group == "g3" && r.member), "bob is still a member of g3");
    rt.block_on(admin.create_group("after_restart")).unwrap();
}

#[test]
fn five_nodes_survive_two_down_and_refuse_writes_clearly_with_three_down() {
    let mut cluster = Cluster::start(5);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    rt.block_on(admin.create_group("before")).unwrap();

    // Two down, the leader among them: a quorum of three remains.
    let leader = cluster.wait_leader(&[]);
    let other = cluster.other_than(&[leader]);
    for id in [leader, other] {
        let pid = cluster.pid(id).unwrap();
        cluster.kill(id);
        assert_gone(&cluster, id, pid);
    }
    rt.block_on(admin.create_group("two_down")).unwrap();

    // Three down: no quorum. Writes are refused with 503 + Retry-After, and the client gives up
    // within its budget with `unavailable` instead of hanging.
    let third = cluster.running()[0];
    let pid = cluster.pid(third).unwrap();
    cluster.kill(third);
    assert_gone(&cluster, third, pid);
    let up = cluster.running();
    let auth = format!("Bearer {}", admin.token().unwrap());
    // A leader that lost its quorum says so (503); a follower that still hears it redirects
    // there. Either way the write ends in a clear 503, never a hang.
    let refuses = |api: &str| {
        http(api, "POST", "/v1/groups", &[("Authorization", &auth)], Some(r#"{"group":"nope"}"#)).is_some_and(|r| {
            r.status == 503 && r.header("retry-after").is_some() && r.json()["error"]["code"] == "unavailable"
        })
    };
    wait_until("every running node to refuse writes with 503, directly or via its leader", WAIT, || {
        up.iter().all(|id| {
            let Some(r) =
                http(cluster.api(*id), "POST", "/v1/groups", &[("Authorization", &auth)], Some(r#"{"group":"nope"}"#))
            else {
                return false;
            };
            match r.status {
                503 => refuses(cluster.api(*id)),
                307 => r.json()["leader"]["api"]
                    .as_str()
                    .is_some_and(|l| up.iter().any(|u| cluster.api(*u) == l) && refuses(l)),
                _ => false,
            }
        })
    });
    let short = TrackerClient::new(
        cluster.apis.clone(),
        tracker_client::RetryPolicy { budget_ms: 2_000, ..Default::default() },
    )
    .with_token(admin.token().map(String::from));
    let err = rt.block_on(short.create_group("no_quorum")).expect_err("no quorum, no write");
    assert_eq!(err.code(), "unavailable", "{err}");

    // They return: writes work again. A write that reached the leader before it noticed the
    // lost quorum sits in its log, uncommitted, and its client heard 503 or a timeout: an
    // unknown outcome, which may commit now (its retry would carry the same request id).
    // Everything acknowledged is there; nothing else appeared.
    for id in [leader, other, third] {
        cluster.start_node(id);
    }
    // Back once all five agree on a leader (three restarts and an election: on a starved
    // machine that can outlast one call's budget, so it is waited for as a condition).
    cluster.wait_stable_leader();
    rt.block_on(admin.create_group("recovered")).unwrap();
    let mut names = rt.block_on(group_names(&admin));
    names.retain(|n| n != "nope" && n != "no_quorum");
    assert_eq!(names, vec!["before", "recovered", "two_down"]);
    cluster.wait_converged(WAIT);
}

/// Every node SIGKILLed right after a burst of writes and restarted at once: the old leader may
/// resume leading in its term without an election (openraft 0.9), and its first reads must
/// still see every write acknowledged before the crash (AppState::linearizable's read index;
/// docs/RELIABILITY.md, "What the checker found, and what guards against it now").
#[test]
fn reads_right_after_a_whole_cluster_restart_see_every_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..4 {
        cluster.wait_stable_leader();
        // Writes in flight up to the kill: the ones acknowledged are the ones to look for.
        let names: Vec<String> = (0..40).map(|i| format!("r{round}_g{i}")).collect();
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writes = {
            let (admin, acked) = (admin.clone(), acked.clone());
            rt.spawn(async move {
                for n in names {
                    if admin.create_group(&n).await.is_ok() {
                        acked.lock().unwrap().push(n);
                    }
                }
            })
        };
        // Kill while writes are in flight: once this round has had an acknowledgement.
        wait_until("a write of this round acknowledged", WAIT, || !acked.lock().unwrap().is_empty());
        for id in cluster.ids() {
            cluster.kill(id);
        }
        // A write cut off by the kill has an unknown outcome: only the acknowledged ones count.
        writes.abort();
        let _ = rt.block_on(writes);
        acknowledged.extend(acked.lock().unwrap().drain(..));
        for id in cluster.ids() {
            cluster.start_node(id);
        }
        // The first read that succeeds after the restart.
        let seen = rt.block_on(group_names(&admin));
        let missing: Vec<&String> = acknowledged.iter().filter(|g| !seen.contains(g)).collect();
        assert!(missing.is_empty(), "round {round}: a read right after the restart missed {missing:?}");
    }
}
