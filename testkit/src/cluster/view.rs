//! What a cluster's running nodes report through `/v1/status`: the leader they agree on, how far
//! each has applied, whether they converged on one state. Waits are on these conditions.

use std::time::Duration;

use serde_json::Value;

use super::Cluster;
use crate::http::node_get_json;
use crate::wait::wait_until;

/// `(leader, term, status of each node)`: see [`Cluster::stable_view`].
pub type StableView = (u64, u64, Vec<(u64, Value)>);

/// The bound of the waits for a leader: elections take 80-160 ms here, a busy machine stretches them.
const LEADER_WAIT: Duration = Duration::from_secs(20);

impl Cluster {
    pub fn status(&self, id: u64) -> Option<Value> {
        node_get_json(&self.config, self.api(id), "/v1/status")
    }

    /// Node `id`'s state digest, applied index and last log index.
    fn applied(&self, id: u64) -> Option<(String, u64, u64)> {
        let st = node_get_json(&self.config, self.api(id), "/v1/status?digest=true")?;
        Some((st["state_digest"].as_str()?.to_string(), st["applied_index"].as_u64()?, st["last_log_index"].as_u64()?))
    }

    /// The state machine digest of node `id` with its applied index.
    pub fn digest(&self, id: u64) -> Option<(String, u64)> {
        self.applied(id).map(|(digest, applied, _)| (digest, applied))
    }

    /// Waits until node `id` has applied everything the leader had applied when this was called
    /// (for use under a running write load, where digests never stand still).
    pub fn wait_caught_up(&self, id: u64, timeout: Duration) {
        let leader = self.wait_leader(&[]);
        let target = self.status(leader).and_then(|s| s["applied_index"].as_u64()).unwrap_or(0);
        wait_until(&format!("node {id} to apply up to {target}"), timeout, || {
            self.status(id).and_then(|s| s["applied_index"].as_u64()).is_some_and(|a| a >= target)
        });
    }

    /// The digest every running node reports at the same applied index, each having applied
    /// its whole log; `None` while one has entries still to commit or the digests differ.
    fn converged(&self) -> Option<String> {
        let mut seen: Option<(String, u64)> = None;
        for id in self.running() {
            let (digest, applied, last) = self.applied(id)?;
            if applied != last || seen.as_ref().is_some_and(|s| s != &(digest.clone(), applied)) {
                return None;
            }
            seen = Some((digest, applied));
        }
        seen.map(|(digest, _)| digest)
    }

    /// Waits until every running node has applied its whole log and reports the same digest
    /// at the same applied index (a node that has entries still to commit is not converged,
    /// even if its digest matches the others' at that moment).
    pub fn wait_converged(&self, timeout: Duration) -> String {
        let mut digest = String::new();
        wait_until("every running node to apply its whole log and reach the same state digest", timeout, || {
            self.converged().map(|d| digest = d).is_some()
        });
        digest
    }

    /// The leader all running nodes agree on.
    pub fn leader(&self) -> Option<u64> {
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

    pub fn wait_leader(&self, except: &[u64]) -> u64 {
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

    /// One consistent view of the running nodes: every one answers, all are in the same term
    /// and name the same running leader, which says it leads. `None` while an election is under
    /// way or a node has not heard who leads. The other nodes' roles are left for the caller to
    /// check. Returns `(leader, term, status of each running node)`.
    pub fn stable_view(&self) -> Option<StableView> {
        self.stable_view_of(&self.running())
    }

    /// [`Cluster::stable_view`] of the nodes `ids` only (e.g. the voters, leaving out a node
    /// that runs but has not joined yet).
    pub fn stable_view_of(&self, ids: &[u64]) -> Option<StableView> {
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

    /// Waits for [`Cluster::stable_view`] (up to 20 s) and returns `(leader, term)`. Elections
    /// take 80-160 ms here, and one can start at any moment on a busy machine: a test that
    /// checks roles should check them against this view, and retry when the term has moved.
    pub fn wait_stable_leader(&self) -> (u64, u64) {
        let mut found = (0, 0);
        wait_until("every running node to agree on one leader in one term", LEADER_WAIT, || {
            self.stable_view().map(|(l, t, _)| found = (l, t)).is_some()
        });
        found
    }
}
