//! The tracker cluster's client, used by the peer, the chaos harness and the benchmarks.
//!
//! It holds the list of tracker nodes, caches the leader, follows redirects, moves on to the
//! next node when one refuses the connection or does not answer within the attempt timeout,
//! retries "unavailable" with capped backoff inside the call's time budget, and sends the same
//! request id (`Idempotency-Key`) on every retry of one write so the cluster applies it once.
//!
//! Architecture Invariant: the client knows the API (proto::api), never the state machine.

pub mod admin;
pub mod retry;
pub mod tls;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::api::{
    AcceptRequest, AcceptResponse, AliveResponse, AnnounceRequest, AnnounceResponse, ApiErrorCode, CreateGroupRequest,
    FileDetails, FileMetaBody, FileRow, GroupCreated, GroupRow, GroupsPage, JoinResponse, LeaveResponse, LoginRequest,
    LoginResponse, LogoutResponse, NodeStatus, RegisterRequest, RemoveMemberResponse, RequestRow, StopShareResponse,
    TicketKeyResponse, TicketRequest, TicketResponse, UploadRequest, UploadResponse, UserBody, GROUPS_PAGE_MAX,
};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use retry::RetryPolicy;
pub use tls::TrackerTls;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered and said no: final, not retried.
    #[error("{message}")]
    Refused { code: ApiErrorCode, message: String },
    /// No leader answered within the budget (`budget_ms`: the call's budget, or the shorter
    /// `all_refused_ms` when every node refused the connection): retryable later.
    #[error("no tracker leader reachable within {budget_ms} ms ({last})")]
    Unavailable { budget_ms: u64, last: String },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the tracker: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The contract's code for this error: the cluster's refusal, else `unavailable`.
    pub fn code(&self) -> &ApiErrorCode {
        static UNAVAILABLE: ApiErrorCode = ApiErrorCode::Unavailable;
        match self {
            ClientError::Refused { code, .. } => code,
            ClientError::Unavailable { .. } | ClientError::Protocol(_) => &UNAVAILABLE,
        }
    }
}

/// Most pages [`TrackerClient::list_groups`] follows: a million groups at `GROUPS_PAGE_MAX` a
/// page. A cluster that keeps answering "more" past it is answering wrongly.
pub const MAX_GROUP_PAGES: usize = 1_000;

/// A node that refused the connection is tried again this long after, within the same call.
const REFUSED_RETRY_MS: u64 = 200;

pub type Result<T> = std::result::Result<T, ClientError>;

/// A client of the tracker cluster; cheap to clone (clones share the leader cache).
#[derive(Clone)]
pub struct TrackerClient {
    http: reqwest::Client,
    nodes: Arc<Vec<String>>,
    leader: Arc<Mutex<Option<String>>>,
    policy: RetryPolicy,
    token: Option<String>,
    /// `https` once [`TrackerClient::with_tls`] pinned the cluster CA, else `http` (which the
    /// nodes serve on loopback addresses only).
    scheme: &'static str,
}

