//! Admission to the piece server, so that no one address, network or user can crowd out the
//! others: the project's admission policy (`admission`) applied to the piece port, plus the
//! bound per user that only the piece port has.
//!
//! A connection holds a *handshake slot* from accept until its ticket is checked, then a
//! *serving slot* for as long as it asks for something. Handshake slots are bounded in total,
//! per remote address and per /24 (/64), and part of the total is kept for addresses that hold
//! none (so attackers on many networks who fill the rest still leave a member its first
//! connection); serving slots, which only ticket holders reach, are bounded in total, per
//! remote address and per user (the ticket's). A connection over a
//! bound is closed at once (before TLS for a handshake slot, with `error` 8 after the handshake
//! for a serving slot), so the accept loop never waits and idle connections cost their owners
//! slots, not everyone else. A connection must send its first byte within
//! [`FIRST_BYTE_TIMEOUT_MS`] and finish TLS and its handshake message within
//! [`HELLO_TIMEOUT_MS`] of being accepted.
//!
//! The decisions are plain data (no sockets) and unit-tested below and in `admission`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use admission::{Gate, Limits, Refusal, Slot};

/// Connections in TLS or in their handshake. 16 per address (a downloader opens one per file
/// it fetches here), 32 per network; 64 of the 256 kept for addresses holding none.
pub const HANDSHAKE_LIMITS: Limits = Limits { total: 256, per_address: 16, per_prefix: 32, kept_for_new: 64 };
/// Connections served (ticket checked): 16 per address. Only ticket holders (members) get
/// here, each user at most `SERVING_PER_USER`, so the per-network and newcomer shares that
/// guard the unauthenticated stage are not needed: a network's or the total's whole 64 may go
/// to members behind a few addresses (a NAT).
pub const SERVING_LIMITS: Limits = Limits { total: 64, per_address: 16, per_prefix: 64, kept_for_new: 0 };
/// Connections served per user (the ticket's), whatever their addresses.
pub const SERVING_PER_USER: usize = 8;
/// A connection that has sent nothing this long after it was accepted is closed.
pub const FIRST_BYTE_TIMEOUT_MS: u64 = admission::FIRST_BYTE_TIMEOUT_MS;
/// TLS and the client's handshake message (sent right behind TLS's Finished) must be in this
/// long after the connection was accepted.
pub const HELLO_TIMEOUT_MS: u64 = admission::HANDSHAKE_TIMEOUT_MS;

// A connection's first byte comes well within its allowance for TLS and the handshake.
const _: () = assert!(FIRST_BYTE_TIMEOUT_MS < HELLO_TIMEOUT_MS);

/// Bounds of the piece server (docs/PROTOCOL.md, "Limits").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLimits {
    pub handshaking: Limits,
    pub serving: Limits,
    pub serving_per_user: usize,
}

impl Default for SlotLimits {
    fn default() -> Self {
        SlotLimits { handshaking: HANDSHAKE_LIMITS, serving: SERVING_LIMITS, serving_per_user: SERVING_PER_USER }
    }
}

/// The server's slot tables.
#[derive(Clone)]
pub struct Slots {
    limits: SlotLimits,
    handshaking: Gate,
    serving: Gate,
    /// Serving slots per user. Locked before `serving` whenever both are (one order).
    by_user: Arc<Mutex<HashMap<String, usize>>>,
}

/// Why a serving slot was refused: the `error` 8 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("this peer serves {0} connections, its most; try again later")]
    Total(usize),
    #[error("this peer serves {0} connections from your address already, its most per address")]
    Address(usize),
    #[error("this peer serves {0} connections from your network already, its most per network")]
    Network(usize),
    #[error("this peer serves {0} connections of user {1} already, its most per user")]
    User(usize, String),
}

impl From<Refusal> for Full {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Total(n) => Full::Total(n),
            Refusal::Address(n) => Full::Address(n),
            Refusal::Prefix(n) => Full::Network(n),
        }
    }
}

/// A handshake slot; released on drop.
pub struct HandshakeSlot {
    slot: Slot,
}

