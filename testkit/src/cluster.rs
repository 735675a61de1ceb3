//! A test cluster: a cluster.toml with run-time loopback ports, and its tracker-node processes,
//! each started, signalled and killed by the PID this harness spawned. What the running nodes
//! report (leader, convergence) is asked through [`ClusterView`], as of an in-process cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::bins::workspace_bin;
use crate::http::is_loopback;
use crate::layout::{append_node, keep_if_asked, write_cluster, ClusterOptions, Nodes};
use crate::ports::free_port;
use crate::process::{kill_now, kill_pid, stop_within, wrapped};
use crate::view::ClusterView;

pub struct Cluster {
    pub dir: TempDir,
    pub config: PathBuf,
    pub apis: Vec<String>,
    pub rafts: Vec<String>,
    nodes: Nodes<Child>,
    env: Vec<(u64, String, String)>,
    /// Per node, a command the node's binary is run under (e.g. `ip netns exec NS`): see
    /// [`crate::netns`].
    wrappers: Vec<(u64, Vec<String>)>,
    /// This cluster's turn among the test binary's clusters ([`crate::slots`]); given back
    /// after the nodes are stopped.
    _slot: Option<crate::slots::Slot>,
}

/// Two fresh loopback addresses for a node: its API's and its Raft port's.
fn loopback_pair() -> (SocketAddr, SocketAddr) {
    (SocketAddr::from(([127, 0, 0, 1], free_port())), SocketAddr::from(([127, 0, 0, 1], free_port())))
}

impl Cluster {
    /// `n` nodes, all started, with a leader elected.
    pub fn start(n: u64) -> Cluster {
        let c = Cluster::start_with(ClusterOptions { nodes: n, start: n, ..Default::default() });
        c.wait_leader(&[]);
        c
    }

    /// Writes cluster.toml and starts the first `opts.start` nodes; does not wait for a leader.
    pub fn start_with(opts: ClusterOptions) -> Cluster {
        let _slot = crate::slots::cluster_slot();
        let addrs: Vec<(SocketAddr, SocketAddr)> = (1..=opts.nodes).map(|_| loopback_pair()).collect();
        let (dir, config) = write_cluster(&opts, &addrs);
        let apis = addrs.iter().map(|(a, _)| a.to_string()).collect();
        let rafts = addrs.iter().map(|(_, r)| r.to_string()).collect();
        let nodes = Nodes::listed(opts.nodes);
        let mut c = Cluster { dir, config, apis, rafts, nodes, env: Vec::new(), wrappers: Vec::new(), _slot };
        for id in 1..=opts.start {
            c.start_node(id);
        }
        c
    }

    /// Lists one more node in cluster.toml (the next id, new loopback ports, `node-<id>` data_dir),
    /// as an operator does before adding a node, and returns its id. Nothing is started, and the
    /// running nodes are not told: start it with [`Cluster::start_node`].
    pub fn add_node(&mut self) -> u64 {
        let id = self.nodes.add();
        let (api, raft) = loopback_pair();
        append_node(&self.config, id, &api, &raft);
        self.apis.push(api.to_string());
        self.rafts.push(raft.to_string());
        id
    }

    pub fn api(&self, id: u64) -> &str {
        &self.apis[(id - 1) as usize]
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.ids()
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.running()
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes.get(id).map(|c| c.id())
    }

    /// The tracker client code the peer uses, pointed at every node of this cluster.
    /// Over HTTPS, the cluster CA pinned, when a node is not on a loopback address.
    pub fn client(&self) -> tracker_client::TrackerClient {
        self.client_with(tracker_client::RetryPolicy::default())
    }

    /// [`Cluster::client`] with a retry policy of the caller's.
    pub fn client_with(&self, policy: tracker_client::RetryPolicy) -> tracker_client::TrackerClient {
        let client = tracker_client::TrackerClient::new(self.apis.clone(), policy);
        if self.apis.iter().all(|a| is_loopback(a)) {
            return client;
        }
        let cfg = proto::cluster::ClusterConfig::load(&self.config).expect("the cluster file");
        let tls = tracker_client::TrackerTls::from_cluster(&cfg, false).expect("the cluster CA (the nodes made it)");
        client.with_tls(&tls)
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }

    /// Sends `signal` to a running node (by the PID this harness spawned).
    pub fn signal(&mut self, id: u64, signal: i32) {
        if let Some(c) = self.nodes.slot(id) {
            kill_pid(c, signal);
        }
    }

    /// SIGTERM, then waits (bounded) for the node to exit; returns its exit code.
    pub fn terminate(&mut self, id: u64, timeout: Duration) -> Option<i32> {
        stop_within(self.nodes.slot(id).take()?, libc::SIGTERM, timeout)?.code()
    }

    /// An environment variable for node `id`, applied from its next start on.
    pub fn set_node_env(&mut self, id: u64, key: &str, value: &str) {
        self.env.retain(|(i, k, _)| !(*i == id && k == key));
        self.env.push((id, key.to_string(), value.to_string()));
    }

    /// Runs node `id` under `argv` (`argv[0]` the program, then its arguments, then the
    /// node's binary and arguments) from its next start on, e.g. `ip netns exec NS`.
    pub fn set_node_wrapper(&mut self, id: u64, argv: Vec<String>) {
        self.wrappers.retain(|(i, _)| *i != id);
        self.wrappers.push((id, argv));
    }

    pub fn start_node(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .unwrap();
        let wrapper = self.wrappers.iter().find(|(i, _)| *i == id).map(|(_, w)| w.as_slice());
        let child = wrapped(wrapper, &workspace_bin("tracker-node"))
            .args(["run", "--config"])
            .arg(&self.config)
            .args(["--id", &id.to_string()])
            .envs(self.env.iter().filter(|(i, _, _)| *i == id).map(|(_, k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        *self.nodes.slot(id) = Some(child);
    }

    pub fn kill(&mut self, id: u64) {
        if let Some(c) = self.nodes.slot(id).take() {
            kill_now(c);
        }
    }
}

impl ClusterView for Cluster {
    fn config_file(&self) -> &Path {
        &self.config
    }

    fn api(&self, id: u64) -> &str {
        Cluster::api(self, id)
    }

    fn ids(&self) -> Vec<u64> {
        Cluster::ids(self)
    }

    fn running(&self) -> Vec<u64> {
        Cluster::running(self)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.nodes.take_all() {
            kill_now(c);
        }
        // TESTKIT_KEEP=1 keeps the cluster's files (cluster.toml, node logs, sled data).
        keep_if_asked(&mut self.dir);
    }
}
