//! Downloads: each one a task of its own (`actor.rs`) that owns its record, picker, `.part`
//! and verified pieces; the table of their handles (`table.rs`, persisted in
//! HOME/downloads.json); starting one (here), resuming them after a restart, and finishing
//! (`finish.rs`, called by the task only). See STATE.md beside this file for the states and the
//! messages.
//!
//! The tracker gives a download the file's `piece_list_sha1`, not its piece hashes: the first
//! connection to get its turn fetches the list from its sharer (`piece_list.rs`), checks it, and
//! stores it in HOME/piece-lists/ before any piece is requested. A restarted daemon resumes with
//! the stored list (re-checked against the digest) and fetches it again only if it is missing.
//!
//! A person manages downloads with `manage.rs`: pause (the swarm stops, the `.part` and its
//! verified pieces stay, `paused` is persisted), resume (the `.part` is re-verified and the
//! swarm starts again), cancel (the swarm stops, the `.part` is unlinked, the row goes) and
//! forget (a finished or failed row goes).
//!
//! Files on disk (see `disk.rs`): before anything is written, an existing destination is
//! refused (`dest_exists`) unless it already holds this very file (then the download is done at
//! once and shared) or `--force` was given (then it is replaced at the end, atomically; a symlink
//! there is replaced, never followed). The `.part` is created exclusively without following a
//! symlink, and the finished file is renamed into place without replacing anything that
//! appeared meanwhile, unless forced.

pub mod actor;
pub mod conn;
pub mod engine;
mod env;
mod finish;
mod list_turn;
pub mod manage;
pub mod messages;
mod ops;
pub mod picker;
pub mod piece_list;
mod record;
pub mod swarm;
pub mod table;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use proto::api::FileMetaBody;

use super::disk;
use super::reply::{client_error, error as err};
use crate::control::{ControlResponse, DownloadFailure, DownloadStarted, DownloadState};
use crate::hashing::{check_size, parse_sha1_hex, piece_list_sha1, PieceHash, PIECE_LEN_BYTES};
use actor::{all_pieces, Begin};
pub use env::Downloads;
pub use messages::{DownloadHandle, One};
pub use record::DownloadRecord;
pub use table::{DownloadTable, MAX_RUNNING_SWARMS};

/// Checks that metadata from the tracker describes a file we can fetch and verify.
fn check_meta(meta: &FileMetaBody, name: &str) -> Result<(), String> {
    if meta.name != name {
        return Err(format!("the tracker described {:?} instead of {name:?}", meta.name));
    }
    check_size(name, meta.size)?;
    if meta.piece_len != PIECE_LEN_BYTES {
        return Err(format!(
            "the tracker's metadata has pieces of {} bytes; this peer uses {PIECE_LEN_BYTES}",
            meta.piece_len
        ));
    }
    let Some(list_digest) = parse_sha1_hex(&meta.piece_list_sha1) else {
        return Err("the tracker's metadata has a malformed piece_list_sha1".into());
    };
    if parse_sha1_hex(&meta.sha1).is_none() {
        return Err("the tracker's metadata has a malformed sha1".into());
    }
    if meta.size == 0 && list_digest != piece_list_sha1(&[]) {
        return Err("the tracker's metadata is inconsistent: an empty file's piece list is empty".into());
    }
    Ok(())
}

/// What is at a download's destination, as far as the download is concerned.
enum AtDest {
    /// Nothing, or something `--force` replaces at the end.
    Proceed,
    /// A regular file that already holds this file: its piece list.
    Identical(Vec<PieceHash>),
}

/// Looks at `dest` before anything is written (see `disk::dest_plan`).
fn check_dest(dest: &Path, meta: &FileMetaBody, force: bool) -> Result<AtDest, ControlResponse> {
    let io = |e: std::io::Error| err("download_failed", format!("cannot look at {}: {e}", dest.display()));
    let found = disk::Found::at(dest).map_err(io)?;
    match disk::dest_plan(found, meta.size, force) {
        disk::DestPlan::Download | disk::DestPlan::Replace => Ok(AtDest::Proceed),
        disk::DestPlan::Refuse => Err(err("dest_exists", disk::dest_exists_message(dest))),
        disk::DestPlan::IsDir => Err(err("dest_exists", format!("{} is a directory", dest.display()))),
        disk::DestPlan::Compare => {
            // Opened without following a link (one may have replaced the file since the lstat).
            let same = disk::open_existing(dest).and_then(|f| {
                if f.metadata()?.len() != meta.size {
                    return Ok(None);
                }
                let (sha1, pieces) = disk::hash_open(&f, meta.size)?;
                let list = hex::encode(piece_list_sha1(&pieces));
                Ok((sha1.eq_ignore_ascii_case(&meta.sha1) && list.eq_ignore_ascii_case(&meta.piece_list_sha1))
                    .then_some(pieces))
            });
            match same {
                Ok(Some(pieces)) => Ok(AtDest::Identical(pieces)),
                _ if force => Ok(AtDest::Proceed),
                _ => Err(err("dest_exists", disk::dest_exists_message(dest))),
            }
        }
    }
}

