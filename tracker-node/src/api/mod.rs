//! The client API on each node's `api` address: `/v1/...` routes per family, leader
//! redirects, linearizable reads, and the mapping of outcomes onto HTTP.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod body;
pub mod files;
pub mod groups;
pub mod listener;
pub mod liveness;
pub mod password_pool;
pub mod quota;
pub mod status;
pub mod throttle;
pub mod tickets;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use proto::api::{
    AcceptResponse, ApiErrorCode, ErrorBody, ErrorDetail, GroupCreated, JoinResponse, LeaderRef, LeaveResponse,
    LogoutResponse, NotLeaderBody, OkBody, RemoveMemberResponse, StopShareResponse, UploadResponse, UserBody,
    MAX_BODY_BYTES,
};
use proto::cluster::ClusterConfig;
use raft_store::{
    Command, ErrorCode, NodeId, Raft, Refusal, Reply, Request, Response as Outcome, StateMachineStore, TrackerNode,
};

use crate::metrics::Metrics;

/// Everything a request handler needs; cheap to clone.
/// Bound on waiting for a proposal to commit (or a read index to be confirmed). Without a
/// quorum nothing commits; the client hears 503 and retries with the same request id.
pub const COMMIT_TIMEOUT_MS: u64 = 5_000;
/// Most rounds of leadership confirmation for one linearizable read.
pub const LINEARIZABLE_ROUNDS: u32 = 10;

#[derive(Clone)]
pub struct AppState {
    pub id: NodeId,
    pub raft: Raft,
    pub sm: StateMachineStore,
    pub log: raft_store::LogStore,
    pub config: Arc<ClusterConfig>,
    pub metrics: Arc<Metrics>,
    pub api_addr: String,
    /// Argon2 runs here only: bounded workers, bounded queue.
    pub passwords: Arc<password_pool::PasswordPool>,
    /// Failed logins per user and per source address.
    pub throttle: Arc<throttle::LoginThrottle>,
    /// New accounts per source address.
    pub registrations: Arc<throttle::RegistrationThrottle>,
    /// The cluster's ticket key (the same on every node): signs access tickets.
    pub tickets: Arc<proto::ticket::TicketSigner>,
    /// Which peer daemons said "alive" lately: the leader's soft state, never in the log.
    pub liveness: Arc<liveness::Liveness>,
    /// Writes let through the quota check and not answered yet (`quota.rs`).
    pub quota_in_flight: Arc<quota::InFlight>,
    /// HTTPS to the other nodes' APIs, the cluster CA pinned (the strict reconfiguration check
    /// asks each voter's status).
    pub nodes_http: tracker_client::admin::NodesHttp,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/users", post(accounts::register))
        .route("/v1/sessions", post(accounts::login).delete(accounts::logout))
        .route("/v1/session", get(accounts::whoami))
        .route("/v1/peer", put(accounts::announce))
        .route("/v1/peer/alive", post(accounts::alive).delete(accounts::going_away))
        .route("/v1/groups", get(groups::list).post(groups::create))
        .route("/v1/groups/:group/requests", get(groups::list_requests).post(groups::join))
        .route("/v1/groups/:group/members", post(groups::accept))
        .route("/v1/groups/:group/members/me", delete(groups::leave))
        .route("/v1/groups/:group/members/:user", delete(groups::remove_member))
        .route("/v1/groups/:group/files", get(files::list).post(files::upload))
        .route("/v1/groups/:group/files/:name", get(files::details))
        .route("/v1/groups/:group/files/:name/sharers/me", delete(files::stop_share))
        .route("/v1/groups/:group/files/:name/ticket", post(tickets::issue))
        .route("/v1/ticket-key", get(tickets::key))
        .route("/v1/status", get(status::status))
        .route("/metrics", get(status::metrics))
        .route("/health", get(status::health))
        .route("/readyz", get(status::readyz))
        .route("/v1/admin/members", post(admin::members))
        .route("/v1/admin/snapshot", get(admin::snapshot))
        .fallback(body::no_route)
        .method_not_allowed_fallback(body::wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(complete_location))
        .with_state(state)
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Why a request did not get its answer.
#[derive(Debug)]
pub enum ApiError {
    /// The state machine (or the node, for credentials and names) refused it.
    Refused(Refusal),
    /// This node is not the leader; the leader is known.
    NotLeader {
        id: NodeId,
        api: String,
    },
    /// No leader known, or no quorum: retry later.
    Unavailable(String),
    BadRequest(String),
    Forbidden(String),
    /// The call is well formed but cannot be done in the cluster's present state (409):
    /// a machine-readable code and the reason.
    Conflict(ApiErrorCode, String),
    /// Too many attempts, or the password workers are busy: try again after `retry_after_s`.
    RateLimited {
        retry_after_s: u64,
        message: String,
    },
    /// The write would take the user past a `[limits]` bound (429 `quota_exceeded`, no
    /// Retry-After: waiting does not help).
    QuotaExceeded(quota::QuotaExceeded),
    Internal(String),
}

impl ApiError {
    /// 429 for `wait` more (whole seconds, rounded up); `message` says it with the seconds.
    pub fn throttled(wait: Duration, message: impl FnOnce(u64) -> String) -> Self {
        let secs = wait.as_secs_f64().ceil() as u64;
        ApiError::RateLimited { retry_after_s: secs, message: message(secs) }
    }

