//! The Raft RPC server: `/raft/append`, `/raft/vote`, `/raft/snapshot` on the node's raft
//! address. When the cluster has a secret, calls without it are refused with 403.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use raft_store::{NodeId, Raft, TypeConfig};

use super::MAX_RAFT_BODY_BYTES;

#[derive(Clone)]
struct RaftState {
    raft: Raft,
    secret: Option<String>,
}

pub fn router(raft: Raft, secret: Option<String>) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY_BYTES))
        .with_state(RaftState { raft, secret })
}

fn check_secret(state: &RaftState, headers: &HeaderMap) -> Result<(), Response> {
    crate::api::auth::check_cluster_secret(state.secret.as_deref(), headers).map_err(|e| e.into_response())
}

async fn append(
    State(s): State<RaftState>,
    headers: HeaderMap,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    if let Err(r) = check_secret(&s, &headers) {
        return r;
    }
    (StatusCode::OK, Json(s.raft.append_entries(req).await)).into_response()
}

async fn vote(State(s): State<RaftState>, headers: HeaderMap, Json(req): Json<VoteRequest<NodeId>>) -> Response {
    if let Err(r) = check_secret(&s, &headers) {
        return r;
    }
    (StatusCode::OK, Json(s.raft.vote(req).await)).into_response()
}

async fn snapshot(
    State(s): State<RaftState>,
    headers: HeaderMap,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    if let Err(r) = check_secret(&s, &headers) {
        return r;
    }
    (StatusCode::OK, Json(s.raft.install_snapshot(req).await)).into_response()
}
