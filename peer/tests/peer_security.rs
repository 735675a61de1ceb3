//! The peer's trust boundary, played as an attacker against the real binaries: a tracker
//! cluster, peer daemons, and a hand-made client that speaks the piece protocol (TLS with its
//! own key, then frames from `proto::piece`). Each test is one attack from docs/SECURITY.md.

use crate::raw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peer::daemon::channel::Channel;
use peer::identity::PeerIdentity;
use proto::piece::{encode, error_code, Message};
use raw::*;
use testkit::*;
use tokio::io::AsyncWriteExt;

/// alice shares `doc.bin` (3 pieces) in `vault`; bob is a member; mallory is registered but
/// not a member. Returns the cluster, peers, the file's SHA-1 and alice's piece address.
struct World {
    cluster: Cluster,
    alice: Peer,
    bob: Peer,
    sha1: String,
    alice_addr: String,
}

fn world(extra_daemon_args: &[&str]) -> World {
    let cluster = Cluster::start(3);
    let (alice, bob) = team_with(&cluster, "vault", extra_daemon_args);
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "doc.bin", 3 * 512 * 1024 - 10, 11, "vault");
    let alice_addr = peer_addr(&alice);
    World { cluster, alice, bob, sha1, alice_addr }
}

#[test]
fn a_non_member_who_knows_the_address_group_and_sha1_gets_error_7_and_no_byte_of_the_file() {
    let w = world(&[]);
    let rt = runtime();
    rt.block_on(async {
        let mallory = logged_in(&w.cluster.client(), "mallory").await;
        let bob = w.cluster.client().with_token(Some(session_token(&w.bob.home)));
        let key = listed_key(&bob, "vault", "doc.bin", &w.alice_addr).await;
        let me = PeerIdentity::ephemeral();
        let sha = sha1_of(&w.sha1);

        // The tracker signs no ticket for a non-member.
        let e = mallory.ticket("vault", "doc.bin", &me.public_hex()).await.unwrap_err();
        assert_eq!(e.code(), "not_member", "{e}");

        // No ticket at all (the version-1/2 way in).
        let got = attempt(&w.alice_addr, &key, &me, &handshake("vault", sha, "mallory", Vec::new())).await;
        let (code, why) = error_of(&got);
        assert_eq!(code, error_code::TICKET, "{why}");
        assert_eq!(got.len(), 1, "nothing before the refusal: {got:?}");

        // A ticket that is not the cluster's: random bytes, and one signed with another key.
        let forged = proto::ticket::TicketSigner::from_pkcs8(&proto::ticket::TicketSigner::generate_pkcs8()).unwrap();
        let t = forged.sign(&proto::ticket::Ticket {
            group: "vault".into(),
            file_sha1: sha,
            user: "mallory".into(),
            peer_key: me.public(),
            expires_at_ms: peer::daemon::tickets::now_ms() + 60_000,
        });
        for ticket in [vec![0xAB; 200], t] {
            let got = attempt(&w.alice_addr, &key, &me, &handshake("vault", sha, "mallory", ticket)).await;
            assert_eq!(error_of(&got).0, error_code::TICKET, "{got:?}");
            assert!(!got.iter().any(|m| matches!(m, Message::Bitfield { .. } | Message::Piece { .. })));
        }

        // bob's genuine ticket, replayed by mallory on her own key: bound to bob's key, refused.
        let bobs_key = PeerIdentity::ephemeral();
        // (A ticket is issued only for the key bob's daemon announced: announce this one.)
        bob.announce("127.0.0.1:9", &bobs_key.public_hex()).await.unwrap();
        let t = bob.ticket("vault", "doc.bin", &bobs_key.public_hex()).await.unwrap();
        let bytes = hex::decode(&t.ticket).unwrap();
        let got = attempt(&w.alice_addr, &key, &me, &handshake("vault", sha, "bob", bytes.clone())).await;
        let (code, why) = error_of(&got);
        assert_eq!(code, error_code::TICKET);
        assert!(why.contains("another peer key"), "{why}");

        // The same ticket on the key it was issued to is served: the check is not a blanket no.
        let mut req = handshake("vault", sha, "bob", bytes);
        encode(&Message::Request { piece: 0 }, &mut req);
        let got = attempt(&w.alice_addr, &key, &bobs_key, &req).await;
        assert!(
            got.iter().any(|m| matches!(m, Message::Piece { piece: 0, data } if data.len() == 512 * 1024)),
            "{got:?}"
        );
    });
    let log = w.alice.daemon_log();
    assert!(log.contains("refused a download") && log.contains("mallory"), "the sharer logs who it refused:\n{log}");
}

