//! The operator's side of the tracker API: every listed node's status, asked of each node on its
//! own (`tracker-node status`, and the nodes themselves: whether a cluster already runs, whether
//! a node was removed, whether a change keeps a quorum), and the admin calls (membership,
//! snapshots) made to the leader over TLS with the operator's certificate.
//!
//! Admin calls follow the leader with the client's retry policy (`retry.rs`: what an answer
//! means, the order nodes are tried in, which redirects to follow, the pause between rounds).
//! They differ from the peer's calls in one respect, which is why they have a loop of their own:
//! the leader may take most of the budget to answer (adding a voter waits for the learner to
//! catch up, a snapshot of a large state takes seconds), so the leader gets the rest of the
//! budget while a node not known to lead gets [`NON_LEADER_ATTEMPT_MS`].

use std::time::{Duration, Instant};

use proto::api::{HealthBody, MembersRequest, NodeStatus};
use proto::cluster::ClusterConfig;
use reqwest::Method;
use serde::Deserialize;

use crate::retry::{self, RetryPolicy, Verdict};
use crate::TrackerTls;

/// Bound on connecting to a node.
pub const CONNECT_TIMEOUT_MS: u64 = 500;
/// Longest wait for a node that is not known to lead: a follower answers a redirect at once, so
/// one that does not (paused, overloaded) is passed over instead of holding the whole budget.
pub const NON_LEADER_ATTEMPT_MS: u64 = 5_000;
/// Longest wait for each node's status when looking for the leader first.
pub const PROBE_MS: u64 = 2_000;
/// Pause between two rounds over the listed nodes.
const ROUND_PAUSE_MS: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The client cannot be built: a TLS file is missing or wrong (the message names it).
    #[error("{0}")]
    Setup(String),
    /// A node refused the call (a 4xx): final, not retried.
    #[error("node {node} refused ({code}): {message}")]
    Refused { node: String, code: proto::api::ApiErrorCode, message: String },
    /// A node answered a 4xx that is not in the API's error shape.
    #[error("node {node} refused: {body}")]
    Protocol { node: String, body: String },
    /// No leader answered within the budget; `last` is the last thing that went wrong.
    #[error("no tracker leader answered within {} s ({last})", budget_ms / 1000)]
    Unavailable { budget_ms: u64, last: String },
}

/// A client of the listed nodes' APIs and the scheme it speaks: HTTPS with the cluster CA pinned
/// once the CA file is there (always, after a node's first start), plain HTTP before that (which
/// the nodes serve on loopback addresses only). Short connect timeout, no proxies, no automatic
/// redirects (admin calls follow the leader themselves).
#[derive(Clone)]
pub struct NodesHttp {
    pub client: reqwest::Client,
    scheme: &'static str,
}

impl NodesHttp {
    /// With `operator`, the client shows the operator's certificate (admin calls need it), and
    /// its files must be readable: the error names them. `timeout` bounds each request.
    pub fn new(cfg: &ClusterConfig, timeout: Duration, operator: bool) -> Result<Self, AdminError> {
        Self::with_builder(cfg, timeout, operator, |b| b)
    }

    fn with_builder(
        cfg: &ClusterConfig,
        timeout: Duration,
        operator: bool,
        more: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Self, AdminError> {
        let (builder, scheme) = if operator || cfg.ca_file().path.exists() {
            let tls = TrackerTls::from_cluster(cfg, operator).map_err(|e| {
                AdminError::Setup(if operator {
                    format!("admin calls need the operator's certificate of the cluster CA: {e}")
                } else {
                    e
                })
            })?;
            (tls.reqwest_builder(), "https")
        } else {
            (reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy(), "http")
        };
        let client = more(builder.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS)).timeout(timeout))
            .build()
            .map_err(|e| AdminError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(NodesHttp { client, scheme })
    }

    pub fn url(&self, api: impl std::fmt::Display, path: &str) -> String {
        format!("{}://{api}{path}", self.scheme)
    }

