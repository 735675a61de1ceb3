//! One download's swarm, the I/O shell around `engine.rs`: it refreshes the sharer list and
//! the ticket from the tracker (handing each renewed one to the open connections, which send it
//! to their sharers), opens the connections the engine names (`conn.rs`), feeds back
//! how they end and what was verified, and finishes or fails the download as the engine
//! decides. It stops (connections closed, record untouched) when the download's stop token is
//! cancelled: pause, cancel, daemon shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conn;
use super::engine::{Action, ConnEnd, Engine, Event, Failure, Sharer};
use super::{finish_failed, Live};
use crate::daemon::shares::Share;
use crate::daemon::Daemon;

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
struct HeldTicket {
    tx: tokio::sync::watch::Sender<Arc<Vec<u8>>>,
    renew_at_ms: u64,
}

/// How a swarm ends.
enum Outcome {
    /// Every piece is verified.
    Complete,
    /// Paused, cancelled or the daemon is stopping: the record is the caller's business.
    Stopped,
    /// This HOME has no session any more (logged out, or the session ended at the tracker):
    /// paused until the next login, never failed for it.
    LoggedOut,
    Failed(Failure),
}

/// Most time the connections of a stopping swarm get to end.
const DRAIN_MS: u64 = 5_000;
/// How often the rate meter is sampled.
const RATE_SAMPLE_MS: u64 = 500;

