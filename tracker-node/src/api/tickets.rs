//! Access tickets (proto::ticket): the cluster's public ticket key, and tickets for members.
//!
//! A ticket is issued only after a linearizable read on the leader finds the caller's session
//! open, the caller a member of a group that has the file, and the key the ticket is asked for
//! the one the caller's daemon announced (`PUT /v1/peer`): a user who left, was removed or
//! logged out gets no new ticket, and a member cannot get one for someone else's key (which
//! would hand a non-member access). Issuing one writes nothing to the log.
//!
//! A sharer serves a connection only until its ticket expires unless a fresh one arrives on it
//! (docs/PROTOCOL.md, "Tickets while a connection lasts"), so the lifetime is also how long a
//! removed member's open connections last. `TRACKER_TICKET_LIFETIME_MS` shortens it (a test and
//! operations knob, 1 000 to the protocol's `TICKET_LIFETIME_MS`; docs/OPERATIONS.md).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proto::api::{TicketKeyResponse, TicketRequest, TicketResponse};
use proto::ticket::{hex_lower, Ticket, TICKET_LIFETIME_MS};
use raft_store::names::{validate_file_name, validate_id};
use raft_store::{ErrorCode, Refusal};

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
) -> ApiResult<Response> {
    validate_id("group", &group).map_err(Refusal::invalid_name)?;
    validate_file_name(&name).map_err(Refusal::invalid_name)?;
    let peer_key = peer_key_from(&req.peer_key)?;
    let peer_key: [u8; 32] =
        hex::decode(&peer_key).ok().and_then(|b| b.try_into().ok()).expect("a validated peer key is 32 bytes of hex");
    // The same read path as the file's details: the leader's read index, then the session
    // and the membership against everything committed before the call.
    let user = reader(&s, &headers).await?;
    let (f, announced) = s.sm.read(|d| {
        let f = d.state.file(&user, &group, &name);
        (f, d.state.users().get(&user).and_then(|u| u.peer_key.clone()))
    });
    let f = f?;
    check_key(&user, announced.as_deref(), &hex::encode(peer_key))?;
    let expires_at_ms = now_ms() + lifetime_ms();
    let ticket = Ticket { group, file_sha1: f.meta.sha1.0, user, peer_key, expires_at_ms };
    let bytes = s.tickets.sign(&ticket);
    Ok(Json(TicketResponse { ticket: hex_lower(&bytes), expires_at_ms, file_sha1: f.meta.sha1.to_hex() })
        .into_response())
}

/// The environment variable that shortens the ticket lifetime (tests, and operators who want
/// a removal to cut open connections sooner).
pub const LIFETIME_ENV: &str = "TRACKER_TICKET_LIFETIME_MS";
/// The shortest lifetime `TRACKER_TICKET_LIFETIME_MS` may set: a downloader renews a ticket
/// when half of it is left, and its swarm looks at the tracker every 2 s.
pub const MIN_LIFETIME_MS: u64 = 1_000;

/// How long the tickets this node issues are valid: `TRACKER_TICKET_LIFETIME_MS` when set to
/// a value in bounds, else the protocol's `TICKET_LIFETIME_MS` (a bad value is logged once and
/// changes nothing).
fn lifetime_ms() -> u64 {
    static LIFETIME: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIFETIME.get_or_init(|| match std::env::var(LIFETIME_ENV) {
        Err(_) => TICKET_LIFETIME_MS,
        Ok(v) => parse_lifetime_ms(&v).unwrap_or_else(|why| {
            tracing::error!("{LIFETIME_ENV}={v:?} is ignored ({why}); tickets last {TICKET_LIFETIME_MS} ms");
            TICKET_LIFETIME_MS
        }),
    })
}

/// `TRACKER_TICKET_LIFETIME_MS` as given: milliseconds from `MIN_LIFETIME_MS` to
/// `TICKET_LIFETIME_MS` (sharers refuse a ticket that claims to last longer than that).
pub fn parse_lifetime_ms(v: &str) -> Result<u64, String> {
    let ms: u64 = v.trim().parse().map_err(|_| "not a number of milliseconds".to_string())?;
    if !(MIN_LIFETIME_MS..=TICKET_LIFETIME_MS).contains(&ms) {
        return Err(format!("outside {MIN_LIFETIME_MS}..={TICKET_LIFETIME_MS}"));
    }
    Ok(ms)
}

/// A ticket only for the key the caller's daemon announced: any other key (or none announced
/// yet) is `not_allowed`.
pub fn check_key(user: &str, announced: Option<&str>, asked: &str) -> Result<(), Refusal> {
    match announced {
        Some(k) if k == asked => Ok(()),
        Some(_) => Err(Refusal::new(
            ErrorCode::NotAllowed,
            format!(
                "a ticket is issued only for the peer key {user}'s daemon announced; {asked} is not it \
                 (announce it first: PUT /v1/peer)"
            ),
        )),
        None => Err(Refusal::new(
            ErrorCode::NotAllowed,
            format!("{user}'s daemon has announced no peer key yet: announce it first (PUT /v1/peer)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_only_for_the_announced_key() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert!(check_key("bob", Some(&a), &a).is_ok());
        let e = check_key("bob", Some(&a), &b).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotAllowed);
        assert!(e.message.contains(&b), "{}", e.message);
        assert_eq!(check_key("bob", None, &a).unwrap_err().code, ErrorCode::NotAllowed);
    }

    #[test]
    fn the_lifetime_knob_is_bounded() {
        assert_eq!(parse_lifetime_ms("8000"), Ok(8_000));
        assert_eq!(parse_lifetime_ms(&TICKET_LIFETIME_MS.to_string()), Ok(TICKET_LIFETIME_MS));
        assert_eq!(parse_lifetime_ms("1000"), Ok(MIN_LIFETIME_MS));
        for bad in ["999", "0", "", "5s", "-1", &(TICKET_LIFETIME_MS + 1).to_string()] {
            assert!(parse_lifetime_ms(bad).is_err(), "{bad:?}");
        }
    }
}
