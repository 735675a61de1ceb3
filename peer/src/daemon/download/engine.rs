//! The swarm's decisions as a plain state machine: which sharers to connect to, when to try a
//! sharer again, when to drop one for the rest of the download, and when the download is
//! complete or has failed. It is fed events (a refreshed sharer list, a connection that ended,
//! progress) with the time in milliseconds, and answers with actions; it does no I/O, reads no
//! clock and holds no lock, so every decision is tested without sockets (`tests` below).
//!
//! `swarm.rs` is its I/O shell: it asks the tracker, spawns the connections the engine names
//! (`conn.rs`), and feeds back what happened. Which *piece* to ask a connected sharer for is
//! the other plain decision, `picker.rs`.

use std::collections::{HashMap, HashSet};
use std::fmt;

/// Most sharers one download talks to at once.
pub const MAX_PEERS_PER_DOWNLOAD: usize = 8;
/// How often the sharer list is refreshed from the tracker while connections run.
pub const REFRESH_MS: u64 = 2_000;
/// The first refresh after the start comes this soon, the next ones twice as late each, up to
/// `REFRESH_MS`: downloaders that start together find each other within a second.
pub const FIRST_REFRESH_MS: u64 = 250;
/// A download that makes no progress for this long, with no sharer connected, fails.
pub const NO_PROGRESS_TIMEOUT_MS: u64 = 30_000;
/// Refreshes in a row that list no usable sharer (and none connected) before the download fails
/// with `no_peers`.
pub const EMPTY_REFRESHES_BEFORE_NO_PEERS: u32 = 3;
/// Pause before reconnecting to a sharer whose connection failed; doubles per failure in a row,
/// up to 32 times this.
pub const RECONNECT_BACKOFF_MS: u64 = 250;
/// Failed connections in a row (refused, timed out, dropped) after which a sharer's address is
/// not tried again in this download.
pub const MAX_FAILURES_PER_SHARER: u32 = 6;

/// A sharer as the tracker lists it: where it serves and the key it must prove there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sharer {
    pub addr: String,
    pub key: [u8; 32],
}

/// How one connection to a sharer ended (`conn.rs` reports it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnEnd {
    /// Nothing more to fetch from it: the download is complete, or it has nothing we lack.
    Done,
    /// The download's stop token was cancelled.
    Stopped,
    /// This piece failed its SHA-1.
    BadPiece(u32),
    /// The sharer's piece list was wrong (its digest, its length, or the ranges it sent).
    BadPieceList(String),
    /// The sharer proved another key than the tracker lists for it (or none).
    WrongKey(String),
    /// The sharer turned us away for now (no free slot, or we asked for nothing for too long):
    /// not a fault, try again later.
    Busy(String),
    /// Refused, timed out, dropped, or a protocol error.
    Failed(String),
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

/// Why a download failed. Its `Display` is what `show-downloads` and `peer download` print; a
/// cause with an error code of its own (`no_peers`) starts with that code and `: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The tracker refused the download's calls (not a member any more, the file is gone).
    Refused { code: String, message: String },
    /// This HOME logged out while downloading.
    LoggedOut,
    /// Nobody lists the file any more.
    NoPeers { group: String, name: String },
    /// Every listed sharer was dropped; each with why.
    AllBanned(Vec<(String, Ban)>),
    /// No sharer connected and no piece for `NO_PROGRESS_TIMEOUT_MS`; the last connection error.
    NoProgress { last_error: String },
    /// Reading or writing the file, or placing it.
    Io(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused { code, message } => write!(f, "{code}: {message}"),
            Failure::LoggedOut => f.write_str("unauthenticated: logged out during the download"),
            Failure::NoPeers { group, name } => write!(f, "no_peers: nobody shares {name} in {group} any more"),
            Failure::AllBanned(banned) => f.write_str(&all_banned_message(banned)),
            Failure::NoProgress { last_error } => {
                write!(f, "no sharer answered for {} s ({last_error})", NO_PROGRESS_TIMEOUT_MS / 1000)
            }
            Failure::Io(e) => f.write_str(e),
        }
    }
}

/// What happens to the swarm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a connection to this sharer.
    Connect(Sharer),
    /// Every piece is verified: stop the connections and finish the file.
    Complete,
    /// Stop the connections; the download failed.
    Fail(Failure),
    /// Stop the connections; the record stays as it is (pause, cancel, daemon shutdown).
    Stop,
}

