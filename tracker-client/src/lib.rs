//! The tracker cluster's client, used by the peer, the chaos harness and the benchmarks.
//!
//! It holds the list of tracker nodes, caches the leader, follows redirects, moves on to the
//! next node when one refuses the connection or does not answer within the attempt timeout,
//! retries "unavailable" with capped backoff inside the call's time budget, and sends the same
//! request id (`Idempotency-Key`) on every retry of one write so the cluster applies it once.
//!
//! Architecture Invariant: the client knows the API (proto::api), never the state machine.

pub mod retry;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::api::{
    AcceptRequest, AnnounceRequest, CreateGroupRequest, ErrorBody, FileDetails, FileMetaBody, FileRow, GroupRow,
    LoginRequest, LoginResponse, NodeStatus, NotLeaderBody, RegisterRequest, RequestRow, UploadRequest,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use retry::RetryPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered and said no: final, not retried.
    #[error("{message}")]
    Refused { code: String, message: String },
    /// No leader answered within the budget: retryable later.
    #[error("no tracker leader reachable within {budget_ms} ms ({last})")]
    Unavailable { budget_ms: u64, last: String },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the tracker: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn code(&self) -> &str {
        match self {
            ClientError::Refused { code, .. } => code,
            ClientError::Unavailable { .. } => "unavailable",
            ClientError::Protocol(_) => "unavailable",
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A client of the tracker cluster; cheap to clone (clones share the leader cache).
#[derive(Clone)]
pub struct TrackerClient {
    http: reqwest::Client,
    nodes: Arc<Vec<String>>,
    leader: Arc<Mutex<Option<String>>>,
    policy: RetryPolicy,
    token: Option<String>,
}

/// What one attempt at one node came to.
enum Attempt {
    Done(Vec<u8>),
    Refused(ClientError),
    Redirect(String),
    /// The node answers but cannot serve now (no leader, no quorum).
    Busy(String),
    /// The node did not answer (refused, reset, timed out).
    Down(String),
}

impl TrackerClient {
    /// `nodes` are the api addresses (`host:port`) of the tracker nodes.
    pub fn new(nodes: Vec<String>, policy: RetryPolicy) -> Self {
        assert!(!nodes.is_empty(), "a tracker client needs at least one node");
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(policy.connect_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        TrackerClient { http, nodes: Arc::new(nodes), leader: Arc::new(Mutex::new(None)), policy, token: None }
    }

    /// The same client, acting for the session `token`.
    pub fn with_token(&self, token: Option<String>) -> Self {
        TrackerClient { token, ..self.clone() }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn cached_leader(&self) -> Option<String> {
        self.leader.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_leader(&self, l: Option<String>) {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = l;
    }

    async fn attempt(&self, node: &str, method: &Method, path: &str, body: &Option<Vec<u8>>, request_id: &Option<String>) -> Attempt {
        let mut b = self
            .http
            .request(method.clone(), format!("http://{node}{path}"))
            .timeout(Duration::from_millis(self.policy.attempt_timeout_ms));
        if let Some(t) = &self.token {
            b = b.bearer_auth(t);
        }
        if let Some(id) = request_id {
            b = b.header(proto::api::IDEMPOTENCY_KEY, id);
        }
        if let Some(body) = body {
            b = b.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
        }
        let resp = match b.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Down(format!("{node}: {}", short(&e))),
        };
        let status = resp.status();
        let bytes = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => return Attempt::Down(format!("{node}: {}", short(&e))),
        };
        if status.is_success() {
            return Attempt::Done(bytes);
        }
        if status == StatusCode::TEMPORARY_REDIRECT {
            return match serde_json::from_slice::<NotLeaderBody>(&bytes) {
                Ok(nl) => Attempt::Redirect(nl.leader.api),
                Err(_) => Attempt::Busy(format!("{node}: redirect without a leader")),
            };
        }
        let err: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        if status == StatusCode::SERVICE_UNAVAILABLE || status.is_server_error() {
            let m = err.map(|e| e.error.message).unwrap_or_else(|| status.to_string());
            return Attempt::Busy(format!("{node}: {m}"));
        }
        match err {
            Some(e) => Attempt::Refused(ClientError::Refused { code: e.error.code, message: e.error.message }),
            None => Attempt::Refused(ClientError::Protocol(format!("{node} answered {status}"))),
        }
    }

    /// One API call with failover. `write` calls carry a request id, the same on every retry.
    pub async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&impl Serialize>, write: bool) -> Result<T> {
        let body = body.map(|b| serde_json::to_vec(b).expect("request bodies serialize"));
        let request_id = write.then(|| uuid::Uuid::new_v4().to_string());
        self.call_with_id(method, path, body, request_id).await
    }

    /// Like `call`, with a caller-chosen request id (the chaos harness records it).
    pub async fn call_with_id<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        request_id: Option<String>,
    ) -> Result<T> {
        let started = Instant::now();
        let budget = Duration::from_millis(self.policy.budget_ms);
        let mut failed: Vec<String> = Vec::new();
        let mut last = String::from("no attempt made");
        let mut round = 0u32;
        loop {
            let leader = self.cached_leader();
            let mut queue = retry::round_order(&self.nodes, leader.as_deref(), &failed);
            let mut redirects = 0usize;
            let mut i = 0usize;
            while i < queue.len() {
                if started.elapsed() >= budget {
                    return Err(ClientError::Unavailable { budget_ms: self.policy.budget_ms, last });
                }
                let node = queue[i].clone();
                i += 1;
                match self.attempt(&node, &method, path, &body, &request_id).await {
                    Attempt::Done(bytes) => {
                        self.set_leader(Some(node));
                        let bytes = if bytes.is_empty() { b"null".to_vec() } else { bytes };
                        return serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()));
                    }
                    Attempt::Refused(e) => {
                        self.set_leader(Some(node));
                        return Err(e);
                    }
                    Attempt::Redirect(to) => {
                        last = format!("{node}: redirected to {to}");
                        // A redirect to a node that failed during this call (a dead leader that
                        // followers still name) is a reason to try the others, not to loop.
                        if !failed.contains(&to) && redirects < self.policy.max_redirects_per_round && to != node {
                            redirects += 1;
                            self.set_leader(Some(to.clone()));
                            queue.insert(i, to);
                        }
                    }
                    Attempt::Busy(m) => last = m,
                    Attempt::Down(m) => {
                        last = m;
                        if self.cached_leader().as_deref() == Some(node.as_str()) {
                            self.set_leader(None);
                        }
                        if !failed.contains(&node) {
                            failed.push(node);
                        }
                    }
                }
            }
            // Nodes that were down may be back after the pause; let them be tried again.
            if failed.len() >= self.nodes.len() {
                failed.clear();
            }
            let pause = self.policy.backoff(round, rand::random::<f64>());
            round += 1;
            let left = budget.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(ClientError::Unavailable { budget_ms: self.policy.budget_ms, last });
            }
            tokio::time::sleep(pause.min(left)).await;
        }
    }

    // ---- typed calls, one per API route (docs/API.md) ----

    pub async fn register(&self, user: &str, password: &str) -> Result<serde_json::Value> {
        let body = RegisterRequest { user: user.into(), password: password.into() };
        self.call(Method::POST, "/v1/users", Some(&body), true).await
    }

    /// Opens a session with a token drawn here, so a retried login opens that same session.
    pub async fn login(&self, user: &str, password: &str) -> Result<LoginResponse> {
        let token: [u8; 32] = rand::random();
        let body = LoginRequest { user: user.into(), password: password.into(), token: Some(hex(&token)) };
        self.call(Method::POST, "/v1/sessions", Some(&body), true).await
    }

    pub async fn logout(&self) -> Result<serde_json::Value> {
        self.call(Method::DELETE, "/v1/sessions", None::<&()>, true).await
    }

    pub async fn whoami(&self) -> Result<serde_json::Value> {
        self.call(Method::GET, "/v1/session", None::<&()>, false).await
    }

    pub async fn announce(&self, peer_addr: &str) -> Result<serde_json::Value> {
        let body = AnnounceRequest { peer_addr: peer_addr.into() };
        self.call(Method::PUT, "/v1/peer", Some(&body), true).await
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupRow>> {
        self.call(Method::GET, "/v1/groups", None::<&()>, false).await
    }

    pub async fn create_group(&self, group: &str) -> Result<serde_json::Value> {
        let body = CreateGroupRequest { group: group.into() };
        self.call(Method::POST, "/v1/groups", Some(&body), true).await
    }

    pub async fn join_group(&self, group: &str) -> Result<serde_json::Value> {
        self.call(Method::POST, &format!("/v1/groups/{}/requests", seg(group)), None::<&()>, true).await
    }

    pub async fn leave_group(&self, group: &str) -> Result<serde_json::Value> {
        self.call(Method::DELETE, &format!("/v1/groups/{}/members/me", seg(group)), None::<&()>, true).await
    }

    pub async fn list_requests(&self, group: &str) -> Result<Vec<RequestRow>> {
        self.call(Method::GET, &format!("/v1/groups/{}/requests", seg(group)), None::<&()>, false).await
    }

    pub async fn accept_request(&self, group: &str, user: &str) -> Result<serde_json::Value> {
        let body = AcceptRequest { user: user.into() };
        self.call(Method::POST, &format!("/v1/groups/{}/members", seg(group)), Some(&body), true).await
    }

    pub async fn list_files(&self, group: &str) -> Result<Vec<FileRow>> {
        self.call(Method::GET, &format!("/v1/groups/{}/files", seg(group)), None::<&()>, false).await
    }

    pub async fn file_details(&self, group: &str, name: &str) -> Result<FileDetails> {
        self.call(Method::GET, &format!("/v1/groups/{}/files/{}", seg(group), seg(name)), None::<&()>, false).await
    }

    pub async fn upload(&self, group: &str, file: FileMetaBody, peer_addr: &str) -> Result<serde_json::Value> {
        let body = UploadRequest { file, peer_addr: peer_addr.into() };
        self.call(Method::POST, &format!("/v1/groups/{}/files", seg(group)), Some(&body), true).await
    }

    pub async fn stop_share(&self, group: &str, name: &str) -> Result<serde_json::Value> {
        let path = format!("/v1/groups/{}/files/{}/sharers/me", seg(group), seg(name));
        self.call(Method::DELETE, &path, None::<&()>, true).await
    }

    /// The status of one node, without failover (for operators and tests).
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus> {
        match self.attempt(node, &Method::GET, "/v1/status", &None, &None).await {
            Attempt::Done(b) => serde_json::from_slice(&b).map_err(|e| ClientError::Protocol(e.to_string())),
            Attempt::Refused(e) => Err(e),
            Attempt::Redirect(_) | Attempt::Busy(_) | Attempt::Down(_) => {
                Err(ClientError::Unavailable { budget_ms: self.policy.attempt_timeout_ms, last: format!("{node} did not answer") })
            }
        }
    }
}

fn short(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(x) = src {
            s = format!("{s}: {x}");
            src = x.source();
        }
        s
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes one path segment (names may hold spaces, `%`, `?`, `#`, UTF-8).
pub fn seg(s: &str) -> String {
    // "." and ".." would be collapsed by URL normalisation; encode them whole.
    if s == "." || s == ".." {
        return s.replace('.', "%2E");
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
