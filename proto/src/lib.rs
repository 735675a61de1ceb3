//! Types shared by the tracker nodes and the peers: the client API's request and
//! response bodies, the cluster file, and the peer-to-peer piece protocol.
//!
//! Architecture Invariant: this crate does no I/O and knows nothing about tokio,
//! openraft or sled. Bytes and strings in, typed values out.

pub mod api;
pub mod cluster;
pub mod piece;
