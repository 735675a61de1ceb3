//! The swarm under chaos: several downloads running while tracker leaders are killed and
//! sharers come and go; every finished file is compared byte for byte with its original.

use std::time::{Duration, Instant};

use testkit::*;

const MIB: usize = 1024 * 1024;

/// A member of "team" whose daemon serves each piece `delay_ms` late.
fn joined(cluster: &Cluster, name: &str, owner: &Peer, delay_ms: u64) -> Peer {
    Peer::member(cluster, name, "team", owner, &["--serve-delay-ms", &delay_ms.to_string()])
}

#[test]
fn downloads_finish_byte_for_byte_while_leaders_die_and_sharers_come_and_go() {
    let mut cluster = Cluster::start(3);
    let alice = Peer::owner(&cluster, "alice", "team", &["--serve-delay-ms", "300"]);
    let mut sharers = vec![joined(&cluster, "s1", &alice, 300), joined(&cluster, "s2", &alice, 300)];
    let downloaders = vec![joined(&cluster, "d1", &alice, 0), joined(&cluster, "d2", &alice, 0)];

    let files: Vec<_> = (0..3)
        .map(|i| random_file(cluster.dir.path(), &format!("f{i}.bin"), 24 * MIB + i * 1000, 60 + i as u64).0)
        .collect();
    for f in &files {
        alice.ok(&["upload", f.to_str().unwrap(), "team"]);
        for s in &sharers {
            s.share_copy(f, "team");
        }
    }
    for (k, d) in downloaders.iter().enumerate() {
        let dest = cluster.dir.path().join(format!("dl-{k}"));
        for f in &files {
            d.start_download("team", f.file_name().unwrap().to_str().unwrap(), &dest);
        }
    }

    // Faults until every download has ended: a tracker leader killed and restarted, or a
    // sharer's daemon killed and restarted, in turn.
    let all_ended = |ds: &[Peer]| ds.iter().all(|d| d.downloads().iter().all(|r| r["state"] != "downloading"));
    let start = Instant::now();
    let (mut leader_kills, mut sharer_kills) = (0usize, 0usize);
    let mut round = 0usize;
    while !all_ended(&downloaders) {
        assert!(start.elapsed() < Duration::from_secs(180), "downloads did not end: {:?}", downloaders[0].downloads());
        round += 1;
        if round % 2 == 1 {
            let leader = cluster.wait_leader(&[]);
            cluster.kill(leader);
            // Counted only when a download was still running after the kill (so during it).
            leader_kills += usize::from(!all_ended(&downloaders));
            cluster.wait_leader(&[leader]);
            cluster.start_node(leader);
        } else {
            let s = &mut sharers[round / 2 % 2];
            // The sharer stays down until a downloader has seen one of its connections end (or
            // every download has ended): the fault is felt before the sharer comes back.
            let ended =
                |ds: &[Peer]| ds.iter().map(|d| d.daemon_log().matches("connection ended").count()).sum::<usize>();
            let ended_before = ended(&downloaders);
            s.kill_daemon();
            sharer_kills += usize::from(!all_ended(&downloaders));
            wait_until("a downloader to lose its connection to the killed sharer", Duration::from_secs(30), || {
                ended(&downloaders) > ended_before || all_ended(&downloaders)
            });
            s.start_daemon();
        }
    }
    eprintln!("{leader_kills} tracker leader kills, {sharer_kills} sharer kills in {:?}", start.elapsed());
    assert!(
        leader_kills >= 1 && sharer_kills >= 1,
        "faults landed during the downloads ({leader_kills} leader kills, {sharer_kills} sharer kills)"
    );

    for (k, d) in downloaders.iter().enumerate() {
        for row in d.downloads() {
            assert_eq!(row["state"], "complete", "{row}");
        }
        for f in &files {
            let got = std::fs::read(cluster.dir.path().join(format!("dl-{k}")).join(f.file_name().unwrap())).unwrap();
            assert!(got == std::fs::read(f).unwrap(), "{} differs for d{}", f.display(), k + 1);
        }
    }
}