    /// The status of the node at `api`: `None` unless it answers 2xx with a status in time.
    pub async fn status(&self, api: impl std::fmt::Display) -> Option<NodeStatus> {
        match self.client.get(self.url(api, "/v1/status")).send().await {
            Ok(r) if r.status().is_success() => r.json::<NodeStatus>().await.ok(),
            _ => None,
        }
    }

    /// One health probe (`GET /health` or `GET /readyz`) of the node at `api`: its verdict and
    /// detail, or `None` when the node did not answer in the probes' shape in time.
    pub async fn probe(&self, api: impl std::fmt::Display, path: &str) -> Option<Probe> {
        let r = self.client.get(self.url(api, path)).send().await.ok()?;
        let success = r.status().is_success();
        let body = r.json::<HealthBody>().await.ok()?;
        let detail = body.detail.or(body.error.map(|e| e.message)).unwrap_or_default();
        Some(Probe { ok: success && body.health, detail })
    }

    /// Every listed node's status, `/health` and `/readyz`, asked in parallel (the three of a
    /// node at once too), in the file's order.
    pub async fn healths(&self, cfg: &ClusterConfig) -> Vec<NodeHealth> {
        self.each_node(cfg, |http, id, api| async move {
            let (status, health, ready) =
                tokio::join!(http.status(&api), http.probe(&api, "/health"), http.probe(&api, "/readyz"));
            NodeHealth { id, api, status, health, ready }
        })
        .await
        .into_iter()
        .zip(&cfg.nodes)
        .map(|(row, n)| {
            row.unwrap_or_else(|| NodeHealth {
                id: n.id,
                api: n.api.to_string(),
                status: None,
                health: None,
                ready: None,
            })
        })
        .collect()
    }

    /// Every listed node's status, asked in parallel: `(id, api, status)` in the file's order,
    /// `None` for a node that did not answer.
    pub async fn statuses(&self, cfg: &ClusterConfig) -> Vec<(u64, String, Option<NodeStatus>)> {
        let rows = self.each_node(cfg, |http, id, api| async move {
            let st = http.status(&api).await;
            (id, api, st)
        });
        rows.await.into_iter().zip(&cfg.nodes).map(|(row, n)| row.unwrap_or((n.id, n.api.to_string(), None))).collect()
    }

    /// Runs `ask(http, id, api)` for every listed node at once; the answers in the file's order,
    /// `None` where the task did not finish.
    async fn each_node<T, Fut>(
        &self,
        cfg: &ClusterConfig,
        ask: impl Fn(NodesHttp, u64, String) -> Fut,
    ) -> Vec<Option<T>>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let asks: Vec<_> = cfg.nodes.iter().map(|n| tokio::spawn(ask(self.clone(), n.id, n.api.to_string()))).collect();
        let mut rows = Vec::with_capacity(asks.len());
        for a in asks {
            rows.push(a.await.ok());
        }
        rows
    }

    /// The API address of the leader as the listed nodes see it: every node is asked at once;
    /// the first that names a leader decides.
    pub async fn probe_leader(&self, apis: &[String]) -> Option<String> {
        let mut asks = tokio::task::JoinSet::new();
        for api in apis {
            let (http, api) = (self.clone(), api.clone());
            asks.spawn(async move { http.status(api).await?.leader_api });
        }
        while let Some(answer) = asks.join_next().await {
            if let Ok(Some(leader)) = answer {
                return Some(leader);
            }
        }
        None
    }
}

/// A health probe's answer: `ok` when the node answered 200 with `"health": true`; `detail` is
/// the node's detail, or its reason when not ok.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub ok: bool,
    pub detail: String,
}

/// One listed node's answers to `tracker-node health`: `None` where it did not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeHealth {
    pub id: u64,
    pub api: String,
    pub status: Option<NodeStatus>,
    pub health: Option<Probe>,
    pub ready: Option<Probe>,
}

/// Every listed node's status and probes, each asked with `timeout`: see [`NodesHttp::healths`].
pub async fn healths(cfg: &ClusterConfig, timeout: Duration) -> Result<Vec<NodeHealth>, AdminError> {
    Ok(NodesHttp::new(cfg, timeout, false)?.healths(cfg).await)
}

