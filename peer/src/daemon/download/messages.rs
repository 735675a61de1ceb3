//! The messages of a download's task (`actor.rs`) and the handles that carry them: the
//! control side's `Command`s (answered on a oneshot), the connections' `ConnEvent`s, and what
//! readers see (`Snapshot`). Plain types, below both the task and the connections.

use std::fs::File;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::engine::ConnEnd;
#[cfg(test)]
use super::engine::Sharer;
use super::ops::Op;
use super::picker::PeerKind;
use super::record::DownloadRecord;
use crate::control::{DownloadRow, DownloadState};
use crate::hashing::PieceHash;

/// The download's current ticket (the tracker's, for this download and this HOME's key), as
/// the swarm renews it.
pub type TicketRx = tokio::sync::watch::Receiver<Arc<Vec<u8>>>;

/// Where a connection sends its events: the download's bounded inbox
/// (`actor::CONN_INBOX_CAPACITY`).
pub type EventSender = mpsc::Sender<ConnEvent>;

/// A connection of one swarm, numbered by its download.
pub type ConnId = u64;

/// The result of one operation on one download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum One {
    Acted,
    Already,
    /// It was in a state the operation does not apply to.
    Skipped(DownloadState),
    /// Every piece is verified and the file is being placed: too late.
    Finishing,
}

/// What the control side asks of a download.
pub enum Command {
    /// Stop the swarm, keep the `.part`: `paused` (`by_logout`: resumed by the next login).
    Pause { by_logout: bool, reply: oneshot::Sender<One> },
    /// `downloading` again: the `.part` re-verified, the swarm started. With `only_after_logout`,
    /// only a download a logout paused.
    Resume { only_after_logout: bool, reply: oneshot::Sender<One> },
    /// Stop the swarm for good; the caller removes the row and unlinks the `.part`.
    Cancel { reply: oneshot::Sender<One> },
    /// A finished or failed row may go; the caller removes it.
    Forget { reply: oneshot::Sender<One> },
    /// What the piece server needs to serve the verified pieces of a download in progress.
    Serve { reply: oneshot::Sender<Option<PartialView>> },
    /// One connection to `sharer` outside the engine's choice, answered with how it ended
    /// (the piece-list tests drive connections one at a time).
    #[cfg(test)]
    Connect { sharer: Sharer, ticket: TicketRx, reply: oneshot::Sender<ConnEnd> },
}

/// A download in progress as the piece server serves it: its `.part`, the pieces verified when
/// it was asked (then each new one on `have_rx`, in order), and its piece list once verified.
pub struct PartialView {
    pub file: Arc<File>,
    pub size: u64,
    pub have: Vec<bool>,
    pub have_rx: broadcast::Receiver<u32>,
    pub list: watch::Receiver<Option<Arc<Vec<PieceHash>>>>,
}

/// What a connection task tells its download. Each names its connection; events of a
/// connection the current swarm does not know (a stopped one's) change nothing.
pub enum ConnEvent {
    /// The sharer's bitfield after the handshake; the answer is how the picker counts it.
    Joined { conn: ConnId, has: Vec<bool>, reply: oneshot::Sender<PeerKind> },
    /// A later bitfield replaces the first.
    Bitfield { conn: ConnId, has: Vec<bool>, reply: oneshot::Sender<PeerKind> },
    /// The sharer announced a piece.
    Have { conn: ConnId, piece: u32 },
    /// The sharer rejected a piece (`false`), or a seed's rejection has run out (`true`).
    SetHas { conn: ConnId, piece: u32, has: bool },
    /// Fill `outstanding` up to `want` requests; it comes back with the new ones at its end.
    Pick { conn: ConnId, outstanding: Vec<u32>, want: usize, reply: oneshot::Sender<Picked> },
    /// A request ended without a piece (rejected, cancelled, an endgame duplicate).
    Release { conn: ConnId, piece: u32 },
    /// A piece was checked (and, when `ok`, written at its offset).
    Verified { piece: u32, len: u64, ok: bool },
    /// Whose turn it is to fetch the piece list (the answer waits for it).
    ListTurn { conn: ConnId, reply: oneshot::Sender<ListTurn> },
    /// The fetch this connection had the turn for ended: the verified (and stored) list, or none.
    ListFetched { conn: ConnId, list: Option<Arc<Vec<PieceHash>>> },
    /// The connection ended; `outstanding` are the requests it still had.
    Ended { conn: ConnId, outstanding: Vec<u32>, end: ConnEnd },
}

