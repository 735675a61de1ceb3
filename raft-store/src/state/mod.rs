//! The tracker's state and its pure, deterministic `apply`: no I/O, no clock, no randomness.
//! Time comes in with each command (`Request::now_ms`), so every replica that applies the
//! same log reaches the same state.

mod dedup;
mod files;
mod groups;
pub mod query;
mod quota;
mod records;
mod sharers;
mod users;

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

pub use crate::command::validate_peer_key;
pub use dedup::{Dedup, Remembered, DEDUP_MAX_ENTRIES, DEDUP_TTL_MS};
pub use quota::{Growth, QuotaKind, UserCounts};
pub use records::Record;
pub use sharers::Sharers;

use crate::command::{Command, FileMeta, Refusal, Reply, Request, Response};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// argon2id PHC string; the password itself never reaches the state machine.
    pub password_hash: String,
    /// Open sessions; shares pause when the last one closes or expires.
    pub sessions: u64,
    pub shares_paused: bool,
    /// Where this user's peer daemon serves pieces, once it has announced itself.
    pub peer_addr: Option<String>,
    /// The Ed25519 public key (64 lowercase hex) its daemon speaks with on peer channels.
    /// Accounts stored before peers had keys have none (and are not listed as sharers until
    /// their daemon announces itself again).
    #[serde(default)]
    pub peer_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub expires_at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub owner: String,
    /// In join order; the owner is always among them, and the next one inherits the group.
    pub members: Vec<String>,
    /// Users who asked to join, in the order they asked.
    pub pending: Vec<String>,
    /// A persistent map: cloning a group (as a snapshot's copy does) shares its files.
    pub files: OrdMap<String, SharedFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFile {
    pub meta: FileMeta,
    pub uploader: String,
    /// Users whose peers serve this file (paused ones included; see `User::shares_paused`).
    pub sharers: Sharers,
}

/// The whole replicated tracker state.
///
/// Every collection is a persistent map (`imbl`'s B+ trees, nodes behind reference counts), so
/// `clone` is O(1): a snapshot takes a clone under a short read lock and serialises it on its
/// own thread while applying goes on; a write then copies only the nodes on its path, and the
/// snapshot keeps seeing the state as of its clone. A deep copy of the whole state per snapshot,
/// freed a second later among live allocations, is what fragmented the heap before.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerState {
    pub(crate) users: OrdMap<String, User>,
    /// Keyed by the SHA-256 (hex) of the session token.
    pub(crate) sessions: OrdMap<String, Session>,
    /// (expires_at_ms, token_hash), to expire sessions in time order without a scan.
    pub(crate) session_expiry: OrdSet<(u64, String)>,
    pub(crate) groups: OrdMap<String, Group>,
    pub(crate) dedup: Dedup,
    /// Groups owned and file records created, per user: derived from `groups`, kept by `apply`
    /// and `load_record` so that the leader's quota check is a lookup, not a scan (`quota.rs`).
    pub(crate) user_counts: OrdMap<String, UserCounts>,
}

impl TrackerState {
    /// Applies one request. A refused command is a `Response::Refused`, never a panic or an
    /// error: it is an outcome like any other, and a retry of the same request id answers it.
    pub fn apply(&mut self, req: &Request) -> Response {
        self.expire_sessions(req.now_ms);
        self.dedup.expire(req.now_ms);
        let remembered_as = req.request_id.as_ref().map(|id| (req.command.dedup_key(id), req.command.fingerprint()));
        if let Some((key, fingerprint)) = &remembered_as {
            match self.dedup.get(key) {
                Some(first) if first.fingerprint == *fingerprint => return first.response.clone(),
                // Not remembered: the first request keeps its key, and this one changes nothing.
                Some(_) => return Response::Refused(Refusal::key_reused()),
                None => {}
            }
        }
        let response: Response = self.apply_command(&req.command, req.now_ms).into();
        if let Some((key, fingerprint)) = remembered_as {
            self.dedup.insert(key, Remembered { at_ms: req.now_ms, fingerprint, response: response.clone() });
        }
        response
    }

