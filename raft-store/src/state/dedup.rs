//! The table of client request ids that makes retried writes apply once (Raft paper §6.3).
//! Bounded in count and in age; both bounds are enforced from the commands' own timestamps,
//! so every replica evicts the same ids at the same log position.

use imbl::{OrdMap, Vector};

use crate::command::{Response, Sha1Digest};

/// What the table remembers of one request: when, what it asked for, and what it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    pub at_ms: u64,
    pub fingerprint: Sha1Digest,
    pub response: Response,
}

/// How long a request id is remembered: far longer than any client's retry budget.
pub const DEDUP_TTL_MS: u64 = 10 * 60 * 1000;
/// Most request ids remembered at once; the oldest go first.
pub const DEDUP_MAX_ENTRIES: usize = 100_000;

/// Persistent collections, like the rest of the state: a snapshot's clone shares them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dedup {
    /// Keyed by `Command::dedup_key` (kind, principal and the client's id).
    entries: OrdMap<Sha1Digest, Remembered>,
    /// Insertion order, for eviction.
    order: Vector<Sha1Digest>,
}

impl Dedup {
    pub fn get(&self, key: &Sha1Digest) -> Option<&Remembered> {
        self.entries.get(key)
    }

    pub fn insert(&mut self, id: Sha1Digest, remembered: Remembered) {
        if self.entries.insert(id, remembered).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > DEDUP_MAX_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    /// Forgets ids older than the TTL, judged by the applying command's time.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some(front) = self.order.front() {
            let at_ms = self.entries.get(front).map(|r| r.at_ms).unwrap_or(0);
            if at_ms.saturating_add(DEDUP_TTL_MS) >= now_ms {
                break;
            }
            let id = self.order.pop_front().expect("front exists");
            self.entries.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Entries in insertion order, for snapshots.
    pub fn iter(&self) -> impl Iterator<Item = (&Sha1Digest, &Remembered)> {
        self.order.iter().map(|id| (id, &self.entries[id]))
    }
}
