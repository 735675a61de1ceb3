//! Types shared by the tracker nodes and the peers: the client API's request and
//! response bodies, the cluster file, and the peer-to-peer piece protocol.
//!
//! Architecture Invariant: this crate knows nothing about tokio, openraft or sled, and does
//! no network I/O: bytes and strings in, typed values out. The one exception to "no I/O" is
//! `ClusterConfig::load`, which reads the cluster file.

pub mod api;
pub mod cluster;
pub mod control;
pub mod error;
pub mod names;
pub mod piece;
pub mod stdout;
pub mod ticket;
