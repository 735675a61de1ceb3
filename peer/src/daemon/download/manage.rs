//! A person's hands on downloads: pause, resume, cancel, forget (see STATE.md for the states).
//!
//! Each acts on the downloads of one NAME in one GROUP (to whatever destination) that are in a
//! state it applies to (`verdict`). Each download's task carries the operation out
//! (`actor::Command`): stopping a download stops its swarm and waits for its connections to
//! end, so that when `pause` or `cancel` answers, its connections are closed. A task takes one
//! message at a time, so operations on one download never overlap. What needs the tracker or
//! the table (listing this peer as a sharer again, unlisting it, dropping a row, unlinking a
//! `.part`) is done here, after the task answered.
//!
//! `logout` pauses every running download the same way (`pause_for_logout`), marked so that
//! the next login resumes them (`resume_after_login`); a download paused by a person stays
//! paused.

use std::path::Path;

use serde_json::json;

use super::env::Downloads;
use super::messages::{DownloadHandle, One};
pub use super::ops::{verdict, Op, Verdict};
use crate::control::{ControlResponse, DownloadState};
use crate::daemon::disk::{self, Found};

/// Why `op` found nothing to act on, given the states of the downloads of NAME in GROUP
/// (`finishing`: one has every piece and is being verified).
pub fn refusal(op: Op, group: &str, name: &str, states: &[DownloadState], finishing: bool) -> String {
    let what = format!("{name} in {group}");
    if finishing {
        return format!(
            "the download of {what} has every piece and is being verified; it completes in a moment, too late to {}",
            op.word()
        );
    }
    let has = |s: DownloadState| states.contains(&s);
    match op {
        _ if states.is_empty() => format!("no download of {what} (see: peer show-downloads --all)"),
        Op::Forget if has(DownloadState::Downloading) || has(DownloadState::Paused) => format!(
            "the download of {what} is still {}; stop it with: peer cancel {group} {name}",
            if has(DownloadState::Downloading) { "downloading" } else { "paused" }
        ),
        Op::Resume if has(DownloadState::Failed) => format!(
            "the download of {what} failed; start it again with: peer download {group} {name} DEST \
             (peer forget {group} {name} drops the failed row)"
        ),
        _ if has(DownloadState::Complete) => format!(
            "the download of {what} is already complete; nothing to {} (peer forget {group} {name} drops it from \
             show-downloads)",
            op.word()
        ),
        _ => format!(
            "the download of {what} has failed; nothing to {} (peer forget {group} {name} drops it from \
             show-downloads)",
            op.word()
        ),
    }
}

/// What to do about the path of a cancelled download's `.part`, as lstat(2) sees it: unlink a
/// regular file of ours or a symlink (the link itself; unlink(2) never follows one), leave
/// anything else (another user's file, a directory, a FIFO) and say why.
pub fn part_removal(found: Found, uid: u32) -> Result<bool, String> {
    match found {
        Found::Nothing => Ok(false),
        Found::Regular { uid: owner, .. } if owner == uid => Ok(true),
        Found::Symlink => Ok(true),
        Found::Regular { uid: owner, .. } => Err(format!("it belongs to another user (uid {owner})")),
        Found::Dir => Err("it is a directory".into()),
        Found::Other => Err("it is not a regular file".into()),
    }
}

/// Unlinks a cancelled download's `.part` (never opened, never followed). `Ok(false)` when
/// nothing was there; `Err` says what was left and why.
fn remove_part(path: &Path) -> Result<bool, String> {
    let left = |why: String| format!("{} was left in place: {why}", path.display());
    let found = Found::at(path).map_err(|e| left(e.to_string()))?;
    if !part_removal(found, disk::my_uid()).map_err(left)? {
        return Ok(false);
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(left(e.to_string())),
    }
}