/// A serving slot; released on drop.
pub struct ServingSlot {
    _slot: Slot,
    by_user: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Slots {
    pub fn new(limits: SlotLimits) -> Self {
        Slots {
            limits,
            handshaking: Gate::new(limits.handshaking),
            serving: Gate::new(limits.serving),
            by_user: Arc::default(),
        }
    }

    /// A handshake slot for a connection from `ip`, or the bound it meets: close it now.
    pub fn handshake(&self, ip: IpAddr) -> Result<HandshakeSlot, Refusal> {
        self.handshaking.enter(ip).map(|slot| HandshakeSlot { slot })
    }

    /// Trades a handshake slot for a serving slot for `user`.
    pub fn serve(&self, handshake: HandshakeSlot, user: &str) -> Result<ServingSlot, Full> {
        let ip = handshake.slot.ip();
        drop(handshake);
        let mut by_user = self.by_user.lock().unwrap_or_else(|p| p.into_inner());
        let slot = self.serving.enter(ip)?;
        let n = by_user.entry(user.to_string()).or_default();
        if *n >= self.limits.serving_per_user {
            return Err(Full::User(self.limits.serving_per_user, user.to_string()));
        }
        *n += 1;
        Ok(ServingSlot { _slot: slot, by_user: self.by_user.clone(), user: user.to_string() })
    }

    /// (handshaking, serving) now, for logs and tests.
    pub fn in_use(&self) -> (usize, usize) {
        (self.handshaking.in_use(), self.serving.in_use())
    }
}

impl Drop for ServingSlot {
    fn drop(&mut self) {
        let mut by_user = self.by_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn limits(total: usize, per_address: usize, per_prefix: usize, kept_for_new: usize) -> Limits {
        Limits { total, per_address, per_prefix, kept_for_new }
    }

    #[test]
    fn the_shipped_bounds_hold_together() {
        let l = SlotLimits::default();
        l.handshaking.validate().unwrap();
        l.serving.validate().unwrap();
        assert!(l.serving_per_user <= l.serving.per_address);
    }

    #[test]
    fn one_address_cannot_take_every_handshake_slot() {
        let s = Slots::new(SlotLimits { handshaking: limits(20, 4, 10, 0), ..Default::default() });
        let mine: Vec<_> = (0..10).filter_map(|_| s.handshake(ip(2)).ok()).collect();
        assert_eq!(mine.len(), 4, "per address");
        assert!(s.handshake(ip(1)).is_ok(), "another address still gets in");
        drop(mine);
        assert_eq!(s.in_use(), (0, 0));
        assert!(s.handshake(ip(2)).is_ok(), "released on drop");
    }

    #[test]
    fn many_networks_filling_the_handshake_slots_leave_a_newcomer_its_first() {
        let s = Slots::new(SlotLimits::default());
        let mut held = Vec::new();
        for net in 0..20u8 {
            for _ in 0..16 {
                held.extend(s.handshake(IpAddr::from([127, 20, net, 1])).ok());
            }
        }
        assert!(held.len() < 20 * 16, "the attack met the total");
        assert!(s.handshake(ip(1)).is_ok(), "the member's connection still gets a slot");
    }

    #[test]
    fn serving_slots_are_bounded_per_address_per_user_and_in_total() {
        let s = Slots::new(SlotLimits {
            handshaking: limits(100, 100, 100, 0),
            serving: limits(5, 3, 5, 0),
            serving_per_user: 2,
        });
        let a1 = s.serve(s.handshake(ip(1)).unwrap(), "mallory").unwrap();
        let a2 = s.serve(s.handshake(ip(1)).unwrap(), "mallory").unwrap();
        assert_eq!(s.serve(s.handshake(ip(2)).unwrap(), "mallory").err(), Some(Full::User(2, "mallory".into())));
        let _b = s.serve(s.handshake(ip(1)).unwrap(), "bob").unwrap();
        assert_eq!(s.serve(s.handshake(ip(1)).unwrap(), "carol").err(), Some(Full::Address(3)));
        // From other networks, so that the total is the bound they meet.
        let elsewhere = |net: u8| IpAddr::from([127, 0, net, 1]);
        let _c = s.serve(s.handshake(elsewhere(3)).unwrap(), "carol").unwrap();
        let _d = s.serve(s.handshake(elsewhere(4)).unwrap(), "dave").unwrap();
        assert_eq!(s.serve(s.handshake(elsewhere(5)).unwrap(), "erin").err(), Some(Full::Total(5)));
        assert_eq!(s.in_use(), (0, 5), "a refused trade gives its handshake slot back");
        drop((a1, a2));
        let _m = s.serve(s.handshake(ip(2)).unwrap(), "mallory").expect("released on drop");
        assert_eq!(s.in_use(), (0, 4));
    }

    #[test]
    fn serving_slots_are_bounded_per_network() {
        let s = Slots::new(SlotLimits {
            handshaking: limits(100, 100, 100, 0),
            serving: limits(10, 2, 3, 0),
            serving_per_user: 10,
        });
        let held: Vec<_> = (1..=3).map(|i| s.serve(s.handshake(ip(i)).unwrap(), "u").unwrap()).collect();
        assert_eq!(s.serve(s.handshake(ip(9)).unwrap(), "u").err(), Some(Full::Network(3)));
        assert!(s.serve(s.handshake(IpAddr::from([127, 0, 1, 1])).unwrap(), "u").is_ok());
        drop(held);
    }
}
