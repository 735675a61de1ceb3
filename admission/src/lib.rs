//! Admission to an accept path: the one policy every listener of the project applies (the
//! tracker's API and Raft ports, the peer's piece port) to the connections it holds before it
//! knows who is calling, and to the ones it serves afterwards.
//!
//! A listener keeps one [`Admission`] per stage (say, "accepted, handshake not finished" and
//! "served"). Each stage is bounded in total, per source address and per network prefix (/24
//! for IPv4, /64 for IPv6: what one host or one customer usually holds), and part of the total
//! is *kept for newcomers*: addresses that hold nothing in that stage right now. So:
//!
//! - one address cannot take more than its share (`per_address`);
//! - many addresses of one network cannot either (`per_prefix`);
//! - many networks together can fill the general pool (`total - kept_for_new`), but the first
//!   connection of an address that holds nothing still finds a kept slot, until as many
//!   distinct addresses as there are kept slots are each holding one.
//!
//! A connection over a bound is refused at once ([`Refusal`]): the accept loop closes it and
//! never waits. The decisions are plain data (no sockets, no clock, no runtime) and unit-tested
//! below; [`Gate`] shares one [`Admission`] between tasks and hands out slots that release
//! themselves on drop. The time allowances every accept path grants are here too
//! ([`FIRST_BYTE_TIMEOUT_MS`], [`HANDSHAKE_TIMEOUT_MS`]), so the figures and their reasons live
//! in one place (docs/SECURITY.md, "Accept paths").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// A connection that has sent nothing this long after it was accepted is closed. A client
/// sends its first bytes (a TLS ClientHello, an HTTP request line) right after the TCP
/// handshake; Linux retransmits a lost first segment after max(200 ms, the measured RTT plus
/// its variance), so one loss on a path of up to ~400 ms RTT still lands within the second.
pub const FIRST_BYTE_TIMEOUT_MS: u64 = 1_000;

/// The TLS handshake (and, where the protocol has one, the client's first message right after
/// it) must be over this long after the connection was accepted. TLS 1.3 costs the server one
/// round trip after the ClientHello (its flight, then the client's Finished), plus a few
/// milliseconds of signing: 2 s leaves a satellite or congested mobile path (600-800 ms RTT)
/// room for one lost segment and its retransmission; a client slower than that retries.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 2_000;

/// The bounds of one stage of one accept path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Slots in all.
    pub total: usize,
    /// Slots one source address may hold.
    pub per_address: usize,
    /// Slots one /24 (IPv4) or /64 (IPv6) may hold.
    pub per_prefix: usize,
    /// Slots of `total` that only an address holding nothing in this stage may take.
    pub kept_for_new: usize,
}

/// Limits that cannot work as meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("per_address ({per_address}) must be at least 1 and at most per_prefix ({per_prefix})")]
    PerAddress { per_address: usize, per_prefix: usize },
    #[error("per_prefix ({per_prefix}) must be at most total ({total})")]
    PerPrefix { per_prefix: usize, total: usize },
    #[error("kept_for_new ({kept_for_new}) must leave part of total ({total}) for everyone")]
    Kept { kept_for_new: usize, total: usize },
}

impl Limits {
    /// Checks that every bound can be reached and that the general pool is not empty.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.per_address == 0 || self.per_address > self.per_prefix {
            return Err(LimitsError::PerAddress { per_address: self.per_address, per_prefix: self.per_prefix });
        }
        if self.per_prefix > self.total {
            return Err(LimitsError::PerPrefix { per_prefix: self.per_prefix, total: self.total });
        }
        if self.kept_for_new >= self.total {
            return Err(LimitsError::Kept { kept_for_new: self.kept_for_new, total: self.total });
        }
        Ok(())
    }

    /// The slots anyone may take.
    fn general(&self) -> usize {
        self.total - self.kept_for_new
    }
}

/// Why a connection was refused: the bound it met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} connections from this address are in progress, the most per address")]
    Address(usize),
    #[error("{0} connections from this address's network are in progress, the most per network")]
    Prefix(usize),
    #[error("{0} connections are in progress, the most; try again later")]
    Total(usize),
}

/// The network an address belongs to, for the per-prefix bound: its /24 (IPv4) or /64 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prefix {
    V4([u8; 3]),
    V6([u8; 8]),
}

/// An IPv4 address reached over an IPv6 socket (`::ffff:a.b.c.d`) counts as the IPv4 address,
/// so a dual-stack listener does not give one host two shares.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `ip`'s /24 or /64.
pub fn prefix_of(ip: IpAddr) -> Prefix {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Prefix::V4([o[0], o[1], o[2]])
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Prefix::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
        }
    }
}