/// This peer stops being listed as a sharer of (group, name) at the tracker when it neither
/// shares a copy nor has another active download of it.
async fn unlist(env: &Downloads, group: &str, name: &str) {
    if env.shares.get(group, name).is_some() {
        return;
    }
    let active = env.table.matching(group, name).iter().any(|h| h.state() == DownloadState::Downloading);
    if active {
        return;
    }
    if let Some(c) = env.standing.session_client() {
        if let Err(e) = c.stop_share(group, name).await {
            tracing::warn!("cannot unlist this peer as a sharer of {name} in {group}: {e}");
        }
    }
}

/// Resumes a paused download (`downloading` again, the `.part` re-verified, the swarm started)
/// and lists this peer as a sharer again, as when it started: other downloaders fetch what we
/// verify. With `after_logout`, only a download a logout paused.
async fn resume(env: &Downloads, h: &DownloadHandle, after_logout: bool) -> One {
    let one = h.manage(Op::Resume, after_logout).await;
    if one == One::Acted {
        let (group, meta) = h.with_record(|r| (r.group.clone(), r.meta.clone()));
        if let Some(client) = env.standing.session_client() {
            if let Err(e) = env.standing.register_sharer(&client, &group, meta.clone()).await {
                tracing::warn!("cannot register as a sharer of {} while downloading: {e}", meta.name);
            }
        }
    }
    one
}

/// Resumes the paused download `h` (a `download` to the same place).
pub async fn resume_one(env: &Downloads, h: &DownloadHandle) {
    resume(env, h, false).await;
}

/// Pauses every running download before this HOME logs out: they keep their verified pieces
/// and are resumed by the next login. Returns how many were paused.
pub async fn pause_for_logout(env: &Downloads) -> usize {
    let mut paused = 0;
    for h in env.table.all() {
        if h.manage(Op::Pause, true).await == One::Acted {
            paused += 1;
        }
    }
    if paused > 0 {
        tracing::info!(paused, "logging out: running downloads paused until the next login");
    }
    paused
}

/// Resumes the downloads a logout paused (not those a person paused), once logged in again.
/// Returns how many were resumed.
pub async fn resume_after_login(env: &Downloads) -> usize {
    if env.standing.home.session().is_none() {
        return 0;
    }
    let mut resumed = 0;
    for h in env.table.all() {
        if resume(env, &h, true).await == One::Acted {
            resumed += 1;
        }
    }
    resumed
}

/// Cancels `h`: its task stops the swarm, then the row goes and the `.part` is unlinked.
async fn cancel(env: &Downloads, h: &DownloadHandle, warnings: &mut Vec<String>) -> One {
    let one = h.manage(Op::Cancel, false).await;
    if one != One::Acted {
        return one;
    }
    let record = h.with_record(|r| r.clone());
    env.table.remove(h, true);
    let part = record.part_path();
    match tokio::task::spawn_blocking(move || remove_part(&part)).await {
        Ok(Ok(_)) => {}
        Ok(Err(why)) => warnings.push(why),
        Err(e) => warnings.push(e.to_string()),
    }
    tracing::info!(name = %record.name, group = %record.group, dest = %record.dest, "download cancelled");
    One::Acted
}

/// Runs `op` on one download.
async fn run_one(env: &Downloads, op: Op, h: &DownloadHandle, warnings: &mut Vec<String>) -> One {
    match op {
        Op::Pause => h.manage(Op::Pause, false).await,
        Op::Cancel => cancel(env, h, warnings).await,
        Op::Resume => resume(env, h, false).await,
        Op::Forget => {
            let one = h.manage(Op::Forget, false).await;
            if one == One::Acted {
                env.table.remove(h, false);
            }
            one
        }
    }
}

