//! `peer status`: who is logged in, HOME's daemon, the tracker's leader, shares and downloads;
//! with and without a daemon and a tracker, always exit 0.

use std::time::Duration;

use testkit::*;

/// The CLI without --json: what a person reads.
fn human(p: &Peer, args: &[&str]) -> Run {
    let mut cmd = p.command();
    cmd.args(args);
    Run::of(cmd, "")
}

#[test]
fn status_says_who_is_logged_in_what_runs_and_which_node_leads() {
    let cluster = Cluster::start(3);

    // A fresh HOME: nobody logged in, no daemon; the tracker answers.
    let fresh = Peer::new(&cluster, "fresh");
    let v = fresh.ok(&["status"]);
    assert!(v["user"].is_null() && v["session_valid"].is_null(), "{v}");
    assert_eq!(v["daemon"]["running"], false, "{v}");
    assert!(v["shares"].is_null() && v["downloads"].is_null(), "{v}");
    assert_eq!(v["tracker"]["answering"], 3, "{v}");
    let leader = v["tracker"]["leader"].as_u64().unwrap_or_else(|| panic!("a leader: {v}"));
    let leader_api = v["tracker"]["leader_api"].as_str().unwrap().to_string();
    assert!(v["tracker"]["nodes"].as_array().unwrap().iter().any(|n| n == leader_api.as_str()), "{v}");
    let r = human(&fresh, &["status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for line in [
        "user       not logged in (run: peer login USER)",
        "daemon     not running (start it with: peer daemon)",
        &format!("tracker    node {leader} leads ({leader_api}); 3 of 3 node(s) answer"),
    ] {
        assert!(r.stdout.contains(line), "{line:?} in:\n{}", r.stdout);
    }

    // Logged in, the daemon running and sharing one file, listed by the tracker.
    let alice = Peer::owner(&cluster, "alice", "dev_team", &[]);
    alice.upload_random(cluster.dir.path(), "doc.pdf", 10_000, 1, "dev_team");
    wait_until("status to show the address the tracker lists", Duration::from_secs(15), || {
        alice.ok(&["status"])["daemon"]["listed_as"].is_string()
    });
    let v = alice.ok(&["status"]);
    assert_eq!((v["user"].as_str(), v["session_valid"].as_bool()), (Some("alice"), Some(true)), "{v}");
    let d = &v["daemon"];
    assert_eq!(d["running"], true, "{v}");
    assert!(d["pid"].as_u64().is_some_and(|p| p > 0), "{v}");
    let listen = d["listen"].as_str().unwrap();
    let port = |a: &str| a.rsplit_once(':').unwrap().1.to_string();
    assert_eq!(port(d["listed_as"].as_str().unwrap()), port(listen), "the tracker lists the port it listens on: {v}");
    assert_eq!(v["shares"], 1, "{v}");
    assert_eq!(v["downloads"], serde_json::json!({"downloading": 0, "paused": 0, "complete": 0, "failed": 0}));
    let r = human(&alice, &["status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for line in [
        "user       alice (logged in)".to_string(),
        format!("daemon     running (pid {}), listening on {listen}; the tracker lists it at ", d["pid"]),
        "shares     1".to_string(),
        "downloads  0 downloading, 0 paused, 0 complete, 0 failed".to_string(),
    ] {
        assert!(r.stdout.contains(&line), "{line:?} in:\n{}", r.stdout);
    }

    // No tracker answers: said so, still exit 0, and the daemon's part stands.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let r = human(&alice, &["--tracker", &nowhere, "status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("tracker    no node answers ({nowhere})")), "{}", r.stdout);
    assert!(r.stdout.contains("the tracker could not confirm it"), "{}", r.stdout);
    let v = alice.ok(&["--tracker", &nowhere, "status"]);
    assert_eq!((v["tracker"]["answering"].as_u64(), v["tracker"]["leader"].is_null()), (Some(0), true), "{v}");
    assert!(v["session_valid"].is_null() && v["daemon"]["running"] == true, "{v}");

    // Logged out: nobody, and the daemon still runs.
    alice.ok(&["logout"]);
    let v = alice.ok(&["status"]);
    assert!(v["user"].is_null() && v["daemon"]["running"] == true, "{v}");
}
