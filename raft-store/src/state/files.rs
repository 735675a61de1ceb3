//! Shared files: upload (a new file, or one more sharer of the same content) and stop-share.

use super::quota::{Delta, QuotaKind};
use super::{SharedFile, Sharers, TrackerState};
use crate::command::{validate_logged_peer_key, validate_peer_addr};
use crate::command::{ErrorCode, FileMeta, Refusal, Reply};
use crate::names::{validate_file_name, validate_id};

impl TrackerState {
    pub(super) fn upload_file(
        &mut self,
        user: &str,
        group: &str,
        meta: &FileMeta,
        peer_addr: &str,
        peer_key: &str,
    ) -> Result<Reply, Refusal> {
        validate_id("group", group).map_err(Refusal::invalid_name)?;
        meta.validate()?;
        validate_peer_addr(peer_addr)?;
        validate_logged_peer_key(peer_key)?;
        let g = self.groups.get_mut(group).ok_or_else(|| Refusal::no_such_group(group))?;
        if !g.members.iter().any(|m| m == user) {
            return Err(Refusal::not_member(group));
        }
        let new_file = match g.files.get_mut(&meta.name) {
            Some(existing) => {
                // Same name: the same content makes one more sharer; anything else conflicts.
                if existing.meta.sha1 != meta.sha1
                    || existing.meta.size != meta.size
                    || existing.meta.piece_list_sha1 != meta.piece_list_sha1
                {
                    return Err(Refusal::new(
                        ErrorCode::FileConflict,
                        format!(
                            "group {group:?} already has a different file named {:?} (sha1 {}); rename yours",
                            meta.name, existing.meta.sha1
                        ),
                    ));
                }
                existing.sharers.insert(user);
                false
            }
            None => {
                g.files.insert(
                    meta.name.clone(),
                    SharedFile { meta: meta.clone(), uploader: user.to_string(), sharers: Sharers::one(user) },
                );
                true
            }
        };
        if new_file {
            self.count(user, QuotaKind::ItemsUploaded, Delta::Add);
        }
        self.set_peer(user, peer_addr, peer_key);
        Ok(Reply::FileShared { group: group.to_string(), name: meta.name.clone(), new_file })
    }

    pub(super) fn stop_share(&mut self, user: &str, group: &str, name: &str) -> Result<Reply, Refusal> {
        validate_id("group", group).map_err(Refusal::invalid_name)?;
        validate_file_name(name).map_err(Refusal::invalid_name)?;
        let g = self.groups.get_mut(group).ok_or_else(|| Refusal::no_such_group(group))?;
        if !g.members.iter().any(|m| m == user) {
            return Err(Refusal::not_member(group));
        }
        let file = g.files.get_mut(name).ok_or_else(|| no_such_file(group, name))?;
        let was_sharing = file.sharers.remove(user);
        Ok(Reply::ShareStopped { group: group.to_string(), name: name.to_string(), was_sharing })
    }
}

pub(super) fn no_such_file(group: &str, name: &str) -> Refusal {
    Refusal::new(ErrorCode::NoSuchFile, format!("group {group:?} has no file named {name:?}"))
}
