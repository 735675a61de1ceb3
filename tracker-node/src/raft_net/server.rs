//! The Raft RPC server: `/raft/append`, `/raft/vote`, `/raft/snapshot` on the node's raft
//! address, MessagePack in and out (see `wire`), served on mutually authenticated TLS
//! connections only (`listener`). A body over `MAX_RAFT_BODY_BYTES` is refused before it is
//! read whole; a malformed one gets 400 and never reaches openraft; a message in the name of
//! another node than the one the connection's certificate names gets 403 (a node speaks for
//! itself only). When the cluster has a secret, calls without it are refused with 403 too.
//!
//! A vote request from a node that is not a voter of this node's membership (a node removed
//! from the cluster, a learner, a node that started a cluster of its own) is refused before
//! openraft sees it: the answer is a vote not granted, with this node's own vote, so its term
//! does not move however high the candidate's is (`refuse_non_voter`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
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
    refused_votes: Arc<RefusedVotes>,
}

/// Vote requests refused per candidate: the first is logged, then one summary line at most every
/// [`crate::logging::UNREACHABLE_SUMMARY_EVERY`] per candidate (a removed node that campaigns
/// sends one every election timeout).
#[derive(Default)]
struct RefusedVotes {
    by_candidate: Mutex<BTreeMap<NodeId, (Instant, u64)>>,
}

impl RefusedVotes {
    fn refused(&self, candidate: NodeId, term: u64, voters: &[NodeId]) {
        let mut map = self.by_candidate.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let first = !map.contains_key(&candidate);
        let (last_line, since) = map.entry(candidate).or_insert((now, 0));
        *since += 1;
        if first || now.duration_since(*last_line) >= crate::logging::UNREACHABLE_SUMMARY_EVERY {
            tracing::info!(
                candidate,
                term,
                refused = *since,
                ?voters,
                "refused a vote request from node {candidate}: it is not a voter of this cluster"
            );
            *last_line = now;
            *since = 0;
        }
    }
}

/// `Some(answer)` when the candidate of `req` is not a voter of this node's effective
/// membership: a vote not granted, carrying this node's vote and a log id it holds (its last
/// applied one), and nothing is handed to openraft, so this node's vote and term stay as they
/// are. `None` (openraft decides) when this node has no membership yet: a node waiting to join
/// grants votes as openraft does, so a fresh cluster whose nodes did not all initialise still
/// elects a leader.
fn refuse_non_voter(
    raft: &Raft,
    req: &openraft::raft::VoteRequest<NodeId>,
    log: &RefusedVotes,
) -> Option<openraft::raft::VoteResponse<NodeId>> {
    let candidate = req.vote.leader_id().voted_for()?;
    let (voters, vote, last_applied) = {
        let rx = raft.metrics();
        let m = rx.borrow();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        (voters, m.vote, m.last_applied)
    };
    if voters.is_empty() || voters.contains(&candidate) {
        return None;
    }
    log.refused(candidate, req.vote.leader_id().term, &voters);
    Some(openraft::raft::VoteResponse::new(vote, last_applied, false))
}

pub fn router(raft: Raft, secret: Option<String>) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY_BYTES))
        .with_state(RaftState { raft, secret, refused_votes: Arc::default() })
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

/// The vote a Raft request carries: it names the node the request speaks for.
trait Sent {
    fn vote(&self) -> &openraft::Vote<NodeId>;
}

impl Sent for openraft::raft::AppendEntriesRequest<raft_store::TypeConfig> {
    fn vote(&self) -> &openraft::Vote<NodeId> {
        &self.vote
    }
}

impl Sent for openraft::raft::VoteRequest<NodeId> {
    fn vote(&self) -> &openraft::Vote<NodeId> {
        &self.vote
    }
}

impl Sent for openraft::raft::InstallSnapshotRequest<raft_store::TypeConfig> {
    fn vote(&self) -> &openraft::Vote<NodeId> {
        &self.vote
    }
}

/// A Raft RPC as it arrived: the node's state, the node whose certificate the connection
/// presented, the headers and the body (within the router's `DefaultBodyLimit`). The three
/// routes take it whole, so what a call carries is extracted in one place.
struct Call {
    s: RaftState,
    peer: PeerNode,
    headers: HeaderMap,
    body: Bytes,
}

#[axum::async_trait]
impl FromRequest<RaftState> for Call {
    type Rejection = Response;

    async fn from_request(req: Request, s: &RaftState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Extension(peer) =
            Extension::<PeerNode>::from_request_parts(&mut parts, s).await.map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let body =
            Bytes::from_request(Request::from_parts(parts, body), s).await.map_err(IntoResponse::into_response)?;
        Ok(Call { s: s.clone(), peer, headers, body })
    }
}

impl Call {
    /// The secret (when set), the body's decoding, the sender check, then openraft.
    async fn serve<Req, Resp, Fut>(
        self,
        rpc: &str,
        decode: impl FnOnce(&[u8]) -> Result<Req, wire::WireError>,
        handle: impl FnOnce(Raft, Req) -> Fut,
    ) -> Response
    where
        Req: Sent,
        Resp: Serialize,
        Fut: std::future::Future<Output = Resp>,
    {
        if let Err(r) = check_secret(&self.s, &self.headers) {
            return r;
        }
        let req = match decode(&self.body) {
            Ok(req) => req,
            Err(e) => return malformed(e),
        };
        if let Err(r) = check_sender(self.peer, req.vote(), rpc) {
            return r;
        }
        reply(&handle(self.s.raft, req).await)
    }
}

async fn append(call: Call) -> Response {
    call.serve("append", wire::decode_append, |raft, req| async move { raft.append_entries(req).await }).await
}

async fn vote(call: Call) -> Response {
    let refused_votes = call.s.refused_votes.clone();
    call.serve("vote", wire::decode::<openraft::raft::VoteRequest<NodeId>>, |raft, req| async move {
        match refuse_non_voter(&raft, &req, &refused_votes) {
            Some(refusal) => Ok(refusal),
            None => raft.vote(req).await,
        }
    })
    .await
}

async fn snapshot(call: Call) -> Response {
    call.serve("snapshot chunk", wire::decode_snapshot, |raft, req| async move { raft.install_snapshot(req).await })
        .await
}
