//! `tracker-node status`: asks every listed node for its status, in parallel, each with a
//! short timeout; unreachable nodes are rows too. A node the leader's membership leaves out
//! (removed, but still running) shows the role `removed`, whatever it says of itself.

use std::time::Duration;

use proto::api::{NodeStatus, Role};
use proto::cluster::ClusterConfig;
use serde::Serialize;

/// A row of `status --json`, exactly the contract's shape.
#[derive(Serialize)]
pub struct StatusRow {
    pub id: u64,
    pub api: String,
    pub reachable: bool,
    pub role: Option<proto::api::Role>,
    pub term: Option<u64>,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub voters: Option<Vec<u64>>,
    pub learners: Option<Vec<u64>>,
}

/// The role `status` shows for a node that runs but is neither a voter nor a learner in the
/// leader's membership: it was removed (`members remove`) and keeps running until it is stopped.
pub const REMOVED: &str = "removed";

/// Marks the rows of nodes the leader's membership leaves out as [`REMOVED`]. A node with no
/// membership of its own (a new node waiting to be added) is left as it reports itself.
pub fn mark_removed(rows: &mut [(u64, String, Option<NodeStatus>)]) {
    let Some(leader) = super::members::leader_of(rows).cloned() else { return };
    for (id, _, st) in rows.iter_mut() {
        if let Some(st) = st {
            let member = leader.voters.contains(id) || leader.learners.contains(id);
            if !member && !st.voters.is_empty() {
                st.role = Role::Other(REMOVED.into());
            }
        }
    }
}

pub async fn run(cfg: &ClusterConfig, json: bool) -> anyhow::Result<i32> {
    let mut rows = tracker_client::admin::statuses(cfg, Duration::from_millis(1500)).await?;
    mark_removed(&mut rows);
    let any = rows.iter().any(|(_, _, s)| s.is_some());
    if json {
        let out: Vec<StatusRow> = rows
            .into_iter()
            .map(|(id, api, st)| match st {
                Some(s) => StatusRow {
                    id,
                    api,
                    reachable: true,
                    role: Some(s.role),
                    term: Some(s.term),
                    leader: s.leader,
                    last_log_index: s.last_log_index,
                    applied_index: s.applied_index,
                    voters: Some(s.voters),
                    learners: Some(s.learners),
                },
                None => StatusRow {
                    id,
                    api,
                    reachable: false,
                    role: None,
                    term: None,
                    leader: None,
                    last_log_index: None,
                    applied_index: None,
                    voters: None,
                    learners: None,
                },
            })
            .collect();
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "{:<4} {:<22} {:<10} {:>6} {:>7} {:>10} {:>10}  voters",
            "id", "api", "role", "term", "leader", "last_log", "applied"
        );
        for (id, api, st) in rows {
            match st {
                Some(s) => println!(
                    "{:<4} {:<22} {:<10} {:>6} {:>7} {:>10} {:>10}  {:?}",
                    id,
                    api,
                    s.role,
                    s.term,
                    s.leader.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                    s.last_log_index.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                    s.applied_index.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                    s.voters
                ),
                None => println!("{id:<4} {api:<22} unreachable"),
            }
        }
    }
    Ok(if any { 0 } else { 3 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: u64, role: Role, term: u64, voters: &[u64], learners: &[u64]) -> Option<NodeStatus> {
        Some(NodeStatus {
            id,
            api: String::new(),
            role,
            term,
            leader: None,
            leader_api: None,
            last_log_index: None,
            applied_index: None,
            snapshot_index: None,
            purged_index: None,
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            users: 0,
            groups: 0,
            files: 0,
            state_digest: None,
        })
    }

    #[test]
    fn a_running_node_outside_the_leaders_membership_is_removed() {
        let mut rows = vec![
            (1, "a".into(), st(1, Role::Leader, 4, &[1, 2], &[4])),
            (2, "b".into(), st(2, Role::Follower, 4, &[1, 2], &[4])),
            // Removed, standing for election with its old membership.
            (3, "c".into(), st(3, Role::Candidate, 9, &[1, 2, 3], &[])),
            (4, "d".into(), st(4, Role::Learner, 4, &[1, 2], &[4])),
            // New, waiting to be added: no membership of its own.
            (5, "e".into(), st(5, Role::Learner, 0, &[], &[])),
            (6, "f".into(), None),
        ];
        mark_removed(&mut rows);
        let roles: Vec<Option<String>> = rows.iter().map(|(_, _, s)| s.as_ref().map(|s| s.role.to_string())).collect();
        let want = [Some("leader"), Some("follower"), Some("removed"), Some("learner"), Some("learner"), None];
        assert_eq!(roles, want.map(|r| r.map(String::from)));
        // Without a leader nothing is marked: there is no membership to compare with.
        let mut alone = vec![(3, "c".into(), st(3, Role::Candidate, 9, &[1, 2, 3], &[]))];
        mark_removed(&mut alone);
        assert_eq!(alone[0].2.as_ref().unwrap().role, Role::Candidate);
    }
}
