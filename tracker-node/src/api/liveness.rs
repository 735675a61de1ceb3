//! Peer liveness as soft state: which users' daemons have said "alive" lately, kept by the
//! leader in memory only (never in the Raft log).
//!
//! A sharer is listed (sharer lists, `sharers` counts) only while its user was seen in the last
//! liveness period (`[cluster] peer_liveness_ms`, 30 s by default). A daemon calls `POST
//! /v1/peer/alive` every third of the period, which the answers to announce and alive tell it
//! (`alive_every_ms`); announcing and uploading count as well. `DELETE /v1/peer/alive` (a daemon
//! stopping cleanly) drops the user at once.
//!
//! The table is the leader's: a node that becomes leader starts with an empty one and counts
//! every sharer as alive for one liveness period (the daemons' next calls reach it well within
//! that), so a failover drops nobody; a user who said "gone" stays gone through the grace. One
//! entry per user, entries older than [`FORGET_AFTER_MS`] are dropped.
//!
//! Time is a monotonic clock of this process in ms (`Liveness::now_ms`); every method takes
//! `now` so that the rules are testable without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Entries not refreshed for this long are dropped from the table.
pub const FORGET_AFTER_MS: u64 = 5 * 60_000;
/// How often, at most, the table is swept for old entries.
const PRUNE_EVERY_MS: u64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Said "alive" (or announced, or uploaded) at this time.
    Alive(u64),
    /// Said "going away" at this time.
    Gone(u64),
}

impl Seen {
    fn at(self) -> u64 {
        match self {
            Seen::Alive(t) | Seen::Gone(t) => t,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The term in which this node leads, when it does: the table belongs to that term.
    leader_term: Option<u64>,
    /// Until then (ms), every sharer not marked gone counts as alive.
    grace_until_ms: u64,
    peers: HashMap<String, Seen>,
    last_prune_ms: u64,
}

#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    /// A sharer counts while its daemon was seen within this long; a new leader counts every
    /// sharer as alive this long after it takes over.
    period_ms: u64,
    inner: Mutex<Inner>,
}

impl Liveness {
    /// A table whose sharers count for `period_ms` after they were last seen.
    pub fn new(period_ms: u64) -> Self {
        Liveness { epoch: Instant::now(), period_ms, inner: Mutex::new(Inner::default()) }
    }

    /// How often a daemon should say it is alive: three calls a period, so one lost call never
    /// drops a sharer.
    pub fn alive_every_ms(&self) -> u64 {
        self.period_ms / 3
    }

    /// This process's monotonic clock, in ms.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows this node's role: `leader_term` is `Some(term)` while it leads in `term`. A new
    /// term of leadership starts an empty table and a grace period; losing it drops the table.
    pub fn sync(&self, leader_term: Option<u64>, now: u64) {
        let mut g = self.lock();
        if g.leader_term == leader_term {
            return;
        }
        g.leader_term = leader_term;
        g.peers.clear();
        g.grace_until_ms = if leader_term.is_some() { now + self.period_ms } else { 0 };
        g.last_prune_ms = now;
    }

    /// `user`'s daemon is alive (as of `now`).
    pub fn seen(&self, user: &str, now: u64) {
        self.set(user, Seen::Alive(now), now);
    }

    /// `user`'s daemon is going away: it stops counting at once.
    pub fn gone(&self, user: &str, now: u64) {
        self.set(user, Seen::Gone(now), now);
    }

    fn set(&self, user: &str, seen: Seen, now: u64) {
        let mut g = self.lock();
        match g.peers.get_mut(user) {
            Some(s) => *s = seen,
            None => {
                g.peers.insert(user.to_string(), seen);
            }
        }
        if now.saturating_sub(g.last_prune_ms) >= PRUNE_EVERY_MS {
            g.last_prune_ms = now;
            g.peers.retain(|_, s| now.saturating_sub(s.at()) < FORGET_AFTER_MS);
        }
    }

    /// Whether `user`'s daemon counts as alive. A node that does not lead has no table and
    /// judges nobody (reads are answered by the leader).
    #[cfg(test)]
    pub fn is_alive(&self, user: &str, now: u64) -> bool {
        self.alive_in(&self.lock(), user, now)
    }

    fn alive_in(&self, g: &Inner, user: &str, now: u64) -> bool {
        if g.leader_term.is_none() {
            return true;
        }
        match g.peers.get(user) {
            Some(Seen::Gone(_)) => false,
            Some(Seen::Alive(t)) if now.saturating_sub(*t) <= self.period_ms => true,
            _ => now < g.grace_until_ms,
        }
    }

    /// Keeps the items whose user (`user_of`) counts as alive; one lock for the whole list.
    pub fn retain_alive<T>(&self, items: &mut Vec<T>, now: u64, user_of: impl Fn(&T) -> &str) {
        let g = self.lock();
        items.retain(|x| self.alive_in(&g, user_of(x), now));
    }

