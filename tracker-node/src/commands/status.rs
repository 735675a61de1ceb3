//! `tracker-node status`: asks every listed node for its status, in parallel, each with a
//! short timeout; unreachable nodes are rows too.

use std::time::Duration;

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

pub async fn run(cfg: &ClusterConfig, json: bool) -> anyhow::Result<i32> {
    let rows = tracker_client::admin::statuses(cfg, Duration::from_millis(1500)).await?;
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