fn http_client(policy: &RetryPolicy, tls: Option<&TrackerTls>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(policy.connect_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(tls) = tls {
        b = b.use_preconfigured_tls((*tls.config).clone());
    }
    b.build().expect("http client")
}

/// What one attempt at one node came to.
enum Attempt {
    /// The node answered: what the answer means, and its body.
    Answered(retry::Verdict, Vec<u8>),
    /// The node did not answer: `refused` when nothing listens there (the connection was
    /// refused), otherwise reset, timed out, or cut off mid-answer.
    Down { message: String, refused: bool },
}

impl TrackerClient {
    /// `nodes` are the api addresses (`host:port`) of the tracker nodes.
    pub fn new(nodes: Vec<String>, policy: RetryPolicy) -> Self {
        assert!(!nodes.is_empty(), "a tracker client needs at least one node");
        let http = http_client(&policy, None);
        TrackerClient {
            http,
            nodes: Arc::new(nodes),
            leader: Arc::new(Mutex::new(None)),
            policy,
            token: None,
            scheme: "http",
        }
    }

    /// The same nodes over HTTPS, with the cluster CA of `tls` pinned (and its client
    /// certificate, if any, shown to the nodes).
    pub fn with_tls(self, tls: &TrackerTls) -> Self {
        TrackerClient { http: http_client(&self.policy, Some(tls)), scheme: "https", ..self }
    }

    /// Whether calls go over TLS with the cluster CA pinned.
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
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

    /// `req` sent to `node`, answered within `timeout`.
    async fn attempt(&self, node: &str, req: &CallRequest<'_>, timeout: Duration) -> Attempt {
        let url = format!("{}://{node}{}", self.scheme, req.path);
        let mut b = self.http.request(req.method.clone(), url).timeout(timeout);
        if let Some(t) = &self.token {
            b = b.bearer_auth(t);
        }
        if let Some(id) = &req.request_id {
            b = b.header(proto::api::IDEMPOTENCY_KEY, id);
        }
        if let Some(body) = &req.body {
            b = b.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
        }
        let resp = match b.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Down { message: format!("{node}: {}", short(&e)), refused: is_refused(&e) },
        };
        let status = resp.status();
        match resp.bytes().await {
            Ok(bytes) => Attempt::Answered(retry::classify(node, status.as_u16(), &bytes), bytes.to_vec()),
            Err(e) => Attempt::Down { message: format!("{node}: {}", short(&e)), refused: false },
        }
    }

    /// One API call with failover. `write` calls carry a request id, the same on every retry.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
        write: bool,
    ) -> Result<T> {
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
        let req = CallRequest { method, path, body, request_id };
        let mut call = CallState::new();
        let mut round = 0u32;
        loop {
            call.readmit_refused();
            if let Some(outcome) = self.round(&req, &mut call).await {
                return decode(&outcome?);
            }
            // Nodes that were down may be back after the pause; let them be tried again.
            if call.failed.len() >= self.nodes.len() {
                call.failed.clear();
            }
            let pause = self.policy.backoff(round, rand::random::<f64>());
            round += 1;
            let left = Duration::from_millis(self.policy.budget_ms).saturating_sub(call.started.elapsed());
            if left.is_zero() {
                return Err(call.unavailable(&self.policy));
            }
            tokio::time::sleep(pause.min(left)).await;
        }
    }

    /// One round of attempts: the nodes in `retry::round_order`, redirects followed within the
    /// policy's cap. `Some` when the call is over (the answer's body, or why not), `None` when
    /// every node was busy or down and the call goes on after a pause.
    async fn round(&self, req: &CallRequest<'_>, call: &mut CallState) -> Option<Result<Vec<u8>>> {
        let policy = &self.policy;
        let leader = self.cached_leader();
        let mut queue = retry::round_order(&self.nodes, leader.as_deref(), &call.failed);
        let mut redirects = 0usize;
        let mut i = 0usize;
        while i < queue.len() {
            let Some(timeout) = policy.attempt_timeout(call.started.elapsed()) else {
                return Some(Err(call.unavailable(policy)));
            };
            let node = queue[i].clone();
            i += 1;
            let (verdict, bytes) = match self.attempt(&node, req, timeout).await {
                Attempt::Answered(verdict, bytes) => (verdict, bytes),
                Attempt::Down { message, refused } => {
                    if self.cached_leader().as_deref() == Some(node.as_str()) {
                        self.set_leader(None);
                    }
                    if let Some(down) = call.down(&node, message, refused, &self.nodes, policy) {
                        return Some(Err(down));
                    }
                    continue;
                }
            };
            call.refusals.heard();
            match verdict {
                retry::Verdict::Redirect(to) => {
                    call.last = format!("{node}: redirected to {to}");
                    if policy.follow_redirect(&node, &to, &call.failed, redirects) {
                        redirects += 1;
                        self.set_leader(Some(to.clone()));
                        queue.insert(i, to);
                    }
                }
                retry::Verdict::Busy(m) => call.last = m,
                final_verdict => {
                    // Done or refused: this node speaks for the cluster.
                    if matches!(final_verdict, retry::Verdict::Done | retry::Verdict::Refused { .. }) {
                        self.set_leader(Some(node));
                    }
                    return Some(outcome(final_verdict, bytes));
                }
            }
        }
        None
    }

    // ---- typed calls, one per API route (docs/API.md) ----

    pub async fn register(&self, user: &str, password: &str) -> Result<UserBody> {
        let body = RegisterRequest { user: user.into(), password: password.into() };
        self.call(Method::POST, "/v1/users", Some(&body), true).await
    }

    /// Opens a session with a token drawn here, so a retried login opens that same session.
    pub async fn login(&self, user: &str, password: &str) -> Result<LoginResponse> {
        let token: [u8; 32] = rand::random();
        let body = LoginRequest { user: user.into(), password: password.into(), token: Some(hex(&token)) };
        self.call(Method::POST, "/v1/sessions", Some(&body), true).await
    }

    pub async fn logout(&self) -> Result<LogoutResponse> {
        self.call(Method::DELETE, "/v1/sessions", None::<&()>, true).await
    }

    pub async fn whoami(&self) -> Result<UserBody> {
        self.call(Method::GET, "/v1/session", None::<&()>, false).await
    }

    /// This peer's daemon serves pieces on `peer_addr`'s port (the tracker records the host the
    /// call comes from) and speaks with the channel key `peer_key` (64 hex).
    pub async fn announce(&self, peer_addr: &str, peer_key: &str) -> Result<AnnounceResponse> {
        let body = AnnounceRequest { peer_addr: peer_addr.into(), peer_key: peer_key.into() };
        self.call(Method::PUT, "/v1/peer", Some(&body), true).await
    }

    /// This peer's daemon (at `peer_addr`'s port, with key `peer_key`) is alive: the leader
    /// keeps it in memory, not in the log. The answer's `listed` is false when the tracker lists
    /// another address or key for this user (the call then counts for nothing: announce again).
    pub async fn alive(&self, peer_addr: &str, peer_key: &str) -> Result<AliveResponse> {
        let body = AnnounceRequest { peer_addr: peer_addr.into(), peer_key: peer_key.into() };
        self.call(Method::POST, "/v1/peer/alive", Some(&body), false).await
    }

    /// This peer's daemon is stopping: its shares stop being listed at once.
    pub async fn going_away(&self, peer_addr: &str, peer_key: &str) -> Result<AliveResponse> {
        let body = AnnounceRequest { peer_addr: peer_addr.into(), peer_key: peer_key.into() };
        self.call(Method::DELETE, "/v1/peer/alive", Some(&body), false).await
    }

    /// Every group, in name order: the pages of `GET /v1/groups` followed to the end (at
    /// most [`MAX_GROUP_PAGES`]). Each page is a linearizable read of its own: a group that
    /// exists throughout is listed exactly once; one created or deleted meanwhile may or may not be.
    pub async fn list_groups(&self) -> Result<Vec<GroupRow>> {
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_GROUP_PAGES {
            let page = self.list_groups_page(after.as_deref(), GROUPS_PAGE_MAX).await?;
            rows.extend(page.groups);
            match next_group_cursor(after.as_deref(), page.next_after)? {
                Some(next) => after = Some(next),
                None => return Ok(rows),
            }
        }
        Err(ClientError::Protocol(format!(
            "GET /v1/groups still had more after {MAX_GROUP_PAGES} pages of {GROUPS_PAGE_MAX} groups"
        )))
    }

    /// One page of `GET /v1/groups`: at most `limit` groups after the group named `after`.
    pub async fn list_groups_page(&self, after: Option<&str>, limit: usize) -> Result<GroupsPage> {
        let path = match after {
            Some(a) => format!("/v1/groups?after={}&limit={limit}", seg(a)),
            None => format!("/v1/groups?limit={limit}"),
        };
        let page: GroupsPage = self.call(Method::GET, &path, None::<&()>, false).await?;
        if page.groups.len() > limit {
            return Err(ClientError::Protocol(format!("a page of {} groups, asked for {limit}", page.groups.len())));
        }
        Ok(page)
    }

    /// One group's row as `GET /v1/groups` lists it for this session's user (member? request
    /// pending?), or `None` when there is no such group: one page of one row, starting after the
    /// greatest valid name below `group` (see [`group_name_before`]).
    pub async fn group(&self, group: &str) -> Result<Option<GroupRow>> {
        let page = self.list_groups_page(group_name_before(group).as_deref(), 1).await?;
        Ok(page.groups.into_iter().find(|g| g.group == group))
    }

    pub async fn create_group(&self, group: &str) -> Result<GroupCreated> {
        let body = CreateGroupRequest { group: group.into() };
        self.call(Method::POST, "/v1/groups", Some(&body), true).await
    }

    pub async fn join_group(&self, group: &str) -> Result<JoinResponse> {
        self.call(Method::POST, &format!("/v1/groups/{}/requests", seg(group)), None::<&()>, true).await
    }

    pub async fn leave_group(&self, group: &str) -> Result<LeaveResponse> {
        self.call(Method::DELETE, &format!("/v1/groups/{}/members/me", seg(group)), None::<&()>, true).await
    }

    pub async fn list_requests(&self, group: &str) -> Result<Vec<RequestRow>> {
        self.call(Method::GET, &format!("/v1/groups/{}/requests", seg(group)), None::<&()>, false).await
    }

    pub async fn accept_request(&self, group: &str, user: &str) -> Result<AcceptResponse> {
        let body = AcceptRequest { user: user.into() };
        self.call(Method::POST, &format!("/v1/groups/{}/members", seg(group)), Some(&body), true).await
    }

    /// The owner removes `user` from `group`; their shares there end.
    pub async fn remove_member(&self, group: &str, user: &str) -> Result<RemoveMemberResponse> {
        // `members/me` is the caller leaving: a user named "me" goes percent-encoded, which the
        // router does not take for the literal segment.
        let user = if user == "me" { "%6De".to_string() } else { seg(user) };
        self.call(Method::DELETE, &format!("/v1/groups/{}/members/{user}", seg(group)), None::<&()>, true).await
    }

    pub async fn list_files(&self, group: &str) -> Result<Vec<FileRow>> {
        self.call(Method::GET, &format!("/v1/groups/{}/files", seg(group)), None::<&()>, false).await
    }

    pub async fn file_details(&self, group: &str, name: &str) -> Result<FileDetails> {
        self.call(Method::GET, &format!("/v1/groups/{}/files/{}", seg(group), seg(name)), None::<&()>, false).await
    }

    pub async fn upload(
        &self,
        group: &str,
        file: FileMetaBody,
        peer_addr: &str,
        peer_key: &str,
    ) -> Result<UploadResponse> {
        let body = UploadRequest { file, peer_addr: peer_addr.into(), peer_key: peer_key.into() };
        self.call(Method::POST, &format!("/v1/groups/{}/files", seg(group)), Some(&body), true).await
    }

    pub async fn stop_share(&self, group: &str, name: &str) -> Result<StopShareResponse> {
        let path = format!("/v1/groups/{}/files/{}/sharers/me", seg(group), seg(name));
        self.call(Method::DELETE, &path, None::<&()>, true).await
    }

    /// A ticket, signed by the cluster, for this session's user to fetch `name` of `group` from
    /// its sharers over a channel keyed `peer_key_hex`. Issuing one changes nothing: no request
    /// id, and a retry just gets a fresh ticket.
    pub async fn ticket(&self, group: &str, name: &str, peer_key_hex: &str) -> Result<TicketResponse> {
        let body = TicketRequest { peer_key: peer_key_hex.into() };
        let path = format!("/v1/groups/{}/files/{}/ticket", seg(group), seg(name));
        self.call(Method::POST, &path, Some(&body), false).await
    }

    /// The cluster's ticket public key (64 hex), as any node serves it.
    pub async fn ticket_key(&self) -> Result<String> {
        let r: TicketKeyResponse = self.call(Method::GET, "/v1/ticket-key", None::<&()>, false).await?;
        Ok(r.key)
    }

    /// The status of one node, without failover (for operators and tests).
    pub async fn node_status(&self, node: &str) -> Result<NodeStatus> {
        let timeout = Duration::from_millis(self.policy.attempt_timeout_ms);
        let req = CallRequest { method: Method::GET, path: "/v1/status", body: None, request_id: None };
        match self.attempt(node, &req, timeout).await {
            Attempt::Answered(
                v @ (retry::Verdict::Done | retry::Verdict::Refused { .. } | retry::Verdict::Protocol(_)),
                b,
            ) => decode(&outcome(v, b)?),
            Attempt::Answered(..) | Attempt::Down { .. } => Err(ClientError::Unavailable {
                budget_ms: self.policy.attempt_timeout_ms,
                last: format!("{node} did not answer"),
            }),
        }
    }
}

