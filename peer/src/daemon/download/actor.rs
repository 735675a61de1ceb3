//! One download, one task: the actor that owns a download's record, its picker, its `.part`
//! file, its verified piece list and, while it runs, its swarm (`engine.rs` decides, this task
//! applies the decisions). Everything else talks to it through channels:
//!
//! - the control side (`manage.rs`, `start`, the piece server) sends a `Command` on the
//!   download's bounded mailbox and waits for the answer on a oneshot;
//! - connection tasks (`conn.rs`) send `ConnEvent`s on the swarm's bounded inbox, with a
//!   oneshot where they need an answer (their peer's kind, the next requests, the piece list);
//! - helper tasks (the swarm-slot wait, the `.part` re-verification, the tracker refresh, the
//!   final placement) send their outcome on the same inbox, tagged with the run they belong to;
//! - readers see a `Snapshot` through a `watch` (`show-downloads`, downloads.json) and the
//!   verified pieces through a `broadcast` (the piece server, the connections' cancels).
//!
//! No lock is shared between a download's tasks: the state below is the actor's alone, and
//! every transition of STATE.md happens here, in one place, one message at a time.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::api::FileMetaBody;
#[cfg(test)]
use tokio::sync::oneshot;
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::conn::{self, ConnCtx};
use super::engine::{Action, ConnEnd, Engine, Event, Failure};
use super::env::Downloads;
use super::finish::{self, Reverified};
use super::list_turn::ListTurns;
use super::messages::{Command, ConnEvent, ConnId, DownloadHandle, One, PartialView, Picked, Snapshot, TicketRx};
use super::ops::{verdict, Op, Verdict};
use super::picker::{PeerKind, Picker};
use super::record::DownloadRecord;
use super::swarm::{self, HeldTicket};
use crate::control::{DownloadFailure, DownloadState};
use crate::hashing::{piece_count, piece_range};
use crate::progress::{RateMeter, RATE_WINDOW};

/// Commands a download's mailbox holds at most; a sender waits for room.
pub const MAILBOX_CAPACITY: usize = 16;
/// Events from connections the download's inbox holds at most: a few per connection
/// (`engine::MAX_PEERS_PER_DOWNLOAD`) in flight at once.
pub const CONN_INBOX_CAPACITY: usize = 256;
/// Outcomes of helper tasks waiting at once (at most one refresh, one re-verification, one
/// slot wait and one placement run per download).
const HELPER_INBOX_CAPACITY: usize = 8;
/// Verified pieces announced ahead of the slowest listener (a lagging one re-reads the bitfield).
const HAVE_CAPACITY: usize = 1024;
/// Most time the connections of a stopping swarm get to end.
const DRAIN_MS: u64 = 5_000;
/// How often the rate meter is sampled while the swarm runs.
const RATE_SAMPLE_MS: u64 = 500;

/// How a download begins when its task starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Begin {
    /// As it is (paused, complete, failed; or a test drives its connections).
    Idle,
    /// The swarm starts on the `.part` just created.
    Fresh,
    /// The `.part` is reopened and re-verified first (a restart).
    Reverify,
}

/// Starts the task of a download; `part` is its `.part` when `begin` is `Fresh` (or a test's).
pub fn spawn(
    env: &Downloads,
    record: DownloadRecord,
    have: Vec<bool>,
    part: Option<File>,
    begin: Begin,
) -> DownloadHandle {
    let size = record.meta.size;
    let done: u64 =
        have.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| piece_range(size, i as u64).1 as u64).sum();
    let bytes_done = match record.state {
        DownloadState::Complete => size,
        DownloadState::Paused => record.bytes_done.min(size),
        _ => done,
    };
    // An empty file's piece list is known without asking anyone (and checked by `check_meta`).
    let list = ListTurns::new((size == 0).then(|| Arc::new(Vec::new())));
    let (snap_tx, snap) = watch::channel(Snapshot { record, bytes_done, peers: 0, rate_bytes_per_s: 0 });
    let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
    let (inbox_tx, inbox) = mpsc::channel(HELPER_INBOX_CAPACITY);
    let (conn_tx, conn_rx) = mpsc::channel(CONN_INBOX_CAPACITY);
    let (have_tx, _) = broadcast::channel(HAVE_CAPACITY);
    let actor = Download {
        env: env.clone(),
        picker: Picker::new(have),
        part: part.map(Arc::new),
        list,
        bytes_done,
        snap: snap_tx,
        have_tx,
        inbox_tx,
        inbox,
        conn_tx,
        conn_rx,
        run: 0,
        phase: Phase::Idle,
        peers: HashMap::new(),
        next_conn: 0,
        #[cfg(test)]
        probes: HashMap::new(),
    };
    tokio::spawn(actor.run(rx, begin));
    DownloadHandle::new(tx, snap)
}

