//! Login and registration throttling. Logins, per user and per source address: after a few
//! free failures each further failure doubles the time before the next attempt is heard (1 s,
//! 2 s, 4 s … capped at 60 s). An attempt is counted as a failure when it is admitted, before its
//! password is checked, and a success takes that back: so guesses sent at once when a delay runs
//! out cannot all be admitted before the first is found wrong (one is; the rest wait for the next
//! delay). An attempt whose password was never checked (the password workers were busy, no
//! quorum confirmed the stored hash) is taken back too: only a wrong password is a failure.
//! Registrations, per source address (an IPv6 /64): a bucket of new accounts that refills slowly
//! (`RegistrationThrottle`), in a table of its own, so they never count against logins.
//! Soft state in the node's memory, bounded in size; a success clears the user's record. The
//! decisions are plain functions of the records and the time, tested without sockets.

use std::collections::HashMap;
use std::net::IpAddr;
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
        Self::take_back(&mut records, keys.iter().skip(1));
    }

    /// The admitted attempt with `keys` was never checked (the password workers were busy, or no
    /// quorum confirmed the stored hash): it is no failure of the user's nor of the address's.
    /// Without this, a pool kept busy by others (a registration flood) would lock a user out
    /// whose client retried its right password on the 503s.
    pub fn not_checked(&self, keys: &[(String, u32)]) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        Self::take_back(&mut records, keys.iter());
    }

    /// Takes one counted failure back from each of `keys`, with the delay it had before it.
    fn take_back<'a>(records: &mut HashMap<String, Record>, keys: impl Iterator<Item = &'a (String, u32)>) {
        for (key, free) in keys {
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
pub fn keys(user: &str, addr: IpAddr) -> [(String, u32); 2] {
    [
        (format!("user:{user}"), FREE_FAILURES_PER_USER),
        (format!("addr:{}", addr.to_canonical()), FREE_FAILURES_PER_ADDR),
    ]
}

/// New accounts one source address may open at once: an office or a class behind one NAT
/// opening its accounts in the same morning (and the project's own load runs: `bench scale`
/// registers 32 users, `chaos run` at most 64 clients).
pub const REGISTRATIONS_BURST_PER_ADDR: u32 = 64;
/// Then one more account per address every this long (60 an hour): a flood from one address
/// gets 124 accounts in its first hour where it got 72 000.
pub const REGISTRATION_REFILL_MS: u64 = 60_000;
/// Most addresses tracked. A record whose bucket is full again is dropped first (it says
/// nothing); beyond that, new addresses wait for a refill.
pub const MAX_REGISTRATION_RECORDS: usize = 100_000;

/// The registration bucket of an address: `Some(debt_until)` is the time at which it is full
/// again (GCRA's theoretical arrival time); none, or one in the past, is a full bucket.
pub type Debt = Option<Instant>;

/// Whether an address whose bucket is `debt` may open an account at `now`: `Ok(new debt)`, or
/// `Err(wait)` until it may. Each account adds one refill interval of debt; an address may owe
/// up to the whole bucket.
pub fn admit_registration(debt: Debt, now: Instant) -> Result<Instant, Duration> {
    let interval = Duration::from_millis(REGISTRATION_REFILL_MS);
    let debt = debt.map_or(now, |d| d.max(now));
    let allowed = interval * REGISTRATIONS_BURST_PER_ADDR;
    let owed = debt - now + interval;
    if owed > allowed {
        return Err(owed - allowed);
    }
    Ok(debt + interval)
}

/// The registration key of a source address: the address itself for IPv4 (one NAT is one
/// office), its /64 for IPv6 (one host usually holds a whole /64).
pub fn registration_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// New accounts per source address (`admit_registration`); soft state, bounded.
#[derive(Default)]
pub struct RegistrationThrottle {
    debts: Mutex<HashMap<IpAddr, Instant>>,
}

impl RegistrationThrottle {
    /// Admits a registration from `addr` at `now`, counted at once (so a burst sent together
    /// cannot all pass before the first is counted); `Err(wait)` when its bucket is empty.
    pub fn admit(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = registration_key(addr);
        let mut debts = self.debts.lock().unwrap_or_else(|p| p.into_inner());
        let debt = debts.get(&key).copied();
        if debt.is_none() && debts.len() >= MAX_REGISTRATION_RECORDS {
            debts.retain(|_, d| *d > now);
            if debts.len() >= MAX_REGISTRATION_RECORDS {
                return Err(Duration::from_millis(REGISTRATION_REFILL_MS));
            }
        }
        let debt = admit_registration(debt, now)?;
        debts.insert(key, debt);
        Ok(())
    }

    /// The admitted registration from `addr` did no work (the password workers were busy):
    /// it is not counted.
    pub fn not_done(&self, addr: IpAddr) {
        let key = registration_key(addr);
        let mut debts = self.debts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = debts.get_mut(&key) {
            *d = d.checked_sub(Duration::from_millis(REGISTRATION_REFILL_MS)).unwrap_or(*d);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.debts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh login throttle, the keys of alice's logins from 10.0.0.1, and the test's start.
    fn alice_from_one_address() -> (LoginThrottle, [(String, u32); 2], Instant) {
        (LoginThrottle::default(), keys("alice", "10.0.0.1".parse().unwrap()), Instant::now())
    }

    #[test]
    fn delays_start_after_the_free_failures_and_double_up_to_the_cap() {
        let d: Vec<u64> = (1..=12).map(|f| delay_after(f, 3).as_millis() as u64).collect();
        assert_eq!(d, vec![0, 0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000, 60_000]);
        assert_eq!(delay_after(u32::MAX, 3).as_millis() as u64, MAX_DELAY_MS);
    }

    #[test]
    fn a_guesser_is_held_back_and_a_success_clears_the_user() {
        let (t, k, t0) = alice_from_one_address();
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
        let (t, k, t0) = alice_from_one_address();
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
    fn an_attempt_never_checked_is_no_failure_of_the_user_nor_the_address() {
        let (t, k, t0) = alice_from_one_address();
        // A client retrying its right password on a busy pool: 20 attempts, none checked.
        for i in 0..20 {
            assert!(t.admit(&k, t0).is_ok(), "attempt {i} is heard");
            t.not_checked(&k);
        }
        assert_eq!(t.len(), 0);
        // Wrong passwords in between still count, and a busy answer does not erase them.
        for _ in 0..3 {
            t.admit(&k, t0).unwrap();
        }
        t.admit(&[("user:bob".into(), 3)], t0).unwrap();
        t.not_checked(&[("user:bob".into(), 3)]);
        assert_eq!(t.admit(&k, t0).unwrap_err(), Duration::from_secs(1));
    }

    #[test]
    fn an_address_opens_a_burst_of_accounts_then_one_per_refill() {
        let t = RegistrationThrottle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        let admitted = (0..1000).filter(|_| t.admit(a, t0).is_ok()).count();
        assert_eq!(admitted, REGISTRATIONS_BURST_PER_ADDR as usize);
        let refill = Duration::from_millis(REGISTRATION_REFILL_MS);
        assert_eq!(t.admit(a, t0).unwrap_err(), refill, "the refusal says when the next one is due");
        assert!(t.admit(a, t0 + refill - Duration::from_millis(1)).is_err());
        assert!(t.admit(a, t0 + refill).is_ok());
        assert!(t.admit(a, t0 + refill).is_err(), "one per refill");
        // An hour of flooding gets one per refill more, not 72 000.
        let hour = Duration::from_secs(3600);
        let mut got = 0;
        let mut now = t0 + refill;
        while now < t0 + hour {
            now += Duration::from_millis(50);
            got += usize::from(t.admit(a, now).is_ok());
        }
        assert_eq!(got as u64, 3_600_000 / REGISTRATION_REFILL_MS - 1);
        // Another address, and the same address's logins, are untouched.
        assert!(t.admit("10.0.0.2".parse().unwrap(), t0).is_ok());
        // An idle address is full again after the whole bucket's refill.
        let later = now + refill * REGISTRATIONS_BURST_PER_ADDR;
        assert_eq!((0..1000).filter(|_| t.admit(a, later).is_ok()).count(), REGISTRATIONS_BURST_PER_ADDR as usize);
    }

    #[test]
    fn a_registration_that_did_no_work_is_not_counted() {
        let t = RegistrationThrottle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..100 {
            t.admit(a, t0).unwrap();
            t.not_done(a);
        }
        assert_eq!((0..1000).filter(|_| t.admit(a, t0).is_ok()).count(), REGISTRATIONS_BURST_PER_ADDR as usize);
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_ipv4_by_the_ipv4_address() {
        let k = |s: &str| registration_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:bbbb::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
    }

    #[test]
    fn the_registration_table_is_bounded() {
        let t = RegistrationThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_REGISTRATION_RECORDS as u32 + 50) {
            let _ = t.admit(IpAddr::V4(i.into()), now);
        }
        assert!(t.len() <= MAX_REGISTRATION_RECORDS);
        // Once the buckets are full again, their records give way to new addresses.
        let later = now + Duration::from_millis(REGISTRATION_REFILL_MS) * 2;
        assert!(t.admit("255.255.255.255".parse().unwrap(), later).is_ok());
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
