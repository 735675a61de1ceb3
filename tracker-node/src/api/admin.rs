//! The admin calls, the operator's only (`auth::check_operator`). `POST /v1/admin/members`:
//! membership changes, on the leader. Adding makes the node a learner first and waits (bounded)
//! until the leader's replication metrics say it has caught up (`catch_up`), then promotes it
//! to voter; a learner that does not catch up in time is taken out again and the add refused.
//! Removing takes a node out of the voters. Either is refused when the voters after it would
//! not include a quorum that answers now (etcd's strict reconfiguration check), and answers
//! within a bound.
//!
//! Why not openraft's `add_learner(.., blocking = true)`: in 0.9 it counts a learner as up to
//! date when it is at most `Config::replication_lag_threshold` entries behind (5000 by default),
//! and a learner that never answered is "behind" by the leader's whole log, so on any log
//! shorter than that a node that was never started passes at once; and it returns success even
//! when its wait fails. The wait here asks more: an answer from the learner, at or past the
//! entry that added it, and at most `CAUGHT_UP_MAX_LAG_ENTRIES` behind.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use proto::api::{ApiErrorCode, MembersRequest, MembersResponse, MembershipAction};
use raft_store::{NodeId, TrackerNode};

use super::body::Body;
use super::listener::Channel;
use super::{auth, ok_json, ApiError, ApiResult, AppState};

/// How far behind the leader's last log index a learner may be and count as caught up, in
/// entries: what a busy leader appends in a few round trips, so the new voter does not hold
/// back commits while it fetches a backlog.
pub const CAUGHT_UP_MAX_LAG_ENTRIES: u64 = 100;
/// How long a membership change waits to be committed.
pub const CHANGE_TIMEOUT_MS: u64 = 10_000;
/// How long the strict reconfiguration check waits for each voter's status.
pub const REACHABLE_PROBE_MS: u64 = 1_000;

fn map_err(e: RaftError<NodeId, ClientWriteError<NodeId, TrackerNode>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ApiError::forward(&f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ApiError::BadRequest(e.to_string()),
        RaftError::Fatal(f) => ApiError::Unavailable(format!("this node stopped: {f}")),
    }
}

/// Waits for a membership future at most `ms`.
async fn bounded<T>(ms: u64, what: &str, f: impl std::future::Future<Output = ApiResult<T>>) -> ApiResult<T> {
    tokio::time::timeout(Duration::from_millis(ms), f).await.unwrap_or_else(|_| {
        Err(ApiError::Unavailable(format!("{what} did not finish within {} s; check `tracker-node status`", ms / 1000)))
    })
}

/// What the leader's metrics say of a learner being added (plain data, for `catch_up`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnerView {
    /// This node still leads (it has replication metrics).
    pub leading: bool,
    /// The learner is still in the membership.
    pub member: bool,
    /// The learner's last log index the leader knows it holds; `None` before it first answered.
    pub matched: Option<u64>,
    /// The leader's last log index.
    pub last_log_index: Option<u64>,
}

/// Where an add's wait for its learner stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    Waiting,
    CaughtUp,
    /// This node no longer leads: the add cannot go on here.
    LostLeadership,
    /// Someone else took the learner out meanwhile.
    Removed,
}

/// Whether the learner added by the entry at `added_at` has caught up: it answered, holds that
/// entry, and is at most `CAUGHT_UP_MAX_LAG_ENTRIES` behind the leader's last log index.
pub fn catch_up(v: &LearnerView, added_at: u64) -> CatchUp {
    if !v.leading {
        return CatchUp::LostLeadership;
    }
    if !v.member {
        return CatchUp::Removed;
    }
    match v.matched {
        Some(m) if m >= added_at && v.last_log_index.unwrap_or(0).saturating_sub(m) <= CAUGHT_UP_MAX_LAG_ENTRIES => {
            CatchUp::CaughtUp
        }
        _ => CatchUp::Waiting,
    }
}

/// The learner's view in the leader's metrics `m`.
fn learner_view(m: &openraft::RaftMetrics<NodeId, TrackerNode>, id: NodeId) -> LearnerView {
    LearnerView {
        leading: m.replication.is_some(),
        member: m.membership_config.membership().get_node(&id).is_some(),
        matched: m.replication.as_ref().and_then(|r| r.get(&id)).and_then(|l| l.as_ref()).map(|l| l.index),
        last_log_index: m.last_log_index,
    }
}

