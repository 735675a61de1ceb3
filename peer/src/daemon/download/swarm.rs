//! The swarm's talk with the tracker, for the download's task (`actor.rs`): the sharer list
//! and the ticket (each renewed one handed to the open connections, which send it to their
//! sharers), as the engine's events. Each refresh runs in a task of its own while the download
//! goes on answering its connections.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::engine::{Engine, Event, Sharer};
use super::messages::TicketRx;
use crate::daemon::standing::Standing;

/// A ticket is renewed when it has less than this left, or half its lifetime if that is less
/// (a tracker may issue shorter tickets: `TRACKER_TICKET_LIFETIME_MS`).
const TICKET_RENEW_BEFORE_MS: u64 = 60_000;

/// When a ticket valid from `issued_at_ms` to `expires_at_ms` is renewed: `TICKET_RENEW_BEFORE_MS`
/// before it expires, or halfway through a shorter lifetime, so that the fresh one reaches every
/// open connection's sharer before the old one runs out.
pub fn renew_at_ms(issued_at_ms: u64, expires_at_ms: u64) -> u64 {
    let lifetime = expires_at_ms.saturating_sub(issued_at_ms);
    expires_at_ms.saturating_sub(TICKET_RENEW_BEFORE_MS.min(lifetime / 2))
}

/// This download's ticket from the tracker: the latest bytes (every open connection holds a
/// receiver and sends each new one to its sharer), and when to renew it.
pub struct HeldTicket {
    tx: tokio::sync::watch::Sender<Arc<Vec<u8>>>,
    pub renew_at_ms: u64,
}

impl HeldTicket {
    pub fn new(bytes: Vec<u8>, renew_at_ms: u64) -> Self {
        let (tx, _) = tokio::sync::watch::channel(Arc::new(bytes));
        HeldTicket { tx, renew_at_ms }
    }

    /// A renewed ticket: the open connections send it on.
    pub fn renew(&mut self, bytes: Vec<u8>, renew_at_ms: u64) {
        self.tx.send_replace(Arc::new(bytes));
        self.renew_at_ms = renew_at_ms;
    }

    pub fn subscribe(&self) -> TicketRx {
        self.tx.subscribe()
    }
}

/// `f`, unless `stop` is cancelled first.
async fn or_stop<F: std::future::Future>(stop: &CancellationToken, f: F) -> Option<F::Output> {
    tokio::select! {
        _ = stop.cancelled() => None,
        r = f => Some(r),
    }
}

/// How long the swarm may wait before its next refresh: the engine's interval, or less when the
/// ticket is due for renewal sooner.
pub fn next_wake_ms(engine: &Engine, ticket: Option<&HeldTicket>) -> u64 {
    let refresh = engine.next_refresh_ms();
    match ticket {
        Some(t) => refresh.min(t.renew_at_ms.saturating_sub(crate::daemon::tickets::now_ms()).max(1)),
        None => refresh,
    }
}

/// What one refresh learned: the engine's event (`Listed`, `ListUnavailable`, `Refused`,
/// `LoggedOut`; its `ticket` flag is the download's to set) and a fresh ticket with when to
/// renew it.
pub struct Refresh {
    pub event: Event,
    pub ticket: Option<(Vec<u8>, u64)>,
}

/// Asks the tracker who shares the file now and, when `ticket_due`, for a fresh ticket. `None`
/// when stopped.
pub async fn refresh(
    st: &Standing,
    stop: &CancellationToken,
    group: &str,
    name: &str,
    ticket_due: bool,
) -> Option<Refresh> {
    let Some(client) = st.session_client() else {
        return Some(Refresh { event: Event::LoggedOut, ticket: None });
    };
    // Who shares the file now (sharers come and go; the list also names other downloaders).
    let listed = match or_stop(stop, client.file_details(group, name)).await? {
        Ok(det) => Some(
            det.sharers
                .into_iter()
                .filter(|s| s.peer_key != st.peer_key_hex)
                .filter_map(|s| Some(Sharer { key: parse_key(&s.peer_key)?, addr: s.peer_addr }))
                .collect::<Vec<_>>(),
        ),
        Err(tracker_client::ClientError::Refused { code, message }) => {
            return Some(Refresh { event: Event::Refused { code: code.to_string(), message }, ticket: None })
        }
        Err(e) => {
            tracing::warn!("cannot refresh sharers of {name}: {e}");
            None
        }
    };
    let mut ticket = None;
    if ticket_due {
        match fresh_ticket(st, &client, stop, group, name).await? {
            Ok(t) => ticket = t,
            Err(event) => return Some(Refresh { event, ticket: None }),
        }
    }
    let event = match listed {
        Some(sharers) => Event::Listed { sharers, ticket: false },
        None => Event::ListUnavailable { ticket: false },
    };
    Some(Refresh { event, ticket })
}

/// The ticket that lets us in at the sharers: a member's, bound to the key this HOME's daemon
/// announced (the tracker issues it for no other), with when to renew it. `Err` is the
/// tracker's refusal; `None` when stopped.
async fn fresh_ticket(
    st: &Standing,
    client: &tracker_client::TrackerClient,
    stop: &CancellationToken,
    group: &str,
    name: &str,
) -> Option<Result<Option<(Vec<u8>, u64)>, Event>> {
    let now = crate::daemon::tickets::now_ms();
    let mut asked = or_stop(stop, client.ticket(group, name, &st.peer_key_hex)).await?;
    if matches!(&asked, Err(tracker_client::ClientError::Refused { code, .. }) if code.as_str() == "not_allowed")
        && !st.announce.announced.load(Ordering::SeqCst)
    {
        // Our announce has not gone through yet (the daemon just started): announce, ask again.
        st.announce().await;
        asked = or_stop(stop, client.ticket(group, name, &st.peer_key_hex)).await?;
    }
    Some(match asked {
        Ok(t) => match hex::decode(&t.ticket) {
            Ok(bytes) => Ok(Some((bytes, renew_at_ms(now, t.expires_at_ms)))),
            Err(_) => {
                tracing::warn!("the tracker's ticket for {name} is not hex");
                Ok(None)
            }
        },
        Err(tracker_client::ClientError::Refused { code, message }) => {
            Err(Event::Refused { code: code.to_string(), message })
        }
        Err(e) => {
            tracing::warn!("cannot get a ticket for {name}: {e}");
            Ok(None)
        }
    })
}

/// A sharer's key as the tracker lists it (64 hex characters); a malformed one is skipped.
fn parse_key(s: &str) -> Option<[u8; 32]> {
    proto::ticket::peer_key_from_hex(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_renewed_a_minute_before_it_expires_or_halfway_through_a_short_one() {
        let five_min = 5 * 60 * 1000;
        assert_eq!(renew_at_ms(1_000, 1_000 + five_min), 1_000 + five_min - 60_000);
        assert_eq!(renew_at_ms(1_000, 1_000 + 4_000), 1_000 + 2_000);
        assert_eq!(renew_at_ms(1_000, 1_000 + 120_000), 1_000 + 60_000);
        // A ticket that came already expired (clock skew) is renewed at once.
        assert_eq!(renew_at_ms(5_000, 4_000), 4_000);
    }
}
