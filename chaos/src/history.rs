//! The recorded history: one entry per operation, with when it was invoked, when it completed,
//! and how (ok, a definite refusal, or unknown: the client cannot tell whether it happened).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateGroup {
        group: String,
    },
    Join {
        group: String,
        user: String,
    },
    Accept {
        group: String,
        user: String,
    },
    Upload {
        group: String,
        file: String,
    },
    StopShare {
        group: String,
        file: String,
    },
    /// What the reading user saw, stored as the difference from what the acknowledged writes
    /// predict (a list of every group per read would grow with the square of the run's length):
    /// `extra` groups seen whose creation was not acknowledged before the read began, `missing`
    /// groups acknowledged before it began but not seen; likewise for the reader's memberships
    /// granted by an accept (`member_extra`, `member_missing`). Everything else was as expected.
    ListGroups {
        user: String,
        extra: Vec<String>,
        missing: Vec<String>,
        member_extra: Vec<String>,
        member_missing: Vec<String>,
    },
    ListFiles {
        group: String,
        seen: Vec<String>,
    },
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