    /// What the leader checks before it proposes a request, against its applied state: the
    /// session is open, the names and sizes are valid, and a request id is not reused for other
    /// content. A request that fails here never reaches the log. `apply` checks it all again
    /// (a session may close between this check and the commit).
    ///
    /// A request whose id is already remembered with the same content passes: its retry must
    /// reach `apply`, which answers the first outcome even if the state has moved on since.
    pub fn precheck(&self, req: &Request) -> Result<(), Refusal> {
        if let Some(id) = &req.request_id {
            if let Some(first) = self.dedup.get(&req.command.dedup_key(id)) {
                if first.at_ms.saturating_add(DEDUP_TTL_MS) >= req.now_ms {
                    return if first.fingerprint == req.command.fingerprint() {
                        Ok(())
                    } else {
                        Err(Refusal::key_reused())
                    };
                }
            }
        }
        req.command.validate_shape()?;
        match req.command.token_hash() {
            None => Ok(()),
            Some(token_hash) => self.authenticate(token_hash, req.now_ms).map(|_| ()),
        }
    }

    fn apply_command(&mut self, command: &Command, now_ms: u64) -> Result<Reply, Refusal> {
        match command {
            Command::Register { user, password_hash } => self.register(user, password_hash),
            Command::Login { user, token_hash, expires_at_ms } => self.login(user, token_hash, *expires_at_ms, now_ms),
            Command::Logout { token_hash } => self.logout(token_hash),
            Command::CreateGroup { token_hash, group } => {
                let user = self.authenticate(token_hash, now_ms)?;
                self.create_group(&user, group)
            }
            Command::JoinGroup { token_hash, group } => {
                let user = self.authenticate(token_hash, now_ms)?;
                self.join_group(&user, group)
            }
            Command::LeaveGroup { token_hash, group } => {
                let user = self.authenticate(token_hash, now_ms)?;
                self.leave_group(&user, group)
            }
            Command::AcceptRequest { token_hash, group, user: joiner } => {
                let user = self.authenticate(token_hash, now_ms)?;
                self.accept_request(&user, group, joiner)
            }
            Command::UploadFile { token_hash, group, file, peer_addr, peer_key } => {
                let user = self.authenticate(token_hash, now_ms)?;
                self.upload_file(&user, group, file, peer_addr, peer_key)
            }
            Command::StopShare { token_hash, group, name } => {
                let user = self.authenticate(token_hash, now_ms)?;
                self.stop_share(&user, group, name)
            }
            Command::Announce { token_hash, peer_addr, peer_key } => {
                let user = self.authenticate(token_hash, now_ms)?;
                self.announce(&user, peer_addr, peer_key)
            }
            Command::RemoveMember { token_hash, group, user: member } => {
                let user = self.authenticate(token_hash, now_ms)?;
                self.remove_member(&user, group, member)
            }
        }
    }

    /// Resolves a session to its user, if it is open at `now_ms`.
    pub fn authenticate(&self, token_hash: &str, now_ms: u64) -> Result<String, Refusal> {
        match self.sessions.get(token_hash) {
            Some(s) if s.expires_at_ms > now_ms => Ok(s.user.clone()),
            _ => Err(Refusal::unauthenticated()),
        }
    }

    /// Number of users, groups and files, for status and metrics.
    pub fn counts(&self) -> (u64, u64, u64) {
        let files = self.groups.values().map(|g| g.files.len() as u64).sum();
        (self.users.len() as u64, self.groups.len() as u64, files)
    }

    /// How many records a snapshot of this state holds (users, sessions, groups, files and
    /// remembered request ids): what a snapshot costs to build.
    pub fn record_count(&self) -> u64 {
        let (users, groups, files) = self.counts();
        users + groups + files + self.sessions.len() as u64 + self.dedup.len() as u64
    }

    pub fn groups(&self) -> &OrdMap<String, Group> {
        &self.groups
    }

    pub fn users(&self) -> &OrdMap<String, User> {
        &self.users
    }

    pub fn sessions(&self) -> &OrdMap<String, Session> {
        &self.sessions
    }

    /// The stored argon2 hash of `user`, for the node that verifies a login.
    pub fn password_hash(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(|u| u.password_hash.as_str())
    }
}

#[cfg(test)]
mod tests;
