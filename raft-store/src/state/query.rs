//! Read-only views of the state, for the API's linearizable reads. Same rules as the
//! writes: members-only file listing, owner-only request listing.

use super::{files::no_such_file, TrackerState};
use crate::command::{FileMeta, Refusal};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub group: String,
    pub owner: String,
    pub members: u64,
    pub member: bool,
    pub pending: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileView {
    pub meta: FileMeta,
    /// Sharers that serve right now: not paused, with a known peer address and key.
    pub active_sharers: Vec<SharerView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharerView {
    pub user: String,
    pub peer_addr: String,
    /// The key the sharer's daemon speaks with (64 lowercase hex).
    pub peer_key: String,
}

fn group_view(user: &str, name: &str, g: &super::Group) -> GroupView {
    GroupView {
        group: name.to_string(),
        owner: g.owner.clone(),
        members: g.members.len() as u64,
        member: g.members.iter().any(|m| m == user),
        pending: g.pending.iter().any(|p| p == user),
    }
}

impl TrackerState {
    pub fn list_groups(&self, user: &str) -> Vec<GroupView> {
        self.groups.iter().map(|(name, g)| group_view(user, name, g)).collect()
    }

    /// At most `limit` groups in name order, starting after the group named `after` (which
    /// need not exist), and whether more follow. O(log groups + limit): a page costs the
    /// same whatever the number of groups.
    pub fn list_groups_page(&self, user: &str, after: Option<&str>, limit: usize) -> (Vec<GroupView>, bool) {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut rows = self.groups.range::<_, str>((start, Bound::Unbounded));
        let page: Vec<GroupView> = rows.by_ref().take(limit).map(|(name, g)| group_view(user, name, g)).collect();
        let more = rows.next().is_some();
        (page, more)
    }

    pub fn list_requests(&self, user: &str, group: &str) -> Result<Vec<String>, Refusal> {
        let g = self.groups.get(group).ok_or_else(|| Refusal::no_such_group(group))?;
        g.check_owner(group, user, "list its requests")?;
        Ok(g.pending.clone())
    }

    pub fn list_files(&self, user: &str, group: &str) -> Result<Vec<FileView>, Refusal> {
        let g = self.groups.get(group).ok_or_else(|| Refusal::no_such_group(group))?;
        if !g.members.iter().any(|m| m == user) {
            return Err(Refusal::not_member(group));
        }
        Ok(g.files.values().map(|f| self.file_view(f)).collect())
    }

    pub fn file(&self, user: &str, group: &str, name: &str) -> Result<FileView, Refusal> {
        let g = self.groups.get(group).ok_or_else(|| Refusal::no_such_group(group))?;
        if !g.members.iter().any(|m| m == user) {
            return Err(Refusal::not_member(group));
        }
        let f = g.files.get(name).ok_or_else(|| no_such_file(group, name))?;
        Ok(self.file_view(f))
    }

    fn file_view(&self, f: &super::SharedFile) -> FileView {
        let active_sharers = f
            .sharers
            .iter()
            .filter_map(|u| {
                let account = self.users.get(u)?;
                if account.shares_paused {
                    return None;
                }
                Some(SharerView {
                    user: u.clone(),
                    peer_addr: account.peer_addr.clone()?,
                    peer_key: account.peer_key.clone()?,
                })
            })
            .collect();
        FileView { meta: f.meta.clone(), active_sharers }
    }
}
