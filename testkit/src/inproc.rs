//! Tracker clusters in this process: every node is `tracker_node::run` on listeners bound to
//! 127.0.0.1 port 0 (the kernel picks the ports, which the cluster file then lists: no port
//! pool, no process, no binary to build), each on a runtime of its own (as the binary runs its
//! API on one), which the cluster owns.
//!
//! For the tests that need no process of their own: not those that read a node's stderr or
//! exit code, send it signals (kill -9, SIGSTOP), put it in a network namespace, or run the
//! `tracker-node` command line; [`crate::Cluster`] starts processes for those.
//!
//! A node stops in order ([`InprocCluster::stop`]: its shutdown, what SIGTERM does to a
//! process) or at once ([`InprocCluster::crash`]: its tasks dropped without the ordered
//! shutdown, so nothing is flushed on the way out; the files stay as the node left them, and
//! the machine's page cache with them, so this is a crash of the node, not of the machine), and
//! starts again on the same data_dir and addresses ([`InprocCluster::start_node`]). Drop stops
//! every node at once and removes the cluster's folder (`TESTKIT_KEEP=1` keeps it).
//!
//! Several clusters may run in one test process: nothing a node sets up is global to the
//! process but the umask, which every node sets to 077 (its files are its user's only).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proto::cluster::ClusterConfig;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tracker_node::{Listeners, NodeConfig};

use crate::layout::{append_node, keep_if_asked, write_cluster, ClusterOptions, Nodes};
use crate::view::ClusterView;
use crate::wait::wait_until;

/// Bound on a node's ordered shutdown, and on its data_dir and ports being let go after a stop.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// A node that runs: its runtime, how to stop it, and the task that runs it.
struct Running {
    rt: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Waits for the node's task to end, then drops its runtime with every task still on it
    /// (a crashed node's connections), waiting for them to go unless called inside a runtime.
    fn end(self) -> Result<Result<(), String>, tokio::task::JoinError> {
        let Running { rt, task, .. } = self;
        let ended = rt.block_on(task);
        shut_down(rt);
        ended
    }
}

/// Drops `rt` and its tasks: waits (bounded) for them, except inside another runtime, where
/// blocking is not allowed.
fn shut_down(rt: tokio::runtime::Runtime) {
    if tokio::runtime::Handle::try_current().is_ok() {
        rt.shutdown_background();
    } else {
        rt.shutdown_timeout(STOP_WAIT);
    }
}

/// A tracker cluster whose nodes run in this process.
pub struct InprocCluster {
    pub dir: TempDir,
    pub config: PathBuf,
    pub apis: Vec<String>,
    pub rafts: Vec<String>,
    nodes: Nodes<Running>,
    /// Listeners bound for nodes listed but not started yet: the ports stay theirs until then.
    unstarted: Vec<(u64, Listeners)>,
    /// This cluster's turn among the test binary's clusters ([`crate::slots`]); given back
    /// after the nodes are stopped.
    _slot: Option<crate::slots::Slot>,
}

/// A node's runtime, like the binary's API runtime: its threads yield to the node's Raft runtime.
fn node_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("inproc-api")
        .on_thread_start(|| tracker_node::sched::lower_thread_priority(tracker_node::sched::API_THREAD_NICE))
        .build()
        .expect("the in-process nodes' runtime")
}

fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("a loopback port")
}