    fn forward(f: &ForwardToLeader<NodeId, TrackerNode>) -> Self {
        match (f.leader_id, &f.leader_node) {
            (Some(id), Some(node)) => ApiError::NotLeader { id, api: node.api.clone() },
            _ => ApiError::Unavailable("no tracker leader is known right now (election under way)".into()),
        }
    }
}

pub fn refusal_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadCredentials | ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::NotMember | ErrorCode::NotOwner | ErrorCode::NotAllowed => StatusCode::FORBIDDEN,
        ErrorCode::NoSuchGroup | ErrorCode::NoSuchFile | ErrorCode::NoSuchRequest => StatusCode::NOT_FOUND,
        ErrorCode::UserExists | ErrorCode::GroupExists | ErrorCode::AlreadyMember | ErrorCode::FileConflict => {
            StatusCode::CONFLICT
        }
        ErrorCode::InvalidName | ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::FileTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// `status` with the API's error body.
fn error_response(status: StatusCode, code: impl Into<ApiErrorCode>, message: String) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

/// `resp` with `Retry-After: secs` (whole seconds, at least 1).
fn retry_after(mut resp: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use ApiErrorCode as C;
        match self {
            ApiError::Refused(r) => error_response(refusal_status(r.code), r.code, r.message),
            ApiError::NotLeader { id, api } => {
                let body = NotLeaderBody {
                    error: ErrorDetail {
                        code: C::NotLeader,
                        message: format!("this node is not the leader; node {id} at {api} is"),
                    },
                    leader: LeaderRef { id, api: api.clone() },
                };
                let mut resp = (StatusCode::TEMPORARY_REDIRECT, Json(body)).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("http://{api}")) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp
            }
            ApiError::Unavailable(m) => {
                retry_after(error_response(StatusCode::SERVICE_UNAVAILABLE, C::Unavailable, m), 1)
            }
            ApiError::BadRequest(m) => error_response(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, m),
            ApiError::Forbidden(m) => error_response(StatusCode::FORBIDDEN, C::Forbidden, m),
            ApiError::Conflict(code, m) => error_response(StatusCode::CONFLICT, code, m),
            ApiError::RateLimited { retry_after_s, message } => {
                retry_after(error_response(StatusCode::TOO_MANY_REQUESTS, C::RateLimited, message), retry_after_s)
            }
            ApiError::QuotaExceeded(q) => {
                error_response(StatusCode::TOO_MANY_REQUESTS, C::QuotaExceeded, q.to_string())
            }
            ApiError::Internal(m) => error_response(StatusCode::INTERNAL_SERVER_ERROR, C::Internal, m),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::Refused(r)
    }
}

