//! What goes into the Raft log (`Request`, `Command`) and what applying it answers
//! (`Response`: a typed reply or a typed refusal with the contract's error code).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Size of every piece but the last, in bytes (512 KiB).
pub const PIECE_LEN_BYTES: u64 = 512 * 1024;
/// Largest file a group can share, in bytes (1 TiB = 2^21 pieces).
///
/// The tracker no longer carries piece hashes, so a log entry is a few hundred bytes whatever
/// the file's size. The bound is the peer's: a downloader holds the whole verified piece list in
/// memory (20 bytes a piece: 40 MiB at 1 TiB) and sends its bitfield in one frame (256 KiB at
/// 1 TiB). The tracker refuses larger files at its boundary so that no peer is ever told about
/// a file it could not download.
pub const MAX_FILE_SIZE_BYTES: u64 = 1 << 40;
/// Most pieces one file may have (`MAX_FILE_SIZE_BYTES / PIECE_LEN_BYTES`).
pub const MAX_PIECES: u64 = MAX_FILE_SIZE_BYTES / PIECE_LEN_BYTES;

/// Longest argon2 PHC string accepted in a `Register` (ours are ~100 bytes).
pub const MAX_PASSWORD_HASH_BYTES: usize = 256;

/// One entry of the replicated log.
///
/// `now_ms` is stamped by the node that proposes the entry: `apply` never reads a clock,
/// so that every replica computes the same state from the same log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Client-chosen id of this logical write, the same on every retry; a repeated id
    /// answers with the first outcome and changes nothing.
    pub request_id: Option<String>,
    /// Wall-clock time at the proposing node, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    pub command: Command,
}

/// A 20-byte SHA-1 digest, written as 40 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sha1Digest(pub [u8; 20]);

impl Sha1Digest {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let bytes = hex::decode(s).map_err(|e| format!("bad SHA-1 hex {s:?}: {e}"))?;
        let arr: [u8; 20] = bytes.try_into().map_err(|_| format!("a SHA-1 is 40 hex characters, got {}", s.len()))?;
        Ok(Sha1Digest(arr))
    }
}

impl fmt::Debug for Sha1Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl fmt::Display for Sha1Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl Serialize for Sha1Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha1Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Sha1Digest::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// What a shared file is: enough to verify every byte of it.
///
/// The piece hashes themselves travel between peers (the piece protocol's `piece_list`) and are
/// checked against `piece_list_sha1`, the SHA-1 of the 20-byte piece digests concatenated in
/// piece order: the tracker's state does not grow with the bytes shared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub name: String,
    pub size: u64,
    pub piece_len: u64,
    pub piece_list_sha1: Sha1Digest,
    pub sha1: Sha1Digest,
}

impl FileMeta {
    /// Number of pieces a file of `size` bytes has.
    pub fn piece_count(size: u64) -> u64 {
        size.div_ceil(PIECE_LEN_BYTES)
    }

    /// Checks that the metadata describes a file this tracker can hold.
    pub fn validate(&self) -> Result<(), Refusal> {
        crate::names::validate_file_name(&self.name).map_err(Refusal::invalid_name)?;
        if self.size > MAX_FILE_SIZE_BYTES {
            return Err(Refusal::new(
                ErrorCode::FileTooLarge,
                format!(
                    "{} is {} bytes; the largest file a group can share is {} bytes (1 TiB)",
                    self.name, self.size, MAX_FILE_SIZE_BYTES
                ),
            ));
        }
        if self.piece_len != PIECE_LEN_BYTES {
            return Err(Refusal::new(
                ErrorCode::InvalidRequest,
                format!("piece length must be {PIECE_LEN_BYTES} bytes, got {}", self.piece_len),
            ));
        }
        Ok(())
    }
}

