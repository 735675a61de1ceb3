//! `tracker-node health`: every listed node's `/health` and `/readyz`, one line each, and the
//! cluster's verdict: healthy (exit 0) when a leader is known and a quorum of its voters answer
//! `/health` with 200, else unhealthy (exit 1). The verdict is [`verdict`], a plain function.

use std::time::Duration;

use proto::api::Role;
use proto::cluster::ClusterConfig;
use serde::Serialize;
use tracker_client::admin::NodeHealth;

/// How long each node gets to answer each of its three questions.
const PROBE_TIMEOUT_MS: u64 = 1500;

/// What the answers say about the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub healthy: bool,
    /// The leader a healthy node names (of the latest term among them).
    pub leader: Option<u64>,
    /// The voters as the leader reports them (else as the healthy node of the latest term does).
    pub voters: Vec<u64>,
    /// The voters whose `/health` answered 200.
    pub healthy_voters: Vec<u64>,
    /// How many voters make a quorum.
    pub quorum: usize,
}

/// The cluster is healthy when a healthy node names a leader and a quorum of the voters (as
/// the leader, or failing it the best-informed healthy node, lists them) are healthy.
pub fn verdict(rows: &[NodeHealth]) -> Verdict {
    fn healthy(r: &NodeHealth) -> bool {
        r.health.as_ref().is_some_and(|p| p.ok)
    }
    // The healthy node of the latest term tells which leader and voters are current.
    let best = rows.iter().filter(|r| healthy(r)).filter_map(|r| r.status.as_ref()).max_by_key(|s| s.term);
    let leader = best.and_then(|s| s.leader);
    let leader_view = rows
        .iter()
        .filter_map(|r| r.status.as_ref())
        .filter(|s| Some(s.id) == leader && s.role == Role::Leader)
        .max_by_key(|s| s.term);
    let voters = leader_view.or(best).map(|s| s.voters.clone()).unwrap_or_default();
    let healthy_voters: Vec<u64> =
        voters.iter().copied().filter(|v| rows.iter().any(|r| r.id == *v && healthy(r))).collect();
    let quorum = voters.len() / 2 + 1;
    Verdict { healthy: leader.is_some() && healthy_voters.len() >= quorum, leader, voters, healthy_voters, quorum }
}

/// One node's line of `--json`.
#[derive(Serialize)]
struct NodeRow<'a> {
    id: u64,
    api: &'a str,
    reachable: bool,
    health: bool,
    health_detail: Option<&'a str>,
    ready: bool,
    ready_detail: Option<&'a str>,
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    verdict: &'a Verdict,
    nodes: Vec<NodeRow<'a>>,
}