/// What the swarm side of a download is doing.
enum Phase {
    /// Nothing runs (paused, complete, failed, or stopped by the daemon's shutdown).
    Idle,
    /// Downloading, waiting for one of the daemon's swarm slots.
    WaitingSlot {
        stop: CancellationToken,
        reverify: bool,
    },
    /// Downloading, the `.part` being re-verified.
    Reverifying {
        permit: OwnedSemaphorePermit,
    },
    Running(Box<Swarm>),
    /// Every piece verified, the file being placed.
    Finishing,
}

/// One connection as its download sees it.
struct PeerEntry {
    addr: String,
    /// Its pieces (the bitfield, then each `have`, less what it rejected) once it joined.
    has: Vec<bool>,
    kind: Option<PeerKind>,
    /// Verified pieces when it started: whether it brought any when it ends.
    done_at_connect: usize,
}

/// A running swarm: the engine and the connections it opened.
struct Swarm {
    engine: Engine,
    started: Instant,
    /// Ends the connections (a child of the daemon's shutdown).
    conns_stop: CancellationToken,
    ticket: Option<HeldTicket>,
    refreshing: bool,
    refresh_again: bool,
    next_refresh: Instant,
    next_sample: Instant,
    rate: RateMeter,
    _permit: OwnedSemaphorePermit,
}

/// Outcomes of helper tasks, tagged with the run (`Download::run`) they were started for.
enum Internal {
    Slot { run: u64, permit: OwnedSemaphorePermit },
    Reverified { run: u64, result: Result<Reverified, String> },
    Refreshed { run: u64, refresh: swarm::Refresh },
    Placed { result: Result<(), DownloadFailure> },
}

/// The actor's state: the download's, owned here only.
struct Download {
    /// The daemon's handles this download uses.
    env: Downloads,
    picker: Picker,
    /// The `.part` while downloading.
    part: Option<Arc<File>>,
    /// The piece list, once verified, and the connections' turns to fetch it.
    list: ListTurns,
    bytes_done: u64,
    snap: watch::Sender<Snapshot>,
    have_tx: broadcast::Sender<u32>,
    /// Outcomes of the helper tasks.
    inbox_tx: mpsc::Sender<Internal>,
    inbox: mpsc::Receiver<Internal>,
    /// Events of the connections.
    conn_tx: mpsc::Sender<ConnEvent>,
    conn_rx: mpsc::Receiver<ConnEvent>,
    /// Bumped each time the swarm side starts or stops: outcomes of an older run are dropped.
    run: u64,
    phase: Phase,
    /// The open connections (a swarm's, or a test's probes).
    peers: HashMap<ConnId, PeerEntry>,
    next_conn: ConnId,
    #[cfg(test)]
    probes: HashMap<ConnId, oneshot::Sender<ConnEnd>>,
}

impl Download {
    fn record(&self) -> DownloadRecord {
        self.snap.borrow().record.clone()
    }

    fn state(&self) -> DownloadState {
        self.snap.borrow().record.state
    }

    fn meta(&self) -> FileMetaBody {
        self.snap.borrow().record.meta.clone()
    }

    /// Changes the record, publishes it and writes downloads.json.
    fn update(&mut self, f: impl FnOnce(&mut DownloadRecord)) {
        let bytes = self.bytes_done;
        self.snap.send_modify(|s| {
            f(&mut s.record);
            s.bytes_done = bytes;
        });
        self.env.table.save();
    }