/// One admitted connection's place in an [`Admission`]; give it back with
/// [`Admission::release`] (or hold a [`Slot`], which does it on drop).
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket {
    ip: IpAddr,
    /// Taken from the slots kept for newcomers.
    kept: bool,
}

impl Ticket {
    /// The (canonical) source address it was admitted for.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

/// The slot table of one stage: counts per address and prefix, general and kept slots in use.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    by_address: HashMap<IpAddr, usize>,
    by_prefix: HashMap<Prefix, usize>,
    general: usize,
    kept: usize,
}

impl Admission {
    /// An empty table. Panics on limits that fail [`Limits::validate`]: they are constants of
    /// the program, checked by its tests.
    pub fn new(limits: Limits) -> Self {
        if let Err(e) = limits.validate() {
            panic!("admission limits: {e}");
        }
        Admission { limits, by_address: HashMap::new(), by_prefix: HashMap::new(), general: 0, kept: 0 }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A slot for a connection from `ip`, or the bound it meets. The general pool first; the
    /// kept slots only for an address that holds nothing here.
    pub fn admit(&mut self, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = canonical(ip);
        let l = self.limits;
        let mine = self.of_address(ip);
        if mine >= l.per_address {
            return Err(Refusal::Address(l.per_address));
        }
        let prefix = prefix_of(ip);
        if self.by_prefix.get(&prefix).copied().unwrap_or(0) >= l.per_prefix {
            return Err(Refusal::Prefix(l.per_prefix));
        }
        let kept = if self.general < l.general() {
            false
        } else if mine == 0 && self.kept < l.kept_for_new {
            true
        } else {
            return Err(Refusal::Total(l.total));
        };
        if kept {
            self.kept += 1;
        } else {
            self.general += 1;
        }
        *self.by_address.entry(ip).or_default() += 1;
        *self.by_prefix.entry(prefix).or_default() += 1;
        Ok(Ticket { ip, kept })
    }

    /// Gives a slot back.
    pub fn release(&mut self, ticket: Ticket) {
        if ticket.kept {
            self.kept -= 1;
        } else {
            self.general -= 1;
        }
        dec(&mut self.by_address, &ticket.ip);
        dec(&mut self.by_prefix, &prefix_of(ticket.ip));
    }

    /// Slots in use.
    pub fn in_use(&self) -> usize {
        self.general + self.kept
    }

    /// Slots `ip` holds.
    pub fn of_address(&self, ip: IpAddr) -> usize {
        self.by_address.get(&canonical(ip)).copied().unwrap_or(0)
    }
}

fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = m.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            m.remove(k);
        }
    }
}

/// One [`Admission`] shared by an accept loop and the connections' tasks.
#[derive(Clone, Debug)]
pub struct Gate {
    table: Arc<Mutex<Admission>>,
}

/// A slot held in a [`Gate`]; released when dropped.
#[derive(Debug)]
pub struct Slot {
    table: Arc<Mutex<Admission>>,
    ticket: Option<Ticket>,
}

impl Gate {
    pub fn new(limits: Limits) -> Self {
        Gate { table: Arc::new(Mutex::new(Admission::new(limits))) }
    }

    /// A slot for `ip`, or why not (close the connection).
    pub fn enter(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        let ticket = self.lock().admit(ip)?;
        Ok(Slot { table: self.table.clone(), ticket: Some(ticket) })
    }

    pub fn in_use(&self) -> usize {
        self.lock().in_use()
    }

    pub fn limits(&self) -> Limits {
        self.lock().limits()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        // The table stays consistent whatever panicked while holding it: every update is one
        // step under the lock.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Slot {
    /// The (canonical) source address the slot was taken for.
    pub fn ip(&self) -> IpAddr {
        self.ticket.as_ref().map(Ticket::ip).unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.table.lock().unwrap_or_else(|p| p.into_inner()).release(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::from([a, b, c, d])
    }

    fn limits(total: usize, per_address: usize, per_prefix: usize, kept_for_new: usize) -> Limits {
        Limits { total, per_address, per_prefix, kept_for_new }
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let mut a = Admission::new(limits(100, 4, 50, 10));
        let held: Vec<_> = (0..10).map(|_| a.admit(v4(10, 0, 0, 2))).collect();
        assert_eq!(held.iter().filter(|r| r.is_ok()).count(), 4);
        assert_eq!(held[4], Err(Refusal::Address(4)));
        assert!(a.admit(v4(10, 0, 0, 3)).is_ok(), "its neighbour still gets in");
    }

    #[test]
    fn one_network_gets_its_share_whatever_its_addresses() {
        let mut a = Admission::new(limits(100, 4, 10, 10));
        let results: Vec<_> = (1..=40).map(|i| a.admit(v4(192, 0, 2, i))).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
        assert_eq!(results[10], Err(Refusal::Prefix(10)));
        assert!(a.admit(v4(192, 0, 3, 1)).is_ok(), "the next /24 is another network");
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        let r: Vec<_> = (1..=20).map(|i| a.admit(v6(i))).collect();
        assert_eq!(r.iter().filter(|r| r.is_ok()).count(), 10, "a /64 is one network");
        assert!(a.admit(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1])).is_ok(), "another /64");
    }

