//! `tracker-node members add|remove --id N`: sends the change to the leader (following
//! redirects, trying every listed node) with the cluster secret when one is set.

use std::time::Duration;

use proto::api::MembersRequest;
use proto::cluster::ClusterConfig;

/// Adding waits for the learner to catch up; bound the whole command.
const MEMBERS_BUDGET_MS: u64 = 120_000;

/// The voters as a leader sees them, if a leader answers within a short timeout.
async fn leader_voters(cfg: &ClusterConfig) -> Option<Vec<u64>> {
    let rows = super::status::fetch_all(cfg, Duration::from_millis(1500)).await.ok()?;
    rows.into_iter().filter_map(|(_, _, st)| st).find(|st| st.role == "leader").map(|st| st.voters)
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
    let body = serde_json::to_value(&req)?;
    let Some(bytes) = super::admin_call(
        cfg,
        reqwest::Method::POST,
        "/v1/admin/members",
        Some(&body),
        MEMBERS_BUDGET_MS,
        "accepted the change",
    )
    .await?
    else {
        return Ok(3);
    };
    let text = String::from_utf8_lossy(&bytes);
    if json {
        println!("{text}");
    } else {
        let voters: Vec<u64> = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::from_value(v["voters"].clone()).ok())
            .unwrap_or_default();
        if action == "add" {
            println!("node {id} is now a voter (voters: {})", list(&voters));
        } else {
            println!("node {id} is no longer a voter (voters: {})", list(&voters));
        }
    }
    Ok(0)
}