/// The state changes a client can ask for. Commands that act for a logged-in user carry the
/// SHA-256 of the session token (never the token itself); `apply` resolves it to the user,
/// so a session revoked between the check and the commit is still refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// `password_hash` is an argon2id PHC string computed by the receiving node.
    Register {
        user: String,
        password_hash: String,
    },
    /// The password was verified by the receiving node; this opens the session.
    Login {
        user: String,
        token_hash: String,
        expires_at_ms: u64,
    },
    Logout {
        token_hash: String,
    },
    CreateGroup {
        token_hash: String,
        group: String,
    },
    JoinGroup {
        token_hash: String,
        group: String,
    },
    LeaveGroup {
        token_hash: String,
        group: String,
    },
    AcceptRequest {
        token_hash: String,
        group: String,
        user: String,
    },
    UploadFile {
        token_hash: String,
        group: String,
        file: FileMeta,
        peer_addr: String,
        /// The uploader's peer channel key (see `Announce`).
        #[serde(default)]
        peer_key: String,
    },
    StopShare {
        token_hash: String,
        group: String,
        name: String,
    },
    /// The user's peer daemon serves pieces at `peer_addr` from now on, and speaks on its
    /// channels with the key `peer_key` (an Ed25519 public key, 64 lowercase hex).
    ///
    /// `peer_key` is empty only in entries written before peers had keys (the field defaults
    /// when an old log is read): such an entry is applied as it was then, and leaves the user
    /// without a key. The API never proposes an empty key.
    Announce {
        token_hash: String,
        peer_addr: String,
        #[serde(default)]
        peer_key: String,
    },
    /// The group's owner removes a member: `user` stops being a member and stops sharing there.
    RemoveMember {
        token_hash: String,
        group: String,
        user: String,
    },
}

impl Command {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Register { .. } => "register",
            Command::Login { .. } => "login",
            Command::Logout { .. } => "logout",
            Command::CreateGroup { .. } => "create_group",
            Command::JoinGroup { .. } => "join_group",
            Command::LeaveGroup { .. } => "leave_group",
            Command::AcceptRequest { .. } => "accept_request",
            Command::UploadFile { .. } => "upload_file",
            Command::StopShare { .. } => "stop_share",
            Command::Announce { .. } => "announce",
            Command::RemoveMember { .. } => "remove_member",
        }
    }

    /// Checks what can be checked without the state: names, sizes, token and address shapes.
    /// The leader runs it before proposing; `apply` runs the same rules on every replica.
    pub fn validate_shape(&self) -> Result<(), Refusal> {
        use crate::names::{validate_file_name, validate_id};
        let id = |kind: &str, name: &str| validate_id(kind, name).map_err(Refusal::invalid_name);
        let token = |t: &str| {
            if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(())
            } else {
                Err(Refusal::unauthenticated())
            }
        };
        match self {
            Command::Register { user, password_hash } => {
                id("user", user)?;
                if password_hash.len() > MAX_PASSWORD_HASH_BYTES {
                    return Err(Refusal::new(ErrorCode::InvalidRequest, "password hash too long"));
                }
                Ok(())
            }
            Command::Login { user, token_hash, .. } => {
                id("user", user)?;
                token(token_hash)
            }
            Command::Logout { token_hash } => token(token_hash),
            Command::CreateGroup { token_hash, group }
            | Command::JoinGroup { token_hash, group }
            | Command::LeaveGroup { token_hash, group } => {
                token(token_hash)?;
                id("group", group)
            }
            Command::AcceptRequest { token_hash, group, user } | Command::RemoveMember { token_hash, group, user } => {
                token(token_hash)?;
                id("group", group)?;
                id("user", user)
            }
            Command::UploadFile { token_hash, group, file, peer_addr, peer_key } => {
                token(token_hash)?;
                id("group", group)?;
                file.validate()?;
                validate_peer_addr(peer_addr)?;
                validate_logged_peer_key(peer_key)
            }
            Command::StopShare { token_hash, group, name } => {
                token(token_hash)?;
                id("group", group)?;
                validate_file_name(name).map_err(Refusal::invalid_name)
            }
            Command::Announce { token_hash, peer_addr, peer_key } => {
                token(token_hash)?;
                validate_peer_addr(peer_addr)?;
                validate_logged_peer_key(peer_key)
            }
        }
    }

    /// Who a request id belongs to: the session for commands that act for a logged-in user,
    /// the user name for register and login. Request ids are scoped to (kind, principal), so
    /// one user's key can never answer another user's call, nor another kind of call.
    pub fn principal(&self) -> &str {
        match self {
            Command::Register { user, .. } | Command::Login { user, .. } => user,
            _ => self.token_hash().unwrap_or_default(),
        }
    }

    /// The session a command acts for: every command but register and login has one.
    pub fn token_hash(&self) -> Option<&str> {
        match self {
            Command::Register { .. } | Command::Login { .. } => None,
            Command::Logout { token_hash }
            | Command::CreateGroup { token_hash, .. }
            | Command::JoinGroup { token_hash, .. }
            | Command::LeaveGroup { token_hash, .. }
            | Command::AcceptRequest { token_hash, .. }
            | Command::UploadFile { token_hash, .. }
            | Command::StopShare { token_hash, .. }
            | Command::Announce { token_hash, .. }
            | Command::RemoveMember { token_hash, .. } => Some(token_hash),
        }
    }

    /// The key under which the request-id table remembers a request: a digest of its id
    /// scoped to its kind and principal (20 bytes whatever the id's length: the table holds up
    /// to 100 000 of them on every node).
    pub fn dedup_key(&self, request_id: &str) -> Sha1Digest {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        for part in [self.kind(), self.principal(), request_id] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        Sha1Digest(h.finalize().into())
    }

    /// A digest of what the client asked for, to tell a retry (same content) from a reused key
    /// (other content). Fields the receiving node computes afresh on every attempt are left
    /// out: the argon2 hash (its salt is random) and a login's expiry (stamped from the clock).
    pub fn fingerprint(&self) -> Sha1Digest {
        use sha1::{Digest, Sha1};
        let mut stable = self.clone();
        match &mut stable {
            Command::Register { password_hash, .. } => password_hash.clear(),
            Command::Login { expires_at_ms, .. } => *expires_at_ms = 0,
            _ => {}
        }
        let bytes = serde_json::to_vec(&stable).expect("commands serialize");
        Sha1Digest(Sha1::digest(&bytes).into())
    }
}