/// Completes a 307's `Location` with the request's own path and query, so that a plain HTTP
/// client that follows redirects re-sends the same call to the leader.
async fn complete_location(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let tls = matches!(req.extensions().get::<listener::Channel>(), Some(listener::Channel::Tls { .. }));
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::TEMPORARY_REDIRECT {
        if let Some(base) = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) {
            // A call that came over TLS is sent on over TLS.
            let base = match (tls, base.strip_prefix("http://")) {
                (true, Some(rest)) => format!("https://{rest}"),
                _ => base.to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&format!("{base}{path}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
        }
    }
    resp
}

pub type ApiResult<T> = Result<T, ApiError>;

impl AppState {
    /// Proposes a command and waits until it is committed and applied; answers the outcome.
    #[cfg_attr(feature = "unsafe-ack-before-commit", allow(unreachable_code))]
    pub async fn write(&self, headers: &HeaderMap, command: Command) -> ApiResult<Reply> {
        let request_id = idempotency_key(headers)?;
        self.quorum_contact()?;
        let kind = command.kind();
        let req = Request { request_id, now_ms: now_ms(), command };
        let _reserved = self.leader_checks(&req).await?;
        #[cfg(feature = "unsafe-ack-before-commit")]
        {
            // DELIBERATELY BROKEN, for the chaos checker only (docs/RELIABILITY.md): answer with
            // what the write would do, before it is replicated or committed.
            let _ = kind;
            let predicted = self.sm.read(|d| d.state.clone().apply(&req));
            let raft = self.raft.clone();
            tokio::spawn(async move {
                let _ = raft.client_write(req).await;
            });
            return match predicted {
                raft_store::Response::Ok(reply) => Ok(reply),
                raft_store::Response::Refused(r) => Err(ApiError::Refused(r)),
            };
        }
        self.commit(kind, req).await
    }

    /// A write for the caller's session (`command` gets the bearer token's hash), answered with
    /// the route's `{"ok": true, ...}` body.
    pub async fn session_write(
        &self,
        headers: &HeaderMap,
        command: impl FnOnce(String) -> Command,
    ) -> ApiResult<Response> {
        let token_hash = auth::bearer(headers)?;
        written(self.write(headers, command(token_hash)).await?)
    }

    /// The leader's checks before a proposal; a follower skips them (raft answers it with the
    /// leader's address) and `apply` checks everything again. Answers the quota reservation
    /// that counts `req` until it is answered, if it adds to a quota.
    async fn leader_checks(&self, req: &Request) -> ApiResult<Option<quota::Reservation>> {
        if !self.is_leader() {
            return Ok(None);
        }
        let kind = req.command.kind();
        // Nothing unchecked reaches the log: a forged session, a bad name or a reused key is
        // refused here, by the leader, against its applied state.
        if self.sm.read(|d| d.state.precheck(req)).is_err() {
            // A new leader may not have applied everything committed before its term yet: a
            // refusal is only answered once the read index confirms the state it is based on
            // (a pass needs no confirmation: apply checks again).
            self.linearizable().await?;
            if let Err(refusal) = self.sm.read(|d| d.state.precheck(req)) {
                self.metrics.observe_precheck_refusal(kind);
                return Err(ApiError::Refused(refusal));
            }
        }
        // Quotas ([limits]), on the leader only and never in apply (each node reads its own
        // cluster file): a write that would create a group or a file record past the user's
        // bound never reaches the log. Like a precheck refusal, it is answered only on a
        // confirmed read index. The reservation counts this write until it is answered, so
        // that writes checked at the same moment cannot pass the bound together.
        match self.reserve_quota(req) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.linearizable().await?;
                self.reserve_quota(req).map_err(|exceeded| {
                    self.metrics.observe_precheck_refusal(kind);
                    ApiError::QuotaExceeded(exceeded)
                })
            }
        }
    }

    /// Proposes `req` and waits, at most `COMMIT_TIMEOUT_MS`, for its applied outcome.
    async fn commit(&self, kind: &'static str, req: Request) -> ApiResult<Reply> {
        let started = std::time::Instant::now();
        let proposal = self.metrics.proposal();
        let result = tokio::time::timeout(Duration::from_millis(COMMIT_TIMEOUT_MS), self.raft.client_write(req))
            .await
            .map_err(|_| {
                ApiError::Unavailable(format!(
                    "the write was not committed within {} s (no quorum of tracker nodes?); it may still be \
                     applied later: retry with the same Idempotency-Key",
                    COMMIT_TIMEOUT_MS / 1000
                ))
            })?;
        self.metrics.observe_write(kind, started.elapsed());
        if result.is_ok() {
            proposal.committed();
        }
        match result {
            Ok(resp) => match resp.data {
                Outcome::Ok(reply) => Ok(reply),
                Outcome::Refused(r) => Err(ApiError::Refused(r)),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(ApiError::forward(&f)),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ApiError::Internal(e.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(ApiError::Unavailable(format!("this node stopped: {f}"))),
        }
    }

    /// Waits until this node, as leader, has applied everything committed before the call
    /// (read index); a follower answers with the leader's address.
    ///
    /// The read index is the larger of openraft's and this leader's last log index as it was
    /// before leadership is confirmed. openraft 0.9 alone is not enough after a restart: a
    /// leader that restarts without losing its term (every node killed and restarted at once)
    /// resumes leading with its `committed` reset and takes the *first* entry of its term as
    /// the read index, so writes of that term acknowledged before the crash can be missing
    /// from a read until the leader commits again (the chaos checker caught it as a stale read
    /// right after `kill_all`). Every acknowledged write is in the leader's log, so waiting for
    /// the last index sampled before the confirmation covers them; it costs a read at most the
    /// commit of writes already in flight.
    pub async fn linearizable(&self) -> ApiResult<()> {
        self.quorum_contact()?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(COMMIT_TIMEOUT_MS);
        let floor = {
            let m = self.raft.metrics().borrow().clone();
            if m.current_leader == Some(self.id) {
                m.last_log_index
            } else {
                None
            }
        };
        let mut attempt = 0u32;
        loop {
            let read = tokio::time::timeout_at(deadline, self.raft.ensure_linearizable()).await.map_err(|_| {
                ApiError::Unavailable("no quorum of tracker nodes confirmed this leader in time".into())
            })?;
            match read {
                Ok(read_log_id) => {
                    if floor > read_log_id.map(|l| l.index) {
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        self.raft.wait(Some(left)).applied_index_at_least(floor, "read index").await.map_err(|_| {
                            ApiError::Unavailable(
                                "this leader did not apply its log in time (no quorum of tracker nodes?)".into(),
                            )
                        })?;
                    }
                    return Ok(());
                }
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => return Err(ApiError::forward(&f)),
                // openraft gives each confirmation round one heartbeat interval; on a loaded
                // machine a round can miss it while the quorum is fine. A read is safe to
                // confirm again, within the bound, as long as the lease says a quorum is there.
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                    attempt += 1;
                    let pause = Duration::from_millis((self.config.heartbeat_ms * attempt as u64).min(100));
                    if attempt >= LINEARIZABLE_ROUNDS || tokio::time::Instant::now() + pause >= deadline {
                        return Err(ApiError::Unavailable(format!("no quorum of tracker nodes answers: {e}")));
                    }
                    self.quorum_contact()?;
                    tokio::time::sleep(pause).await;
                }
                Err(RaftError::Fatal(f)) => return Err(ApiError::Unavailable(format!("this node stopped: {f}"))),
            }
        }
    }

    /// Fails fast with a redirect when this node knows it is not the leader (used before
    /// spending CPU on password hashing).
    /// A leader that has not heard from a quorum for longer than the leader lease cannot commit
    /// or serve linearizable reads; it says so at once instead of letting the client wait.
    fn quorum_contact(&self) -> ApiResult<()> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            return Ok(());
        }
        let lease_ms = self.config.election_timeout_ms.1;
        match m.millis_since_quorum_ack {
            Some(ms) if ms > lease_ms => Err(ApiError::Unavailable(format!(
                "this leader has not heard from a quorum of tracker nodes for {ms} ms; writes wait until a quorum is back"
            ))),
            _ => Ok(()),
        }
    }

    /// This node's limits against what `req` would add on its applied state and the writes
    /// in flight; a reservation for `req` when it passes and adds to a quota.
    fn reserve_quota(&self, req: &Request) -> Result<Option<quota::Reservation>, quota::QuotaExceeded> {
        self.quota_in_flight.reserve(&self.config.limits, || self.sm.read(|d| d.state.growth(req)))
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The term this node leads in, if it leads.
    pub fn leader_term(&self) -> Option<u64> {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        (m.current_leader == Some(self.id)).then_some(m.current_term)
    }

    /// The liveness table's clock, after bringing the table up to date with this node's role
    /// (a new term of leadership starts an empty table and a grace period).
    pub fn liveness_now(&self) -> u64 {
        let now = self.liveness.now_ms();
        self.liveness.sync(self.leader_term(), now);
        now
    }

    pub fn leader_or_redirect(&self) -> ApiResult<()> {
        let m = self.raft.metrics().borrow().clone();
        match m.current_leader {
            Some(l) if l == self.id => Ok(()),
            Some(l) => match m.membership_config.membership().get_node(&l) {
                Some(node) => Err(ApiError::NotLeader { id: l, api: node.api.clone() }),
                None => Err(ApiError::Unavailable("the leader's address is unknown".into())),
            },
            None => Err(ApiError::Unavailable("no tracker leader is known right now (election under way)".into())),
        }
    }
}