    fn publish_bytes(&self) {
        let bytes = self.bytes_done;
        self.snap.send_modify(|s| s.bytes_done = bytes);
    }

    async fn run(mut self, mut mailbox: mpsc::Receiver<Command>, begin: Begin) {
        match begin {
            Begin::Idle => {}
            Begin::Fresh => self.start_swarm(false),
            Begin::Reverify => self.start_swarm(true),
        }
        let shutdown = self.env.shutdown.clone();
        loop {
            let wake = self.wake_at();
            let running = !matches!(self.phase, Phase::Idle | Phase::Finishing);
            tokio::select! {
                c = mailbox.recv() => match c {
                    Some(c) => self.on_command(c).await,
                    // Dropped from the table (cancelled, forgotten, replaced): nothing is left to do.
                    None => {
                        self.stop_swarm().await;
                        return;
                    }
                },
                Some(e) = self.conn_rx.recv() => self.on_conn(e),
                Some(m) = self.inbox.recv() => self.on_internal(m).await,
                _ = tokio::time::sleep_until(wake.into()), if running => self.on_wake().await,
                _ = shutdown.cancelled(), if running => self.stop_swarm().await,
            }
        }
    }

    /// When the swarm next needs the actor without a message: a refresh or a rate sample.
    fn wake_at(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        match &self.phase {
            Phase::Running(s) => {
                let refresh = if s.refreshing { far } else { s.next_refresh };
                refresh.min(s.next_sample)
            }
            _ => far,
        }
    }

    async fn on_command(&mut self, c: Command) {
        match c {
            Command::Pause { by_logout, reply } => {
                let one = self.pause(by_logout).await;
                let _ = reply.send(one);
            }
            Command::Resume { only_after_logout, reply } => {
                let one = self.resume(only_after_logout);
                let _ = reply.send(one);
            }
            Command::Cancel { reply } => {
                let one = self.cancel().await;
                let _ = reply.send(one);
            }
            Command::Forget { reply } => {
                let one = match verdict(Op::Forget, self.state()) {
                    Verdict::Act => One::Acted,
                    _ => One::Skipped(self.state()),
                };
                let _ = reply.send(one);
            }
            Command::Serve { reply } => {
                let _ = reply.send(self.partial_view());
            }
            #[cfg(test)]
            Command::Connect { sharer, ticket, reply } => {
                let conn = self.spawn_conn(sharer, ticket, CancellationToken::new());
                self.probes.insert(conn, reply);
            }
        }
    }

    fn partial_view(&self) -> Option<PartialView> {
        if self.state() != DownloadState::Downloading {
            return None;
        }
        Some(PartialView {
            file: self.part.clone()?,
            size: self.meta().size,
            have: self.picker.have_vec().to_vec(),
            have_rx: self.have_tx.subscribe(),
            list: self.list.subscribe(),
        })
    }

    async fn pause(&mut self, by_logout: bool) -> One {
        match verdict(Op::Pause, self.state()) {
            Verdict::Act => {}
            Verdict::Already => return One::Already,
            Verdict::Skip => return One::Skipped(self.state()),
        }
        if matches!(self.phase, Phase::Finishing) {
            return One::Finishing;
        }
        self.stop_swarm().await;
        self.paused(by_logout);
        One::Acted
    }

    /// The swarm has stopped: `paused`, with the verified bytes what a paused download shows
    /// (`by_logout`: the next login resumes it); the `.part` is closed and kept.
    fn paused(&mut self, by_logout: bool) {
        self.part = None;
        let bytes = self.bytes_done;
        self.update(|r| {
            r.state = DownloadState::Paused;
            r.error = None;
            r.bytes_done = bytes;
            r.paused_by_logout = by_logout;
            if by_logout {
                tracing::info!(name = %r.name, group = %r.group, "logged out: download paused until the next login");
            } else {
                tracing::info!(name = %r.name, group = %r.group, dest = %r.dest, bytes_done = bytes, "download paused");
            }
        });
    }

