//! The piece list travels between peers, not through the tracker: sharers that send a wrong
//! list (`--serve-bad-piece-list`, a hidden test flag) are dropped and the download finishes
//! from an honest one, or fails saying the list did not match; a file of thousands of pieces
//! (a list of several frames' worth of requests) arrives byte for byte; files over the peer's
//! bound are refused at upload.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::*;

const MIB: usize = 1024 * 1024;
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// What the running daemon of `p` wrote in HOME/daemon.json.
fn daemon_info(p: &Peer) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p.home.join("daemon.json")).unwrap()).unwrap()
}

fn signal_daemon(p: &Peer, sig: i32) {
    let pid = daemon_info(p)["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) on the pid of a daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Whether two files hold the same bytes, read in chunks.
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 8 * MIB], vec![0u8; 8 * MIB]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

#[test]
fn sharers_with_a_wrong_piece_list_are_dropped_and_an_honest_one_finishes() {
    let cluster = Cluster::start(3);
    let alice = Peer::owner(&cluster, "alice", "team", &[]);
    let bob = Peer::member(&cluster, "bob", "team", &alice, &[]);
    let carol = Peer::member(&cluster, "carol", "team", &alice, &["--serve-bad-piece-list", "corrupt"]);
    let dave = Peer::member(&cluster, "dave", "team", &alice, &["--serve-bad-piece-list", "short"]);
    let (path, sha1) = alice.upload_random(cluster.dir.path(), "data.bin", 8 * MIB + 1000, 51, "team");
    carol.share_copy(&path, "team");
    dave.share_copy(&path, "team");
    assert_eq!(bob.ok(&["list-files", "team"])[0]["sharers"], 3);

    // Alice's daemon is frozen, so Bob can get the list only from Carol and Dave at first.
    signal_daemon(&alice, libc::SIGSTOP);
    let dest = cluster.dir.path().join("bob-dl");
    bob.start_download("team", "data.bin", &dest);
    let bans = || {
        bob.daemon_log()
            .lines()
            .filter(|l| l.contains("piece list did not match"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    wait_until("bob to drop carol and dave for their piece lists", Duration::from_secs(30), || bans().len() >= 2);
    signal_daemon(&alice, libc::SIGCONT);
    let bans = bans();
    for (who, why) in [(&carol, "piece_list_sha1"), (&dave, "for a file of 17 pieces")] {
        let addr = daemon_info(who)["peer_addr"].as_str().unwrap().to_string();
        assert!(bans.iter().any(|l| l.contains(&addr) && l.contains(why)), "{addr} dropped because {why}: {bans:?}");
    }

    let row = bob.wait_download("data.bin", DOWNLOAD_TIMEOUT);
    assert_eq!(row["state"], "complete", "{row}");
    assert_eq!(file_sha1(&dest.join("data.bin")), sha1);
    let log = bob.daemon_log();
    assert!(log.contains("piece list verified"), "{log}");
    assert!(!log.contains("failed SHA-1"), "no piece was checked against a wrong list: {log}");

    // With only the bad lists left, the download fails and says why.
    alice.ok(&["stop-share", "team", "data.bin"]);
    bob.ok(&["stop-share", "team", "data.bin"]);
    let msg = bob.failed_download("team", "data.bin", &cluster.dir.path().join("bob-dl2"));
    assert!(msg.contains("piece list did not match"), "the message names the cause: {msg}");
}

#[test]
fn a_file_of_thousands_of_pieces_arrives_byte_for_byte() {
    const SIZE: usize = 1024 * MIB;
    const PIECES: u64 = 2048;
    let cluster = Cluster::start(3);
    let (alice, bob) = team(&cluster, "team");
    let (path, _) = random_file(cluster.dir.path(), "disk.img", SIZE, 61);

    let started = Instant::now();
    let up = alice.ok(&["upload", path.to_str().unwrap(), "team"]);
    assert_eq!(up["pieces"], PIECES);
    let listed = bob.ok(&["list-files", "team"]);
    assert_eq!(listed[0]["pieces"], PIECES, "{listed}");
    assert_eq!(listed[0]["size"], SIZE as u64);
    let dest = cluster.dir.path().join("bob-dl");
    std::fs::create_dir_all(&dest).unwrap();
    bob.ok(&["download", "team", "disk.img", dest.to_str().unwrap()]);
    eprintln!("1 GiB: upload and download in {:?}", started.elapsed());
    assert!(same_bytes(&path, &dest.join("disk.img")), "the downloaded file differs from the original");
    assert!(bob.daemon_log().contains("piece list verified"));

    // One byte over the peer's bound is refused before any hashing (a sparse file).
    let huge = cluster.dir.path().join("huge.img");
    std::fs::File::create(&huge).unwrap().set_len((1u64 << 40) + 1).unwrap();
    let msg = alice.run(&["upload", huge.to_str().unwrap(), "team"]).refused("file_too_large");
    assert!(msg.contains("1 TiB"), "the message states the bound: {msg}");
    assert_eq!(bob.ok(&["list-files", "team"]).as_array().unwrap().len(), 1);
}
