//! The contract's error codes (docs/CONTRACT.md, "Error codes"; docs/API.md, "Refusals"), one
//! vocabulary for the tracker nodes, the tracker client, the peer daemon and the CLI.
//!
//! - [`ErrorCode`]: what the tracker's state machine refuses with. It is written inside Raft
//!   log entries and snapshots on disk, so its serde form (`"no_such_group"`, ...) never
//!   changes: a variant may be added, none renamed or removed.
//! - [`ApiErrorCode`]: every code an answer or a command can end with: the state machine's
//!   (as [`ApiErrorCode::State`]), the nodes' own (no leader, throttled, over a quota, ...) and
//!   the peer's (no daemon, no sharer, ...). On the wire it is the same snake_case string; a code
//!   this build does not know (from a newer node or daemon) is kept as [`ApiErrorCode::Other`],
//!   so older clients still read the answer and print its code.

use serde::{Deserialize, Serialize};

/// The contract's error codes that the tracker's state machine can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadCredentials,
    Unauthenticated,
    UserExists,
    GroupExists,
    NoSuchGroup,
    NotMember,
    NotOwner,
    AlreadyMember,
    NoSuchRequest,
    NoSuchFile,
    FileConflict,
    InvalidName,
    /// File metadata over the size bound (see `MAX_FILE_SIZE_BYTES`).
    FileTooLarge,
    /// Metadata that no correct client sends (wrong piece length or count).
    InvalidRequest,
    /// An Idempotency-Key already used, in the same scope, for a request with other content.
    IdempotencyKeyReused,
    /// A request the caller may not make whatever the state (an owner removing themself).
    NotAllowed,
}

impl ErrorCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::UserExists => "user_exists",
            ErrorCode::GroupExists => "group_exists",
            ErrorCode::NoSuchGroup => "no_such_group",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::AlreadyMember => "already_member",
            ErrorCode::NoSuchRequest => "no_such_request",
            ErrorCode::NoSuchFile => "no_such_file",
            ErrorCode::FileConflict => "file_conflict",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::NotAllowed => "not_allowed",
        }
    }
}

display_as_str!(ErrorCode);

/// Every error code of the contract, as answers and commands carry it.
///
/// Serialized as its snake_case name, the state machine's codes included (`"not_member"`, not
/// `{"state": ...}`); any other string reads as `Other`, which writes it back unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorCode {
    // ---- the tracker nodes' own ----
    /// 307: this node is not the leader; the body names the one that is.
    NotLeader,
    /// No tracker leader (or no daemon) could answer in time: try again later (exit 3).
    Unavailable,
    /// An admin call without the operator's credentials.
    Forbidden,
    /// Too many attempts (failed logins, new accounts): the message says when to try again.
    RateLimited,
    /// A `[limits]` bound of the cluster file; the message names it.
    QuotaExceeded,
    /// A membership change that would leave no quorum answering (admin).
    WouldLoseQuorum,
    /// A node being added did not catch up as a learner in time (admin).
    NotCaughtUp,
    /// A request body over the API's size bound.
    BodyTooLarge,
    /// A request body that is not JSON.
    UnsupportedMediaType,
    /// A path no API route serves.
    NoSuchRoute,
    /// A known path with a method it does not take.
    MethodNotAllowed,
    /// Plain HTTP on an address that serves HTTPS only.
    HttpsRequired,
    /// The node failed in a way it did not expect.
    Internal,
    // ---- the peer's (daemon and CLI) ----
    /// Nobody shares the file (any more).
    NoPeers,
    /// A download ended without the whole file.
    DownloadFailed,
    /// No daemon runs for this HOME (exit 3).
    DaemonNotRunning,
    /// The daemon failed to do what it was asked.
    DaemonFailed,
    /// A file is at the destination and `--force` was not given.
    DestExists,
    /// A join request that was already filed.
    AlreadyPending,
    /// This HOME holds another user's shares while its daemon runs.
    HomeInUse,
    /// Ctrl-C on a command that waits (exit 130).
    Interrupted,
    /// Not enough free space at the destination; the message names both sizes.
    InsufficientSpace,
    /// A folder entry that is absolute, has `..`, or is not a file or a directory.
    InvalidPath,
    /// A local file could not be read or written.
    IoError,
    /// Bad flags or arguments (exit 2).
    Usage,
    /// A refusal of the tracker's state machine.
    #[serde(untagged)]
    State(ErrorCode),
    /// A code this build does not know, as it was received.
    #[serde(untagged)]
    Other(String),
}

impl ApiErrorCode {
    /// The code as it is written on the wire and in `--json` output.
    pub fn as_str(&self) -> &str {
        use ApiErrorCode::*;
        match self {
            NotLeader => "not_leader",
            Unavailable => "unavailable",
            Forbidden => "forbidden",
            RateLimited => "rate_limited",
            QuotaExceeded => "quota_exceeded",
            WouldLoseQuorum => "would_lose_quorum",
            NotCaughtUp => "not_caught_up",
            BodyTooLarge => "body_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            NoSuchRoute => "no_such_route",
            MethodNotAllowed => "method_not_allowed",
            HttpsRequired => "https_required",
            Internal => "internal",
            NoPeers => "no_peers",
            DownloadFailed => "download_failed",
            DaemonNotRunning => "daemon_not_running",
            DaemonFailed => "daemon_failed",
            DestExists => "dest_exists",
            AlreadyPending => "already_pending",
            HomeInUse => "home_in_use",
            Interrupted => "interrupted",
            InsufficientSpace => "insufficient_space",
            InvalidPath => "invalid_path",
            IoError => "io_error",
            Usage => "usage",
            State(c) => c.as_str(),
            Other(s) => s,
        }
    }

