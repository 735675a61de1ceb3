//! One connection from a downloader to a sharer: handshake, bitfield, the piece list (fetched
//! and verified here if the download has none yet), then a pipeline of piece requests chosen by
//! the picker; each piece is verified on the blocking pool and written at its offset before it
//! counts. Each ticket the swarm renews is sent on the open connection (`ticket` frame), which
//! the sharer serves only while a ticket lasts.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use proto::piece::Message;
use rand::SeedableRng;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use super::engine::{ConnEnd, Sharer};
use super::picker::PeerKind;
use super::piece_list::{BadList, ListFetch};
use super::Live;
use crate::daemon::channel::{ChannelError, ClientStream};
use crate::daemon::disk;
use crate::daemon::wire::{self, FrameReader};
use crate::daemon::Daemon;
use crate::hashing::{parse_sha1_hex, piece_count, PieceHash};

/// Requests kept in flight per connection (8 MiB of 512 KiB pieces): enough to keep a
/// loopback pipe full while a piece is being verified.
pub const PIPELINE_DEPTH: usize = 16;
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Longest wait for a requested piece before the peer is considered stalled.
pub const PIECE_TIMEOUT_MS: u64 = 15_000;
pub const WRITE_TIMEOUT_MS: u64 = 10_000;
/// When the peer has nothing we need yet, how often to look again.
const IDLE_POLL_MS: u64 = 200;
/// While another connection fetches the piece list, how often to send our sharer a keepalive
/// (traffic on the path; the sharer's idle bound, `serve::NO_REQUEST_TIMEOUT_MS` (30 s), counts
/// only requests, so a wait longer than that ends in error 9 and a reconnect).
const LIST_WAIT_KEEPALIVE_MS: u64 = 20_000;
/// 3: the connection is TLS 1.3 between two proven peer keys and the handshake carries a
/// ticket from the tracker (docs/PROTOCOL.md, "The channel", "Tickets"). 2 added the piece list
/// (`piece_list_request` / `piece_list`); 1 got the piece hashes from the tracker. Other
/// versions are refused with error 1.
pub const PROTOCOL_VERSION: u16 = 3;

type Reader = FrameReader<ReadHalf<ClientStream>>;
type Writer = WriteHalf<ClientStream>;

pub fn bits_to_bools(num_pieces: u32, bits: &[u8]) -> Vec<bool> {
    (0..num_pieces as usize).map(|i| bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)).collect()
}

pub fn bools_to_bits(have: &[bool]) -> Vec<u8> {
    let mut bits = vec![0u8; have.len().div_ceil(8)];
    for (i, h) in have.iter().enumerate() {
        if *h {
            bits[i / 8] |= 0x80 >> (i % 8);
        }
    }
    bits
}

pub fn sha1_bytes(hex_s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    let _ = hex::decode_to_slice(hex_s, &mut out);
    out
}

/// The download's current ticket (the tracker's, for this download and this HOME's key), as
/// the swarm renews it.
pub type TicketRx = tokio::sync::watch::Receiver<Arc<Vec<u8>>>;

/// One connection to `sharer`, presenting the current ticket, then each renewed one.
pub async fn run(d: &Arc<Daemon>, live: &Arc<Live>, sharer: &Sharer, ticket: TicketRx) -> ConnEnd {
    match session(d, live, sharer, ticket).await {
        Ok(end) => end,
        Err(e) => ConnEnd::Failed(e),
    }
}

