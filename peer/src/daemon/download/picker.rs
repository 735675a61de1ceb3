//! Which piece to ask a peer for next: rarest first among the pieces nobody is fetching,
//! random among equals; in endgame (every missing piece already requested) a piece may be
//! asked from a second peer. Plain data, no I/O: tested without sockets.
//!
//! A complete sharer (a *seed*: every piece at connect) is spared what another downloader can
//! give: from a seed, a downloader asks only for pieces that no connected partial peer has. So
//! downloaders of the same file trade among themselves what they verified, and the seed's
//! upload goes to pieces nobody else has yet, each to one downloader first (the aim of
//! BitTorrent's super-seeding, decided here on the downloader's side). With seeds only (one
//! downloader, or every sharer complete) it is plain rarest first.

use rand::Rng;

/// Most peers asked for the same piece at once in endgame.
pub const MAX_ENDGAME_DUPLICATES: u8 = 2;

/// A connected peer as the picker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    /// It had every piece when it connected.
    Seed,
    /// It is downloading too: it has some pieces and announces more with `have`.
    Partial,
}

#[derive(Clone, Debug)]
pub struct Picker {
    have: Vec<bool>,
    done: usize,
    /// How many connected peers have each piece.
    availability: Vec<u32>,
    /// How many connected partial peers (not seeds) have each piece.
    partial: Vec<u32>,
    /// Outstanding requests per piece, across peers.
    in_flight: Vec<u8>,
    /// Pieces still missing (compacted as pieces complete).
    missing: Vec<u32>,
}

impl Picker {
    pub fn new(have: Vec<bool>) -> Self {
        let n = have.len();
        let missing = (0..n as u32).filter(|&i| !have[i as usize]).collect();
        let done = have.iter().filter(|h| **h).count();
        Picker { have, done, availability: vec![0; n], partial: vec![0; n], in_flight: vec![0; n], missing }
    }

    pub fn len(&self) -> usize {
        self.have.len()
    }

    pub fn is_empty(&self) -> bool {
        self.have.is_empty()
    }

    pub fn has(&self, i: u32) -> bool {
        self.have[i as usize]
    }

    pub fn done_count(&self) -> usize {
        self.done
    }

    pub fn is_complete(&self) -> bool {
        self.done == self.have.len()
    }

    pub fn have_vec(&self) -> &[bool] {
        &self.have
    }

    /// A peer connected with `peer_has`: whether it is a seed (has every piece), which the
    /// connection passes back to the other calls for this peer.
    pub fn add_peer(&mut self, peer_has: &[bool]) -> PeerKind {
        let kind = if peer_has.len() == self.have.len() && peer_has.iter().all(|h| *h) {
            PeerKind::Seed
        } else {
            PeerKind::Partial
        };
        for (i, h) in peer_has.iter().enumerate().take(self.availability.len()) {
            if *h {
                self.availability[i] += 1;
                if kind == PeerKind::Partial {
                    self.partial[i] += 1;
                }
            }
        }
        kind
    }

    pub fn remove_peer(&mut self, peer_has: &[bool], kind: PeerKind) {
        for (i, h) in peer_has.iter().enumerate().take(self.availability.len()) {
            if *h {
                self.availability[i] = self.availability[i].saturating_sub(1);
                if kind == PeerKind::Partial {
                    self.partial[i] = self.partial[i].saturating_sub(1);
                }
            }
        }
    }

    /// A connected peer announced piece `i` (`have`).
    pub fn peer_got(&mut self, i: u32, kind: PeerKind) {
        if let Some(a) = self.availability.get_mut(i as usize) {
            *a += 1;
            if kind == PeerKind::Partial {
                self.partial[i as usize] += 1;
            }
        }
    }

