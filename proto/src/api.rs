//! The client API (HTTP/JSON, under `/v1`): request and response bodies, shared by the
//! tracker nodes that serve it and the peers that call it. docs/API.md documents each call.
//!
//! Conventions:
//! - Writes carry an `Idempotency-Key` header: the same key on every retry of one write, so
//!   the cluster applies it once and answers every retry with the first outcome.
//! - Authenticated calls carry `Authorization: Bearer <token>`.
//! - A node that is not the leader answers 307 with `Location` and a [`NotLeaderBody`];
//!   while no leader is known, 503 with `Retry-After` and an [`ErrorBody`] (`unavailable`).
//! - Refusals are 4xx with an [`ErrorBody`] whose `code` is one of CONTRACT.md's codes.

use serde::{Deserialize, Serialize};

/// Header carrying the request id of a write.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Header carrying the cluster secret on node-to-node and admin calls.
pub const CLUSTER_SECRET: &str = "x-cluster-secret";
/// Largest request body the API accepts, in bytes. The largest body any call needs is an
/// upload's: a 255-byte name (up to 1.5 KiB once JSON-escaped), two hex digests, a peer
/// address; a login's is a 1 KiB password. Nothing legitimate comes near this.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { code: code.into(), message: message.into() } }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRef {
    pub id: u64,
    pub api: String,
}

/// Body of a 307 from a follower: where the leader is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotLeaderBody {
    pub error: ErrorDetail,
    pub leader: LeaderRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub user: String,
    pub password: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
    /// The session token to open, chosen by the client (64 hex characters of randomness):
    /// a retried login then opens the same session instead of an orphan. When absent, the
    /// node draws one.
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    pub user: String,
    pub token: String,
    pub expires_at_ms: u64,
    pub resumed_shares: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateGroupRequest {
    pub group: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptRequest {
    pub user: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRow {
    pub group: String,
    pub owner: String,
    pub members: u64,
    pub member: bool,
    pub pending: bool,
}

/// Groups one page of `GET /v1/groups` holds when the call names no `limit`.
pub const GROUPS_PAGE_DEFAULT: usize = 500;
/// Most groups one page of `GET /v1/groups` holds (`limit` above it is refused): about 100 KiB
/// of JSON, whatever the number of groups in the cluster.
pub const GROUPS_PAGE_MAX: usize = 1_000;

/// The query of `GET /v1/groups`: `?after=NAME&limit=N`, both optional. Groups come in name
/// order; a page starts after the group named `after` (the previous page's `next_after`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsQuery {
    pub after: Option<String>,
    pub limit: Option<usize>,
}

/// One page of `GET /v1/groups`: `next_after` is the cursor of the next page (the last group
/// of this one), `null` when this page is the last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsPage {
    pub groups: Vec<GroupRow>,
    pub next_after: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRow {
    pub user: String,
}

/// A file's metadata as uploaded: hashes as 40 lowercase hex characters.
///
/// The tracker never sees the piece hashes themselves (BitTorrent's design: a tracker knows an
/// info hash). `piece_list_sha1` is the SHA-1 of the piece hashes' 20-byte digests concatenated
/// in piece order; a downloader fetches the list from a sharer over the piece protocol and checks
/// it against this digest before it trusts a single piece (docs/PROTOCOL.md, `piece_list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMetaBody {
    pub name: String,
    pub size: u64,
    pub piece_len: u64,
    pub piece_list_sha1: String,
    pub sha1: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRequest {
    pub file: FileMetaBody,
    /// Where this peer's daemon serves pieces (`host:port`). The tracker keeps only the port:
    /// the host it records is the address the request came from.
    pub peer_addr: String,
    /// This peer's channel key: an Ed25519 public key as 64 hex characters.
    pub peer_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceRequest {
    /// `host:port`; as for an upload, only the port is kept, the host is the request's source.
    pub peer_addr: String,
    /// This peer's channel key: an Ed25519 public key as 64 hex characters.
    pub peer_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRow {
    pub name: String,
    pub size: u64,
    pub pieces: u64,
    pub sha1: String,
    pub sharers: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharerRow {
    pub user: String,
    pub peer_addr: String,
    /// The sharer's channel key (64 lowercase hex): a downloader checks that the peer at
    /// `peer_addr` holds it.
    pub peer_key: String,
}

/// `POST /v1/groups/{group}/files/{name}/ticket`: a ticket for this peer's channel key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRequest {
    /// The asking peer's channel key: an Ed25519 public key as 64 hex characters.
    pub peer_key: String,
}

/// A ticket signed with the cluster's key (`crate::ticket`), for the piece protocol's handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketResponse {
    /// The ticket's bytes as lowercase hex.
    pub ticket: String,
    /// When it runs out (unix ms).
    pub expires_at_ms: u64,
    /// The whole-file SHA-1 it is for (40 lowercase hex).
    pub file_sha1: String,
}

/// `GET /v1/ticket-key`: the public key that tickets are signed with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketKeyResponse {
    /// Ed25519 public key, 64 lowercase hex characters.
    pub key: String,
}

/// A file with everything a download needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDetails {
    pub group: String,
    pub file: FileMetaBody,
    pub sharers: Vec<SharerRow>,
}

/// The answer of a successful write: `{"ok": true, ...}` with what the write reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OkBody {
    pub ok: bool,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// `GET /v1/status` of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub api: String,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub leader_api: Option<String>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub users: u64,
    pub groups: u64,
    pub files: u64,
    /// SHA-1 over the whole state machine, when asked for with `?digest=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_digest: Option<String>,
}

/// `POST /v1/admin/members`: make a listed node a voter (`add`) or remove it (`remove`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersRequest {
    pub action: String,
    pub id: u64,
    pub api: String,
    pub raft: String,
}
