//! The state as a sequence of small records, so that a snapshot is written and read as a
//! stream (one record a line) and no large state is ever one allocation.

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use super::dedup::Remembered;
use super::quota::{Delta, QuotaKind};
use super::{Group, Session, TrackerState, User};
use crate::command::{Response, Sha1Digest};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    User {
        name: String,
        user: User,
    },
    Session {
        token_hash: String,
        session: Session,
    },
    /// A group without its files; each file follows as its own record.
    Group {
        name: String,
        group: Group,
    },
    File {
        group: String,
        name: String,
        file: super::SharedFile,
    },
    Dedup {
        id: Sha1Digest,
        at_ms: u64,
        fingerprint: Sha1Digest,
        response: Response,
    },
}

impl TrackerState {
    /// Every record of the state, in a deterministic order (the order `from_records` expects:
    /// a group before its files).
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let users = self.users.iter().map(|(name, user)| Record::User { name: name.clone(), user: user.clone() });
        let sessions = self
            .sessions
            .iter()
            .map(|(token_hash, session)| Record::Session { token_hash: token_hash.clone(), session: session.clone() });
        let groups = self.groups.iter().flat_map(|(name, g)| {
            let head = Record::Group {
                name: name.clone(),
                group: Group {
                    owner: g.owner.clone(),
                    members: g.members.clone(),
                    pending: g.pending.clone(),
                    files: Default::default(),
                },
            };
            std::iter::once(head).chain(g.files.iter().map(move |(fname, f)| Record::File {
                group: name.clone(),
                name: fname.clone(),
                file: f.clone(),
            }))
        });
        let dedup = self.dedup.iter().map(|(id, r)| Record::Dedup {
            id: *id,
            at_ms: r.at_ms,
            fingerprint: r.fingerprint,
            response: r.response.clone(),
        });
        users.chain(sessions).chain(groups).chain(dedup)
    }

    /// Adds one record while rebuilding a state from a snapshot.
    pub fn load_record(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::User { name, user } => {
                self.users.insert(name, user);
            }
            Record::Session { token_hash, session } => {
                self.session_expiry.insert((session.expires_at_ms, token_hash.clone()));
                self.sessions.insert(token_hash, session);
            }
            Record::Group { name, group } => {
                self.count_group_added(&group);
                if let Some(replaced) = self.groups.insert(name, group) {
                    self.count_group_removed(&replaced);
                }
            }
            Record::File { group, name, file } => {
                let g = self
                    .groups
                    .get_mut(&group)
                    .ok_or_else(|| format!("file {name:?} of unknown group {group:?} in snapshot"))?;
                let uploader = file.uploader.clone();
                let replaced = g.files.insert(name, file).map(|f| f.uploader);
                self.count(&uploader, QuotaKind::ItemsUploaded, Delta::Add);
                if let Some(u) = replaced {
                    self.count(&u, QuotaKind::ItemsUploaded, Delta::Remove);
                }
            }
            Record::Dedup { id, at_ms, fingerprint, response } => {
                self.dedup.insert(id, Remembered { at_ms, fingerprint, response })
            }
        }
        Ok(())
    }

    /// A digest of the whole state: equal on every replica that applied the same log.
    pub fn digest(&self) -> String {
        let mut h = Sha1::new();
        for r in self.records() {
            h.update(serde_json::to_vec(&r).expect("records serialize"));
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }
}
