//! The piece server: other peers connect over the TLS channel (`channel`), name a file by its
//! whole-file SHA-1 and group with a ticket from the tracker bound to the key they proved
//! (`tickets`), take a serving slot (`slots`), get our bitfield (complete for shared files, partial for downloads in progress, followed
//! by `have` as pieces verify), ask for the file's piece list (from HOME/piece-lists/, or the
//! verified list of a download in progress), and request pieces, which are read with
//! positional reads.
//!
//! A connection is served only while its ticket lasts: the downloader sends a fresh one on it
//! (`ticket` frame) before the old one expires, checked like the first, or the connection ends
//! with error 7 at expiry. So a member who was removed (and gets no fresh ticket) is cut off
//! within a ticket's lifetime (docs/PROTOCOL.md, "Tickets while a connection lasts").
//!
//! A shared file whose stored list is missing (deleted, or shared by an older version) gets it
//! rebuilt from the file on the blocking pool, one rebuild at a time per daemon; the requester
//! waits for it (or times out and comes back). A list that no longer matches the file as shared
//! is refused with error 4 rather than served.

use std::collections::VecDeque;
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::piece::Message;
use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::accept;
use super::channel::ServerStream;
use super::disk;
use super::download::messages::PartialView;
use super::download::DownloadHandle;
use super::handles::{BadPieceList, Daemon};
use super::shares::Share;
use super::slots::{HandshakeSlot, SlotLimits, Slots, FIRST_BYTE_TIMEOUT_MS, HELLO_TIMEOUT_MS};
use super::spread::{Spread, Verdict};
use super::tickets::{self, Expect};
use super::wire::{self, FrameReader, WireError};
use crate::hashing::{piece_list_sha1, PieceHash};
use proto::piece::{bools_to_bits, MAX_PIECE_LIST_HASHES_PER_FRAME, PROTOCOL_VERSION, WRITE_TIMEOUT_MS};

/// A served connection that sends no `request` and no `piece_list_request` for this long is
/// closed with `error` 9, whatever keepalives it sends.
pub const NO_REQUEST_TIMEOUT_MS: u64 = 30_000;

pub async fn run(d: Arc<Daemon>, listener: TcpListener, stop: CancellationToken) {
    let slots = Slots::new(SlotLimits::default());
    let spread = Arc::new(Spread::default());
    let mut conn_id: u64 = 0;
    let mut turned_away: u64 = 0;
    let mut last_report = Instant::now();
    while let Some((stream, from)) = accept::next(&stop, "accept", || listener.accept()).await {
        // Never wait here: a connection over its address's, its network's or the total bound
        // (`slots`) is closed now.
        let slot = match slots.handshake(from.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                turned_away += 1;
                if last_report.elapsed() > Duration::from_secs(10) {
                    tracing::warn!(turned_away, last = %from, "closing connections over the handshake bounds: {full}");
                    last_report = Instant::now();
                    turned_away = 0;
                }
                drop(stream);
                continue;
            }
        };
        let (d, stop, slots, spread) = (d.clone(), stop.clone(), slots.clone(), spread.clone());
        conn_id += 1;
        let conn = conn_id;
        tokio::spawn(async move {
            let mut served = Served::default();
            tokio::select! {
                r = serve_one(&d, stream, from, slot, &slots, (&spread, conn), &mut served) => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %from, "serving ended: {e}");
                    }
                }
                _ = stop.cancelled() => {}
            }
            if served.pieces > 0 {
                tracing::info!(peer = %from, user = %served.user, file = %served.file, pieces_served = served.pieces,
                    cancelled = served.cancelled, "served a peer");
            }
        });
    }
}

/// What a connection serves: a complete file, or a download in progress (its pieces as its
/// task last told them, kept up to date from its `have` announcements).
enum Source {
    Complete { file: Arc<File>, size: u64, pieces: usize, share: Share },
    Partial { download: DownloadHandle, view: PartialView },
}