/// Where the next page of groups starts, if there is one: a cursor that does not move forward
/// would loop, so it is an answer the API never gives.
fn next_group_cursor(after: Option<&str>, next_after: Option<String>) -> Result<Option<String>> {
    match (after, next_after) {
        (_, None) => Ok(None),
        (Some(prev), Some(next)) if next.as_str() <= prev => {
            Err(ClientError::Protocol(format!("GET /v1/groups went back from {prev:?} to {next:?}")))
        }
        (_, Some(next)) => Ok(Some(next)),
    }
}

/// What one call sends, the same on every attempt.
struct CallRequest<'a> {
    method: Method,
    path: &'a str,
    body: Option<Vec<u8>>,
    request_id: Option<String>,
}

/// Where one call stands across its rounds: the nodes that failed during it (and when those
/// that refused the connection did), the streak of refusals, and the last reason heard.
struct CallState {
    started: Instant,
    failed: Vec<String>,
    /// When each node in `failed` last refused the connection: a refusing node is restarting
    /// or down, and is worth another try a moment later (a restarted leader that the other
    /// nodes redirect to must not stay skipped for the rest of the call).
    refused_at: Vec<(String, Instant)>,
    refusals: retry::RefusalStreak,
    last: String,
}

impl CallState {
    fn new() -> Self {
        CallState {
            started: Instant::now(),
            failed: Vec::new(),
            refused_at: Vec::new(),
            refusals: retry::RefusalStreak::default(),
            last: String::from("no attempt made"),
        }
    }

