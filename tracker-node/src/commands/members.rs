//! `tracker-node members add|remove --id N`: sends the change to the leader (following
//! redirects, trying every listed node) with the cluster secret when one is set. `members list`:
//! the voters and learners as the leader reports them.

use std::time::Duration;

use proto::api::{MembersRequest, NodeStatus, Role};
use proto::cluster::ClusterConfig;
use serde::Serialize;
use tracker_client::admin::AdminClient;

/// How long each node gets to answer `members list` and the check after `members remove`.
const LOOK_TIMEOUT_MS: u64 = 1500;

/// Adding waits for the learner to catch up (at most `[cluster] members_add_timeout_ms`); the
/// whole command is bound by that and this much more for finding the leader and its answer.
const MEMBERS_BUDGET_BEYOND_ADD_MS: u64 = 90_000;

/// The voters as a leader sees them, if a leader answers within a short timeout.
async fn leader_voters(cfg: &ClusterConfig) -> Option<Vec<u64>> {
    let rows = tracker_client::admin::statuses(cfg, Duration::from_millis(1500)).await.ok()?;
    rows.into_iter().filter_map(|(_, _, st)| st).find(|st| st.role == proto::api::Role::Leader).map(|st| st.voters)
}

fn list(ids: &[u64]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// The sentence (or, with `--json`, the JSON) for a change that was already in place.
fn already(action: &str, id: u64, voters: &[u64], json: bool) -> i32 {
    if json {
        println!("{}", serde_json::json!({ "ok": true, "id": id, "voters": voters, "unchanged": true }));
    } else if action == "add" {
        println!("node {id} is already a voter (voters: {})", list(voters));
    } else {
        println!("node {id} is not a voter (voters: {})", list(voters));
    }
    0
}

pub async fn run(cfg: &ClusterConfig, action: &str, id: u64, json: bool) -> anyhow::Result<i32> {
    let node = cfg.require_node(id)?;
    // Nothing to change: say so instead of sending a change that changes nothing.
    if let Some(voters) = leader_voters(cfg).await {
        if (action == "add") == voters.contains(&id) {
            return Ok(already(action, id, &voters, json));
        }
    }
    let req = MembersRequest { action: action.into(), id, api: node.api.to_string(), raft: node.raft.to_string() };
    let changed = AdminClient::new(cfg, cfg.members_add_timeout_ms + MEMBERS_BUDGET_BEYOND_ADD_MS)?.members(&req).await;
    let Some(changed) = super::answered(changed, "accepted the change")? else {
        return Ok(3);
    };
    if json {
        println!("{}", changed.json);
    } else if action == "add" {
        println!("node {id} is now a voter (voters: {})", list(&changed.voters));
    } else {
        println!("node {id} is no longer a voter (voters: {})", list(&changed.voters));
    }
    if action == "remove" {
        eprintln!("{}", after_remove(cfg, id).await);
    }
    Ok(0)
}

/// What to do after removing node `id`: its process does not stop by itself (it keeps running
/// and answering, `status` shows it as `removed`), so the operator is told to stop it.
async fn after_remove(cfg: &ClusterConfig, id: u64) -> String {
    let Some(node) = cfg.node(id) else { return String::new() };
    let http = tracker_client::admin::NodesHttp::new(cfg, Duration::from_millis(LOOK_TIMEOUT_MS), false);
    let runs = match http {
        Ok(http) => http.status(node.api).await.is_some(),
        Err(_) => false,
    };
    let data_dir = node.data_dir.display();
    if runs {
        format!(
            "node {id} still runs (it answers on {}): stop it now; move its data_dir {data_dir} away unless you \
             add it again",
            node.api
        )
    } else {
        format!(
            "node {id} did not answer: if it still runs somewhere, stop it; move its data_dir {data_dir} away \
             unless you add it again"
        )
    }
}

/// The leader among the answers: the node that says it leads, of the latest term.
pub fn leader_of(rows: &[(u64, String, Option<NodeStatus>)]) -> Option<&NodeStatus> {
    rows.iter().filter_map(|(_, _, st)| st.as_ref()).filter(|st| st.role == Role::Leader).max_by_key(|st| st.term)
}

/// One member in `members list --json`.
#[derive(Serialize)]
struct MemberRow {
    id: u64,
    /// Its addresses as the cluster file lists them (null for a member the file does not list).
    api: Option<String>,
    raft: Option<String>,
    voter: bool,
    /// The role the node reports itself, null when it did not answer.
    role: Option<Role>,
}

#[derive(Serialize)]
struct MembersList {
    leader: u64,
    term: u64,
    voters: Vec<u64>,
    learners: Vec<u64>,
    members: Vec<MemberRow>,
}

/// `tracker-node members list`: the voters and learners as the leader reports them; exit 3 when
/// no node says it leads.
pub async fn list_members(cfg: &ClusterConfig, json: bool) -> anyhow::Result<i32> {
    let rows = tracker_client::admin::statuses(cfg, Duration::from_millis(LOOK_TIMEOUT_MS)).await?;
    let Some(leader) = leader_of(&rows) else {
        let answered = rows.iter().filter(|(_, _, st)| st.is_some()).count();
        eprintln!(
            "error: no node leads the cluster now ({answered} of {} listed nodes answered; see tracker-node status)",
            rows.len()
        );
        return Ok(3);
    };
    let role_of =
        |id: u64| rows.iter().find(|(i, _, _)| *i == id).and_then(|(_, _, st)| st.as_ref()).map(|st| st.role.clone());
    let members: Vec<MemberRow> = leader
        .voters
        .iter()
        .map(|v| (*v, true))
        .chain(leader.learners.iter().map(|l| (*l, false)))
        .map(|(id, voter)| MemberRow {
            id,
            api: cfg.node(id).map(|n| n.api.to_string()),
            raft: cfg.node(id).map(|n| n.raft.to_string()),
            voter,
            role: role_of(id),
        })
        .collect();
    if json {
        let out = MembersList {
            leader: leader.id,
            term: leader.term,
            voters: leader.voters.clone(),
            learners: leader.learners.clone(),
            members,
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(0);
    }
    println!("{:<4} {:<8} {:<12} {:<22} raft", "id", "member", "role", "api");
    for m in &members {
        let role = m.role.as_ref().map(|r| r.to_string()).unwrap_or_else(|| "unreachable".into());
        println!(
            "{:<4} {:<8} {:<12} {:<22} {}",
            m.id,
            if m.voter { "voter" } else { "learner" },
            role,
            m.api.as_deref().unwrap_or("-"),
            m.raft.as_deref().unwrap_or("-")
        );
    }
    let others: Vec<u64> = cfg.nodes.iter().map(|n| n.id).filter(|id| members.iter().all(|m| m.id != *id)).collect();
    if !others.is_empty() {
        println!("listed in {} but not members: {}", cfg.path.display(), list(&others));
    }
    Ok(0)
}