/// Error codes of the `error` frame (docs/PROTOCOL.md).
use proto::piece::error_code::{
    BAD_RANGE as E_BAD_RANGE, BUSY as E_BUSY, IDLE as E_IDLE, LIST_NOT_YET as E_LIST_NOT_YET,
    LOGGED_OUT as E_LOGGED_OUT, MALFORMED as E_MALFORMED, NOT_SHARED as E_NOT_SHARED, TICKET as E_TICKET,
    UNEXPECTED as E_UNEXPECTED, VERSION as E_VERSION,
};

impl Source {
    fn num_pieces(&self) -> u64 {
        match self {
            Source::Complete { pieces, .. } => *pieces as u64,
            Source::Partial { view, .. } => crate::hashing::piece_count(view.size),
        }
    }

    fn has(&self, i: u32) -> bool {
        match self {
            Source::Complete { pieces, .. } => (i as usize) < *pieces,
            Source::Partial { view, .. } => view.have.get(i as usize).copied().unwrap_or(false),
        }
    }

    /// The next piece the download in progress verified, as the `have` (or, when this
    /// connection fell behind, the fresh `bitfield`) to send. `None` once it has no more to
    /// say (complete, paused, gone), and at once for a complete file.
    async fn next_have(&mut self) -> Option<Message> {
        let Source::Partial { download, view } = self else { return std::future::pending().await };
        match view.have_rx.recv().await {
            Ok(piece) => {
                if let Some(h) = view.have.get_mut(piece as usize) {
                    *h = true;
                }
                Some(Message::Have { piece })
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                *view = download.serve().await?;
                Some(self.bitfield())
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
    /// Reads piece `i` into `buf` on the blocking pool (positional read: reads of one file
    /// do not share an offset). The buffer comes back whatever the read's outcome.
    async fn read(&self, i: u32, mut buf: Vec<u8>) -> Result<(Vec<u8>, std::io::Result<()>), String> {
        let (file, size) = match self {
            Source::Complete { file, size, .. } => (file.clone(), *size),
            Source::Partial { view, .. } => (view.file.clone(), view.size),
        };
        tokio::task::spawn_blocking(move || {
            let r = disk::read_piece(&file, size, i as u64, &mut buf);
            (buf, r)
        })
        .await
        .map_err(|e| format!("reading piece {i}: {e}"))
    }

    fn bitfield(&self) -> Message {
        match self {
            Source::Complete { pieces, .. } => {
                Message::Bitfield { num_pieces: *pieces as u32, bits: bools_to_bits(&vec![true; *pieces]) }
            }
            Source::Partial { view, .. } => {
                Message::Bitfield { num_pieces: view.have.len() as u32, bits: bools_to_bits(&view.have) }
            }
        }
    }
}

/// Sends `error(code, message)`, closes our side, and ends the connection with `message`.
async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, code: u16, message: String) -> Result<(), String> {
    let _ = wire::send(w, &Message::Error { code, message: message.clone() }, WRITE_TIMEOUT_MS).await;
    let _ = tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), w.shutdown()).await;
    Err(message)
}

/// The `error` frame for a read that failed: a frame that does not decode is answered with
/// error 10 before closing; a closed or silent connection just ends.
async fn read_failed<W: AsyncWrite + Unpin>(w: &mut W, e: WireError) -> Result<(), String> {
    match e {
        WireError::Decode(m) => refuse(w, E_MALFORMED, m).await,
        other => Err(other.to_string()),
    }
}

/// What one connection was served, for the log.
#[derive(Default)]
struct Served {
    user: String,
    file: String,
    pieces: u64,
    /// Requests cancelled before they were served.
    cancelled: u64,
}

