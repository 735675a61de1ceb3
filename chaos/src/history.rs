//! The recorded history: one entry per operation, with when it was invoked, when it completed,
//! and how (ok, a definite refusal, or unknown: the client cannot tell whether it happened).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateGroup { group: String },
    Join { group: String, user: String },
    Accept { group: String, user: String },
    Upload { group: String, file: String },
    StopShare { group: String, file: String },
    /// What the reading user saw: every group, and whether the reader is a member.
    ListGroups { user: String, seen: Vec<(String, bool)> },
    ListFiles { group: String, seen: Vec<String> },
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateGroup { .. } => "create_group",
            Op::Join { .. } => "join",
            Op::Accept { .. } => "accept",
            Op::Upload { .. } => "upload",
            Op::StopShare { .. } => "stop_share",
            Op::ListGroups { .. } => "list_groups",
            Op::ListFiles { .. } => "list_files",
        }
    }
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::ListGroups { .. } | Op::ListFiles { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// A definite refusal with the tracker's error code: the operation did not happen.
    Fail(String),
    /// Timed out or unavailable: it may or may not have happened.
    Unknown(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub client: usize,
    pub op: Op,
    /// Milliseconds since the start of the run.
    pub invoke_ms: u64,
    pub complete_ms: u64,
    pub outcome: Outcome,
}
