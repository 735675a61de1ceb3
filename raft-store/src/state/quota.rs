//! Per-user counts for the cluster's quotas (`[limits]` in cluster.toml): how many groups a
//! user owns and how many file records a user created.
//!
//! The limits themselves are not here: each node reads its own cluster file, and `apply` must
//! compute the same state on every replica whatever the files say. So `apply` only keeps the
//! counts; the leader asks [`TrackerState::growth`] what a request would add, before proposing
//! it, and compares that with its limits.
//!
//! The counts are derived state: never written to a snapshot, rebuilt by `load_record` as a
//! snapshot is read, kept up to date by `apply`. A user with no group and no record has no
//! entry, so a state built by applying a log and the same state loaded from a snapshot are
//! equal.

use super::{Group, TrackerState, DEDUP_TTL_MS};
use crate::command::{Command, Request};

/// What one user holds that the quotas bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserCounts {
    /// Groups whose owner the user is (an owner who leaves hands the group, and its count, on).
    pub groups_owned: u64,
    /// File records the user created: the first upload of a name in a group. Sharing a file
    /// that is already listed adds no record and counts nothing; stop-share leaves the record
    /// listed, so it still counts; the count drops when the record's group is deleted.
    pub items_uploaded: u64,
}

/// Which quota a request draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// `[limits] groups_per_user`.
    GroupsOwned,
    /// `[limits] files_per_user`.
    ItemsUploaded,
}

/// What a request would add if applied now: one more of `kind` for `user`, who holds `held`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Growth {
    pub user: String,
    pub kind: QuotaKind,
    pub held: u64,
}

/// The direction of a change to a count.
#[derive(Clone, Copy)]
pub(super) enum Delta {
    Add,
    Remove,
}

impl TrackerState {
    /// The counts of `user` (zeros for a user with none).
    pub fn user_counts(&self, user: &str) -> UserCounts {
        self.user_counts.get(user).copied().unwrap_or_default()
    }

    /// What applying `req` now would add to a quota: `Some` only for a request that would
    /// create a group or a file record, from a logged-in user. `None` for everything else:
    /// other commands, a retry of a remembered request id (it answers its first outcome and
    /// adds nothing), a group name that exists, an upload that `apply` would refuse or that
    /// only adds a sharer to a listed file. Those go on to `precheck` and `apply`, which answer
    /// them as before.
    pub fn growth(&self, req: &Request) -> Option<Growth> {
        if let Some(id) = &req.request_id {
            if let Some(first) = self.dedup.get(&req.command.dedup_key(id)) {
                if first.at_ms.saturating_add(DEDUP_TTL_MS) >= req.now_ms {
                    return None;
                }
            }
        }
        let (user, kind) = match &req.command {
            Command::CreateGroup { token_hash, group } => {
                if self.groups.contains_key(group) {
                    return None;
                }
                (self.authenticate(token_hash, req.now_ms).ok()?, QuotaKind::GroupsOwned)
            }
            Command::UploadFile { token_hash, group, file, .. } => {
                let user = self.authenticate(token_hash, req.now_ms).ok()?;
                let g = self.groups.get(group)?;
                if !g.members.iter().any(|m| *m == user) || g.files.contains_key(&file.name) {
                    return None;
                }
                (user, QuotaKind::ItemsUploaded)
            }
            _ => return None,
        };
        let counts = self.user_counts(&user);
        let held = match kind {
            QuotaKind::GroupsOwned => counts.groups_owned,
            QuotaKind::ItemsUploaded => counts.items_uploaded,
        };
        Some(Growth { user, kind, held })
    }

    /// Adds or removes one of `kind` for `user`; an entry left at zero is dropped.
    pub(super) fn count(&mut self, user: &str, kind: QuotaKind, delta: Delta) {
        let mut c = self.user_counts(user);
        let n = match kind {
            QuotaKind::GroupsOwned => &mut c.groups_owned,
            QuotaKind::ItemsUploaded => &mut c.items_uploaded,
        };
        *n = match delta {
            Delta::Add => n.saturating_add(1),
            Delta::Remove => n.saturating_sub(1),
        };
        if c == UserCounts::default() {
            self.user_counts.remove(user);
        } else {
            self.user_counts.insert(user.to_string(), c);
        }
    }

    /// Counts a group that enters the state (created, or loaded from a snapshot without its
    /// files, which are counted as they load).
    pub(super) fn count_group_added(&mut self, g: &Group) {
        self.count(&g.owner, QuotaKind::GroupsOwned, Delta::Add);
        let uploaders: Vec<String> = g.files.values().map(|f| f.uploader.clone()).collect();
        for u in uploaders {
            self.count(&u, QuotaKind::ItemsUploaded, Delta::Add);
        }
    }

    /// Uncounts a group that leaves the state, with every file record in it.
    pub(super) fn count_group_removed(&mut self, g: &Group) {
        self.count(&g.owner, QuotaKind::GroupsOwned, Delta::Remove);
        for f in g.files.values() {
            self.count(&f.uploader, QuotaKind::ItemsUploaded, Delta::Remove);
        }
    }

    /// The counts recomputed from the groups by a full scan: what the kept counts must equal
    /// (tests, and a check after loading a snapshot).
    pub fn recount(&self) -> imbl::OrdMap<String, UserCounts> {
        let mut out: std::collections::BTreeMap<String, UserCounts> = Default::default();
        for g in self.groups.values() {
            out.entry(g.owner.clone()).or_default().groups_owned += 1;
            for f in g.files.values() {
                out.entry(f.uploader.clone()).or_default().items_uploaded += 1;
            }
        }
        out.into_iter().collect()
    }

    /// The kept counts, every user with any.
    pub fn all_user_counts(&self) -> &imbl::OrdMap<String, UserCounts> {
        &self.user_counts
    }
}
