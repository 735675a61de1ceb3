//! The original system's example workflow, end to end through the CLI and through the shell,
//! on a real three-node tracker cluster and real peer daemons.

use testkit::*;

use std::time::Duration;

#[test]
fn example_workflow_through_the_cli() {
    let cluster = Cluster::start(3);
    let (alice, bob) = team(&cluster, "dev_team");
    let (path, sha1) = random_file(cluster.dir.path(), "document.pdf", 3 * 512 * 1024 + 1234, 1);

    let up = alice.ok(&["upload", path.to_str().unwrap(), "dev_team"]);
    assert_eq!(up["ok"], true);
    assert_eq!(up["pieces"], 4);
    assert_eq!(up["sha1"], sha1.as_str());

    let files = bob.ok(&["list-files", "dev_team"]);
    assert_eq!(
        files,
        serde_json::json!([{"name": "document.pdf", "size": 3 * 512 * 1024 + 1234, "pieces": 4, "sha1": sha1, "sharers": 1}])
    );

    let dest = cluster.dir.path().join("bob-downloads");
    std::fs::create_dir_all(&dest).unwrap();
    let d = bob.ok(&["download", "dev_team", "document.pdf", dest.to_str().unwrap()]);
    assert_eq!(d["ok"], true);
    let got = dest.join("document.pdf");
    assert_eq!(file_sha1(&got), sha1);
    assert!(!dest.join("document.pdf.part").exists(), "the .part file is renamed when complete");

    // The downloader shares the file now.
    let files = alice.ok(&["list-files", "dev_team"]);
    assert_eq!(files[0]["sharers"], 2);
    let rows = bob.downloads();
    assert_eq!(rows[0]["state"], "complete");
    assert_eq!(rows[0]["bytes_done"], rows[0]["size"]);
    assert_eq!(rows[0]["dest"], got.to_str().unwrap());

    // The groups as each sees them.
    let groups = bob.ok(&["list-groups"]);
    assert_eq!(
        groups,
        serde_json::json!([{"group": "dev_team", "owner": "alice", "members": 2, "member": true, "pending": false}])
    );

    // Leaving hands the group over; stop-share keeps the file listed.
    bob.ok(&["stop-share", "dev_team", "document.pdf"]);
    assert!(got.exists(), "stop-share keeps the local copy");
    alice.ok(&["stop_share", "dev_team", "document.pdf"]);
    let files = bob.ok(&["list_files", "dev_team"]);
    assert_eq!(files[0]["sharers"], 0);
    let r = bob.run(&["download", "dev_team", "document.pdf", cluster.dir.path().join("again").to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.error_code(), "no_peers");

    let left = alice.ok(&["leave-group", "dev_team"]);
    assert_eq!(left["new_owner"], "bob");
    let left = bob.ok(&["leave_group", "dev_team"]);
    assert_eq!(left["group_deleted"], true);
}

/// One JSON value a line: what a `peer --json shell` printed for each command.
fn json_lines(r: &Run) -> Vec<serde_json::Value> {
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?} in {:?}", r.stdout)))
        .collect()
}

/// `peer shell` without --json (the human words), fed `script`: (exit code, stdout, stderr).
fn shell_human(p: &Peer, script: &str) -> (i32, String, String) {
    let mut cmd = p.command();
    cmd.arg("shell");
    let r = Run::of(cmd, script);
    (r.code, r.stdout, r.stderr)
}

