//! Groups: create, join requests, accept, leave with owner hand-over.

use imbl::OrdMap;

use super::quota::{Delta, QuotaKind};
use super::{Group, TrackerState};
use crate::command::{ErrorCode, Refusal, Reply};
use crate::names::validate_id;

impl TrackerState {
    pub(super) fn create_group(&mut self, user: &str, group: &str) -> Result<Reply, Refusal> {
        validate_id("group", group).map_err(Refusal::invalid_name)?;
        if self.groups.contains_key(group) {
            return Err(Refusal::new(
                ErrorCode::GroupExists,
                format!("group {group:?} already exists; ask its owner to let you join"),
            ));
        }
        self.groups.insert(
            group.to_string(),
            Group {
                owner: user.to_string(),
                members: vec![user.to_string()],
                pending: Vec::new(),
                files: OrdMap::new(),
            },
        );
        self.count(user, QuotaKind::GroupsOwned, Delta::Add);
        Ok(Reply::GroupCreated { group: group.to_string() })
    }

    pub(super) fn join_group(&mut self, user: &str, group: &str) -> Result<Reply, Refusal> {
        validate_id("group", group).map_err(Refusal::invalid_name)?;
        let g = self.groups.get_mut(group).ok_or_else(|| Refusal::no_such_group(group))?;
        if g.members.iter().any(|m| m == user) {
            return Err(Refusal::new(ErrorCode::AlreadyMember, format!("you are already a member of group {group:?}")));
        }
        let already_pending = g.pending.iter().any(|p| p == user);
        if !already_pending {
            g.pending.push(user.to_string());
        }
        Ok(Reply::RequestFiled { group: group.to_string(), already_pending })
    }

    pub(super) fn accept_request(&mut self, owner: &str, group: &str, joiner: &str) -> Result<Reply, Refusal> {
        validate_id("group", group).map_err(Refusal::invalid_name)?;
        validate_id("user", joiner).map_err(Refusal::invalid_name)?;
        let g = self.groups.get_mut(group).ok_or_else(|| Refusal::no_such_group(group))?;
        g.check_owner(group, owner, "accept requests")?;
        if g.members.iter().any(|m| m == joiner) {
            return Err(Refusal::new(
                ErrorCode::AlreadyMember,
                format!("{joiner} is already a member of group {group:?}"),
            ));
        }
        let Some(pos) = g.pending.iter().position(|p| p == joiner) else {
            return Err(Refusal::new(
                ErrorCode::NoSuchRequest,
                format!("{joiner} has not asked to join group {group:?}"),
            ));
        };
        g.pending.remove(pos);
        g.members.push(joiner.to_string());
        Ok(Reply::Accepted { group: group.to_string(), user: joiner.to_string() })
    }

    /// The owner removes a member: the member's shares in the group end (the files stay listed),
    /// and they stop being a member. The owner cannot remove themself (leaving hands the group on).
    pub(super) fn remove_member(&mut self, owner: &str, group: &str, member: &str) -> Result<Reply, Refusal> {
        validate_id("group", group).map_err(Refusal::invalid_name)?;
        validate_id("user", member).map_err(Refusal::invalid_name)?;
        let g = self.groups.get_mut(group).ok_or_else(|| Refusal::no_such_group(group))?;
        g.check_owner(group, owner, "remove members")?;
        if member == owner {
            return Err(Refusal::new(
                ErrorCode::NotAllowed,
                format!(
                    "you own group {group:?} and cannot remove yourself; leave it instead (it passes to the member \
                     who joined next)"
                ),
            ));
        }
        let Some(pos) = g.members.iter().position(|m| m == member) else {
            return Err(Refusal::new(ErrorCode::NotMember, format!("{member} is not a member of group {group:?}")));
        };
        g.members.remove(pos);
        let shares_ended = stop_sharing_in(g, member);
        Ok(Reply::MemberRemoved { group: group.to_string(), user: member.to_string(), shares_ended })
    }

    /// A member leaves: their shares in the group stop; an owner hands the group to the member
    /// who joined next; the last member leaving deletes the group. A user with only a pending
    /// request withdraws it.
    pub(super) fn leave_group(&mut self, user: &str, group: &str) -> Result<Reply, Refusal> {
        validate_id("group", group).map_err(Refusal::invalid_name)?;
        let g = self.groups.get_mut(group).ok_or_else(|| Refusal::no_such_group(group))?;
        let Some(pos) = g.members.iter().position(|m| m == user) else {
            if let Some(p) = g.pending.iter().position(|p| p == user) {
                g.pending.remove(p);
                return Ok(Reply::LeftGroup { group: group.to_string(), new_owner: None, group_deleted: false });
            }
            return Err(Refusal::not_member(group));
        };
        g.members.remove(pos);
        stop_sharing_in(g, user);
        if g.members.is_empty() {
            if let Some(gone) = self.groups.remove(group) {
                self.count_group_removed(&gone);
            }
            return Ok(Reply::LeftGroup { group: group.to_string(), new_owner: None, group_deleted: true });
        }
        let mut new_owner = None;
        if g.owner == user {
            g.owner = g.members[0].clone();
            new_owner = Some(g.owner.clone());
        }
        if let Some(heir) = &new_owner {
            // The group, and its place in the owner's quota, passes on.
            self.count(user, QuotaKind::GroupsOwned, Delta::Remove);
            self.count(heir, QuotaKind::GroupsOwned, Delta::Add);
        }
        Ok(Reply::LeftGroup { group: group.to_string(), new_owner, group_deleted: false })
    }
}

impl Group {
    /// `Ok` when `user` owns this group (named `name`); otherwise the refusal, which names the
    /// owner and `what` only the owner can do.
    pub(super) fn check_owner(&self, name: &str, user: &str, what: &str) -> Result<(), Refusal> {
        if self.owner == user {
            return Ok(());
        }
        Err(Refusal::new(ErrorCode::NotOwner, format!("only the owner of group {name:?} ({}) can {what}", self.owner)))
    }
}

/// Removes `user` from the sharers of every file of `g`; returns how many it shared. Only the
/// files it shares are written (a persistent map copies what is written while a snapshot holds it).
fn stop_sharing_in(g: &mut Group, user: &str) -> u64 {
    let shared: Vec<String> =
        g.files.iter().filter(|(_, f)| f.sharers.contains(user)).map(|(name, _)| name.clone()).collect();
    for name in &shared {
        if let Some(file) = g.files.get_mut(name) {
            file.sharers.remove(user);
        }
    }
    shared.len() as u64
}