    /// Nodes that refused the connection `REFUSED_RETRY_MS` ago or more are tried again.
    fn readmit_refused(&mut self) {
        let again = Duration::from_millis(REFUSED_RETRY_MS);
        let refused_at = &self.refused_at;
        self.failed.retain(|n| !refused_at.iter().any(|(r, at)| r == n && at.elapsed() >= again));
        let failed = &self.failed;
        self.refused_at.retain(|(n, _)| failed.contains(n));
    }

    /// `node` did not answer. `Some` when the call must end now: every node refused the
    /// connection for the policy's window (nothing listens: the cluster is down, not electing).
    fn down(
        &mut self,
        node: &str,
        message: String,
        refused: bool,
        nodes: &[String],
        policy: &RetryPolicy,
    ) -> Option<ClientError> {
        self.last = message;
        if !self.failed.iter().any(|f| f == node) {
            self.failed.push(node.to_string());
        }
        if !refused {
            self.refusals.heard();
            return None;
        }
        self.refused_at.retain(|(n, _)| n != node);
        self.refused_at.push((node.to_string(), Instant::now()));
        self.refusals.refused(node, self.started.elapsed());
        let window = Duration::from_millis(policy.all_refused_ms);
        self.refusals.gave_up(nodes, self.started.elapsed(), window).then(|| ClientError::Unavailable {
            budget_ms: policy.all_refused_ms,
            last: format!("every tracker node refused the connection: {}", nodes.join(", ")),
        })
    }

    /// The budget is spent: unavailable, with the last reason heard.
    fn unavailable(&self, policy: &RetryPolicy) -> ClientError {
        ClientError::Unavailable { budget_ms: policy.budget_ms, last: self.last.clone() }
    }
}

/// What a final verdict comes to: the answer's body, or the error it says.
fn outcome(verdict: retry::Verdict, bytes: Vec<u8>) -> Result<Vec<u8>> {
    match verdict {
        retry::Verdict::Done => Ok(bytes),
        retry::Verdict::Refused { code, message } => Err(ClientError::Refused { code, message }),
        retry::Verdict::Protocol(m) => Err(ClientError::Protocol(m)),
        retry::Verdict::Redirect(to) => Err(ClientError::Protocol(format!("an unfollowed redirect to {to}"))),
        retry::Verdict::Busy(m) => Err(ClientError::Protocol(m)),
    }
}