/// What the swarm learns.
#[derive(Clone, Debug)]
pub enum Event {
    /// The tracker's sharer list, without this peer. `ticket`: the swarm holds a valid ticket
    /// (without one no sharer lets us in, so nobody is connected to).
    Listed { sharers: Vec<Sharer>, ticket: bool },
    /// The tracker could not be asked (unreachable, electing): as an empty list, except that
    /// connections already open go on.
    ListUnavailable { ticket: bool },
    /// The tracker refused to list the file or to issue a ticket: the download cannot go on.
    Refused { code: String, message: String },
    /// This HOME has no session any more.
    LoggedOut,
    /// The connection to `addr` ended. `progressed`: pieces were verified while it ran.
    ConnEnded { addr: String, end: ConnEnd, progressed: bool },
    /// Verified pieces so far, of `total`.
    Progress { done: usize, total: usize },
}

/// A sharer's record of failed connections in a row.
#[derive(Clone, Copy, Debug)]
struct Failures {
    in_a_row: u32,
    last_ms: u64,
}

/// The decisions of one download's swarm.
#[derive(Debug)]
pub struct Engine {
    group: String,
    name: String,
    connected: HashSet<String>,
    banned: HashMap<String, Ban>,
    failures: HashMap<String, Failures>,
    empty_refreshes: u32,
    /// Sharer lists received so far.
    refreshes: u32,
    last_done: usize,
    last_progress_ms: u64,
    last_error: String,
    /// Set once the swarm should end (complete, failed, stopped): later events change nothing.
    ended: bool,
}

impl Engine {
    pub fn new(group: &str, name: &str, done: usize, now_ms: u64) -> Self {
        Engine {
            group: group.to_string(),
            name: name.to_string(),
            connected: HashSet::new(),
            banned: HashMap::new(),
            failures: HashMap::new(),
            empty_refreshes: 0,
            refreshes: 0,
            last_done: done,
            last_progress_ms: now_ms,
            last_error: String::new(),
            ended: false,
        }
    }

    /// Connections open now.
    pub fn connected(&self) -> usize {
        self.connected.len()
    }

    /// Whether a connection to `addr` is open.
    pub fn is_connected(&self, addr: &str) -> bool {
        self.connected.contains(addr)
    }

    /// Why `addr` is dropped for this download, if it is.
    pub fn ban_of(&self, addr: &str) -> Option<&Ban> {
        self.banned.get(addr)
    }

    /// How long the swarm waits for a connection to end before it refreshes the sharer list:
    /// soon when nothing is connected; else `FIRST_REFRESH_MS` doubled per refresh so far, up
    /// to `REFRESH_MS`.
    pub fn next_refresh_ms(&self) -> u64 {
        if self.connected.is_empty() {
            RECONNECT_BACKOFF_MS
        } else {
            FIRST_REFRESH_MS.saturating_mul(1 << self.refreshes.saturating_sub(1).min(8)).min(REFRESH_MS)
        }
    }

