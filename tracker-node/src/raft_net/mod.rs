//! Node-to-node Raft RPCs (append, vote, snapshot chunks) over HTTP with MessagePack bodies,
//! on mutually authenticated TLS 1.3 (crate::tls), on each node's `raft` address: the client
//! side (`client`, openraft's `RaftNetworkFactory`), the accept loop that admits only nodes of
//! the cluster (`listener`), the server side (`server`, an axum router that hands requests to
//! the local `Raft`), and the wire format between them (`wire`: byte-bounded append batches,
//! raw snapshot chunks).

pub mod client;
pub mod listener;
pub mod server;
pub mod wire;

pub use wire::SNAPSHOT_CHUNK_BYTES;