#[test]
fn a_member_who_leaves_gets_no_new_ticket_and_a_plaintext_or_malformed_client_gets_the_error_frame() {
    let w = world(&[]);
    let rt = runtime();
    rt.block_on(async {
        let (bob, key, me) = playing(&w.cluster, &w.bob, "vault", "doc.bin", &w.alice_addr).await;
        assert!(bob.ticket("vault", "doc.bin", &me.public_hex()).await.is_ok());
        w.bob.ok(&["leave-group", "vault"]);
        let e = bob.ticket("vault", "doc.bin", &me.public_hex()).await.unwrap_err();
        assert_eq!(e.code(), "not_member", "{e}");

        // A version-2 client (plain TCP): told why in a plain error frame.
        let mut plain = tokio::net::TcpStream::connect(&w.alice_addr).await.unwrap();
        let mut v2 = Vec::new();
        encode(
            &Message::Handshake {
                protocol_version: 2,
                file_sha1: sha1_of(&w.sha1),
                group: "vault".into(),
                user: "bob".into(),
                peer_id: [0; 16],
                ticket: Vec::new(),
            },
            &mut v2,
        );
        plain.write_all(&v2).await.unwrap();
        let got = read_all(&mut plain).await;
        let (code, why) = error_of(&got);
        assert_eq!(code, error_code::VERSION);
        assert!(why.contains("TLS"), "{why}");

        // Inside TLS: an oversize frame and an unknown type each get error 10 before the close.
        let mut huge = (proto::piece::MAX_FRAME_LEN_BYTES as u32 + 1).to_be_bytes().to_vec();
        huge.push(5);
        let unknown = [0u8, 0, 0, 1, 99];
        for bad in [huge, unknown.to_vec()] {
            let got = attempt(&w.alice_addr, &key, &me, &bad).await;
            assert_eq!(error_of(&got).0, error_code::MALFORMED, "{got:?}");
        }
        // A whole piece frame where the handshake belongs (its payload is read into a buffer
        // of its own, up to the frame bound): refused as unexpected, nothing served.
        let mut piece = Vec::new();
        encode(&Message::Piece { piece: 0, data: vec![7; 512 * 1024] }, &mut piece);
        let got = attempt(&w.alice_addr, &key, &me, &piece).await;
        let (code, why) = error_of(&got);
        assert_eq!(code, error_code::UNEXPECTED, "{why}");
        assert!(why.contains("expected a handshake, got piece"), "{why}");
    });
}

#[test]
fn a_logout_through_the_api_pauses_the_daemons_shares() {
    let w = world(&[]);
    let rt = runtime();
    rt.block_on(async {
        let (bob, key, me) = playing(&w.cluster, &w.bob, "vault", "doc.bin", &w.alice_addr).await;
        let t = hex::decode(bob.ticket("vault", "doc.bin", &me.public_hex()).await.unwrap().ticket).unwrap();
        // alice's token is logged out from elsewhere (her daemon's session.json still holds it).
        let alice = w.cluster.client().with_token(Some(session_token(&w.alice.home)));
        alice.logout().await.unwrap();
        let hello = handshake("vault", sha1_of(&w.sha1), "bob", t);
        let mut last = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while std::time::Instant::now() < deadline {
            last = attempt(&w.alice_addr, &key, &me, &hello).await;
            if matches!(last.last(), Some(Message::Error { code, .. }) if *code == error_code::LOGGED_OUT) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("alice's daemon still serves after her logout: {last:?}");
    });
}

/// Counts connections to a port that is not a peer (an SSH-like service) and keeps what they
/// sent.
struct Decoy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<std::sync::Mutex<Vec<u8>>>,
}

fn decoy() -> Decoy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, r) = (accepted.clone(), received.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            a.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    r.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    Decoy { addr, accepted, received }
}

#[test]
fn a_sharer_announced_at_someone_elses_port_is_tried_a_bounded_few_times_and_learns_nothing() {
    let w = world(&[]);
    // mallory is a member and claims to share alice's file at a decoy port (an SSH server);
    // alice stops sharing, so bob's download can only try the decoy.
    let mut mallory = Peer::member(&w.cluster, "mallory", "vault", &w.alice, &[]);
    let d = decoy();
    let rt = runtime();
    rt.block_on(async {
        let m = w.cluster.client().with_token(Some(session_token(&mallory.home)));
        let det = m.file_details("vault", "doc.bin").await.unwrap();
        let claimed = PeerIdentity::ephemeral();
        // A host in the announce is ignored: the tracker takes the connection's (127.0.0.1).
        let fake = format!("10.9.8.7:{}", d.addr.port());
        m.upload("vault", det.file.clone(), &fake, &claimed.public_hex()).await.unwrap();
        let det = m.file_details("vault", "doc.bin").await.unwrap();
        assert!(
            det.sharers.iter().any(|s| s.peer_addr == d.addr.to_string()),
            "stored with the connection's host: {:?}",
            det.sharers
        );
    });
    w.alice.ok(&["stop-share", "vault", "doc.bin"]);
    mallory.kill_daemon();
    let dest = w.cluster.dir.path().join("bob-dl");
    std::fs::create_dir_all(&dest).unwrap();
    let r = w.bob.run(&["download", "vault", "doc.bin", dest.to_str().unwrap()]);
    assert_eq!(r.code, 1, "the download fails: {} {}", r.stdout, r.stderr);
    let n = d.accepted.load(Ordering::SeqCst);
    assert!((1..=6).contains(&n), "the decoy was dialled {n} times (bound: 6)");
    let seen = d.received.lock().unwrap().clone();
    for secret in [&b"vault"[..], b"bob", w.sha1.as_bytes(), &sha1_of(&w.sha1)[..]] {
        assert!(
            !seen.windows(secret.len()).any(|x| x == secret),
            "the decoy learned {:?}",
            String::from_utf8_lossy(secret)
        );
    }
}

