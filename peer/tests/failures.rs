//! Downloads that survive failures: a sharer killed mid-download, a sharer whose file went bad on
//! disk, the tracker leader killed during downloads and uploads, and the downloading daemon
//! itself killed and restarted. Sharers slow their answers down (`--serve-delay-ms`, a hidden
//! test flag) so that each fault lands while the download is under way.

use std::time::Duration;

use testkit::*;

const MIB: usize = 1024 * 1024;
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A peer with a running daemon (serving with `serve_delay_ms` per piece), logged in as `name`,
/// accepted into `group` by `owner`.
fn member(cluster: &Cluster, name: &str, group: &str, owner: &Peer, serve_delay_ms: u64) -> Peer {
    let mut p = Peer::new(cluster, name);
    p.daemon_args = vec!["--serve-delay-ms".into(), serve_delay_ms.to_string()];
    p.start_daemon();
    p.register_and_login(name);
    p.ok(&["join-group", group]);
    owner.ok(&["accept-request", group, name]);
    p
}

/// Alice (owner, serving with `delay_ms`) and Bob (member, downloader) in `group`.
fn slow_team(cluster: &Cluster, group: &str, delay_ms: u64) -> (Peer, Peer) {
    let mut alice = Peer::new(cluster, "alice");
    alice.daemon_args = vec!["--serve-delay-ms".into(), delay_ms.to_string()];
    alice.start_daemon();
    alice.register_and_login("alice");
    alice.ok(&["create-group", group]);
    let bob = member(cluster, "bob", group, &alice, 0);
    (alice, bob)
}

/// Puts a copy of `src` in the peer's own directory and uploads it (adds a sharer).
fn share_copy(p: &Peer, src: &std::path::Path, group: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(&p.home).unwrap();
    let copy = p.home.join(src.file_name().unwrap());
    std::fs::copy(src, &copy).unwrap();
    p.ok(&["upload", copy.to_str().unwrap(), group]);
    copy
}

fn start_download(p: &Peer, group: &str, name: &str, dest: &std::path::Path) {
    std::fs::create_dir_all(dest).unwrap();
    p.ok(&["download", group, name, dest.to_str().unwrap(), "--detach"]);
}

/// The download's row in `show-downloads`.
fn row_of(p: &Peer, name: &str) -> serde_json::Value {
    p.downloads().into_iter().find(|r| r["name"] == name).expect("download listed")
}

/// Runs `fault` while the download of `name` is under way, and proves it was: the download is
/// still running, with bytes left, both right before and right after the fault (states only
/// move forward, so it was running when the fault landed). Returns the rows (before, after).
fn fault_during_download(p: &Peer, name: &str, fault: impl FnOnce()) -> (serde_json::Value, serde_json::Value) {
    let before = row_of(p, name);
    assert_eq!(before["state"], "downloading", "the download ended before the fault: {before}");
    fault();
    let after = row_of(p, name);
    assert_eq!(after["state"], "downloading", "the download ended before the fault landed: {after}");
    assert!(
        after["bytes_done"].as_u64().unwrap() < after["size"].as_u64().unwrap(),
        "no bytes left at the fault: {after}"
    );
    (before, after)
}

/// Waits until the download has at least `fraction` of its bytes, and is still running.
fn wait_progress(p: &Peer, name: &str, fraction: f64) {
    wait_until(&format!("{name} to pass {:.0}%", fraction * 100.0), DOWNLOAD_TIMEOUT, || {
        let rows = p.downloads();
        let row = rows.iter().find(|r| r["name"] == name).expect("download listed");
        assert_eq!(row["state"], "downloading", "the download ended before the fault: {row}");
        row["bytes_done"].as_f64().unwrap() >= fraction * row["size"].as_f64().unwrap()
    });
}

