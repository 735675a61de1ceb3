//! One tracker node: opens its storage, starts openraft, serves the Raft RPCs and the client
//! API on the listeners its caller bound (`Listeners`: the cluster file's `raft` and `api`
//! addresses in the binary, port 0 in in-process tests), initialises a fresh cluster by itself
//! (unless another listed node already runs one: then it waits to be added), stops campaigning
//! once it finds it was removed, and shuts down in order (stop Raft, stop serving, flush sled)
//! when told to. Every task it starts is owned (`Started`), so dropping `run` leaves nothing of
//! the node running.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use openraft::SnapshotPolicy;
use proto::cluster::ClusterConfig;
use raft_store::{open_store, NodeId, Raft, StoreOptions, TrackerNode};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracker_client::admin::NodesHttp;

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
        // Snapshots are triggered by `schedule_snapshots`, which scales the interval with the
        // state's size.
        snapshot_policy: SnapshotPolicy::Never,
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

/// Node `n` of the cluster file as a member of the Raft membership.
pub fn member_entry(n: &proto::cluster::NodeConfig) -> TrackerNode {
    TrackerNode { api: n.api.to_string(), raft: n.raft.to_string() }
}

/// How often the snapshot scheduler looks at the log.
const SNAPSHOT_CHECK_MS: u64 = 250;

/// Whether a snapshot is due: after `threshold` entries since the last one, and never before
/// a quarter of the state's records, so that the work of snapshotting (proportional to the
/// state) stays a bounded cost per entry however large the state grows.
pub fn snapshot_due(entries_since: u64, state_records: u64, threshold: u64) -> bool {
    entries_since >= threshold.max(state_records / 4)
}

/// Triggers snapshots by `snapshot_due`, and gives the memory freed around a built snapshot (the
/// nodes the live state copied while it was written, the purged log) back to the system.
async fn schedule_snapshots(raft: Raft, sm: raft_store::StateMachineStore, threshold: u64, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(SNAPSHOT_CHECK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_snapshot = raft.metrics().borrow().snapshot;
    // The applied index at the last trigger. Counting from it as well as from the last snapshot
    // keeps one due snapshot from being triggered twice: every big snapshot used to be followed
    // by a second one 1-4 s later, at the same index on all three nodes.
    let mut last_trigger = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let m = raft.metrics().borrow().clone();
        if m.snapshot != last_snapshot {
            last_snapshot = m.snapshot;
            crate::sched::release_free_memory();
        }
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let base = m.snapshot.map(|l| l.index).unwrap_or(0).max(last_trigger);
        let since = applied.saturating_sub(base);
        let records = sm.read(|d| d.state.record_count());
        if snapshot_due(since, records, threshold) {
            tracing::info!(applied, since, records, "snapshot due");
            last_trigger = applied;
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::warn!("cannot trigger a snapshot: {e}");
            }
        }
    }
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

