//! One connection from a downloader to a sharer, I/O only: handshake, bitfield, the piece list
//! (fetched and verified here when it is this connection's turn), then a pipeline of piece
//! requests the download's task picks (`actor.rs`); each piece is verified on the blocking pool
//! and written at its offset before the task counts it. Each ticket the swarm renews is sent on
//! the open connection (`ticket` frame), which the sharer serves only while a ticket lasts.
//!
//! What the connection itself remembers is a plain struct (`Peer`): its requests, the pieces a
//! seed rejected lately, the requests it cancelled. The picker and the sharer's pieces as the
//! picker counts them are the download's.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::api::FileMetaBody;
use proto::piece::{bits_to_bools, is_busy, Message, PROTOCOL_VERSION};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::engine::{ConnEnd, Sharer};
use super::messages::{ConnEvent, ConnId, EventSender, ListTurn, Picked, TicketRx};
use super::picker::PeerKind;
use super::piece_list::{BadList, ListFetch};
use crate::daemon::channel::{Channel, ChannelError, ClientStream};
use crate::daemon::disk;
use crate::daemon::standing::Standing;
use crate::daemon::wire::{self, FrameReader};
use crate::hashing::{parse_sha1_hex, piece_count, PieceHash};
use crate::piece_lists::PieceListStore;

/// Requests kept in flight per connection (8 MiB of 512 KiB pieces): enough to keep a
/// loopback pipe full while a piece is being verified.
pub const PIPELINE_DEPTH: usize = 16;
/// The pipeline is topped up (one exchange with the download's task) once this few requests
/// are left, not after every piece.
const REFILL_AT: usize = PIPELINE_DEPTH / 2;
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Longest wait for a requested piece before the peer is considered stalled.
pub const PIECE_TIMEOUT_MS: u64 = 15_000;
pub use proto::piece::WRITE_TIMEOUT_MS;
/// When the peer has nothing we need yet, how often to look again.
const IDLE_POLL_MS: u64 = 200;
/// While another connection fetches the piece list, how often to send our sharer a keepalive
/// (traffic on the path; the sharer's idle bound, `serve::NO_REQUEST_TIMEOUT_MS` (30 s), counts
/// only requests, so a wait longer than that ends in error 9 and a reconnect).
const LIST_WAIT_KEEPALIVE_MS: u64 = 20_000;
/// Pieces being verified at once per connection.
const MAX_VERIFYING: usize = 2;
/// How long a seed's `reject` of a piece holds: the piece is asked of the other peers
/// meanwhile, and of the seed again after this (which then serves it; `daemon/spread.rs`).
pub const REJECTED_RETRY_MS: u64 = 1_000;

type Reader = FrameReader<ReadHalf<ClientStream>>;
type Writer = WriteHalf<ClientStream>;
/// A piece checked on the blocking pool: its index, length, and whether it matched (and was
/// written).
type Checked = (u32, u64, std::io::Result<bool>);

pub fn sha1_bytes(hex_s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    let _ = hex::decode_to_slice(hex_s, &mut out);
    out
}

/// What a connection gets from its download when it is spawned.
pub struct ConnCtx {
    pub conn: ConnId,
    /// The session (its user name goes into the handshake).
    pub standing: Arc<Standing>,
    /// TLS with this HOME's key.
    pub channel: Arc<Channel>,
    /// Where the verified piece list is stored.
    pub piece_lists: PieceListStore,
    pub group: String,
    pub meta: FileMetaBody,
    /// The `.part`, written at each verified piece's offset.
    pub part: Option<Arc<File>>,
    pub events: EventSender,
    /// Every piece the download verifies, whichever connection brought it: a request for it
    /// still outstanding here is cancelled (endgame duplicates).
    pub verified: broadcast::Receiver<u32>,
    pub ticket: TicketRx,
}

/// Runs one connection to `sharer` until it ends or `stop` is cancelled, then tells the
/// download how it ended and which requests it still had.
pub async fn run(mut ctx: ConnCtx, sharer: Sharer, stop: CancellationToken) {
    let mut peer = Peer::default();
    let end = tokio::select! {
        e = session(&mut ctx, &sharer, &mut peer) => e.unwrap_or_else(ConnEnd::Failed),
        _ = stop.cancelled() => ConnEnd::Stopped,
    };
    let ended = ConnEvent::Ended { conn: ctx.conn, outstanding: std::mem::take(&mut peer.outstanding), end };
    let _ = ctx.events.send(ended).await;
}

