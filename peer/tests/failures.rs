//! Downloads that survive failures: a sharer killed mid-download, a sharer whose file went bad on
//! disk, the tracker leader killed during downloads and uploads, and the downloading daemon
//! itself killed and restarted. Sharers slow their answers down (`--serve-delay-ms`, a hidden
//! test flag) so that each fault lands while the download is under way.

use std::time::Duration;

use testkit::*;

const MIB: usize = 1024 * 1024;
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `fault` while the download of `name` is under way, and proves it was: the download is
/// still running, with bytes left, both right before and right after the fault (states only
/// move forward, so it was running when the fault landed). Returns the rows (before, after).
fn fault_during_download(p: &Peer, name: &str, fault: impl FnOnce()) -> (serde_json::Value, serde_json::Value) {
    let before = p.download_row(name).expect("download listed");
    assert_eq!(before["state"], "downloading", "the download ended before the fault: {before}");
    fault();
    let after = p.download_row(name).expect("download listed");
    assert_eq!(after["state"], "downloading", "the download ended before the fault landed: {after}");
    assert!(
        after["bytes_done"].as_u64().unwrap() < after["size"].as_u64().unwrap(),
        "no bytes left at the fault: {after}"
    );
    (before, after)
}

#[test]
fn three_sharers_one_killed_mid_download() {
    let cluster = Cluster::start(3);
    // Three sharers at 100 ms a piece: 128 pieces take over 4 s, so the kill lands with seconds to spare.
    let (alice, bob) = slow_team(&cluster, "team", 100);
    let carol = Peer::member(&cluster, "carol", "team", &alice, &["--serve-delay-ms", "100"]);
    let mut dave = Peer::member(&cluster, "dave", "team", &alice, &["--serve-delay-ms", "100"]);
    let (path, sha1) = alice.upload_random(cluster.dir.path(), "big.bin", 64 * MIB, 7, "team");
    carol.share_copy(&path, "team");
    dave.share_copy(&path, "team");
    assert_eq!(bob.ok(&["list-files", "team"])[0]["sharers"], 3);

    let dest = cluster.dir.path().join("bob-dl");
    bob.start_download("team", "big.bin", &dest);
    bob.wait_progress("big.bin", 0.25, DOWNLOAD_TIMEOUT);
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
    let carol = Peer::member(&cluster, "carol", "team", &alice, &[]);
    let (path, sha1) = alice.upload_random(cluster.dir.path(), "data.bin", 8 * MIB, 11, "team");
    let carols = carol.share_copy(&path, "team");
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
    let msg = bob.failed_download("team", "data.bin", &cluster.dir.path().join("bob-dl2"));
    assert!(msg.contains("failed verification") && msg.contains("failed SHA-1"), "the message names the cause: {msg}");
}

#[test]
fn tracker_leader_killed_during_a_download_and_during_uploads() {
    let mut cluster = Cluster::start(3);
    // 64 pieces at 120 ms from one sharer: about 8 s of download, the kill lands after 20%.
    let (alice, bob) = slow_team(&cluster, "team", 120);
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "movie.bin", 32 * MIB, 21, "team");

    // During a download: the swarm keeps going, its sharer refreshes ride through the election.
    let dest = cluster.dir.path().join("bob-dl");
    bob.start_download("team", "movie.bin", &dest);
    bob.wait_progress("movie.bin", 0.2, DOWNLOAD_TIMEOUT);
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
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "image.iso", 32 * MIB, 31, "team");

    let dest = cluster.dir.path().join("bob-dl");
    bob.start_download("team", "image.iso", &dest);
    bob.wait_progress("image.iso", 0.3, DOWNLOAD_TIMEOUT);
    let before = bob.download_row("image.iso").expect("download listed");
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
    let (line, verified) = bob.resume_line(0);
    assert!(verified >= 64 * 3 / 10, "at least the 30% seen before the kill was kept: {line}");
}
