//! `tracker-node snapshot save FILE` (the leader's state, consistent as of the call, written
//! atomically with mode 0600) and `tracker-node restore --from FILE` (new data_dirs for every
//! node that will vote in the new cluster, seeded with that state).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::bail;
use proto::cluster::ClusterConfig;
use sha2::{Digest, Sha256};
use tracker_client::admin::AdminClient;

/// Bound on the whole `save` (a large state takes seconds to write and send).
const SAVE_BUDGET_MS: u64 = 60_000;

/// Asks the leader (following redirects, trying every listed node) for its snapshot.
async fn fetch(cfg: &ClusterConfig) -> anyhow::Result<Option<Vec<u8>>> {
    let snapshot = AdminClient::new(cfg, SAVE_BUDGET_MS)?.snapshot().await;
    super::answered(snapshot, "gave a snapshot")
}

pub async fn save(cfg: &ClusterConfig, file: &Path) -> anyhow::Result<i32> {
    let Some(bytes) = fetch(cfg).await? else { return Ok(3) };
    let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "snapshot".into());
    let tmp = file.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        bail!("cannot write {}: {e}", tmp.display());
    }
    // The file must be a whole snapshot before it takes FILE's name.
    let meta = match raft_store::storage::snapshot_meta_of(&tmp) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            bail!("the leader's answer is not a snapshot: {e}");
        }
    };
    if let Err(e) = std::fs::rename(&tmp, file) {
        let _ = std::fs::remove_file(&tmp);
        bail!("cannot rename {} to {}: {e}", tmp.display(), file.display());
    }
    let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
    println!(
        "saved the state at index {index} to {} ({} bytes, sha256 {})",
        file.display(),
        bytes.len(),
        hex::encode(Sha256::digest(&bytes))
    );
    Ok(0)
}

pub fn restore(cfg: &ClusterConfig, from: &Path) -> anyhow::Result<i32> {
    let voters = cfg.voters_on_first_start();
    let members: std::collections::BTreeMap<u64, raft_store::TrackerNode> =
        voters.iter().filter_map(|v| cfg.node(*v).map(|n| (*v, tracker_node::member_entry(n)))).collect();
    let existing: Vec<String> =
        cfg.nodes.iter().filter(|n| n.data_dir.exists()).map(|n| n.data_dir.display().to_string()).collect();
    if !existing.is_empty() {
        eprintln!(
            "error: restore makes new data_dirs only; these exist already: {} (move them away first)",
            existing.join(", ")
        );
        return Ok(1);
    }
    if !from.is_file() {
        eprintln!("error: {} is not a snapshot file", from.display());
        return Ok(1);
    }
    let mut made = Vec::new();
    for id in &voters {
        let node = cfg.require_node(*id)?;
        match raft_store::storage::seed_snapshot(&node.data_dir, from, members.clone()) {
            Ok(meta) => made.push((node.data_dir.clone(), meta)),
            Err(e) => {
                // Nothing half-made is left behind: every data_dir here is new.
                let _ = std::fs::remove_dir_all(&node.data_dir);
                for (d, _) in &made {
                    let _ = std::fs::remove_dir_all(d);
                }
                eprintln!("error: cannot restore {} into {}: {e}", from.display(), node.data_dir.display());
                return Ok(1);
            }
        }
    }
    let index = made.first().and_then(|(_, m)| m.last_log_id).map(|l| l.index).unwrap_or(0);
    println!(
        "restored the state at index {index} into {} data_dirs ({}); start the nodes (tracker-node up)",
        made.len(),
        made.iter().map(|(d, _)| d.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    Ok(0)
}