/// An answer's body as the call's type (an empty body reads as `null`).
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let bytes = if bytes.is_empty() { &b"null"[..] } else { bytes };
    serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Whether the connection was refused (nothing listens at the address), as opposed to timed
/// out or reset: the one failure that says the node is not there at all.
fn is_refused(e: &reqwest::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        src = x.source();
    }
    false
}

fn short(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if is_refused(e) {
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

/// The characters of a user or group name (`proto::names::validate_id`), in byte order: the
/// order of the tracker's group pages.
const NAME_CHARS: &[u8] = b"-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// The greatest valid group name that sorts before `group` (so that the first group of the page
/// after it is `group`, when it exists), or `None` when no valid name sorts before it (the page
/// then starts at the first group).
pub fn group_name_before(group: &str) -> Option<String> {
    let bytes = group.as_bytes();
    let (&last, prefix) = bytes.split_last()?;
    let before = match NAME_CHARS.iter().position(|&c| c == last) {
        // `-` is the least character: the prefix alone is the greatest name below.
        Some(0) => prefix.to_vec(),
        // The last character one lower, then the greatest tail that fits.
        Some(i) => {
            let mut name = prefix.to_vec();
            name.push(NAME_CHARS[i - 1]);
            name.resize(proto::names::MAX_ID_LEN.max(name.len()), b'z');
            name
        }
        None => return None,
    };
    let before = String::from_utf8(before).ok()?;
    match before.as_str() {
        // Below "-", the least name, there is none: the page starts at the first group.
        "" => None,
        // "." and ".." are no names: the greatest one below them is below `group` too.
        "." | ".." => group_name_before(&before),
        _ => Some(before),
    }
}

#[cfg(test)]
mod name_before_tests {
    use super::*;

    /// The cursor before a group: the greatest valid name below it, so that a page of one row
    /// after it starts with the group itself.
    #[test]
    fn the_name_before_a_group_is_the_greatest_valid_name_below_it() {
        let z = |n: usize| "z".repeat(n);
        assert_eq!(group_name_before("dev_team").unwrap(), format!("dev_teal{}", z(56)));
        assert_eq!(group_name_before("b").unwrap(), format!("a{}", z(63)));
        assert_eq!(group_name_before("a-").as_deref(), Some("a"));
        assert_eq!(group_name_before("a0").unwrap(), format!("a.{}", z(62)));
        assert_eq!(group_name_before("-"), None);
        assert_eq!(group_name_before("-.").unwrap(), format!("--{}", z(62)));
        assert_eq!(group_name_before(".-").unwrap(), format!("-{}", z(63)));
        assert_eq!(group_name_before("..-").unwrap(), format!(".-{}", z(62)));
        let full = "x".repeat(64);
        assert_eq!(group_name_before(&full).unwrap(), format!("{}w", "x".repeat(63)));
        // Every candidate is a valid name below the group, and no valid name lies between.
        for g in ["dev_team", "b", "a-", "A", "_", "a", "0", "9z", ".-", "..-", "x.y", "-."] {
            let before = group_name_before(g).unwrap();
            proto::names::validate_id("group", &before).unwrap();
            assert!(before.as_str() < g, "{before} < {g}");
            for c in NAME_CHARS {
                let next = format!("{before}{}", *c as char);
                assert!(next.len() > 64 || next.as_str() >= g, "{next} lies between {before} and {g}");
            }
        }
    }
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

/// The transport against stub nodes on loopback: a node that refuses the connection (a bound
/// socket that does not listen), one that accepts and never answers, and ones that answer
/// canned HTTP. The decisions themselves are tested without sockets in `retry`.
#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;

    /// What a stub node does with each request.
    #[derive(Clone)]
    enum Reply {
        /// Answers this status and JSON body.
        Http(u16, String),
        /// Accepts, reads the request, never answers (a frozen process).
        Silent,
    }

    /// One request a stub received: which stub, the request line, the idempotency key.
    type Hits = Arc<Mutex<Vec<(String, String, Option<String>)>>>;

    struct Stub {
        addr: String,
        /// Held so the port stays this stub's.
        _listener: Option<TcpSocket>,
    }

    /// A node that refuses connections: the port is bound (so nobody else gets it) but not
    /// listening, so a connect gets a reset at once.
    fn refusing() -> Stub {
        let s = TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        Stub { addr: s.local_addr().unwrap().to_string(), _listener: Some(s) }
    }

    async fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    async fn serving(name: &str, reply: Reply, hits: &Hits) -> Stub {
        serving_on(listener().await, name, reply, hits)
    }

    /// A stub on a listener bound beforehand (for stubs that must name each other).
    fn serving_on(l: TcpListener, name: &str, reply: Reply, hits: &Hits) -> Stub {
        let addr = l.local_addr().unwrap().to_string();
        let (name, hits) = (name.to_string(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else { return };
                let (name, hits, reply) = (name.clone(), hits.clone(), reply.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // The head, then as much body as Content-Length says.
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let header = |k: &str| {
                        head.lines()
                            .filter_map(|l| l.split_once(':'))
                            .find(|(h, _)| h.trim().eq_ignore_ascii_case(k))
                            .map(|(_, v)| v.trim().to_string())
                    };
                    let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    while buf.len() < head_end + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let line = head.lines().next().unwrap_or("").to_string();
                    hits.lock().unwrap().push((name, line, header("idempotency-key")));
                    match reply {
                        Reply::Silent => tokio::time::sleep(Duration::from_secs(3600)).await,
                        Reply::Http(status, body) => {
                            let resp = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = s.write_all(resp.as_bytes()).await;
                            let _ = s.shutdown().await;
                        }
                    }
                });
            }
        });
        Stub { addr, _listener: None }
    }

    fn not_leader(api: &str) -> Reply {
        Reply::Http(
            307,
            format!(r#"{{"error":{{"code":"not_leader","message":"m"}},"leader":{{"id":9,"api":"{api}"}}}}"#),
        )
    }

    fn busy() -> Reply {
        Reply::Http(503, r#"{"error":{"code":"unavailable","message":"no leader known"}}"#.into())
    }

    fn ok() -> Reply {
        Reply::Http(200, r#"{"ok":true,"group":"g"}"#.into())
    }

    fn client(nodes: &[&Stub], policy: RetryPolicy) -> TrackerClient {
        TrackerClient::new(nodes.iter().map(|s| s.addr.clone()).collect(), policy)
    }

    fn who(hits: &Hits) -> Vec<String> {
        hits.lock().unwrap().iter().map(|(n, _, _)| n.clone()).collect()
    }

    /// The error `create_group` ends with, and how long the call took.
    async fn failed_create(c: &TrackerClient) -> (ClientError, Duration) {
        let t = Instant::now();
        let err = c.create_group("g").await.unwrap_err();
        (err, t.elapsed())
    }

    /// A call that gave up took its `budget_ms`, with a second of slack for a loaded machine.
    fn assert_took_budget(took: Duration, budget_ms: u64) {
        let budget = Duration::from_millis(budget_ms);
        assert!(took >= budget && took < budget + Duration::from_secs(1), "{took:?} for a budget of {budget_ms} ms");
    }

    #[test]
    fn the_groups_cursor_only_moves_forward() {
        assert_eq!(next_group_cursor(None, None).unwrap(), None);
        assert_eq!(next_group_cursor(None, Some("g1".into())).unwrap().as_deref(), Some("g1"));
        assert_eq!(next_group_cursor(Some("g1"), Some("g2".into())).unwrap().as_deref(), Some("g2"));
        assert_eq!(next_group_cursor(Some("g2"), None).unwrap(), None);
        for back in ["g2", "g1"] {
            let e = next_group_cursor(Some("g2"), Some(back.into())).unwrap_err();
            assert!(matches!(e, ClientError::Protocol(ref m) if m.contains("went back")), "{e}");
        }
    }

    #[tokio::test]
    async fn a_page_longer_than_asked_for_is_refused() {
        let hits = Hits::default();
        let rows: Vec<String> = (0..3)
            .map(|i| format!(r#"{{"group":"g{i}","owner":"o","members":1,"member":false,"pending":false}}"#))
            .collect();
        let body = format!(r#"{{"groups":[{}],"next_after":"g2"}}"#, rows.join(","));
        let node = serving("n", Reply::Http(200, body), &hits).await;
        let c = client(&[&node], RetryPolicy::default());
        let page = c.list_groups_page(None, 3).await.unwrap();
        assert_eq!((page.groups.len(), page.next_after.as_deref()), (3, Some("g2")));
        assert!(matches!(c.list_groups_page(None, 2).await, Err(ClientError::Protocol(_))));
        // Every page answering the same cursor: the client stops instead of looping.
        assert!(matches!(c.list_groups().await, Err(ClientError::Protocol(ref m)) if m.contains("went back")));
        let lines: Vec<String> = hits.lock().unwrap().iter().map(|(_, l, _)| l.clone()).collect();
        assert_eq!(lines[0], "GET /v1/groups?limit=3 HTTP/1.1");
        assert_eq!(lines[3], format!("GET /v1/groups?after=g2&limit={GROUPS_PAGE_MAX} HTTP/1.1"));
    }

    #[tokio::test]
    async fn a_refused_node_is_passed_over_at_once() {
        let hits = Hits::default();
        let down = refusing();
        let up = serving("up", ok(), &hits).await;
        let c = client(&[&down, &up], RetryPolicy::default());
        let t = Instant::now();
        let v = c.create_group("g").await.unwrap();
        assert_eq!(v, GroupCreated { group: "g".into() });
        assert!(t.elapsed() < Duration::from_millis(500), "no timeout was waited for: {:?}", t.elapsed());
        assert_eq!(who(&hits), ["up"]);
        assert_eq!(c.cached_leader().as_deref(), Some(up.addr.as_str()), "the node that answered is remembered");
    }

    #[tokio::test]
    async fn a_node_that_accepts_and_never_answers_costs_one_attempt_timeout() {
        let hits = Hits::default();
        let frozen = serving("frozen", Reply::Silent, &hits).await;
        let up = serving("up", ok(), &hits).await;
        let c = client(&[&frozen, &up], RetryPolicy { attempt_timeout_ms: 300, ..Default::default() });
        let t = Instant::now();
        c.create_group("g").await.unwrap();
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(300), "the frozen node was given its attempt: {took:?}");
        assert!(took < Duration::from_millis(1_500), "then the next node was asked: {took:?}");
        assert_eq!(who(&hits), ["frozen", "up"]);
    }

    #[tokio::test]
    async fn nodes_are_tried_in_list_order_then_the_one_that_answered_first() {
        let hits = Hits::default();
        let a = serving("a", busy(), &hits).await;
        let b = serving("b", busy(), &hits).await;
        let c_ = serving("c", ok(), &hits).await;
        let c = client(&[&a, &b, &c_], RetryPolicy::default());
        c.create_group("g").await.unwrap();
        assert_eq!(who(&hits), ["a", "b", "c"]);
        c.create_group("h").await.unwrap();
        assert_eq!(who(&hits), ["a", "b", "c", "c"], "the cached leader is asked first");
    }

    #[tokio::test]
    async fn a_redirect_is_followed_and_its_target_becomes_the_leader() {
        let hits = Hits::default();
        let leader = serving("leader", ok(), &hits).await;
        let follower = serving("follower", not_leader(&leader.addr), &hits).await;
        // The client knows only the follower, as a peer configured with one address would.
        let c = client(&[&follower], RetryPolicy::default());
        c.create_group("g").await.unwrap();
        assert_eq!(who(&hits), ["follower", "leader"]);
        assert_eq!(c.cached_leader().as_deref(), Some(leader.addr.as_str()));
        c.create_group("h").await.unwrap();
        assert_eq!(who(&hits), ["follower", "leader", "leader"], "the next call goes straight to the leader");
        // Both attempts of one write carry the same request id; the next write has its own.
        let keys: Vec<Option<String>> = hits.lock().unwrap().iter().map(|(_, _, k)| k.clone()).collect();
        assert!(keys[0].is_some() && keys[0] == keys[1] && keys[1] != keys[2], "{keys:?}");
    }

    #[tokio::test]
    async fn a_redirect_to_a_dead_node_is_not_followed_again_and_the_others_are_tried() {
        let hits = Hits::default();
        let dead = refusing();
        let up = serving("up", ok(), &hits).await;
        let stale = serving("stale", not_leader(&dead.addr), &hits).await;
        // The stale follower still names the dead leader.
        let c = client(&[&dead, &stale, &up], RetryPolicy::default());
        c.create_group("g").await.unwrap();
        assert_eq!(who(&hits), ["stale", "up"], "after dead refused, its name in a redirect is not followed");
    }

    #[tokio::test]
    async fn a_node_that_refused_while_restarting_is_asked_again_once_it_listens() {
        let hits = Hits::default();
        let restarting = refusing();
        let addr = restarting.addr.clone();
        // The other node names it as the leader all along (as after a whole-cluster restart).
        let follower = serving("follower", not_leader(&addr), &hits).await;
        let c = client(&[&restarting, &follower], RetryPolicy::default());
        let h = hits.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(restarting);
            let l = TcpListener::bind(&addr).await.unwrap();
            let _leader = serving_on(l, "leader", ok(), &h);
        });
        let started = Instant::now();
        c.create_group("g").await.unwrap();
        assert!(who(&hits).contains(&"leader".to_string()), "{:?}", who(&hits));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "asked again soon after it listens: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_redirect_to_a_refusing_node_is_followed_once_a_round_and_the_call_ends_in_its_budget() {
        let hits = Hits::default();
        let dead = refusing();
        let b = serving("b", not_leader(&dead.addr), &hits).await;
        let policy = RetryPolicy { budget_ms: 400, backoff_initial_ms: 100, backoff_max_ms: 100, ..Default::default() };
        // Only b is listed; it keeps naming a leader that is gone.
        let c = client(&[&b], policy);
        let t = Instant::now();
        let err = c.create_group("g").await.unwrap_err();
        assert_eq!(err.code(), "unavailable", "{err}");
        // The budget, with a second of slack for a loaded machine (the call must end in its
        // budget's neighbourhood, not run on for the default 15 s of elections).
        assert!(
            t.elapsed() >= Duration::from_millis(400) && t.elapsed() < Duration::from_millis(400 + 1_000),
            "{:?}",
            t.elapsed()
        );
        // b answers, so this is not "every node refused": the call keeps its budget, one round
        // (b, then its hint) per pause of 50-100 ms (100 ms less up to half of it in jitter).
        let n = who(&hits).len();
        assert!((2..=9).contains(&n), "b asked {n} times in 400 ms of 50-100 ms pauses");
    }

    #[tokio::test]
    async fn ping_pong_redirects_stop_at_the_cap() {
        let hits = Hits::default();
        // x redirects to y, y to x: both listen, neither leads.
        let (xl, yl) = (listener().await, listener().await);
        let (x_addr, y_addr) = (xl.local_addr().unwrap().to_string(), yl.local_addr().unwrap().to_string());
        let x = serving_on(xl, "x", not_leader(&y_addr), &hits);
        let y = serving_on(yl, "y", not_leader(&x_addr), &hits);
        // The pause after the first round outlasts the budget: exactly one round is seen.
        let policy = RetryPolicy {
            budget_ms: 300,
            max_redirects_per_round: 3,
            backoff_initial_ms: 10_000,
            backoff_max_ms: 10_000,
            ..Default::default()
        };
        let c = client(&[&x, &y], policy);
        let err = c.create_group("g").await.unwrap_err();
        assert_eq!(err.code(), "unavailable");
        assert!(err.to_string().contains("redirected to"), "{err}");
        // x (hint y followed), y (hint x followed), x (hint y followed: the third and last),
        // y (hint no longer trusted), then y again from the list.
        assert_eq!(who(&hits), ["x", "y", "x", "y", "y"]);
    }

    #[tokio::test]
    async fn a_refusal_is_final_and_not_retried() {
        let hits = Hits::default();
        let a = serving("a", Reply::Http(409, r#"{"error":{"code":"group_exists","message":"taken"}}"#.into()), &hits)
            .await;
        let b = serving("b", ok(), &hits).await;
        let c = client(&[&a, &b], RetryPolicy::default());
        let err = c.create_group("g").await.unwrap_err();
        let group_exists = ApiErrorCode::State(proto::error::ErrorCode::GroupExists);
        assert_eq!((err.code(), err.to_string().as_str()), (&group_exists, "taken"));
        assert_eq!(who(&hits), ["a"], "a refusal is the cluster's answer: nobody else is asked");
    }

    #[tokio::test]
    async fn busy_nodes_are_retried_with_the_same_request_id_until_the_budget_is_spent() {
        let hits = Hits::default();
        let a = serving("a", busy(), &hits).await;
        let b = serving("b", busy(), &hits).await;
        let c = client(&[&a, &b], RetryPolicy { budget_ms: 600, ..Default::default() });
        let (err, took) = failed_create(&c).await;
        assert_eq!(err.code(), "unavailable");
        assert!(err.to_string().contains("no leader known"), "the last reason is kept: {err}");
        assert_took_budget(took, 600);
        let hits = hits.lock().unwrap();
        assert!(hits.len() >= 6, "several rounds within the budget: {}", hits.len());
        assert!(hits.iter().all(|(_, _, k)| k.is_some() && *k == hits[0].2), "one request id for every retry");
    }

    #[tokio::test]
    async fn frozen_nodes_do_not_make_a_call_overrun_its_budget() {
        let hits = Hits::default();
        let a = serving("a", Reply::Silent, &hits).await;
        let b = serving("b", Reply::Silent, &hits).await;
        let c = client(&[&a, &b], RetryPolicy { budget_ms: 2_000, attempt_timeout_ms: 1_900, ..Default::default() });
        let (err, took) = failed_create(&c).await;
        assert_eq!(err.code(), "unavailable");
        assert!(err.to_string().contains("timed out"), "{err}");
        // a gets 1.9 s, b what is left (100 ms): 2 s, not the 3.8 s of two whole attempts (the
        // second of slack still keeps it well under 3.8 s).
        assert_took_budget(took, 2_000);
    }

    #[tokio::test]
    async fn when_every_node_refuses_the_call_gives_up_at_once_naming_them() {
        let (a, b) = (refusing(), refusing());
        let c = client(&[&a, &b], RetryPolicy::default());
        let (err, took) = failed_create(&c).await;
        assert_eq!(err.code(), "unavailable");
        let msg = err.to_string();
        assert!(msg.contains(&a.addr) && msg.contains(&b.addr) && msg.contains("refused"), "{msg}");
        // The 15 s budget is for elections; a cluster that is down is reported once every node
        // refused for `all_refused_ms` (500 ms).
        let window = RetryPolicy::default().all_refused_ms;
        assert_eq!(window, 500);
        assert_took_budget(took, window);
    }

    #[tokio::test]
    async fn one_answering_node_keeps_the_call_going_past_the_refusal_window() {
        let hits = Hits::default();
        let down = refusing();
        let electing = serving("electing", busy(), &hits).await;
        let c = client(&[&down, &electing], RetryPolicy { budget_ms: 1_200, ..Default::default() });
        let (err, took) = failed_create(&c).await;
        assert!(took >= Duration::from_millis(1_200), "an election gets the whole budget: {took:?}");
        assert!(err.to_string().contains("no leader known"), "{err}");
    }

    #[tokio::test]
    async fn node_status_reads_one_node_without_failover() {
        let hits = Hits::default();
        let down = refusing();
        let c = client(&[&down], RetryPolicy::default());
        assert_eq!(c.node_status(&down.addr).await.unwrap_err().code(), "unavailable");
        let garbage = serving("g", Reply::Http(200, "{}".into()), &hits).await;
        assert!(matches!(c.node_status(&garbage.addr).await, Err(ClientError::Protocol(_))));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let cases = [
            ("dev_team", "dev_team"),
            ("a b", "a%20b"),
            ("x/y", "x%2Fy"),
            ("50%", "50%25"),
            (".", "%2E"),
            ("..", "%2E%2E"),
            ("é", "%C3%A9"),
            ("a?b#c", "a%3Fb%23c"),
        ];
        for (raw, want) in cases {
            assert_eq!(seg(raw), want);
        }
    }
}