/// Whether `path` can be locked now (nobody holds its `flock`); a missing file is free.
fn unlocked(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else { return true };
    // SAFETY: flock(2) on a descriptor owned here; closing `f` releases the lock taken.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl InprocCluster {
    /// `n` nodes, all started, with a leader elected.
    pub fn start(n: u64) -> InprocCluster {
        let c = InprocCluster::start_with(ClusterOptions { nodes: n, start: n, ..Default::default() });
        c.wait_leader(&[]);
        c
    }

    /// Writes cluster.toml and starts the first `opts.start` nodes; does not wait for a leader.
    pub fn start_with(opts: ClusterOptions) -> InprocCluster {
        let _slot = crate::slots::cluster_slot();
        let listeners: Vec<Listeners> =
            (0..opts.nodes).map(|_| Listeners { api: loopback_listener(), raft: loopback_listener() }).collect();
        let addrs: Vec<(SocketAddr, SocketAddr)> =
            listeners.iter().map(|l| (l.api.local_addr().unwrap(), l.raft.local_addr().unwrap())).collect();
        let (dir, config) = write_cluster(&opts, &addrs);
        let mut c = InprocCluster {
            dir,
            config,
            apis: addrs.iter().map(|(a, _)| a.to_string()).collect(),
            rafts: addrs.iter().map(|(_, r)| r.to_string()).collect(),
            nodes: Nodes::listed(opts.nodes),
            unstarted: (1..=opts.nodes).zip(listeners).collect(),
            _slot,
        };
        for id in 1..=opts.start {
            c.start_node(id);
        }
        c
    }

    /// Lists one more node in cluster.toml (the next id, new loopback ports, `node-<id>`
    /// data_dir), as an operator does before adding a node, and returns its id. Nothing is
    /// started, and the running nodes are not told: start it with [`InprocCluster::start_node`].
    pub fn add_node(&mut self) -> u64 {
        let id = self.nodes.add();
        let l = Listeners { api: loopback_listener(), raft: loopback_listener() };
        let (api, raft) = (l.api.local_addr().unwrap(), l.raft.local_addr().unwrap());
        append_node(&self.config, id, &api, &raft);
        self.apis.push(api.to_string());
        self.rafts.push(raft.to_string());
        self.unstarted.push((id, l));
        id
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.ids()
    }

    /// The tracker client code the peer uses, pointed at every node of this cluster (plain
    /// HTTP: they are on loopback).
    pub fn client(&self) -> tracker_client::TrackerClient {
        self.client_with(tracker_client::RetryPolicy::default())
    }

    /// [`InprocCluster::client`] with a retry policy of the caller's.
    pub fn client_with(&self, policy: tracker_client::RetryPolicy) -> tracker_client::TrackerClient {
        tracker_client::TrackerClient::new(self.apis.clone(), policy)
    }

    /// The sockets for node `id`: the ones bound when it was listed, or its addresses bound
    /// again, once whatever ran there before has let go of them.
    fn listeners(&mut self, id: u64) -> Listeners {
        if let Some(i) = self.unstarted.iter().position(|(n, _)| *n == id) {
            return self.unstarted.swap_remove(i).1;
        }
        let (api, raft) = (self.apis[(id - 1) as usize].clone(), self.rafts[(id - 1) as usize].clone());
        let mut bound = None;
        wait_until(&format!("node {id}'s addresses {api} and {raft} to be free again"), STOP_WAIT, || {
            bound = TcpListener::bind(&api).ok().zip(TcpListener::bind(&raft).ok());
            bound.is_some()
        });
        let (api, raft) = bound.unwrap();
        Listeners { api, raft }
    }

    /// Starts node `id` (again): on its data_dir and addresses, once a node that ran there
    /// before has let go of them.
    pub fn start_node(&mut self, id: u64) {
        assert!(self.nodes.slot(id).is_none(), "node {id} runs already");
        let data_dir = self.data_dir(id);
        wait_until(&format!("node {id}'s data_dir to be let go"), STOP_WAIT, || {
            unlocked(&data_dir.join("tracker-node.lock")) && unlocked(&data_dir.join("sled").join("db"))
        });
        let listeners = self.listeners(id);
        let cfg = Arc::new(ClusterConfig::load(&self.config).expect("the cluster file"));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let rt = node_runtime();
        let task = rt.spawn(async move {
            let node = NodeConfig::prepare(cfg, id).await.map_err(|e| e.to_string())?;
            tracker_node::run(node, listeners, stop).await.map_err(|e| format!("{e:#}"))
        });
        *self.nodes.slot(id) = Some(Running { rt, shutdown, task });
    }

    /// Stops node `id` in order (its shutdown, as on SIGTERM) and waits for it; panics if it
    /// does not stop within 20 s or stops with an error.
    pub fn stop(&mut self, id: u64) {
        let Some(node) = self.nodes.slot(id).take() else { return };
        node.shutdown.cancel();
        let Running { rt, task, .. } = node;
        let ended = rt.block_on(async { tokio::time::timeout(STOP_WAIT, task).await });
        shut_down(rt);
        match ended {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("node {id} stopped with an error: {e}"),
            Ok(Err(e)) => panic!("node {id}'s task failed: {e}"),
            Err(_) => panic!("node {id} did not stop within {STOP_WAIT:?}"),
        }
    }

    /// Stops node `id` at once, without its ordered shutdown: its tasks are dropped where they
    /// are (a crash of the node; see the module's docs).
    pub fn crash(&mut self, id: u64) {
        let Some(node) = self.nodes.slot(id).take() else { return };
        node.task.abort();
        let _ = node.end();
    }

    /// Whether node `id`'s task has ended by itself (it failed to start, or failed while
    /// running), and with what: `None` while it runs or when it is not started.
    pub fn ended(&mut self, id: u64) -> Option<Result<(), String>> {
        if !self.nodes.slot(id).as_ref().is_some_and(|n| n.task.is_finished()) {
            return None;
        }
        let node = self.nodes.slot(id).take().unwrap();
        Some(node.end().unwrap_or_else(|e| Err(e.to_string())))
    }
}