/// Answers a client that speaks the protocol without TLS (version 2 or older, or a probe) with
/// a plain `error` 1 frame, so that it learns why rather than seeing a TLS alert.
async fn refuse_plaintext(mut stream: TcpStream) -> Result<(), String> {
    let m = format!(
        "this peer speaks protocol version {PROTOCOL_VERSION}: TLS 1.3 first, then the handshake with a ticket \
         (docs/PROTOCOL.md)"
    );
    let mut out = Vec::new();
    proto::piece::encode(&Message::Error { code: E_VERSION, message: m.clone() }, &mut out);
    let _ = tokio::time::timeout(Duration::from_millis(WRITE_TIMEOUT_MS), stream.write_all(&out)).await;
    let _ = stream.shutdown().await;
    Err(m)
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The downloader's handshake as it arrived, on the TLS channel it came on.
struct Hello {
    reader: ServerReader,
    w: ServerWriter,
    channel_key: [u8; 32],
    file_sha1: [u8; 20],
    group: String,
    user: String,
    ticket: Vec<u8>,
}

/// Waits for the first byte (a plain-text client is told the version and closed), opens the
/// TLS channel and reads the handshake, all within `HELLO_TIMEOUT_MS`. `Ok(None)`: refused.
async fn hello(d: &Daemon, stream: TcpStream) -> Result<Option<Hello>, String> {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + Duration::from_millis(HELLO_TIMEOUT_MS);
    let mut first = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(FIRST_BYTE_TIMEOUT_MS), stream.peek(&mut first)).await {
        Err(_) => return Err("sent nothing".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(0)) => return Err("closed before the handshake".into()),
        Ok(Ok(_)) if first[0] != TLS_HANDSHAKE_RECORD => return refuse_plaintext(stream).await.map(|()| None),
        Ok(Ok(_)) => {}
    }
    let (tls, channel_key) = d.channel.accept(stream, left_ms(deadline)).await.map_err(|e| e.to_string())?;
    let (r, mut w) = tokio::io::split(tls);
    let mut reader = FrameReader::new(r);
    let hello = match reader.next(left_ms(deadline)).await {
        Ok(m) => m,
        Err(e) => return read_failed(&mut w, e).await.map(|()| None),
    };
    match hello {
        Message::Handshake { protocol_version, file_sha1, group, user, ticket, .. } => {
            if protocol_version != PROTOCOL_VERSION {
                let m = format!("protocol version {protocol_version} is not supported");
                return refuse(&mut w, E_VERSION, m).await.map(|()| None);
            }
            Ok(Some(Hello { reader, w, channel_key, file_sha1, group, user, ticket }))
        }
        other => {
            refuse(&mut w, E_UNEXPECTED, format!("expected a handshake, got {}", other.name())).await.map(|()| None)
        }
    }
}

/// Checks the handshake's ticket: signed by the cluster, for this file, this user, and the
/// key this connection proved. Nothing about the file is said before it checks out.
async fn admit(d: &Daemon, h: &mut Hello, from: SocketAddr, served: &Served) -> Result<Option<Right>, String> {
    let w = &mut h.w;
    if d.standing.home.session().is_none() {
        return refuse(w, E_LOGGED_OUT, "this peer is logged out; its shares are paused".into()).await.map(|()| None);
    }
    let Some(cluster_key) = d.cluster_key.get(&d.standing.tracker).await else {
        let m = "this peer cannot check tickets yet (it has not reached the tracker)".into();
        return refuse(w, E_TICKET, m).await.map(|()| None);
    };
    let want = Expect { group: &h.group, file_sha1: &h.file_sha1, user: &h.user, channel_key: &h.channel_key };
    let ticket = match tickets::check(&h.ticket, &cluster_key, tickets::now_ms(), &want) {
        Ok(t) => t,
        Err(why) => {
            tracing::warn!(peer = %from, user = %h.user, file = %served.file, "refused a download: {why}");
            return refuse(w, E_TICKET, why).await.map(|()| None);
        }
    };
    Ok(Some(Right {
        group: h.group.clone(),
        file_sha1: h.file_sha1,
        user: h.user.clone(),
        channel_key: h.channel_key,
        cluster_key,
        expires_at_ms: ticket.expires_at_ms,
    }))
}