/// Every listed node's status, each asked with `timeout`: see [`NodesHttp::statuses`].
pub async fn statuses(
    cfg: &ClusterConfig,
    timeout: Duration,
) -> Result<Vec<(u64, String, Option<NodeStatus>)>, AdminError> {
    Ok(NodesHttp::new(cfg, timeout, false)?.statuses(cfg).await)
}

/// The leader's answer to a membership change.
#[derive(Debug, Clone)]
pub struct MembersChanged {
    /// The voters once the change is in place.
    pub voters: Vec<u64>,
    /// The answer as the leader wrote it (`tracker-node members --json` prints it as is).
    pub json: String,
}

#[derive(Deserialize)]
struct VotersBody {
    #[serde(default)]
    voters: Vec<u64>,
}

/// The operator's client of the admin API: the cluster file's nodes, the operator's
/// certificate, the cluster secret when one is set, and a budget per call.
pub struct AdminClient {
    http: NodesHttp,
    nodes: Vec<String>,
    policy: RetryPolicy,
    /// The statuses asked first, to find the leader.
    probe: NodesHttp,
}

impl AdminClient {
    /// Each call keeps trying for `budget_ms` before it is [`AdminError::Unavailable`].
    pub fn new(cfg: &ClusterConfig, budget_ms: u64) -> Result<Self, AdminError> {
        let secret = cfg.secret.clone();
        let http = NodesHttp::with_builder(cfg, Duration::from_millis(budget_ms), true, |b| match secret {
            Some(s) => match reqwest::header::HeaderValue::from_str(&s) {
                Ok(v) => {
                    let name = reqwest::header::HeaderName::from_static(proto::api::CLUSTER_SECRET);
                    b.default_headers([(name, v)].into_iter().collect())
                }
                Err(_) => b,
            },
            None => b,
        })?;
        let probe = NodesHttp::new(cfg, Duration::from_millis(PROBE_MS), false)?;
        let policy = RetryPolicy {
            budget_ms,
            backoff_initial_ms: ROUND_PAUSE_MS,
            backoff_max_ms: ROUND_PAUSE_MS,
            ..RetryPolicy::default()
        };
        let nodes = cfg.nodes.iter().map(|n| n.api.to_string()).collect();
        Ok(AdminClient { http, nodes, policy, probe })
    }

    /// Makes listed node `req.id` a voter or removes it (`POST /v1/admin/members`).
    pub async fn members(&self, req: &MembersRequest) -> Result<MembersChanged, AdminError> {
        let body = serde_json::to_vec(req).expect("a membership request serializes");
        let bytes = self.call(Method::POST, "/v1/admin/members", Some(body)).await?;
        let json = String::from_utf8_lossy(&bytes).into_owned();
        let voters = serde_json::from_str::<VotersBody>(&json).map(|b| b.voters).unwrap_or_default();
        Ok(MembersChanged { voters, json })
    }

    /// The leader's state as a snapshot file, consistent as of the call (`GET /v1/admin/snapshot`).
    pub async fn snapshot(&self) -> Result<Vec<u8>, AdminError> {
        self.call(Method::GET, "/v1/admin/snapshot", None).await
    }

