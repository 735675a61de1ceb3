//! The client API (HTTP/JSON, under `/v1`): request and response bodies, shared by the
//! tracker nodes that serve it and the peers that call it. docs/API.md documents each call.
//!
//! Conventions:
//! - Writes carry an `Idempotency-Key` header: the same key on every retry of one write, so
//!   the cluster applies it once and answers every retry with the first outcome.
//! - Authenticated calls carry `Authorization: Bearer <token>`.
//! - A node that is not the leader answers 307 with `Location` and a [`NotLeaderBody`];
//!   while no leader is known, 503 with `Retry-After` and an [`ErrorBody`] (`unavailable`).
//! - Refusals are 4xx with an [`ErrorBody`] whose `code` is one of docs/CONTRACT.md's codes.

use serde::{Deserialize, Serialize};

pub use crate::error::{ApiErrorCode, ErrorCode};

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
    pub code: ApiErrorCode,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: impl Into<ApiErrorCode>, message: impl Into<String>) -> Self {
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

/// The answer of a successful write: `{"ok": true, ...}` with the fields of `T`, the keys in
/// name order (`ok` among them) as the API has always written them. A client reads `T` alone
/// (the `ok` key is ignored as any unknown field is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OkBody<T>(pub T);

impl<T: Serialize> Serialize for OkBody<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        // Through a map with sorted keys, so that `ok` lands where it always did.
        let mut map = match serde_json::to_value(&self.0).map_err(S::Error::custom)? {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => serde_json::Map::new(),
            other => return Err(S::Error::custom(format!("an ok body holds fields, not {other}"))),
        };
        map.insert("ok".into(), serde_json::Value::Bool(true));
        map.serialize(s)
    }
}

/// `POST /v1/users`, `GET /v1/session`: the user the call was about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserBody {
    pub user: String,
}

/// `DELETE /v1/sessions`: whose session ended and how many of their shares paused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutResponse {
    pub paused_shares: u64,
    pub user: String,
}

/// `PUT /v1/peer`: the address recorded for the user's daemon and how many shares it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceResponse {
    pub peer_addr: String,
    pub shares: u64,
    pub user: String,
    /// How often the daemon should say it is alive: a third of the cluster's
    /// `peer_liveness_ms`. 0 (a tracker that does not say) leaves the daemon's default.
    #[serde(default)]
    pub alive_every_ms: u64,
}

/// `POST` and `DELETE /v1/peer/alive`: `listed` is false when the tracker lists another address
/// or key for this user (the call then counts for nothing: announce again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliveResponse {
    pub listed: bool,
    pub peer_addr: String,
    pub user: String,
    /// As in [`AnnounceResponse`].
    #[serde(default)]
    pub alive_every_ms: u64,
}

/// `POST /v1/groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreated {
    pub group: String,
}

/// `POST /v1/groups/{group}/requests`: `already_pending` when the request was filed before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub already_pending: bool,
    pub group: String,
}

/// `POST /v1/groups/{group}/members`: `user` is a member now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptResponse {
    pub group: String,
    pub user: String,
}

/// `DELETE /v1/groups/{group}/members/me`: who owns the group now, or that it is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveResponse {
    pub group: String,
    pub group_deleted: bool,
    pub new_owner: Option<String>,
}

/// `DELETE /v1/groups/{group}/members/{user}`: how many of the user's shares there ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveMemberResponse {
    pub group: String,
    pub shares_ended: u64,
    pub user: String,
}

/// `POST /v1/groups/{group}/files`: `new_file` when the group did not list the name before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    pub group: String,
    pub name: String,
    pub new_file: bool,
}

/// `DELETE /v1/groups/{group}/files/{name}/sharers/me`: `was_sharing` when the caller was a sharer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopShareResponse {
    pub group: String,
    pub name: String,
    pub was_sharing: bool,
}

/// A node's role in the Raft cluster, as `GET /v1/status` and `tracker-node status` spell it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    /// Replicates the log without a vote (a node being added).
    Learner,
    /// Stopping.
    Shutdown,
    /// A role this build does not know (from a newer node), as it was received.
    #[serde(untagged)]
    Other(String),
}

impl Role {
    pub fn as_str(&self) -> &str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
            Role::Other(s) => s,
        }
    }
}

display_as_str!(Role);

/// `GET /v1/status` of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub api: String,
    pub role: Role,
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

/// What `POST /v1/admin/members` does with the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipAction {
    /// Make a listed node a voter (a learner first, until it caught up).
    Add,
    /// Take a node out of the voters.
    Remove,
    /// Any other word: the node refuses it (400), naming it.
    #[serde(untagged)]
    Other(String),
}