/// The state machine's refusal codes live in `proto` (one vocabulary with the API's own codes);
/// their serde form, inside log entries and snapshots, is unchanged.
pub use proto::error::ErrorCode;

/// A command the state machine refused: an outcome, not a storage failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into() }
    }
    pub fn invalid_name(message: String) -> Self {
        Refusal::new(ErrorCode::InvalidName, message)
    }
    pub fn unauthenticated() -> Self {
        Refusal::new(ErrorCode::Unauthenticated, "not logged in, or the session expired; log in again")
    }
    pub fn no_such_group(group: &str) -> Self {
        Refusal::new(ErrorCode::NoSuchGroup, format!("there is no group {group:?}"))
    }
    pub fn key_reused() -> Self {
        Refusal::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was already used for a different request; use a new key for a new request",
        )
    }
    pub fn not_member(group: &str) -> Self {
        Refusal::new(ErrorCode::NotMember, format!("you are not a member of group {group:?}"))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// What a successful command reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Blank and membership entries.
    Internal,
    Registered {
        user: String,
    },
    LoggedIn {
        user: String,
        resumed_shares: u64,
    },
    LoggedOut {
        user: String,
        paused_shares: u64,
    },
    GroupCreated {
        group: String,
    },
    RequestFiled {
        group: String,
        already_pending: bool,
    },
    LeftGroup {
        group: String,
        new_owner: Option<String>,
        group_deleted: bool,
    },
    Accepted {
        group: String,
        user: String,
    },
    FileShared {
        group: String,
        name: String,
        new_file: bool,
    },
    ShareStopped {
        group: String,
        name: String,
        was_sharing: bool,
    },
    Announced {
        user: String,
        shares: u64,
    },
    MemberRemoved {
        group: String,
        user: String,
        /// Files of the group the removed user no longer shares.
        shares_ended: u64,
    },
}

/// The outcome of applying one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    Refused(Refusal),
}

impl Response {
    pub fn is_ok(&self) -> bool {
        matches!(self, Response::Ok(_))
    }
}

impl From<Result<Reply, Refusal>> for Response {
    fn from(r: Result<Reply, Refusal>) -> Self {
        match r {
            Ok(reply) => Response::Ok(reply),
            Err(refusal) => Response::Refused(refusal),
        }
    }
}

/// Length of a peer key in hex: an Ed25519 public key is 32 bytes.
pub const PEER_KEY_HEX_LEN: usize = 64;

/// A peer key is an Ed25519 public key written as 64 lowercase hex characters.
pub fn validate_peer_key(key: &str) -> Result<(), Refusal> {
    if key.len() == PEER_KEY_HEX_LEN && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::InvalidRequest,
            format!("peer key {key:?} is not an Ed25519 public key as {PEER_KEY_HEX_LEN} lowercase hex characters"),
        ))
    }
}

/// A peer key as the log carries it: a valid key, or empty in entries written before peers
/// had keys (see `Command::Announce`).
pub fn validate_logged_peer_key(key: &str) -> Result<(), Refusal> {
    if key.is_empty() {
        Ok(())
    } else {
        validate_peer_key(key)
    }
}

/// A peer address is `host:port`, bounded in length; the tracker does not resolve it.
pub fn validate_peer_addr(addr: &str) -> Result<(), Refusal> {
    let ok = addr.len() <= 255
        && addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(ErrorCode::InvalidRequest, format!("peer address {addr:?} is not host:port")))
    }
}
