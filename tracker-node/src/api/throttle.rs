//! Login throttling, per user and per source address: after a few free failures each further
//! failure doubles the time before the next attempt is heard (1 s, 2 s, 4 s … capped at 60 s).
//! An attempt is counted as a failure when it is admitted, before its password is checked, and
//! a success takes that back: so guesses sent at once when a delay runs out cannot all be
//! admitted before the first is found wrong (one is; the rest wait for the next delay).
//! Soft state in the node's memory, bounded in size; a success clears the user's record. The
//! decisions are plain functions of the records and the time, tested without sockets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before delays start, for one user name.
pub const FREE_FAILURES_PER_USER: u32 = 3;
/// Failures allowed before delays start, for one source address (several people may share
/// one address behind a NAT).
pub const FREE_FAILURES_PER_ADDR: u32 = 10;
/// First delay once the free failures are spent.
pub const FIRST_DELAY_MS: u64 = 1_000;
/// Longest delay.
pub const MAX_DELAY_MS: u64 = 60_000;
/// A record idle for this long is forgotten.
pub const FORGET_AFTER_MS: u64 = 15 * 60 * 1000;
/// Most records kept; beyond it, records not currently blocking are dropped first.
pub const MAX_RECORDS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    blocked_until: Instant,
    last_seen: Instant,
}

#[derive(Default)]
pub struct LoginThrottle {
    records: Mutex<HashMap<String, Record>>,
}

fn delay_after(failures: u32, free: u32) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let doublings = (failures - free).min(16);
    Duration::from_millis((FIRST_DELAY_MS << doublings).min(MAX_DELAY_MS))
}

impl LoginThrottle {
    /// Admits an attempt with `keys` at `now`, counting it as a failure of each key until
    /// `succeeded` says otherwise; `Err(wait)` when any of them is blocked.
    pub fn admit(&self, keys: &[(String, u32)], now: Instant) -> Result<(), Duration> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let wait = keys
            .iter()
            .filter_map(|(k, _)| records.get(k))
            .map(|r| r.blocked_until.saturating_duration_since(now))
            .max()
            .unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            return Err(wait);
        }
        Self::count_failure(&mut records, keys, now);
        Ok(())
    }

    fn count_failure(records: &mut HashMap<String, Record>, keys: &[(String, u32)], now: Instant) {
        if records.len() >= MAX_RECORDS {
            records.retain(|_, r| {
                r.blocked_until > now && now.duration_since(r.last_seen) < Duration::from_millis(FORGET_AFTER_MS)
            });
        }
        for (key, free) in keys {
            if records.len() >= MAX_RECORDS && !records.contains_key(key) {
                continue;
            }
            let r = records.entry(key.clone()).or_insert(Record { failures: 0, blocked_until: now, last_seen: now });
            if now.duration_since(r.last_seen) > Duration::from_millis(FORGET_AFTER_MS) {
                r.failures = 0;
            }
            r.failures += 1;
            r.last_seen = now;
            r.blocked_until = now + delay_after(r.failures, *free);
        }
    }

    /// The admitted attempt with `keys` (the user's first) was right: the user's record goes,
    /// and the address's count is taken back.
    pub fn succeeded(&self, keys: &[(String, u32)]) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((user_key, _)) = keys.first() {
            records.remove(user_key);
        }
        for (key, free) in keys.iter().skip(1) {
            if let Some(r) = records.get_mut(key) {
                r.failures = r.failures.saturating_sub(1);
                r.blocked_until = r.last_seen + delay_after(r.failures, *free);
                if r.failures == 0 {
                    records.remove(key);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The throttle keys of a login attempt.
pub fn keys(user: &str, addr: std::net::IpAddr) -> [(String, u32); 2] {
    [(format!("user:{user}"), FREE_FAILURES_PER_USER), (format!("addr:{addr}"), FREE_FAILURES_PER_ADDR)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_and_double_up_to_the_cap() {
        let d: Vec<u64> = (1..=12).map(|f| delay_after(f, 3).as_millis() as u64).collect();
        assert_eq!(d, vec![0, 0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]);
        assert_eq!(delay_after(u32::MAX, 3).as_millis() as u64, MAX_DELAY_MS);
    }

    #[test]
    fn a_guesser_is_held_back_and_a_success_clears_the_user() {
        let t = LoginThrottle::default();
        let k = keys("alice", "10.0.0.1".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.admit(&k, t0).is_ok(), "three failures are free");
        }
        let wait = t.admit(&k, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(t.admit(&k, t0 + Duration::from_millis(1_001)).is_ok());
        // Another address guessing the same user is held back by the user's record.
        let other = keys("alice", "10.9.9.9".parse().unwrap());
        assert!(t.admit(&other, t0 + Duration::from_millis(1_001)).is_err());
        t.succeeded(&k);
        assert!(t.admit(&other, t0 + Duration::from_millis(1_001)).is_ok());
    }

    #[test]
    fn guesses_sent_at_once_when_a_delay_runs_out_are_admitted_one_at_a_time() {
        let t = LoginThrottle::default();
        let k = keys("alice", "10.0.0.1".parse().unwrap());
        let t0 = Instant::now();
        // 64 guesses at the same instant: the three free ones are admitted, the rest wait.
        let admitted = (0..64).filter(|_| t.admit(&k, t0).is_ok()).count();
        assert_eq!(admitted, 3);
        // When the delay runs out, 64 more at once: one is admitted, and it starts the next delay.
        let t1 = t0 + Duration::from_millis(1_001);
        let admitted = (0..64).filter(|_| t.admit(&k, t1).is_ok()).count();
        assert_eq!(admitted, 1);
        assert_eq!(t.admit(&k, t1).unwrap_err(), Duration::from_secs(2));
    }

    #[test]
    fn a_success_takes_back_the_address_count() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        let addr: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        // Ten people behind one address log in right: none of it counts against the address.
        for i in 0..20 {
            let k = keys(&format!("u{i}"), addr);
            assert!(t.admit(&k, t0).is_ok(), "login {i}");
            t.succeeded(&k);
        }
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_RECORDS + 50) {
            let _ = t.admit(&[(format!("user:u{i}"), 3)], now);
        }
        assert!(t.len() <= MAX_RECORDS);
    }
}
