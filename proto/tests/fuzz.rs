//! Bounded-time fuzzing of everything a peer parses from the network before it trusts the
//! sender: piece-protocol frames (the handshake among them) and tickets. A mutation fuzzer on
//! the stable toolchain (cargo-fuzz needs nightly): seeds are valid frames and tickets; each
//! round mutates one (bit flips, random bytes, inserts, deletes, truncation, splices, forged
//! length prefixes) and checks the parser's promises:
//!
//! - it never panics and never reports more bytes used than it was given;
//! - a frame it accepts re-encodes to a frame that decodes to the same message;
//! - a ticket it accepts is byte for byte the one that was signed (any change is a forgery);
//!
//! `FUZZ_SECONDS` sets the time per target (default 5 s, as the README's test command runs it).

use std::time::{Duration, Instant};

use proto::piece::{decode, encode, Message, MAX_FRAME_LEN_BYTES};
use proto::ticket::{verify, Ticket, TicketSigner};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn budget() -> Duration {
    let s = std::env::var("FUZZ_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5u64);
    Duration::from_secs(s)
}

fn seed_rng() -> Rng {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(t | 1);
    println!("FUZZ_SEED={seed}");
    Rng(seed)
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(8) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
            3 if !b.is_empty() => {
                let i = rng.below(b.len());
                b.remove(i);
            }
            4 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(other.len() + 1);
                b.extend_from_slice(&other[cut..]);
            }
            6 if b.len() >= 4 => {
                // A forged length prefix: small, near the bound, or huge.
                let len = match rng.below(3) {
                    0 => rng.below(64) as u32,
                    1 => (MAX_FRAME_LEN_BYTES as u32).wrapping_add(rng.below(3) as u32).wrapping_sub(1),
                    _ => rng.next() as u32,
                };
                b[..4].copy_from_slice(&len.to_be_bytes());
            }
            _ => {
                let n = rng.below(16);
                for _ in 0..n {
                    b.push(rng.next() as u8);
                }
            }
        }
    }
    b
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let msgs = vec![
        Message::Handshake {
            protocol_version: 3,
            file_sha1: [7; 20],
            group: "dev_team".into(),
            user: "alice".into(),
            peer_id: [1; 16],
            ticket: vec![9; 180],
        },
        Message::Bitfield { num_pieces: 13, bits: vec![0xff, 0xf8] },
        Message::Have { piece: 3 },
        Message::Request { piece: 1 },
        Message::Cancel { piece: 2 },
        Message::Piece { piece: 0, data: vec![5; 300] },
        Message::Reject { piece: 4 },
        Message::KeepAlive,
        Message::Error { code: 7, message: "no ticket".into() },
        Message::PieceListRequest { start: 0, count: 16 },
        Message::PieceList { num_pieces: 4, start: 1, hashes: vec![[3; 20], [4; 20]] },
    ];
    msgs.iter()
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
        let input = mutate(&mut rng, &seeds);
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
        let input = mutate(&mut rng, &signed);
        if verify(&input, &key, now).is_ok() {
            assert!(signed.contains(&input), "a changed ticket was accepted: {input:?}");
        }
        rounds += 1;
    }
    println!("{rounds} tickets");
    assert!(rounds > 100, "the fuzzer ran ({rounds} inputs)");
}