/// What this peer has of the file `sha1_hex` in `group`: a complete share, or the verified
/// pieces of a download in progress. `Err` is the refusal's message.
async fn source_for(d: &Daemon, group: &str, sha1_hex: &str, served: &Served) -> Result<Source, String> {
    if let Some(share) = d.shares.find(group, sha1_hex) {
        let file = File::open(&share.path).map_err(|e| format!("cannot open {}: {e}", share.path))?;
        let pieces = crate::hashing::piece_count(share.size) as usize;
        return Ok(Source::Complete { file: Arc::new(file), size: share.size, pieces, share });
    }
    let Some(download) = d.downloads.table.find_active(group, sha1_hex) else {
        return Err(format!("this peer does not share {sha1_hex} in {group}"));
    };
    let Some(view) = download.serve().await else {
        return Err("this file is not available here".into());
    };
    tracing::info!(file = %served.file, "serving the verified pieces of a download in progress");
    Ok(Source::Partial { download, view })
}

async fn serve_one(
    d: &Arc<Daemon>,
    stream: TcpStream,
    from: SocketAddr,
    slot: HandshakeSlot,
    slots: &Slots,
    (spread, conn): (&Spread, u64),
    served: &mut Served,
) -> Result<(), String> {
    let Some(mut h) = hello(d, stream).await? else { return Ok(()) };
    let sha1_hex = hex::encode(h.file_sha1);
    served.file = format!("{}/{sha1_hex}", h.group);
    served.user = h.user.clone();
    let Some(right) = admit(d, &mut h, from, served).await? else { return Ok(()) };
    let _serving = match slots.serve(slot, &h.user) {
        Ok(s) => s,
        Err(full) => return refuse(&mut h.w, E_BUSY, full.to_string()).await,
    };
    let source = match source_for(d, &h.group, &sha1_hex, served).await {
        Ok(source) => source,
        Err(m) => return refuse(&mut h.w, E_NOT_SHARED, m).await,
    };
    let hello = Message::Handshake {
        protocol_version: PROTOCOL_VERSION,
        file_sha1: h.file_sha1,
        group: h.group.clone(),
        user: d.standing.home.session().map(|s| s.user).unwrap_or_default(),
        peer_id: [0u8; 16],
        ticket: Vec::new(),
    };
    wire::send(&mut h.w, &hello, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
    wire::send(&mut h.w, &source.bitfield(), WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
    // A complete share hands each piece to one of its downloaders first (`spread.rs`).
    let joined = matches!(source, Source::Complete { .. }).then(|| Joined::new(spread, &served.file, conn));
    let quiet_ms = d.faults.no_request_timeout_ms.unwrap_or(NO_REQUEST_TIMEOUT_MS);
    let haves_open = matches!(source, Source::Partial { .. });
    let mut serving = Serving {
        d,
        source,
        reader: &mut h.reader,
        w: &mut h.w,
        spread: joined.as_ref(),
        served,
        right,
        buf: Vec::new(),
        header: Vec::with_capacity(16),
        asked_at: Instant::now(),
        quiet_ms,
        inbox: VecDeque::new(),
        haves_open,
    };
    serving.run().await
}

/// What a connection is served on: the checks its ticket passed, and until when. A fresh
/// ticket must pass the same checks (same group, file, user and channel key) to extend it.
struct Right {
    group: String,
    file_sha1: [u8; 20],
    user: String,
    channel_key: [u8; 32],
    cluster_key: [u8; 32],
    expires_at_ms: u64,
}

impl Right {
    /// Milliseconds until the ticket expires (0 once it has).
    fn left_ms(&self, now_ms: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms)
    }

    /// Takes a fresh ticket sent on the connection: `Ok` extends the right to its expiry (never
    /// shortens it); `Err` says why it does not count.
    fn renew(&mut self, bytes: &[u8], now_ms: u64) -> Result<u64, String> {
        let want =
            Expect { group: &self.group, file_sha1: &self.file_sha1, user: &self.user, channel_key: &self.channel_key };
        let t = tickets::check(bytes, &self.cluster_key, now_ms, &want)?;
        self.expires_at_ms = self.expires_at_ms.max(t.expires_at_ms);
        Ok(self.expires_at_ms)
    }

    /// The refusal once the ticket has expired with no fresh one.
    fn expired(&self, now_ms: u64) -> String {
        format!(
            "the ticket expired at {} (now {now_ms}) and no fresh one came on this connection: ask the tracker for a \
             new one (members only)",
            self.expires_at_ms
        )
    }
}

/// This connection's place in a file's `Spread` record, left when dropped.
struct Joined<'a> {
    spread: &'a Spread,
    file: String,
    conn: u64,
}

