//! How a test cluster is laid out, whether its nodes are processes (`cluster`) or run in this
//! process (`inproc`): the options, the cluster file written from them, and the shape of a
//! stable view of its nodes.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
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

/// `(leader, term, status of each node)`: a view in which every node answers, all are in the
/// same term and name the same leader, which says it leads.
pub type StableView = (u64, u64, Vec<(u64, Value)>);

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

/// Node `id`'s `[[node]]` table, its data in `node-<id>` beside the cluster file.
pub(crate) fn node_table(id: u64, api: &SocketAddr, raft: &SocketAddr) -> String {
    format!("\n[[node]]\nid = {id}\napi = \"{api}\"\nraft = \"{raft}\"\ndata_dir = \"node-{id}\"\n")
}

/// Lists node `id` at `api` and `raft` at the end of the cluster file `config`, as an operator
/// does before adding a node.
pub(crate) fn append_node(config: &Path, id: u64, api: &SocketAddr, raft: &SocketAddr) {
    let mut toml = std::fs::read_to_string(config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    toml.push_str(&node_table(id, api, raft));
    std::fs::write(config, toml).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
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