#[test]
fn three_sharers_one_killed_mid_download() {
    let cluster = Cluster::start(3);
    // Three sharers at 100 ms a piece: 128 pieces take over 4 s, so the kill lands with seconds to spare.
    let (alice, bob) = slow_team(&cluster, "team", 100);
    let carol = member(&cluster, "carol", "team", &alice, 100);
    let mut dave = member(&cluster, "dave", "team", &alice, 100);
    let (path, sha1) = random_file(cluster.dir.path(), "big.bin", 64 * MIB, 7);
    alice.ok(&["upload", path.to_str().unwrap(), "team"]);
    share_copy(&carol, &path, "team");
    share_copy(&dave, &path, "team");
    assert_eq!(bob.ok(&["list-files", "team"])[0]["sharers"], 3);

    let dest = cluster.dir.path().join("bob-dl");
    start_download(&bob, "team", "big.bin", &dest);
    wait_progress(&bob, "big.bin", 0.25);
    fault_during_download(&bob, "big.bin", || dave.kill_daemon());

    let row = bob.wait_download("big.bin", DOWNLOAD_TIMEOUT);
    assert_eq!(row["state"], "complete", "{row}");
    assert_eq!(file_sha1(&dest.join("big.bin")), sha1);
    // Bob fetched from all three at once, and saw Dave go.
    let log = bob.daemon_log();
    let sharers: std::collections::HashSet<&str> =
        log.lines().filter(|l| l.contains("connecting to sharer")).filter_map(|l| l.split("peer=").nth(1)).collect();
    assert_eq!(sharers.len(), 3, "bob connected to three sharers: {log}");
    assert!(log.contains("connection ended"), "dave's connection ended mid-download: {log}");
}

#[test]
fn corrupt_sharer_is_dropped_and_the_honest_one_finishes() {
    let cluster = Cluster::start(3);
    let (alice, bob) = slow_team(&cluster, "team", 30);
    let carol = member(&cluster, "carol", "team", &alice, 0);
    let (path, sha1) = random_file(cluster.dir.path(), "data.bin", 8 * MIB, 11);
    alice.ok(&["upload", path.to_str().unwrap(), "team"]);
    let carols = share_copy(&carol, &path, "team");
    // Carol's copy goes bad on disk after the upload: same size, other bytes.
    random_file(&carol.home, "data.bin", 8 * MIB, 12);
    assert_eq!(std::fs::metadata(&carols).unwrap().len(), 8 * MIB as u64);

    let dest = cluster.dir.path().join("bob-dl");
    std::fs::create_dir_all(&dest).unwrap();
    let d = bob.ok(&["download", "team", "data.bin", dest.to_str().unwrap()]);
    assert_eq!(d["ok"], true);
    assert_eq!(file_sha1(&dest.join("data.bin")), sha1);
    let log = bob.daemon_log();
    assert!(log.contains("failed SHA-1"), "carol's bad pieces were detected: {log}");

    // With only the corrupt sharer left, the download fails and says why.
    alice.ok(&["stop-share", "team", "data.bin"]);
    bob.ok(&["stop-share", "team", "data.bin"]);
    let dest2 = cluster.dir.path().join("bob-dl2");
    std::fs::create_dir_all(&dest2).unwrap();
    let r = bob.run(&["download", "team", "data.bin", dest2.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.error_code(), "download_failed");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("failed verification") && msg.contains("failed SHA-1"), "the message names the cause: {msg}");
    assert!(!dest2.join("data.bin").exists(), "no file is produced from bad data");
}