/// Keeps the peer liveness table in step with this node's role (the grace period of a new
/// leader starts when it becomes leader, not at its first liveness call), and counts the
/// changes of leader this node sees (`tracker_leader_changes_seen_total`).
async fn follow_leadership(
    raft: Raft,
    id: NodeId,
    liveness: Arc<api::liveness::Liveness>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut rx = raft.metrics();
    let mut last_leader: Option<Option<NodeId>> = None;
    loop {
        let (leader_term, leader) = {
            let m = rx.borrow_and_update();
            ((m.current_leader == Some(id)).then_some(m.current_term), m.current_leader)
        };
        liveness.sync(leader_term, liveness.now_ms());
        // etcd counts a change to another leader or to none; the first leader seen counts too.
        if last_leader.is_some_and(|l| l != leader) || (last_leader.is_none() && leader.is_some()) {
            metrics.leader_changed();
        }
        last_leader = Some(leader);
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

/// Logs this node's state changes at info: its role, the leader it follows, elections, and
/// the voters and learners (the default filter holds openraft's own lines at warn).
async fn log_state_changes(raft: Raft, id: NodeId, stop: CancellationToken) {
    let mut rx = raft.metrics();
    let mut last: Option<(openraft::ServerState, Option<NodeId>, u64)> = None;
    let mut last_members: Option<(Vec<NodeId>, Vec<NodeId>)> = None;
    // (first election, elections, last summary) while no leader is elected.
    let mut campaign: Option<(std::time::Instant, u64, std::time::Instant)> = None;
    loop {
        {
            // Copied out, so the watch is not held while a line is written (openraft's core
            // waits for it to publish the next metrics).
            let (now, members): (_, (Vec<NodeId>, Vec<NodeId>)) = {
                let m = rx.borrow_and_update();
                let membership = m.membership_config.membership();
                (
                    (m.state, m.current_leader, m.current_term),
                    (membership.voter_ids().collect(), membership.learner_ids().collect()),
                )
            };
            if last != Some(now) {
                let (state, leader, term) = now;
                let was = last.map(|l| l.0);
                if state != openraft::ServerState::Candidate && leader.is_some() {
                    campaign = None;
                }
                match state {
                    openraft::ServerState::Leader => tracing::info!(id, term, "became leader"),
                    openraft::ServerState::Candidate => match &mut campaign {
                        None => {
                            tracing::info!(id, term, "candidate: started an election");
                            let now = std::time::Instant::now();
                            campaign = Some((now, 1u64, now));
                        }
                        // Without a quorum a node campaigns every election timeout: one
                        // line, then a summary at most every 10 s.
                        Some((since, count, last_report)) => {
                            *count += 1;
                            if last_report.elapsed() >= crate::logging::UNREACHABLE_SUMMARY_EVERY {
                                *last_report = std::time::Instant::now();
                                tracing::info!(
                                    id,
                                    term,
                                    "still no leader after {} s ({count} elections)",
                                    since.elapsed().as_secs()
                                );
                            }
                        }
                    },
                    openraft::ServerState::Follower | openraft::ServerState::Learner => match leader {
                        Some(l) if last.map(|x| x.1) != Some(Some(l)) || was != Some(state) => {
                            let role = if state == openraft::ServerState::Learner { "learner" } else { "follower" };
                            tracing::info!(id, term, leader = l, "{role} of node {l}")
                        }
                        None if was == Some(openraft::ServerState::Leader) => {
                            tracing::info!(id, term, "stepped down: no longer leader")
                        }
                        _ => {}
                    },
                    openraft::ServerState::Shutdown => {}
                }
                last = Some(now);
            }
            if last_members.as_ref() != Some(&members) {
                if !members.0.is_empty() || last_members.is_some() {
                    tracing::info!(voters = ?members.0, learners = ?members.1, "membership");
                }
                last_members = Some(members);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

/// Whole time a node with an empty data_dir gives the other listed nodes to say whether the
/// cluster already runs, before it initialises one.
const JOIN_CHECK_MS: u64 = 2_000;

/// Whether a node's status says it belongs to a cluster that has been initialised: it has a
/// membership, or has seen a term or a leader. A node waiting to join has none of them.
fn is_initialised(st: &proto::api::NodeStatus) -> bool {
    !st.voters.is_empty() || st.term > 0 || st.leader.is_some()
}

/// Asks the other listed nodes (`GET /v1/status` on their API, in parallel, at most
/// [`JOIN_CHECK_MS`] in all) whether the cluster already runs. `Some((node, its voters))` for
/// the first one that is initialised; `None` when none answers in time or none is (the nodes of
/// a new cluster starting together: each initialises with the same membership, which is safe).
async fn running_cluster(cfg: &ClusterConfig, id: NodeId) -> Option<(NodeId, Vec<NodeId>)> {
    let budget = std::time::Duration::from_millis(JOIN_CHECK_MS);
    let http = match NodesHttp::new(cfg, budget, false) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("cannot ask the other nodes whether the cluster runs: {e}");
            return None;
        }
    };
    let mut calls = tokio::task::JoinSet::new();
    for n in cfg.nodes.iter().filter(|n| n.id != id) {
        let (http, other, api) = (http.clone(), n.id, n.api);
        calls.spawn(async move { (other, http.status(api).await) });
    }
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        match tokio::time::timeout_at(deadline, calls.join_next()).await {
            Ok(Some(Ok((other, Some(st))))) if is_initialised(&st) => return Some((other, st.voters)),
            Ok(Some(_)) => continue,
            // All answered (none initialised), or the time is up: the rest are aborted on drop.
            Ok(None) | Err(_) => return None,
        }
    }
}

/// How often a voter without a leader checks whether it was removed.
const REMOVED_CHECK_EVERY_MS: u64 = 500;

/// A node removed from the voters may never learn it: the leader stops replicating to it as soon
/// as it appends the membership without it, so the node can keep a membership in which it still
/// votes, and campaign forever (openraft 0.9 ticks elections for every node its own membership
/// names a voter). The other nodes refuse its votes (raft_net::server), so it cannot move their
/// term; this stops the campaigning itself: a voter that has known no leader for a while asks
/// the other listed nodes, and when one of them is a leader whose voters leave this node out,
/// it turns its elections off (it still answers RPCs). They are back on as soon as it hears from
/// a leader (it was added again, or the removal did not commit).
async fn stop_campaigning_when_removed(raft: Raft, cfg: Arc<ClusterConfig>, id: NodeId, stop: CancellationToken) {
    // Five of the longest election timeouts without a leader, at least 2 s.
    let leaderless_for = std::time::Duration::from_millis((cfg.election_timeout_ms.1 * 5).max(2_000));
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(REMOVED_CHECK_EVERY_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leaderless_since: Option<std::time::Instant> = None;
    let mut elections_off = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (leader, voter) = {
            let rx = raft.metrics();
            let m = rx.borrow();
            (m.current_leader, m.membership_config.membership().voter_ids().any(|v| v == id))
        };
        if let Some(l) = leader {
            leaderless_since = None;
            if elections_off {
                raft.runtime_config().elect(true);
                elections_off = false;
                tracing::info!(id, leader = l, "node {l} leads and replicates to this node: elections are on again");
            }
            continue;
        }
        if elections_off || !voter {
            continue;
        }
        let since = *leaderless_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < leaderless_for {
            continue;
        }
        leaderless_since = None;
        let Ok(rows) = tracker_client::admin::statuses(&cfg, std::time::Duration::from_millis(1_000)).await else {
            continue;
        };
        let removed_by = rows
            .into_iter()
            .filter_map(|(other, _, st)| st.filter(|_| other != id))
            .find(|st| st.role == proto::api::Role::Leader && !st.voters.contains(&id));
        if let Some(st) = removed_by {
            raft.runtime_config().elect(false);
            elections_off = true;
            tracing::info!(
                id,
                leader = st.id,
                voters = ?st.voters,
                "node {} leads a cluster whose voters leave this node out: it was removed, so it stops campaigning (`tracker-node members add --id {id}` brings it back)",
                st.id
            );
        }
    }
}

/// `node N cannot listen on its api address A: it is in use by another process`.
fn bind_error(what: &str, addr: std::net::SocketAddr, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            anyhow::anyhow!("{what} address {addr} is in use by another process (is another tracker-node running?)")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            anyhow::anyhow!("{what} address {addr} is not an address of this machine")
        }
        _ => anyhow::anyhow!("cannot listen on the {what} address {addr}: {e}"),
    }
}

/// Backlog of the API's listening socket: what tokio's `TcpListener::bind` gives (the API
/// listener was bound by it), above std's 128, so a burst of clients is queued, not refused.
const API_BACKLOG: i32 = 1024;

/// The two sockets a node serves on, bound by its caller: the binary binds the cluster file's
/// addresses ([`Listeners::bind`]); an in-process test binds port 0 and writes the ports it got
/// into the cluster file.
pub struct Listeners {
    pub api: std::net::TcpListener,
    pub raft: std::net::TcpListener,
}

impl Listeners {
    /// Binds node `n`'s `raft` then `api` address. A port in use is one line naming it.
    pub fn bind(n: &proto::cluster::NodeConfig) -> anyhow::Result<Self> {
        let raft = std::net::TcpListener::bind(n.raft).map_err(|e| bind_error("raft", n.raft, e))?;
        let api = std::net::TcpListener::bind(n.api).map_err(|e| bind_error("api", n.api, e))?;
        Ok(Listeners { api, raft })
    }

    /// The API listener for the current runtime, with [`API_BACKLOG`], and the Raft listener
    /// as it is (it is registered with the Raft runtime, which polls it).
    fn into_parts(self) -> anyhow::Result<(TcpListener, std::net::TcpListener)> {
        use std::os::fd::AsRawFd;
        // listen(2) again on a listening socket changes only its backlog.
        // SAFETY: listen on a descriptor `self.api` owns.
        if unsafe { libc::listen(self.api.as_raw_fd(), API_BACKLOG) } != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot listen on the api socket");
        }
        self.api.set_nonblocking(true)?;
        self.raft.set_nonblocking(true)?;
        Ok((TcpListener::from_std(self.api)?, self.raft))
    }
}

