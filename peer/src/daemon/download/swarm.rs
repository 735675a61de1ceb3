//! One download's swarm: keeps connections to several sharers, refreshes the sharer list
//! from the tracker, bans peers that send corrupt pieces or a wrong piece list, and finishes or
//! fails the download. It stops (connections closed, record untouched) when the download's stop
//! token is cancelled: pause, cancel, daemon shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conn::{self, ConnEnd, Sharer};
use super::{finish_failed, Live};
use crate::daemon::shares::Share;
use crate::daemon::Daemon;

/// Most sharers one download talks to at once.
pub const MAX_PEERS_PER_DOWNLOAD: usize = 8;
/// How often the sharer list is refreshed from the tracker while downloading.
const REFRESH_MS: u64 = 2_000;
/// A download that makes no progress for this long, with no sharer answering, fails.
const NO_PROGRESS_TIMEOUT_MS: u64 = 30_000;
/// Refreshes in a row that list no usable sharer before the download fails with no_peers.
const EMPTY_REFRESHES_BEFORE_NO_PEERS: u32 = 3;
/// Pause before reconnecting to a sharer whose connection failed (doubles per failure).
const RECONNECT_BACKOFF_MS: u64 = 250;
/// Failed connections in a row (refused, timed out, dropped) after which a sharer's address is
/// not tried again in this download.
const MAX_FAILURES_PER_SHARER: u32 = 6;
/// A ticket is renewed when it has less than this left.
const TICKET_RENEW_BEFORE_MS: u64 = 60_000;

/// This download's ticket from the tracker: its bytes and when it expires.
struct HeldTicket {
    bytes: Arc<Vec<u8>>,
    expires_at_ms: u64,
}

