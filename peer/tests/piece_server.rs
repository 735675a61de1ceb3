//! The piece server's contract (docs/PROTOCOL.md, "Messages", "Who may fetch", "Limits"), spoken
//! to by a raw client over the real TLS channel: error codes 1, 2, 3, 4, 7 and 8, each answered
//! with an `error` frame before the close, and the bound of 64 connections served at once.

use crate::raw;

use std::time::Duration;

use peer::identity::PeerIdentity;
use proto::piece::{encode, error_code, Message};
use raw::*;
use testkit::*;

#[test]
fn the_piece_server_answers_each_error_code_and_serves_at_most_64_connections() {
    let cluster = Cluster::start(3);
    let alice = Peer::owner(&cluster, "alice", "g", &[]);
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "f.bin", 3 * 512 * 1024, 9, "g");
    // A file the group has but this sharer no longer shares.
    let (_, gone_sha1) = alice.upload_random(cluster.dir.path(), "gone.bin", 1000, 10, "g");
    alice.ok(&["stop-share", "g", "gone.bin"]);
    let addr = peer_addr(&alice);
    let sha = sha1_of(&sha1);
    let rt = runtime();
    let key = rt.block_on(async {
        let a = cluster.client().with_token(Some(session_token(&alice.home)));
        let key = listed_key(&a, "g", "f.bin", &addr).await;
        let me = PeerIdentity::ephemeral();
        // Tickets are issued only for the key the caller's daemon announced: announce `k` first.
        let ticket = |name: &'static str, who: tracker_client::TrackerClient, k: String| async move {
            who.announce("127.0.0.1:9", &k).await.unwrap();
            hex::decode(who.ticket("g", name, &k).await.unwrap().ticket).unwrap()
        };
        let t = ticket("f.bin", a.clone(), me.public_hex()).await;

        // A good handshake: a handshake and a full bitfield back.
        let mut s = open_from("127.0.0.1", &addr, &key, &me, &handshake("g", sha, "alice", t.clone())).await;
        let mut p = Vec::new();
        assert!(matches!(
            next_frame(&mut s, &mut p, Duration::from_secs(10)).await,
            Some(Message::Handshake { protocol_version: 3, .. })
        ));
        assert_eq!(
            next_frame(&mut s, &mut p, Duration::from_secs(10)).await,
            Some(Message::Bitfield { num_pieces: 3, bits: vec![0b1110_0000] })
        );
        drop(s);

        let code = |first: Vec<u8>| {
            let (addr, me) = (addr.clone(), &me);
            async move {
                let got = attempt(&addr, &key, me, &first).await;
                assert_eq!(got.len(), 1, "one error frame, then the close: {got:?}");
                error_of(&got)
            }
        };
        assert_eq!(code(handshake_v(2, "g", sha, "alice", t.clone())).await.0, error_code::VERSION);
        assert_eq!(code(handshake_v(4, "g", sha, "alice", t.clone())).await.0, error_code::VERSION);
        let mut req = Vec::new();
        encode(&Message::Request { piece: 0 }, &mut req);
        assert_eq!(code(req).await.0, error_code::UNEXPECTED, "a request before the handshake");
        let (c, why) = code(handshake("other-group", sha, "alice", t.clone())).await;
        assert_eq!(c, error_code::TICKET, "a ticket for another group: {why}");
        let tg = ticket("gone.bin", a.clone(), me.public_hex()).await;
        let (c, why) = code(handshake("g", sha1_of(&gone_sha1), "alice", tg)).await;
        assert_eq!(c, error_code::NOT_SHARED, "a file it does not share (any more): {why}");

        // 64 served at once: 8 users (8 connections each, the most per user) from 4 addresses
        // (16 each, the most per address); the 65th is turned away with error 8; once one
        // closes, the next is served.
        let mut held = Vec::new();
        for i in 0..9 {
            let user = format!("u{i}");
            let c = logged_in(&cluster.client(), &user).await;
            c.join_group("g").await.unwrap();
            a.accept_request("g", &user).await.unwrap();
            let k = PeerIdentity::ephemeral();
            let t = ticket("f.bin", c, k.public_hex()).await;
            held.push((user, k, t));
        }
        let mut open = Vec::new();
        for (i, (user, k, t)) in held.iter().take(8).enumerate() {
            let from = format!("127.0.0.{}", 1 + i / 2);
            for _ in 0..8 {
                let mut s = open_from(&from, &addr, &key, k, &handshake("g", sha, user, t.clone())).await;
                let mut p = Vec::new();
                assert!(
                    matches!(
                        next_frame(&mut s, &mut p, Duration::from_secs(10)).await,
                        Some(Message::Handshake { .. })
                    ),
                    "{user} from {from} is served"
                );
                open.push(s);
            }
        }
        assert_eq!(open.len(), 64);
        let (user, k, t) = &held[8];
        let mut s = open_from("127.0.0.5", &addr, &key, k, &handshake("g", sha, user, t.clone())).await;
        let mut p = Vec::new();
        match next_frame(&mut s, &mut p, Duration::from_secs(10)).await {
            Some(Message::Error { code, message }) => {
                assert_eq!(code, error_code::BUSY);
                assert!(message.contains("64"), "{message}");
            }
            other => panic!("the 65th connection: {other:?}"),
        }
        drop(open.pop());
        let mut ok = false;
        for _ in 0..50 {
            let mut s = open_from("127.0.0.5", &addr, &key, k, &handshake("g", sha, user, t.clone())).await;
            let mut p = Vec::new();
            if matches!(next_frame(&mut s, &mut p, Duration::from_secs(10)).await, Some(Message::Handshake { .. })) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "a freed slot is taken by the next connection");
        drop(open);
        key
    });

    // Logged out: its shares are paused, error 3 (checked before the ticket).
    alice.ok(&["logout"]);
    rt.block_on(async {
        let got = attempt(&addr, &key, &PeerIdentity::ephemeral(), &handshake("g", sha, "alice", Vec::new())).await;
        assert_eq!(error_of(&got).0, error_code::LOGGED_OUT, "{got:?}");
    });
}
