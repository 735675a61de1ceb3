//! Per-user quotas (`[limits]` in cluster.toml): the leader's decision, before it proposes a
//! write, whether what the write would add is still within this node's limits.
//!
//! `apply` never checks quotas: each node reads its own cluster file, and every replica must
//! apply the same log to the same state whatever its file says. The state keeps the counts
//! (`raft_store::state::quota`); this module compares them with the limits ([`check`], a plain
//! function) and counts the writes it let through that have not been applied yet
//! ([`InFlight`]), so that writes checked at the same moment cannot pass together: the count
//! never goes past the limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use proto::cluster::Limits;
use raft_store::state::{Growth, QuotaKind};

/// A write that would take a user past one of the cluster's limits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", message(.user, *.kind, *.held, *.limit))]
pub struct QuotaExceeded {
    pub user: String,
    pub kind: QuotaKind,
    /// What the user holds now.
    pub held: u64,
    /// The limit it reached (never 0: 0 is no limit).
    pub limit: u64,
}

fn message(user: &str, kind: QuotaKind, held: u64, limit: u64) -> String {
    match kind {
        QuotaKind::GroupsOwned => format!(
            "user {user} owns {held} groups, the most this cluster allows ([limits] groups_per_user = {limit}); \
             leave a group you own to create another"
        ),
        QuotaKind::ItemsUploaded => format!(
            "user {user} has shared {held} items, the most this cluster allows ([limits] files_per_user = {limit}); \
             an item counts until its group is deleted"
        ),
    }
}

/// The limit that bounds `kind` (0 = no limit).
pub fn limit_of(limits: &Limits, kind: QuotaKind) -> u64 {
    match kind {
        QuotaKind::GroupsOwned => limits.groups_per_user,
        QuotaKind::ItemsUploaded => limits.files_per_user,
    }
}

/// Whether one more of `growth.kind` is allowed to `growth.user` under `limits`, when
/// `in_flight` more of them were let through and are not applied yet (they count as held).
pub fn check(limits: &Limits, growth: &Growth, in_flight: u64) -> Result<(), QuotaExceeded> {
    let limit = limit_of(limits, growth.kind);
    let held = growth.held.saturating_add(in_flight);
    if Limits::allows(limit, held) {
        Ok(())
    } else {
        Err(QuotaExceeded { user: growth.user.clone(), kind: growth.kind, held, limit })
    }
}

/// The writes this leader let through a quota check and has not finished, per user and kind.
///
/// A [`Reservation`] lives until its write is answered, which is after it was applied (or
/// refused): a later check sees it either here or in the state's count, never in neither, as
/// long as it reads the count while holding the table ([`InFlight::reserve`]). At the bound,
/// a write racing another's answer may be refused while the other is counted twice; it is
/// never let past the bound. Entries leave at zero: the table holds at most one entry per
/// write in flight, which the API's connection bounds bound.
#[derive(Debug, Default)]
pub struct InFlight {
    pending: Mutex<HashMap<(String, QuotaKind), u64>>,
}

/// One write let through: counted in its [`InFlight`] table until dropped.
#[derive(Debug)]
pub struct Reservation {
    table: Arc<InFlight>,
    key: (String, QuotaKind),
}