#[test]
fn tracker_leader_killed_during_a_download_and_during_uploads() {
    let mut cluster = Cluster::start(3);
    // 64 pieces at 120 ms from one sharer: about 8 s of download, the kill lands after 20%.
    let (alice, bob) = slow_team(&cluster, "team", 120);
    let (path, sha1) = random_file(cluster.dir.path(), "movie.bin", 32 * MIB, 21);
    alice.ok(&["upload", path.to_str().unwrap(), "team"]);

    // During a download: the swarm keeps going, its sharer refreshes ride through the election.
    let dest = cluster.dir.path().join("bob-dl");
    start_download(&bob, "team", "movie.bin", &dest);
    wait_progress(&bob, "movie.bin", 0.2);
    let leader = cluster.wait_leader(&[]);
    fault_during_download(&bob, "movie.bin", || cluster.kill(leader));
    let row = bob.wait_download("movie.bin", DOWNLOAD_TIMEOUT);
    assert_eq!(row["state"], "complete", "{row}");
    assert_eq!(file_sha1(&dest.join("movie.bin")), sha1);
    cluster.start_node(leader);

    // During uploads: a stream of uploads, the leader killed once some have gone through. The
    // uploader keeps going until it is told the kill happened and then uploads four more, so the
    // kill lands while the stream is running, never after it.
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let files: Vec<_> = (0..60)
        .map(|i| random_file(cluster.dir.path(), &format!("doc{i}.txt"), 100_000 + i, 100 + i as u64).0)
        .collect();
    let (done, killed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let (done_at_kill, after_kill) = std::thread::scope(|s| {
        let uploader = s.spawn(|| {
            let mut after_kill = 0;
            for f in &files {
                if killed.load(Ordering::SeqCst) {
                    if after_kill == 4 {
                        break;
                    }
                    after_kill += 1;
                }
                let r = alice.run(&["upload", f.to_str().unwrap(), "team"]);
                assert_eq!(r.code, 0, "upload of {} during failover: {} {}", f.display(), r.stdout, r.stderr);
                done.fetch_add(1, Ordering::SeqCst);
            }
            after_kill
        });
        wait_until("four uploads to be acknowledged", Duration::from_secs(60), || done.load(Ordering::SeqCst) >= 4);
        let leader = cluster.wait_leader(&[]);
        cluster.kill(leader);
        let done_at_kill = done.load(Ordering::SeqCst);
        killed.store(true, Ordering::SeqCst);
        assert!(!uploader.is_finished(), "the uploads had all returned before the kill");
        (done_at_kill, uploader.join().unwrap())
    });
    assert!(done_at_kill < files.len(), "uploads were still to go when the leader died ({done_at_kill} done)");
    assert_eq!(after_kill, 4, "four uploads started after the leader was killed");
    let total = done_at_kill + 4;
    let listed = bob.ok(&["list-files", "team"]);
    assert!(listed.as_array().unwrap().len() >= 1 + total, "every acknowledged upload is listed: {listed}");
    for f in &files[..total] {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            listed.as_array().unwrap().iter().any(|r| r["name"] == name),
            "{name} acknowledged but not listed: {listed}"
        );
    }
}

#[test]
fn daemon_killed_mid_download_resumes_from_its_verified_pieces() {
    let cluster = Cluster::start(3);
    // 64 pieces at 120 ms: about 8 s of download, the kill lands after 30%.
    let (alice, mut bob) = slow_team(&cluster, "team", 120);
    let (path, sha1) = random_file(cluster.dir.path(), "image.iso", 32 * MIB, 31);
    alice.ok(&["upload", path.to_str().unwrap(), "team"]);

    let dest = cluster.dir.path().join("bob-dl");
    start_download(&bob, "team", "image.iso", &dest);
    wait_progress(&bob, "image.iso", 0.3);
    let before = row_of(&bob, "image.iso");
    assert_eq!(before["state"], "downloading", "{before}");
    bob.kill_daemon();
    // The file gets its final name only when complete: it had not, so the kill landed mid-download.
    assert!(!dest.join("image.iso").exists(), "the download finished before the kill");
    assert!(dest.join("image.iso.part").exists(), "the partial file stays");

    bob.start_daemon();
    let row = bob.wait_download("image.iso", DOWNLOAD_TIMEOUT);
    assert_eq!(row["state"], "complete", "{row}");
    assert_eq!(file_sha1(&dest.join("image.iso")), sha1);

    // It resumed: the restarted daemon re-verified the pieces it had and fetched only the rest.
    let log = bob.daemon_log();
    let line = log.lines().find(|l| l.contains("resuming download")).unwrap_or_else(|| panic!("no resume in: {log}"));
    let verified: u64 = line
        .split("verified_pieces=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no verified_pieces in {line:?}"));
    assert!(verified >= 64 * 3 / 10, "at least the 30% seen before the kill was kept: {line}");
}