/// A write's request id: the `Idempotency-Key` header, 1 to 128 characters, if given.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let request_id = headers.get(proto::api::IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()).map(|s| s.to_string());
    match &request_id {
        Some(id) if id.is_empty() || id.len() > 128 => {
            Err(ApiError::BadRequest("Idempotency-Key must be 1 to 128 characters".into()))
        }
        _ => Ok(request_id),
    }
}

/// `{"ok": true, ...fields}` (200).
pub fn ok_json<T: serde::Serialize>(fields: T) -> Response {
    (StatusCode::OK, Json(OkBody(fields))).into_response()
}

/// A reply the state machine should not have given to the command it applied.
pub fn unexpected(r: Reply) -> ApiError {
    ApiError::Internal(format!("unexpected reply {r:?}"))
}

/// The answer of a write the state machine applied: its reply as the route's `{"ok": true,
/// ...}` body (docs/API.md). Login and announce answer with more than the reply, in their own
/// handlers.
pub fn written(reply: Reply) -> ApiResult<Response> {
    Ok(match reply {
        Reply::Registered { user } => ok_json(UserBody { user }),
        Reply::LoggedOut { user, paused_shares } => ok_json(LogoutResponse { paused_shares, user }),
        Reply::GroupCreated { group } => ok_json(GroupCreated { group }),
        Reply::RequestFiled { group, already_pending } => ok_json(JoinResponse { already_pending, group }),
        Reply::LeftGroup { group, new_owner, group_deleted } => {
            ok_json(LeaveResponse { group, group_deleted, new_owner })
        }
        Reply::Accepted { group, user } => ok_json(AcceptResponse { group, user }),
        Reply::FileShared { group, name, new_file } => ok_json(UploadResponse { group, name, new_file }),
        Reply::ShareStopped { group, name, was_sharing } => ok_json(StopShareResponse { group, name, was_sharing }),
        Reply::MemberRemoved { group, user, shares_ended } => {
            ok_json(RemoveMemberResponse { group, shares_ended, user })
        }
        other @ (Reply::Internal | Reply::LoggedIn { .. } | Reply::Announced { .. }) => return Err(unexpected(other)),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Every `ErrorCode`, in declaration order. The match has no wildcard: a new variant does not
    /// compile until it is chained in here (and so checked against docs/API.md below).
    fn every_code() -> Vec<ErrorCode> {
        fn after(c: Option<ErrorCode>) -> Option<ErrorCode> {
            use ErrorCode::*;
            match c {
                None => Some(BadCredentials),
                Some(BadCredentials) => Some(Unauthenticated),
                Some(Unauthenticated) => Some(UserExists),
                Some(UserExists) => Some(GroupExists),
                Some(GroupExists) => Some(NoSuchGroup),
                Some(NoSuchGroup) => Some(NotMember),
                Some(NotMember) => Some(NotOwner),
                Some(NotOwner) => Some(AlreadyMember),
                Some(AlreadyMember) => Some(NoSuchRequest),
                Some(NoSuchRequest) => Some(NoSuchFile),
                Some(NoSuchFile) => Some(FileConflict),
                Some(FileConflict) => Some(InvalidName),
                Some(InvalidName) => Some(FileTooLarge),
                Some(FileTooLarge) => Some(InvalidRequest),
                Some(InvalidRequest) => Some(IdempotencyKeyReused),
                Some(IdempotencyKeyReused) => Some(NotAllowed),
                Some(NotAllowed) => None,
            }
        }
        std::iter::successors(after(None), |c| after(Some(*c))).collect()
    }

    /// The status docs/API.md gives each refusal code, read from its "**Refusals** are 4xx ..."
    /// paragraph: a three-digit number sets the status for the `code`s that follow it.
    fn documented_statuses() -> BTreeMap<String, u16> {
        let doc = include_str!("../../../docs/API.md");
        let start = doc.find("**Refusals** are 4xx").expect("docs/API.md has the Refusals paragraph");
        let rest = &doc[start..];
        let para = &rest[..rest[1..].find("\n- ").map(|i| i + 1).unwrap_or(rest.len())];
        // After the shape of the body (`{"error": ...}`), the statuses and their codes.
        let para = &para[para.find("}}`").expect("the paragraph shows the body's shape") + 3..];
        let mut out = BTreeMap::new();
        let mut status = None;
        let mut in_code = false;
        for (i, piece) in para.split('`').enumerate() {
            in_code = i % 2 == 1;
            if in_code {
                let s = status.unwrap_or_else(|| panic!("`{piece}` comes before any status in: {para}"));
                assert!(out.insert(piece.to_string(), s).is_none(), "`{piece}` is listed twice: {para}");
            } else {
                for word in piece.split(|c: char| !c.is_ascii_digit()) {
                    if word.len() == 3 {
                        status = Some(word.parse::<u16>().unwrap());
                    }
                }
            }
        }
        assert!(!in_code, "unbalanced backquotes in: {para}");
        out
    }

    async fn parts(resp: Response) -> (StatusCode, HeaderMap, serde_json::Value) {
        let (p, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}"));
        (p.status, p.headers, json)
    }

    #[tokio::test]
    async fn every_refusal_code_has_the_status_docs_api_gives_it_and_its_code_in_the_body() {
        let codes = every_code();
        assert_eq!(codes.len(), 16, "{codes:?}");
        let doc = documented_statuses();
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        // The paragraph lists exactly the codes, plus `forbidden` (ApiError::Forbidden) and the
        // admin call's `would_lose_quorum` (ApiError::Conflict), whose statuses are checked here.
        assert_eq!(doc.get("forbidden"), Some(&403));
        assert_eq!(doc.get("would_lose_quorum"), Some(&409));
        let (status, _, body) =
            parts(ApiError::Conflict(ApiErrorCode::WouldLoseQuorum, "why".into()).into_response()).await;
        assert_eq!((status.as_u16(), &body["error"]["code"]), (409, &serde_json::json!("would_lose_quorum")));
        // And an add whose learner did not catch up (api/admin.rs).
        assert_eq!(doc.get("not_caught_up"), Some(&409));
        let (status, _, body) =
            parts(ApiError::Conflict(ApiErrorCode::NotCaughtUp, "why".into()).into_response()).await;
        assert_eq!((status.as_u16(), &body["error"]["code"]), (409, &serde_json::json!("not_caught_up")));
        // And the leader's quota refusal (ApiError::QuotaExceeded): 429, no Retry-After.
        assert_eq!(doc.get("quota_exceeded"), Some(&429));
        let exceeded = quota::QuotaExceeded {
            user: "alice".into(),
            kind: raft_store::state::QuotaKind::GroupsOwned,
            held: 3,
            limit: 3,
        };
        let (status, h, body) = parts(ApiError::QuotaExceeded(exceeded.clone()).into_response()).await;
        assert_eq!((status.as_u16(), &body["error"]["code"]), (429, &serde_json::json!("quota_exceeded")));
        assert_eq!(body["error"]["message"], serde_json::json!(exceeded.to_string()));
        assert!(h.get(header::RETRY_AFTER).is_none(), "waiting does not lift a quota");
        let mut listed: Vec<&str> = doc
            .keys()
            .map(|k| k.as_str())
            .filter(|k| !["forbidden", "would_lose_quorum", "not_caught_up", "quota_exceeded"].contains(k))
            .collect();
        let mut sorted = names.clone();
        listed.sort();
        sorted.sort();
        assert_eq!(listed, sorted, "docs/API.md's Refusals paragraph against ErrorCode");
        for code in codes {
            let want = doc[code.as_str()];
            assert_eq!(refusal_status(code).as_u16(), want, "{code:?}");
            assert!(refusal_status(code).is_client_error(), "{code:?}");
            let (status, headers, body) = parts(ApiError::Refused(Refusal::new(code, "why")).into_response()).await;
            assert_eq!(status.as_u16(), want, "{code:?}");
            assert_eq!(body, serde_json::json!({"error": {"code": code.as_str(), "message": "why"}}), "{code:?}");
            assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/json", "{code:?}");
            assert!(headers.get(header::LOCATION).is_none() && headers.get(header::RETRY_AFTER).is_none());
        }
        // The spot checks a reader would look for first, in case the parse itself went wrong.
        assert_eq!(doc["not_allowed"], 403);
        assert_eq!(doc["file_too_large"], 413);
        assert_eq!(doc["idempotency_key_reused"], 422);
        assert_eq!(doc["forbidden"], 403);
    }

    #[tokio::test]
    async fn every_api_error_answers_its_status_code_and_headers() {
        let header_of = |h: &HeaderMap, k: header::HeaderName| h.get(k).map(|v| v.to_str().unwrap().to_string());

        // 307: the leader's address in the body and in Location (the path is added by
        // `complete_location`, tested end to end in raft_cluster.rs).
        let (status, h, body) =
            parts(ApiError::NotLeader { id: 3, api: "127.0.0.1:7003".into() }.into_response()).await;
        assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(header_of(&h, header::LOCATION).as_deref(), Some("http://127.0.0.1:7003"));
        assert_eq!(body["error"]["code"], "not_leader");
        assert!(body["error"]["message"].as_str().unwrap().contains("127.0.0.1:7003"), "{body}");
        assert_eq!(body["leader"], serde_json::json!({"id": 3, "api": "127.0.0.1:7003"}));

        // 503 with Retry-After: 1.
        let (status, h, body) = parts(ApiError::Unavailable("no leader".into()).into_response()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header_of(&h, header::RETRY_AFTER).as_deref(), Some("1"));
        assert_eq!(body, serde_json::json!({"error": {"code": "unavailable", "message": "no leader"}}));
        assert!(h.get(header::LOCATION).is_none());

        // 429 with Retry-After in whole seconds, never 0.
        for (after, want) in [(0, "1"), (1, "1"), (7, "7"), (60, "60")] {
            let e = ApiError::RateLimited { retry_after_s: after, message: "slow down".into() };
            let (status, h, body) = parts(e.into_response()).await;
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(header_of(&h, header::RETRY_AFTER).as_deref(), Some(want), "retry_after_s {after}");
            assert_eq!(body, serde_json::json!({"error": {"code": "rate_limited", "message": "slow down"}}));
        }

        // The others: no Location, no Retry-After.
        for (e, want, code) in [
            (ApiError::BadRequest("bad".into()), StatusCode::BAD_REQUEST, "invalid_request"),
            (ApiError::Forbidden("no".into()), StatusCode::FORBIDDEN, "forbidden"),
            (ApiError::Internal("oops".into()), StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        ] {
            let (status, h, body) = parts(e.into_response()).await;
            assert_eq!((status, body["error"]["code"].as_str()), (want, Some(code)), "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
            assert!(h.get(header::LOCATION).is_none() && h.get(header::RETRY_AFTER).is_none(), "{code}");
        }

        // openraft's "forward to leader": a known leader is a 307, an unknown one a 503.
        let node = TrackerNode { api: "127.0.0.1:7002".into(), ..Default::default() };
        let known = ForwardToLeader { leader_id: Some(2), leader_node: Some(node) };
        assert!(matches!(ApiError::forward(&known), ApiError::NotLeader { id: 2, ref api } if api == "127.0.0.1:7002"));
        let unknown = ForwardToLeader::<NodeId, TrackerNode> { leader_id: None, leader_node: None };
        assert!(matches!(ApiError::forward(&unknown), ApiError::Unavailable(_)));
    }
}
