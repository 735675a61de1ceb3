//! Who fetches a download's piece list: one connection at a time has the turn, the others wait
//! in order for it (or for the list); the verified list, once known, is never replaced by a
//! later fetch and answers every waiter. Plain state, owned by the download's task (`actor.rs`).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::messages::{ConnId, ListTurn};
use crate::hashing::PieceHash;

/// A download's piece list and the turns to fetch it.
pub struct ListTurns {
    /// The piece list, once verified against `meta.piece_list_sha1`.
    list: watch::Sender<Option<Arc<Vec<PieceHash>>>>,
    /// The connection fetching the list, and those waiting for their turn.
    fetcher: Option<ConnId>,
    waiters: VecDeque<(ConnId, oneshot::Sender<ListTurn>)>,
}

impl ListTurns {
    pub fn new(list: Option<Arc<Vec<PieceHash>>>) -> Self {
        ListTurns { list: watch::channel(list).0, fetcher: None, waiters: VecDeque::new() }
    }

    /// The list as it becomes known (the piece server serves it to others from there).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Vec<PieceHash>>>> {
        self.list.subscribe()
    }

    pub fn known(&self) -> Option<Arc<Vec<PieceHash>>> {
        self.list.borrow().clone()
    }

    /// The list read back from this HOME (a restart's re-verification checked it).
    pub fn set(&self, list: Arc<Vec<PieceHash>>) {
        self.list.send_replace(Some(list));
    }

    /// `conn` asks whose turn it is: the list when it is known, else the turn when nobody has
    /// it, else the answer waits for the fetch before it.
    pub fn turn(&mut self, conn: ConnId, reply: oneshot::Sender<ListTurn>) {
        if let Some(list) = self.known() {
            let _ = reply.send(ListTurn::Known(list));
            return;
        }
        if self.fetcher.is_none() {
            self.fetcher = Some(conn);
            let _ = reply.send(ListTurn::Fetch);
        } else {
            self.waiters.push_back((conn, reply));
        }
    }

    /// The fetch `conn` had the turn for ended, with the verified list or without: the next
    /// connection waiting takes its turn, or everyone learns the list.
    pub fn fetched(&mut self, conn: ConnId, list: Option<Arc<Vec<PieceHash>>>) {
        if let Some(list) = list {
            if self.list.borrow().is_none() {
                self.list.send_replace(Some(list));
            }
        }
        if self.fetcher != Some(conn) {
            return;
        }
        self.fetcher = None;
        let known = self.known();
        while let Some((next, reply)) = self.waiters.pop_front() {
            match &known {
                Some(list) => {
                    let _ = reply.send(ListTurn::Known(list.clone()));
                }
                None => {
                    if reply.send(ListTurn::Fetch).is_ok() {
                        self.fetcher = Some(next);
                        return;
                    }
                }
            }
        }
    }

    /// The swarm stopped: nobody has the turn and nobody waits (the waiters' answers are
    /// dropped with their connections).
    pub fn clear(&mut self) {
        self.fetcher = None;
        self.waiters.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(t: &mut ListTurns, conn: ConnId) -> oneshot::Receiver<ListTurn> {
        let (tx, rx) = oneshot::channel();
        t.turn(conn, tx);
        rx
    }

    fn answer(rx: &mut oneshot::Receiver<ListTurn>) -> Option<&'static str> {
        match rx.try_recv() {
            Ok(ListTurn::Fetch) => Some("fetch"),
            Ok(ListTurn::Known(_)) => Some("known"),
            Err(_) => None,
        }
    }

    #[test]
    fn one_fetch_at_a_time_then_the_list_for_everyone() {
        let mut t = ListTurns::new(None);
        let (mut a, mut b) = (ask(&mut t, 1), ask(&mut t, 2));
        drop(ask(&mut t, 3)); // a waiter whose connection is gone
        let mut d = ask(&mut t, 4);
        assert_eq!((answer(&mut a), answer(&mut b), answer(&mut d)), (Some("fetch"), None, None));
        // The end of a fetch that another connection has the turn for changes nothing.
        t.fetched(2, None);
        assert_eq!(answer(&mut b), None);
        // A fetch that failed hands the turn to the next in line, skipping the one gone.
        t.fetched(1, None);
        assert_eq!((answer(&mut b), answer(&mut d)), (Some("fetch"), None));
        t.fetched(2, None);
        assert_eq!(answer(&mut d), Some("fetch"));
        // The list: every waiter gets it, and so does whoever asks later.
        let mut e = ask(&mut t, 5);
        assert_eq!(answer(&mut e), None);
        t.fetched(4, Some(Arc::new(vec![[1; 20]])));
        assert_eq!(answer(&mut e), Some("known"));
        assert_eq!(answer(&mut ask(&mut t, 6)), Some("known"));
        // A later fetch never replaces it.
        t.fetched(6, Some(Arc::new(vec![[2; 20]])));
        assert_eq!(t.known().unwrap()[0], [1; 20]);
    }
}