/// The node's storage, opened from its data_dir.
fn open_storage(
    me: &proto::cluster::NodeConfig,
) -> anyhow::Result<(raft_store::LogStore, raft_store::StateMachineStore)> {
    let mut store_options = StoreOptions::new(&me.data_dir);
    store_options.snapshot_thread_init = Some(crate::sched::background_thread);
    open_store(&store_options)
        .with_context(|| format!("cannot open the data of node {} in {}", me.id, me.data_dir.display()))
}

/// Everything the API's handlers share.
fn app_state(
    cfg: &Arc<ClusterConfig>,
    me: &proto::cluster::NodeConfig,
    raft: &Raft,
    (log, sm): (&raft_store::LogStore, &raft_store::StateMachineStore),
    tickets: Arc<proto::ticket::TicketSigner>,
) -> anyhow::Result<AppState> {
    let probe = std::time::Duration::from_millis(api::admin::REACHABLE_PROBE_MS);
    Ok(AppState {
        id: me.id,
        raft: raft.clone(),
        sm: sm.clone(),
        log: log.clone(),
        config: cfg.clone(),
        metrics: Arc::new(Metrics::default().with_disk(log.timings())),
        api_addr: me.api.to_string(),
        passwords: Arc::new(api::password_pool::PasswordPool::for_this_machine()),
        throttle: Arc::new(api::throttle::LoginThrottle::default()),
        registrations: Arc::new(api::throttle::RegistrationThrottle::default()),
        tickets,
        liveness: Arc::new(api::liveness::Liveness::new(cfg.peer_liveness_ms)),
        quota_in_flight: Arc::new(api::quota::InFlight::default()),
        nodes_http: NodesHttp::new(cfg, probe, false)?,
    })
}

