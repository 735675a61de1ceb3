//! `GET /v1/status` (this node's view of the cluster) and `GET /metrics` (Prometheus text).

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::ServerState;
use proto::api::{HealthBody, NodeStatus, Role};
use serde::Deserialize;

use super::AppState;

#[derive(Deserialize)]
pub struct StatusQuery {
    #[serde(default)]
    digest: bool,
}

pub fn role_of(s: ServerState) -> Role {
    match s {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

pub fn node_status(s: &AppState, with_digest: bool) -> NodeStatus {
    let m = s.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let learners: Vec<u64> = membership.learner_ids().collect();
    let leader_api = m.current_leader.and_then(|l| membership.get_node(&l).map(|n| n.api.clone()));
    let (users, groups, files) = s.sm.read(|d| d.state.counts());
    let state_digest = with_digest.then(|| s.sm.read(|d| d.state.digest()));
    // A node that is a voter but not leader/candidate reports "follower"; one outside the
    // voters reports "learner", whatever openraft's state says while it catches up.
    let role =
        if m.state == ServerState::Follower && !voters.contains(&s.id) { Role::Learner } else { role_of(m.state) };
    NodeStatus {
        id: s.id,
        api: s.api_addr.clone(),
        role,
        term: m.current_term,
        leader: m.current_leader,
        leader_api,
        last_log_index: m.last_log_index,
        applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        voters,
        learners,
        users,
        groups,
        files,
        state_digest,
    }
}

pub async fn status(State(s): State<AppState>, Query(q): Query<StatusQuery>) -> Response {
    Json(node_status(&s, q.digest)).into_response()
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    let st = node_status(&s, false);
    let storage = crate::metrics::StorageFigures {
        sled_bytes: s.log.size_on_disk_bytes(),
        snapshot_file_bytes: s.sm.snapshot_file_bytes(),
        last_snapshot: s.sm.last_snapshot_build(),
        login_throttle_records: s.throttle.len(),
    };
    let body = s.metrics.render(&st, &storage);
    (StatusCode::OK, [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// `GET /health`: 200 when this node is up and knows a leader that has a quorum; 503 with the
/// reason otherwise (etcd's `/health`).
pub async fn health(State(s): State<AppState>) -> Response {
    let m = s.raft.metrics().borrow().clone();
    let lease_ms = s.config.election_timeout_ms.1;
    let verdict = match m.current_leader {
        None => Err("no leader is known (an election is under way, or this node cannot reach a quorum)".to_string()),
        Some(l) if l == s.id => match m.millis_since_quorum_ack {
            Some(ms) if ms <= lease_ms => Ok(format!("leader, quorum heard {ms} ms ago")),
            Some(ms) => Err(format!("leader without a quorum for {ms} ms")),
            None => Err("leader that has not heard from a quorum yet".to_string()),
        },
        Some(l) => Ok(format!("follower of node {l}")),
    };
    probe_answer(verdict)
}

/// `GET /readyz`: 200 when this node can serve now: as leader, a read-index confirmation
/// succeeds; as follower, it knows a leader and has applied its whole log.
pub async fn readyz(State(s): State<AppState>) -> Response {
    let m = s.raft.metrics().borrow().clone();
    let applied = m.last_applied.map(|l| l.index);
    let verdict = match m.current_leader {
        None => Err("no leader is known".to_string()),
        Some(l) if l == s.id => match s.linearizable().await {
            Ok(()) => Ok("leader, read index confirmed by a quorum".to_string()),
            Err(e) => Err(format!("leader, but reads cannot be confirmed: {e:?}")),
        },
        Some(l) if applied >= m.last_log_index => Ok(format!("follower of node {l}, log applied")),
        Some(l) => Err(format!(
            "follower of node {l}, still applying: {} of {}",
            applied.unwrap_or(0),
            m.last_log_index.unwrap_or(0)
        )),
    };
    probe_answer(verdict)
}

fn probe_answer(verdict: Result<String, String>) -> Response {
    let status = if verdict.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(HealthBody::of(verdict))).into_response()
}