    /// The next piece to request from a peer of `kind` that has `peer_has`, given the pieces
    /// already requested from that peer. Marks it in flight. From a seed, only pieces no
    /// connected partial peer has (see the module's comment).
    pub fn pick(
        &mut self,
        peer_has: &[bool],
        kind: PeerKind,
        asked_of_peer: &[u32],
        rng: &mut impl Rng,
    ) -> Option<u32> {
        self.missing.retain(|&i| !self.have[i as usize]);
        let spare = |i: usize, partial: &[u32]| kind == PeerKind::Seed && partial[i] > 0;
        let mut best: Option<u32> = None;
        let mut best_avail = u32::MAX;
        let mut ties = 0u32;
        for &i in &self.missing {
            let iu = i as usize;
            if self.in_flight[iu] > 0 || !peer_has.get(iu).copied().unwrap_or(false) || spare(iu, &self.partial) {
                continue;
            }
            let a = self.availability[iu];
            if a < best_avail {
                best_avail = a;
                best = Some(i);
                ties = 1;
            } else if a == best_avail {
                // Reservoir sampling: each of the equally rare pieces is chosen with equal odds.
                ties += 1;
                if rng.gen_range(0..ties) == 0 {
                    best = Some(i);
                }
            }
        }
        if best.is_none() {
            // Endgame: everything missing is in flight somewhere; ask this peer too, for the
            // piece with the fewest outstanding requests.
            let mut fewest = u8::MAX;
            for &i in &self.missing {
                let iu = i as usize;
                if peer_has.get(iu).copied().unwrap_or(false)
                    && !asked_of_peer.contains(&i)
                    && !spare(iu, &self.partial)
                    && self.in_flight[iu] < MAX_ENDGAME_DUPLICATES
                    && self.in_flight[iu] < fewest
                {
                    fewest = self.in_flight[iu];
                    best = Some(i);
                }
            }
        }
        if let Some(i) = best {
            self.in_flight[i as usize] += 1;
        }
        best
    }

    /// A request ended without a verified piece (peer gone, rejected, bad data): the piece
    /// goes back to the pool.
    pub fn release(&mut self, i: u32) {
        let f = &mut self.in_flight[i as usize];
        *f = f.saturating_sub(1);
    }

    /// A verified piece arrived. Returns true the first time.
    pub fn complete(&mut self, i: u32) -> bool {
        let iu = i as usize;
        self.in_flight[iu] = self.in_flight[iu].saturating_sub(1);
        if self.have[iu] {
            return false;
        }
        self.have[iu] = true;
        self.done += 1;
        true
    }