impl MembershipAction {
    pub fn as_str(&self) -> &str {
        match self {
            MembershipAction::Add => "add",
            MembershipAction::Remove => "remove",
            MembershipAction::Other(s) => s,
        }
    }
}

display_as_str!(MembershipAction);

/// An action as its wire word (`Other` for any word but `add` and `remove`).
impl From<&str> for MembershipAction {
    fn from(s: &str) -> Self {
        match s {
            "add" => MembershipAction::Add,
            "remove" => MembershipAction::Remove,
            other => MembershipAction::Other(other.into()),
        }
    }
}

/// `POST /v1/admin/members`: make a listed node a voter (`add`) or remove it (`remove`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersRequest {
    pub action: MembershipAction,
    pub id: u64,
    pub api: String,
    pub raft: String,
}

/// The answer of `POST /v1/admin/members`: the voters after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersResponse {
    pub id: u64,
    pub voters: Vec<u64>,
}

/// `GET /health` and `GET /readyz`: `{"detail": ..., "health": true}` (200), or `{"error":
/// {"code": "unavailable", "message": <the reason>}, "health": false}` (503); keys in name order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    pub health: bool,
}

impl HealthBody {
    /// A probe's answer: healthy with a detail, or not with the reason.
    pub fn of(verdict: Result<String, String>) -> Self {
        match verdict {
            Ok(detail) => HealthBody { health: true, detail: Some(detail), error: None },
            Err(reason) => HealthBody {
                health: false,
                detail: None,
                error: Some(ErrorDetail { code: ApiErrorCode::Unavailable, message: reason }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ok_body_writes_its_keys_in_name_order_with_ok_among_them() {
        let leave = LeaveResponse { group: "g".into(), group_deleted: false, new_owner: Some("bob".into()) };
        assert_eq!(
            serde_json::to_string(&OkBody(&leave)).unwrap(),
            r#"{"group":"g","group_deleted":false,"new_owner":"bob","ok":true}"#
        );
        let logout = LogoutResponse { paused_shares: 2, user: "alice".into() };
        assert_eq!(serde_json::to_string(&OkBody(logout)).unwrap(), r#"{"ok":true,"paused_shares":2,"user":"alice"}"#);
        // A client reads the fields and passes over `ok`.
        let back: LeaveResponse =
            serde_json::from_str(r#"{"ok":true,"group":"g","group_deleted":true,"new_owner":null}"#).unwrap();
        assert_eq!(back, LeaveResponse { group: "g".into(), group_deleted: true, new_owner: None });
        assert!(serde_json::to_string(&OkBody(3)).is_err(), "an ok body holds fields");
    }

    #[test]
    fn roles_and_actions_keep_their_spelling() {
        for (role, name) in [
            (Role::Leader, "leader"),
            (Role::Follower, "follower"),
            (Role::Candidate, "candidate"),
            (Role::Learner, "learner"),
            (Role::Shutdown, "shutdown"),
            (Role::Other("witness".into()), "witness"),
        ] {
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Role>(&format!("\"{name}\"")).unwrap(), role);
            assert_eq!(format!("{role:<10}|"), format!("{name:<10}|"));
        }
        for (action, name) in [
            (MembershipAction::Add, "add"),
            (MembershipAction::Remove, "remove"),
            (MembershipAction::Other("promote".into()), "promote"),
        ] {
            assert_eq!(serde_json::to_string(&action).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<MembershipAction>(&format!("\"{name}\"")).unwrap(), action);
            assert_eq!(MembershipAction::from(name), action);
        }
    }

    #[test]
    fn error_bodies_and_probes_keep_their_shape() {
        let b = ErrorBody::new(ErrorCode::NotMember, "no");
        assert_eq!(serde_json::to_string(&b).unwrap(), r#"{"error":{"code":"not_member","message":"no"}}"#);
        let b: ErrorBody = serde_json::from_str(r#"{"error":{"code":"brand_new","message":"m"}}"#).unwrap();
        assert_eq!(b.error.code, ApiErrorCode::Other("brand_new".into()));
        assert_eq!(
            serde_json::to_string(&HealthBody::of(Ok("leader".into()))).unwrap(),
            r#"{"detail":"leader","health":true}"#
        );
        assert_eq!(
            serde_json::to_string(&HealthBody::of(Err("no leader".into()))).unwrap(),
            r#"{"error":{"code":"unavailable","message":"no leader"},"health":false}"#
        );
    }
}
