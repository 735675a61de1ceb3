//! Node-to-node Raft RPCs (append, vote, snapshot chunks) as HTTP/JSON on each node's `raft`
//! address: the client side (`client`, openraft's `RaftNetworkFactory`) and the server side
//! (`server`, an axum router that hands requests to the local `Raft`).

pub mod client;
pub mod server;

/// Largest Raft RPC body, in bytes: a batch of entries or one snapshot chunk.
pub const MAX_RAFT_BODY_BYTES: usize = 64 * 1024 * 1024;
