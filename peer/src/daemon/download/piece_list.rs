//! Fetching a download's piece list from one sharer: which ranges to ask for, checking each
//! answer against what was asked, and the final check against the tracker's `piece_list_sha1`.
//! Plain data, no I/O (conn.rs moves the frames), so every way a sharer can get it wrong is
//! tested here without sockets.

use std::collections::VecDeque;

use proto::piece::MAX_PIECE_LIST_HASHES_PER_FRAME;

use crate::hashing::{piece_list_sha1, PieceHash};

/// `piece_list_request`s kept in flight on one connection (4 frames, 1.25 MiB of hashes).
pub const LIST_PIPELINE_DEPTH: usize = 4;

/// How a sharer's piece list was wrong. Any of these bans the sharer for this download.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadList {
    #[error("it sent a piece list of {said} hashes for a file of {want} pieces")]
    WrongLength { said: u32, want: u32 },
    #[error("asked for {asked_count} hashes from {asked_start}, it sent {got_count} from {got_start}")]
    WrongRange { asked_start: u32, asked_count: u32, got_start: u32, got_count: usize },
    #[error("it sent hashes nobody asked for")]
    Unasked,
    #[error("its piece list hashes to {got}, the tracker's piece_list_sha1 is {want}")]
    Mismatch { got: String, want: String },
}

/// One fetch of a whole list, in order.
#[derive(Debug)]
pub struct ListFetch {
    num_pieces: u32,
    want: PieceHash,
    per_frame: u32,
    hashes: Vec<PieceHash>,
    next_start: u32,
    asked: VecDeque<(u32, u32)>,
}

impl ListFetch {
    /// A fetch of a list of `num_pieces` hashes whose digest must be `want`. The caller has
    /// bounded `num_pieces` (`MAX_PIECES`): the list is held in memory, 20 bytes a piece.
    pub fn new(num_pieces: u32, want: PieceHash) -> Self {
        Self::with_frame_len(num_pieces, want, MAX_PIECE_LIST_HASHES_PER_FRAME as u32)
    }

    fn with_frame_len(num_pieces: u32, want: PieceHash, per_frame: u32) -> Self {
        ListFetch {
            num_pieces,
            want,
            per_frame,
            hashes: Vec::with_capacity(num_pieces as usize),
            next_start: 0,
            asked: VecDeque::with_capacity(LIST_PIPELINE_DEPTH),
        }
    }

    /// The next range to ask for, `(start, count)`, while fewer than `LIST_PIPELINE_DEPTH` are
    /// outstanding and some of the list is not yet asked for.
    pub fn next_request(&mut self) -> Option<(u32, u32)> {
        if self.asked.len() >= LIST_PIPELINE_DEPTH || self.next_start >= self.num_pieces {
            return None;
        }
        let count = (self.num_pieces - self.next_start).min(self.per_frame);
        let range = (self.next_start, count);
        self.next_start += count;
        self.asked.push_back(range);
        Some(range)
    }

    /// Takes one `piece_list` answer; answers come in the order of the requests.
    pub fn on_answer(&mut self, num_pieces: u32, start: u32, hashes: Vec<PieceHash>) -> Result<(), BadList> {
        if num_pieces != self.num_pieces {
            return Err(BadList::WrongLength { said: num_pieces, want: self.num_pieces });
        }
        let (asked_start, asked_count) = self.asked.pop_front().ok_or(BadList::Unasked)?;
        if start != asked_start || hashes.len() != asked_count as usize {
            return Err(BadList::WrongRange { asked_start, asked_count, got_start: start, got_count: hashes.len() });
        }
        self.hashes.extend_from_slice(&hashes);
        Ok(())
    }

    /// Every hash has arrived.
    pub fn is_done(&self) -> bool {
        self.hashes.len() == self.num_pieces as usize
    }