    /// One call to the leader: the leader the listed nodes name first, then every listed node in
    /// turn, following redirects, round after round until the budget is spent.
    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, AdminError> {
        let started = Instant::now();
        let budget = Duration::from_millis(self.policy.budget_ms);
        let mut leader = self.probe.probe_leader(&self.nodes).await;
        let mut last = String::from("no node answered");
        let mut round = 0u32;
        while started.elapsed() < budget {
            let mut queue = retry::round_order(&self.nodes, leader.as_deref(), &[]);
            let (mut i, mut redirects) = (0usize, 0usize);
            while let Some(node) = queue.get(i).cloned() {
                i += 1;
                let leads = leader.as_deref() == Some(node.as_str());
                let Some(wait) = self.attempt_timeout(started.elapsed(), leads) else { break };
                let (status, bytes) = match self.attempt(&node, &method, path, &body, wait).await {
                    Ok(answer) => answer,
                    Err(e) => {
                        last = format!("{node}: {e}");
                        continue;
                    }
                };
                match retry::classify(&node, status, &bytes) {
                    Verdict::Done => return Ok(bytes),
                    Verdict::Refused { code, message } => return Err(AdminError::Refused { node, code, message }),
                    Verdict::Protocol(_) => {
                        let body = String::from_utf8_lossy(&bytes).into_owned();
                        return Err(AdminError::Protocol { node, body });
                    }
                    Verdict::Redirect(to) => {
                        last = format!("{node}: redirected to {to}");
                        if self.policy.follow_redirect(&node, &to, &[], redirects) {
                            redirects += 1;
                            leader = Some(to.clone());
                            queue.insert(i, to);
                        }
                    }
                    Verdict::Busy(m) => last = m,
                }
            }
            let pause = self.policy.backoff(round, 0.0).min(budget.saturating_sub(started.elapsed()));
            round += 1;
            tokio::time::sleep(pause).await;
        }
        Err(AdminError::Unavailable { budget_ms: self.policy.budget_ms, last })
    }

    /// The rest of the budget for the leader, at most [`NON_LEADER_ATTEMPT_MS`] for another node;
    /// `None` once the budget is spent.
    fn attempt_timeout(&self, elapsed: Duration, leads: bool) -> Option<Duration> {
        let left = Duration::from_millis(self.policy.budget_ms).checked_sub(elapsed).filter(|l| !l.is_zero())?;
        Some(if leads { left } else { left.min(Duration::from_millis(NON_LEADER_ATTEMPT_MS)) })
    }

    /// One request to one node: its status and body, or why there is none.
    async fn attempt(
        &self,
        node: &str,
        method: &Method,
        path: &str,
        body: &Option<Vec<u8>>,
        wait: Duration,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut b = self.http.client.request(method.clone(), self.http.url(node, path)).timeout(wait);
        if let Some(body) = body {
            b = b.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
        }
        let resp = b.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| format!("reading the answer: {e}"))?;
        Ok((status, bytes.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster file of `nodes` in a folder that does not exist (no TLS files there).
    fn cfg(nodes: &[&str]) -> ClusterConfig {
        let mut toml = String::from("[cluster]\n");
        for (i, api) in nodes.iter().enumerate() {
            let id = i + 1;
            toml.push_str(&format!(
                "\n[[node]]\nid = {id}\napi = \"{api}\"\nraft = \"127.0.0.1:{}\"\ndata_dir = \"n{id}\"\n",
                20 + i
            ));
        }
        ClusterConfig::parse(&toml, std::path::Path::new("/nonexistent-admin-test/cluster.toml")).unwrap()
    }

    #[test]
    fn the_leader_gets_the_rest_of_the_budget_and_the_others_a_few_seconds() {
        let c = AdminClient {
            http: NodesHttp { client: reqwest::Client::new(), scheme: "http" },
            nodes: vec![],
            policy: RetryPolicy { budget_ms: 60_000, ..RetryPolicy::default() },
            probe: NodesHttp { client: reqwest::Client::new(), scheme: "http" },
        };
        let ms = Duration::from_millis;
        assert_eq!(c.attempt_timeout(ms(1_000), true), Some(ms(59_000)));
        assert_eq!(c.attempt_timeout(ms(1_000), false), Some(ms(NON_LEADER_ATTEMPT_MS)));
        assert_eq!(c.attempt_timeout(ms(58_000), false), Some(ms(2_000)));
        assert_eq!(c.attempt_timeout(ms(60_000), true), None);
    }

    #[test]
    fn admin_calls_without_the_operators_files_name_what_is_missing() {
        let c = cfg(&["127.0.0.1:10"]);
        let err = AdminClient::new(&c, 1_000).err().expect("no operator certificate there");
        assert!(
            err.to_string().starts_with("admin calls need the operator's certificate of the cluster CA: cannot read"),
            "{err}"
        );
    }
}
