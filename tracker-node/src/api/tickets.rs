//! Access tickets (proto::ticket): the cluster's public ticket key, and tickets for members.
//!
//! A ticket is issued only after a linearizable read on the leader finds the caller's session
//! open and the caller a member of a group that has the file, so a user who left, was removed
//! or logged out gets no new ticket. Issuing one writes nothing to the log.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proto::api::{TicketKeyResponse, TicketRequest, TicketResponse};
use proto::ticket::{hex_lower, Ticket, TICKET_LIFETIME_MS};
use raft_store::names::{validate_file_name, validate_id};
use raft_store::Refusal;

use super::accounts::peer_key_from;
use super::body::Body;
use super::groups::reader;
use super::{now_ms, ApiResult, AppState};

/// `GET /v1/ticket-key`: the public key sharers check tickets against. Any node answers, from
/// the key file every node of the cluster shares.
pub async fn key(State(s): State<AppState>) -> Response {
    Json(TicketKeyResponse { key: hex_lower(&s.tickets.public_key()) }).into_response()
}

/// `POST /v1/groups/{group}/files/{name}/ticket`: a ticket for the caller, a member, to fetch
/// the file over a channel keyed `peer_key`.
pub async fn issue(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((group, name)): Path<(String, String)>,
    Body(req): Body<TicketRequest>,
) -> Response {
    let r: ApiResult<Response> = async {
        validate_id("group", &group).map_err(Refusal::invalid_name)?;
        validate_file_name(&name).map_err(Refusal::invalid_name)?;
        let peer_key = peer_key_from(&req.peer_key)?;
        let peer_key: [u8; 32] = hex::decode(&peer_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .expect("a validated peer key is 32 bytes of hex");
        // The same read path as the file's details: the leader's read index, then the session
        // and the membership against everything committed before the call.
        let user = reader(&s, &headers).await?;
        let f = s.sm.read(|d| d.state.file(&user, &group, &name))?;
        let expires_at_ms = now_ms() + TICKET_LIFETIME_MS;
        let ticket = Ticket { group, file_sha1: f.meta.sha1.0, user, peer_key, expires_at_ms };
        let bytes = s.tickets.sign(&ticket);
        Ok(Json(TicketResponse { ticket: hex_lower(&bytes), expires_at_ms, file_sha1: f.meta.sha1.to_hex() })
            .into_response())
    }
    .await;
    r.unwrap_or_else(|e| e.into_response())
}