    /// The whole list, if it hashes to the tracker's `piece_list_sha1`. Hashes up to 40 MiB:
    /// call it off the async threads.
    pub fn finish(self) -> Result<Vec<PieceHash>, BadList> {
        if !self.is_done() {
            return Err(BadList::WrongLength { said: self.hashes.len() as u32, want: self.num_pieces });
        }
        let got = piece_list_sha1(&self.hashes);
        if got != self.want {
            return Err(BadList::Mismatch { got: hex::encode(got), want: hex::encode(self.want) });
        }
        Ok(self.hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: u32) -> Vec<PieceHash> {
        (0..n)
            .map(|i| {
                let mut h = [0u8; 20];
                h[..4].copy_from_slice(&i.to_be_bytes());
                h
            })
            .collect()
    }

    /// Serves `fetch` from `list` the way an honest sharer does; returns the requests seen.
    fn serve(fetch: &mut ListFetch, list: &[PieceHash]) -> Vec<(u32, u32)> {
        let mut seen = Vec::new();
        while !fetch.is_done() {
            let mut batch = Vec::new();
            while let Some(r) = fetch.next_request() {
                batch.push(r);
            }
            assert!(!batch.is_empty() && batch.len() <= LIST_PIPELINE_DEPTH, "{batch:?}");
            for (s, c) in batch {
                seen.push((s, c));
                fetch.on_answer(list.len() as u32, s, list[s as usize..(s + c) as usize].to_vec()).unwrap();
            }
        }
        seen
    }

    #[test]
    fn an_honest_list_arrives_in_bounded_frames_and_verifies() {
        for n in [1u32, 2, 9, 10, 11, 40, 41] {
            let l = list(n);
            let mut f = ListFetch::with_frame_len(n, piece_list_sha1(&l), 10);
            let seen = serve(&mut f, &l);
            assert!(seen.iter().all(|&(_, c)| (1..=10).contains(&c)), "{seen:?}");
            assert_eq!(seen.iter().map(|&(_, c)| c).sum::<u32>(), n);
            assert_eq!(f.finish().unwrap(), l);
        }
    }

    #[test]
    fn the_empty_list_needs_no_request() {
        let mut f = ListFetch::new(0, piece_list_sha1(&[]));
        assert_eq!(f.next_request(), None);
        assert!(f.is_done());
        assert_eq!(f.finish().unwrap(), Vec::<PieceHash>::new());
    }

    #[test]
    fn a_wrong_list_is_refused() {
        let l = list(25);
        let want = piece_list_sha1(&l);
        // One hash altered: every frame looks fine, the digest does not match.
        let mut bad = l.clone();
        bad[17][19] ^= 1;
        let mut f = ListFetch::with_frame_len(25, want, 10);
        serve(&mut f, &bad);
        assert!(matches!(f.finish(), Err(BadList::Mismatch { .. })));
        // A list that claims another length.
        let mut f = ListFetch::with_frame_len(25, want, 10);
        let (s, c) = f.next_request().unwrap();
        assert_eq!(f.on_answer(24, s, l[..c as usize].to_vec()), Err(BadList::WrongLength { said: 24, want: 25 }));
        // A short answer, or the wrong range.
        let mut f = ListFetch::with_frame_len(25, want, 10);
        let (s, c) = f.next_request().unwrap();
        assert!(matches!(f.on_answer(25, s, l[..c as usize - 1].to_vec()), Err(BadList::WrongRange { .. })));
        let mut f = ListFetch::with_frame_len(25, want, 10);
        f.next_request().unwrap();
        assert!(matches!(f.on_answer(25, 10, l[10..20].to_vec()), Err(BadList::WrongRange { .. })));
        // Hashes nobody asked for.
        let mut f = ListFetch::with_frame_len(25, want, 10);
        assert_eq!(f.on_answer(25, 0, vec![]), Err(BadList::Unasked));
    }

    #[test]
    fn requests_stay_within_the_pipeline_and_the_frame_bound() {
        let n = 3 * MAX_PIECE_LIST_HASHES_PER_FRAME as u32 * LIST_PIPELINE_DEPTH as u32 + 5;
        let mut f = ListFetch::new(n, [0; 20]);
        let first: Vec<_> = std::iter::from_fn(|| f.next_request()).collect();
        assert_eq!(first.len(), LIST_PIPELINE_DEPTH);
        assert!(first.iter().all(|&(_, c)| c as usize == MAX_PIECE_LIST_HASHES_PER_FRAME));
        // Nothing more until an answer arrives.
        assert_eq!(f.next_request(), None);
        let hashes = vec![[0; 20]; MAX_PIECE_LIST_HASHES_PER_FRAME];
        f.on_answer(n, 0, hashes).unwrap();
        assert_eq!(
            f.next_request(),
            Some((
                LIST_PIPELINE_DEPTH as u32 * MAX_PIECE_LIST_HASHES_PER_FRAME as u32,
                MAX_PIECE_LIST_HASHES_PER_FRAME as u32
            ))
        );
    }
}