/// Waits (at most `[cluster] members_add_timeout_ms`, 30 s unless set) for learner `id`
/// before the add gives up and takes the learner out again. A node that runs catches up in
/// seconds (a snapshot in 1 MiB chunks, then the log); one that never answers is refused within
/// the bound. A refused add can be run again: the node keeps what it received. Learner `id`, added by the entry at
/// `added_at`, to catch up, on every change of the leader's metrics.
async fn wait_caught_up(s: &AppState, id: NodeId, added_at: u64) -> ApiResult<()> {
    let mut rx = s.raft.metrics();
    let timeout_ms = s.config.members_add_timeout_ms;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let view = learner_view(&rx.borrow_and_update(), id);
        match catch_up(&view, added_at) {
            CatchUp::CaughtUp => return Ok(()),
            CatchUp::LostLeadership => {
                return Err(ApiError::Unavailable(format!(
                    "this node stopped leading while node {id} caught up; run the add again"
                )))
            }
            CatchUp::Removed => {
                return Err(ApiError::Conflict(
                    ApiErrorCode::NotCaughtUp,
                    format!("node {id} was taken out of the membership while it caught up"),
                ))
            }
            CatchUp::Waiting => {}
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ApiError::Unavailable("this node stopped".into())),
            Err(_) => {
                let last = view.last_log_index.unwrap_or(0);
                let has = match view.matched {
                    None => "it never answered the leader".to_string(),
                    Some(m) => format!("it holds the log up to entry {m} of {last}"),
                };
                return Err(ApiError::Conflict(
                    ApiErrorCode::NotCaughtUp,
                    format!(
                        "node {id} did not catch up within {} s ({has}), so it was not made a voter and was \
                         taken out again as a learner; is it running? Start it (tracker-node run --config FILE \
                         --id {id}) and add it again",
                        timeout_ms as f64 / 1000.0
                    ),
                ));
            }
        }
    }
}

/// etcd's strict reconfiguration check: the voters after the change must include a quorum
/// that answers now (this leader counts when it stays a voter), or the change is refused
/// before it is proposed. `answering` holds the voters that answered a status probe.
pub fn keeps_a_quorum(after: &BTreeSet<NodeId>, answering: &BTreeSet<NodeId>) -> Result<(), String> {
    let reachable: Vec<NodeId> = after.intersection(answering).copied().collect();
    let quorum = after.len() / 2 + 1;
    if after.is_empty() {
        return Err("it would leave the cluster without any voter".into());
    }
    if reachable.len() < quorum {
        let ids = |s: &mut dyn Iterator<Item = &NodeId>| s.map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        return Err(format!(
            "after it the voters would be {{{}}}, of which only {{{}}} answer now: {} of {} needed for a quorum",
            ids(&mut after.iter()),
            ids(&mut reachable.iter()),
            reachable.len(),
            quorum
        ));
    }
    Ok(())
}

/// The voters of `after` that answer `GET /v1/status` within `REACHABLE_PROBE_MS` (this node
/// answers by definition).
async fn answering(s: &AppState, after: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
    let membership = s.raft.metrics().borrow().membership_config.clone();
    let mut asks = tokio::task::JoinSet::new();
    let mut answering = BTreeSet::from([s.id]);
    for (id, node) in membership.membership().nodes() {
        if *id == s.id || !after.contains(id) {
            continue;
        }
        let (id, http, api) = (*id, s.nodes_http.clone(), node.api.clone());
        asks.spawn(async move {
            let url = http.url(api, "/v1/status");
            let ok = http.client.get(url).timeout(Duration::from_millis(REACHABLE_PROBE_MS)).send().await;
            (id, ok.is_ok_and(|r| r.status().is_success()))
        });
    }
    while let Some(r) = asks.join_next().await {
        if let Ok((id, true)) = r {
            answering.insert(id);
        }
    }
    answering
}

async fn check_strict(s: &AppState, after: BTreeSet<NodeId>, what: &str) -> ApiResult<()> {
    let answering = answering(s, &after).await;
    keeps_a_quorum(&after, &answering)
        .map_err(|why| ApiError::Conflict(ApiErrorCode::WouldLoseQuorum, format!("refused to {what}: {why}")))
}

