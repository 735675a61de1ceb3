//! The operator commands other than `run`: `up` (a local cluster as child processes),
//! `status` (one row per node), `health` (each node's probes and the cluster's verdict),
//! `members` (the membership, and voter changes through the leader), `snapshot` and
//! `restore`, `certs` (the cluster CA and node certificates). They reach the nodes through
//! tracker-client (`tracker_client::admin`), as any other client does.

pub mod certs;
pub mod health;
pub mod members;
pub mod snapshot;
pub mod status;
pub mod up;

use tracker_client::admin::AdminError;

/// What an admin call came to: `Ok(Some(answer))`; `Ok(None)` when no leader answered within
/// the budget (said on stderr: "no tracker leader `did` within N s (why)", and the command exits
/// 3); an error for a refusal or a client that cannot be built (exit 1).
pub fn answered<T>(result: Result<T, AdminError>, did: &str) -> anyhow::Result<Option<T>> {
    match result {
        Ok(answer) => Ok(Some(answer)),
        Err(AdminError::Unavailable { budget_ms, last }) => {
            eprintln!("error: no tracker leader {did} within {} s ({last})", budget_ms / 1000);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
