//! Groups: list, create, join requests, accept, leave, remove a member.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proto::api::{AcceptRequest, CreateGroupRequest, GroupRow, RequestRow};
use raft_store::{Command, Reply};
use serde_json::json;

use super::auth::bearer;
use super::body::Body;
use super::{now_ms, ok_json, ApiError, ApiResult, AppState};

/// Resolves the caller after a linearizable barrier: reads see every acknowledged write.
pub(super) async fn reader(s: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let token_hash = bearer(headers)?;
    s.linearizable().await?;
    Ok(s.sm.read(|d| d.state.authenticate(&token_hash, now_ms()))?)
}

fn unexpected(r: Reply) -> ApiError {
    ApiError::Internal(format!("unexpected reply {r:?}"))
}

pub async fn list(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let r: ApiResult<Response> = async {
        let user = reader(&s, &headers).await?;
        let rows: Vec<GroupRow> = s.sm.read(|d| {
            d.state
                .list_groups(&user)
                .into_iter()
                .map(|g| GroupRow {
                    group: g.group,
                    owner: g.owner,
                    members: g.members,
                    member: g.member,
                    pending: g.pending,
                })
                .collect()
        });
        Ok(Json(rows).into_response())
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn create(State(s): State<AppState>, headers: HeaderMap, Body(req): Body<CreateGroupRequest>) -> Response {
    let r: ApiResult<Response> = async {
        let token_hash = bearer(&headers)?;
        match s.write(&headers, Command::CreateGroup { token_hash, group: req.group }).await? {
            Reply::GroupCreated { group } => Ok(ok_json(json!({ "group": group }))),
            other => Err(unexpected(other)),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn join(State(s): State<AppState>, headers: HeaderMap, Path(group): Path<String>) -> Response {
    let r: ApiResult<Response> = async {
        let token_hash = bearer(&headers)?;
        match s.write(&headers, Command::JoinGroup { token_hash, group }).await? {
            Reply::RequestFiled { group, already_pending } => {
                Ok(ok_json(json!({ "group": group, "already_pending": already_pending })))
            }
            other => Err(unexpected(other)),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn list_requests(State(s): State<AppState>, headers: HeaderMap, Path(group): Path<String>) -> Response {
    let r: ApiResult<Response> = async {
        let user = reader(&s, &headers).await?;
        let users = s.sm.read(|d| d.state.list_requests(&user, &group))?;
        let rows: Vec<RequestRow> = users.into_iter().map(|user| RequestRow { user }).collect();
        Ok(Json(rows).into_response())
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn accept(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(group): Path<String>,
    Body(req): Body<AcceptRequest>,
) -> Response {
    let r: ApiResult<Response> = async {
        let token_hash = bearer(&headers)?;
        match s.write(&headers, Command::AcceptRequest { token_hash, group, user: req.user }).await? {
            Reply::Accepted { group, user } => Ok(ok_json(json!({ "group": group, "user": user }))),
            other => Err(unexpected(other)),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn leave(State(s): State<AppState>, headers: HeaderMap, Path(group): Path<String>) -> Response {
    let r: ApiResult<Response> = async {
        let token_hash = bearer(&headers)?;
        match s.write(&headers, Command::LeaveGroup { token_hash, group }).await? {
            Reply::LeftGroup { group, new_owner, group_deleted } => {
                Ok(ok_json(json!({ "group": group, "new_owner": new_owner, "group_deleted": group_deleted })))
            }
            other => Err(unexpected(other)),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

pub async fn remove_member(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((group, user)): Path<(String, String)>,
) -> Response {
    let r: ApiResult<Response> = async {
        let token_hash = bearer(&headers)?;
        match s.write(&headers, Command::RemoveMember { token_hash, group, user }).await? {
            Reply::MemberRemoved { group, user, shares_ended } => {
                Ok(ok_json(json!({ "group": group, "user": user, "shares_ended": shares_ended })))
            }
            other => Err(unexpected(other)),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}
