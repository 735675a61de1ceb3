//! `POST /v1/admin/members`: membership changes, on the leader. Adding makes the node a
//! learner first and waits for it to catch up (openraft's blocking add_learner), then
//! promotes it to voter; removing takes it out of the voters.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use proto::api::MembersRequest;
use raft_store::{NodeId, TrackerNode};
use serde_json::json;

use super::body::Body;
use super::{auth, ok_json, ApiError, ApiResult, AppState};

fn map_err(e: RaftError<NodeId, ClientWriteError<NodeId, TrackerNode>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ApiError::forward(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ApiError::BadRequest(e.to_string()),
        RaftError::Fatal(f) => ApiError::Unavailable(format!("this node stopped: {f}")),
    }
}

pub async fn members(State(s): State<AppState>, headers: HeaderMap, Body(req): Body<MembersRequest>) -> Response {
    let r: ApiResult<Response> = async {
        auth::check_cluster_secret(s.config.secret.as_deref(), &headers)?;
        s.leader_or_redirect()?;
        match req.action.as_str() {
            "add" => {
                let node = TrackerNode { api: req.api, raft: req.raft };
                s.raft.add_learner(req.id, node, true).await.map_err(map_err)?;
                let resp = s
                    .raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([req.id])), false)
                    .await
                    .map_err(map_err)?;
                let voters: Vec<u64> = resp.membership.as_ref().map(|m| m.voter_ids().collect()).unwrap_or_default();
                Ok(ok_json(json!({ "id": req.id, "voters": voters })))
            }
            "remove" => {
                let resp = s
                    .raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([req.id])), false)
                    .await
                    .map_err(map_err)?;
                let voters: Vec<u64> = resp.membership.as_ref().map(|m| m.voter_ids().collect()).unwrap_or_default();
                Ok(ok_json(json!({ "id": req.id, "voters": voters })))
            }
            other => Err(ApiError::BadRequest(format!("action must be add or remove, not {other:?}"))),
        }
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

/// `GET /v1/admin/snapshot`: the leader's applied state as a snapshot file (the format of
/// `current.snap`), after a read index confirms it holds everything committed before the call;
/// for `tracker-node snapshot save`. Needs the cluster secret when one is set. The index is in
/// `x-snapshot-index`.
pub async fn snapshot(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let r: ApiResult<Response> = async {
        auth::check_cluster_secret(s.config.secret.as_deref(), &headers)?;
        s.leader_or_redirect()?;
        s.linearizable().await?;
        let sm = s.sm.clone();
        let (meta, bytes) = tokio::task::spawn_blocking(move || sm.export_snapshot())
            .await
            .map_err(|e| ApiError::Internal(format!("snapshot export: {e}")))?
            .map_err(|e| ApiError::Internal(format!("snapshot export: {e}")))?;
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        Ok((
            axum::http::StatusCode::OK,
            [
                (axum::http::header::CONTENT_TYPE, "application/x-ndjson".to_string()),
                (axum::http::HeaderName::from_static(SNAPSHOT_INDEX_HEADER), index.to_string()),
            ],
            bytes,
        )
            .into_response())
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}

/// The header of `GET /v1/admin/snapshot` that carries the snapshot's log index.
pub const SNAPSHOT_INDEX_HEADER: &str = "x-snapshot-index";
