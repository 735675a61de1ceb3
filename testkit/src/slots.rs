//! How many clusters one test binary runs at once.
//!
//! Each crate's integration tests are one binary (`tests/all.rs`), so that cargo, which runs
//! test binaries one after another, lets the tests of a crate overlap: most of a test's time
//! is spent waiting (elections, liveness periods, timeouts), not computing. What bounds the
//! overlap is the number of clusters alive at once, not libtest's thread count: every
//! [`crate::Cluster`] and [`crate::InProcCluster`] holds a [`Slot`] while it lives, at most
//! [`clusters_at_once`] of them at a time; the others wait their turn.
//!
//! A test whose claim needs the machine to itself (no election during a flood, counts of log
//! lines or refusals in a window, a whole-cluster benchmark) takes [`alone`] first: it waits
//! until no other cluster runs, and no new one starts until it ends (clusters it starts itself,
//! on the same thread, need no slot of their own). Waiting exclusive tests go before new shared
//! ones, so they are never starved.

use std::sync::{Condvar, Mutex};

/// Clusters one test binary runs at once unless `TESTKIT_CLUSTERS_AT_ONCE` says otherwise.
pub const DEFAULT_CLUSTERS_AT_ONCE: usize = 4;

/// Longest a test waits for its turn before it fails instead of hanging (a test binary's
/// clusters all waiting on each other would be a bug in the tests).
const WAIT_FOR_TURN_MS: u64 = 20 * 60_000;

#[derive(Default)]
struct State {
    /// Shared slots held.
    shared: usize,
    /// An exclusive slot is held.
    exclusive: bool,
    /// Exclusive takers waiting: new shared takers let them go first.
    exclusive_waiting: usize,
    /// Takers of either kind blocked in `wait_turn`.
    blocked: usize,
}

/// The turns of one test binary (tests of this module use their own).
pub struct Slots {
    state: Mutex<State>,
    turn: Condvar,
}

static SLOTS: Slots = Slots::new();

