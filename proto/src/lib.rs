//! Types shared by the tracker nodes and the peers: the client API's request and
//! response bodies, the cluster file, and the peer-to-peer piece protocol.
//!
//! Architecture Invariant: this crate knows nothing about tokio, openraft or sled, and does
//! no network I/O: bytes and strings in, typed values out. The one exception to "no I/O" is
//! `ClusterConfig::load`, which reads the cluster file.

/// `Display` for a type as its wire name, `as_str()`, padded like a `str` (so `{:<10}` lines
/// up in a table); one impl for every named enum of the contract.
macro_rules! display_as_str {
    ($($t:ty),+ $(,)?) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    )+};
}

pub mod api;
pub mod cluster;
pub mod control;
pub mod error;
pub mod names;
pub mod piece;
pub mod stdout;
pub mod ticket;
