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
    assert_eq!(files, serde_json::json!([{"name": "document.pdf", "size": 3 * 512 * 1024 + 1234, "pieces": 4, "sha1": sha1, "sharers": 1}]));

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
    assert_eq!(groups, serde_json::json!([{"group": "dev_team", "owner": "alice", "members": 2, "member": true, "pending": false}]));

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

#[test]
fn example_workflow_through_the_shell() {
    let cluster = Cluster::start(3);
    let mut alice = Peer::new(&cluster, "alice");
    let mut bob = Peer::new(&cluster, "bob");
    alice.start_daemon();
    bob.start_daemon();
    let (path, sha1) = random_file(cluster.dir.path(), "notes.txt", 700_000, 2);
    let dest = cluster.dir.path().join("dl");
    std::fs::create_dir_all(&dest).unwrap();

    let script = format!(
        "create_user alice password123\nlogin alice password123\ncreate_group dev_team\nupload_file {} dev_team\nlist_files dev_team\nquit\n",
        path.display()
    );
    let r = alice.run_with_stdin(&["shell"], &script);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.is_empty(), "no errors expected: {}", r.stderr);

    let script = "create_user bob password456\nlogin bob password456\njoin_group dev_team\n";
    let r = bob.run_with_stdin(&["shell"], script);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = alice.run_with_stdin(&["shell"], "list_requests dev_team\naccept_request dev_team bob\n");
    assert!(r.stdout.contains("\"user\":\"bob\""), "{}", r.stdout);

    // Human output for show_downloads: [D]/[C]/[F] [group] name.
    let script = format!("download_file dev_team notes.txt {}/\n", dest.display());
    let r = bob.run_with_stdin(&["shell"], &script);
    assert_eq!(r.code, 0, "{}", r.stderr);
    bob.wait_download("notes.txt", Duration::from_secs(30));
    let out = std::process::Command::new(peer_bin())
        .args(["shell"])
        .env("PEER_HOME", &bob.home)
        .env("PEER_CLUSTER", &bob.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"show_downloads\nquit\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[C] [dev_team] notes.txt"), "{text}");
    assert_eq!(file_sha1(&dest.join("notes.txt")), sha1);
}
