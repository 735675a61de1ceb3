//! `tracker-node status`: asks every listed node for its status, in parallel, each with a
//! short timeout; unreachable nodes are rows too. A node the leader's membership leaves out
//! (removed, but still running) shows `removed` in the table's role column; `--json` keeps the
//! role it reports (the contract's four values) and says `"member": false`.

use std::time::Duration;

use proto::api::NodeStatus;
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
    /// False for a running node the leader's membership leaves out (removed); absent when
    /// the node is unreachable or no leader answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<bool>,
}

/// The role `status` shows for a node that runs but is neither a voter nor a learner in the
/// leader's membership: it was removed (`members remove`) and keeps running until it is stopped.
pub const REMOVED: &str = "removed";

/// Per row, whether the node is a member as the leader sees it: `None` without a leader or for
/// an unreachable node; `Some(false)` for a running node the leader's membership leaves out. A
/// node with no membership of its own (a new node waiting to be added) counts as a member.
pub fn membership(rows: &[(u64, String, Option<NodeStatus>)]) -> Vec<Option<bool>> {
    let leader = super::members::leader_of(rows);
    rows.iter()
        .map(|(id, _, st)| {
            let (leader, st) = (leader?, st.as_ref()?);
            Some(leader.voters.contains(id) || leader.learners.contains(id) || st.voters.is_empty())
        })
        .collect()
}

pub async fn run(cfg: &ClusterConfig, json: bool) -> anyhow::Result<i32> {
    let rows = tracker_client::admin::statuses(cfg, Duration::from_millis(1500)).await?;
    let members = membership(&rows);
    let any = rows.iter().any(|(_, _, s)| s.is_some());
    if json {
        let out: Vec<StatusRow> = rows
            .into_iter()
            .zip(members)
            .map(|((id, api, st), member)| match st {
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
                    member,
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
                    member: None,
                },
            })
            .collect();
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "{:<4} {:<22} {:<10} {:>6} {:>7} {:>10} {:>10}  voters",
            "id", "api", "role", "term", "leader", "last_log", "applied"
        );
        for ((id, api, st), member) in rows.into_iter().zip(members) {
            match st {
                Some(s) => println!(
                    "{:<4} {:<22} {:<10} {:>6} {:>7} {:>10} {:>10}  {:?}",
                    id,
                    api,
                    if member == Some(false) { REMOVED.to_string() } else { s.role.to_string() },
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
    use proto::api::Role;

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
        let rows = vec![
            (1, "a".into(), st(1, Role::Leader, 4, &[1, 2], &[4])),
            (2, "b".into(), st(2, Role::Follower, 4, &[1, 2], &[4])),
            // Removed, standing for election with its old membership.
            (3, "c".into(), st(3, Role::Candidate, 9, &[1, 2, 3], &[])),
            (4, "d".into(), st(4, Role::Learner, 4, &[1, 2], &[4])),
            // New, waiting to be added: no membership of its own.
            (5, "e".into(), st(5, Role::Learner, 0, &[], &[])),
            (6, "f".into(), None),
        ];
        assert_eq!(membership(&rows), [Some(true), Some(true), Some(false), Some(true), Some(true), None]);
        // Without a leader nothing is judged: there is no membership to compare with.
        let alone = vec![(3, "c".into(), st(3, Role::Candidate, 9, &[1, 2, 3], &[]))];
        assert_eq!(membership(&alone), [None]);
    }
}