impl<'a> Joined<'a> {
    fn new(spread: &'a Spread, file: &str, conn: u64) -> Self {
        spread.join(file, conn);
        Joined { spread, file: file.to_string(), conn }
    }

    fn verdict(&self, piece: u32) -> Verdict {
        self.spread.on_request(&self.file, self.conn, piece)
    }
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        self.spread.leave(&self.file, self.conn);
    }
}

/// Milliseconds left until `deadline` (at least 1).
fn left_ms(deadline: Instant) -> u64 {
    deadline.saturating_duration_since(Instant::now()).as_millis().max(1) as u64
}

type ServerWriter = WriteHalf<ServerStream>;
type ServerReader = FrameReader<tokio::io::ReadHalf<ServerStream>>;

/// One admitted connection being served.
struct Serving<'a> {
    d: &'a Daemon,
    source: Source,
    reader: &'a mut ServerReader,
    w: &'a mut ServerWriter,
    spread: Option<&'a Joined<'a>>,
    served: &'a mut Served,
    right: Right,
    /// The piece being sent (reused from one piece to the next) and its frame header.
    buf: Vec<u8>,
    header: Vec<u8>,
    /// When the downloader last asked for something.
    asked_at: Instant,
    quiet_ms: u64,
    /// Messages read ahead of the one being answered (see `read_ahead`), in the order sent.
    inbox: VecDeque<Message>,
    /// A download in progress still announces its verified pieces.
    haves_open: bool,
}

/// What the serving loop does next.
enum Next {
    Go,
    /// The connection ends (refused, or the downloader closed).
    Done(Result<(), String>),
}

