//! Run-time loopback ports for the processes this harness starts: ports that nothing else on
//! the machine takes between the moment a test picks them and the moment the node it starts
//! binds them.
//!
//! Binding port 0 and releasing it (the usual trick) hands out a port from the kernel's
//! ephemeral range, which the kernel hands out again to the next outgoing connection of any
//! process, or to the next test that binds port 0: on a busy machine the node then fails to
//! bind ("address in use") and the test fails for nothing. So ports are drawn instead:
//!
//! - from below the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, usually
//!   32768-60999), from [`POOL_START`] up: outgoing connections never get those ports, only an
//!   explicit bind does;
//! - at random, so that concurrent test processes rarely even try the same port;
//! - only if they can be bound right now (nothing listens there);
//! - and reserved across every test process of this user with an `flock` on
//!   `$TMPDIR/testkit-ports-<uid>/<port>`, held until this process exits (the kernel drops the
//!   lock when the process dies, however it dies, so a crashed test leaves nothing stale). A
//!   port is never handed out twice within one process either: the lock is per open file, so a
//!   second attempt in this process conflicts with the first.
//!
//! Only processes that go through this module are kept apart; a program outside the tests
//! that binds a fixed port in the pool can still collide, which the bind check makes unlikely.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The lowest port drawn (well above the ports services usually listen on).
pub const POOL_START: u16 = 20_000;
/// Fewest ports a pool must have to be used.
const MIN_POOL: u16 = 2_000;

/// The locks of the ports this process holds; closing a file would release its port.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// The kernel's ephemeral range, `(low, high)` inclusive.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// The ports drawn from, `[low, high)`: below the ephemeral range, or above it when there
/// is no room below. With an ephemeral range that covers nearly everything, the whole
/// range above 1024 (the reservation still keeps test processes apart).
pub fn pool() -> (u16, u16) {
    let (lo, hi) = ephemeral_range();
    if lo >= POOL_START.saturating_add(MIN_POOL) {
        (POOL_START, lo)
    } else if hi <= u16::MAX - MIN_POOL {
        (hi + 1, u16::MAX)
    } else {
        (1024, u16::MAX)
    }
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process; the counter makes each draw different.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

fn lock_dir() -> PathBuf {
    // SAFETY: getuid(2) has no failure mode and no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("testkit-ports-{uid}"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Draws, checks and reserves one port (see the module docs).
pub fn reserve() -> u16 {
    let (lo, hi) = pool();
    let dir = lock_dir();
    for _ in 0..10_000 {
        let port = lo + (random_u64() % u64::from(hi - lo)) as u16;
        let Ok(file) = File::options().create(true).truncate(false).write(true).open(dir.join(port.to_string())) else {
            continue;
        };
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // another test process (or this one) holds it
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // something listens there; dropping `file` releases the lock
        }
        HELD.lock().unwrap_or_else(|p| p.into_inner()).push(file);
        return port;
    }
    panic!("no free loopback port in {lo}..{hi} after 10000 draws");
}

/// A loopback TCP port for a process this harness starts, reserved for the rest of this test
/// process (see the module docs for why and how).
pub fn free_port() -> u16 {
    reserve()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_distinct_and_locked() {
        let (lo, hi) = ephemeral_range();
        let taken: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = taken.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), taken.len(), "a port is handed out once per process: {taken:?}");
        let (pool_lo, pool_hi) = pool();
        for p in &taken {
            assert!(*p >= pool_lo && *p < pool_hi, "{p} outside the pool {pool_lo}..{pool_hi}");
            if pool_lo >= POOL_START {
                assert!(*p < lo || *p > hi, "{p} is in the ephemeral range {lo}-{hi}");
            }
            // Another process (or another open of the file) cannot take the reservation.
            // SAFETY: getuid(2) has no failure mode.
            let dir = std::env::temp_dir().join(format!("testkit-ports-{}", unsafe { libc::getuid() }));
            let f = File::open(dir.join(p.to_string())).unwrap();
            // SAFETY: flock(2) on a descriptor this test owns.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            assert_ne!(r, 0, "port {p}'s lock is held");
            // And it can be bound by the process it is for.
            drop(TcpListener::bind(("127.0.0.1", *p)).unwrap());
        }
    }
}