async fn session(d: &Arc<Daemon>, live: &Arc<Live>, sharer: &Sharer, mut ticket: TicketRx) -> Result<ConnEnd, String> {
    let addr = sharer.addr.as_str();
    let meta = live.meta();
    let group = live.record.lock().unwrap_or_else(|p| p.into_inner()).group.clone();
    let user = d.home.session().map(|s| s.user).unwrap_or_default();
    let stream = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect timed out after {CONNECT_TIMEOUT_MS} ms"))?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let tls = match d.channel.connect(stream, &sharer.key, HANDSHAKE_TIMEOUT_MS).await {
        Ok(tls) => tls,
        Err(e @ (ChannelError::WrongKey { .. } | ChannelError::NoKey)) => return Ok(ConnEnd::WrongKey(e.to_string())),
        Err(e) => return Err(e.to_string()),
    };
    let (r, mut w) = tokio::io::split(tls);
    let mut reader = FrameReader::new(r);
    let file_sha1 = sha1_bytes(&meta.sha1);
    let hello = Message::Handshake {
        protocol_version: PROTOCOL_VERSION,
        file_sha1,
        group: group.clone(),
        user,
        peer_id: *uuid::Uuid::new_v4().as_bytes(),
        ticket: ticket.borrow_and_update().to_vec(),
    };
    wire::send(&mut w, &hello, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
    match reader.next(HANDSHAKE_TIMEOUT_MS).await.map_err(|e| format!("handshake: {e}"))? {
        Message::Handshake { file_sha1: f, .. } if f == file_sha1 => {}
        Message::Error { code, message } if is_busy(code) => return Ok(ConnEnd::Busy(message)),
        Message::Error { message, .. } => return Err(format!("refused: {message}")),
        other => return Err(format!("unexpected {} instead of a handshake", name_of(&other))),
    }
    let n = piece_count(meta.size) as usize;
    let mut peer_has = match reader.next(HANDSHAKE_TIMEOUT_MS).await.map_err(|e| format!("bitfield: {e}"))? {
        Message::Bitfield { num_pieces, bits } if num_pieces as usize == n => bits_to_bools(num_pieces, &bits),
        other => return Err(format!("unexpected {} instead of a bitfield", name_of(&other))),
    };
    let list = match piece_list(d, live, &meta, addr, &mut reader, &mut w, &mut peer_has).await? {
        Ok(list) => list,
        Err(bad) => return Ok(ConnEnd::BadPieceList(bad.to_string())),
    };
    let kind = live.picker.lock().unwrap_or_else(|p| p.into_inner()).add_peer(&peer_has);
    let mut outstanding: Vec<u32> = Vec::with_capacity(PIPELINE_DEPTH);
    let mut peer = Peer { has: peer_has, kind, rejected: Default::default(), cancelled: Default::default() };
    let result = match pump(live, &meta, &list, &mut reader, &mut w, &mut peer, &mut outstanding, &mut ticket).await {
        Err(e) if e.starts_with(BUSY_PREFIX) => Ok(ConnEnd::Busy(e)),
        other => other,
    };
    {
        let mut p = live.picker.lock().unwrap_or_else(|p| p.into_inner());
        for i in outstanding.drain(..) {
            p.release(i);
        }
        p.remove_peer(&peer.has, peer.kind);
    }
    result
}

