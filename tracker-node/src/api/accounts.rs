//! Accounts and sessions: register, login, logout, whoami, the peer's announcement of where it
//! serves pieces (the host is the request's source, the port the peer's) and the key it speaks
//! with, and its liveness calls (soft state on the leader, `liveness.rs`).

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proto::api::{
    AliveResponse, AnnounceRequest, AnnounceResponse, LoginRequest, LoginResponse, RegisterRequest, UserBody,
};
use raft_store::names::validate_id;
use raft_store::{Command, ErrorCode, Refusal, Reply};

use super::auth::{self, bearer};
use super::body::Body;
use super::throttle;
use super::{now_ms, ok_json, unexpected, written, ApiError, ApiResult, AppState};

/// Sessions last a day; a peer logs in again after that.
pub const SESSION_TTL_MS: u64 = 24 * 3600 * 1000;

pub async fn register(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(req): Body<RegisterRequest>,
) -> ApiResult<Response> {
    validate_id("user", &req.user).map_err(Refusal::invalid_name)?;
    auth::check_password_shape(&req.password)?;
    // Redirect before paying for the hash; the leader hashes, then proposes the hash.
    s.leader_or_redirect()?;
    // Bounded per source address before any work: a flood from one address costs a map
    // lookup per attempt, not an argon2 run that the password workers owe everyone else.
    s.registrations.admit(from.ip(), Instant::now()).map_err(|wait| {
        ApiError::throttled(wait, |secs| format!("too many new accounts from this address; try again in {secs} s"))
    })?;
    let password_hash = match auth::hash_password(&s.passwords, req.password).await {
        Ok(h) => h,
        Err(e) => {
            // No hash was made (the workers were busy): no account is counted.
            s.registrations.not_done(from.ip());
            return Err(e);
        }
    };
    written(s.write(&headers, Command::Register { user: req.user, password_hash }).await?)
}

pub async fn login(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Response> {
    validate_id("user", &req.user).map_err(Refusal::invalid_name)?;
    auth::check_password_shape(&req.password)?;
    // Throttled before any work: a guesser costs a map lookup, not an argon2 run.
    let keys = throttle::keys(&req.user, from.ip());
    // Admitted attempts count as failures until they succeed (`throttle`).
    s.throttle.admit(&keys, Instant::now()).map_err(|wait| {
        ApiError::throttled(wait, |secs| format!("too many failed logins for {:?}; try again in {secs} s", req.user))
    })?;
    let token = match req.token {
        Some(t) if auth::valid_token(&t) => t,
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "a session token is {} lowercase hex characters",
                auth::TOKEN_HEX_LEN
            )))
        }
        None => auth::new_token(),
    };
    let checked = async {
        // The hash to check against must be the committed one: read it through the leader.
        s.linearizable().await?;
        let stored = s.sm.read(|d| d.state.password_hash(&req.user).map(str::to_string));
        auth::verify_password(&s.passwords, req.password, stored).await
    }
    .await;
    match checked {
        Ok(()) => s.throttle.succeeded(&keys),
        // A wrong password stays counted.
        Err(e @ ApiError::Refused(Refusal { code: ErrorCode::BadCredentials, .. })) => return Err(e),
        // Never checked (the password workers were busy, no quorum confirmed the hash):
        // no failure of anyone's, so a client retrying a right password on 503s is never
        // held back by them.
        Err(e) => {
            s.throttle.not_checked(&keys);
            return Err(e);
        }
    }
    let now = now_ms();
    let expires_at_ms = now + SESSION_TTL_MS;
    let cmd = Command::Login { user: req.user, token_hash: auth::token_hash(&token), expires_at_ms };
    match s.write(&headers, cmd).await? {
        Reply::LoggedIn { user, resumed_shares } => {
            Ok(Json(LoginResponse { user, token, expires_at_ms, resumed_shares }).into_response())
        }
        other => Err(unexpected(other)),
    }
}

pub async fn logout(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    s.session_write(&headers, |token_hash| Command::Logout { token_hash }).await
}

pub async fn whoami(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let token_hash = bearer(&headers)?;
    s.linearizable().await?;
    let user = s.sm.read(|d| d.state.authenticate(&token_hash, now_ms()))?;
    Ok(ok_json(UserBody { user }))
}