/// `f`, unless `stop` is cancelled first.
async fn or_stop<F: std::future::Future>(stop: &CancellationToken, f: F) -> Option<F::Output> {
    tokio::select! {
        _ = stop.cancelled() => None,
        r = f => Some(r),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Samples the download's byte count for `rate_bytes_per_s` while the swarm runs.
async fn sample_rate(live: Arc<Live>) {
    loop {
        let bytes = live.bytes_done.load(Ordering::Relaxed);
        live.rate.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now(), bytes);
        tokio::time::sleep(Duration::from_millis(RATE_SAMPLE_MS)).await;
    }
}

/// Runs the download until it is complete (then finishes it), fails, or its stop token (see
/// `Live::stop`: pause, cancel, daemon shutdown) is cancelled. Every connection has ended when
/// this returns.
pub async fn run(d: Arc<Daemon>, live: Arc<Live>) {
    let stop = live.stop.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // The connections stop with the swarm, whatever ends it.
    let conns = stop.child_token();
    let (tx, mut rx) = mpsc::channel::<(String, ConnEnd)>(64);
    let _sampler = AbortOnDrop(tokio::spawn(sample_rate(live.clone())));
    let started = Instant::now();
    let (group, name) = {
        let r = live.record.lock().unwrap_or_else(|p| p.into_inner());
        (r.group.clone(), r.name.clone())
    };
    let done = live.picker.lock().unwrap_or_else(|p| p.into_inner()).done_count();
    let mut engine = Engine::new(&group, &name, done, 0);
    let outcome = swarm(&d, &live, &stop, &conns, &tx, &mut rx, &mut engine, started).await;
    conns.cancel();
    let mut open = engine.connected();
    let drain = async {
        while open > 0 {
            match rx.recv().await {
                Some(_) => open -= 1,
                None => break,
            }
        }
    };
    if tokio::time::timeout(Duration::from_millis(DRAIN_MS), drain).await.is_err() {
        tracing::warn!(left = open, "connections of a stopped download did not end in time");
    }
    live.peers.store(0, Ordering::Relaxed);
    match outcome {
        Outcome::Stopped => {}
        Outcome::LoggedOut => super::pause_logged_out(&d, &live),
        Outcome::Failed(e) => finish_failed(&d, &live, &e.to_string()),
        Outcome::Complete => {
            let pieces_ms = started.elapsed().as_millis();
            live.finishing.store(true, Ordering::SeqCst);
            finish_complete(&d, &live).await;
            live.finishing.store(false, Ordering::SeqCst);
            let name = live.record.lock().unwrap_or_else(|p| p.into_inner()).name.clone();
            tracing::info!(%name, pieces_ms, total_ms = started.elapsed().as_millis() as u64, "download finished");
        }
    }
}

/// Milliseconds since the swarm started: the engine's clock.
fn ms_since(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

/// Verified pieces and the total, as the engine's `Progress` event.
fn progress(live: &Live) -> Event {
    let p = live.picker.lock().unwrap_or_else(|p| p.into_inner());
    Event::Progress { done: p.done_count(), total: p.len() }
}

#[allow(clippy::too_many_arguments)]
async fn swarm(
    d: &Arc<Daemon>,
    live: &Arc<Live>,
    stop: &CancellationToken,
    conns: &CancellationToken,
    tx: &mpsc::Sender<(String, ConnEnd)>,
    rx: &mut mpsc::Receiver<(String, ConnEnd)>,
    engine: &mut Engine,
    started: Instant,
) -> Outcome {
    let mut ticket: Option<HeldTicket> = None;
    let (group, name) = {
        let r = live.record.lock().unwrap_or_else(|p| p.into_inner());
        (r.group.clone(), r.name.clone())
    };
    // Verified pieces when each open connection started: whether it brought any when it ends.
    let mut done_at_connect: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut pending: Vec<Action> = Vec::new();
    loop {
        if stop.is_cancelled() {
            return Outcome::Stopped;
        }
        pending.extend(engine.handle(progress(live), ms_since(started)));
        if pending.is_empty() {
            let event = refresh(d, stop, &group, &name, &mut ticket).await;
            let Some(event) = event else { return Outcome::Stopped };
            if let Event::LoggedOut = event {
                return Outcome::LoggedOut;
            }
            pending.extend(engine.handle(event, ms_since(started)));
        }
        for action in pending.drain(..) {
            match action {
                Action::Complete => {
                    // Marked before the connections are drained: a pause or cancel arriving now
                    // finds a download that is about to complete.
                    live.finishing.store(true, Ordering::SeqCst);
                    return Outcome::Complete;
                }
                Action::Fail(f) => return Outcome::Failed(f),
                Action::Stop => return Outcome::Stopped,
                Action::Connect(sharer) => {
                    let Some(held) = ticket.as_ref() else {
                        // The engine connects only with a ticket; should it not, the
                        // connection ends at once, as a failed one.
                        let _ = tx.try_send((sharer.addr, ConnEnd::Failed("no ticket from the tracker".into())));
                        continue;
                    };
                    tracing::info!(peer = %sharer.addr, "connecting to sharer");
                    done_at_connect.insert(
                        sharer.addr.clone(),
                        live.picker.lock().unwrap_or_else(|p| p.into_inner()).done_count(),
                    );
                    let (d2, l2, tx2, s2) = (d.clone(), live.clone(), tx.clone(), conns.clone());
                    let t = held.tx.subscribe();
                    tokio::spawn(async move {
                        let end = tokio::select! {
                            e = conn::run(&d2, &l2, &sharer, t) => e,
                            _ = s2.cancelled() => ConnEnd::Stopped,
                        };
                        let _ = tx2.send((sharer.addr, end)).await;
                    });
                }
            }
        }
        live.peers.store(engine.connected(), Ordering::Relaxed);
        // Wait for a connection to end, or for the next refresh.
        tokio::select! {
            _ = stop.cancelled() => return Outcome::Stopped,
            Some((addr, end)) = rx.recv() => {
                let done = live.picker.lock().unwrap_or_else(|p| p.into_inner()).done_count();
                let progressed = done_at_connect.remove(&addr).is_some_and(|at| done > at);
                pending.extend(engine.handle(Event::ConnEnded { addr, end, progressed }, ms_since(started)));
                pending.extend(engine.handle(progress(live), ms_since(started)));
                live.peers.store(engine.connected(), Ordering::Relaxed);
                // Other endings are taken without waiting for the refresh timer; a connection
                // that ended asks for a refresh now (to reconnect, or to fail).
                if pending.is_empty() {
                    continue;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(next_wake_ms(engine, ticket.as_ref()))) => {}
        }
    }
}

/// How long the swarm may wait before its next refresh: the engine's interval, or less when the
/// ticket is due for renewal sooner.
fn next_wake_ms(engine: &Engine, ticket: Option<&HeldTicket>) -> u64 {
    let refresh = engine.next_refresh_ms();
    match ticket {
        Some(t) => refresh.min(t.renew_at_ms.saturating_sub(crate::daemon::tickets::now_ms()).max(1)),
        None => refresh,
    }
}

/// Asks the tracker who shares the file now, renewing the ticket when it runs low: the
/// engine's `Listed` (or `ListUnavailable`, `Refused`, `LoggedOut`) event. `None` when stopped.
async fn refresh(
    d: &Arc<Daemon>,
    stop: &CancellationToken,
    group: &str,
    name: &str,
    ticket: &mut Option<HeldTicket>,
) -> Option<Event> {
    let Some(client) = d.session_client() else {
        return Some(Event::LoggedOut);
    };
    // Who shares the file now (sharers come and go; the list also names other downloaders).
    let listed = match or_stop(stop, client.file_details(group, name)).await? {
        Ok(det) => Some(
            det.sharers
                .into_iter()
                .filter(|s| s.peer_key != d.identity.public_hex())
                .filter_map(|s| Some(Sharer { key: parse_key(&s.peer_key)?, addr: s.peer_addr }))
                .collect::<Vec<_>>(),
        ),
        Err(tracker_client::ClientError::Refused { code, message }) => {
            return Some(Event::Refused { code: code.to_string(), message })
        }
        Err(e) => {
            tracing::warn!("cannot refresh sharers of {name}: {e}");
            None
        }
    };
    // The ticket that lets us in at those sharers: a member's, bound to the key this HOME's
    // daemon announced (the tracker issues it for no other).
    let now = crate::daemon::tickets::now_ms();
    if ticket.as_ref().map_or(true, |t| now >= t.renew_at_ms) {
        let mut asked = or_stop(stop, client.ticket(group, name, &d.identity.public_hex())).await?;
        if matches!(&asked, Err(tracker_client::ClientError::Refused { code, .. }) if code == "not_allowed")
            && !d.announce.announced.load(Ordering::SeqCst)
        {
            // Our announce has not gone through yet (the daemon just started): announce, ask again.
            d.announce().await;
            asked = or_stop(stop, client.ticket(group, name, &d.identity.public_hex())).await?;
        }
        match asked {
            Ok(t) => match hex::decode(&t.ticket) {
                Ok(bytes) => {
                    let renew_at_ms = renew_at_ms(now, t.expires_at_ms);
                    match ticket {
                        Some(held) => {
                            held.tx.send_replace(Arc::new(bytes));
                            held.renew_at_ms = renew_at_ms;
                        }
                        None => {
                            let (tx, _) = tokio::sync::watch::channel(Arc::new(bytes));
                            *ticket = Some(HeldTicket { tx, renew_at_ms });
                        }
                    }
                }
                Err(_) => tracing::warn!("the tracker's ticket for {name} is not hex"),
            },
            Err(tracker_client::ClientError::Refused { code, message }) => {
                return Some(Event::Refused { code: code.to_string(), message })
            }
            Err(e) => tracing::warn!("cannot get a ticket for {name}: {e}"),
        }
    }
    let has_ticket = ticket.is_some();
    Some(match listed {
        Some(sharers) => Event::Listed { sharers, ticket: has_ticket },
        None => Event::ListUnavailable { ticket: has_ticket },
    })
}

/// A sharer's key as the tracker lists it (64 hex characters); a malformed one is skipped.
fn parse_key(s: &str) -> Option<[u8; 32]> {
    proto::ticket::peer_key_from_hex(s).ok()
}

/// Every piece is verified: check the whole file, move it into place, share it.
async fn finish_complete(d: &Arc<Daemon>, live: &Arc<Live>) {
    let record = live.record.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let part = live.part.lock().unwrap_or_else(|p| p.into_inner()).take();
    // Whole-file SHA-1, then into place without replacing anything unless forced (see mod.rs).
    let checked = {
        let record = record.clone();
        tokio::task::spawn_blocking(move || super::place_finished(part, &record))
    }
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = checked {
        finish_failed(d, live, &Failure::Io(e).to_string());
        return;
    }
    d.shares.add(Share {
        group: record.group.clone(),
        name: record.name.clone(),
        path: record.dest.clone(),
        size: record.meta.size,
        sha1: record.meta.sha1.clone(),
        piece_list_sha1: Some(record.meta.piece_list_sha1.clone()),
    });
    {
        let mut r = live.record.lock().unwrap_or_else(|p| p.into_inner());
        r.state = crate::control::DownloadState::Complete;
        r.error = None;
    }
    live.bytes_done.store(record.meta.size, std::sync::atomic::Ordering::Relaxed);
    d.downloads.save();
    tracing::info!(name = %record.name, group = %record.group, dest = %record.dest, "download complete");
    if let Some(c) = d.session_client() {
        if let Err(e) = c.upload(&record.group, record.meta.clone(), &d.peer_addr, &d.identity.public_hex()).await {
            tracing::warn!("cannot register as a sharer of {}: {e}", record.name);
        }
    }
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