/// The sharer at the other end, as this connection knows it.
#[derive(Default)]
struct Peer {
    kind: Option<PeerKind>,
    /// Requests sent and not yet answered.
    outstanding: Vec<u32>,
    /// Pieces a seed rejected, and when: offered to the picker again after `REJECTED_RETRY_MS`.
    rejected: VecDeque<(u32, Instant)>,
    /// Requests cancelled (another connection delivered the piece first) whose `piece` or
    /// `reject` may still arrive: dropped when they do.
    cancelled: HashSet<u32>,
}

/// Asks the download something and waits for the answer; `Err` when the download is gone.
async fn ask<T>(events: &EventSender, make: impl FnOnce(oneshot::Sender<T>) -> ConnEvent) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    if events.send(make(tx)).await.is_err() {
        return Err("the download stopped".into());
    }
    rx.await.map_err(|_| "the download stopped".to_string())
}

async fn session(ctx: &mut ConnCtx, sharer: &Sharer, peer: &mut Peer) -> Result<ConnEnd, String> {
    let (mut reader, mut w) = match open(ctx, sharer).await? {
        Ok(rw) => rw,
        Err(end) => return Ok(end),
    };
    let n = piece_count(ctx.meta.size) as usize;
    let mut peer_has = match reader.next(HANDSHAKE_TIMEOUT_MS).await.map_err(|e| format!("bitfield: {e}"))? {
        Message::Bitfield { num_pieces, bits } if num_pieces as usize == n => bits_to_bools(num_pieces, &bits),
        other => return Err(format!("unexpected {} instead of a bitfield", other.name())),
    };
    let list = match piece_list(ctx, &sharer.addr, &mut reader, &mut w, &mut peer_has).await? {
        Ok(list) => list,
        Err(bad) => return Ok(ConnEnd::BadPieceList(bad.to_string())),
    };
    let conn = ctx.conn;
    peer.kind = Some(ask(&ctx.events, |reply| ConnEvent::Joined { conn, has: peer_has, reply }).await?);
    let part = ctx.part.clone().ok_or("download is not active")?;
    let mut pump = Pump { ctx, list, part, reader: &mut reader, w: &mut w, peer, verifying: JoinSet::new() };
    let result = pump.run().await;
    pump.drain(result).await
}

/// Connects, proves the sharer's key, and exchanges handshakes. `Ok(Err(end))` when the
/// sharer proved another key or is busy.
async fn open(ctx: &mut ConnCtx, sharer: &Sharer) -> Result<Result<(Reader, Writer), ConnEnd>, String> {
    let addr = sharer.addr.as_str();
    let user = ctx.standing.user().unwrap_or_default();
    let stream = tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect timed out after {CONNECT_TIMEOUT_MS} ms"))?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let tls = match ctx.channel.connect(stream, &sharer.key, HANDSHAKE_TIMEOUT_MS).await {
        Ok(tls) => tls,
        Err(e @ (ChannelError::WrongKey { .. } | ChannelError::NoKey)) => {
            return Ok(Err(ConnEnd::WrongKey(e.to_string())))
        }
        Err(e) => return Err(e.to_string()),
    };
    let (r, mut w) = tokio::io::split(tls);
    let mut reader = FrameReader::new(r);
    let file_sha1 = sha1_bytes(&ctx.meta.sha1);
    let hello = Message::Handshake {
        protocol_version: PROTOCOL_VERSION,
        file_sha1,
        group: ctx.group.clone(),
        user,
        peer_id: *uuid::Uuid::new_v4().as_bytes(),
        ticket: ctx.ticket.borrow_and_update().to_vec(),
    };
    wire::send(&mut w, &hello, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
    match reader.next(HANDSHAKE_TIMEOUT_MS).await.map_err(|e| format!("handshake: {e}"))? {
        Message::Handshake { file_sha1: f, .. } if f == file_sha1 => Ok(Ok((reader, w))),
        Message::Error { code, message } if is_busy(code) => Ok(Err(ConnEnd::Busy(message))),
        Message::Error { message, .. } => Err(format!("refused: {message}")),
        other => Err(format!("unexpected {} instead of a handshake", other.name())),
    }
}

