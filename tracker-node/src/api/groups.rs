//! Groups: list, create, join requests, accept, leave, remove a member.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proto::api::{
    AcceptRequest, CreateGroupRequest, GroupRow, GroupsPage, GroupsQuery, RequestRow, GROUPS_PAGE_DEFAULT,
    GROUPS_PAGE_MAX,
};
use raft_store::Command;

use super::auth::bearer;
use super::body::Body;
use super::{now_ms, ApiError, ApiResult, AppState};

/// Resolves the caller after a linearizable barrier: reads see every acknowledged write.
pub(super) async fn reader(s: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let token_hash = bearer(headers)?;
    s.linearizable().await?;
    Ok(s.sm.read(|d| d.state.authenticate(&token_hash, now_ms()))?)
}

/// Checks a `GET /v1/groups` query: the page size (1 to `GROUPS_PAGE_MAX`, default
/// `GROUPS_PAGE_DEFAULT`) and the cursor (a group name). Bad input is a 400 and reads nothing.
pub fn page_of(query: Result<Query<GroupsQuery>, QueryRejection>) -> ApiResult<(Option<String>, usize)> {
    let Query(q) = query.map_err(|e| {
        ApiError::BadRequest(format!("bad query: {}; GET /v1/groups takes after=GROUP and limit=N", e.body_text()))
    })?;
    let limit = q.limit.unwrap_or(GROUPS_PAGE_DEFAULT);
    if limit == 0 || limit > GROUPS_PAGE_MAX {
        return Err(ApiError::BadRequest(format!("limit must be 1 to {GROUPS_PAGE_MAX} groups a page, got {limit}")));
    }
    if let Some(after) = &q.after {
        proto::names::validate_id("group", after).map_err(|m| {
            ApiError::BadRequest(format!("after must be a group name (the previous page's next_after): {m}"))
        })?;
    }
    Ok((q.after, limit))
}

/// One page of groups, in name order: `{"groups": [...], "next_after": NAME | null}`.
pub async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<GroupsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (after, limit) = page_of(query)?;
    let user = reader(&s, &headers).await?;
    let (views, more) = s.sm.read(|d| d.state.list_groups_page(&user, after.as_deref(), limit));
    let groups: Vec<GroupRow> = views
        .into_iter()
        .map(|g| GroupRow { group: g.group, owner: g.owner, members: g.members, member: g.member, pending: g.pending })
        .collect();
    let next_after = if more { groups.last().map(|g| g.group.clone()) } else { None };
    Ok(Json(GroupsPage { groups, next_after }).into_response())
}

pub async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(req): Body<CreateGroupRequest>,
) -> ApiResult<Response> {
    s.session_write(&headers, |token_hash| Command::CreateGroup { token_hash, group: req.group }).await
}

pub async fn join(State(s): State<AppState>, headers: HeaderMap, Path(group): Path<String>) -> ApiResult<Response> {
    s.session_write(&headers, |token_hash| Command::JoinGroup { token_hash, group }).await
}

pub async fn list_requests(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> ApiResult<Response> {
    let user = reader(&s, &headers).await?;
    let users = s.sm.read(|d| d.state.list_requests(&user, &group))?;
    let rows: Vec<RequestRow> = users.into_iter().map(|user| RequestRow { user }).collect();
    Ok(Json(rows).into_response())
}

pub async fn accept(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(group): Path<String>,
    Body(req): Body<AcceptRequest>,
) -> ApiResult<Response> {
    s.session_write(&headers, |token_hash| Command::AcceptRequest { token_hash, group, user: req.user }).await
}

pub async fn leave(State(s): State<AppState>, headers: HeaderMap, Path(group): Path<String>) -> ApiResult<Response> {
    s.session_write(&headers, |token_hash| Command::LeaveGroup { token_hash, group }).await
}

pub async fn remove_member(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((group, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    s.session_write(&headers, |token_hash| Command::RemoveMember { token_hash, group, user }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(query: &str) -> Result<(Option<String>, usize), String> {
        let uri: axum::http::Uri = format!("/v1/groups{query}").parse().unwrap();
        page_of(Query::try_from_uri(&uri)).map_err(|e| match e {
            ApiError::BadRequest(m) => m,
            other => panic!("{query}: not a 400: {other:?}"),
        })
    }

    #[test]
    fn a_groups_query_is_bounded_and_bad_ones_are_refused_with_the_reason() {
        assert_eq!(page(""), Ok((None, GROUPS_PAGE_DEFAULT)));
        assert_eq!(page("?limit=1"), Ok((None, 1)));
        assert_eq!(
            page(&format!("?after=g_9.x-&limit={GROUPS_PAGE_MAX}")),
            Ok((Some("g_9.x-".into()), GROUPS_PAGE_MAX))
        );
        // (query, what the message must say)
        let bad: Vec<(String, &str)> = vec![
            ("?limit=0".into(), "limit must be 1 to 1000"),
            (format!("?limit={}", GROUPS_PAGE_MAX + 1), "limit must be 1 to 1000 groups a page, got 1001"),
            ("?limit=-3".into(), "bad query"),
            ("?limit=many".into(), "bad query"),
            ("?page=2".into(), "bad query"),
            ("?after=a%2Fb".into(), "after must be a group name"),
            (format!("?after={}", "x".repeat(65)), "after must be a group name"),
        ];
        for (q, want) in bad {
            let m = page(&q).unwrap_err();
            assert!(m.contains(want), "{q}: {m}");
        }
    }
}