/// The answer to `Pick`.
pub struct Picked {
    pub outstanding: Vec<u32>,
    /// Every piece is verified and nothing is outstanding here: the connection is done.
    pub done: bool,
}

/// The answer to `ListTurn`.
pub enum ListTurn {
    Known(Arc<Vec<PieceHash>>),
    /// Fetch it from your sharer, then say how it went (`ListFetched`).
    Fetch,
}

/// What a reader sees of a download.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub record: DownloadRecord,
    pub bytes_done: u64,
    pub peers: usize,
    pub rate_bytes_per_s: u64,
}

impl Snapshot {
    pub fn row(&self) -> DownloadRow {
        let r = &self.record;
        let downloading = r.state == DownloadState::Downloading;
        DownloadRow {
            group: r.group.clone(),
            name: r.name.clone(),
            dest: r.dest.clone(),
            state: r.state,
            bytes_done: self.bytes_done,
            size: r.meta.size,
            error: r.error.clone(),
            rate_bytes_per_s: if downloading { self.rate_bytes_per_s } else { 0 },
            peers: if downloading { self.peers } else { 0 },
        }
    }
}

/// The control side's end of a download: its mailbox and its snapshot.
#[derive(Clone)]
pub struct DownloadHandle {
    tx: mpsc::Sender<Command>,
    snap: watch::Receiver<Snapshot>,
}

impl DownloadHandle {
    pub fn snapshot(&self) -> Snapshot {
        self.snap.borrow().clone()
    }

    /// Reads the record without copying it.
    pub fn with_record<T>(&self, f: impl FnOnce(&DownloadRecord) -> T) -> T {
        f(&self.snap.borrow().record)
    }

    pub fn row(&self) -> DownloadRow {
        self.snap.borrow().row()
    }

    pub fn state(&self) -> DownloadState {
        self.with_record(|r| r.state)
    }

    pub fn same(&self, other: &DownloadHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Runs `op` on this download (see `Command`); a download whose task is gone is skipped.
    pub async fn manage(&self, op: Op, by_logout: bool) -> One {
        let answer = match op {
            Op::Pause => self.ask(|reply| Command::Pause { by_logout, reply }).await,
            Op::Resume => self.ask(|reply| Command::Resume { only_after_logout: by_logout, reply }).await,
            Op::Cancel => self.ask(|reply| Command::Cancel { reply }).await,
            Op::Forget => self.ask(|reply| Command::Forget { reply }).await,
        };
        answer.unwrap_or_else(|| One::Skipped(self.state()))
    }

    pub async fn serve(&self) -> Option<PartialView> {
        self.ask(|reply| Command::Serve { reply }).await.flatten()
    }

    #[cfg(test)]
    pub async fn connect(&self, sharer: Sharer, ticket: TicketRx) -> ConnEnd {
        self.ask(|reply| Command::Connect { sharer, ticket, reply })
            .await
            .unwrap_or_else(|| ConnEnd::Failed("the download's task is gone".into()))
    }
}

impl DownloadHandle {
    /// A handle on the task whose mailbox is `tx` and whose snapshot is `snap`.
    pub fn new(tx: mpsc::Sender<Command>, snap: watch::Receiver<Snapshot>) -> Self {
        DownloadHandle { tx, snap }
    }
}