/// On the first start of a data_dir: initialises a new cluster (an initial voter of a cluster
/// that does not run yet), or waits to be added to the one that runs.
async fn join_or_initialise(raft: &Raft, cfg: &ClusterConfig, id: NodeId) -> anyhow::Result<()> {
    if raft.is_initialized().await? {
        return Ok(());
    }
    let voters = cfg.voters_on_first_start();
    let running = if voters.contains(&id) { running_cluster(cfg, id).await } else { None };
    if let Some((answered, their_voters)) = running {
        // The cluster exists: initialising here would start a second one (with its own
        // log and its own elections). This node waits, without a membership, until the
        // leader replicates to it: after `members add`, or at once if it is already a
        // voter there (an initial voter that started after the others had initialised).
        if their_voters.contains(&id) {
            tracing::info!(
                "this cluster already runs (node {answered} answered) and lists this node as a voter: waiting for its leader"
            );
        } else {
            tracing::info!(
                "this cluster already runs (node {answered} answered): waiting to be added with `tracker-node members add --id {id}`"
            );
        }
    } else if voters.contains(&id) {
        // Every initial voter initialises with the same membership: safe, and no node has
        // to wait for a particular other one to come up first.
        let members: BTreeMap<NodeId, TrackerNode> =
            voters.iter().filter_map(|v| cfg.node(*v).map(|n| (*v, member_entry(n)))).collect();
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(?voters, "initialised a new cluster"),
            Err(e) => tracing::info!("not initialising: {e}"),
        }
    } else {
        tracing::info!("not an initial voter: waiting to be added (tracker-node members add --id {id})");
    }
    Ok(())
}

/// A started node: its Raft and storage, the runtime Raft runs on, and the tasks that serve it.
/// Every task is owned here: dropping a `Started` (a dropped `run` future) aborts them all
/// and shuts the Raft runtime down, without the ordered shutdown (`stop`).
struct Started {
    raft: Raft,
    log: raft_store::LogStore,
    raft_rt: RaftRuntime,
    /// The Raft and API servers, stopped by `servers` and waited for.
    serving: JoinSet<std::io::Result<()>>,
    servers: CancellationToken,
    /// The watchers and the snapshot scheduler; they end with `servers`.
    background: JoinSet<()>,
    snapshots: tokio::task::AbortHandle,
}

