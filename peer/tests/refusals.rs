//! Every refusal of the contract: its exit code, its error code, and the state unchanged.

use testkit::*;

#[test]
fn refusals_have_their_codes_and_change_nothing() {
    let cluster = Cluster::start(3);
    let (alice, bob) = team(&cluster, "dev_team");
    let eve = Peer::logged_in(&cluster, "eve", &[]);
    let (path, _) = alice.upload_random(cluster.dir.path(), "doc.pdf", 10_000, 3, "dev_team");

    let groups_before = alice.ok(&["list-groups"]);
    let files_before = alice.ok(&["list-files", "dev_team"]);
    let dest = cluster.dir.path().join("out");
    std::fs::create_dir_all(&dest).unwrap();
    let d = dest.to_str().unwrap();
    let p = path.to_str().unwrap();
    let long = "x".repeat(65);

    // (who, args, stdin, exit code, error code)
    let table: Vec<(&Peer, Vec<&str>, &str, i32, &str)> = vec![
        (&eve, vec!["login", "alice", "--password-stdin"], "wrong\n", 1, "bad_credentials"),
        (&eve, vec!["login", "nobody", "--password-stdin"], "wrong\n", 1, "bad_credentials"),
        (&eve, vec!["list-files", "dev_team"], "", 1, "not_member"),
        (&eve, vec!["upload", p, "dev_team"], "", 1, "not_member"),
        (&eve, vec!["download", "dev_team", "doc.pdf", d], "", 1, "not_member"),
        (&eve, vec!["list-requests", "dev_team"], "", 1, "not_owner"),
        (&bob, vec!["accept-request", "dev_team", "eve"], "", 1, "not_owner"),
        (&alice, vec!["accept-request", "dev_team", "eve"], "", 1, "no_such_request"),
        (&eve, vec!["register", "alice", "--password-stdin"], "pw\n", 1, "user_exists"),
        (&eve, vec!["create-group", "dev_team"], "", 1, "group_exists"),
        (&bob, vec!["join-group", "dev_team"], "", 1, "already_member"),
        (&eve, vec!["create-group", "../x"], "", 1, "invalid_name"),
        (&eve, vec!["create-group", "a/b"], "", 1, "invalid_name"),
        (&eve, vec!["create-group", ""], "", 1, "invalid_name"),
        (&eve, vec!["create-group", &long], "", 1, "invalid_name"),
        (&eve, vec!["register", "a/b", "--password-stdin"], "pw\n", 1, "invalid_name"),
        (&bob, vec!["download", "dev_team", "../x", d], "", 1, "invalid_name"),
        (&bob, vec!["download", "dev_team", "a/b", d], "", 1, "invalid_name"),
        (&bob, vec!["download", "dev_team", "..", d], "", 1, "invalid_name"),
        (&bob, vec!["stop-share", "dev_team", "../x"], "", 1, "invalid_name"),
        (&eve, vec!["join-group", "nope"], "", 1, "no_such_group"),
        (&bob, vec!["list-files", "nope"], "", 1, "no_such_group"),
        (&bob, vec!["download", "dev_team", "missing.bin", d], "", 1, "no_such_file"),
        (&bob, vec!["download", "nope", "doc.pdf", d], "", 1, "no_such_group"),
        // Usage: no password source.
        (&eve, vec!["login", "eve"], "", 2, "usage"),
    ];
    for (who, args, stdin, exit, code) in &table {
        let r = who.run_with_stdin(args, stdin);
        assert_eq!(r.code, *exit, "peer {args:?}: {} {}", r.stdout, r.stderr);
        assert_eq!(r.error_code(), *code, "peer {args:?}: {}", r.stdout);
        assert!(r.stderr.starts_with("error: "), "one error line on stderr: {:?}", r.stderr);
    }
    assert_eq!(alice.ok(&["list-groups"]), groups_before, "refusals changed the groups");
    assert_eq!(alice.ok(&["list-files", "dev_team"]), files_before, "refusals changed the files");
    assert!(std::fs::read_dir(&dest).unwrap().next().is_none(), "nothing was written to DEST");

    // Different content under the same name conflicts.
    let other_dir = cluster.dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let (other, _) = random_file(&other_dir, "doc.pdf", 10_000, 99);
    let r = bob.run(&["upload", other.to_str().unwrap(), "dev_team"]);
    assert_eq!((r.code, r.error_code().as_str()), (1, "file_conflict"), "{}", r.stderr);

    // No daemon for a HOME: exit 3.
    let nodaemon = Peer::new(&cluster, "nodaemon");
    nodaemon.register_and_login("carol");
    let r = nodaemon.run(&["upload", p, "dev_team"]);
    assert_eq!((r.code, r.error_code().as_str()), (3, "daemon_not_running"));
    assert!(r.stderr.contains("no peer daemon is running for"), "{}", r.stderr);
    let r = nodaemon.run(&["show-downloads"]);
    assert_eq!(r.code, 3);

    // Bad cluster file: exit 2.
    let r = eve.run(&["--cluster", "/nonexistent/cluster.toml", "list-groups"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // Logged out: unauthenticated.
    eve.ok(&["logout"]);
    let r = eve.run(&["list-groups"]);
    assert_eq!((r.code, r.error_code().as_str()), (1, "unauthenticated"));
}

#[test]
fn no_tracker_reachable_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = std::process::Command::new(peer_bin())
        .args(["--json", "--timeout", "1", "--tracker", &format!("127.0.0.1:{port}"), "list-groups"])
        .env("PEER_HOME", dir.path())
        .output()
        .unwrap();
    // Not logged in is checked first: log in needs the tracker.
    assert_eq!(out.status.code(), Some(1));
    let out = std::process::Command::new(peer_bin())
        .args(["--json", "--timeout", "1", "--tracker", &format!("127.0.0.1:{port}"), "login", "x", "--password-stdin"])
        .env("PEER_HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"pw\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "unavailable");
}
