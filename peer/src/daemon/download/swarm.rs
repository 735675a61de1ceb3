//! One download's swarm: keeps connections to several sharers, refreshes the sharer list
//! from the tracker, bans peers that send corrupt pieces or a wrong piece list, and finishes or
//! fails the download.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::conn::{self, ConnEnd};
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

pub async fn run(d: Arc<Daemon>, live: Arc<Live>) {
    let (tx, mut rx) = mpsc::channel::<(String, ConnEnd)>(64);
    let mut connected: HashSet<String> = HashSet::new();
    let mut banned: HashMap<String, Ban> = HashMap::new();
    let mut failures: HashMap<String, (u32, Instant)> = HashMap::new();
    let mut empty_refreshes = 0u32;
    let mut last_progress = Instant::now();
    let mut last_done = live.picker.lock().unwrap_or_else(|p| p.into_inner()).done_count();
    let (group, name) = {
        let r = live.record.lock().unwrap_or_else(|p| p.into_inner());
        (r.group.clone(), r.name.clone())
    };
    let stop = d.shutdown.child_token();
    let mut last_error = String::new();
    let started = Instant::now();
    loop {
        let done = live.picker.lock().unwrap_or_else(|p| p.into_inner()).done_count();
        if done != last_done {
            last_done = done;
            last_progress = Instant::now();
        }
        if live.picker.lock().unwrap_or_else(|p| p.into_inner()).is_complete() {
            break;
        }
        // Who shares the file now (sharers come and go; the list also names other downloaders).
        let sharers: Vec<String> = match d.session_client() {
            Some(c) => match c.file_details(&group, &name).await {
                Ok(det) => det.sharers.into_iter().map(|s| s.peer_addr).filter(|a| *a != d.peer_addr).collect(),
                Err(tracker_client::ClientError::Refused { code, message }) => {
                    finish_failed(&d, &live, &format!("{code}: {message}"));
                    return;
                }
                Err(e) => {
                    tracing::warn!("cannot refresh sharers of {name}: {e}");
                    Vec::new()
                }
            },
            None => {
                finish_failed(&d, &live, "unauthenticated: logged out during the download");
                return;
            }
        };
        let usable: Vec<&String> = sharers.iter().filter(|a| !banned.contains_key(*a)).collect();
        if usable.is_empty() && connected.is_empty() {
            empty_refreshes += 1;
            if !banned.is_empty() && sharers.iter().all(|a| banned.contains_key(a)) {
                finish_failed(&d, &live, &all_banned_message(&banned));
                return;
            }
            if empty_refreshes >= EMPTY_REFRESHES_BEFORE_NO_PEERS {
                finish_failed(&d, &live, &format!("no_peers: nobody shares {name} in {group} any more"));
                return;
            }
        } else {
            empty_refreshes = 0;
        }
        for addr in usable {
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
            let (d2, l2, tx2, a2, s2) = (d.clone(), live.clone(), tx.clone(), addr.clone(), stop.clone());
            tokio::spawn(async move {
                let end = tokio::select! {
                    e = conn::run(&d2, &l2, &a2) => e,
                    _ = s2.cancelled() => ConnEnd::Stopped,
                };
                let _ = tx2.send((a2, end)).await;
            });
        }
        if connected.is_empty() && last_progress.elapsed() > Duration::from_millis(NO_PROGRESS_TIMEOUT_MS) {
            finish_failed(
                &d,
                &live,
                &format!("no sharer answered for {} s ({last_error})", NO_PROGRESS_TIMEOUT_MS / 1000),
            );
            return;
        }
        // Wait for a connection to end, or for the next refresh.
        let wait = if connected.is_empty() { RECONNECT_BACKOFF_MS } else { REFRESH_MS };
        tokio::select! {
            _ = stop.cancelled() => return,
            Some((addr, end)) = rx.recv() => {
                connected.remove(&addr);
                match end {
                    ConnEnd::Done => {}
                    ConnEnd::Stopped => return,
                    ConnEnd::BadPiece(i) => {
                        tracing::warn!(peer = %addr, piece = i, "piece failed SHA-1: dropping this peer for this download");
                        banned.insert(addr, Ban::Piece(i));
                    }
                    ConnEnd::BadPieceList(why) => {
                        tracing::warn!(peer = %addr, "piece list did not match ({why}): dropping this peer for this download");
                        banned.insert(addr, Ban::List(why));
                    }
                    ConnEnd::Failed(e) => {
                        tracing::info!(peer = %addr, "connection ended: {e}");
                        last_error = format!("{addr}: {e}");
                        let f = failures.entry(addr).or_insert((0, Instant::now()));
                        f.0 += 1;
                        f.1 = Instant::now();
                    }
                }
                // Drain other endings without waiting for the refresh timer.
                continue;
            }
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
    let pieces_ms = started.elapsed().as_millis();
    finish_complete(&d, &live).await;
    tracing::info!(%name, pieces_ms, total_ms = started.elapsed().as_millis() as u64, "download finished");
}

/// Why a sharer is dropped for the rest of a download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ban {
    /// This piece failed its SHA-1.
    Piece(u32),
    /// The piece list it sent was wrong, and how.
    List(String),
}

/// The failure of a download whose every sharer was banned, naming each and why.
fn all_banned_message(banned: &HashMap<String, Ban>) -> String {
    let mut why: Vec<String> = banned
        .iter()
        .map(|(a, b)| match b {
            Ban::Piece(i) => format!("{a}: piece {i} failed SHA-1"),
            Ban::List(e) => format!("{a}: {e}"),
        })
        .collect();
    why.sort();
    if banned.values().all(|b| matches!(b, Ban::List(_))) {
        format!("the piece list did not match the tracker's piece_list_sha1 at any sharer ({})", why.join("; "))
    } else {
        format!("every sharer sent data that failed verification ({})", why.join("; "))
    }
}

/// Every piece is verified: check the whole file, move it into place, share it.
async fn finish_complete(d: &Arc<Daemon>, live: &Arc<Live>) {
    let record = live.record.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let part_path = record.part_path();
    let part = live.part.lock().unwrap_or_else(|p| p.into_inner()).take();
    let want = record.meta.sha1.clone();
    let dest = record.dest.clone();
    let checked = tokio::task::spawn_blocking(move || -> Result<(), String> {
        // No fsync here: like other download managers we leave write-back to the kernel; a
        // crash before it is caught by the whole-file check of a resumed download, since the
        // `.part` file is re-verified piece by piece at the next start.
        drop(part);
        let got =
            crate::hashing::file_sha1(&part_path).map_err(|e| format!("cannot read {}: {e}", part_path.display()))?;
        if got != want {
            return Err(format!("whole-file SHA-1 is {got}, expected {want}"));
        }
        std::fs::rename(&part_path, &dest).map_err(|e| format!("cannot rename to {dest}: {e}"))?;
        Ok(())
    })
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
        if let Err(e) = c.upload(&record.group, record.meta.clone(), &d.peer_addr).await {
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
