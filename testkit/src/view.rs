//! What the running nodes of a test cluster report, asked the same way whether the nodes are
//! processes ([`crate::Cluster`]) or run in this process ([`crate::inproc::InprocCluster`]):
//! each node's `GET /v1/status`, and the waits built on it (a leader, a stable view, a node
//! caught up, every node converged); and the operator's steps that read the cluster's files
//! alone (a node's data_dir, a restore).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::bins::tracker_node;
use crate::http::node_get_json;
use crate::layout::data_dir;
use crate::wait::wait_until;

/// How long waits for a leader and for a stable view may take.
const LEADER_WAIT: Duration = Duration::from_secs(20);

/// `(leader, term, status of each node)`: a view in which every node answers, all are in the
/// same term and name the same leader, which says it leads.
pub type StableView = (u64, u64, Vec<(u64, Value)>);

/// What the running nodes of a cluster report, through each node's `GET /v1/status`: the same
/// questions whether the nodes are processes or run in this process.
pub trait ClusterView {
    /// The cluster file.
    fn config_file(&self) -> &Path;
    /// Node `id`'s api address.
    fn api(&self, id: u64) -> &str;
    /// Every node the cluster file lists, running or not.
    fn ids(&self) -> Vec<u64>;
    /// The nodes that run now.
    fn running(&self) -> Vec<u64>;

    /// The first listed node that is none of `ids` (a follower, when `ids` is the leader).
    fn other_than(&self, ids: &[u64]) -> u64 {
        self.ids().into_iter().find(|i| !ids.contains(i)).unwrap_or_else(|| panic!("no node listed besides {ids:?}"))
    }

    /// Node `id`'s data_dir, beside the cluster file.
    fn data_dir(&self, id: u64) -> PathBuf {
        data_dir(self.config_file(), id)
    }

    /// The operator's restore (docs/OPERATIONS.md, "Backup and restore") on this cluster, every
    /// node stopped: each data_dir moved away (to `old-node-<id>`), then `tracker-node restore
    /// --config <cluster file> --from <file>`, which must succeed. Start the nodes after it.
    fn restore_from(&self, file: &Path) {
        assert!(self.running().is_empty(), "restore runs on a stopped cluster: {:?} run", self.running());
        for id in self.ids() {
            let d = self.data_dir(id);
            std::fs::rename(&d, d.with_file_name(format!("old-node-{id}"))).unwrap();
        }
        let config = self.config_file().to_str().expect("a test's paths are UTF-8");
        let out = tracker_node(&["restore", "--config", config, "--from", file.to_str().expect("a UTF-8 path")]);
        assert_eq!(out.status.code(), Some(0), "restore: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn status(&self, id: u64) -> Option<Value> {
        node_get_json(self.config_file(), self.api(id), "/v1/status")
    }

    /// The state machine digest of node `id` with its applied index.
    fn digest(&self, id: u64) -> Option<(String, u64)> {
        let st = node_get_json(self.config_file(), self.api(id), "/v1/status?digest=true")?;
        Some((st["state_digest"].as_str()?.to_string(), st["applied_index"].as_u64()?))
    }

    /// The leader all running nodes agree on.
    fn leader(&self) -> Option<u64> {
        let running = self.running();
        let mut leader = None;
        for id in &running {
            let l = self.status(*id)?["leader"].as_u64()?;
            if leader.is_some_and(|x| x != l) {
                return None;
            }
            leader = Some(l);
        }
        leader.filter(|l| running.contains(l))
    }

    /// Waits (up to 20 s) for a leader the running nodes agree on, other than `except`.
    fn wait_leader(&self, except: &[u64]) -> u64 {
        let mut found = 0;
        wait_until("a tracker leader", LEADER_WAIT, || match self.leader() {
            Some(l) if !except.contains(&l) => {
                found = l;
                true
            }
            _ => false,
        });
        found
    }

    /// One consistent view of the nodes `ids`: every one answers, all are in the same term and
    /// name the same leader among them, which says it leads. `(leader, term, status of each)`.
    fn stable_view_of(&self, ids: &[u64]) -> Option<StableView> {
        let mut view = Vec::new();
        for id in ids {
            view.push((*id, self.status(*id)?));
        }
        let (_, first) = view.first()?;
        let (leader, term) = (first["leader"].as_u64()?, first["term"].as_u64()?);
        let agreed = ids.contains(&leader)
            && view.iter().all(|(id, st)| {
                st["term"].as_u64() == Some(term)
                    && st["leader"].as_u64() == Some(leader)
                    && (*id != leader || st["role"] == "leader")
            });
        agreed.then_some((leader, term, view))
    }

    /// [`ClusterView::stable_view_of`] the running nodes.
    fn stable_view(&self) -> Option<StableView> {
        self.stable_view_of(&self.running())
    }

    /// Waits (up to 20 s) for a stable view of the running nodes; `(leader, term)`.
    fn wait_stable_leader(&self) -> (u64, u64) {
        self.wait_stable_leader_of(&self.running(), LEADER_WAIT)
    }

    /// Waits (up to `timeout`) for a stable view of the nodes `ids`; `(leader, term)`.
    fn wait_stable_leader_of(&self, ids: &[u64], timeout: Duration) -> (u64, u64) {
        let mut found = (0, 0);
        wait_until(&format!("nodes {ids:?} to agree on one leader in one term"), timeout, || {
            self.stable_view_of(ids).map(|(l, t, _)| found = (l, t)).is_some()
        });
        found
    }

    /// Waits until node `id` has applied everything the leader had applied when this was called.
    fn wait_caught_up(&self, id: u64, timeout: Duration) {
        let leader = self.wait_leader(&[]);
        let target = self.status(leader).and_then(|s| s["applied_index"].as_u64()).unwrap_or(0);
        wait_until(&format!("node {id} to apply up to {target}"), timeout, || {
            self.status(id).and_then(|s| s["applied_index"].as_u64()).is_some_and(|a| a >= target)
        });
    }

    /// Waits until every running node has applied its whole log and reports the same digest at
    /// the same applied index; returns the digest.
    fn wait_converged(&self, timeout: Duration) -> String {
        let mut digest = String::new();
        wait_until("every running node to apply its whole log and reach the same state digest", timeout, || {
            let mut seen: Option<(String, u64)> = None;
            for id in self.running() {
                let Some(st) = node_get_json(self.config_file(), self.api(id), "/v1/status?digest=true") else {
                    return false;
                };
                let (Some(d), Some(applied), Some(last)) =
                    (st["state_digest"].as_str(), st["applied_index"].as_u64(), st["last_log_index"].as_u64())
                else {
                    return false;
                };
                if applied != last || seen.as_ref().is_some_and(|s| s != &(d.to_string(), applied)) {
                    return false;
                }
                seen = Some((d.to_string(), applied));
            }
            seen.map(|(d, _)| digest = d).is_some()
        });
        digest
    }
}
