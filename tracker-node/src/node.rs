//! One tracker node: opens its storage, starts openraft, serves the Raft RPCs on its `raft`
//! address and the client API on its `api` address, initialises a fresh cluster by itself,
//! and shuts down in order (stop serving, stop Raft, flush sled) when told to.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use openraft::SnapshotPolicy;
use proto::cluster::ClusterConfig;
use raft_store::{open_store, NodeId, Raft, StoreOptions, TrackerNode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::metrics::Metrics;
use crate::raft_net;

/// Log entries kept below a snapshot, so a follower that lags a little catches up from the
/// log instead of receiving a whole snapshot.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1000;

/// Most entries in one append RPC (the byte bound usually cuts first).
pub const MAX_PAYLOAD_ENTRIES: u64 = 512;
/// Time limit of one snapshot chunk RPC, in milliseconds.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;

pub fn raft_config(cfg: &ClusterConfig) -> anyhow::Result<openraft::Config> {
    let c = openraft::Config {
        cluster_name: "tracker".into(),
        heartbeat_interval: cfg.heartbeat_ms,
        election_timeout_min: cfg.election_timeout_ms.0,
        election_timeout_max: cfg.election_timeout_ms.1,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs_threshold),
        max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT.min(cfg.snapshot_logs_threshold),
        // Entries are a few hundred bytes; the network layer also cuts every batch at
        // `MAX_APPEND_BATCH_BYTES` (raft_net::wire), so a lagging follower catches up in
        // large, bounded steps.
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        // Per chunk of `SNAPSHOT_CHUNK_BYTES`; the last chunk also covers the follower's
        // install (parsing the whole state).
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        #[allow(deprecated)]
        snapshot_max_chunk_size: raft_net::SNAPSHOT_CHUNK_BYTES,
        ..Default::default()
    };
    Ok(c.validate()?)
}

pub fn tracker_node(n: &proto::cluster::NodeConfig) -> TrackerNode {
    TrackerNode { api: n.api.to_string(), raft: n.raft.to_string() }
}

/// Worker threads of the Raft runtime.
const RAFT_WORKER_THREADS: usize = 2;

/// The Raft runtime, shut down without blocking when the node stops (a runtime may not be
/// dropped from inside another one's async context).
struct RaftRuntime(Option<tokio::runtime::Runtime>);

impl RaftRuntime {
    fn new() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RAFT_WORKER_THREADS)
            .thread_name("raft")
            .enable_all()
            .build()
            .context("cannot start the Raft runtime")?;
        Ok(RaftRuntime(Some(rt)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("the runtime lives until drop").handle()
    }
}

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs node `id` until `shutdown` is cancelled.
pub async fn run(cfg: Arc<ClusterConfig>, id: NodeId, shutdown: CancellationToken) -> anyhow::Result<()> {
    let me = cfg.require_node(id)?.clone();
    let (log, sm) = open_store(&StoreOptions::new(&me.data_dir))
        .with_context(|| format!("cannot open the data of node {id} in {}", me.data_dir.display()))?;
    let config = Arc::new(raft_config(&cfg)?);
    let network = raft_net::client::NetworkFactory::new(
        cfg.secret.clone(),
        raft_net::client::BackoffMs::for_timings(cfg.heartbeat_ms, cfg.election_timeout_ms.0),
    )?;
    // Raft runs on a runtime of its own: its core, replication streams and RPC server never
    // queue behind API work, and the API's threads run at a lower priority (main.rs), so a
    // flood of API calls cannot delay heartbeats into elections.
    let raft_rt = RaftRuntime::new()?;
    let raft = {
        let (log, sm) = (log.clone(), sm.clone());
        raft_rt.handle().spawn(async move { Raft::new(id, config, network, log, sm).await }).await??
    };

    let raft_listener = std::net::TcpListener::bind(me.raft)
        .with_context(|| format!("node {id} cannot listen on its raft address {}", me.raft))?;
    raft_listener.set_nonblocking(true)?;
    let api_listener = TcpListener::bind(me.api)
        .await
        .with_context(|| format!("node {id} cannot listen on its api address {}", me.api))?;

    let raft_router = raft_net::server::router(raft.clone(), cfg.secret.clone());
    let state = AppState {
        id,
        raft: raft.clone(),
        sm: sm.clone(),
        log: log.clone(),
        config: cfg.clone(),
        metrics: Arc::new(Metrics::default()),
        api_addr: me.api.to_string(),
        passwords: Arc::new(api::password_pool::PasswordPool::for_this_machine()),
        throttle: Arc::new(api::throttle::LoginThrottle::default()),
    };
    tracing::info!(
        workers = state.passwords.workers,
        queue = state.passwords.queue_len,
        "password hashing runs on a bounded pool at low priority"
    );
    let api_router = api::router(state);

    let servers = CancellationToken::new();
    let raft_server = raft_rt.handle().spawn({
        let stop = servers.clone();
        async move {
            let listener = TcpListener::from_std(raft_listener)?;
            axum::serve(listener, raft_router).with_graceful_shutdown(stop.cancelled_owned()).await
        }
    });
    let api_server = tokio::spawn({
        let stop = servers.clone();
        let service = api_router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        async move { axum::serve(api_listener, service).with_graceful_shutdown(stop.cancelled_owned()).await }
    });
    tracing::info!(id, api = %me.api, raft = %me.raft, data_dir = %me.data_dir.display(), "tracker node started");

    if !raft.is_initialized().await? {
        let voters = cfg.voters_on_first_start();
        if voters.contains(&id) {
            // Every initial voter initialises with the same membership: safe, and no node has
            // to wait for a particular other one to come up first.
            let members: BTreeMap<NodeId, TrackerNode> = voters
                .iter()
                .filter_map(|v| cfg.node(*v).map(|n| (*v, tracker_node(n))))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(?voters, "initialised a new cluster"),
                Err(e) => tracing::info!("not initialising: {e}"),
            }
        } else {
            tracing::info!("not an initial voter: waiting to be added (tracker-node members add --id {id})");
        }
    }

    shutdown.cancelled().await;
    tracing::info!(id, "shutting down");
    // Raft first, so no RPC is half-applied when the servers stop answering.
    if let Err(e) = raft.shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
    servers.cancel();
    let _ = raft_server.await;
    let _ = api_server.await;
    log.flush_blocking()?;
    tracing::info!(id, "stopped cleanly");
    Ok(())
}