impl Serving<'_> {
    async fn send(&mut self, m: &Message) -> Result<(), String> {
        wire::send(self.w, m, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())
    }

    async fn run(&mut self) -> Result<(), String> {
        loop {
            if let Next::Done(r) = self.turn().await? {
                return r;
            }
        }
    }

    async fn turn(&mut self) -> Result<Next, String> {
        // A fresh ticket counts as soon as it has arrived, not after the requests sent before
        // it are answered (a full pipeline on a slow link takes longer than a renewal's margin).
        read_ahead(self.reader, &mut self.inbox);
        if let Err(why) = take_fresh_tickets(&mut self.right, &mut self.inbox, tickets::now_ms(), self.served) {
            return Ok(Next::Done(refuse(self.w, E_TICKET, why).await));
        }
        // Nothing more is served on an expired ticket, however busy the connection is.
        let now = tickets::now_ms();
        if self.right.left_ms(now) == 0 {
            tracing::info!(user = %self.served.user, file = %self.served.file, "ended a connection whose ticket expired");
            return Ok(Next::Done(refuse(self.w, E_TICKET, self.right.expired(now)).await));
        }
        // Keepalives and `have`s do not extend this: only asking for something does.
        let quiet_deadline = self.asked_at + Duration::from_millis(self.quiet_ms);
        // A read waits no longer than the ticket lasts.
        let wait_ms = left_ms(quiet_deadline).min(self.right.left_ms(now).max(1));
        let next = if let Some(m) = self.inbox.pop_front() {
            Ok(m)
        } else {
            tokio::select! {
                m = self.reader.next(wait_ms) => m,
                h = self.source.next_have(), if self.haves_open => {
                    match h {
                        Some(out) => self.send(&out).await?,
                        None => self.haves_open = false,
                    }
                    return Ok(Next::Go);
                }
            }
        };
        let msg = match next {
            Ok(m) => m,
            // The ticket's end came first: refused at the top of the loop.
            Err(WireError::Timeout(_)) if self.right.left_ms(tickets::now_ms()) == 0 => return Ok(Next::Go),
            Err(WireError::Timeout(_)) => {
                let m = format!("no request for {} ms", self.quiet_ms);
                return Ok(Next::Done(refuse(self.w, E_IDLE, m).await));
            }
            Err(e) => return Ok(Next::Done(read_failed(self.w, e).await)),
        };
        self.on_message(msg).await
    }

    async fn on_message(&mut self, msg: Message) -> Result<Next, String> {
        match msg {
            Message::Request { piece } => self.on_request(piece).await?,
            Message::PieceListRequest { start, count } => return self.on_list_request(start, count).await,
            Message::Ticket { ticket } => {
                if let Err(why) = fresh_ticket(&mut self.right, &ticket, tickets::now_ms(), self.served) {
                    return Ok(Next::Done(refuse(self.w, E_TICKET, why).await));
                }
            }
            Message::Cancel { .. } | Message::KeepAlive | Message::Have { .. } => {}
            Message::Error { message, .. } => return Ok(Next::Done(Err(format!("peer closed: {message}")))),
            other => {
                let m = format!("unexpected {}", other.name());
                return Ok(Next::Done(refuse(self.w, E_UNEXPECTED, m).await));
            }
        }
        Ok(Next::Go)
    }

    async fn on_request(&mut self, piece: u32) -> Result<(), String> {
        self.asked_at = Instant::now();
        // A downloader cancels a request whose piece another peer delivered first (endgame):
        // read what it already sent, and skip this piece if a cancel follows.
        read_ahead(self.reader, &mut self.inbox);
        if let Some(at) = self.inbox.iter().position(|m| matches!(m, Message::Cancel { piece: p } if *p == piece)) {
            self.inbox.remove(at);
            self.served.cancelled += 1;
            return Ok(());
        }
        if !self.source.has(piece) || self.spread.is_some_and(|j| j.verdict(piece) == Verdict::AskElsewhere) {
            return self.send(&Message::Reject { piece }).await;
        }
        let (b, read) = self.source.read(piece, std::mem::take(&mut self.buf)).await?;
        if self.d.faults.serve_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.d.faults.serve_delay_ms)).await;
        }
        let sent = match read {
            Ok(()) => {
                self.header.clear();
                proto::piece::encode_piece_header(piece, b.len(), &mut self.header);
                let sent = wire::write_parts(self.w, &[&self.header, &b], WRITE_TIMEOUT_MS).await;
                self.served.pieces += u64::from(sent.is_ok());
                sent.map_err(|e| e.to_string())
            }
            Err(e) => {
                tracing::warn!(piece, "cannot read piece: {e}");
                self.send(&Message::Reject { piece }).await
            }
        };
        self.buf = b;
        sent
    }

    async fn on_list_request(&mut self, start: u32, count: u32) -> Result<Next, String> {
        self.asked_at = Instant::now();
        let n = self.source.num_pieces();
        if start as u64 + count as u64 > n {
            let m = format!("the piece list has {n} hashes; asked for {count} from {start}");
            return Ok(Next::Done(refuse(self.w, E_BAD_RANGE, m).await));
        }
        let hashes = match list_range(self.d, &self.source, start, count).await {
            Ok(h) => h,
            Err((code, m)) => return Ok(Next::Done(refuse(self.w, code, m).await)),
        };
        let answer = faulty_list(self.d.faults.bad_piece_list, n as u32, start, hashes);
        self.send(&answer).await?;
        Ok(Next::Go)
    }
}

/// Takes a fresh ticket sent on the connection (`Right::renew`), logging either way.
fn fresh_ticket(right: &mut Right, ticket: &[u8], now_ms: u64, served: &Served) -> Result<(), String> {
    match right.renew(ticket, now_ms) {
        Ok(until) => {
            tracing::info!(user = %served.user, file = %served.file, until, "a fresh ticket on an open connection");
            Ok(())
        }
        Err(why) => {
            tracing::warn!(user = %served.user, file = %served.file, "refused a fresh ticket: {why}");
            Err(why)
        }
    }
}