/// The destination already holds the file: record the download as complete and share it, as a
/// finished download would be.
async fn already_there(
    env: &Downloads,
    client: &tracker_client::TrackerClient,
    record: DownloadRecord,
    pieces: Vec<PieceHash>,
) -> Result<DownloadStarted, ControlResponse> {
    let (store, key) = (env.piece_lists.clone(), record.meta.piece_list_sha1.clone());
    tokio::task::spawn_blocking(move || store.save(&key, &pieces))
        .await
        .map_err(|e| err("download_failed", e.to_string()))?
        .map_err(|e| err("download_failed", format!("cannot store the piece list in HOME: {e}")))?;
    env.shares.add(finish::share_of(&record));
    let fields = DownloadStarted {
        already_present: true,
        ..DownloadStarted::new(&record.group, &record.name, &record.dest, record.meta.size)
    };
    tracing::info!(name = %record.name, group = %record.group, dest = %record.dest, "the destination already holds the file: sharing it");
    if let Err(e) = env.standing.register_sharer(client, &record.group, record.meta.clone()).await {
        tracing::warn!("cannot register as a sharer of {}: {e}", record.name);
    }
    let have = all_pieces(record.meta.size, true);
    let complete = DownloadRecord { state: DownloadState::Complete, ..record };
    env.table.insert(actor::spawn(env, complete, have, None, Begin::Idle));
    Ok(fields)
}

/// What `download` answers when a download to `dest` is already under way or paused there:
/// `None` when there is none (or it is complete or failed: it is started again).
async fn already_started(env: &Downloads, group: &str, name: &str, dest: &str) -> Option<DownloadStarted> {
    let existing = env.table.at(dest)?;
    let (state, same, size) = existing.with_record(|r| (r.state, r.group == group && r.name == name, r.meta.size));
    match state {
        DownloadState::Downloading => Some(existing.with_record(|r| DownloadStarted {
            already_running: true,
            ..DownloadStarted::new(&r.group, &r.name, &r.dest, r.meta.size)
        })),
        // The same file paused at the same place: downloading it again resumes it.
        DownloadState::Paused if same => {
            manage::resume_one(env, &existing).await;
            Some(DownloadStarted { resumed: true, ..DownloadStarted::new(group, name, dest, size) })
        }
        _ => None,
    }
}

/// Starts downloading `name` of `group` to `dest` (a final file path, resolved by the CLI).
/// With `force`, whatever is at `dest` is replaced when the download finishes.
pub async fn start(
    env: &Downloads,
    group: String,
    name: String,
    dest: String,
    force: bool,
) -> Result<DownloadStarted, ControlResponse> {
    proto::names::validate_file_name(&name).map_err(|m| err("invalid_name", m))?;
    let dest_path = PathBuf::from(&dest);
    if !dest_path.is_absolute() || dest_path.file_name().is_none() {
        return Err(err("invalid_request", format!("destination {dest:?} must be an absolute file path")));
    }
    let Some(client) = env.standing.session_client() else {
        return Err(err("unauthenticated", "not logged in (run: peer login USER)"));
    };
    if let Some(answer) = already_started(env, &group, &name, &dest).await {
        return Ok(answer);
    }
    let details = client.file_details(&group, &name).await.map_err(client_error)?;
    check_meta(&details.file, &name).map_err(|m| err("download_failed", m))?;
    let others = details.sharers.iter().filter(|s| s.peer_key != env.standing.peer_key_hex).count();
    let mut record = DownloadRecord {
        group: group.clone(),
        name: name.clone(),
        dest: dest.clone(),
        meta: details.file.clone(),
        state: DownloadState::Downloading,
        error: None,
        force,
        bytes_done: 0,
        paused_by_logout: false,
    };
    // Nothing is written before this: an existing destination is refused, or already complete.
    let at_dest = {
        let (path, meta) = (dest_path.clone(), details.file.clone());
        tokio::task::spawn_blocking(move || check_dest(&path, &meta, force))
            .await
            .map_err(|e| err("download_failed", e.to_string()))??
    };
    if let AtDest::Identical(pieces) = at_dest {
        return already_there(env, &client, record, pieces).await;
    }
    let created = if others == 0 {
        Err(actor::no_peers(&group, &name))
    } else {
        disk::create_part(&record.part_path(), details.file.size)
            .map_err(|e| DownloadFailure::other(format!("cannot create {dest}.part: {e}")))
    };
    let part = match created {
        Ok(part) => part,
        Err(failure) => {
            tracing::warn!(%name, %group, "download failed: {failure}");
            let answer = ControlResponse::Error { code: failure.code.clone(), message: failure.message.clone() };
            record.state = DownloadState::Failed;
            record.error = Some(failure);
            let have = all_pieces(record.meta.size, false);
            env.table.insert(actor::spawn(env, record, have, None, Begin::Idle));
            return Err(answer);
        }
    };
    let have = all_pieces(record.meta.size, false);
    env.table.insert(actor::spawn(env, record, have, Some(part), Begin::Fresh));
    // Register as a sharer now: other downloaders find us and fetch the pieces we verify.
    if let Err(e) = env.standing.register_sharer(&client, &group, details.file.clone()).await {
        tracing::warn!("cannot register as a sharer of {name} while downloading: {e}");
    }
    Ok(DownloadStarted { sharers: Some(others), ..DownloadStarted::new(&group, &name, &dest, details.file.size) })
}

/// At start: a task for every download read from downloads.json; those that were downloading
/// re-verify what their `.part` files hold and continue. Paused downloads stay paused.
pub fn resume_all(env: &Downloads) {
    let handles = env
        .table
        .loaded()
        .into_iter()
        .map(|r| {
            let complete = r.state == DownloadState::Complete;
            let begin = if r.state == DownloadState::Downloading { Begin::Reverify } else { Begin::Idle };
            let have = all_pieces(r.meta.size, complete);
            actor::spawn(env, r, have, None, begin)
        })
        .collect();
    env.table.adopt(handles);
}