    /// The code a wire string names (`Other` for one this build does not know).
    pub fn parse(s: &str) -> ApiErrorCode {
        use serde::de::value::{Error, StrDeserializer};
        ApiErrorCode::deserialize(StrDeserializer::<Error>::new(s)).unwrap_or_else(|_| ApiErrorCode::Other(s.into()))
    }
}

impl From<ErrorCode> for ApiErrorCode {
    fn from(c: ErrorCode) -> Self {
        ApiErrorCode::State(c)
    }
}

/// A code held as text (a wire name): the code it names, `Other` if none.
impl From<&str> for ApiErrorCode {
    fn from(s: &str) -> Self {
        ApiErrorCode::parse(s)
    }
}

impl From<String> for ApiErrorCode {
    fn from(s: String) -> Self {
        ApiErrorCode::parse(&s)
    }
}

display_as_str!(ApiErrorCode);

/// Compares with the wire spelling (for tests and logs that hold a code as text).
impl PartialEq<str> for ApiErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ApiErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<ErrorCode> for ApiErrorCode {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == ApiErrorCode::State(*other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code with its wire name: serde and `as_str` agree, and each reads back as itself.
    #[test]
    fn every_code_has_one_wire_name_both_ways() {
        use ApiErrorCode::*;
        let cases: Vec<(ApiErrorCode, &str)> = vec![
            (NotLeader, "not_leader"),
            (Unavailable, "unavailable"),
            (Forbidden, "forbidden"),
            (RateLimited, "rate_limited"),
            (QuotaExceeded, "quota_exceeded"),
            (WouldLoseQuorum, "would_lose_quorum"),
            (NotCaughtUp, "not_caught_up"),
            (BodyTooLarge, "body_too_large"),
            (UnsupportedMediaType, "unsupported_media_type"),
            (NoSuchRoute, "no_such_route"),
            (MethodNotAllowed, "method_not_allowed"),
            (HttpsRequired, "https_required"),
            (Internal, "internal"),
            (NoPeers, "no_peers"),
            (DownloadFailed, "download_failed"),
            (DaemonNotRunning, "daemon_not_running"),
            (DaemonFailed, "daemon_failed"),
            (DestExists, "dest_exists"),
            (AlreadyPending, "already_pending"),
            (HomeInUse, "home_in_use"),
            (Interrupted, "interrupted"),
            (InsufficientSpace, "insufficient_space"),
            (InvalidPath, "invalid_path"),
            (IoError, "io_error"),
            (Usage, "usage"),
            (State(ErrorCode::NotMember), "not_member"),
            (State(ErrorCode::IdempotencyKeyReused), "idempotency_key_reused"),
            (State(ErrorCode::InvalidRequest), "invalid_request"),
            (Other("from_a_newer_node".into()), "from_a_newer_node"),
        ];
        for (code, name) in cases {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.to_string(), name);
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<ApiErrorCode>(&format!("\"{name}\"")).unwrap(), code, "{name}");
            assert_eq!(ApiErrorCode::parse(name), code, "{name}");
            assert!(code == *name, "{name}");
        }
    }

    #[test]
    fn the_state_machines_codes_keep_their_log_form_and_read_as_state_codes() {
        let every = [
            ErrorCode::BadCredentials,
            ErrorCode::Unauthenticated,
            ErrorCode::UserExists,
            ErrorCode::GroupExists,
            ErrorCode::NoSuchGroup,
            ErrorCode::NotMember,
            ErrorCode::NotOwner,
            ErrorCode::AlreadyMember,
            ErrorCode::NoSuchRequest,
            ErrorCode::NoSuchFile,
            ErrorCode::FileConflict,
            ErrorCode::InvalidName,
            ErrorCode::FileTooLarge,
            ErrorCode::InvalidRequest,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::NotAllowed,
        ];
        for c in every {
            let log_form = serde_json::to_string(&c).unwrap();
            assert_eq!(log_form, format!("\"{}\"", c.as_str()), "the log's form is the bare name");
            assert_eq!(serde_json::from_str::<ErrorCode>(&log_form).unwrap(), c);
            let api: ApiErrorCode = serde_json::from_str(&log_form).unwrap();
            assert_eq!(api, ApiErrorCode::State(c));
            assert_eq!(serde_json::to_string(&api).unwrap(), log_form);
        }
    }

    #[test]
    fn a_code_that_is_not_a_string_is_refused() {
        assert!(serde_json::from_str::<ApiErrorCode>("3").is_err());
        assert!(serde_json::from_str::<ApiErrorCode>("{\"state\":\"not_member\"}").is_err());
    }
}