    /// Entries in the table.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().peers.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default period, as the tests below were written for.
    const PEER_LIVENESS_MS: u64 = proto::cluster::DEFAULT_PEER_LIVENESS_MS;
    const GRACE_MS: u64 = PEER_LIVENESS_MS;

    fn table() -> Liveness {
        Liveness::new(PEER_LIVENESS_MS)
    }

    #[test]
    fn a_follower_judges_nobody() {
        let l = table();
        l.sync(None, 0);
        assert!(l.is_alive("alice", 10 * FORGET_AFTER_MS));
    }

    #[test]
    fn a_new_leader_counts_everyone_alive_for_one_grace_period() {
        let l = table();
        l.sync(Some(3), 1_000);
        assert!(l.is_alive("alice", 1_000));
        assert!(l.is_alive("alice", 1_000 + GRACE_MS - 1));
        // Nobody said alive during the grace: alice stops counting when it ends.
        assert!(!l.is_alive("alice", 1_000 + GRACE_MS));
        // bob's daemon called during the grace: he keeps counting after it.
        l.seen("bob", 20_000);
        assert!(l.is_alive("bob", 1_000 + GRACE_MS + 5_000));
    }

    #[test]
    fn gone_drops_at_once_even_in_the_grace_period() {
        let l = table();
        l.sync(Some(1), 0);
        l.seen("alice", 100);
        l.gone("alice", 200);
        assert!(!l.is_alive("alice", 201));
        // Another "alive" (the daemon started again) counts again.
        l.seen("alice", 300);
        assert!(l.is_alive("alice", 301));
    }

    #[test]
    fn liveness_expires_after_the_period() {
        let l = table();
        l.sync(Some(1), 0);
        let t = GRACE_MS + 10_000;
        l.seen("alice", t);
        assert!(l.is_alive("alice", t + PEER_LIVENESS_MS));
        assert!(!l.is_alive("alice", t + PEER_LIVENESS_MS + 1));
        // Refreshed: counts again.
        l.seen("alice", t + PEER_LIVENESS_MS + 5);
        assert!(l.is_alive("alice", t + PEER_LIVENESS_MS + 6));
    }

    #[test]
    fn a_new_term_of_leadership_starts_an_empty_table_with_a_grace() {
        let l = table();
        l.sync(Some(1), 0);
        l.gone("alice", 10);
        assert!(!l.is_alive("alice", 20));
        // Leadership lost, then won again in a later term: the old table is gone.
        l.sync(None, 100_000);
        assert!(l.is_empty());
        l.sync(Some(4), 200_000);
        assert!(l.is_alive("alice", 200_001), "a new leader counts everyone in its grace");
        assert!(!l.is_alive("alice", 200_000 + GRACE_MS));
        // The same term seen again changes nothing.
        l.seen("bob", 200_000 + GRACE_MS);
        l.sync(Some(4), 200_000 + GRACE_MS + 1);
        assert!(l.is_alive("bob", 200_000 + GRACE_MS + 2));
    }

    #[test]
    fn the_table_holds_one_entry_per_user_and_forgets_old_ones() {
        let l = table();
        l.sync(Some(1), 0);
        for i in 0..1_000u64 {
            l.seen("alice", i);
            l.seen("bob", i);
        }
        assert_eq!(l.len(), 2);
        for u in 0..100 {
            l.seen(&format!("user{u}"), 1_000);
        }
        assert_eq!(l.len(), 102);
        // Much later, one call sweeps everyone not refreshed for FORGET_AFTER_MS.
        let later = 1_000 + FORGET_AFTER_MS + PRUNE_EVERY_MS;
        l.seen("carol", later);
        assert_eq!(l.len(), 1);
        assert!(l.is_alive("carol", later));
        assert!(!l.is_alive("alice", later));
    }

    #[test]
    fn the_period_is_the_clusters_and_daemons_call_three_times_in_it() {
        let l = Liveness::new(6_000);
        assert_eq!(l.alive_every_ms(), 2_000);
        l.sync(Some(1), 0);
        assert!(l.is_alive("alice", 5_999), "a new leader's grace is one period");
        assert!(!l.is_alive("alice", 6_000));
        l.seen("alice", 10_000);
        assert!(l.is_alive("alice", 16_000));
        assert!(!l.is_alive("alice", 16_001));
    }

    #[test]
    fn retain_alive_filters_a_list() {
        let l = table();
        l.sync(Some(1), 0);
        let now = GRACE_MS + 1;
        l.seen("alice", now);
        l.gone("bob", now);
        let mut v = vec!["alice", "bob", "carol"];
        l.retain_alive(&mut v, now, |s| s);
        assert_eq!(v, vec!["alice"]);
    }
}
