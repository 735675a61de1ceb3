//! Bounded-time fuzzing of what `proto` parses: everything a peer reads from the network before
//! it trusts the sender (piece-protocol frames, the handshake among them, and tickets), and the
//! cluster file every node and peer reads. The mutation fuzzer is `testkit::fuzz` (stable Rust);
//! seeds are valid inputs, and each target checks its parser's promises:
//!
//! - it never panics and never reports more bytes used than it was given;
//! - a frame it accepts re-encodes to a frame that decodes to the same message;
//! - a ticket it accepts is byte for byte the one that was signed (any change is a forgery);
//! - a cluster file it accepts keeps the file's rules (ids unique and at least one node, every
//!   address distinct), and a refusal names the file;
//!
//! `FUZZ_SECONDS` sets the time per target (default 5 s, as the README's test command runs it).

use std::time::Instant;

use proto::piece::{decode, encode, example_messages, MAX_FRAME_LEN_BYTES};
use proto::ticket::{verify, Ticket, TicketSigner};
use testkit::fuzz::{budget, mutate, seed_rng};

fn frame_seeds() -> Vec<Vec<u8>> {
    example_messages()
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            encode(m, &mut out);
            out
        })
        .collect()
}

#[test]
fn frames_never_panic_and_what_decodes_round_trips() {
    let seeds = frame_seeds();
    let mut rng = seed_rng();
    let (start, mut rounds, mut accepted) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < budget() {
        let input = mutate(&mut rng, &seeds, MAX_FRAME_LEN_BYTES as u32);
        if let Ok(Some((m, used))) = decode(&input) {
            accepted += 1;
            assert!(used <= input.len(), "used {used} of {} bytes", input.len());
            let mut again = Vec::new();
            encode(&m, &mut again);
            match decode(&again) {
                Ok(Some((back, n))) => {
                    assert_eq!(back, m, "re-encoded {input:?}");
                    assert_eq!(n, again.len());
                }
                other => panic!("an accepted message does not decode after re-encoding: {other:?} from {input:?}"),
            }
        }
        rounds += 1;
    }
    println!("{rounds} inputs, {accepted} accepted");
    assert!(rounds > 1000 && accepted > 0, "the fuzzer ran ({rounds} inputs, {accepted} accepted)");
}

#[test]
fn tickets_never_panic_and_no_change_is_accepted() {
    let signer = TicketSigner::from_pkcs8(&TicketSigner::generate_pkcs8()).unwrap();
    let key = signer.public_key();
    let now = 1_800_000_000_000u64;
    let signed: Vec<Vec<u8>> = ["dev_team", "g"]
        .iter()
        .map(|g| {
            signer.sign(&Ticket {
                group: g.to_string(),
                file_sha1: [1; 20],
                user: "bob".into(),
                peer_key: [2; 32],
                expires_at_ms: now + 60_000,
            })
        })
        .collect();
    for s in &signed {
        assert!(verify(s, &key, now).is_ok(), "the seeds are valid");
    }
    let mut rng = seed_rng();
    let (start, mut rounds) = (Instant::now(), 0u64);
    while start.elapsed() < budget() {
        let input = mutate(&mut rng, &signed, 256);
        if verify(&input, &key, now).is_ok() {
            assert!(signed.contains(&input), "a changed ticket was accepted: {input:?}");
        }
        rounds += 1;
    }
    println!("{rounds} tickets");
    assert!(rounds > 100, "the fuzzer ran ({rounds} inputs)");
}

fn cluster_seeds() -> Vec<Vec<u8>> {
    let shipped = include_str!("../../cluster.toml");
    let named = "[cluster]\nheartbeat_ms = 20\nelection_timeout_ms = [60, 120]\nsecret = \"s\"\n\
                 initial_members = [1, 2]\n\n[cluster.tls]\nca = \"pki/ca.pem\"\nticket_key = \"pki/ticket.key\"\n\n\
                 [[node]]\nid = 1\napi = \"127.0.0.1:7001\"\nraft = \"127.0.0.1:7101\"\ndata_dir = \"d1\"\n\
                 cert = \"a.pem\"\nkey = \"a.key\"\n\n\
                 [[node]]\nid = 2\napi = \"[::1]:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"/var/lib/t/2\"\n";
    vec![shipped.as_bytes().to_vec(), named.as_bytes().to_vec()]
}

#[test]
fn cluster_files_never_panic_and_what_parses_keeps_the_rules() {
    use proto::cluster::ClusterConfig;
    let seeds = cluster_seeds();
    let path = std::path::Path::new("/etc/tracker/cluster.toml");
    for s in &seeds {
        ClusterConfig::parse(std::str::from_utf8(s).unwrap(), path).expect("the seeds are valid");
    }
    let mut rng = seed_rng();
    let (start, mut rounds, mut accepted) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < budget() {
        let input = mutate(&mut rng, &seeds, 64);
        rounds += 1;
        let Ok(text) = std::str::from_utf8(&input) else { continue };
        match ClusterConfig::parse(text, path) {
            Ok(cfg) => {
                accepted += 1;
                assert!(!cfg.nodes.is_empty(), "no node accepted: {text}");
                let mut ids: Vec<u64> = cfg.nodes.iter().map(|n| n.id).collect();
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), cfg.nodes.len(), "duplicate ids accepted: {text}");
                assert!(ids[0] >= 1, "id 0 accepted: {text}");
                let mut addrs: Vec<_> = cfg.nodes.iter().flat_map(|n| [n.api, n.raft]).collect();
                addrs.sort();
                addrs.dedup();
                assert_eq!(addrs.len(), 2 * cfg.nodes.len(), "an address used twice accepted: {text}");
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("cluster.toml"), "a refusal that does not name the file: {msg}");
            }
        }
    }
    println!("{rounds} cluster files, {accepted} accepted");
    assert!(rounds > 1000 && accepted > 0, "the fuzzer ran ({rounds} inputs, {accepted} accepted)");
}