#[test]
fn example_workflow_through_the_shell() {
    let cluster = Cluster::start(3);
    let mut alice = Peer::new(&cluster, "alice");
    let mut bob = Peer::new(&cluster, "bob");
    // Alice serves 300 ms a piece: notes.bin (16 pieces) takes seconds, long enough to see [D].
    alice.daemon_args = vec!["--serve-delay-ms".into(), "300".into()];
    alice.start_daemon();
    bob.start_daemon();
    let (path, sha1) = random_file(cluster.dir.path(), "notes.bin", 8 * 1024 * 1024, 2);
    let dest = cluster.dir.path().join("dl");
    std::fs::create_dir_all(&dest).unwrap();

    let script = format!(
        "create_user alice password123\nlogin alice password123\ncreate_group dev_team\nupload_file {} dev_team\nlist_files dev_team\nquit\n",
        path.display()
    );
    let r = alice.run_with_stdin(&["shell"], &script);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.is_empty(), "no errors expected: {}", r.stderr);
    let out = json_lines(&r);
    assert_eq!(out.len(), 5, "one answer per command: {out:?}");
    for (i, v) in out[..4].iter().enumerate() {
        assert_eq!(v["ok"], true, "command {i}: {v}");
    }
    assert_eq!(out[3]["sha1"], sha1.as_str(), "{}", out[3]);
    assert_eq!(
        out[4],
        serde_json::json!([{"name": "notes.bin", "size": 8 * 1024 * 1024, "pieces": 16, "sha1": sha1, "sharers": 1}])
    );

    let r = bob.run_with_stdin(&["shell"], "create_user bob password456\nlogin bob password456\njoin_group dev_team\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = json_lines(&r);
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out.iter().all(|v| v["ok"] == true), "{out:?}");

    let r = alice.run_with_stdin(&["shell"], "list_requests dev_team\naccept_request dev_team bob\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = json_lines(&r);
    assert_eq!(out, vec![serde_json::json!([{"user": "bob"}]), out[1].clone()], "{out:?}");
    assert_eq!(out[1]["ok"], true, "accept_request succeeded: {}", out[1]);
    let groups = bob.ok(&["list-groups"]);
    assert_eq!(groups[0]["member"], true, "bob is a member after accept_request: {groups}");
    assert_eq!(groups[0]["members"], 2, "{groups}");

    // A refused line: its error is printed, the shell goes on, and the exit code says so.
    let r = alice.run_with_stdin(&["shell"], "accept_request dev_team bob\nlist_groups\n");
    assert_eq!(r.code, 1, "a refused command makes the shell exit 1: {} {}", r.stdout, r.stderr);
    let out = json_lines(&r);
    assert_eq!(out[0]["error"]["code"], "already_member", "{out:?}");
    assert_eq!(out[1][0]["group"], "dev_team", "the shell went on after the refusal: {out:?}");
    assert_eq!(r.stderr.lines().filter(|l| l.starts_with("error: ")).count(), 1, "{}", r.stderr);
    // The last failure decides: usage (2) after a refusal, a refusal (1) after a usage error.
    let r = alice.run_with_stdin(&["shell"], "accept_request dev_team bob\nfrobnicate\nlist_groups\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = alice.run_with_stdin(&["shell"], "accept_request dev_team\naccept_request dev_team bob\n");
    assert_eq!(r.code, 1, "{}", r.stderr);
    let (code, _, err) = shell_human(&alice, "list_groups\nquit\n");
    assert_eq!(code, 0, "{err}");

    // Human output for show_downloads: [D]/[C]/[F] [group] name.
    let script = format!("download_file dev_team notes.bin {}/\nshow_downloads\n", dest.display());
    let (code, text, err) = shell_human(&bob, &script);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("[D] [dev_team] notes.bin"), "downloading: {text}");
    let row = bob.wait_download("notes.bin", Duration::from_secs(60));
    assert_eq!(row["state"], "complete", "{row}");
    let (code, text, err) = shell_human(&bob, "show_downloads\nquit\n");
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("[C] [dev_team] notes.bin"), "{text}");
    assert_eq!(file_sha1(&dest.join("notes.bin")), sha1);

    // A download that fails (its only sharer sends a wrong piece list) shows as [F].
    let carol = Peer::member(&cluster, "carol", "dev_team", &alice, &["--serve-bad-piece-list", "corrupt"]);
    carol.upload_random(&carol.home, "bad.bin", 2 * 1024 * 1024, 3, "dev_team");
    let script = format!("download_file dev_team bad.bin {}/\n", dest.display());
    let r = bob.run_with_stdin(&["shell"], &script);
    assert_eq!(r.code, 0, "the detached download starts: {}", r.stderr);
    let row = bob.wait_download("bad.bin", Duration::from_secs(60));
    assert_eq!(row["state"], "failed", "{row}");
    let (code, text, err) = shell_human(&bob, "show_downloads\n");
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("[F] [dev_team] bad.bin") && text.contains("[C] [dev_team] notes.bin"), "{text}");
}