    #[test]
    fn a_newcomer_finds_a_kept_slot_when_many_networks_filled_the_rest() {
        // 17 networks x 16 = 272 attempts against 256 slots, 64 kept for newcomers.
        let mut a = Admission::new(limits(256, 16, 32, 64));
        let mut held = Vec::new();
        for net in 0..17u8 {
            for _ in 0..16 {
                if let Ok(t) = a.admit(v4(10, net, 0, 1)) {
                    held.push(t);
                }
            }
        }
        // 12 networks filled the 192 general slots; each later one got one kept slot.
        assert_eq!(held.len(), 192 + 5);
        assert_eq!(a.admit(v4(10, 16, 0, 1)), Err(Refusal::Total(256)), "a holder gets no second kept slot");
        let newcomer = a.admit(v4(127, 0, 0, 1)).expect("the member's first connection");
        assert!(newcomer.kept);
        assert_eq!(a.admit(v4(127, 0, 0, 1)), Err(Refusal::Total(256)), "its second waits for the general pool");
        // The kept slots run out only after as many distinct addresses hold one.
        for i in 0..58u8 {
            a.admit(v4(10, 100, i, 1)).unwrap();
        }
        assert_eq!(a.admit(v4(10, 200, 0, 1)), Err(Refusal::Total(256)));
        assert_eq!(a.in_use(), 256);
    }

    #[test]
    fn released_slots_are_taken_again_and_the_table_empties() {
        let mut a = Admission::new(limits(4, 2, 3, 1));
        let t1 = a.admit(v4(10, 0, 0, 1)).unwrap();
        let t2 = a.admit(v4(10, 0, 0, 1)).unwrap();
        let t3 = a.admit(v4(10, 0, 0, 2)).unwrap();
        let t4 = a.admit(v4(10, 0, 1, 1)).unwrap();
        assert!(t4.kept, "the general pool of 3 was full");
        assert_eq!(a.admit(v4(10, 0, 2, 1)), Err(Refusal::Total(4)));
        a.release(t4);
        let t5 = a.admit(v4(10, 0, 2, 1)).unwrap();
        assert!(t5.kept);
        for t in [t1, t2, t3, t5] {
            a.release(t);
        }
        assert_eq!(a.in_use(), 0);
        assert!(a.by_address.is_empty() && a.by_prefix.is_empty(), "no entry outlives its slots");
    }

    #[test]
    fn an_ipv4_address_over_an_ipv6_socket_shares_the_ipv4_count() {
        let mut a = Admission::new(limits(100, 2, 50, 10));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        a.admit(v4(192, 0, 2, 7)).unwrap();
        a.admit(mapped).unwrap();
        assert_eq!(a.admit(mapped), Err(Refusal::Address(2)));
        assert_eq!(prefix_of(mapped), Prefix::V4([192, 0, 2]));
    }

    #[test]
    fn limits_that_cannot_work_are_refused() {
        assert!(limits(10, 0, 5, 1).validate().is_err());
        assert!(limits(10, 6, 5, 1).validate().is_err());
        assert!(limits(10, 2, 11, 1).validate().is_err());
        assert!(limits(10, 2, 5, 10).validate().is_err());
        assert!(limits(10, 2, 5, 0).validate().is_ok());
    }

    #[test]
    fn a_gate_slot_is_released_on_drop() {
        let g = Gate::new(limits(3, 1, 3, 0));
        let s = g.enter(v4(10, 0, 0, 1)).unwrap();
        assert_eq!(s.ip(), v4(10, 0, 0, 1));
        assert_eq!(g.enter(v4(10, 0, 0, 1)).unwrap_err(), Refusal::Address(1));
        drop(s);
        assert_eq!(g.in_use(), 0);
        assert!(g.enter(v4(10, 0, 0, 1)).is_ok());
    }

    #[test]
    fn the_allowances_are_short() {
        // The figures docs/SECURITY.md quotes; a silent connection costs at most a second.
        assert_eq!((FIRST_BYTE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS), (1_000, 2_000));
    }
}
