//! Per-user quotas (`[limits]` in cluster.toml): the leader's decision, before it proposes a
//! write, whether what the write would add is still within this node's limits.
//!
//! `apply` never checks quotas: each node reads its own cluster file, and every replica must
//! apply the same log to the same state whatever its file says. The state keeps the counts
//! (`raft_store::state::quota`); this module only compares them with the limits, as a plain
//! function. Writes checked at the same moment against the same applied state can pass
//! together, so a user's count can go past the limit by at most the writes they have in flight
//! at once; the next write after those is refused.

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

/// Whether one more of `growth.kind` is allowed to `growth.user` under `limits`.
pub fn check(limits: &Limits, growth: &Growth) -> Result<(), QuotaExceeded> {
    let limit = limit_of(limits, growth.kind);
    if Limits::allows(limit, growth.held) {
        Ok(())
    } else {
        Err(QuotaExceeded { user: growth.user.clone(), kind: growth.kind, held: growth.held, limit })
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
            assert_eq!(check(&limits, &growth(kind, held)).is_ok(), allowed, "{kind:?} holding {held}");
        }
        let none = Limits { groups_per_user: 0, files_per_user: 0 };
        for kind in [QuotaKind::GroupsOwned, QuotaKind::ItemsUploaded] {
            assert!(check(&none, &growth(kind, u64::MAX)).is_ok(), "0 is no limit for {kind:?}");
        }
    }

    #[test]
    fn the_refusal_names_the_user_the_count_and_the_bound() {
        let limits = Limits { groups_per_user: 1000, files_per_user: 100_000 };
        let e = check(&limits, &growth(QuotaKind::GroupsOwned, 1000)).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "user alice owns 1000 groups, the most this cluster allows ([limits] groups_per_user = 1000)"
            ),
            "{e}"
        );
        let e = check(&limits, &growth(QuotaKind::ItemsUploaded, 100_000)).unwrap_err();
        assert!(e.to_string().contains("has shared 100000 items") && e.to_string().contains("files_per_user"), "{e}");
    }
}
