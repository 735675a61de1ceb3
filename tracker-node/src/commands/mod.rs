//! The operator commands other than `run`: `up` (a local cluster as child processes),
//! `status` (one row per node), `members` (voter changes through the leader), `certs` (the
//! cluster CA and node certificates).

pub mod certs;
pub mod members;
pub mod snapshot;
pub mod status;
pub mod up;

use std::time::{Duration, Instant};

use anyhow::bail;
use proto::api::NotLeaderBody;
use proto::cluster::ClusterConfig;

/// Leader hops (redirects) an admin call follows from one listed node.
const MAX_REDIRECTS: usize = 5;

/// A client of the nodes' APIs and the scheme it speaks: HTTPS with the cluster CA pinned once
/// the CA file is there (always, after a node's first start), plain HTTP before that (which
/// the nodes serve on loopback addresses only). Short connect timeout, no proxies, no automatic
/// redirects (the commands follow the leader themselves).
#[derive(Clone)]
pub struct NodesHttp {
    pub client: reqwest::Client,
    scheme: &'static str,
}

impl NodesHttp {
    pub fn url(&self, api: impl std::fmt::Display, path: &str) -> String {
        format!("{}://{api}{path}", self.scheme)
    }
}

/// With `operator`, the client shows the operator's certificate (admin calls need it), and its
/// files must be readable: the error names them.
pub fn nodes_http(cfg: &ClusterConfig, timeout: Duration, operator: bool) -> anyhow::Result<NodesHttp> {
    let (builder, scheme) = if operator || cfg.ca_file().path.exists() {
        let tls = tracker_client::TrackerTls::from_cluster(cfg, operator).map_err(|e| {
            if operator {
                anyhow::anyhow!("admin calls need the operator's certificate of the cluster CA: {e}")
            } else {
                anyhow::anyhow!(e)
            }
        })?;
        (tls.reqwest_builder(), "https")
    } else {
        (reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy(), "http")
    };
    let client = builder.connect_timeout(Duration::from_millis(500)).timeout(timeout).build()?;
    Ok(NodesHttp { client, scheme })
}

/// Longest wait for a node that is not known to lead: a follower answers a redirect at once, so
/// one that does not (paused, overloaded) is passed over instead of holding the whole budget.
const NON_LEADER_ATTEMPT_MS: u64 = 5_000;
/// Longest wait for each node's status when looking for the leader first.
const PROBE_MS: u64 = 2_000;

/// The API address of the leader as the listed nodes see it: each node's `GET /v1/status` is
/// asked at once, at most `PROBE_MS`; the first that names a leader decides.
async fn probe_leader(cfg: &ClusterConfig) -> Option<String> {
    let http = nodes_http(cfg, Duration::from_millis(PROBE_MS), false).ok()?;
    let mut asks: tokio::task::JoinSet<Option<String>> = tokio::task::JoinSet::new();
    for n in &cfg.nodes {
        let (http, api) = (http.clone(), n.api.to_string());
        asks.spawn(async move {
            let st: proto::api::NodeStatus =
                http.client.get(http.url(api, "/v1/status")).send().await.ok()?.json().await.ok()?;
            st.leader_api
        });
    }
    while let Some(answer) = asks.join_next().await {
        if let Ok(Some(leader)) = answer {
            return Some(leader);
        }
    }
    None
}

/// One call to the leader's admin API: asks the leader the listed nodes name first, then tries
/// every listed node in turn, follows its redirects (at most `MAX_REDIRECTS` from each), over
/// TLS with the operator's certificate (and the cluster secret when one is set), and keeps going for `budget_ms`, pausing 200 ms between
/// rounds. The leader (known, or reached by a redirect) gets the rest of the budget; any other
/// node `NON_LEADER_ATTEMPT_MS`. `Ok(Some(body))` on success; `Ok(None)` when no leader
/// answered in time (said on stderr: "no tracker leader `did` ..."); an error for a refusal
/// (4xx), which is final.
pub async fn admin_call(
    cfg: &ClusterConfig,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
    budget_ms: u64,
    did: &str,
) -> anyhow::Result<Option<Vec<u8>>> {
    let http = nodes_http(cfg, Duration::from_millis(budget_ms), true)?;
    let deadline = Instant::now() + Duration::from_millis(budget_ms);
    let mut last_err = String::from("no node answered");
    let leader = probe_leader(cfg).await;
    while Instant::now() < deadline {
        let listed = cfg.nodes.iter().map(|n| n.api.to_string());
        for first in leader.iter().cloned().chain(listed) {
            let mut target = first;
            let mut leads = leader.as_deref() == Some(target.as_str());
            for _ in 0..MAX_REDIRECTS {
                let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                let wait = if leads { left } else { left.min(Duration::from_millis(NON_LEADER_ATTEMPT_MS)) };
                let mut b = http.client.request(method.clone(), http.url(&target, path)).timeout(wait);
                if let Some(body) = body {
                    b = b.json(body);
                }
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
                let bytes = match resp.bytes().await {
                    Ok(b) => b.to_vec(),
                    Err(e) => {
                        last_err = format!("{target}: reading the answer: {e}");
                        break;
                    }
                };
                if status.is_success() {
                    return Ok(Some(bytes));
                }
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if status.as_u16() == 307 {
                    if let Ok(nl) = serde_json::from_str::<NotLeaderBody>(&text) {
                        target = nl.leader.api;
                        leads = true;
                        continue;
                    }
                }
                if status.is_client_error() {
                    match serde_json::from_str::<proto::api::ErrorBody>(&text) {
                        Ok(e) => bail!("node {target} refused ({}): {}", e.error.code, e.error.message),
                        Err(_) => bail!("node {target} refused: {text}"),
                    }
                }
                last_err = format!("{target}: {status} {text}");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("error: no tracker leader {did} within {} s ({last_err})", budget_ms / 1000);
    Ok(None)
}
