//! The Raft RPC server: `/raft/append`, `/raft/vote`, `/raft/snapshot` on the node's raft
//! address, MessagePack in and out (see `wire`), served on mutually authenticated TLS
//! connections only (`listener`). A body over `MAX_RAFT_BODY_BYTES` is refused before it is
//! read whole; a malformed one gets 400 and never reaches openraft; a message in the name of
//! another node than the one the connection's certificate names gets 403 (a node speaks for
//! itself only). When the cluster has a secret, calls without it are refused with 403 too.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use raft_store::{NodeId, Raft};
use serde::Serialize;

use super::listener::PeerNode;
use super::wire::{self, MAX_RAFT_BODY_BYTES};

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

/// The node a message speaks for (the leader of an append or snapshot, the candidate of a
/// vote) must be the node whose certificate the connection presented.
fn check_sender(peer: PeerNode, vote: &openraft::Vote<NodeId>, rpc: &str) -> Result<(), Response> {
    let claimed = vote.leader_id().voted_for();
    if claimed == Some(peer.0) {
        return Ok(());
    }
    tracing::warn!(peer = peer.0, ?claimed, "refused a Raft {rpc} sent by node {} in the name of another node", peer.0);
    Err((StatusCode::FORBIDDEN, format!("node {} may not send a {rpc} in the name of node {claimed:?}", peer.0))
        .into_response())
}

fn reply<T: Serialize>(value: &T) -> Response {
    match wire::encode(value) {
        Ok(bytes) => (StatusCode::OK, [(header::CONTENT_TYPE, wire::CONTENT_TYPE)], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn malformed(e: wire::WireError) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

/// One Raft RPC: the secret (when set), the body's decoding, the sender check, then openraft.
async fn serve_rpc<Req, Resp, Fut>(
    s: RaftState,
    peer: PeerNode,
    headers: HeaderMap,
    body: Bytes,
    rpc: &str,
    decode: impl FnOnce(&[u8]) -> Result<Req, wire::WireError>,
    sender_of: impl FnOnce(&Req) -> &openraft::Vote<NodeId>,
    handle: impl FnOnce(Raft, Req) -> Fut,
) -> Response
where
    Resp: Serialize,
    Fut: std::future::Future<Output = Resp>,
{
    if let Err(r) = check_secret(&s, &headers) {
        return r;
    }
    let req = match decode(&body) {
        Ok(req) => req,
        Err(e) => return malformed(e),
    };
    if let Err(r) = check_sender(peer, sender_of(&req), rpc) {
        return r;
    }
    reply(&handle(s.raft, req).await)
}

async fn append(
    State(s): State<RaftState>,
    Extension(peer): Extension<PeerNode>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve_rpc(
        s,
        peer,
        headers,
        body,
        "append",
        wire::decode_append,
        |r| &r.vote,
        |raft, req| async move { raft.append_entries(req).await },
    )
    .await
}

async fn vote(
    State(s): State<RaftState>,
    Extension(peer): Extension<PeerNode>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve_rpc(
        s,
        peer,
        headers,
        body,
        "vote",
        wire::decode::<openraft::raft::VoteRequest<NodeId>>,
        |r| &r.vote,
        |raft, req| async move { raft.vote(req).await },
    )
    .await
}

async fn snapshot(
    State(s): State<RaftState>,
    Extension(peer): Extension<PeerNode>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve_rpc(
        s,
        peer,
        headers,
        body,
        "snapshot chunk",
        wire::decode_snapshot,
        |r| &r.vote,
        |raft, req| async move { raft.install_snapshot(req).await },
    )
    .await
}