impl Drop for InprocCluster {
    fn drop(&mut self) {
        // The nodes' tasks are dropped before their folder goes.
        for n in self.nodes.take_all() {
            n.task.abort();
            shut_down(n.rt);
        }
        keep_if_asked(&mut self.dir);
    }
}

impl ClusterView for InprocCluster {
    fn config_file(&self) -> &Path {
        &self.config
    }

    fn api(&self, id: u64) -> &str {
        &self.apis[(id - 1) as usize]
    }

    fn ids(&self) -> Vec<u64> {
        InprocCluster::ids(self)
    }

    fn running(&self) -> Vec<u64> {
        self.nodes.running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(admin: &tracker_client::TrackerClient) -> Vec<String> {
        crate::runtime().block_on(crate::group_names(admin))
    }

    /// Two clusters side by side in this process; a node stopped in order and one crashed both
    /// start again on their data_dirs and addresses, with every acknowledged write, and catch up.
    #[test]
    fn nodes_stop_crash_and_restart_in_one_process_beside_another_cluster() {
        let mut a = InprocCluster::start(3);
        let b = InprocCluster::start(1);
        let rt = crate::runtime();
        let alice = rt.block_on(crate::logged_in(&a.client(), "alice"));
        let bob = rt.block_on(crate::logged_in(&b.client(), "bob"));
        rt.block_on(alice.create_group("before")).unwrap();
        rt.block_on(bob.create_group("elsewhere")).unwrap();

        let (leader, _) = a.wait_stable_leader();
        let follower = a.other_than(&[leader]);
        a.stop(follower);
        assert!(!a.running().contains(&follower));
        assert!(a.status(follower).is_none(), "a stopped node does not answer");
        rt.block_on(alice.create_group("while_stopped")).unwrap();
        a.start_node(follower);

        let (leader, _) = a.wait_stable_leader();
        a.crash(leader);
        assert!(a.status(leader).is_none(), "a crashed node does not answer");
        rt.block_on(alice.create_group("after_crash")).unwrap();
        a.start_node(leader);

        let digest = a.wait_converged(Duration::from_secs(20));
        for id in a.ids() {
            assert_eq!(a.digest(id).unwrap().0, digest, "node {id}");
        }
        assert_eq!(groups(&alice), ["after_crash", "before", "while_stopped"]);
        assert_eq!(groups(&bob), ["elsewhere"], "the other cluster is its own");
        assert_eq!(b.wait_leader(&[]), 1);
    }
}
