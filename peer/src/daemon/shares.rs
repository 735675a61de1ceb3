//! What this peer serves: files it uploaded or finished downloading, by group and name,
//! persisted in HOME/shares.json. The daemon keeps it in step with the tracker
//! (`daemon::reconcile::reconcile_shares`): a share the tracker ended (a removal from the group, a leave)
//! is dropped here too, the local copy kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::home::{read_json, Home, TableFile};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Share {
    pub group: String,
    pub name: String,
    /// Absolute path of the local copy.
    pub path: String,
    pub size: u64,
    /// Whole-file SHA-1 (hex): the file's identity in the piece protocol.
    pub sha1: String,
    /// SHA-1 (hex) of the piece list, the key of its file in HOME/piece-lists/. Absent in a
    /// share recorded by an older version: the list is then rebuilt from the file when asked for.
    #[serde(default)]
    pub piece_list_sha1: Option<String>,
}

/// The shares, in memory and in HOME/shares.json. The file is written outside the lock
/// (`TableFile`): the piece server's handshakes look shares up and never wait on a write.
pub struct ShareTable {
    file: TableFile,
    shares: Mutex<Vec<Share>>,
    /// When each (group, name) was last added by this process: a check against the tracker that
    /// began before then says nothing about it (it may predate the upload that added it).
    added_at: Mutex<HashMap<(String, String), Instant>>,
}

impl ShareTable {
    pub fn load(home: &Home) -> anyhow::Result<Self> {
        let path = home.shares_path();
        let shares: Vec<Share> = read_json(&path)?.unwrap_or_default();
        Ok(ShareTable { file: TableFile::new(path), shares: Mutex::new(shares), added_at: Mutex::default() })
    }

    /// Changes the table with `f` under its lock, then writes the result outside it.
    fn change<R>(&self, f: impl FnOnce(&mut Vec<Share>) -> Option<R>) -> Option<R> {
        let (n, snapshot, r) = {
            let mut s = self.shares.lock().unwrap_or_else(|p| p.into_inner());
            let r = f(&mut s)?;
            (self.file.next(), s.clone(), r)
        };
        self.file.write(n, &snapshot);
        Some(r)
    }

    /// Adds or replaces the share of (group, name).
    pub fn add(&self, share: Share) {
        self.added_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((share.group.clone(), share.name.clone()), Instant::now());
        self.change(|s| {
            s.retain(|x| !(x.group == share.group && x.name == share.name));
            s.push(share);
            Some(())
        });
    }

    pub fn remove(&self, group: &str, name: &str) -> Option<Share> {
        self.change(|s| {
            let pos = s.iter().position(|x| x.group == group && x.name == name)?;
            Some(s.remove(pos))
        })
    }

    /// The share that serves content `sha1` in `group`.
    pub fn find(&self, group: &str, sha1: &str) -> Option<Share> {
        let s = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        s.iter().find(|x| x.group == group && x.sha1 == sha1).cloned()
    }

    /// Records the piece list's digest of a share that had none (an older version's record).
    pub fn set_piece_list_sha1(&self, group: &str, name: &str, key: &str) {
        self.change(|s| {
            let x = s.iter_mut().find(|x| x.group == group && x.name == name)?;
            x.piece_list_sha1 = Some(key.to_string());
            Some(())
        });
    }

    /// Every share, as `list-shares` shows them: by group, then name.
    pub fn rows(&self) -> Vec<crate::control::ShareRow> {
        let s = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<crate::control::ShareRow> = s
            .iter()
            .map(|x| crate::control::ShareRow {
                group: x.group.clone(),
                name: x.name.clone(),
                size: x.size,
                sha1: x.sha1.clone(),
                path: x.path.clone(),
            })
            .collect();
        rows.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
        rows
    }

    /// Removes the share of (group, name) that a check begun at `checked_since` found stale,
    /// unless it was added (again) since: that check did not see it.
    pub fn remove_stale(&self, group: &str, name: &str, checked_since: Instant) -> Option<Share> {
        let key = (group.to_string(), name.to_string());
        {
            let added = self.added_at.lock().unwrap_or_else(|p| p.into_inner());
            if added.get(&key).is_some_and(|at| *at >= checked_since) {
                return None;
            }
        }
        let removed = self.remove(group, name);
        self.added_at.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        removed
    }

    /// Every share, in the table's order.
    pub fn all(&self) -> Vec<Share> {
        self.shares.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn get(&self, group: &str, name: &str) -> Option<Share> {
        let s = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        s.iter().find(|x| x.group == group && x.name == name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(group: &str, name: &str) -> Share {
        Share {
            group: group.into(),
            name: name.into(),
            path: format!("/p/{name}"),
            size: 1,
            sha1: "ab".into(),
            piece_list_sha1: None,
        }
    }

    #[test]
    fn a_stale_share_goes_unless_it_was_added_after_the_check_began() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home { dir: dir.path().to_path_buf() };
        let t = ShareTable::load(&home).unwrap();
        t.add(share("g", "old.bin"));
        let check_began = Instant::now();
        // Added again while the check ran: the check's "not listed" may predate that upload.
        t.add(share("g", "new.bin"));
        assert_eq!(t.remove_stale("g", "new.bin", check_began), None);
        assert!(t.get("g", "new.bin").is_some());
        assert_eq!(t.remove_stale("g", "old.bin", check_began).map(|s| s.name), Some("old.bin".to_string()));
        assert!(t.get("g", "old.bin").is_none());
        assert_eq!(t.remove_stale("g", "old.bin", Instant::now()), None, "nothing left to remove");
        assert_eq!(t.all().len(), 1);
    }
}