    /// Feeds one event; the actions to take, in order. After `Complete`, `Fail` or `Stop` the
    /// engine answers nothing more.
    pub fn handle(&mut self, event: Event, now_ms: u64) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        let actions = match event {
            Event::Progress { done, total } => self.on_progress(done, total, now_ms),
            Event::Listed { sharers, ticket } => self.on_listed(Some(sharers), ticket, now_ms),
            Event::ListUnavailable { ticket } => self.on_listed(None, ticket, now_ms),
            Event::Refused { code, message } => vec![Action::Fail(Failure::Refused { code, message })],
            Event::LoggedOut => vec![Action::Fail(Failure::LoggedOut)],
            Event::ConnEnded { addr, end, progressed } => self.on_conn_end(addr, end, progressed, now_ms),
        };
        if actions.iter().any(|a| !matches!(a, Action::Connect(_))) {
            self.ended = true;
        }
        actions
    }

    fn on_progress(&mut self, done: usize, total: usize, now_ms: u64) -> Vec<Action> {
        if done != self.last_done {
            self.last_done = done;
            self.last_progress_ms = now_ms;
        }
        if done >= total {
            vec![Action::Complete]
        } else {
            Vec::new()
        }
    }

    fn on_listed(&mut self, listed: Option<Vec<Sharer>>, ticket: bool, now_ms: u64) -> Vec<Action> {
        let listed_now = listed.is_some();
        self.refreshes = self.refreshes.saturating_add(1);
        let listed = listed.unwrap_or_default();
        let usable: Vec<&Sharer> = listed.iter().filter(|s| !self.banned.contains_key(&s.addr)).collect();
        // An unreachable tracker says nothing about who shares: only the no-progress timeout
        // ends a download then.
        if listed_now && usable.is_empty() && self.connected.is_empty() {
            self.empty_refreshes += 1;
            if !listed.is_empty() {
                // Everyone listed is dropped, and a dropped address stays dropped.
                return vec![Action::Fail(Failure::AllBanned(self.bans_of(listed.iter().map(|s| s.addr.as_str()))))];
            }
            if self.empty_refreshes >= EMPTY_REFRESHES_BEFORE_NO_PEERS {
                if !self.banned.is_empty() {
                    // The dropped sharers left the list too: they are why nothing is left.
                    let all: Vec<String> = self.banned.keys().cloned().collect();
                    return vec![Action::Fail(Failure::AllBanned(self.bans_of(all.iter().map(String::as_str))))];
                }
                return vec![Action::Fail(Failure::NoPeers { group: self.group.clone(), name: self.name.clone() })];
            }
        } else if !usable.is_empty() {
            self.empty_refreshes = 0;
        }
        let mut actions = Vec::new();
        if ticket {
            for sharer in usable {
                if self.connected.len() >= MAX_PEERS_PER_DOWNLOAD {
                    break;
                }
                if self.connected.contains(&sharer.addr) || self.backing_off(&sharer.addr, now_ms) {
                    continue;
                }
                self.connected.insert(sharer.addr.clone());
                actions.push(Action::Connect(sharer.clone()));
            }
        }
        if self.connected.is_empty() && now_ms.saturating_sub(self.last_progress_ms) > NO_PROGRESS_TIMEOUT_MS {
            return vec![Action::Fail(Failure::NoProgress { last_error: self.last_error.clone() })];
        }
        actions
    }

    /// The bans of `addrs`, sorted by address, each once.
    fn bans_of<'a>(&self, addrs: impl Iterator<Item = &'a str>) -> Vec<(String, Ban)> {
        let mut why: Vec<(String, Ban)> =
            addrs.filter_map(|a| Some((a.to_string(), self.banned.get(a)?.clone()))).collect();
        why.sort_by(|a, b| a.0.cmp(&b.0));
        why.dedup_by(|a, b| a.0 == b.0);
        why
    }

    /// Whether `addr` failed lately enough that it is not tried yet.
    fn backing_off(&self, addr: &str, now_ms: u64) -> bool {
        self.failures.get(addr).is_some_and(|f| {
            let wait_ms = RECONNECT_BACKOFF_MS.saturating_mul(1 << f.in_a_row.min(5));
            now_ms.saturating_sub(f.last_ms) < wait_ms
        })
    }

    fn on_conn_end(&mut self, addr: String, end: ConnEnd, progressed: bool, now_ms: u64) -> Vec<Action> {
        self.connected.remove(&addr);
        match end {
            ConnEnd::Done => {}
            ConnEnd::Stopped => return vec![Action::Stop],
            ConnEnd::BadPiece(i) => {
                tracing::warn!(peer = %addr, piece = i, "piece failed SHA-1: dropping this peer for this download");
                self.banned.insert(addr, Ban::Piece(i));
            }
            ConnEnd::BadPieceList(why) => {
                tracing::warn!(peer = %addr, "piece list did not match ({why}): dropping this peer for this download");
                self.banned.insert(addr, Ban::List(why));
            }
            ConnEnd::WrongKey(why) => {
                tracing::warn!(peer = %addr, "{why}: not connecting to this address again for this download");
                self.banned.insert(addr, Ban::WrongKey(why));
            }
            ConnEnd::Busy(why) => {
                // Turned away for now: wait before asking again, without counting it as a failure.
                tracing::info!(peer = %addr, "sharer is busy: {why}");
                let f = self.failures.entry(addr).or_insert(Failures { in_a_row: 0, last_ms: now_ms });
                f.last_ms = now_ms;
            }
            ConnEnd::Failed(e) => {
                tracing::info!(peer = %addr, "connection ended: {e}");
                self.last_error = format!("{addr}: {e}");
                let f = self.failures.entry(addr.clone()).or_insert(Failures { in_a_row: 0, last_ms: now_ms });
                // A connection that brought pieces starts the count again.
                f.in_a_row = if progressed { 1 } else { f.in_a_row + 1 };
                f.last_ms = now_ms;
                if f.in_a_row >= MAX_FAILURES_PER_SHARER {
                    tracing::warn!(peer = %addr, failures = f.in_a_row, "giving up on this sharer for this download");
                    self.banned.insert(addr, Ban::Unreachable(e));
                }
            }
        }
        Vec::new()
    }
}

