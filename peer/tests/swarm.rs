//! Swarming: several downloads at once in one daemon, and downloaders serving each other the
//! pieces they have verified while their own download is still running.

use std::time::Duration;

use testkit::*;

const MIB: usize = 1024 * 1024;

#[test]
fn several_downloads_at_once_and_downloaders_serve_each_other() {
    let cluster = Cluster::start(3);
    // 150 ms a piece from Alice: small.bin (16 pieces) takes over 2 s, big.bin (48) over 7 s, so
    // each "still running" below holds for seconds, not milliseconds.
    let alice = Peer::owner(&cluster, "alice", "team", &["--serve-delay-ms", "150"]);
    let bob = Peer::member(&cluster, "bob", "team", &alice, &[]);
    let carol = Peer::member(&cluster, "carol", "team", &alice, &[]);
    let (big, big_sha1) = random_file(cluster.dir.path(), "big.bin", 24 * MIB, 41);
    let (small, small_sha1) = random_file(cluster.dir.path(), "small.bin", 8 * MIB, 42);
    alice.ok(&["upload", big.to_str().unwrap(), "team"]);
    alice.ok(&["upload", small.to_str().unwrap(), "team"]);

    // Bob: two downloads at once.
    let bob_dl = cluster.dir.path().join("bob-dl");
    bob.start_download("team", "big.bin", &bob_dl);
    bob.start_download("team", "small.bin", &bob_dl);
    // Both run at once: big.bin is still running after small.bin began, and small.bin ends
    // (complete) while big.bin is still running. small.bin may be complete already by the
    // first look (a CLI start is all it has to outlast), so only its being listed is checked here.
    let rows = bob.downloads();
    let state = |rows: &[serde_json::Value], n: &str| rows.iter().find(|r| r["name"] == n).map(|r| r["state"].clone());
    assert_eq!(state(&rows, "big.bin"), Some("downloading".into()), "{rows:?}");
    let small_state = state(&rows, "small.bin");
    assert!(
        small_state == Some("downloading".into()) || small_state == Some("complete".into()),
        "small.bin is listed, downloading or complete: {rows:?}"
    );
    wait_until("small.bin to end", Duration::from_secs(60), || {
        let rows = bob.downloads();
        assert_eq!(state(&rows, "big.bin"), Some("downloading".into()), "big.bin ended before small.bin: {rows:?}");
        state(&rows, "small.bin") != Some("downloading".into())
    });

    // Carol starts on big.bin while Bob is a quarter in: Bob is listed as a sharer already.
    wait_until("bob to have a quarter of big.bin", Duration::from_secs(60), || {
        let rows = bob.downloads();
        let r = rows.iter().find(|r| r["name"] == "big.bin").unwrap();
        assert_eq!(r["state"], "downloading", "bob finished before carol could start: {r}");
        r["bytes_done"].as_u64().unwrap() * 4 >= r["size"].as_u64().unwrap()
    });
    assert_eq!(
        carol.ok(&["list-files", "team"]).as_array().unwrap().iter().find(|f| f["name"] == "big.bin").unwrap()
            ["sharers"],
        2
    );
    let carol_dl = cluster.dir.path().join("carol-dl");
    carol.start_download("team", "big.bin", &carol_dl);
    let rows = bob.downloads();
    assert_eq!(state(&rows, "big.bin"), Some("downloading".into()), "bob finished before carol started: {rows:?}");

    for (p, dir) in [(&bob, &bob_dl), (&carol, &carol_dl)] {
        let row = p.wait_download("big.bin", Duration::from_secs(120));
        assert_eq!(row["state"], "complete", "{row}");
        assert_eq!(file_sha1(&dir.join("big.bin")), big_sha1);
    }
    assert_eq!(bob.wait_download("small.bin", Duration::from_secs(60))["state"], "complete");
    assert_eq!(file_sha1(&bob_dl.join("small.bin")), small_sha1);

    // Bob served Carol from his partial file, before his own download was done.
    let log = bob.daemon_log();
    let serving = log.find("serving the verified pieces of a download in progress");
    let finished = log.lines().position(|l| l.contains("download complete") && l.contains("big.bin"));
    assert!(serving.is_some(), "bob served carol mid-download: {log}");
    let serving_line = log[..serving.unwrap()].lines().count();
    assert!(finished.is_some_and(|f| serving_line <= f), "served before finishing: {log}");
    // "served a peer" is logged when a served connection closes, which may be just after
    // Carol's download ended.
    wait_until("bob to log the pieces he served carol", Duration::from_secs(30), || {
        bob.daemon_log().contains("served a peer")
    });
    // Everyone who finished shares now.
    assert_eq!(
        carol.ok(&["list-files", "team"]).as_array().unwrap().iter().find(|f| f["name"] == "big.bin").unwrap()
            ["sharers"],
        3
    );
}
