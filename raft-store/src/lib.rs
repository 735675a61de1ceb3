//! The tracker's replicated state machine and its openraft storage on sled.
//!
//! - [`command`]: what goes into the Raft log and what applying it answers.
//! - [`state`]: the tracker state and its pure, deterministic `apply`.
//! - [`storage`]: openraft's storage-v2 traits implemented on sled (log, vote, committed) and
//!   on snapshot files beside it (the state machine is rebuilt from the last snapshot plus the
//!   committed log tail).
//!
//! Architecture Invariant: this crate knows nothing about HTTP, peers or the network; its one
//! workspace dependency is `proto`, for the name rules shared with the peer.
//! Architecture Invariant: `state` does no I/O and reads no clock; time arrives in commands.

pub mod command;
pub mod error;
pub use proto::names;
pub mod state;
pub mod storage;

use serde::{Deserialize, Serialize};

pub use command::{Command, ErrorCode, FileMeta, Refusal, Reply, Request, Response, Sha1Digest};
pub use error::StoreError;
pub use state::TrackerState;
pub use storage::{open_store, LogStore, StateMachineStore, StoreOptions};

/// A tracker node's id, as listed in cluster.toml.
pub type NodeId = u64;

/// What the cluster knows about a node: where clients and other nodes reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerNode {
    /// Client API address (`host:port`).
    pub api: String,
    /// Node-to-node Raft address (`host:port`).
    pub raft: String,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of the tracker.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = TrackerNode,
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, TrackerNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, TrackerNode>;
pub type StorageError = openraft::StorageError<NodeId>;