impl InFlight {
    /// Reads what the write would add (`growth`, from the applied state: read under the
    /// table's lock, see above) and, if `limits` allow it with the writes already in flight,
    /// reserves it. `Ok(None)`: the write adds nothing a quota bounds.
    pub fn reserve(
        self: &Arc<Self>,
        limits: &Limits,
        growth: impl FnOnce() -> Option<Growth>,
    ) -> Result<Option<Reservation>, QuotaExceeded> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Some(growth) = growth() else { return Ok(None) };
        if limit_of(limits, growth.kind) == 0 {
            return Ok(None); // no limit: nothing to count
        }
        let key = (growth.user.clone(), growth.kind);
        let in_flight = pending.get(&key).copied().unwrap_or(0);
        check(limits, &growth, in_flight)?;
        pending.insert(key.clone(), in_flight + 1);
        Ok(Some(Reservation { table: self.clone(), key }))
    }

    /// Writes in flight for `user` and `kind`.
    #[cfg(test)]
    pub fn pending(&self, user: &str, kind: QuotaKind) -> u64 {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.get(&(user.to_string(), kind)).copied().unwrap_or(0)
    }

    /// Entries in the table (users and kinds with a write in flight).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut pending = self.table.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get_mut(&self.key) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                pending.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn growth(kind: QuotaKind, held: u64) -> Growth {
        Growth { user: "alice".into(), kind, held }
    }

    #[test]
    fn a_user_reaches_each_limit_and_zero_means_none() {
        let limits = Limits { groups_per_user: 3, files_per_user: 5 };
        // (kind, held, allowed)
        let cases = [
            (QuotaKind::GroupsOwned, 0, true),
            (QuotaKind::GroupsOwned, 2, true),
            (QuotaKind::GroupsOwned, 3, false),
            (QuotaKind::GroupsOwned, 40, false),
            (QuotaKind::ItemsUploaded, 4, true),
            (QuotaKind::ItemsUploaded, 5, false),
        ];
        for (kind, held, allowed) in cases {
            assert_eq!(check(&limits, &growth(kind, held), 0).is_ok(), allowed, "{kind:?} holding {held}");
            // Writes in flight count as held.
            assert_eq!(check(&limits, &growth(kind, 0), held).is_ok(), allowed, "{kind:?} {held} in flight");
        }
        let none = Limits { groups_per_user: 0, files_per_user: 0 };
        for kind in [QuotaKind::GroupsOwned, QuotaKind::ItemsUploaded] {
            assert!(check(&none, &growth(kind, u64::MAX), u64::MAX).is_ok(), "0 is no limit for {kind:?}");
        }
    }

    #[test]
    fn writes_in_flight_count_until_answered_and_the_table_empties() {
        let limits = Limits { groups_per_user: 3, files_per_user: 0 };
        let table = Arc::new(InFlight::default());
        let held = 1;
        let a = table.reserve(&limits, || Some(growth(QuotaKind::GroupsOwned, held))).unwrap().unwrap();
        let b = table.reserve(&limits, || Some(growth(QuotaKind::GroupsOwned, held))).unwrap().unwrap();
        // 1 held + 2 in flight: the third is refused, naming 3.
        let e = table.reserve(&limits, || Some(growth(QuotaKind::GroupsOwned, held))).unwrap_err();
        assert_eq!(e.held, 3);
        assert_eq!(table.pending("alice", QuotaKind::GroupsOwned), 2);
        // Another user and another kind are apart; no limit or no growth reserves nothing.
        let other = Growth { user: "bob".into(), kind: QuotaKind::GroupsOwned, held: 2 };
        let c = table.reserve(&limits, || Some(other)).unwrap().unwrap();
        assert!(table.reserve(&limits, || Some(growth(QuotaKind::ItemsUploaded, 1_000_000))).unwrap().is_none());
        assert!(table.reserve(&limits, || None).unwrap().is_none());
        // a is applied (held 2) and answered; b still counts: 2 + 1 is the bound.
        drop(a);
        assert!(table.reserve(&limits, || Some(growth(QuotaKind::GroupsOwned, 2))).is_err());
        // b was refused by apply (held stays 2) and answered: one more fits.
        drop(b);
        let d = table.reserve(&limits, || Some(growth(QuotaKind::GroupsOwned, 2))).unwrap().unwrap();
        drop((c, d));
        assert_eq!(table.len(), 0, "entries leave at zero");
    }

    #[test]
    fn the_refusal_names_the_user_the_count_and_the_bound() {
        let limits = Limits { groups_per_user: 1000, files_per_user: 100_000 };
        let e = check(&limits, &growth(QuotaKind::GroupsOwned, 1000), 0).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "user alice owns 1000 groups, the most this cluster allows ([limits] groups_per_user = 1000)"
            ),
            "{e}"
        );
        let e = check(&limits, &growth(QuotaKind::ItemsUploaded, 99_999), 1).unwrap_err();
        assert!(e.to_string().contains("has shared 100000 items") && e.to_string().contains("files_per_user"), "{e}");
    }
}