#[test]
fn a_sharer_proving_another_key_than_the_tracker_lists_is_dropped_after_one_connection() {
    let w = world(&[]);
    let mut mallory = Peer::member(&w.cluster, "mallory", "vault", &w.alice, &[]);
    // A TLS server with a key of its own at the address mallory announces with another key.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let rt = runtime();
    let a = accepted.clone();
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(l).unwrap();
        let ch = Channel::new(&PeerIdentity::ephemeral()).unwrap();
        while let Ok((s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            if let Ok((mut tls, _)) = ch.accept(s, 5_000).await {
                let _ = read_all(&mut tls).await;
            }
        }
    });
    rt.block_on(async {
        let m = w.cluster.client().with_token(Some(session_token(&mallory.home)));
        let det = m.file_details("vault", "doc.bin").await.unwrap();
        m.upload("vault", det.file.clone(), &addr.to_string(), &PeerIdentity::ephemeral().public_hex()).await.unwrap();
    });
    w.alice.ok(&["stop-share", "vault", "doc.bin"]);
    mallory.kill_daemon();
    let dest = w.cluster.dir.path().join("bob-dl");
    std::fs::create_dir_all(&dest).unwrap();
    let r = w.bob.run(&["download", "vault", "doc.bin", dest.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("key"), "the failure names the key mismatch: {}", r.stderr);
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, then the address is dropped");
}

#[test]
fn a_thousand_idle_connections_and_a_member_hogging_slots_do_not_lock_out_a_download() {
    // Alone: exact counts of turned-away and idle-closed connections under a flood.
    let _alone = alone();
    let w = world(&["--no-request-timeout-ms", "3000"]);
    let alice_addr: SocketAddr = w.alice_addr.parse().unwrap();
    // 1 000 connections from 127.0.0.2 that never speak (most are closed at once: 16 per address).
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let s = connect_from("127.0.0.2", alice_addr);
        if let Some(s) = s {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 900, "opened {} idle connections", idle.len());
    // A member who handshakes with valid tickets, then sends only keepalives, on 12 connections.
    let carol = Peer::member(&w.cluster, "carol", "vault", &w.alice, &[]);
    let rt = runtime();
    let codes = rt.block_on(async {
        let (c, key, me) = playing(&w.cluster, &carol, "vault", "doc.bin", &w.alice_addr).await;
        let me = Arc::new(me);
        let t = hex::decode(c.ticket("vault", "doc.bin", &me.public_hex()).await.unwrap().ticket).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (addr, me, hello) =
                (w.alice_addr.clone(), me.clone(), handshake("vault", sha1_of(&w.sha1), "carol", t.clone()));
            tasks.push(tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let mut tls = Channel::new(&me).unwrap().connect(tcp, &key, 5_000).await.unwrap();
                tls.write_all(&hello).await.unwrap();
                let (mut r, mut wr) = tokio::io::split(tls);
                let keepalives = tokio::spawn(async move {
                    let mut ka = Vec::new();
                    encode(&Message::KeepAlive, &mut ka);
                    for _ in 0..100 {
                        if wr.write_all(&ka).await.is_err() || wr.flush().await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
                let msgs = read_all(&mut r).await;
                keepalives.abort();
                match msgs.last() {
                    Some(Message::Error { code, .. }) => *code,
                    _ => 0,
                }
            }));
        }
        // Meanwhile bob downloads.
        let dest = w.cluster.dir.path().join("bob-dl");
        std::fs::create_dir_all(&dest).unwrap();
        let r = w.bob.run(&["download", "vault", "doc.bin", dest.to_str().unwrap()]);
        assert_eq!(r.code, 0, "bob's download under the flood: {} {}", r.stdout, r.stderr);
        assert_eq!(file_sha1(&dest.join("doc.bin")), w.sha1);
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.unwrap());
        }
        codes
    });
    drop(idle);
    let busy = codes.iter().filter(|&&c| c == error_code::BUSY).count();
    let idle_closed = codes.iter().filter(|&&c| c == error_code::IDLE).count();
    assert_eq!(busy, 4, "8 serving slots per user: 4 of 12 turned away with error 8: {codes:?}");
    assert_eq!(idle_closed, 8, "keepalives alone do not keep a slot: error 9 after the no-request bound: {codes:?}");
}