impl Started {
    /// Serves the Raft RPCs and the API, initialises or joins the cluster, and starts the
    /// watchers and the snapshot scheduler.
    async fn serve(
        cfg: Arc<ClusterConfig>,
        id: NodeId,
        tls: crate::tls::NodeTls,
        listeners: Listeners,
    ) -> anyhow::Result<Self> {
        let me = cfg.require_node(id)?.clone();
        let (log, sm) = open_storage(&me)?;
        let config = Arc::new(raft_config(&cfg)?);
        let network = raft_net::client::NetworkFactory::new(
            &tls.client,
            cfg.secret.clone(),
            raft_net::client::BackoffMs::for_timings(cfg.heartbeat_ms, cfg.election_timeout_ms.0),
        )?;
        // Raft runs on a runtime of its own: its core, replication streams and RPC server never
        // queue behind API work, and the API's threads run at a lower priority (main.rs), so a
        // flood of API calls cannot delay heartbeats into elections.
        let voters = network.voters();
        let raft_rt = RaftRuntime::new()?;
        let raft = {
            let (log, sm) = (log.clone(), sm.clone());
            raft_rt.handle().spawn(async move { Raft::new(id, config, network, log, sm).await }).await??
        };
        let (api_listener, raft_listener) = listeners.into_parts()?;
        let state = app_state(&cfg, &me, &raft, (&log, &sm), tls.ticket.clone())?;
        let (liveness, metrics) = (state.liveness.clone(), state.metrics.clone());
        tracing::info!(
            workers = state.passwords.workers,
            queue = state.passwords.queue_len,
            "password hashing runs on a bounded pool at low priority"
        );
        let raft_router = raft_net::server::router(raft.clone(), cfg.secret.clone());
        let raft_peers = raft_net::listener::PeerPolicy::new(cfg.nodes.iter().map(|n| n.id), raft.clone());
        let servers = CancellationToken::new();
        let mut serving = JoinSet::new();
        let stop = servers.clone();
        serving.spawn_on(
            async move {
                let listener = TcpListener::from_std(raft_listener)?;
                raft_net::listener::serve(listener, raft_router, tls.server, raft_peers, stop).await;
                Ok(())
            },
            raft_rt.handle(),
        );
        let (api_router, api_tls, stop) = (api::router(state), tls.api.clone(), servers.clone());
        serving.spawn(async move {
            api::listener::serve(api_listener, api_router, api_tls, stop).await;
            Ok(())
        });
        tracing::info!(id, api = %me.api, raft = %me.raft, data_dir = %me.data_dir.display(), "tracker node started");

        join_or_initialise(&raft, &cfg, id).await?;

        let mut background = JoinSet::new();
        let threshold = cfg.snapshot_logs_threshold;
        let snapshots = background.spawn(schedule_snapshots(raft.clone(), sm, threshold, servers.clone()));
        background.spawn(follow_leadership(raft.clone(), id, liveness, metrics, servers.clone()));
        background.spawn(log_state_changes(raft.clone(), id, servers.clone()));
        background.spawn(stop_campaigning_when_removed(raft.clone(), cfg.clone(), id, servers.clone()));
        background.spawn_on(voters.follow(raft.clone()), raft_rt.handle());
        Ok(Started { raft, log, raft_rt, serving, servers, background, snapshots })
    }

    /// The ordered shutdown: Raft first, so no RPC is half-applied when the servers stop
    /// answering; then the servers; then sled's flush.
    async fn stop(mut self, id: NodeId) -> anyhow::Result<()> {
        tracing::info!(id, "shutting down");
        self.snapshots.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        self.servers.cancel();
        while self.serving.join_next().await.is_some() {}
        self.log.flush_blocking()?;
        tracing::info!(id, "stopped cleanly");
        drop(self.background);
        drop(self.raft_rt);
        Ok(())
    }
}

/// Runs node `id` on `listeners` until `shutdown` is cancelled, then shuts it down in order.
/// `tls` is its mutual-TLS identity (crate::tls::for_node): the Raft port accepts and dials only
/// nodes of the cluster CA. Dropping the future instead stops the node without the ordered
/// shutdown, as a crash would (in-process tests).
pub async fn run(
    cfg: Arc<ClusterConfig>,
    id: NodeId,
    tls: crate::tls::NodeTls,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let started = Started::serve(cfg, id, tls, listeners).await?;
    shutdown.cancelled().await;
    started.stop(id).await
}

#[cfg(test)]
mod tests {
    use super::snapshot_due;

    #[test]
    fn snapshots_space_out_as_the_state_grows() {
        assert!(!snapshot_due(4_999, 100, 5_000));
        assert!(snapshot_due(5_000, 100, 5_000));
        // 100k files: a snapshot every 25k entries, not every 5k.
        assert!(!snapshot_due(20_000, 100_000, 5_000));
        assert!(snapshot_due(25_000, 100_000, 5_000));
    }
}
