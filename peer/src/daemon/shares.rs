//! What this peer serves: files it uploaded or finished downloading, by group and name,
//! persisted in HOME/shares.json.

use std::sync::Mutex;

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
}

impl ShareTable {
    pub fn load(home: &Home) -> anyhow::Result<Self> {
        let path = home.shares_path();
        let shares: Vec<Share> = read_json(&path)?.unwrap_or_default();
        Ok(ShareTable { file: TableFile::new(path), shares: Mutex::new(shares) })
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

    pub fn get(&self, group: &str, name: &str) -> Option<Share> {
        let s = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        s.iter().find(|x| x.group == group && x.name == name).cloned()
    }
}