    fn resume(&mut self, only_after_logout: bool) -> One {
        let (state, by_logout) = self.with(|r| (r.state, r.paused_by_logout));
        if only_after_logout && !(state == DownloadState::Paused && by_logout) {
            return One::Skipped(state);
        }
        match verdict(Op::Resume, state) {
            Verdict::Act => {}
            Verdict::Already => return One::Already,
            Verdict::Skip => return One::Skipped(state),
        }
        self.update(|r| {
            r.state = DownloadState::Downloading;
            r.error = None;
            r.paused_by_logout = false;
            tracing::info!(name = %r.name, group = %r.group, dest = %r.dest, "download resumed");
        });
        self.start_swarm(true);
        One::Acted
    }

    fn with<T>(&self, f: impl FnOnce(&DownloadRecord) -> T) -> T {
        f(&self.snap.borrow().record)
    }

    async fn cancel(&mut self) -> One {
        let state = self.state();
        if verdict(Op::Cancel, state) != Verdict::Act {
            return One::Skipped(state);
        }
        if matches!(self.phase, Phase::Finishing) {
            return One::Finishing;
        }
        self.stop_swarm().await;
        self.part = None;
        One::Acted
    }

    /// Starts the swarm side: a slot first, then (with `reverify`) the `.part` re-verified.
    fn start_swarm(&mut self, reverify: bool) {
        self.run += 1;
        let run = self.run;
        let slots = self.env.table.swarm_slots();
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::info!(
                    running = super::table::MAX_RUNNING_SWARMS,
                    "waiting for a running download to end before this one starts"
                );
                let stop = self.env.shutdown.child_token();
                let (tx, s) = (self.inbox_tx.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        Ok(permit) = slots.acquire_owned() => { let _ = tx.send(Internal::Slot { run, permit }).await; }
                        _ = s.cancelled() => {}
                    }
                });
                // Re-verification waits for the slot too, as the swarm would.
                self.phase = Phase::WaitingSlot { stop, reverify };
                return;
            }
        };
        self.slot_granted(permit, reverify);
    }

    fn slot_granted(&mut self, permit: OwnedSemaphorePermit, reverify: bool) {
        if !reverify {
            self.begin_running(permit);
            return;
        }
        let run = self.run;
        let record = self.record();
        let store = self.env.piece_lists.clone();
        let tx = self.inbox_tx.clone();
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || finish::reverify(&record, &store))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            let _ = tx.send(Internal::Reverified { run, result }).await;
        });
        self.phase = Phase::Reverifying { permit };
    }

    fn on_reverified(&mut self, result: Result<Reverified, String>) {
        let Phase::Reverifying { .. } = self.phase else { return };
        let Phase::Reverifying { permit } = std::mem::replace(&mut self.phase, Phase::Idle) else { return };
        let Reverified { file, list, have } = match result {
            Ok(r) => r,
            Err(e) => return self.fail(DownloadFailure::other(e)),
        };
        let meta = self.meta();
        match list {
            Some(l) => {
                self.list.set(Arc::new(l));
            }
            None if meta.size > 0 => {
                tracing::info!(name = %meta.name, "the piece list is not stored: fetching it again from a sharer");
            }
            None => {}
        }
        let done = have.iter().filter(|h| **h).count();
        self.bytes_done =
            have.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| piece_range(meta.size, i as u64).1 as u64).sum();
        tracing::info!(name = %meta.name, verified_pieces = done, "resuming download");
        self.picker = Picker::new(have);
        self.part = Some(Arc::new(file));
        self.publish_bytes();
        self.begin_running(permit);
    }

    fn begin_running(&mut self, permit: OwnedSemaphorePermit) {
        let (group, name) = self.with(|r| (r.group.clone(), r.name.clone()));
        let now = Instant::now();
        let swarm = Swarm {
            engine: Engine::new(&group, &name, self.picker.done_count(), 0),
            started: now,
            conns_stop: self.env.shutdown.child_token(),
            ticket: None,
            refreshing: false,
            refresh_again: false,
            next_refresh: now,
            next_sample: now,
            rate: RateMeter::new(RATE_WINDOW),
            _permit: permit,
        };
        self.phase = Phase::Running(Box::new(swarm));
        let actions = self.feed_progress();
        if actions.is_empty() {
            self.refresh();
        } else {
            self.apply(actions);
        }
    }

    fn swarm(&mut self) -> Option<&mut Swarm> {
        match &mut self.phase {
            Phase::Running(s) => Some(s),
            _ => None,
        }
    }

    /// The engine's `Progress` event now.
    fn feed_progress(&mut self) -> Vec<Action> {
        let (done, total) = (self.picker.done_count(), self.picker.len());
        match &mut self.phase {
            Phase::Running(s) => {
                let now = s.started.elapsed().as_millis() as u64;
                s.engine.handle(Event::Progress { done, total }, now)
            }
            _ => Vec::new(),
        }
    }

    /// Asks the tracker who shares the file now (and renews the ticket when due), in a task of
    /// its own: the answer comes back as `Internal::Refreshed`.
    fn refresh(&mut self) {
        let run = self.run;
        let (group, name) = self.with(|r| (r.group.clone(), r.name.clone()));
        let (standing, tx) = (self.env.standing.clone(), self.inbox_tx.clone());
        let Some(s) = self.swarm() else { return };
        if s.refreshing {
            s.refresh_again = true;
            return;
        }
        s.refreshing = true;
        let due = s.ticket.as_ref().map_or(true, |t| crate::daemon::tickets::now_ms() >= t.renew_at_ms);
        let stop = s.conns_stop.clone();
        tokio::spawn(async move {
            let Some(refresh) = swarm::refresh(&standing, &stop, &group, &name, due).await else { return };
            let _ = tx.send(Internal::Refreshed { run, refresh }).await;
        });
    }

    fn on_refreshed(&mut self, refresh: swarm::Refresh) {
        let Some(s) = self.swarm() else { return };
        s.refreshing = false;
        if let Some((bytes, renew_at_ms)) = refresh.ticket {
            match &mut s.ticket {
                Some(held) => held.renew(bytes, renew_at_ms),
                None => s.ticket = Some(HeldTicket::new(bytes, renew_at_ms)),
            }
        }
        if let Event::LoggedOut = refresh.event {
            return self.end_logged_out();
        }
        let mut event = refresh.event;
        match &mut event {
            Event::Listed { ticket, .. } | Event::ListUnavailable { ticket } => *ticket = s.ticket.is_some(),
            _ => {}
        }
        let mut actions = self.feed_progress();
        if actions.is_empty() {
            let Some(s) = self.swarm() else { return };
            let now = s.started.elapsed().as_millis() as u64;
            actions = s.engine.handle(event, now);
        }
        self.apply(actions);
        let Some(s) = self.swarm() else { return };
        s.next_refresh = Instant::now() + Duration::from_millis(swarm::next_wake_ms(&s.engine, s.ticket.as_ref()));
        if std::mem::take(&mut s.refresh_again) {
            self.refresh();
        }
    }

    async fn on_wake(&mut self) {
        let bytes = self.bytes_done;
        let Some(s) = self.swarm() else { return };
        let now = Instant::now();
        if now >= s.next_sample {
            s.rate.push(now, bytes);
            s.next_sample = now + Duration::from_millis(RATE_SAMPLE_MS);
            let rate = s.rate.rate(now, bytes);
            self.snap.send_modify(|x| x.rate_bytes_per_s = rate);
        }
        let Some(s) = self.swarm() else { return };
        if !s.refreshing && now >= s.next_refresh {
            self.refresh();
        }
    }

    /// Carries out the engine's decisions.
    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Connect(sharer) => self.connect(sharer),
                Action::Complete => return self.complete(),
                Action::Fail(f) => return self.end_failed(f),
                Action::Stop => return self.end_stopped(),
            }
        }
        self.publish_peers();
    }

    /// No swarm runs: no sharer connected, no rate.
    fn publish_idle(&self) {
        self.snap.send_modify(|x| {
            x.peers = 0;
            x.rate_bytes_per_s = 0;
        });
    }

    fn publish_peers(&self) {
        let peers = match &self.phase {
            Phase::Running(s) => s.engine.connected(),
            _ => 0,
        };
        self.snap.send_modify(|x| x.peers = peers);
    }

    fn connect(&mut self, sharer: super::engine::Sharer) {
        let Some(s) = self.swarm() else { return };
        let Some(ticket) = s.ticket.as_ref().map(|t| t.subscribe()) else {
            // The engine connects only with a ticket; should it not, the connection ends at
            // once, as a failed one.
            let conn = self.next_conn;
            self.next_conn += 1;
            self.peers.insert(conn, PeerEntry { addr: sharer.addr, has: Vec::new(), kind: None, done_at_connect: 0 });
            let end = ConnEnd::Failed("no ticket from the tracker".into());
            let _ = self.conn_tx.try_send(ConnEvent::Ended { conn, outstanding: Vec::new(), end });
            return;
        };
        tracing::info!(peer = %sharer.addr, "connecting to sharer");
        let stop = s.conns_stop.clone();
        self.spawn_conn(sharer, ticket, stop);
    }

    fn spawn_conn(&mut self, sharer: super::engine::Sharer, ticket: TicketRx, stop: CancellationToken) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        let done_at_connect = self.picker.done_count();
        self.peers.insert(conn, PeerEntry { addr: sharer.addr.clone(), has: Vec::new(), kind: None, done_at_connect });
        let (group, meta) = self.with(|r| (r.group.clone(), r.meta.clone()));
        let ctx = ConnCtx {
            conn,
            standing: self.env.standing.clone(),
            channel: self.env.channel.clone(),
            piece_lists: self.env.piece_lists.clone(),
            group,
            meta,
            part: self.part.clone(),
            events: self.conn_tx.clone(),
            verified: self.have_tx.subscribe(),
            ticket,
        };
        tokio::spawn(conn::run(ctx, sharer, stop));
        conn
    }

    async fn on_internal(&mut self, m: Internal) {
        match m {
            Internal::Slot { run, permit } if run == self.run => {
                if let Phase::WaitingSlot { reverify, .. } = self.phase {
                    self.slot_granted(permit, reverify);
                }
            }
            Internal::Reverified { run, result } if run == self.run => self.on_reverified(result),
            Internal::Refreshed { run, refresh } if run == self.run => self.on_refreshed(refresh),
            Internal::Placed { result } => self.on_placed(result),
            _ => {}
        }
    }

    fn peer(&mut self, conn: ConnId) -> Option<&mut PeerEntry> {
        self.peers.get_mut(&conn)
    }

    fn on_conn(&mut self, e: ConnEvent) {
        match e {
            ConnEvent::Joined { conn, has, reply } | ConnEvent::Bitfield { conn, has, reply } => {
                let kind = self.picker_peer(conn, has);
                if let Some(kind) = kind {
                    let _ = reply.send(kind);
                }
            }
            ConnEvent::Have { conn, piece } => {
                let Some(p) = self.peer(conn) else { return };
                let Some(h) = p.has.get_mut(piece as usize) else { return };
                if !*h {
                    *h = true;
                    let kind = p.kind.unwrap_or(PeerKind::Partial);
                    self.picker.peer_got(piece, kind);
                }
            }
            ConnEvent::SetHas { conn, piece, has } => {
                if let Some(h) = self.peer(conn).and_then(|p| p.has.get_mut(piece as usize)) {
                    *h = has;
                }
            }
            ConnEvent::Pick { conn, mut outstanding, want, reply } => {
                let done = self.pick(conn, &mut outstanding, want);
                let _ = reply.send(Picked { outstanding, done });
            }
            ConnEvent::Release { conn, piece } => {
                if self.peers.contains_key(&conn) {
                    self.picker.release(piece);
                }
            }
            ConnEvent::Verified { piece, len, ok } => self.on_verified(piece, len, ok),
            ConnEvent::ListTurn { conn, reply } => self.list.turn(conn, reply),
            ConnEvent::ListFetched { conn, list } => self.list.fetched(conn, list),
            ConnEvent::Ended { conn, outstanding, end } => self.on_ended(conn, outstanding, end),
        }
    }

    /// Counts `conn`'s sharer in the picker with `has` (replacing what it had).
    fn picker_peer(&mut self, conn: ConnId, has: Vec<bool>) -> Option<PeerKind> {
        let p = self.peers.get_mut(&conn)?;
        if let Some(kind) = p.kind {
            self.picker.remove_peer(&p.has, kind);
        }
        let kind = self.picker.add_peer(&has);
        p.has = has;
        p.kind = Some(kind);
        Some(kind)
    }

    /// Fills `outstanding` up to `want`; true when the download has every piece and this
    /// connection waits for nothing.
    fn pick(&mut self, conn: ConnId, outstanding: &mut Vec<u32>, want: usize) -> bool {
        if self.picker.is_complete() && outstanding.is_empty() {
            return true;
        }
        let Some(p) = self.peers.get(&conn) else { return false };
        let Some(kind) = p.kind else { return false };
        let mut rng = rand::thread_rng();
        while outstanding.len() < want {
            match self.picker.pick(&p.has, kind, outstanding, &mut rng) {
                Some(i) => outstanding.push(i),
                None => break,
            }
        }
        false
    }

    fn on_verified(&mut self, piece: u32, len: u64, ok: bool) {
        if !self.record_verified(piece, len, ok) {
            return;
        }
        self.publish_bytes();
        let actions = self.feed_progress();
        if !actions.is_empty() {
            self.apply(actions);
        }
    }

    /// A connection's word on one piece: a piece that failed its check goes back to the picker;
    /// a good one is counted and announced once. True when it newly completed a piece.
    fn record_verified(&mut self, piece: u32, len: u64, ok: bool) -> bool {
        if !ok {
            self.picker.release(piece);
            return false;
        }
        if !self.picker.complete(piece) {
            return false;
        }
        self.bytes_done += len;
        let _ = self.have_tx.send(piece);
        true
    }

    /// `conn` is gone: its requests go back to the pool, its sharer out of the picker's
    /// counts, its turn for the piece list to the next. Its entry, if it had one.
    fn forget_conn(&mut self, conn: ConnId, outstanding: &[u32]) -> Option<PeerEntry> {
        let p = self.peers.remove(&conn)?;
        for &i in outstanding {
            self.picker.release(i);
        }
        if let Some(kind) = p.kind {
            self.picker.remove_peer(&p.has, kind);
        }
        self.list.fetched(conn, None);
        Some(p)
    }

    fn on_ended(&mut self, conn: ConnId, outstanding: Vec<u32>, end: ConnEnd) {
        let Some(p) = self.forget_conn(conn, &outstanding) else { return };
        #[cfg(test)]
        if let Some(reply) = self.probes.remove(&conn) {
            let _ = reply.send(end);
            return;
        }
        let progressed = self.picker.done_count() > p.done_at_connect;
        let Phase::Running(s) = &mut self.phase else { return };
        let now = s.started.elapsed().as_millis() as u64;
        let mut actions = s.engine.handle(Event::ConnEnded { addr: p.addr, end, progressed }, now);
        actions.extend(self.feed_progress());
        self.publish_peers();
        if actions.is_empty() {
            // A connection that ended asks for a refresh now (to reconnect, or to fail).
            self.refresh();
        } else {
            self.apply(actions);
        }
    }

    /// Stops whatever the swarm side runs and waits (up to `DRAIN_MS`) for its connections to
    /// end; the record is left as it is. Pieces verified meanwhile still count.
    async fn stop_swarm(&mut self) {
        self.run += 1;
        let swarm = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::WaitingSlot { stop, .. } => {
                stop.cancel();
                None
            }
            Phase::Running(s) => Some(s),
            Phase::Finishing => {
                self.phase = Phase::Finishing;
                None
            }
            _ => None,
        };
        self.publish_idle();
        let Some(s) = swarm else { return };
        s.conns_stop.cancel();
        let drain = async {
            while !self.peers.is_empty() {
                match self.conn_rx.recv().await {
                    Some(ConnEvent::Ended { conn, outstanding, .. }) => {
                        self.forget_conn(conn, &outstanding);
                    }
                    Some(ConnEvent::Verified { piece, len, ok }) => {
                        self.record_verified(piece, len, ok);
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        };
        if tokio::time::timeout(Duration::from_millis(DRAIN_MS), drain).await.is_err() {
            tracing::warn!(left = self.peers.len(), "connections of a stopped download did not end in time");
        }
        self.forget_all_conns();
        self.publish_bytes();
    }

    /// Connections that did not say they ended (a stopped swarm's): their late events are
    /// dropped, their requests and counts leave the picker now.
    fn forget_all_conns(&mut self) {
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            self.forget_conn(conn, &[]);
        }
        self.list.clear();
    }

    /// The engine stopped the swarm (the record stays as it is).
    fn end_stopped(&mut self) {
        self.end_swarm(|_| {});
    }

    /// Ends the running swarm without waiting for its connections (they stop on their token
    /// and their late events are dropped), then `then`.
    fn end_swarm(&mut self, then: impl FnOnce(&mut Self)) {
        self.run += 1;
        if let Phase::Running(s) = std::mem::replace(&mut self.phase, Phase::Idle) {
            s.conns_stop.cancel();
        }
        self.forget_all_conns();
        self.publish_idle();
        then(self);
    }

    fn end_failed(&mut self, f: Failure) {
        self.end_swarm(|me| me.fail(DownloadFailure::parse(&f.to_string())));
    }

    /// The swarm found no session (logged out, or the session ended at the tracker): the
    /// download is paused, to be resumed by the next login, not failed.
    fn end_logged_out(&mut self) {
        self.end_swarm(|me| me.paused(true));
    }

    fn fail(&mut self, failure: DownloadFailure) {
        self.part = None;
        self.update(|r| {
            tracing::warn!(name = %r.name, group = %r.group, "download failed: {failure}");
            r.state = DownloadState::Failed;
            r.error = Some(failure);
        });
    }

    /// Every piece is verified: the swarm ends and the file is placed on the blocking pool
    /// (`finish::place`); `on_placed` shares it.
    fn complete(&mut self) {
        let pieces_ms = match &self.phase {
            Phase::Running(s) => s.started.elapsed().as_millis() as u64,
            _ => 0,
        };
        self.end_swarm(|_| {});
        self.phase = Phase::Finishing;
        let record = self.record();
        let part = self.part.take();
        let tx = self.inbox_tx.clone();
        tracing::info!(name = %record.name, pieces_ms, "every piece verified: placing the file");
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || finish::place(part, &record))
                .await
                .unwrap_or_else(|e| Err(DownloadFailure::other(e.to_string())));
            let _ = tx.send(Internal::Placed { result }).await;
        });
    }

    fn on_placed(&mut self, result: Result<(), DownloadFailure>) {
        if !matches!(self.phase, Phase::Finishing) {
            return;
        }
        self.phase = Phase::Idle;
        if let Err(failure) = result {
            return self.fail(failure);
        }
        let record = self.record();
        self.env.shares.add(finish::share_of(&record));
        self.bytes_done = record.meta.size;
        self.update(|r| {
            r.state = DownloadState::Complete;
            r.error = None;
        });
        tracing::info!(name = %record.name, group = %record.group, dest = %record.dest, "download complete");
        let standing = self.env.standing.clone();
        tokio::spawn(async move { finish::register_sharer(&standing, &record).await });
    }
}

/// The failure of a download that nobody shares.
pub fn no_peers(group: &str, name: &str) -> DownloadFailure {
    DownloadFailure::no_peers(format!("nobody shares {name} in {group} right now"))
}

/// Pieces a download of `size` bytes has, all or none.
pub fn all_pieces(size: u64, have: bool) -> Vec<bool> {
    vec![have; piece_count(size) as usize]
}