/// The download's verified piece list: known already, or fetched from this sharer when it is
/// this connection's turn (one connection per download fetches at a time, the others wait for
/// its outcome) and checked against the tracker's `piece_list_sha1`; `Ok(Err(_))` means this
/// sharer sent a wrong list.
async fn piece_list(
    ctx: &ConnCtx,
    addr: &str,
    reader: &mut Reader,
    w: &mut Writer,
    peer_has: &mut Vec<bool>,
) -> Result<Result<Arc<Vec<PieceHash>>, BadList>, String> {
    let conn = ctx.conn;
    // Wait for our turn in the queue without losing our place in it, keeping the sharer's
    // connection alive meanwhile.
    let turn = ask(&ctx.events, |reply| ConnEvent::ListTurn { conn, reply });
    tokio::pin!(turn);
    let turn = loop {
        tokio::select! {
            t = &mut turn => break t?,
            _ = tokio::time::sleep(Duration::from_millis(LIST_WAIT_KEEPALIVE_MS)) => {
                wire::send(w, &Message::KeepAlive, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
            }
        }
    };
    if let ListTurn::Known(list) = turn {
        return Ok(Ok(list));
    }
    let meta = &ctx.meta;
    let want = parse_sha1_hex(&meta.piece_list_sha1).ok_or("the tracker's piece_list_sha1 is malformed")?;
    let fetch = ListFetch::new(peer_has.len() as u32, want);
    let fetch = match fetch_list(fetch, reader, w, peer_has).await? {
        Ok(fetch) => fetch,
        Err(bad) => return Ok(Err(bad)),
    };
    let checked = tokio::task::spawn_blocking(move || fetch.finish()).await.map_err(|e| e.to_string())?;
    let list = match checked {
        Ok(list) => Arc::new(list),
        Err(bad) => return Ok(Err(bad)),
    };
    // Stored before any piece is checked against it: a restarted daemon resumes its .part with
    // this list, and the finished file is served with it.
    let (store, key, copy) = (ctx.piece_lists.clone(), meta.piece_list_sha1.clone(), list.clone());
    match tokio::task::spawn_blocking(move || store.save(&key, &copy)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(name = %meta.name, "cannot store the piece list ({e}); a restart will fetch it again")
        }
        Err(e) => tracing::warn!(name = %meta.name, "cannot store the piece list ({e}); a restart will fetch it again"),
    }
    tracing::info!(peer = %addr, name = %meta.name, pieces = list.len(), "piece list verified");
    let _ = ctx.events.send(ConnEvent::ListFetched { conn, list: Some(list.clone()) }).await;
    Ok(Ok(list))
}

/// Asks the sharer for the piece list, a frame's worth at a time, until `fetch` has it all.
async fn fetch_list(
    mut fetch: ListFetch,
    reader: &mut Reader,
    w: &mut Writer,
    peer_has: &mut Vec<bool>,
) -> Result<Result<ListFetch, BadList>, String> {
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
            other => return Err(format!("unexpected {} instead of the piece list", other.name())),
        }
    }
    Ok(Ok(fetch))
}

/// What one turn of the pipeline's loop comes to.
enum Step {
    /// Go on with the next turn.
    Next,
    /// The connection ends.
    End(ConnEnd),
}

/// The request pipeline of one connection.
struct Pump<'a> {
    ctx: &'a mut ConnCtx,
    list: Arc<Vec<PieceHash>>,
    part: Arc<File>,
    reader: &'a mut Reader,
    w: &'a mut Writer,
    peer: &'a mut Peer,
    verifying: JoinSet<Checked>,
}