/// The failure of a download whose every sharer was banned, naming each and why (sorted by
/// address).
fn all_banned_message(banned: &[(String, Ban)]) -> String {
    let why: Vec<String> = banned
        .iter()
        .map(|(a, b)| match b {
            Ban::Piece(i) => format!("{a}: piece {i} failed SHA-1"),
            Ban::List(e) | Ban::WrongKey(e) => format!("{a}: {e}"),
            Ban::Unreachable(e) => format!("{a}: unreachable ({e})"),
        })
        .collect();
    let all = |f: fn(&Ban) -> bool| banned.iter().all(|(_, b)| f(b));
    let any = |f: fn(&Ban) -> bool| banned.iter().any(|(_, b)| f(b));
    if all(|b| matches!(b, Ban::List(_))) {
        format!("the piece list did not match the tracker's piece_list_sha1 at any sharer ({})", why.join("; "))
    } else if any(|b| matches!(b, Ban::Piece(_))) {
        format!("every sharer sent data that failed verification ({})", why.join("; "))
    } else {
        format!("no sharer could be used ({})", why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharer(port: u16) -> Sharer {
        Sharer { addr: format!("127.0.0.1:{port}"), key: [port as u8; 32] }
    }

    fn listed(ports: &[u16]) -> Event {
        Event::Listed { sharers: ports.iter().map(|&p| sharer(p)).collect(), ticket: true }
    }

    fn ended(port: u16, end: ConnEnd) -> Event {
        Event::ConnEnded { addr: sharer(port).addr, end, progressed: false }
    }

    fn connects(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Connect(s) => Some(s.addr.clone()),
                _ => None,
            })
            .collect()
    }

    fn engine() -> Engine {
        Engine::new("g", "f.bin", 0, 0)
    }

    #[test]
    fn connects_to_each_listed_sharer_once_and_at_most_eight() {
        let mut e = engine();
        let ports: Vec<u16> = (1..=12).collect();
        let a = e.handle(listed(&ports), 0);
        assert_eq!(connects(&a).len(), MAX_PEERS_PER_DOWNLOAD);
        assert_eq!(e.connected(), MAX_PEERS_PER_DOWNLOAD);
        assert!(connects(&e.handle(listed(&ports), 10)).is_empty(), "no second connection to anyone");
        e.handle(ended(1, ConnEnd::Failed("reset".into())), 20);
        let a = e.handle(listed(&ports), 30);
        assert_eq!(connects(&a), vec![sharer(9).addr], "a freed place goes to a sharer not backing off");
    }

    #[test]
    fn the_first_refreshes_come_soon_then_every_two_seconds() {
        let mut e = engine();
        let mut waits = vec![];
        for i in 0..6 {
            e.handle(listed(&[1]), i);
            waits.push(e.next_refresh_ms());
        }
        assert_eq!(waits, vec![250, 500, 1_000, 2_000, 2_000, 2_000]);
        e.handle(ended(1, ConnEnd::Done), 10);
        assert_eq!(e.next_refresh_ms(), RECONNECT_BACKOFF_MS, "nobody connected: look again soon");
    }

    #[test]
    fn without_a_ticket_nobody_is_connected() {
        let mut e = engine();
        let a = e.handle(Event::Listed { sharers: vec![sharer(1)], ticket: false }, 0);
        assert!(a.is_empty());
        assert_eq!(connects(&e.handle(listed(&[1]), 5)), vec![sharer(1).addr]);
    }

    #[test]
    fn a_failed_sharer_is_retried_with_a_growing_backoff_then_dropped() {
        let mut e = engine();
        let mut now = 0;
        e.handle(listed(&[1]), now);
        let mut waits = Vec::new();
        for round in 1..=MAX_FAILURES_PER_SHARER {
            e.handle(ended(1, ConnEnd::Failed("connect: refused".into())), now);
            if round == MAX_FAILURES_PER_SHARER {
                break;
            }
            // Not before its backoff has passed...
            let started = now;
            while connects(&e.handle(listed(&[1]), now)).is_empty() {
                now += 50;
                assert!(now - started < 60_000, "never retried");
            }
            waits.push(now - started);
        }
        assert!(waits.windows(2).all(|w| w[0] < w[1]), "backoff grows: {waits:?}");
        assert_eq!(waits[0], 2 * RECONNECT_BACKOFF_MS);
        assert!(matches!(e.ban_of(&sharer(1).addr), Some(Ban::Unreachable(m)) if m.contains("refused")));
        // ... and, the only sharer dropped, the download fails naming it.
        match e.handle(listed(&[1]), now + 100_000).as_slice() {
            [Action::Fail(f @ Failure::AllBanned(_))] => {
                let m = f.to_string();
                assert!(m.starts_with("no sharer could be used") && m.contains("127.0.0.1:1: unreachable"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_connection_that_brought_pieces_starts_the_failure_count_again() {
        let mut e = engine();
        e.handle(listed(&[1]), 0);
        let mut now = 0;
        for _ in 0..20 {
            let progressed = Event::ConnEnded {
                addr: sharer(1).addr,
                end: ConnEnd::Failed("reset by peer".into()),
                progressed: true,
            };
            e.handle(progressed, now);
            now += 10_000;
            assert_eq!(connects(&e.handle(listed(&[1]), now)).len(), 1, "a sharer that delivers is never dropped");
        }
        assert!(e.ban_of(&sharer(1).addr).is_none());
    }

    #[test]
    fn busy_is_a_pause_not_a_failure() {
        let mut e = engine();
        e.handle(listed(&[1]), 0);
        for i in 0..20u64 {
            e.handle(ended(1, ConnEnd::Busy("no free slot".into())), i * 1_000);
            assert!(connects(&e.handle(listed(&[1]), i * 1_000 + 1)).is_empty(), "not at once");
            assert_eq!(connects(&e.handle(listed(&[1]), i * 1_000 + RECONNECT_BACKOFF_MS)).len(), 1);
        }
        assert!(e.ban_of(&sharer(1).addr).is_none());
    }

    #[test]
    fn a_bad_piece_a_bad_list_or_a_wrong_key_drops_the_sharer_at_once() {
        let mut e = engine();
        e.handle(listed(&[1, 2, 3, 4]), 0);
        e.handle(ended(1, ConnEnd::BadPiece(7)), 1);
        e.handle(ended(2, ConnEnd::BadPieceList("hashes to aa, the tracker's piece_list_sha1 is bb".into())), 1);
        e.handle(ended(3, ConnEnd::WrongKey("it proved key ab, the tracker lists cd".into())), 1);
        let a = e.handle(listed(&[1, 2, 3, 4]), 100_000);
        assert!(connects(&a).is_empty(), "4 is still connected, the others are dropped: {a:?}");
        e.handle(ended(4, ConnEnd::BadPiece(9)), 100_001);
        match e.handle(listed(&[1, 2, 3, 4]), 100_002).as_slice() {
            [Action::Fail(f)] => {
                let m = f.to_string();
                assert!(m.starts_with("every sharer sent data that failed verification"), "{m}");
                let at = |s: &str| m.find(s).unwrap_or_else(|| panic!("{s} in {m}"));
                assert!(m.contains("127.0.0.1:1: piece 7 failed SHA-1") && m.contains("hashes to aa"), "{m}");
                assert!(at("127.0.0.1:1") < at("127.0.0.1:2") && at("127.0.0.1:3") < at("127.0.0.1:4"), "sorted: {m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_bad_lists_say_so() {
        let mut e = engine();
        e.handle(listed(&[2, 1]), 0);
        e.handle(ended(1, ConnEnd::BadPieceList("a list of 3 hashes for a file of 4 pieces".into())), 1);
        e.handle(ended(2, ConnEnd::BadPieceList("hashes to aa, the tracker's is bb".into())), 1);
        match e.handle(listed(&[2, 1]), 2).as_slice() {
            [Action::Fail(f)] => {
                let m = f.to_string();
                assert!(m.starts_with("the piece list did not match"), "{m}");
                assert!(m.find("127.0.0.1:1").unwrap() < m.find("127.0.0.1:2").unwrap(), "sorted: {m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sharers_dropped_and_then_unlisted_are_named_in_the_failure() {
        let mut e = engine();
        e.handle(listed(&[1]), 0);
        e.handle(ended(1, ConnEnd::BadPiece(3)), 1);
        for _ in 1..EMPTY_REFRESHES_BEFORE_NO_PEERS {
            assert!(e.handle(listed(&[]), 2).is_empty());
        }
        match e.handle(listed(&[]), 3).as_slice() {
            [Action::Fail(f)] => assert!(f.to_string().contains("127.0.0.1:1: piece 3 failed SHA-1"), "{f}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_list_fails_with_no_peers_only_after_several_refreshes() {
        let mut e = engine();
        for _ in 1..EMPTY_REFRESHES_BEFORE_NO_PEERS {
            assert!(e.handle(listed(&[]), 0).is_empty());
        }
        match e.handle(listed(&[]), 0).as_slice() {
            [Action::Fail(f)] => assert_eq!(f.to_string(), "no_peers: nobody shares f.bin in g any more"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreachable_tracker_does_not_end_open_connections_or_count_as_empty_while_connected() {
        let mut e = engine();
        e.handle(listed(&[1]), 0);
        for i in 0..10 {
            assert!(e.handle(Event::ListUnavailable { ticket: true }, i * 2_000).is_empty());
        }
        assert_eq!(e.connected(), 1);
    }

    #[test]
    fn no_progress_with_nobody_connected_fails_after_the_timeout_and_progress_resets_it() {
        let mut e = engine();
        e.handle(listed(&[1]), 0);
        e.handle(ended(1, ConnEnd::Failed("timed out".into())), 1_000);
        e.handle(Event::Progress { done: 5, total: 10 }, 20_000);
        // Listed, but no ticket to present (the tracker cannot issue one): nobody is connected,
        // and the download waits, up to the timeout counted from the last progress.
        let mut now = 20_000;
        let failed = loop {
            now += 1_000;
            let a = e.handle(Event::Listed { sharers: vec![sharer(1)], ticket: false }, now);
            assert!(connects(&a).is_empty());
            if let [Action::Fail(f)] = a.as_slice() {
                break f.clone();
            }
            assert!(now < 200_000);
        };
        assert_eq!(
            now,
            20_000 + NO_PROGRESS_TIMEOUT_MS + 1_000,
            "not before {NO_PROGRESS_TIMEOUT_MS} ms without progress"
        );
        let m = failed.to_string();
        assert!(m.starts_with("no sharer answered for 30 s") && m.contains("127.0.0.1:1: timed out"), "{m}");
    }

    #[test]
    fn the_last_piece_completes_and_then_nothing_more_happens() {
        let mut e = engine();
        e.handle(listed(&[1]), 0);
        assert!(e.handle(Event::Progress { done: 9, total: 10 }, 1).is_empty());
        assert_eq!(e.handle(Event::Progress { done: 10, total: 10 }, 2), vec![Action::Complete]);
        assert!(e.handle(listed(&[2]), 3).is_empty(), "no connection after the end");
    }

    #[test]
    fn a_stopped_connection_stops_the_swarm_and_refusals_fail_it() {
        let mut e = engine();
        e.handle(listed(&[1]), 0);
        assert_eq!(e.handle(ended(1, ConnEnd::Stopped), 1), vec![Action::Stop]);
        let mut e = engine();
        let a = e.handle(Event::Refused { code: "not_member".into(), message: "not a member of g".into() }, 0);
        assert_eq!(
            a,
            vec![Action::Fail(Failure::Refused { code: "not_member".into(), message: "not a member of g".into() })]
        );
        let mut e = engine();
        match e.handle(Event::LoggedOut, 0).as_slice() {
            [Action::Fail(f)] => assert!(f.to_string().starts_with("unauthenticated")),
            other => panic!("{other:?}"),
        }
    }
}
