//! Accounts and sessions: register, login, logout, whoami, and the peer's announcement of
//! where it serves pieces.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proto::api::{AnnounceRequest, LoginRequest, LoginResponse, RegisterRequest};
use raft_store::names::validate_id;
use raft_store::{Command, Refusal, Reply};
use serde_json::json;

use super::auth::{self, bearer};
use super::body::Body;
use super::throttle;
use super::{now_ms, ok_json, ApiError, ApiResult, AppState};

/// Sessions last a day; a peer logs in again after that.
pub const SESSION_TTL_MS: u64 = 24 * 3600 * 1000;

pub async fn register(State(s): State<AppState>, headers: HeaderMap, Body(req): Body<RegisterRequest>) -> Response {
    let r: ApiResult<Response> = async {
        validate_id("user", &req.user).map_err(Refusal::invalid_name)?;
        auth::check_password_shape(&req.password)?;
        // Redirect before paying for the hash; the leader hashes, then proposes the hash.
        s.leader_or_redirect()?;
        let password_hash = auth::hash_password(&s.passwords, req.password).await?;
        let reply = s.write(&headers, Command::Register { user: req.user, password_hash }).await?;
        match reply {
            Reply::Registered { user } => Ok(ok_json(json!({ "user": user }))),
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn login(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(req): Body<LoginRequest>,
) -> Response {
    let r: ApiResult<Response> = async {
        validate_id("user", &req.user).map_err(Refusal::invalid_name)?;
        auth::check_password_shape(&req.password)?;
        // Throttled before any work: a guesser costs a map lookup, not an argon2 run.
        let keys = throttle::keys(&req.user, from.ip());
        if let Err(wait) = s.throttle.check(&keys, Instant::now()) {
            let secs = wait.as_secs_f64().ceil() as u64;
            return Err(ApiError::RateLimited {
                retry_after_s: secs,
                message: format!("too many failed logins for {:?}; try again in {secs} s", req.user),
            });
        }
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
        // The hash to check against must be the committed one: read it through the leader.
        s.linearizable().await?;
        let stored = s.sm.read(|d| d.state.password_hash(&req.user).map(str::to_string));
        if let Err(e) = auth::verify_password(&s.passwords, req.password, stored).await {
            if matches!(e, ApiError::Refused(_)) {
                s.throttle.failed(&keys, Instant::now());
            }
            return Err(e);
        }
        s.throttle.succeeded(&keys[0].0);
        let now = now_ms();
        let expires_at_ms = now + SESSION_TTL_MS;
        let cmd = Command::Login { user: req.user, token_hash: auth::token_hash(&token), expires_at_ms };
        match s.write(&headers, cmd).await? {
            Reply::LoggedIn { user, resumed_shares } => {
                Ok(Json(LoginResponse { user, token, expires_at_ms, resumed_shares }).into_response())
            }
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let r: ApiResult<Response> = async {
        let token_hash = bearer(&headers)?;
        match s.write(&headers, Command::Logout { token_hash }).await? {
            Reply::LoggedOut { user, paused_shares } => {
                Ok(ok_json(json!({ "user": user, "paused_shares": paused_shares })))
            }
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn whoami(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let r: ApiResult<Response> = async {
        let token_hash = bearer(&headers)?;
        s.linearizable().await?;
        let user = s.sm.read(|d| d.state.authenticate(&token_hash, now_ms()))?;
        Ok(ok_json(json!({ "user": user })))
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn announce(State(s): State<AppState>, headers: HeaderMap, Body(req): Body<AnnounceRequest>) -> Response {
    let r: ApiResult<Response> = async {
        let token_hash = bearer(&headers)?;
        match s.write(&headers, Command::Announce { token_hash, peer_addr: req.peer_addr }).await? {
            Reply::Announced { user, shares } => Ok(ok_json(json!({ "user": user, "shares": shares }))),
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}