/// Runs `op` on the downloads of `name` in `group`.
pub async fn run(env: &Downloads, op: Op, group: String, name: String) -> ControlResponse {
    if op == Op::Resume && env.standing.home.session().is_none() {
        return ControlResponse::Error {
            code: "unauthenticated".into(),
            message: "not logged in (run: peer login USER)".into(),
        };
    }
    let mut acted: Vec<String> = Vec::new();
    let mut already: Vec<String> = Vec::new();
    let mut states: Vec<DownloadState> = Vec::new();
    let mut finishing = false;
    let mut warnings: Vec<String> = Vec::new();
    for h in env.table.matching(&group, &name) {
        let dest = h.with_record(|r| r.dest.clone());
        match run_one(env, op, &h, &mut warnings).await {
            One::Acted => acted.push(dest),
            One::Already => already.push(dest),
            One::Skipped(s) => states.push(s),
            One::Finishing => finishing = true,
        }
    }
    if matches!(op, Op::Pause | Op::Cancel) && !acted.is_empty() {
        unlist(env, &group, &name).await;
    }
    if acted.is_empty() && already.is_empty() {
        let mut message = refusal(op, &group, &name, &states, finishing);
        if !warnings.is_empty() {
            message = format!("{message} ({})", warnings.join("; "));
        }
        return ControlResponse::Error { code: "no_such_file".into(), message };
    }
    let mut fields = json!({"group": group, "name": name, "dests": acted});
    if !already.is_empty() {
        fields[match op {
            Op::Pause => "already_paused",
            _ => "already_running",
        }] = json!(already);
    }
    if !warnings.is_empty() {
        fields["warnings"] = json!(warnings);
    }
    ControlResponse::Ok { fields }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::disk::tests::{assert_untouched, victim};

    #[test]
    fn a_refusal_says_what_to_do_instead() {
        use DownloadState::*;
        let table: &[(Op, &[DownloadState], bool, [&str; 2])] = &[
            (Op::Cancel, &[], false, ["no download of f.bin in g", "peer show-downloads --all"]),
            (Op::Forget, &[Downloading], false, ["still downloading", "peer cancel g f.bin"]),
            (Op::Forget, &[Paused], false, ["still paused", "peer cancel g f.bin"]),
            (Op::Cancel, &[Complete], false, ["already complete", "peer forget g f.bin"]),
            (Op::Resume, &[Failed], false, ["failed", "peer download g f.bin"]),
            (Op::Pause, &[Failed], false, ["has failed", "nothing to pause"]),
            (Op::Pause, &[Downloading], true, ["being verified", "too late to pause"]),
        ];
        for (op, states, finishing, says) in table {
            let m = refusal(*op, "g", "f.bin", states, *finishing);
            for s in says {
                assert!(m.contains(s), "{op:?} {states:?} {finishing}: {m:?} should say {s:?}");
            }
        }
    }

    #[test]
    fn a_cancelled_part_is_unlinked_only_when_it_is_ours_or_a_link() {
        let me = 1000;
        assert_eq!(part_removal(Found::Nothing, me), Ok(false));
        assert_eq!(part_removal(Found::Regular { size: 1, uid: me, links: 1 }, me), Ok(true));
        assert_eq!(part_removal(Found::Regular { size: 1, uid: me, links: 2 }, me), Ok(true), "unlinking one name");
        assert_eq!(part_removal(Found::Symlink, me), Ok(true), "the link goes, its target is not touched");
        assert!(part_removal(Found::Regular { size: 1, uid: 0, links: 1 }, me).is_err());
        assert!(part_removal(Found::Dir, me).is_err());
        assert!(part_removal(Found::Other, me).is_err());
    }

    #[test]
    fn removing_a_symlinked_part_leaves_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = victim(dir.path());
        let part = dir.path().join("f.bin.part");
        std::os::unix::fs::symlink(&target, &part).unwrap();
        assert_eq!(remove_part(&part), Ok(true));
        assert!(std::fs::symlink_metadata(&part).is_err(), "the link is gone");
        assert_untouched(&target);
        let own = dir.path().join("g.bin.part");
        std::fs::write(&own, b"partial").unwrap();
        assert_eq!(remove_part(&own), Ok(true));
        assert!(!own.exists());
        assert_eq!(remove_part(&own), Ok(false), "nothing there any more");
    }
}