/// Takes every fresh ticket among the messages read ahead, out of their turn: the requests
/// before them wait for pieces, a renewal must not.
fn take_fresh_tickets(
    right: &mut Right,
    inbox: &mut VecDeque<Message>,
    now_ms: u64,
    served: &Served,
) -> Result<(), String> {
    let mut i = 0;
    while i < inbox.len() {
        if let Some(Message::Ticket { ticket }) = inbox.get(i) {
            let ticket = ticket.clone();
            inbox.remove(i);
            fresh_ticket(right, &ticket, now_ms, served)?;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Most messages read ahead of the one being answered: a downloader keeps at most
/// `conn::PIPELINE_DEPTH` requests outstanding, plus its cancels, `have`s and keepalives.
const MAX_READ_AHEAD: usize = 64;

/// Moves the messages the peer has already sent (whole frames in the reader's buffer or the
/// socket's) into `inbox`, without waiting for more. An error is left for the next blocking read
/// to report (a closed stream or a bad frame stays that way).
fn read_ahead(reader: &mut ServerReader, inbox: &mut VecDeque<Message>) {
    while inbox.len() < MAX_READ_AHEAD {
        match reader.next_ready() {
            Some(Ok(m)) => inbox.push_back(m),
            _ => return,
        }
    }
}

/// Hashes `start..start + count` of the piece list of what `source` serves (the range is
/// within the list, `count` at most `MAX_PIECE_LIST_HASHES_PER_FRAME`, checked by the codec).
async fn list_range(d: &Daemon, source: &Source, start: u32, count: u32) -> Result<Vec<PieceHash>, (u16, String)> {
    debug_assert!(count as usize <= MAX_PIECE_LIST_HASHES_PER_FRAME);
    let (start, end) = (start as usize, start as usize + count as usize);
    match source {
        Source::Partial { view, .. } => match view.list.borrow().as_ref() {
            Some(list) => Ok(list[start..end].to_vec()),
            None => Err((E_LIST_NOT_YET, "this peer has not verified the piece list yet".into())),
        },
        Source::Complete { share, pieces, .. } => {
            let n = *pieces as u64;
            if let Some(h) = stored_range(d, share, n, start as u64, count as u64).await {
                return Ok(h);
            }
            // Missing: rebuild it, once, then read it like any other.
            let _one_at_a_time = d.list_rebuild.lock().await;
            if let Some(h) = stored_range(d, share, n, start as u64, count as u64).await {
                return Ok(h);
            }
            let list = rebuild_list(d, share).await?;
            Ok(list[start..end].to_vec())
        }
    }
}

/// The range from the stored list of `share`, if it is stored.
async fn stored_range(d: &Daemon, share: &Share, n: u64, start: u64, count: u64) -> Option<Vec<PieceHash>> {
    // The share may have been recorded without a key (older version) and rebuilt since.
    let key = share.piece_list_sha1.clone().or_else(|| d.shares.get(&share.group, &share.name)?.piece_list_sha1)?;
    let store = d.piece_lists.clone();
    match tokio::task::spawn_blocking(move || store.read_range(&key, n, start, count)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::warn!(name = %share.name, "cannot read the stored piece list: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Hashes the shared file again and stores its list. The work runs to the end on the blocking
/// pool even if the requester goes away, so its next attempt finds the list stored.
async fn rebuild_list(d: &Daemon, share: &Share) -> Result<Arc<Vec<PieceHash>>, (u16, String)> {
    tracing::info!(name = %share.name, path = %share.path, "rebuilding a missing piece list from the shared file");
    let (store, s) = (d.piece_lists.clone(), share.clone());
    let rebuilt = tokio::task::spawn_blocking(move || -> Result<(String, Vec<PieceHash>), String> {
        let list = crate::hashing::piece_hashes(std::path::Path::new(&s.path), s.size)
            .map_err(|e| format!("cannot read {}: {e}", s.path))?;
        let key = hex::encode(piece_list_sha1(&list));
        if s.piece_list_sha1.as_ref().is_some_and(|k| !k.eq_ignore_ascii_case(&key)) {
            return Err(format!("{} has changed since it was shared", s.path));
        }
        store.save(&key, &list).map_err(|e| format!("cannot store the piece list: {e}"))?;
        Ok((key, list))
    })
    .await
    .map_err(|e| (E_NOT_SHARED, e.to_string()))?;
    match rebuilt {
        Ok((key, list)) => {
            if share.piece_list_sha1.is_none() {
                d.shares.set_piece_list_sha1(&share.group, &share.name, &key);
            }
            Ok(Arc::new(list))
        }
        Err(m) => {
            tracing::warn!(name = %share.name, "cannot serve the piece list: {m}");
            Err((E_NOT_SHARED, format!("this peer cannot serve the piece list of {}: {m}", share.name)))
        }
    }
}

/// The `piece_list` answer, made wrong on purpose when a test asks this daemon to misbehave.
fn faulty_list(fault: Option<BadPieceList>, num_pieces: u32, start: u32, mut hashes: Vec<PieceHash>) -> Message {
    match fault {
        None => Message::PieceList { num_pieces, start, hashes },
        Some(BadPieceList::Corrupt) => {
            if let Some(h) = hashes.first_mut() {
                h[0] ^= 0xff;
            }
            Message::PieceList { num_pieces, start, hashes }
        }
        Some(BadPieceList::Short) => {
            let short = num_pieces.saturating_sub(1);
            hashes.truncate(short.saturating_sub(start) as usize);
            Message::PieceList { num_pieces: short, start: start.min(short), hashes }
        }
    }
}

#[cfg(test)]
mod right_tests {
    use super::*;
    use proto::ticket::{Ticket, TicketSigner};

    #[test]
    fn a_fresh_ticket_extends_the_right_only_when_it_passes_the_handshakes_checks() {
        let signer = TicketSigner::from_pkcs8(&TicketSigner::generate_pkcs8()).unwrap();
        let (sha, key, now) = ([1u8; 20], [2u8; 32], 1_000_000u64);
        let ticket = |user: &str, peer_key: [u8; 32], expires_at_ms: u64| {
            signer.sign(&Ticket { group: "g".into(), file_sha1: sha, user: user.into(), peer_key, expires_at_ms })
        };
        let mut right = Right {
            group: "g".into(),
            file_sha1: sha,
            user: "bob".into(),
            channel_key: key,
            cluster_key: signer.public_key(),
            expires_at_ms: now + 1_000,
        };
        assert_eq!(right.left_ms(now), 1_000);
        assert_eq!(right.left_ms(now + 5_000), 0);
        assert_eq!(right.renew(&ticket("bob", key, now + 4_000), now), Ok(now + 4_000));
        // An older ticket never shortens it; another user's or another key's never counts.
        assert_eq!(right.renew(&ticket("bob", key, now + 2_000), now), Ok(now + 4_000));
        assert!(right.renew(&ticket("mallory", key, now + 9_000), now).unwrap_err().contains("mallory"));
        assert!(right.renew(&ticket("bob", [3; 32], now + 9_000), now).unwrap_err().contains("another peer key"));
        assert!(right.renew(&[0xab; 100], now).is_err());
        assert_eq!(right.expires_at_ms, now + 4_000, "refusals changed nothing");
        assert!(right.expired(now + 5_000).contains("expired"));

        // Fresh tickets read ahead are taken out of their turn; the requests stay in order.
        let mut inbox: VecDeque<Message> = VecDeque::from(vec![
            Message::Request { piece: 1 },
            Message::Ticket { ticket: ticket("bob", key, now + 6_000) },
            Message::Request { piece: 2 },
        ]);
        let served = Served::default();
        take_fresh_tickets(&mut right, &mut inbox, now, &served).unwrap();
        assert_eq!(Vec::from(inbox), vec![Message::Request { piece: 1 }, Message::Request { piece: 2 }]);
        assert!(right.expires_at_ms >= now + 6_000 - 1);
        let mut bad = VecDeque::from(vec![Message::Ticket { ticket: ticket("mallory", key, now + 9_000) }]);
        assert!(take_fresh_tickets(&mut right, &mut bad, now, &served).is_err());
    }
}