    /// Whether any piece is still missing that no outstanding request covers.
    pub fn unrequested_remaining(&self) -> usize {
        self.missing.iter().filter(|&&i| !self.have[i as usize] && self.in_flight[i as usize] == 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    /// Every piece `p` offers one peer of `kind` that has `has`, in the order offered, until it
    /// offers nothing more; a piece offered twice to the same peer fails the test.
    fn all_picks(p: &mut Picker, has: &[bool], kind: PeerKind, r: &mut impl Rng) -> Vec<u32> {
        let mut asked = vec![];
        while let Some(i) = p.pick(has, kind, &asked, r) {
            assert!(!asked.contains(&i), "piece {i} offered again to a peer already asked for {asked:?}");
            asked.push(i);
        }
        asked
    }

    #[test]
    fn rarest_first() {
        // Three downloaders (partial peers: none has piece 4).
        let mut p = Picker::new(vec![false; 5]);
        let most = vec![true, true, true, true, false];
        let only_2 = vec![false, false, true, false, false];
        assert_eq!(p.add_peer(&most), PeerKind::Partial);
        p.add_peer(&most);
        p.add_peer(&only_2);
        // Pieces 0, 1, 3 are on 2 peers, piece 2 on 3: piece 2 comes last.
        let order = all_picks(&mut p, &most, PeerKind::Partial, &mut rng());
        assert_eq!(order.len(), 4);
        assert_eq!(order[3], 2, "the most common piece is picked last: {order:?}");
    }

    #[test]
    fn only_pieces_the_peer_has() {
        let mut p = Picker::new(vec![false; 3]);
        let peer = vec![false, true, false];
        let kind = p.add_peer(&peer);
        let mut r = rng();
        assert_eq!(p.pick(&peer, kind, &[], &mut r), Some(1));
        // Endgame may not ask the same peer twice for one piece.
        assert_eq!(p.pick(&peer, kind, &[1], &mut r), None);
    }

    #[test]
    fn released_pieces_are_picked_again() {
        let mut p = Picker::new(vec![false; 1]);
        let peer = vec![true];
        let mut r = rng();
        assert_eq!(p.pick(&peer, PeerKind::Seed, &[], &mut r), Some(0));
        p.release(0);
        assert_eq!(p.pick(&peer, PeerKind::Seed, &[], &mut r), Some(0));
        assert!(p.complete(0));
        assert!(!p.complete(0), "a duplicate arrival counts once");
        assert!(p.is_complete());
        assert_eq!(p.pick(&peer, PeerKind::Seed, &[], &mut r), None);
    }

    #[test]
    fn endgame_duplicates_are_bounded() {
        let mut p = Picker::new(vec![false; 1]);
        let peer = vec![true];
        let mut r = rng();
        assert_eq!(p.pick(&peer, PeerKind::Seed, &[], &mut r), Some(0));
        assert_eq!(p.pick(&peer, PeerKind::Seed, &[], &mut r), Some(0), "second peer in endgame");
        assert_eq!(p.pick(&peer, PeerKind::Seed, &[], &mut r), None, "no third copy");
    }

    #[test]
    fn ties_are_broken_at_random() {
        let peer = vec![true; 8];
        let mut firsts = std::collections::BTreeSet::new();
        let mut r = rng();
        for _ in 0..64 {
            let mut p = Picker::new(vec![false; 8]);
            let _ = p.add_peer(&peer);
            firsts.insert(p.pick(&peer, PeerKind::Seed, &[], &mut r).unwrap());
        }
        assert!(firsts.len() > 3, "first picks should spread: {firsts:?}");
    }

    #[test]
    fn resumed_pieces_are_not_fetched() {
        let mut p = Picker::new(vec![true, false, true]);
        let peer = vec![true; 3];
        let mut r = rng();
        assert_eq!(p.done_count(), 2);
        assert_eq!(p.pick(&peer, PeerKind::Seed, &[], &mut r), Some(1));
        assert_eq!(p.pick(&peer, PeerKind::Seed, &[1], &mut r), None);
    }

    #[test]
    fn a_seed_is_spared_what_a_partial_peer_has() {
        let mut p = Picker::new(vec![false; 4]);
        let seed = vec![true; 4];
        let partial = vec![true, true, false, false];
        assert_eq!(p.add_peer(&seed), PeerKind::Seed);
        assert_eq!(p.add_peer(&partial), PeerKind::Partial);
        let mut r = rng();
        let mut from_seed = all_picks(&mut p, &seed, PeerKind::Seed, &mut r);
        from_seed.sort();
        assert_eq!(from_seed, vec![2, 3], "the seed is asked only for what the partial peer lacks");
        let mut from_partial = all_picks(&mut p, &partial, PeerKind::Partial, &mut r);
        from_partial.sort();
        assert_eq!(from_partial, vec![0, 1]);
    }

    #[test]
    fn a_piece_announced_by_a_partial_peer_is_no_longer_asked_of_the_seed() {
        let mut p = Picker::new(vec![false; 2]);
        let seed = vec![true; 2];
        let mut partial = vec![false, false];
        p.add_peer(&seed);
        p.add_peer(&partial);
        partial[1] = true;
        p.peer_got(1, PeerKind::Partial);
        let mut r = rng();
        assert_eq!(p.pick(&seed, PeerKind::Seed, &[], &mut r), Some(0));
        assert_eq!(p.pick(&seed, PeerKind::Seed, &[0], &mut r), None, "piece 1 comes from the partial peer");
        // The partial peer goes away: the seed is asked after all.
        p.remove_peer(&partial, PeerKind::Partial);
        assert_eq!(p.pick(&seed, PeerKind::Seed, &[0], &mut r), Some(1));
    }

    #[test]
    fn with_seeds_only_every_piece_is_asked() {
        let mut p = Picker::new(vec![false; 3]);
        let seed = vec![true; 3];
        p.add_peer(&seed);
        p.add_peer(&seed);
        let mut asked = all_picks(&mut p, &seed, PeerKind::Seed, &mut rng());
        asked.sort();
        assert_eq!(asked, vec![0, 1, 2]);
    }
}
