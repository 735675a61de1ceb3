//! Shares follow the session: logout pauses them, login resumes them, and a restarted daemon
//! (on a new address) announces itself again and keeps serving.

use std::time::Duration;

use testkit::*;

#[test]
fn shares_pause_on_logout_and_resume_on_login_and_after_a_daemon_restart() {
    let cluster = Cluster::start(3);
    let (mut alice, bob) = team(&cluster, "team");
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "notes.bin", 2 * 1024 * 1024 + 5, 51, "team");
    let sharers = || bob.ok(&["list-files", "team"])[0]["sharers"].as_u64().unwrap();
    assert_eq!(sharers(), 1);
    let mut n = 0;
    let mut download = |expect: &str| {
        n += 1;
        let dest = cluster.dir.path().join(format!("dl-{n}"));
        std::fs::create_dir_all(&dest).unwrap();
        let r = bob.run(&["download", "team", "notes.bin", dest.to_str().unwrap()]);
        if expect == "ok" {
            assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
            assert_eq!(file_sha1(&dest.join("notes.bin")), sha1);
            // Bob shares it now; take him out again so only Alice's state matters.
            bob.ok(&["stop-share", "team", "notes.bin"]);
        } else {
            assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
            assert_eq!(r.error_code(), expect);
        }
    };

    // Logout pauses Alice's share: nobody to download from.
    alice.ok(&["logout"]);
    assert_eq!(sharers(), 0);
    download("no_peers");

    // Login resumes it.
    let r = alice.run_with_stdin(&["login", "alice", "--password-stdin"], "alice-password\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sharers(), 1);
    download("ok");

    // A restarted daemon listens on a new port, announces it, and serves its shares again.
    alice.kill_daemon();
    alice.start_daemon();
    let announced = |n: usize| move |p: &Peer| p.daemon_log().matches("announced to the tracker").count() >= n;
    let twice = announced(2);
    wait_until("alice's new address to be announced", Duration::from_secs(20), || twice(&alice));
    download("ok");

    // Logged out while the daemon is down: after a restart the share stays paused.
    alice.kill_daemon();
    alice.ok(&["logout"]);
    alice.start_daemon();
    assert_eq!(sharers(), 0);
    download("no_peers");
}
