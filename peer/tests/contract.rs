//! Parts of the peer's contract (docs/CONTRACT.md and docs/PROTOCOL.md) checked with real
//! processes: where options may go, `--home` / `PEER_HOME` / `PEER_TRACKERS`, the password
//! prompt, DEST as a file path, exit 2 on bad flags for every command. The piece server's error
//! codes and connection bounds are piece_server.rs.

use std::path::Path;
use std::process::{Command, Stdio};

use testkit::*;

/// `peer ARGS` with exactly the environment given (PEER_* cleared first), in `cwd`.
fn peer_in(cwd: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let mut cmd = Command::new(peer_bin());
    cmd.args(args).current_dir(cwd).env_remove("PEER_HOME").env_remove("PEER_CLUSTER").env_remove("PEER_TRACKERS");
    cmd.envs(env.iter().copied());
    Run::of(cmd, stdin)
}

#[test]
fn options_after_the_subcommand_home_and_the_tracker_environment() {
    let cluster = Cluster::start(3);
    let alice = Peer::new(&cluster, "alice");
    alice.register_and_login("alice");
    alice.ok(&["create-group", "dev_team"]);
    let empty = tempfile::tempdir().unwrap(); // a working directory with no cluster.toml
    let cwd = empty.path();
    let home = alice.home.to_str().unwrap();
    let other_home = cwd.join("other-home");
    let other = other_home.to_str().unwrap();
    let config = cluster.config.to_str().unwrap();
    let groups = |r: &Run| -> Vec<String> {
        assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
        r.json().as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap().to_string()).collect()
    };

    // Global options after the subcommand.
    let r = peer_in(cwd, &["list-groups", "--home", home, "--json", "--cluster", config], &[], "");
    assert_eq!(groups(&r), ["dev_team"]);
    // PEER_HOME alone, and --home over PEER_HOME.
    let r = peer_in(cwd, &["--json", "list-groups"], &[("PEER_HOME", home), ("PEER_CLUSTER", config)], "");
    assert_eq!(groups(&r), ["dev_team"]);
    let r =
        peer_in(cwd, &["--json", "list-groups", "--home", home], &[("PEER_HOME", other), ("PEER_CLUSTER", config)], "");
    assert_eq!(groups(&r), ["dev_team"], "--home wins over PEER_HOME");
    let r = peer_in(cwd, &["--json", "list-groups"], &[("PEER_HOME", other), ("PEER_CLUSTER", config)], "");
    assert_eq!(
        (r.code, r.error_code().as_str()),
        (1, "unauthenticated"),
        "PEER_HOME names another identity: {}",
        r.stderr
    );
    let r =
        peer_in(cwd, &["--json", "list-groups", "--home", other], &[("PEER_HOME", home), ("PEER_CLUSTER", config)], "");
    assert_eq!(
        (r.code, r.error_code().as_str()),
        (1, "unauthenticated"),
        "--home names another identity: {}",
        r.stderr
    );

    // PEER_TRACKERS: the api addresses, no cluster file anywhere.
    let trackers = cluster.apis.join(",");
    let r = peer_in(cwd, &["--json", "list-groups"], &[("PEER_HOME", home), ("PEER_TRACKERS", &trackers)], "");
    assert_eq!(groups(&r), ["dev_team"], "PEER_TRACKERS is enough");
    // Without it, ./cluster.toml is missing: a usage error.
    let r = peer_in(cwd, &["--json", "list-groups"], &[("PEER_HOME", home)], "");
    assert_eq!(r.code, 2, "no cluster file and no trackers: {} {}", r.stdout, r.stderr);
    // --tracker wins over PEER_TRACKERS (a dead address there would fail).
    let dead = format!("127.0.0.1:{}", free_port());
    let r = peer_in(
        cwd,
        &["--json", "list-groups", "--tracker", &trackers],
        &[("PEER_HOME", home), ("PEER_TRACKERS", &dead)],
        "",
    );
    assert_eq!(groups(&r), ["dev_team"]);
}