/// The download's verified piece list: known already, or fetched from this sharer and checked
/// against the tracker's `piece_list_sha1`. One connection per download fetches at a time (the
/// others wait for its outcome); `Ok(Err(_))` means this sharer sent a wrong list.
#[allow(clippy::type_complexity)]
async fn piece_list(
    d: &Arc<Daemon>,
    live: &Arc<Live>,
    meta: &proto::api::FileMetaBody,
    addr: &str,
    reader: &mut Reader,
    w: &mut Writer,
    peer_has: &mut Vec<bool>,
) -> Result<Result<Arc<Vec<PieceHash>>, BadList>, String> {
    if let Some(list) = live.piece_list.get() {
        return Ok(Ok(list.clone()));
    }
    // Wait for our turn in the queue without losing our place in it, keeping the sharer's
    // connection alive meanwhile.
    let turn = live.list_fetch.lock();
    tokio::pin!(turn);
    let _turn = loop {
        tokio::select! {
            t = &mut turn => break t,
            _ = tokio::time::sleep(Duration::from_millis(LIST_WAIT_KEEPALIVE_MS)) => {
                wire::send(w, &Message::KeepAlive, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
            }
        }
    };
    if let Some(list) = live.piece_list.get() {
        return Ok(Ok(list.clone()));
    }
    let want = parse_sha1_hex(&meta.piece_list_sha1).ok_or("the tracker's piece_list_sha1 is malformed")?;
    let mut fetch = ListFetch::new(peer_has.len() as u32, want);
    let mut batch = Vec::new();
    while !fetch.is_done() {
        batch.clear();
        while let Some((start, count)) = fetch.next_request() {
            proto::piece::encode(&Message::PieceListRequest { start, count }, &mut batch);
        }
        if !batch.is_empty() {
            wire::write_all(w, &batch, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
        }
        match reader.next(PIECE_TIMEOUT_MS).await.map_err(|e| format!("piece list: {e}"))? {
            Message::PieceList { num_pieces, start, hashes } => {
                if let Err(bad) = fetch.on_answer(num_pieces, start, hashes) {
                    return Ok(Err(bad));
                }
            }
            // A sharer that is itself downloading announces pieces meanwhile.
            Message::Have { piece } => {
                if let Some(h) = peer_has.get_mut(piece as usize) {
                    *h = true;
                }
            }
            Message::Bitfield { num_pieces, bits } if num_pieces as usize == peer_has.len() => {
                *peer_has = bits_to_bools(num_pieces, &bits);
            }
            Message::KeepAlive => {}
            Message::Error { message, .. } => return Err(format!("refused the piece list: {message}")),
            other => return Err(format!("unexpected {} instead of the piece list", name_of(&other))),
        }
    }
    let checked = tokio::task::spawn_blocking(move || fetch.finish()).await.map_err(|e| e.to_string())?;
    let list = match checked {
        Ok(list) => Arc::new(list),
        Err(bad) => return Ok(Err(bad)),
    };
    // Stored before any piece is checked against it: a restarted daemon resumes its .part with
    // this list, and the finished file is served with it.
    let (store, key, copy) = (d.piece_lists.clone(), meta.piece_list_sha1.clone(), list.clone());
    match tokio::task::spawn_blocking(move || store.save(&key, &copy)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(name = %meta.name, "cannot store the piece list ({e}); a restart will fetch it again")
        }
        Err(e) => tracing::warn!(name = %meta.name, "cannot store the piece list ({e}); a restart will fetch it again"),
    }
    tracing::info!(peer = %addr, name = %meta.name, pieces = list.len(), "piece list verified");
    let _ = live.piece_list.set(list.clone());
    Ok(Ok(list))
}

/// How long a seed's `reject` of a piece holds: the piece is asked of the other peers
/// meanwhile, and of the seed again after this (which then serves it; `daemon/spread.rs`).
pub const REJECTED_RETRY_MS: u64 = 1_000;

/// The sharer at the other end, as the picker counts it.
struct Peer {
    /// The pieces it has (its bitfield, then its `have`s), less those it rejected lately.
    has: Vec<bool>,
    kind: PeerKind,
    /// Pieces a seed rejected, and when: offered to the picker again after `REJECTED_RETRY_MS`.
    rejected: std::collections::VecDeque<(u32, std::time::Instant)>,
    /// Requests cancelled (another connection delivered the piece first) whose `piece` or
    /// `reject` may still arrive: dropped when they do.
    cancelled: std::collections::HashSet<u32>,
}

impl Peer {
    /// A seed's rejected pieces whose delay has passed count as its pieces again.
    fn reoffer_rejected(&mut self) {
        while let Some(&(piece, at)) = self.rejected.front() {
            if at.elapsed() < Duration::from_millis(REJECTED_RETRY_MS) {
                break;
            }
            self.rejected.pop_front();
            if let Some(h) = self.has.get_mut(piece as usize) {
                *h = true;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    live: &Arc<Live>,
    meta: &proto::api::FileMetaBody,
    list: &Arc<Vec<PieceHash>>,
    reader: &mut Reader,
    w: &mut Writer,
    peer: &mut Peer,
    outstanding: &mut Vec<u32>,
    ticket: &mut TicketRx,
) -> Result<ConnEnd, String> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let part = live.part.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or("download is not active")?;
    let size = meta.size;
    let mut verifying: tokio::task::JoinSet<(u32, u64, std::io::Result<bool>)> = tokio::task::JoinSet::new();
    let result =
        pump_inner(live, list, reader, w, peer, outstanding, &mut rng, part, size, &mut verifying, ticket).await;
    // Pieces already received still count: finish their verification before leaving.
    let mut end = result;
    while let Some(done) = verifying.join_next().await {
        match settle(live, done) {
            Ok(Some(bad)) if matches!(end, Ok(ConnEnd::Done) | Err(_)) => end = Ok(bad),
            Err(e) if end.is_ok() => end = Err(e),
            _ => {}
        }
    }
    end
}

/// Pieces being verified at once per connection.
const MAX_VERIFYING: usize = 2;

/// Accounts for one finished verification: `Some(BadPiece)` when the data was wrong.
fn settle(
    live: &Arc<Live>,
    done: Result<(u32, u64, std::io::Result<bool>), tokio::task::JoinError>,
) -> Result<Option<ConnEnd>, String> {
    let (piece, len, ok) = done.map_err(|e| e.to_string())?;
    let ok = ok.map_err(|e| format!("cannot write piece {piece}: {e}"))?;
    let mut p = live.picker.lock().unwrap_or_else(|p| p.into_inner());
    if !ok {
        p.release(piece);
        return Ok(Some(ConnEnd::BadPiece(piece)));
    }
    if p.complete(piece) {
        live.bytes_done.fetch_add(len, Ordering::Relaxed);
        let _ = live.have_tx.send(piece);
    }
    Ok(None)
}

#[allow(clippy::too_many_arguments)]
async fn pump_inner(
    live: &Arc<Live>,
    list: &Arc<Vec<PieceHash>>,
    reader: &mut Reader,
    w: &mut Writer,
    peer: &mut Peer,
    outstanding: &mut Vec<u32>,
    rng: &mut rand::rngs::StdRng,
    part: Arc<std::fs::File>,
    size: u64,
    verifying: &mut tokio::task::JoinSet<(u32, u64, std::io::Result<bool>)>,
    ticket: &mut TicketRx,
) -> Result<ConnEnd, String> {
    // Every piece this download verifies, whichever connection brought it: a request for it
    // still outstanding here is cancelled (endgame duplicates).
    let mut verified_rx = live.have_tx.subscribe();
    loop {
        // Fill the pipeline.
        let mut batch = Vec::new();
        peer.reoffer_rejected();
        {
            let mut p = live.picker.lock().unwrap_or_else(|p| p.into_inner());
            if p.is_complete() && outstanding.is_empty() {
                return Ok(ConnEnd::Done);
            }
            while outstanding.len() < PIPELINE_DEPTH {
                match p.pick(&peer.has, peer.kind, outstanding, rng) {
                    Some(i) => {
                        outstanding.push(i);
                        proto::piece::encode(&Message::Request { piece: i }, &mut batch);
                    }
                    None => break,
                }
            }
        }
        if !batch.is_empty() {
            wire::write_all(w, &batch, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
        }
        if outstanding.is_empty() && !verifying.is_empty() {
            // Nothing requested, pieces still being checked: their outcome decides what next.
            if let Some(done) = verifying.join_next().await {
                if let Some(end) = settle(live, done)? {
                    return Ok(end);
                }
            }
            continue;
        }
        let timeout = if outstanding.is_empty() { IDLE_POLL_MS } else { PIECE_TIMEOUT_MS };
        let next = tokio::select! {
            m = reader.next(timeout) => m,
            // The swarm renewed the ticket: the sharer serves this connection on it from now.
            Ok(()) = ticket.changed() => {
                let fresh = Message::Ticket { ticket: ticket.borrow_and_update().to_vec() };
                wire::send(w, &fresh, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
                continue;
            }
            v = verified_rx.recv() => {
                // (A lagged receiver misses some: those arrive as duplicates, dropped below.)
                if let Ok(piece) = v {
                    if let Some(pos) = outstanding.iter().position(|&x| x == piece) {
                        outstanding.swap_remove(pos);
                        peer.cancelled.insert(piece);
                        live.picker.lock().unwrap_or_else(|p| p.into_inner()).release(piece);
                        wire::send(w, &Message::Cancel { piece }, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
                    }
                }
                continue;
            }
        };
        let msg = match next {
            Ok(m) => m,
            Err(wire::WireError::Timeout(_)) if outstanding.is_empty() => {
                // Nothing to ask this peer for yet: keep the connection alive and look again.
                wire::send(w, &Message::KeepAlive, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        match msg {
            Message::Piece { piece, data } => {
                let Some(pos) = outstanding.iter().position(|&x| x == piece) else {
                    if peer.cancelled.remove(&piece) {
                        // Sent before our cancel reached the sharer.
                        continue;
                    }
                    return Err(format!("sent piece {piece}, which was not requested"));
                };
                outstanding.swap_remove(pos);
                let already = live.picker.lock().unwrap_or_else(|p| p.into_inner()).has(piece);
                if already {
                    // Endgame duplicate: the other copy won.
                    live.picker.lock().unwrap_or_else(|p| p.into_inner()).release(piece);
                    continue;
                }
                // Verify and write on the blocking pool while this task reads the next piece.
                let want = list[piece as usize];
                let f = part.clone();
                let data: Vec<u8> = data;
                verifying.spawn_blocking(move || {
                    let len = data.len() as u64;
                    (piece, len, disk::verify_and_write(&f, size, piece as u64, &data, &want))
                });
                if verifying.len() >= MAX_VERIFYING {
                    if let Some(done) = verifying.join_next().await {
                        if let Some(end) = settle(live, done)? {
                            return Ok(end);
                        }
                    }
                }
                while let Some(done) = verifying.try_join_next() {
                    if let Some(end) = settle(live, done)? {
                        return Ok(end);
                    }
                }
            }
            Message::Have { piece } => {
                if let Some(h) = peer.has.get_mut(piece as usize) {
                    if !*h {
                        *h = true;
                        live.picker.lock().unwrap_or_else(|p| p.into_inner()).peer_got(piece, peer.kind);
                    }
                }
            }
            Message::Bitfield { num_pieces, bits } if num_pieces as usize == peer.has.len() => {
                let new = bits_to_bools(num_pieces, &bits);
                let mut p = live.picker.lock().unwrap_or_else(|p| p.into_inner());
                p.remove_peer(&peer.has, peer.kind);
                peer.kind = p.add_peer(&new);
                peer.has = new;
            }
            Message::Reject { piece } => {
                if peer.cancelled.remove(&piece) {
                    // The answer to a request we cancelled: nothing to learn from it.
                    continue;
                }
                if let Some(pos) = outstanding.iter().position(|&x| x == piece) {
                    outstanding.swap_remove(pos);
                    live.picker.lock().unwrap_or_else(|p| p.into_inner()).release(piece);
                }
                if let Some(h) = peer.has.get_mut(piece as usize) {
                    // A seed has it but sent it to another downloader first: ask the others, then
                    // it again. Anyone else rejects only what it does not have.
                    if *h && peer.kind == PeerKind::Seed {
                        peer.rejected.push_back((piece, std::time::Instant::now()));
                    }
                    *h = false;
                }
            }
            Message::KeepAlive => {}
            Message::Error { code, message } if is_busy(code) => return Err(format!("{BUSY_PREFIX}{message}")),
            Message::Error { message, .. } => return Err(format!("peer closed: {message}")),
            other => return Err(format!("unexpected {}", name_of(&other))),
        }
    }
}

/// How `pump`'s error string marks a sharer that closed for now rather than failed.
const BUSY_PREFIX: &str = "busy: ";

/// An `error` code that means "not now", not "never" (docs/PROTOCOL.md, error codes).
fn is_busy(code: u16) -> bool {
    use proto::piece::error_code::{BUSY, IDLE};
    code == BUSY || code == IDLE
}

pub fn name_of(m: &Message) -> &'static str {
    match m {
        Message::Handshake { .. } => "handshake",
        Message::Bitfield { .. } => "bitfield",
        Message::Have { .. } => "have",
        Message::Request { .. } => "request",
        Message::Cancel { .. } => "cancel",
        Message::Piece { .. } => "piece",
        Message::Reject { .. } => "reject",
        Message::KeepAlive => "keep-alive",
        Message::Error { .. } => "error",
        Message::PieceListRequest { .. } => "piece-list request",
        Message::PieceList { .. } => "piece list",
        Message::Ticket { .. } => "ticket",
    }
}
