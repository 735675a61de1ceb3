//! A mutation fuzzer for stable Rust (cargo-fuzz needs nightly): seeds are valid inputs; each
//! round mutates one and the target checks its parser's promises. Used by the bounded-time fuzz
//! targets in the README's test command (`testkit/tests/fuzz_proto.rs`, `raft_net::wire`'s,
//! `tracker-node/tests/fuzz_api.rs`).

use std::time::Duration;

/// A xorshift generator: fast, and a run is replayed from its printed seed.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The time per target: `FUZZ_SECONDS` (default 5 s, as the README's test command runs it).
pub fn budget() -> Duration {
    let s = std::env::var("FUZZ_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5u64);
    Duration::from_secs(s)
}

/// A generator seeded from `FUZZ_SEED`, or the clock; the seed is printed so a failure can be
/// replayed.
pub fn seed_rng() -> Rng {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(t | 1);
    println!("FUZZ_SEED={seed}");
    Rng(seed)
}

/// One seed, changed one to four times: bit flips, random bytes, inserts, deletes, truncation,
/// splices with another seed, random tails, and forged 4-byte big-endian length prefixes (small,
/// around `length_bound`, or huge).
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], length_bound: u32) -> Vec<u8> {
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
                    1 => length_bound.wrapping_add(rng.below(3) as u32).wrapping_sub(1),
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