fn list(ids: &[u64]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// The sentence that sums the verdict up: "node 1 leads, 3 of 3 voters healthy (quorum 2)".
fn summary(v: &Verdict) -> String {
    match v.leader {
        None => "no leader is known (an election is under way, or no quorum of the voters answers)".into(),
        Some(l) => format!(
            "node {l} leads, {} of {} voters healthy ({}; a quorum is {})",
            v.healthy_voters.len(),
            v.voters.len(),
            if v.healthy_voters.is_empty() { "none".into() } else { list(&v.healthy_voters) },
            v.quorum
        ),
    }
}

/// One node's line: `node 1 127.0.0.1:7001 healthy: leader, quorum heard 3 ms ago`.
fn line(r: &NodeHealth) -> String {
    let head = format!("node {} {}", r.id, r.api);
    match (&r.health, &r.ready) {
        (None, _) => format!("{head} unreachable (no answer within {} s)", PROBE_TIMEOUT_MS as f64 / 1000.0),
        (Some(h), ready) => {
            let word = if h.ok { "healthy" } else { "unhealthy" };
            let ready = match ready {
                Some(p) if p.ok => "ready".to_string(),
                Some(p) => format!("not ready: {}", p.detail),
                None => "not ready: no answer".to_string(),
            };
            format!("{head} {word}: {}; {ready}", h.detail)
        }
    }
}

pub async fn run(cfg: &ClusterConfig, json: bool) -> anyhow::Result<i32> {
    let rows = tracker_client::admin::healths(cfg, Duration::from_millis(PROBE_TIMEOUT_MS)).await?;
    let v = verdict(&rows);
    if json {
        let nodes = rows
            .iter()
            .map(|r| NodeRow {
                id: r.id,
                api: &r.api,
                reachable: r.health.is_some() || r.status.is_some(),
                health: r.health.as_ref().is_some_and(|p| p.ok),
                health_detail: r.health.as_ref().map(|p| p.detail.as_str()),
                ready: r.ready.as_ref().is_some_and(|p| p.ok),
                ready_detail: r.ready.as_ref().map(|p| p.detail.as_str()),
            })
            .collect();
        println!("{}", serde_json::to_string(&Report { verdict: &v, nodes })?);
    } else {
        for r in &rows {
            println!("{}", line(r));
        }
        if v.healthy {
            println!("cluster healthy: {}", summary(&v));
        }
    }
    if v.healthy {
        Ok(0)
    } else {
        eprintln!("error: the cluster is unhealthy: {}", summary(&v));
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::api::NodeStatus;
    use tracker_client::admin::Probe;

    fn status(id: u64, role: Role, term: u64, leader: Option<u64>, voters: &[u64]) -> NodeStatus {
        NodeStatus {
            id,
            api: format!("127.0.0.1:{id}"),
            role,
            term,
            leader,
            leader_api: None,
            last_log_index: Some(1),
            applied_index: Some(1),
            snapshot_index: None,
            purged_index: None,
            voters: voters.to_vec(),
            learners: vec![],
            users: 0,
            groups: 0,
            files: 0,
            state_digest: None,
        }
    }

    fn up(st: NodeStatus, ok: bool) -> NodeHealth {
        let probe = Some(Probe { ok, detail: "d".into() });
        NodeHealth { id: st.id, api: st.api.clone(), status: Some(st), health: probe.clone(), ready: probe }
    }

    fn down(id: u64) -> NodeHealth {
        NodeHealth { id, api: format!("127.0.0.1:{id}"), status: None, health: None, ready: None }
    }

    #[test]
    fn a_leader_and_a_quorum_of_healthy_voters_is_healthy_and_nothing_less() {
        let v3 = [1, 2, 3];
        let leader = |ok| up(status(1, Role::Leader, 5, Some(1), &v3), ok);
        let follower = |id, ok| up(status(id, Role::Follower, 5, Some(1), &v3), ok);

        let all = verdict(&[leader(true), follower(2, true), follower(3, true)]);
        assert_eq!(
            (all.healthy, all.leader, all.healthy_voters.clone(), all.quorum),
            (true, Some(1), vec![1, 2, 3], 2)
        );
        // One voter down: still a quorum.
        assert!(verdict(&[leader(true), follower(2, true), down(3)]).healthy);
        // Two down: the leader alone is not a quorum (and its own /health fails without one).
        let one = verdict(&[leader(false), down(2), down(3)]);
        assert!(!one.healthy, "{one:?}");
        // No leader known: unhealthy whatever answers.
        let candidates =
            [up(status(1, Role::Candidate, 9, None, &v3), false), up(status(2, Role::Candidate, 9, None, &v3), false)];
        let none = verdict(&candidates);
        assert_eq!((none.healthy, none.leader), (false, None));
        // Nobody answers.
        assert!(!verdict(&[down(1), down(2), down(3)]).healthy);
        // A listed node outside the voters (a learner, a removed node) does not count.
        let five = [1, 2, 3, 4, 5];
        let rows = [
            up(status(1, Role::Leader, 5, Some(1), &five), true),
            up(status(2, Role::Follower, 5, Some(1), &five), true),
            down(3),
            down(4),
            down(5),
            up(status(6, Role::Learner, 5, Some(1), &five), true),
        ];
        let v = verdict(&rows);
        assert_eq!((v.healthy, v.quorum, v.healthy_voters.clone()), (false, 3, vec![1, 2]), "{v:?}");
    }
}
