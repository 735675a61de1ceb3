//! Admission to the piece server, so that no one address or user can crowd out the others.
//!
//! A connection holds a *handshake slot* from accept until its ticket is checked (at most
//! `HANDSHAKE_TIMEOUT_MS`), then a *serving slot* for as long as it asks for something. Both
//! are bounded in total and per remote IP address; serving slots are also bounded per user
//! (the ticket's). A connection over a bound is closed at once (before TLS for a handshake
//! slot, with `error` 8 after the handshake for a serving slot), so the accept loop never
//! waits and 1 000 idle connections cost their owner slots, not everyone else.
//!
//! The decisions are plain data (no sockets) and unit-tested below.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Bounds of the piece server (docs/PROTOCOL.md, "Limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLimits {
    pub handshaking: usize,
    pub handshaking_per_ip: usize,
    pub serving: usize,
    pub serving_per_ip: usize,
    pub serving_per_user: usize,
}

impl Default for SlotLimits {
    fn default() -> Self {
        SlotLimits { handshaking: 256, handshaking_per_ip: 16, serving: 64, serving_per_ip: 16, serving_per_user: 8 }
    }
}

#[derive(Default)]
struct Counts {
    handshaking: usize,
    handshaking_by_ip: HashMap<IpAddr, usize>,
    serving: usize,
    serving_by_ip: HashMap<IpAddr, usize>,
    serving_by_user: HashMap<String, usize>,
}

/// The server's slot table.
#[derive(Clone)]
pub struct Slots {
    limits: SlotLimits,
    counts: Arc<Mutex<Counts>>,
}

/// Why a serving slot was refused: the `error` 8 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("this peer serves {0} connections, its most; try again later")]
    Total(usize),
    #[error("this peer serves {0} connections from your address already, its most per address")]
    Address(usize),
    #[error("this peer serves {0} connections of user {1} already, its most per user")]
    User(usize, String),
}

/// A handshake slot; released on drop.
pub struct HandshakeSlot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

/// A serving slot; released on drop.
pub struct ServingSlot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
    user: String,
}

fn dec<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = m.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            m.remove(k);
        }
    }
}

impl Slots {
    pub fn new(limits: SlotLimits) -> Self {
        Slots { limits, counts: Arc::default() }
    }

    /// A handshake slot for a connection from `ip`, or `None`: close it now.
    pub fn handshake(&self, ip: IpAddr) -> Option<HandshakeSlot> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let per_ip = c.handshaking_by_ip.get(&ip).copied().unwrap_or(0);
        if c.handshaking >= self.limits.handshaking || per_ip >= self.limits.handshaking_per_ip {
            return None;
        }
        c.handshaking += 1;
        *c.handshaking_by_ip.entry(ip).or_default() += 1;
        Some(HandshakeSlot { counts: self.counts.clone(), ip })
    }

    /// Trades a handshake slot for a serving slot for `user`.
    pub fn serve(&self, handshake: HandshakeSlot, user: &str) -> Result<ServingSlot, Full> {
        let ip = handshake.ip;
        drop(handshake);
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.serving >= self.limits.serving {
            return Err(Full::Total(self.limits.serving));
        }
        if c.serving_by_ip.get(&ip).copied().unwrap_or(0) >= self.limits.serving_per_ip {
            return Err(Full::Address(self.limits.serving_per_ip));
        }
        if c.serving_by_user.get(user).copied().unwrap_or(0) >= self.limits.serving_per_user {
            return Err(Full::User(self.limits.serving_per_user, user.to_string()));
        }
        c.serving += 1;
        *c.serving_by_ip.entry(ip).or_default() += 1;
        *c.serving_by_user.entry(user.to_string()).or_default() += 1;
        Ok(ServingSlot { counts: self.counts.clone(), ip, user: user.to_string() })
    }

    /// (handshaking, serving) now, for logs and tests.
    pub fn in_use(&self) -> (usize, usize) {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (c.handshaking, c.serving)
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.handshaking -= 1;
        dec(&mut c.handshaking_by_ip, &self.ip);
    }
}

impl Drop for ServingSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.serving -= 1;
        dec(&mut c.serving_by_ip, &self.ip);
        dec(&mut c.serving_by_user, &self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_address_cannot_take_every_handshake_slot() {
        let s = Slots::new(SlotLimits { handshaking: 20, handshaking_per_ip: 4, ..Default::default() });
        let mine: Vec<_> = (0..10).filter_map(|_| s.handshake(ip(2))).collect();
        assert_eq!(mine.len(), 4, "per address");
        assert!(s.handshake(ip(1)).is_some(), "another address still gets in");
        drop(mine);
        assert_eq!(s.in_use(), (0, 0));
        assert!(s.handshake(ip(2)).is_some(), "released on drop");
    }

    #[test]
    fn the_total_bounds_many_addresses() {
        let s = Slots::new(SlotLimits { handshaking: 3, handshaking_per_ip: 3, ..Default::default() });
        let held: Vec<_> = (1..=3).filter_map(|i| s.handshake(ip(i))).collect();
        assert_eq!(held.len(), 3);
        assert!(s.handshake(ip(9)).is_none());
    }

    #[test]
    fn serving_slots_are_bounded_per_address_per_user_and_in_total() {
        let s = Slots::new(SlotLimits {
            handshaking: 100,
            handshaking_per_ip: 100,
            serving: 5,
            serving_per_ip: 3,
            serving_per_user: 2,
        });
        let a1 = s.serve(s.handshake(ip(1)).unwrap(), "mallory").unwrap();
        let a2 = s.serve(s.handshake(ip(1)).unwrap(), "mallory").unwrap();
        assert_eq!(s.serve(s.handshake(ip(2)).unwrap(), "mallory").err(), Some(Full::User(2, "mallory".into())));
        let _b = s.serve(s.handshake(ip(1)).unwrap(), "bob").unwrap();
        assert_eq!(s.serve(s.handshake(ip(1)).unwrap(), "carol").err(), Some(Full::Address(3)));
        let _c = s.serve(s.handshake(ip(3)).unwrap(), "carol").unwrap();
        let _d = s.serve(s.handshake(ip(4)).unwrap(), "dave").unwrap();
        assert_eq!(s.serve(s.handshake(ip(5)).unwrap(), "erin").err(), Some(Full::Total(5)));
        assert_eq!(s.in_use(), (0, 5), "a refused trade gives its handshake slot back");
        drop((a1, a2));
        assert!(s.serve(s.handshake(ip(2)).unwrap(), "mallory").is_ok());
    }
}