#[test]
fn no_password_source_is_a_usage_error() {
    let cluster = Cluster::start(3);
    let p = Peer::new(&cluster, "nopw");
    std::fs::create_dir_all(&p.home).unwrap();
    for args in [["register", "carol"], ["login", "carol"]] {
        // stdin is neither a terminal nor chosen with --password-stdin: exit 2, nothing registered.
        let out = p.command().arg("--json").args(args).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "peer {args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
    // carol was not registered by the refused command.
    let r = p.run_with_stdin(&["register", "carol", "--password-stdin"], "carol-password\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn bad_flags_are_exit_2_for_every_command() {
    let home = tempfile::tempdir().unwrap();
    let commands: &[&[&str]] = &[
        &["daemon"],
        &["register", "u"],
        &["login", "u"],
        &["logout"],
        &["create-group", "g"],
        &["join-group", "g"],
        &["leave-group", "g"],
        &["list-groups"],
        &["list-requests", "g"],
        &["accept-request", "g", "u"],
        &["upload", "/tmp/x", "g"],
        &["download", "g", "n", "/tmp"],
        &["list-files", "g"],
        &["show-downloads"],
        &["stop-share", "g", "n"],
        &["shell"],
        &["remove-member", "g", "u"],
        &["cancel", "g", "n"],
        &["pause", "g", "n"],
        &["resume", "g", "n"],
        &["forget", "g", "n"],
        &["list-shares"],
        &["create_group", "g"],
        &["download_file", "g", "n", "/tmp"],
    ];
    for cmd in commands {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push("--no-such-flag");
        let r = peer_in(home.path(), &args, &[("PEER_HOME", home.path().to_str().unwrap())], "");
        assert_eq!(r.code, 2, "peer {args:?}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains("--no-such-flag"), "peer {args:?} names the bad flag: {}", r.stderr);
        // A missing or extra argument too.
        let mut extra: Vec<&str> = cmd.to_vec();
        extra.extend(["x1", "x2", "x3", "x4"]);
        let r = peer_in(home.path(), &extra, &[("PEER_HOME", home.path().to_str().unwrap())], "");
        assert_eq!(r.code, 2, "peer {extra:?}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains("x1"), "peer {extra:?} names the extra argument: {}", r.stderr);
    }
    let r = peer_in(home.path(), &["no-such-command"], &[], "");
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = peer_in(home.path(), &["download", "g"], &[], "");
    assert_eq!(r.code, 2, "missing arguments: {}", r.stderr);
    // Missing arguments of the commands that manage downloads and members.
    for cmd in [&["remove-member", "g"][..], &["cancel", "g"], &["pause"], &["resume", "g"], &["forget"]] {
        let r = peer_in(home.path(), cmd, &[("PEER_HOME", home.path().to_str().unwrap())], "");
        assert_eq!(r.code, 2, "peer {cmd:?}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains("required"), "peer {cmd:?} says what is missing: {}", r.stderr);
    }
}

/// Every regular file under `dir` (recursively), with its bytes.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let files = walk(dir).into_iter().filter(|(_, meta)| meta.is_file());
    files
        .map(|(p, _)| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn a_password_never_reaches_a_file_of_the_home_or_the_daemons_log() {
    let cluster = Cluster::start(3);
    let mut p = Peer::new(&cluster, "pw");
    p.start_daemon();
    // Distinct, unlikely byte strings: a register, a wrong login, a good login, and the shell's
    // create_user and login lines (another user, the same HOME).
    let (pw, wrong, shell_pw) = ("Pw-4f1d9c-register", "Pw-77e0ab-wrong", "Pw-c3a5e2-shell");
    let r = p.run_with_stdin(&["register", "dora", "--password-stdin"], &format!("{pw}\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = p.run_with_stdin(&["login", "dora", "--password-stdin"], &format!("{wrong}\n"));
    assert_eq!((r.code, r.error_code().as_str()), (1, "bad_credentials"), "{}", r.stderr);
    let r = p.run_with_stdin(&["login", "dora", "--password-stdin"], &format!("{pw}\n"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    p.ok(&["create-group", "pw_team"]);
    let r = p.run_with_stdin(&["shell"], &format!("create_user edna {shell_pw}\nlogin edna {shell_pw}\nquit\n"));
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    p.ok(&["join-group", "pw_team"]);
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(!text.contains(shell_pw), "the shell echoed the password on {what}: {text}");
    }

    // The daemon has been asked to do things, and logged them, under this HOME.
    let home_files = files_under(&p.home);
    let names: Vec<String> =
        home_files.iter().map(|(f, _)| f.strip_prefix(&p.home).unwrap().display().to_string()).collect();
    assert!(names.iter().any(|n| n == "session.json"), "the search saw the session: {names:?}");
    assert!(names.iter().any(|n| n == "daemon.log"), "the search saw the daemon's log: {names:?}");
    assert!(!p.daemon_log().is_empty(), "the daemon logged something");
    assert!(p.token().is_some(), "edna's session is in session.json");
    for (file, bytes) in &home_files {
        for secret in [pw, wrong, shell_pw] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} is in {}",
                file.display()
            );
        }
    }
}

#[test]
fn dest_given_as_a_file_path_is_where_the_file_lands() {
    let cluster = Cluster::start(3);
    let (alice, bob) = team(&cluster, "dev_team");
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "report.pdf", 1024 * 1024 + 7, 5, "dev_team");
    let dir = cluster.dir.path().join("bob-files");
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("other-name.pdf");
    let d = bob.ok(&["download", "dev_team", "report.pdf", target.to_str().unwrap()]);
    assert_eq!(d["ok"], true);
    assert_eq!(file_sha1(&target), sha1);
    assert!(!dir.join("report.pdf").exists(), "nothing under NAME when DEST is a file path");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["other-name.pdf"], "only the file itself, no .part left");
    assert_eq!(bob.downloads()[0]["dest"], target.to_str().unwrap());
}
