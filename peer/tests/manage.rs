//! Downloads a person can manage, with real processes: cancel (the `.part` and the row go, a
//! waiting `peer download` exits 1), Ctrl-C on a blocking download (exit 130, the daemon goes
//! on), pause (nothing more is fetched, the `.part` stays, a restart keeps it paused) and
//! resume, forget, the default and `--all` views of show-downloads, list-shares, and the help
//! of the new commands. The sharer serves slowly (`--serve-delay-ms`, a hidden test flag) so
//! that a download stays under way while it is managed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::*;

const MIB: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(120);

/// `peer ARGS` as a person runs it (no --json).
fn human(p: &Peer, args: &[&str]) -> Run {
    Run::from(p.command().args(args).stdin(Stdio::null()).output().unwrap())
}

/// A blocking `peer --json download GROUP NAME DEST`, running in the background.
fn spawn_download(p: &Peer, group: &str, name: &str, dest: &Path) -> Child {
    p.command()
        .args(["--json", "download", group, name, dest.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most `timeout`) for `child` to exit; how it ended.
fn wait_exit(mut child: Child, timeout: Duration) -> Run {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the blocking download did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Run::from(child.wait_with_output().unwrap())
}

/// Whether process `pid` catches SIGINT: its `/proc/PID/status` `SigCgt` mask has the bit.
fn catches_sigint(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGINT - 1)) != 0)
}

/// Waits until a blocking `peer download` follows its download: its Ctrl-C handler is installed
/// only when it enters the wait loop (after the daemon took the download and answered its first
/// watch; cli/files.rs `follow`), and nothing else in that CLI catches SIGINT. Its progress bar
/// is drawn on a terminal only, so its stderr says nothing here to wait for.
fn wait_following(child: &mut Child) {
    let pid = child.id();
    wait_until("the blocking download to enter its wait loop (SIGINT caught)", TIMEOUT, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the blocking download exited before following its download: {status:?}");
        }
        catches_sigint(pid)
    });
}

/// `Run::refused`, with its one line on stderr.
fn refused(r: &Run, code: &str) -> String {
    let msg = r.refused(code);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    msg
}