/// How a swarm ends.
enum Outcome {
    /// Every piece is verified.
    Complete,
    /// Paused, cancelled or the daemon is stopping: the record is the caller's business.
    Stopped,
    Failed(String),
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
    let mut connected: HashSet<String> = HashSet::new();
    let _sampler = AbortOnDrop(tokio::spawn(sample_rate(live.clone())));
    let started = Instant::now();
    let outcome = swarm(&d, &live, &stop, &conns, &tx, &mut rx, &mut connected).await;
    conns.cancel();
    let drain = async {
        while !connected.is_empty() {
            match rx.recv().await {
                Some((addr, _)) => {
                    connected.remove(&addr);
                }
                None => break,
            }
        }
    };
    if tokio::time::timeout(Duration::from_millis(DRAIN_MS), drain).await.is_err() {
        tracing::warn!(left = connected.len(), "connections of a stopped download did not end in time");
    }
    live.peers.store(0, Ordering::Relaxed);
    match outcome {
        Outcome::Stopped => {}
        Outcome::Failed(e) => finish_failed(&d, &live, &e),
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

#[allow(clippy::too_many_arguments)]
async fn swarm(
    d: &Arc<Daemon>,
    live: &Arc<Live>,
    stop: &CancellationToken,
    conns: &CancellationToken,
    tx: &mpsc::Sender<(String, ConnEnd)>,
    rx: &mut mpsc::Receiver<(String, ConnEnd)>,
    connected: &mut HashSet<String>,
) -> Outcome {
    let mut ticket: Option<HeldTicket> = None;
    let mut banned: HashMap<String, Ban> = HashMap::new();
    let mut failures: HashMap<String, (u32, Instant)> = HashMap::new();
    let mut empty_refreshes = 0u32;
    let mut last_progress = Instant::now();
    let mut last_done = live.picker.lock().unwrap_or_else(|p| p.into_inner()).done_count();
    let (group, name) = {
        let r = live.record.lock().unwrap_or_else(|p| p.into_inner());
        (r.group.clone(), r.name.clone())
    };
    let mut last_error = String::new();
    loop {
        if stop.is_cancelled() {
            return Outcome::Stopped;
        }
        live.peers.store(connected.len(), Ordering::Relaxed);
        let done = live.picker.lock().unwrap_or_else(|p| p.into_inner()).done_count();
        if done != last_done {
            last_done = done;
            last_progress = Instant::now();
        }
        if live.picker.lock().unwrap_or_else(|p| p.into_inner()).is_complete() {
            // Marked before the connections are drained: a pause or cancel arriving now finds
            // a download that is about to complete.
            live.finishing.store(true, Ordering::SeqCst);
            return Outcome::Complete;
        }
        // Who shares the file now (sharers come and go; the list also names other downloaders).
        let Some(client) = d.session_client() else {
            return Outcome::Failed("unauthenticated: logged out during the download".into());
        };
        let Some(details) = or_stop(stop, client.file_details(&group, &name)).await else {
            return Outcome::Stopped;
        };
        let sharers: Vec<Sharer> = match details {
            Ok(det) => det
                .sharers
                .into_iter()
                .filter(|s| s.peer_key != d.identity.public_hex())
                .filter_map(|s| Some(Sharer { key: parse_key(&s.peer_key)?, addr: s.peer_addr }))
                .collect(),
            Err(tracker_client::ClientError::Refused { code, message }) => {
                return Outcome::Failed(format!("{code}: {message}"));
            }
            Err(e) => {
                tracing::warn!("cannot refresh sharers of {name}: {e}");
                Vec::new()
            }
        };
        // The ticket that lets us in at those sharers: a member's, bound to this HOME's key.
        let now = crate::daemon::tickets::now_ms();
        if ticket.as_ref().map_or(true, |t| t.expires_at_ms < now + TICKET_RENEW_BEFORE_MS) {
            let Some(issued) = or_stop(stop, client.ticket(&group, &name, &d.identity.public_hex())).await else {
                return Outcome::Stopped;
            };
            match issued {
                Ok(t) => match hex::decode(&t.ticket) {
                    Ok(bytes) => ticket = Some(HeldTicket { bytes: Arc::new(bytes), expires_at_ms: t.expires_at_ms }),
                    Err(_) => tracing::warn!("the tracker's ticket for {name} is not hex"),
                },
                Err(tracker_client::ClientError::Refused { code, message }) => {
                    return Outcome::Failed(format!("{code}: {message}"));
                }
                Err(e) => tracing::warn!("cannot get a ticket for {name}: {e}"),
            }
        }
        let usable: Vec<&Sharer> = sharers.iter().filter(|s| !banned.contains_key(&s.addr)).collect();
        if usable.is_empty() && connected.is_empty() {
            empty_refreshes += 1;
            if !banned.is_empty() && sharers.iter().all(|s| banned.contains_key(&s.addr)) {
                return Outcome::Failed(all_banned_message(&banned));
            }
            if empty_refreshes >= EMPTY_REFRESHES_BEFORE_NO_PEERS {
                return Outcome::Failed(format!("no_peers: nobody shares {name} in {group} any more"));
            }
        } else {
            empty_refreshes = 0;
        }
        let Some(held) = ticket.as_ref() else {
            // No ticket yet (the tracker is busy electing): the next round asks again.
            tokio::select! {
                _ = stop.cancelled() => return Outcome::Stopped,
                _ = tokio::time::sleep(Duration::from_millis(RECONNECT_BACKOFF_MS)) => continue,
            }
        };
        for sharer in usable {
            let addr = &sharer.addr;
            if connected.len() >= MAX_PEERS_PER_DOWNLOAD || connected.contains(addr) {
                continue;
            }
            if let Some((n, at)) = failures.get(addr) {
                let wait = RECONNECT_BACKOFF_MS.saturating_mul(1 << (*n).min(5));
                if at.elapsed() < Duration::from_millis(wait) {
                    continue;
                }
            }
            connected.insert(addr.clone());
            tracing::info!(peer = %addr, "connecting to sharer");
            let (d2, l2, tx2, s2) = (d.clone(), live.clone(), tx.clone(), conns.clone());
            let (sharer, t) = (sharer.clone(), held.bytes.clone());
            tokio::spawn(async move {
                let end = tokio::select! {
                    e = conn::run(&d2, &l2, &sharer, &t) => e,
                    _ = s2.cancelled() => ConnEnd::Stopped,
                };
                let _ = tx2.send((sharer.addr, end)).await;
            });
        }
        live.peers.store(connected.len(), Ordering::Relaxed);
        if connected.is_empty() && last_progress.elapsed() > Duration::from_millis(NO_PROGRESS_TIMEOUT_MS) {
            return Outcome::Failed(format!(
                "no sharer answered for {} s ({last_error})",
                NO_PROGRESS_TIMEOUT_MS / 1000
            ));
        }
        // Wait for a connection to end, or for the next refresh.
        let wait = if connected.is_empty() { RECONNECT_BACKOFF_MS } else { REFRESH_MS };
        tokio::select! {
            _ = stop.cancelled() => return Outcome::Stopped,
            Some((addr, end)) = rx.recv() => {
                connected.remove(&addr);
                match end {
                    ConnEnd::Done => {}
                    ConnEnd::Stopped => return Outcome::Stopped,
                    ConnEnd::BadPiece(i) => {
                        tracing::warn!(peer = %addr, piece = i, "piece failed SHA-1: dropping this peer for this download");
                        banned.insert(addr, Ban::Piece(i));
                    }
                    ConnEnd::BadPieceList(why) => {
                        tracing::warn!(peer = %addr, "piece list did not match ({why}): dropping this peer for this download");
                        banned.insert(addr, Ban::List(why));
                    }
                    ConnEnd::WrongKey(why) => {
                        tracing::warn!(peer = %addr, "{why}: not connecting to this address again for this download");
                        banned.insert(addr, Ban::WrongKey(why));
                    }
                    ConnEnd::Busy(why) => {
                        // Turned away for now: back off without counting it as a failure.
                        tracing::info!(peer = %addr, "sharer is busy: {why}");
                        let f = failures.entry(addr).or_insert((0, Instant::now()));
                        f.1 = Instant::now();
                    }
                    ConnEnd::Failed(e) => {
                        tracing::info!(peer = %addr, "connection ended: {e}");
                        last_error = format!("{addr}: {e}");
                        let progressed = live.picker.lock().unwrap_or_else(|p| p.into_inner()).done_count() != last_done;
                        let f = failures.entry(addr.clone()).or_insert((0, Instant::now()));
                        // A connection that brought pieces starts the count again.
                        f.0 = if progressed { 1 } else { f.0 + 1 };
                        f.1 = Instant::now();
                        if f.0 >= MAX_FAILURES_PER_SHARER {
                            tracing::warn!(peer = %addr, failures = f.0, "giving up on this sharer for this download");
                            banned.insert(addr, Ban::Unreachable(e));
                        }
                    }
                }
                // Drain other endings without waiting for the refresh timer.
                continue;
            }
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
}

/// Why a sharer is dropped for the rest of a download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ban {
    /// This piece failed its SHA-1.
    Piece(u32),
    /// The piece list it sent was wrong, and how.
    List(String),
    /// It proved another key than the tracker lists for it.
    WrongKey(String),
    /// It failed `MAX_FAILURES_PER_SHARER` connections in a row; the last error.
    Unreachable(String),
}

/// A sharer's key as the tracker lists it (64 hex characters); a malformed one is skipped.
fn parse_key(s: &str) -> Option<[u8; 32]> {
    proto::ticket::peer_key_from_hex(s).ok()
}

/// The failure of a download whose every sharer was banned, naming each and why.
fn all_banned_message(banned: &HashMap<String, Ban>) -> String {
    let mut why: Vec<String> = banned
        .iter()
        .map(|(a, b)| match b {
            Ban::Piece(i) => format!("{a}: piece {i} failed SHA-1"),
            Ban::List(e) | Ban::WrongKey(e) => format!("{a}: {e}"),
            Ban::Unreachable(e) => format!("{a}: unreachable ({e})"),
        })
        .collect();
    why.sort();
    if banned.values().all(|b| matches!(b, Ban::List(_))) {
        format!("the piece list did not match the tracker's piece_list_sha1 at any sharer ({})", why.join("; "))
    } else {
        if banned.values().any(|b| matches!(b, Ban::Piece(_))) {
            format!("every sharer sent data that failed verification ({})", why.join("; "))
        } else {
            format!("no sharer could be used ({})", why.join("; "))
        }
    }
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
        finish_failed(d, live, &e);
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
        r.state = "complete".into();
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
    fn the_failure_names_every_sharer_and_the_cause() {
        let mut banned = HashMap::new();
        banned.insert(
            "127.0.0.1:2".to_string(),
            Ban::List("it sent a piece list of 3 hashes for a file of 4 pieces".into()),
        );
        banned.insert(
            "127.0.0.1:1".to_string(),
            Ban::List("its piece list hashes to aa, the tracker's piece_list_sha1 is bb".into()),
        );
        let m = all_banned_message(&banned);
        assert!(m.starts_with("the piece list did not match"), "{m}");
        assert!(m.find("127.0.0.1:1").unwrap() < m.find("127.0.0.1:2").unwrap(), "sorted: {m}");
        banned.insert("127.0.0.1:3".to_string(), Ban::Piece(7));
        let m = all_banned_message(&banned);
        assert!(m.starts_with("every sharer sent data that failed verification"), "{m}");
        assert!(m.contains("127.0.0.1:3: piece 7 failed SHA-1") && m.contains("piece list"), "{m}");
    }
}
