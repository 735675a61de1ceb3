//! `tracker-node members add|remove --id N`: sends the change to the leader (following
//! redirects, trying every listed node) with the cluster secret when one is set.

use std::time::Duration;

use proto::api::MembersRequest;
use proto::cluster::ClusterConfig;
use tracker_client::admin::AdminClient;

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
    Ok(0)
}
