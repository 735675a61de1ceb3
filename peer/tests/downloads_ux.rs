//! Downloads and file listings as a person meets them (issue 36, "Downloads"), with real
//! processes: list-files in human sizes, the done line's time and average rate, DEST optional
//! and its missing folders made, the hint for swapped arguments, and show-downloads' ETA and
//! --watch.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use testkit::*;

const MIB: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(120);

/// `peer ARGS` as a person runs it (no --json), in folder `cwd`.
fn human_in(p: &Peer, cwd: &Path, args: &[&str]) -> Run {
    Run::from(p.command().current_dir(cwd).args(args).stdin(Stdio::null()).output().unwrap())
}

/// `peer --json ARGS` in folder `cwd`.
fn json_in(p: &Peer, cwd: &Path, args: &[&str]) -> Run {
    Run::from(p.command().current_dir(cwd).arg("--json").args(args).stdin(Stdio::null()).output().unwrap())
}

#[test]
fn list_files_sizes_and_the_done_line_read_as_a_person_reads_them() {
    let cluster = Cluster::start(3);
    let (alice, bob) = team(&cluster, "team");
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "doc.bin", 3 * MIB / 2, 61, "team");

    // list-files: the size as list-shares prints it, and "1 sharer".
    let r = human_in(&bob, cluster.dir.path(), &["list-files", "team"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("doc.bin  1.5 MiB (1572864 bytes)"), "{}", r.stdout);
    assert!(r.stdout.contains(" 1 sharer ") && !r.stdout.contains("sharer(s)"), "{}", r.stdout);

    // The done line: size, where, how long and how fast.
    let dest = tempfile::tempdir().unwrap();
    let r = human_in(&bob, dest.path(), &["download", "team", "doc.bin", "."]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stdout.trim();
    assert!(line.starts_with("downloaded doc.bin (1.5 MiB) to "), "{line}");
    assert!(line.contains(" in ") && line.contains(" s, ") && line.contains("/s;"), "time and average rate: {line}");
    assert_eq!(file_sha1(&dest.path().join("doc.bin")), sha1);

    // --json: the same fields as before, and the time and rate added.
    let other = tempfile::tempdir().unwrap();
    let d = bob.ok(&["download", "team", "doc.bin", other.path().to_str().unwrap()]);
    assert_eq!(d["size"], 3 * MIB / 2);
    assert_eq!(d["name"], "doc.bin");
    assert!(d["elapsed_ms"].is_u64() && d["avg_bytes_per_s"].is_u64(), "{d}");
}

#[test]
fn dest_defaults_to_the_current_folder_and_missing_folders_are_made() {
    let cluster = Cluster::start(3);
    let (alice, bob) = team(&cluster, "team");
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "a.bin", 600 * 1024, 62, "team");
    let here = tempfile::tempdir().unwrap();

    // No DEST: the current folder of the command (not the daemon's).
    let r = json_in(&bob, here.path(), &["download", "team", "a.bin"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let landed = here.path().join("a.bin");
    assert_eq!(r.json()["dest"], landed.to_str().unwrap());
    assert_eq!(file_sha1(&landed), sha1);

    // A relative folder that does not exist (ending in /), with its parents: made, relative to
    // the command's folder.
    let r = json_in(&bob, here.path(), &["download", "team", "a.bin", "new/sub/"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(file_sha1(&here.path().join("new/sub/a.bin")), sha1);
    // A file path in missing folders is still a file path.
    let r = json_in(&bob, here.path(), &["download", "team", "a.bin", "other/copy.bin"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(file_sha1(&here.path().join("other/copy.bin")), sha1);

    // A refused download leaves no folder behind.
    let r = json_in(&bob, here.path(), &["download", "team", "nosuch.bin", "made/for/nothing/"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!here.path().join("made").exists(), "the folders made for a refused download are removed");

    // A file where a folder should be is a usage error; nothing is written.
    std::fs::write(here.path().join("plain"), b"x").unwrap();
    let r = json_in(&bob, here.path(), &["download", "team", "a.bin", "plain/sub/"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not a folder"), "{}", r.stderr);

    // The existing rules hold: a file there is not replaced without --force.
    let r = json_in(&bob, here.path(), &["download", "team", "a.bin", "other/copy.bin"]);
    assert_eq!(r.code, 0, "the same file is already there: {}", r.stderr);
    std::fs::write(here.path().join("other/copy.bin"), b"something else").unwrap();
    let r = json_in(&bob, here.path(), &["download", "team", "a.bin", "other/copy.bin"]);
    assert_eq!(r.error_code(), "dest_exists", "{}", r.stderr);

    // --help tells it.
    let h = human_in(&bob, here.path(), &["download", "--help"]);
    assert!(h.stdout.contains("[DEST]") && h.stdout.contains("default: the current folder"), "{}", h.stdout);
}

#[test]
fn swapped_arguments_get_the_order_that_was_meant() {
    let cluster = Cluster::start(3);
    let (alice, bob) = team(&cluster, "team");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("doc.bin"), b"some bytes").unwrap();

    // upload GROUP FILE, FILE a name in the current folder.
    let r = json_in(&alice, dir.path(), &["upload", "team", "doc.bin"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let msg = r.refused("no_such_file");
    assert!(msg.contains("did you mean `peer upload doc.bin team`?"), "{msg}");
    // ... and FILE given as a path (no group name): still the hint.
    let abs = dir.path().join("doc.bin");
    let r = json_in(&alice, dir.path(), &["upload", "team", abs.to_str().unwrap()]);
    let msg = r.refused("invalid_name");
    assert!(msg.contains(&format!("did you mean `peer upload {} team`?", abs.display())), "{msg}");
    // No hint when nothing says it was a swap.
    let msg = json_in(&alice, dir.path(), &["upload", "missing.bin", "team"]).refused("no_such_file");
    assert!(!msg.contains("did you mean"), "{msg}");

    // download NAME GROUP: a group named like NAME exists.
    alice.ok(&["upload", abs.to_str().unwrap(), "team"]);
    let r = json_in(&bob, dir.path(), &["download", "doc.bin", "team", "out/"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let msg = r.refused("no_such_group");
    assert!(msg.contains("did you mean `peer download team doc.bin out/`?"), "{msg}");
    assert!(r.stderr.contains("did you mean"), "{}", r.stderr);
    let msg = json_in(&bob, dir.path(), &["download", "nogroup", "doc.bin"]).refused("no_such_group");
    assert!(!msg.contains("did you mean"), "{msg}");
}

#[test]
fn show_downloads_has_an_eta_and_watch_follows_until_nothing_runs() {
    let cluster = Cluster::start(3);
    let (alice, bob) = slow_team(&cluster, "team", 200);
    alice.upload_random(cluster.dir.path(), "w.bin", 16 * MIB, 63, "team");

    // --watch draws a human view: not with --json (usage, exit 2).
    let r = bob.run(&["show-downloads", "--watch"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.error_code(), "usage");

    let dest = tempfile::tempdir().unwrap();
    bob.start_download("team", "w.bin", dest.path());
    let r = human_in(&bob, dest.path(), &["show-downloads"]);
    assert!(r.stdout.contains("[D] [team] w.bin") && r.stdout.contains(" ETA "), "{}", r.stdout);

    // Not on a terminal: one view a second, a blank line between, until nothing runs.
    let watch = bob.command().args(["show-downloads", "--watch"]).stdin(Stdio::null()).stdout(Stdio::piped()).spawn();
    let out = watch.unwrap().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let views: Vec<&str> = text.split("\n\n").collect();
    assert!(views[0].contains("[D] [team] w.bin") && views[0].contains(" ETA "), "{text}");
    assert!(views.len() >= 2, "drawn again while it ran: {text}");
    assert!(views.last().unwrap().starts_with("no active downloads"), "ends once the download is done: {text}");
    assert!(bob.wait_download("w.bin", TIMEOUT)["state"] == "complete");
}

use crate::shell_tty::Tty;

#[test]
fn on_a_terminal_the_last_frame_is_done_and_watch_redraws_until_ctrl_c() {
    let cluster = Cluster::start(3);
    let (alice, bob) = slow_team(&cluster, "team", 100);
    alice.upload_random(cluster.dir.path(), "t.bin", 4 * MIB, 64, "team");
    alice.upload_random(cluster.dir.path(), "w.bin", 24 * MIB, 65, "team");
    let dest = tempfile::tempdir().unwrap();

    // A blocking download: its last frame is 100% at the average rate, then the done line.
    let mut t = Tty::spawn_in(&bob, Some(dest.path()), 160, &["download", "team", "t.bin"]);
    assert_eq!(t.wait_exit_within(TIMEOUT), 0, "{}", t.raw_text());
    let text = t.raw_text();
    let (bar, done) = text.split_once("downloaded t.bin (4.0 MiB)").unwrap_or_else(|| panic!("{text:?}"));
    assert!(done.contains(" in ") && done.contains("/s;"), "{text:?}");
    let last = bar.split('\r').filter(|f| !f.trim().is_empty()).last().unwrap_or_else(|| panic!("no bar: {text:?}"));
    assert!(last.contains("100.0%") && last.contains("avg ") && last.contains(" in "), "{last:?}");
    assert!(!last.contains("ETA") && !last.contains("sharer") && !last.contains("peer"), "{last:?}");
    assert!(bar.contains("sharer") && !bar.contains(" peer"), "the running bar says sharers: {bar:?}");

    // --watch on a terminal draws the view in place every second until Ctrl-C (exit 0).
    bob.start_download("team", "w.bin", dest.path());
    let mut w = Tty::spawn_in(&bob, Some(dest.path()), 160, &["show-downloads", "--watch"]);
    wait_until("two views of the running download", TIMEOUT, || {
        let text = w.raw_text();
        text.matches("\x1b[H\x1b[2J").count() >= 2 && text.contains("[D] [team] w.bin") && text.contains(" ETA ")
    });
    w.send("\x03");
    assert_eq!(w.wait_exit_within(Duration::from_secs(10)), 0, "{}", w.raw_text());
    assert!(w.raw_text().contains("Ctrl-C to stop"), "{}", w.raw_text());
}
