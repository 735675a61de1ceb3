//! `tracker-node members add|remove --id N`: sends the change to the leader (following
//! redirects, trying every listed node) with the cluster secret when one is set.

use std::time::{Duration, Instant};

use anyhow::bail;
use proto::api::{MembersRequest, NotLeaderBody};
use proto::cluster::ClusterConfig;

/// Adding waits for the learner to catch up; bound the whole command.
const MEMBERS_BUDGET_MS: u64 = 120_000;
/// Leader hops (redirects) followed within one attempt.
const MAX_REDIRECTS: usize = 5;

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
    let http = super::http_client(Duration::from_millis(MEMBERS_BUDGET_MS))?;
    let deadline = Instant::now() + Duration::from_millis(MEMBERS_BUDGET_MS);
    let mut last_err = String::from("no node answered");
    while Instant::now() < deadline {
        for n in &cfg.nodes {
            let mut target = n.api.to_string();
            for _ in 0..MAX_REDIRECTS {
                let mut b = http.post(format!("http://{target}/v1/admin/members")).json(&req);
                if let Some(s) = &cfg.secret {
                    b = b.header(proto::api::CLUSTER_SECRET, s);
                }
                let resp = match b.send().await {
                    Ok(r) => r,
                    Err(e) => {
                        last_err = format!("{target}: {e}");
                        break;
                    }
                };
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if status.is_success() {
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
                    return Ok(0);
                }
                if status.as_u16() == 307 {
                    if let Ok(nl) = serde_json::from_str::<NotLeaderBody>(&text) {
                        target = nl.leader.api;
                        continue;
                    }
                }
                if status.is_client_error() {
                    bail!("node {target} refused: {text}");
                }
                last_err = format!("{target}: {status} {text}");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("error: no tracker leader accepted the change within {} s ({last_err})", MEMBERS_BUDGET_MS / 1000);
    Ok(3)
}