pub async fn members(
    State(s): State<AppState>,
    Extension(channel): Extension<Channel>,
    headers: HeaderMap,
    Body(req): Body<MembersRequest>,
) -> ApiResult<Response> {
    auth::check_operator(channel, s.config.secret.as_deref(), &headers)?;
    s.leader_or_redirect()?;
    let voters: BTreeSet<NodeId> = s.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    let resp = match &req.action {
        MembershipAction::Add => {
            let node = TrackerNode { api: req.api, raft: req.raft };
            // A learner first: it receives the log but has no vote until it caught up. The
            // learner entry itself is committed by the voters alone.
            let added = bounded(CHANGE_TIMEOUT_MS, "adding the learner", async {
                s.raft.add_learner(req.id, node, false).await.map_err(map_err)
            })
            .await?;
            if let Err(e) = wait_caught_up(&s, req.id, added.log_id.index).await {
                if !voters.contains(&req.id) {
                    // Do not leave a learner behind that never caught up.
                    let removed = bounded(CHANGE_TIMEOUT_MS, "removing the learner", async {
                        let gone = ChangeMembers::RemoveNodes(BTreeSet::from([req.id]));
                        s.raft.change_membership(gone, false).await.map_err(map_err)
                    })
                    .await;
                    if let Err(r) = removed {
                        tracing::warn!(id = req.id, "a learner that did not catch up is still listed: {r:?}");
                    }
                }
                return Err(e);
            }
            let mut after = voters.clone();
            after.insert(req.id);
            check_strict(&s, after, &format!("add node {}", req.id)).await?;
            bounded(CHANGE_TIMEOUT_MS, "the change", async {
                let add = ChangeMembers::AddVoterIds(BTreeSet::from([req.id]));
                s.raft.change_membership(add, false).await.map_err(map_err)
            })
            .await?
        }
        MembershipAction::Remove => {
            let mut after = voters.clone();
            after.remove(&req.id);
            check_strict(&s, after, &format!("remove node {}", req.id)).await?;
            bounded(CHANGE_TIMEOUT_MS, "the change", async {
                let remove = ChangeMembers::RemoveVoters(BTreeSet::from([req.id]));
                s.raft.change_membership(remove, false).await.map_err(map_err)
            })
            .await?
        }
        MembershipAction::Other(other) => {
            return Err(ApiError::BadRequest(format!("action must be add or remove, not {other:?}")))
        }
    };
    let voters: Vec<u64> = resp.membership.as_ref().map(|m| m.voter_ids().collect()).unwrap_or_default();
    Ok(ok_json(MembersResponse { id: req.id, voters }))
}

/// `GET /v1/admin/snapshot`: the leader's applied state as a snapshot file (the format of
/// `current.snap`), after a read index confirms it holds everything committed before the call;
/// for `tracker-node snapshot save`. The operator's only (`auth::check_operator`). The index is in
/// `x-snapshot-index`.
pub async fn snapshot(
    State(s): State<AppState>,
    Extension(channel): Extension<Channel>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    auth::check_operator(channel, s.config.secret.as_deref(), &headers)?;
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

/// The header of `GET /v1/admin/snapshot` that carries the snapshot's log index.
pub const SNAPSHOT_INDEX_HEADER: &str = "x-snapshot-index";

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn view(matched: Option<u64>, last: u64) -> LearnerView {
        LearnerView { leading: true, member: true, matched, last_log_index: Some(last) }
    }

    #[test]
    fn a_learner_counts_as_caught_up_only_once_it_answered_near_the_leaders_log() {
        // Never answered: waiting, however short the log (openraft's own check passed this).
        assert_eq!(catch_up(&view(None, 3), 3), CatchUp::Waiting);
        assert_eq!(catch_up(&view(None, 0), 0), CatchUp::Waiting);
        // Answered, but not yet holding the entry that added it.
        assert_eq!(catch_up(&view(Some(2), 3), 3), CatchUp::Waiting);
        // Holding it and close enough.
        assert_eq!(catch_up(&view(Some(3), 3), 3), CatchUp::CaughtUp);
        assert_eq!(catch_up(&view(Some(900), 900 + CAUGHT_UP_MAX_LAG_ENTRIES), 3), CatchUp::CaughtUp);
        // Too far behind a busy leader.
        assert_eq!(catch_up(&view(Some(900), 901 + CAUGHT_UP_MAX_LAG_ENTRIES), 3), CatchUp::Waiting);
        // The add cannot go on.
        let lost = LearnerView { leading: false, ..view(Some(3), 3) };
        assert_eq!(catch_up(&lost, 3), CatchUp::LostLeadership);
        let gone = LearnerView { member: false, ..view(None, 3) };
        assert_eq!(catch_up(&gone, 3), CatchUp::Removed);
    }

    #[test]
    fn a_change_must_leave_a_quorum_that_answers() {
        // Three voters, all up: removing one leaves 2 of 2.
        assert!(keeps_a_quorum(&set(&[1, 2]), &set(&[1, 2, 3])).is_ok());
        // Node 3 is down: removing node 2 would leave {1, 3} with 1 answering.
        let e = keeps_a_quorum(&set(&[1, 3]), &set(&[1])).unwrap_err();
        assert!(e.contains("1 of 2 needed"), "{e}");
        // Adding a fourth while one of three is down: 3 of 4 answer, a quorum is 3.
        assert!(keeps_a_quorum(&set(&[1, 2, 3, 4]), &set(&[1, 2, 4])).is_ok());
        // Adding two unreachable voters to three: 3 of 5 is still a quorum, a third is not.
        assert!(keeps_a_quorum(&set(&[1, 2, 3, 8, 9]), &set(&[1, 2, 3])).is_ok());
        assert!(keeps_a_quorum(&set(&[1, 2, 3, 7, 8, 9]), &set(&[1, 2, 3])).is_err());
        assert!(keeps_a_quorum(&set(&[]), &set(&[1])).is_err());
    }
}