thread_local! {
    /// This thread holds the exclusive slot: clusters it starts take no slot.
    static ALONE_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Clusters alive that this thread started: a test's second cluster rides on its first
    /// one's slot (so that tests holding one cluster each and waiting for a second never wait
    /// on each other).
    static HELD_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// `TESTKIT_CLUSTERS_AT_ONCE` (at least 1), else [`DEFAULT_CLUSTERS_AT_ONCE`].
pub fn clusters_at_once() -> usize {
    std::env::var("TESTKIT_CLUSTERS_AT_ONCE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(DEFAULT_CLUSTERS_AT_ONCE)
}

/// A turn to run: a shared one held by a cluster, or the exclusive one held by a test.
#[must_use = "the slot is given back when dropped"]
pub struct Slot {
    kind: Kind,
    of: &'static Slots,
}

enum Kind {
    /// One of the binary's shared slots.
    Shared,
    /// A further cluster of a thread that holds a shared slot already.
    Nested,
    Exclusive,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.of.lock();
        match self.kind {
            Kind::Exclusive => {
                s.exclusive = false;
                ALONE_HERE.with(|a| a.set(false));
            }
            Kind::Shared => {
                s.shared -= 1;
                HELD_HERE.with(|h| h.set(h.get() - 1));
            }
            Kind::Nested => HELD_HERE.with(|h| h.set(h.get() - 1)),
        }
        self.of.turn.notify_all();
    }
}

impl Slots {
    pub const fn new() -> Slots {
        Slots {
            state: Mutex::new(State { shared: 0, exclusive: false, exclusive_waiting: 0, blocked: 0 }),
            turn: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `ready` holds for the state, then applies `take`; panics after
    /// [`WAIT_FOR_TURN_MS`].
    fn wait_turn(&self, what: &str, ready: impl Fn(&State) -> bool, take: impl FnOnce(&mut State)) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(WAIT_FOR_TURN_MS);
        let mut s = self.lock();
        s.blocked += 1;
        while !ready(&s) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                s.blocked -= 1;
                drop(s);
                panic!("waited {WAIT_FOR_TURN_MS} ms for {what}");
            }
            s = self.turn.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        s.blocked -= 1;
        take(&mut s);
    }

    /// A shared slot for a cluster about to start; `None` when this thread runs alone already.
    pub fn cluster_slot(&'static self, limit: usize) -> Option<Slot> {
        if ALONE_HERE.with(|a| a.get()) {
            return None;
        }
        if HELD_HERE.with(|h| h.get()) > 0 {
            HELD_HERE.with(|h| h.set(h.get() + 1));
            return Some(Slot { kind: Kind::Nested, of: self });
        }
        self.wait_turn("a cluster slot", |s| shared_ready(s, limit), |s| s.shared += 1);
        HELD_HERE.with(|h| h.set(1));
        Some(Slot { kind: Kind::Shared, of: self })
    }

    /// The machine to this test: waits until no cluster runs, then keeps others from starting
    /// until the returned slot is dropped.
    pub fn alone(&'static self) -> Slot {
        self.lock().exclusive_waiting += 1;
        self.wait_turn("the machine to this test alone", alone_ready, |s| {
            s.exclusive_waiting -= 1;
            s.exclusive = true;
        });
        ALONE_HERE.with(|a| a.set(true));
        Slot { kind: Kind::Exclusive, of: self }
    }
}

impl Default for Slots {
    fn default() -> Self {
        Slots::new()
    }
}

/// Whether a cluster may take a shared slot now: nobody runs alone or waits to, and fewer than
/// `limit` clusters run.
fn shared_ready(s: &State, limit: usize) -> bool {
    !s.exclusive && s.exclusive_waiting == 0 && s.shared < limit
}

/// Whether a test may run alone now: no cluster runs and no other test runs alone.
fn alone_ready(s: &State) -> bool {
    !s.exclusive && s.shared == 0
}

/// A shared slot of this test binary for a cluster about to start (at most
/// [`clusters_at_once`]); `None` when this thread runs alone already.
pub fn cluster_slot() -> Option<Slot> {
    SLOTS.cluster_slot(clusters_at_once())
}

/// The machine to this test: waits until no cluster of this binary runs, then keeps others
/// from starting until the returned slot is dropped (hold it for the whole test).
pub fn alone() -> Slot {
    SLOTS.alone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};

    #[test]
    fn who_may_go() {
        let st = |shared, exclusive, exclusive_waiting| State { shared, exclusive, exclusive_waiting, blocked: 0 };
        assert!(shared_ready(&st(2, false, 0), 3));
        assert!(!shared_ready(&st(3, false, 0), 3), "the limit");
        assert!(!shared_ready(&st(0, true, 0), 3), "someone runs alone");
        assert!(!shared_ready(&st(1, false, 1), 3), "a waiting alone test goes first");
        assert!(alone_ready(&st(0, false, 1)));
        assert!(!alone_ready(&st(1, false, 1)), "a cluster runs");
        assert!(!alone_ready(&st(0, true, 1)), "another test runs alone");
    }

    /// These tests' own turns: other tests of this crate may start clusters meanwhile.
    static MINE: Slots = Slots::new();
    const LIMIT: usize = 3;

    fn cluster_slot() -> Option<Slot> {
        MINE.cluster_slot(LIMIT)
    }

    fn alone() -> Slot {
        MINE.alone()
    }

    /// Polls these tests' state until `f` holds (bounded).
    fn until(what: &str, f: impl Fn(&State) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !f(&MINE.lock()) {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    /// A thread that takes a slot with `take`, says so, and gives it back when told.
    fn holder(take: fn() -> Option<Slot>) -> (Arc<AtomicBool>, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (got, (release, wait)) = (Arc::new(AtomicBool::new(false)), mpsc::channel::<()>());
        let flag = got.clone();
        let t = std::thread::spawn(move || {
            let slot = take();
            flag.store(true, Ordering::SeqCst);
            let _ = wait.recv();
            drop(slot);
        });
        (got, release, t)
    }

    /// One test, as the state is the process's: shared slots stop at the limit, and a test
    /// alone excludes every cluster of other threads, waiting ones included, while its own
    /// clusters take no slot.
    #[test]
    fn shared_slots_are_bounded_and_alone_excludes_them() {
        let limit = LIMIT;
        let held: Vec<_> = (0..limit).map(|_| holder(cluster_slot)).collect();
        until("the limit's worth of clusters", |s| s.shared == limit);
        // One more waits, and a second cluster of a holding thread rides on its slot.
        let (extra, extra_release, extra_t) = holder(cluster_slot);
        let nested = std::thread::spawn(|| {
            let _first = cluster_slot();
            let _second = cluster_slot();
        });
        until("the extra cluster and the nested test waiting", |s| s.blocked == 2);
        assert_eq!(MINE.lock().shared, limit);
        assert!(!extra.load(Ordering::SeqCst));
        // An alone test waits for every shared slot, and goes before the extra one.
        let (alone_got, alone_release, alone_t) = holder(|| Some(alone()));
        until("the alone test waiting", |s| s.exclusive_waiting == 1 && s.blocked == 3);
        for (got, release, t) in held {
            assert!(got.load(Ordering::SeqCst));
            assert!(!alone_got.load(Ordering::SeqCst), "alone while clusters ran");
            release.send(()).unwrap();
            t.join().unwrap();
        }
        until("the alone test running", |s| s.exclusive && s.shared == 0);
        assert!(alone_got.load(Ordering::SeqCst));
        assert!(!extra.load(Ordering::SeqCst), "a cluster started while a test ran alone");
        alone_release.send(()).unwrap();
        alone_t.join().unwrap();
        extra_release.send(()).unwrap();
        extra_t.join().unwrap();
        nested.join().unwrap();
        assert!(extra.load(Ordering::SeqCst));
        // The alone test's own clusters take no slot.
        let me = alone();
        assert!(cluster_slot().is_none(), "an alone test's own cluster takes no slot");
        drop(me);
        let s = MINE.lock();
        assert_eq!((s.shared, s.exclusive, s.exclusive_waiting, s.blocked), (0, false, 0, 0), "every slot given back");
    }
}