/// Where a peer serves, as the tracker records it: the host the request came from (never one
/// the client names: a member could otherwise send downloaders to any address) and the port the
/// client gives in `claimed` (`host:port`; its host is ignored).
pub fn peer_addr_from(from: SocketAddr, claimed: &str) -> ApiResult<String> {
    let port = (claimed.len() <= 255)
        .then(|| claimed.rsplit_once(':'))
        .flatten()
        .filter(|(host, _)| !host.is_empty())
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ApiError::Refused(Refusal::new(
                ErrorCode::InvalidRequest,
                format!("peer address {claimed:?} is not host:port with a port from 1 to 65535"),
            ))
        })?;
    // IPv4-mapped IPv6 (a dual-stack listener) is recorded as the IPv4 address it is.
    Ok(SocketAddr::new(from.ip().to_canonical(), port).to_string())
}

/// A peer key as the API takes it (64 hex characters, either case), in the log's form:
/// lowercase, checked.
pub fn peer_key_from(given: &str) -> ApiResult<String> {
    let key = given.to_ascii_lowercase();
    raft_store::state::validate_peer_key(&key)?;
    Ok(key)
}

pub async fn announce(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(req): Body<AnnounceRequest>,
) -> ApiResult<Response> {
    let token_hash = bearer(&headers)?;
    let peer_addr = peer_addr_from(from, &req.peer_addr)?;
    let peer_key = peer_key_from(&req.peer_key)?;
    let cmd = Command::Announce { token_hash, peer_addr: peer_addr.clone(), peer_key };
    match s.write(&headers, cmd).await? {
        Reply::Announced { user, shares } => {
            // Committed by this node as leader: the announcing daemon is alive.
            let now = s.liveness_now();
            s.liveness.seen(&user, now);
            let alive_every_ms = s.liveness.alive_every_ms();
            Ok(ok_json(AnnounceResponse { peer_addr, shares, user, alive_every_ms }))
        }
        other => Err(unexpected(other)),
    }
}

/// The session's user, read from this leader's applied state without a read index: enough for
/// soft state. A refusal is confirmed through the read index first (a new leader may not have
/// applied a login of the previous term yet), so a live session is never told it has ended.
async fn session_user_local(s: &AppState, token_hash: &str) -> ApiResult<String> {
    s.leader_or_redirect()?;
    if let Ok(user) = s.sm.read(|d| d.state.authenticate(token_hash, now_ms())) {
        return Ok(user);
    }
    s.linearizable().await?;
    Ok(s.sm.read(|d| d.state.authenticate(token_hash, now_ms()))?)
}

/// Checks an alive / going-away call: the caller's user, the address it would be recorded at,
/// and whether that address and `peer_key` are what the tracker lists for the user (only then
/// does the call speak for the listed daemon).
async fn liveness_call(
    s: &AppState,
    from: SocketAddr,
    headers: &HeaderMap,
    req: &AnnounceRequest,
) -> ApiResult<(String, String, bool)> {
    let token_hash = bearer(headers)?;
    let peer_addr = peer_addr_from(from, &req.peer_addr)?;
    let peer_key = peer_key_from(&req.peer_key)?;
    let user = session_user_local(s, &token_hash).await?;
    let listed = s.sm.read(|d| {
        d.state.users().get(&user).is_some_and(|u| {
            u.peer_addr.as_deref() == Some(peer_addr.as_str()) && u.peer_key.as_deref() == Some(peer_key.as_str())
        })
    });
    Ok((user, peer_addr, listed))
}

/// `POST /v1/peer/alive`: the caller's daemon is alive. Handled by the leader in memory (no
/// log entry); recorded only when the daemon is the one the tracker lists for the user.
pub async fn alive(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(req): Body<AnnounceRequest>,
) -> ApiResult<Response> {
    liveness_answer(&s, from, &headers, &req, |s, user, now| s.liveness.seen(user, now)).await
}

/// `DELETE /v1/peer/alive`: the caller's daemon is stopping; its shares stop being listed at
/// once (until it says alive or announces again).
pub async fn going_away(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(req): Body<AnnounceRequest>,
) -> ApiResult<Response> {
    liveness_answer(&s, from, &headers, &req, |s, user, now| s.liveness.gone(user, now)).await
}

/// The answer of both liveness calls; `record` runs only for the daemon the tracker lists.
async fn liveness_answer(
    s: &AppState,
    from: SocketAddr,
    headers: &HeaderMap,
    req: &AnnounceRequest,
    record: impl FnOnce(&AppState, &str, u64),
) -> ApiResult<Response> {
    let (user, peer_addr, listed) = liveness_call(s, from, headers, req).await?;
    if listed {
        record(s, &user, s.liveness_now());
    }
    Ok(ok_json(AliveResponse { listed, peer_addr, user, alive_every_ms: s.liveness.alive_every_ms() }))
}
