//! How a test cluster is laid out, whether its nodes are processes (`cluster`) or run in this
//! process (`inproc`): the options, the folder and the cluster file written from them, each
//! node's data_dir, and the table of listed nodes with what runs as each.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// How to lay out a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Nodes written to cluster.toml (ids 1..=nodes).
    pub nodes: u64,
    /// Nodes started at once (the first `start` of them); the others are listed but not run.
    pub start: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// Extra lines for the `[cluster]` table, e.g. `snapshot_logs_threshold = 50`.
    pub extra: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { nodes: 3, start: 3, heartbeat_ms: 20, election_timeout_ms: (80, 160), extra: String::new() }
    }
}

/// cluster.toml: `[cluster]` from `opts`, and a `[[node]]` table per `(api, raft)`, ids from 1.
pub(crate) fn cluster_toml(opts: &ClusterOptions, addrs: &[(SocketAddr, SocketAddr)]) -> String {
    let (lo, hi) = opts.election_timeout_ms;
    let mut toml = format!(
        "[cluster]\nheartbeat_ms = {}\nelection_timeout_ms = [{lo}, {hi}]\n{}\n",
        opts.heartbeat_ms, opts.extra
    );
    for (id, (api, raft)) in (1..).zip(addrs) {
        toml.push_str(&node_table(id, api, raft));
    }
    toml
}

/// A new folder holding the cluster file (`cluster.toml`) for `opts`, its nodes at `addrs`:
/// `(folder, cluster file)`.
pub(crate) fn write_cluster(opts: &ClusterOptions, addrs: &[(SocketAddr, SocketAddr)]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, cluster_toml(opts, addrs)).unwrap();
    (dir, config)
}

/// Node `id`'s data_dir as the cluster file names it, relative to the file's folder.
fn data_dir_name(id: u64) -> String {
    format!("node-{id}")
}

/// Node `id`'s data_dir: beside the cluster file `config`.
pub(crate) fn data_dir(config: &Path, id: u64) -> PathBuf {
    config.parent().expect("the cluster file is in a folder").join(data_dir_name(id))
}

/// Node `id`'s `[[node]]` table, its data in `node-<id>` beside the cluster file.
pub(crate) fn node_table(id: u64, api: &SocketAddr, raft: &SocketAddr) -> String {
    let data_dir = data_dir_name(id);
    format!("\n[[node]]\nid = {id}\napi = \"{api}\"\nraft = \"{raft}\"\ndata_dir = \"{data_dir}\"\n")
}

/// Lists node `id` at `api` and `raft` at the end of the cluster file `config`, as an operator
/// does before adding a node.
pub(crate) fn append_node(config: &Path, id: u64, api: &SocketAddr, raft: &SocketAddr) {
    let mut toml = std::fs::read_to_string(config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    toml.push_str(&node_table(id, api, raft));
    std::fs::write(config, toml).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
}

/// The nodes a cluster file lists, by id, each with what runs as it now (`None`: not running):
/// a process, or an in-process node.
pub(crate) struct Nodes<N>(Vec<(u64, Option<N>)>);

impl<N> Nodes<N> {
    /// Nodes 1 to `n`, none running.
    pub(crate) fn listed(n: u64) -> Nodes<N> {
        Nodes((1..=n).map(|id| (id, None)).collect())
    }

    /// Lists one more node, the next id, not running; returns its id.
    pub(crate) fn add(&mut self) -> u64 {
        let id = self.0.iter().map(|(i, _)| *i).max().unwrap_or(0) + 1;
        self.0.push((id, None));
        id
    }

    pub(crate) fn ids(&self) -> Vec<u64> {
        self.0.iter().map(|(id, _)| *id).collect()
    }

    pub(crate) fn running(&self) -> Vec<u64> {
        self.0.iter().filter(|(_, n)| n.is_some()).map(|(id, _)| *id).collect()
    }

    /// What runs as node `id`, if it is listed and runs.
    pub(crate) fn get(&self, id: u64) -> Option<&N> {
        self.0.iter().find(|(i, _)| *i == id)?.1.as_ref()
    }

    /// The place of what runs as node `id`, to start or take it; panics when `id` is not listed.
    pub(crate) fn slot(&mut self, id: u64) -> &mut Option<N> {
        &mut self.0.iter_mut().find(|(i, _)| *i == id).unwrap_or_else(|| panic!("node {id} is not listed")).1
    }

    /// Takes every running node, as the cluster goes.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = N> + '_ {
        self.0.iter_mut().filter_map(|(_, n)| n.take())
    }
}

/// With `TESTKIT_KEEP=1`, keeps a cluster's folder (cluster file, logs, data) past its drop for a
/// post-mortem, and says where; `dir` is left holding an empty folder to remove instead.
pub(crate) fn keep_if_asked(dir: &mut TempDir) {
    if std::env::var_os("TESTKIT_KEEP").is_some() {
        if let Ok(empty) = tempfile::tempdir() {
            let kept = std::mem::replace(dir, empty).keep();
            eprintln!("testkit: kept {}", kept.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_file_lists_every_node_with_its_addresses_and_parses() {
        let opts = ClusterOptions { nodes: 2, extra: "snapshot_logs_threshold = 50".into(), ..Default::default() };
        let addrs: Vec<(SocketAddr, SocketAddr)> = vec![
            ("127.0.0.1:20001".parse().unwrap(), "127.0.0.1:20002".parse().unwrap()),
            ("127.0.0.1:20003".parse().unwrap(), "127.0.0.1:20004".parse().unwrap()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster.toml");
        std::fs::write(&file, cluster_toml(&opts, &addrs[..1])).unwrap();
        append_node(&file, 2, &addrs[1].0, &addrs[1].1);
        let cfg = proto::cluster::ClusterConfig::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((cfg.heartbeat_ms, cfg.election_timeout_ms, cfg.snapshot_logs_threshold), (20, (80, 160), 50));
        assert_eq!(cfg.api_addrs(), vec![addrs[0].0, addrs[1].0]);
        let text = std::fs::read_to_string(&file).unwrap();
        let node_2 = "id = 2\napi = \"127.0.0.1:20003\"\nraft = \"127.0.0.1:20004\"\ndata_dir = \"node-2\"\n";
        assert!(text.contains(node_2), "{text}");
    }
}