/// Two downloaders at a complete sharer, played with raw frames (`daemon/spread.rs`, the
/// read-ahead in `serve.rs`): a piece already sent to one connected downloader is rejected
/// once to the other, then served when asked again; a `cancel` sent behind its request drops
/// it unanswered; and a flood of frames sent ahead is read at most 64 at a time, the connection
/// still answering.
#[test]
fn a_seed_hands_a_piece_to_one_downloader_first_and_a_cancel_drops_its_request() {
    // Alone: exact counts of refusals and timeouts: no other load beside it.
    let _alone = alone();
    let w = world(&[]);
    let rt = runtime();
    rt.block_on(async {
        let bob = w.cluster.client().with_token(Some(session_token(&w.bob.home)));
        let key = listed_key(&bob, "vault", "doc.bin", &w.alice_addr).await;
        let sha = sha1_of(&w.sha1);
        let (one, two) = (PeerIdentity::ephemeral(), PeerIdentity::ephemeral());
        let ticket = |me: &PeerIdentity| {
            let (bob, key) = (bob.clone(), me.public_hex());
            async move {
                bob.announce("127.0.0.1:9", &key).await.unwrap();
                hex::decode(bob.ticket("vault", "doc.bin", &key).await.unwrap().ticket).unwrap()
            }
        };
        let (t1, t2) = (ticket(&one).await, ticket(&two).await);
        let frames = |msgs: &[Message]| {
            let mut out = Vec::new();
            for m in msgs {
                encode(m, &mut out);
            }
            out
        };
        let mut a = open_from("127.0.0.1", &w.alice_addr, &key, &one, &handshake("vault", sha, "bob", t1)).await;
        let mut b = open_from("127.0.0.1", &w.alice_addr, &key, &two, &handshake("vault", sha, "bob", t2)).await;
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        let wait = Duration::from_secs(5);
        for (conn, pending) in [(&mut a, &mut pa), (&mut b, &mut pb)] {
            assert!(matches!(next_frame(conn, pending, wait).await, Some(Message::Handshake { .. })));
            assert!(matches!(next_frame(conn, pending, wait).await, Some(Message::Bitfield { .. })));
        }
        // A asks for piece 0, then for piece 1 and cancels it in the same write.
        let first = frames(&[
            Message::Request { piece: 0 },
            Message::Request { piece: 1 },
            Message::Cancel { piece: 1 },
            Message::Request { piece: 2 },
        ]);
        a.write_all(&first).await.unwrap();
        a.flush().await.unwrap();
        let mut got = Vec::new();
        while let Some(m) = next_frame(&mut a, &mut pa, Duration::from_secs(2)).await {
            match m {
                Message::Piece { piece, .. } => got.push(piece),
                other => panic!("A got {other:?}"),
            }
        }
        assert_eq!(got, vec![0, 2], "piece 1 was cancelled before it was served");
        // B, still connected beside A: piece 0 went to A first, so B is told to ask elsewhere,
        // once; asked again, the seed serves it. Piece 1 (nobody has it) is served at once.
        b.write_all(&frames(&[Message::Request { piece: 0 }])).await.unwrap();
        b.flush().await.unwrap();
        assert!(matches!(next_frame(&mut b, &mut pb, wait).await, Some(Message::Reject { piece: 0 })));
        b.write_all(&frames(&[Message::Request { piece: 0 }, Message::Request { piece: 1 }])).await.unwrap();
        b.flush().await.unwrap();
        assert!(matches!(next_frame(&mut b, &mut pb, wait).await, Some(Message::Piece { piece: 0, .. })));
        assert!(matches!(next_frame(&mut b, &mut pb, wait).await, Some(Message::Piece { piece: 1, .. })));
        // A flood: 10 000 keepalives and haves ahead of one request; the read-ahead holds at
        // most 64 of them at a time and the request is still answered.
        let mut flood = Vec::new();
        for i in 0..10_000u32 {
            encode(if i % 2 == 0 { &Message::KeepAlive } else { &Message::Have { piece: 0 } }, &mut flood);
        }
        encode(&Message::Request { piece: 2 }, &mut flood);
        a.write_all(&flood).await.unwrap();
        a.flush().await.unwrap();
        assert!(matches!(next_frame(&mut a, &mut pa, wait).await, Some(Message::Piece { piece: 2, .. })));
    });
}