impl Pump<'_> {
    async fn send(&mut self, m: &Message) -> Result<(), String> {
        wire::send(self.w, m, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())
    }

    async fn event(&self, e: ConnEvent) {
        let _ = self.ctx.events.send(e).await;
    }

    /// Pieces already received still count: their verification finishes before the
    /// connection ends, and a bad one among them is how it ends.
    async fn drain(&mut self, result: Result<ConnEnd, String>) -> Result<ConnEnd, String> {
        let mut end = result;
        while let Some(done) = self.verifying.join_next().await {
            let replaceable = matches!(end, Ok(ConnEnd::Done | ConnEnd::Busy(_)) | Err(_));
            match self.settle(done).await {
                Ok(Some(bad)) if replaceable => end = Ok(bad),
                Err(e) if end.as_ref().is_ok_and(|e| !matches!(e, ConnEnd::Busy(_))) => end = Err(e),
                _ => {}
            }
        }
        end
    }

    /// Accounts for one finished verification: `Some(BadPiece)` when the data was wrong.
    async fn settle(&mut self, done: Result<Checked, tokio::task::JoinError>) -> Result<Option<ConnEnd>, String> {
        let (piece, len, ok) = done.map_err(|e| e.to_string())?;
        let ok = ok.map_err(|e| format!("cannot write piece {piece}: {e}"))?;
        self.event(ConnEvent::Verified { piece, len, ok }).await;
        Ok((!ok).then_some(ConnEnd::BadPiece(piece)))
    }

    async fn run(&mut self) -> Result<ConnEnd, String> {
        loop {
            if let Step::End(end) = self.turn().await? {
                return Ok(end);
            }
        }
    }

    async fn turn(&mut self) -> Result<Step, String> {
        self.reoffer_rejected().await;
        if let Step::End(end) = self.fill().await? {
            return Ok(Step::End(end));
        }
        if self.peer.outstanding.is_empty() && !self.verifying.is_empty() {
            // Nothing requested, pieces still being checked: their outcome decides what next.
            if let Some(done) = self.verifying.join_next().await {
                if let Some(end) = self.settle(done).await? {
                    return Ok(Step::End(end));
                }
            }
            return Ok(Step::Next);
        }
        let timeout = if self.peer.outstanding.is_empty() { IDLE_POLL_MS } else { PIECE_TIMEOUT_MS };
        let next = tokio::select! {
            m = self.reader.next(timeout) => m,
            // The swarm renewed the ticket: the sharer serves this connection on it from now.
            Ok(()) = self.ctx.ticket.changed() => {
                let fresh = Message::Ticket { ticket: self.ctx.ticket.borrow_and_update().to_vec() };
                self.send(&fresh).await?;
                return Ok(Step::Next);
            }
            v = self.ctx.verified.recv() => {
                // (A lagged receiver misses some: those arrive as duplicates, dropped below.)
                if let Ok(piece) = v {
                    self.verified_elsewhere(piece).await?;
                }
                return Ok(Step::Next);
            }
        };
        let msg = match next {
            Ok(m) => m,
            Err(wire::WireError::Timeout(_)) if self.peer.outstanding.is_empty() => {
                // Nothing to ask this peer for yet: keep the connection alive and look again.
                self.send(&Message::KeepAlive).await?;
                return Ok(Step::Next);
            }
            Err(e) => return Err(e.to_string()),
        };
        self.on_message(msg).await
    }

    /// Tops the pipeline up once it runs low: the download's task picks, this sends.
    async fn fill(&mut self) -> Result<Step, String> {
        if self.peer.outstanding.len() > REFILL_AT {
            return Ok(Step::Next);
        }
        let (conn, outstanding) = (self.ctx.conn, std::mem::take(&mut self.peer.outstanding));
        let asked = outstanding.len();
        let Picked { outstanding, done } =
            ask(&self.ctx.events, |reply| ConnEvent::Pick { conn, outstanding, want: PIPELINE_DEPTH, reply }).await?;
        self.peer.outstanding = outstanding;
        if done {
            return Ok(Step::End(ConnEnd::Done));
        }
        if self.peer.outstanding.len() > asked {
            let mut batch = Vec::with_capacity(8 * (self.peer.outstanding.len() - asked));
            for &piece in &self.peer.outstanding[asked..] {
                proto::piece::encode(&Message::Request { piece }, &mut batch);
            }
            wire::write_all(self.w, &batch, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
        }
        Ok(Step::Next)
    }

    /// A seed's rejected pieces whose delay has passed count as its pieces again.
    async fn reoffer_rejected(&mut self) {
        while let Some(&(piece, at)) = self.peer.rejected.front() {
            if at.elapsed() < Duration::from_millis(REJECTED_RETRY_MS) {
                break;
            }
            self.peer.rejected.pop_front();
            self.event(ConnEvent::SetHas { conn: self.ctx.conn, piece, has: true }).await;
        }
    }

    /// Takes `piece` out of the requests (`true` if it was one).
    fn unrequest(&mut self, piece: u32) -> bool {
        match self.peer.outstanding.iter().position(|&x| x == piece) {
            Some(pos) => {
                self.peer.outstanding.swap_remove(pos);
                true
            }
            None => false,
        }
    }

    /// Another connection delivered `piece`: a request for it here is cancelled.
    async fn verified_elsewhere(&mut self, piece: u32) -> Result<(), String> {
        if self.unrequest(piece) {
            self.peer.cancelled.insert(piece);
            self.event(ConnEvent::Release { conn: self.ctx.conn, piece }).await;
            self.send(&Message::Cancel { piece }).await?;
        }
        Ok(())
    }

    async fn on_message(&mut self, msg: Message) -> Result<Step, String> {
        let conn = self.ctx.conn;
        match msg {
            Message::Piece { piece, data } => return self.on_piece(piece, data).await,
            Message::Have { piece } => self.event(ConnEvent::Have { conn, piece }).await,
            Message::Bitfield { num_pieces, bits } if num_pieces as usize == self.list.len() => {
                let has = bits_to_bools(num_pieces, &bits);
                self.peer.kind = Some(ask(&self.ctx.events, |reply| ConnEvent::Bitfield { conn, has, reply }).await?);
            }
            Message::Reject { piece } => self.on_reject(piece).await,
            Message::KeepAlive => {}
            Message::Error { code, message } if is_busy(code) => {
                return Ok(Step::End(ConnEnd::Busy(format!("busy: {message}"))))
            }
            Message::Error { message, .. } => return Err(format!("peer closed: {message}")),
            other => return Err(format!("unexpected {}", other.name())),
        }
        Ok(Step::Next)
    }

    async fn on_reject(&mut self, piece: u32) {
        if self.peer.cancelled.remove(&piece) {
            // The answer to a request we cancelled: nothing to learn from it.
            return;
        }
        let conn = self.ctx.conn;
        let was_asked = self.unrequest(piece);
        if was_asked {
            self.event(ConnEvent::Release { conn, piece }).await;
            // A seed has it but sent it to another downloader first: ask the others, then it
            // again. Anyone else rejects only what it does not have.
            if self.peer.kind == Some(PeerKind::Seed) {
                self.peer.rejected.push_back((piece, Instant::now()));
            }
        }
        if (piece as usize) < self.list.len() {
            self.event(ConnEvent::SetHas { conn, piece, has: false }).await;
        }
    }

    async fn on_piece(&mut self, piece: u32, data: Vec<u8>) -> Result<Step, String> {
        // Cancels for pieces verified meanwhile come first, so an endgame duplicate is dropped.
        while let Ok(done) = self.ctx.verified.try_recv() {
            self.verified_elsewhere(done).await?;
        }
        if !self.unrequest(piece) {
            if self.peer.cancelled.remove(&piece) {
                // Sent before our cancel reached the sharer.
                return Ok(Step::Next);
            }
            return Err(format!("sent piece {piece}, which was not requested"));
        }
        // Verify and write on the blocking pool while this task reads the next piece.
        let (want, f, size) = (self.list[piece as usize], self.part.clone(), self.ctx.meta.size);
        self.verifying.spawn_blocking(move || {
            let len = data.len() as u64;
            (piece, len, disk::verify_and_write(&f, size, piece as u64, &data, &want))
        });
        if self.verifying.len() >= MAX_VERIFYING {
            if let Some(done) = self.verifying.join_next().await {
                if let Some(end) = self.settle(done).await? {
                    return Ok(Step::End(end));
                }
            }
        }
        while let Some(done) = self.verifying.try_join_next() {
            if let Some(end) = self.settle(done).await? {
                return Ok(Step::End(end));
            }
        }
        Ok(Step::Next)
    }
}
