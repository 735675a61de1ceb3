//! A tracker node as a library: one Raft node of the tracker cluster (openraft on sled) serving
//! the client API, on listeners its caller bound, until its caller says stop.
//!
//! ```text
//! let node = NodeConfig::prepare(cluster, id).await?;     // the data_dir held, TLS loaded
//! let listeners = Listeners::bind(cluster.require_node(id)?)?;   // or port 0 in a test
//! tracker_node::run(node, listeners, shutdown).await?;     // until `shutdown` is cancelled
//! ```
//!
//! The binary (main.rs) binds the cluster file's addresses and cancels on SIGINT/SIGTERM;
//! testkit's in-process clusters bind port 0 and run several nodes in one process. Nothing a
//! node sets up here is global to the process, with one exception, the umask (`datadir`: a
//! node's files are its user's only). What is global stays the binary's to set up, once:
//! logging (`logging::init`), glibc's malloc arenas and the API threads' priority (`sched`).

mod accept;
mod api;
mod datadir;
pub mod logging;
mod metrics;
mod node;
mod raft_net;
pub mod sched;
pub mod tls;

use std::sync::Arc;

use proto::cluster::ClusterConfig;
use raft_store::NodeId;
use tokio_util::sync::CancellationToken;

pub use node::{member_entry, Listeners};

/// Why a node did not start. `Usage` is the operator's to fix in the cluster file or the files it
/// names (the binary exits 2); `Failed` is anything else (exit 1). The message is one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl StartError {
    /// The binary's exit code for it.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Usage(_) => 2,
            StartError::Failed(_) => 1,
        }
    }
}

/// A node ready to listen: its place in the cluster file, its hold on its data_dir (released
/// when the node stops, or when this is dropped), and its TLS identity.
pub struct NodeConfig {
    cluster: Arc<ClusterConfig>,
    id: NodeId,
    tls: tls::NodeTls,
    _data_dir: datadir::DataDirLock,
}

impl NodeConfig {
    /// Takes node `id`'s data_dir (another node on it, or one that is a file, read-only or open
    /// to other users, is refused with one line naming it), then loads its TLS files, creating
    /// them on a first start when the cluster file names none. Before anything listens.
    pub async fn prepare(cluster: Arc<ClusterConfig>, id: NodeId) -> Result<Self, StartError> {
        let data_dir = cluster.require_node(id).map_err(|e| StartError::Usage(e.to_string()))?.data_dir.clone();
        let lock = datadir::lock(&data_dir).map_err(StartError::Failed)?;
        // Off the runtime's threads: it may wait (bounded) for another node creating the CA.
        let tls_cfg = cluster.clone();
        let tls = match tokio::task::spawn_blocking(move || tls::for_node(&tls_cfg, id)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e @ tls::SetupError::Config(_))) => return Err(StartError::Usage(format!("{e:#}"))),
            Ok(Err(e)) => return Err(StartError::Failed(format!("{e:#}"))),
            Err(e) => return Err(StartError::Failed(format!("setting up TLS failed: {e}"))),
        };
        Ok(NodeConfig { cluster, id, tls, _data_dir: lock })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn cluster(&self) -> &Arc<ClusterConfig> {
        &self.cluster
    }
}

/// Runs the node on `listeners` until `shutdown` is cancelled, then shuts it down in order
/// (stop Raft, stop serving, flush sled) and returns. Dropping the future instead stops the
/// node at once, without that order, as a crash would (the data_dir is released once the
/// node's tasks are gone).
pub async fn run(config: NodeConfig, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
    let NodeConfig { cluster, id, tls, _data_dir } = config;
    node::run(cluster, id, tls, listeners, shutdown).await
}