#[test]
fn cancel_deletes_the_part_and_the_row_and_ends_a_waiting_download() {
    let cluster = Cluster::start(3);
    // 64 pieces at 150 ms from one sharer: about 10 s of download.
    let (alice, bob) = slow_team(&cluster, "team", 150);
    alice.upload_random(cluster.dir.path(), "big.bin", 32 * MIB, 41, "team");
    let dest = cluster.dir.path().join("bob-dl");
    std::fs::create_dir_all(&dest).unwrap();
    let part = dest.join("big.bin.part");

    // A blocking download, interrupted: exit 130, one line saying the daemon goes on.
    let mut child = spawn_download(&bob, "team", "big.bin", &dest);
    let row = bob.wait_progress("big.bin", 0.05, TIMEOUT);
    // The row shows the new fields; rate and sharers once bytes move.
    assert!(row.get("rate_bytes_per_s").is_some() && row.get("peers").is_some(), "{row}");
    wait_following(&mut child);
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let Run { code, stdout, stderr } = wait_exit(child, Duration::from_secs(10));
    assert_eq!(code, 130, "Ctrl-C exits 130: {stdout} {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    assert!(lines[0].contains("daemon continues") && lines[0].contains("peer cancel team big.bin"), "{stderr}");
    let row = bob.download_row("big.bin").unwrap();
    assert_eq!(row["state"], "downloading", "the daemon goes on after Ctrl-C: {row}");
    wait_until("a rate and a sharer to show", TIMEOUT, || {
        let r = bob.download_row("big.bin").unwrap();
        assert_eq!(r["state"], "downloading", "{r}");
        r["rate_bytes_per_s"].as_u64().unwrap() > 0 && r["peers"].as_u64().unwrap() >= 1
    });
    let Run { code, stdout: text, stderr: err } = human(&bob, &["show-downloads"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("[D] [team] big.bin") && text.contains('%'), "{text}");
    assert!(text.contains("/s") && text.contains("sharer") && text.contains(dest.to_str().unwrap()), "{text}");

    // forget refuses an active download.
    let msg = refused(&bob.run(&["forget", "team", "big.bin"]), "no_such_file");
    assert!(msg.contains("peer cancel team big.bin"), "says to cancel instead: {msg}");

    // Another blocking download of it waits for the same download; cancel ends it with exit 1.
    let mut waiting = spawn_download(&bob, "team", "big.bin", &dest);
    wait_following(&mut waiting);
    assert!(part.exists(), "the .part is there before the cancel");
    let before = bob.download_row("big.bin").unwrap();
    assert!(before["bytes_done"].as_u64() < before["size"].as_u64(), "still under way: {before}");
    let c = bob.ok(&["cancel", "team", "big.bin"]);
    assert_eq!(c["dests"], serde_json::json!([dest.join("big.bin").to_str().unwrap()]), "{c}");
    let Run { code, stdout, stderr } = wait_exit(waiting, Duration::from_secs(10));
    assert_eq!(code, 1, "the waiting download ends: {stdout} {stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["error"]["code"], "download_failed", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("cancelled"), "{v}");
    assert!(stderr.contains("cancelled"), "{stderr}");

    assert!(std::fs::symlink_metadata(&part).is_err(), "the .part is deleted");
    assert!(!dest.join("big.bin").exists(), "no file appears");
    assert!(bob.download_row("big.bin").is_none(), "the row is gone: {:?}", bob.downloads());
    let all = human(&bob, &["show-downloads", "--all"]).stdout;
    assert!(!all.contains("big.bin"), "{all}");
    // Nothing is fetched any more: the .part does not come back.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(std::fs::symlink_metadata(&part).is_err(), "nothing writes the .part after the cancel");
    assert!(bob.daemon_log().contains("download cancelled"));

    // Unknown downloads: exit 1, no_such_file.
    let msg = refused(&bob.run(&["cancel", "team", "big.bin"]), "no_such_file");
    assert!(msg.contains("no download of big.bin in team"), "{msg}");
    refused(&bob.run(&["cancel", "team", "nothing.bin"]), "no_such_file");
    refused(&bob.run(&["pause", "team", "nothing.bin"]), "no_such_file");
    refused(&bob.run(&["resume", "team", "nothing.bin"]), "no_such_file");
    refused(&bob.run(&["forget", "team", "nothing.bin"]), "no_such_file");
}

#[test]
fn pause_keeps_the_part_survives_a_restart_and_resume_completes() {
    let cluster = Cluster::start(3);
    // 64 pieces at 120 ms: about 8 s of download; paused after 20%.
    let (alice, mut bob) = slow_team(&cluster, "team", 120);
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "image.iso", 32 * MIB, 42, "team");
    let dest = cluster.dir.path().join("bob-dl");
    bob.start_download("team", "image.iso", &dest);
    bob.wait_progress("image.iso", 0.2, TIMEOUT);

    let p = bob.ok(&["pause", "team", "image.iso"]);
    assert_eq!(p["ok"], true);
    assert_eq!(p["dests"].as_array().unwrap().len(), 1, "{p}");
    let row = bob.download_row("image.iso").unwrap();
    assert_eq!(row["state"], "paused", "{row}");
    assert_eq!(row["rate_bytes_per_s"], 0, "{row}");
    assert_eq!(row["peers"], 0, "connections closed: {row}");
    let paused_at = row["bytes_done"].as_u64().unwrap();
    assert!(paused_at > 0 && paused_at < row["size"].as_u64().unwrap(), "{row}");
    // Nothing more is fetched while paused.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(400));
        let r = bob.download_row("image.iso").unwrap();
        assert_eq!((r["state"].as_str(), r["bytes_done"].as_u64()), (Some("paused"), Some(paused_at)), "{r}");
    }
    assert!(dest.join("image.iso.part").exists(), "the .part stays");
    assert!(!dest.join("image.iso").exists());
    let Run { code, stdout: text, stderr: err } = human(&bob, &["show-downloads"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("[P] [team] image.iso") && text.contains("paused"), "{text}");
    let r = bob.run_with_stdin(&["shell"], "pause team image.iso\n");
    assert_eq!(r.code, 0, "pausing a paused download is fine: {}", r.stderr);
    assert!(r.json()["already_paused"].is_array(), "{}", r.stdout);

    // A restart keeps it paused, with its bytes.
    bob.kill_daemon();
    bob.start_daemon();
    let row = bob.download_row("image.iso").unwrap();
    assert_eq!(row["state"], "paused", "still paused after a restart: {row}");
    assert_eq!(row["bytes_done"].as_u64(), Some(paused_at), "{row}");
    std::thread::sleep(Duration::from_millis(1500));
    let row = bob.download_row("image.iso").unwrap();
    assert_eq!((row["state"].as_str(), row["bytes_done"].as_u64()), (Some("paused"), Some(paused_at)), "{row}");
    let msg = refused(&bob.run(&["forget", "team", "image.iso"]), "no_such_file");
    assert!(msg.contains("paused") && msg.contains("peer cancel team image.iso"), "{msg}");

    // Resume: from the verified pieces, to the right file.
    let log_before = bob.daemon_log().len();
    let r = bob.ok(&["resume", "team", "image.iso"]);
    assert_eq!(r["dests"].as_array().unwrap().len(), 1, "{r}");
    let row = bob.wait_download("image.iso", TIMEOUT);
    assert_eq!(row["state"], "complete", "{row}");
    assert_eq!(file_sha1(&dest.join("image.iso")), sha1);
    assert!(!dest.join("image.iso.part").exists());
    let (line, verified) = bob.resume_line(log_before);
    assert!(
        verified * 512 * 1024 >= paused_at,
        "resumed from the verified pieces ({verified}, {paused_at} bytes): {line}"
    );
    // Resuming or pausing a complete download is refused and says so.
    let msg = refused(&bob.run(&["resume", "team", "image.iso"]), "no_such_file");
    assert!(msg.contains("complete"), "{msg}");
    refused(&bob.run(&["pause", "team", "image.iso"]), "no_such_file");
    refused(&bob.run(&["cancel", "team", "image.iso"]), "no_such_file");
}

#[test]
fn forget_the_default_view_and_list_shares() {
    let cluster = Cluster::start(3);
    let (alice, bob) = team(&cluster, "dev_team");
    let (a, a_sha1) = alice.upload_random(cluster.dir.path(), "a.bin", 3 * 512 * 1024 + 5, 43, "dev_team");
    let dest = cluster.dir.path().join("bob-dl");
    std::fs::create_dir_all(&dest).unwrap();
    bob.ok(&["download", "dev_team", "a.bin", dest.to_str().unwrap()]);
    std::fs::create_dir_all(&bob.home).unwrap();
    let (b, b_sha1) = bob.upload_random(&bob.home, "b.bin", 1000, 44, "dev_team");

    // Complete downloads are hidden by default, shown with --all; --json lists them always.
    let Run { code, stdout: text, stderr: err } = human(&bob, &["show-downloads"]);
    assert_eq!(code, 0, "{err}");
    assert!(!text.contains("[C]") && text.contains("no active downloads") && text.contains("--all"), "{text}");
    let text = human(&bob, &["show_downloads", "--all"]).stdout;
    assert!(text.contains("[C] [dev_team] a.bin") && text.contains(dest.join("a.bin").to_str().unwrap()), "{text}");
    assert_eq!(bob.download_row("a.bin").unwrap()["state"], "complete");

    // list-shares: the uploaded file and the downloaded one, with their paths.
    let shares = bob.ok(&["list-shares"]);
    let dl = dest.join("a.bin");
    let size_a = std::fs::metadata(&a).unwrap().len();
    assert_eq!(
        shares,
        serde_json::json!([
            {"group": "dev_team", "name": "a.bin", "size": size_a, "sha1": a_sha1, "path": dl.to_str().unwrap()},
            {"group": "dev_team", "name": "b.bin", "size": 1000, "sha1": b_sha1, "path": b.to_str().unwrap()},
        ])
    );
    assert_eq!(bob.ok(&["list_shares"]), shares, "the snake_case alias");
    let Run { code, stdout: text, stderr: err } = human(&bob, &["list-shares"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("dev_team") && text.contains(dl.to_str().unwrap()) && text.contains(b.to_str().unwrap()));
    let text = human(&alice, &["list-shares"]).stdout;
    assert!(text.contains(a.to_str().unwrap()) && !text.contains("b.bin"), "{text}");
    let r = bob.run_with_stdin(&["shell"], "list_shares\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json(), shares);

    // forget drops the complete row; the file stays, and stays shared.
    let f = bob.ok(&["forget", "dev_team", "a.bin"]);
    assert_eq!(f["dests"], serde_json::json!([dl.to_str().unwrap()]));
    assert!(bob.download_row("a.bin").is_none(), "{:?}", bob.downloads());
    assert_eq!(file_sha1(&dl), a_sha1, "the file stays");
    assert_eq!(bob.ok(&["list-shares"]), shares, "and stays shared");
    let text = human(&bob, &["show-downloads", "--all"]).stdout;
    assert_eq!(text.trim(), "no downloads");
    let msg = refused(&bob.run(&["forget", "dev_team", "a.bin"]), "no_such_file");
    assert!(msg.contains("no download of a.bin in dev_team"), "{msg}");
    // The shell's words.
    let r = bob.run_with_stdin(&["shell"], "forget dev_team a.bin\ncancel dev_team a.bin\npause dev_team\n");
    assert_eq!(r.code, 2, "the last line was a usage error: {}", r.stderr);
    assert_eq!(r.stderr.lines().filter(|l| l.starts_with("error: ")).count(), 3, "{}", r.stderr);
}

#[test]
fn help_of_the_new_commands_describes_their_arguments() {
    let home = tempfile::tempdir().unwrap();
    let help = |args: &[&str]| -> String {
        let out = Command::new(peer_bin()).args(args).env("PEER_HOME", home.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "peer {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for cmd in ["cancel", "pause", "resume", "forget"] {
        let h = help(&[cmd, "--help"]);
        assert!(h.contains("<GROUP>") && h.contains("<NAME>"), "peer {cmd} --help: {h}");
        assert!(h.contains("The group of the download"), "GROUP is described: {h}");
        assert!(h.contains("The name of the"), "NAME is described: {h}");
    }
    assert!(help(&["cancel", "--help"]).contains(".part"));
    assert!(help(&["forget", "--help"]).contains("peer cancel"));
    let h = help(&["show-downloads", "--help"]);
    assert!(h.contains("--all") && h.contains("\"paused\"") && h.contains("rate_bytes_per_s"), "{h}");
    let h = help(&["download", "--help"]);
    assert!(h.contains("130") && h.contains("peer cancel GROUP NAME"), "{h}");
    assert!(h.contains("A directory (the file lands as DEST/NAME) or a file path"), "{h}");
    assert!(help(&["list-shares", "--help"]).contains("per group"));
    assert!(help(&["--help"]).contains("130 interrupted"));
    // Bad arity is a usage error naming what is wrong.
    for args in [&["cancel", "g"][..], &["pause", "g", "n", "x1"], &["list-shares", "x1"]] {
        let out = Command::new(peer_bin()).args(args).env("PEER_HOME", home.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "peer {args:?}");
    }
    // Without a daemon: exit 3, as for the other daemon commands.
    for args in [&["cancel", "g", "n"][..], &["list-shares"], &["forget", "g", "n"]] {
        let out = Command::new(peer_bin()).args(args).env("PEER_HOME", home.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "peer {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
