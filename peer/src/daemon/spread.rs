//! A complete sharer hands each piece to one downloader first (the aim of BitTorrent's
//! super-seeding): when several downloaders of the same file are connected here and one asks
//! for a piece this sharer already sent to another of them, still connected, it is answered
//! `reject` once, meaning "ask another peer for it" (the downloader that got it announces it
//! with `have` as soon as it is verified). The same downloader asking for the same piece again
//! is served, so nobody waits on a peer it cannot reach for longer than its retry delay
//! (`conn::REJECTED_RETRY_MS`). The sharer's upload then goes to pieces nobody has yet, and
//! downloaders trade the rest among themselves (docs/PROTOCOL.md, "A connection", step 2).
//!
//! Plain data behind one lock, no I/O: `FileSpread` is tested without sockets.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Most (downloader, piece) refusals remembered per file; past it, every request is served.
const MAX_REFUSALS_PER_FILE: usize = 1 << 20;

/// What to answer a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Serve,
    /// `reject`: another downloader connected here got this piece first; ask it.
    AskElsewhere,
}

/// One file's record while downloaders of it are connected.
#[derive(Debug, Default)]
pub struct FileSpread {
    /// Connections (downloaders) open now.
    conns: HashSet<u64>,
    /// Which connection each piece was first sent to.
    first_to: HashMap<u32, u64>,
    /// (connection, piece) refused once already.
    refused: HashSet<(u64, u32)>,
}

impl FileSpread {
    pub fn join(&mut self, conn: u64) {
        self.conns.insert(conn);
    }

    /// `conn` closed; true when no connection is left (the record can go).
    pub fn leave(&mut self, conn: u64) -> bool {
        self.conns.remove(&conn);
        self.first_to.retain(|_, c| *c != conn);
        self.refused.retain(|(c, _)| *c != conn);
        self.conns.is_empty()
    }

    /// `conn` asks for `piece`.
    pub fn on_request(&mut self, conn: u64, piece: u32) -> Verdict {
        match self.first_to.get(&piece) {
            None => {
                self.first_to.insert(piece, conn);
                Verdict::Serve
            }
            Some(&first) if first == conn || !self.conns.contains(&first) => {
                self.first_to.insert(piece, conn);
                Verdict::Serve
            }
            Some(_) => {
                if self.refused.len() < MAX_REFUSALS_PER_FILE && self.refused.insert((conn, piece)) {
                    Verdict::AskElsewhere
                } else {
                    Verdict::Serve
                }
            }
        }
    }
}

/// Every shared file's record, by `group/sha1`.
#[derive(Default)]
pub struct Spread {
    files: Mutex<HashMap<String, FileSpread>>,
}

impl Spread {
    pub fn join(&self, file: &str, conn: u64) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.entry(file.to_string()).or_default().join(conn);
    }

    pub fn leave(&self, file: &str, conn: u64) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if files.get_mut(file).is_some_and(|f| f.leave(conn)) {
            files.remove(file);
        }
    }

    pub fn on_request(&self, file: &str, conn: u64, piece: u32) -> Verdict {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.get_mut(file).map_or(Verdict::Serve, |f| f.on_request(conn, piece))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_piece_goes_to_one_downloader_first() {
        let mut f = FileSpread::default();
        f.join(1);
        f.join(2);
        assert_eq!(f.on_request(1, 7), Verdict::Serve);
        assert_eq!(f.on_request(2, 7), Verdict::AskElsewhere, "1 has it: ask 1");
        assert_eq!(f.on_request(2, 8), Verdict::Serve, "nobody has 8 yet");
        assert_eq!(f.on_request(1, 8), Verdict::AskElsewhere);
    }

    #[test]
    fn asking_again_is_served() {
        let mut f = FileSpread::default();
        f.join(1);
        f.join(2);
        f.on_request(1, 0);
        assert_eq!(f.on_request(2, 0), Verdict::AskElsewhere);
        assert_eq!(f.on_request(2, 0), Verdict::Serve, "refused once only");
        assert_eq!(f.on_request(1, 0), Verdict::Serve, "the first one may ask again (a lost piece)");
    }

    #[test]
    fn a_single_downloader_is_always_served() {
        let mut f = FileSpread::default();
        f.join(1);
        for piece in 0..100 {
            assert_eq!(f.on_request(1, piece), Verdict::Serve);
            assert_eq!(f.on_request(1, piece), Verdict::Serve);
        }
    }

    #[test]
    fn a_piece_whose_first_downloader_left_is_served_to_the_next() {
        let spread = Spread::default();
        spread.join("g/f", 1);
        spread.join("g/f", 2);
        spread.join("g/f", 3);
        assert_eq!(spread.on_request("g/f", 1, 5), Verdict::Serve);
        spread.leave("g/f", 1);
        assert_eq!(spread.on_request("g/f", 2, 5), Verdict::Serve, "1 is gone: nobody to ask instead");
        assert_eq!(spread.on_request("g/f", 3, 5), Verdict::AskElsewhere, "2 has it now");
        assert_eq!(spread.on_request("g/other", 3, 5), Verdict::Serve, "another file has its own record");
    }

    #[test]
    fn the_record_goes_with_the_last_connection() {
        let spread = Spread::default();
        spread.join("g/f", 1);
        spread.on_request("g/f", 1, 0);
        spread.leave("g/f", 1);
        assert!(spread.files.lock().unwrap().is_empty());
    }
}
