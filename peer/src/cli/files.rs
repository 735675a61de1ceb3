//! upload, download, list-files, show-downloads, stop-share. Uploads are hashed here (every
//! core, progress on a terminal) and handed to the daemon, which registers and serves them;
//! downloads run in the daemon, and the CLI follows their progress (Ctrl-C stops following,
//! not the download: exit 130). Managing downloads (cancel, pause, ...) is `manage.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{CliError, Ctx, Out};
use crate::control::{self, ControlRequest, ControlResponse, DownloadFailure, DownloadRow, DownloadState};
use crate::piece_lists::PieceListStore;
use crate::progress::{average_rate, clock, eta_secs, human_bytes, percent, took, Phase, Progress};
use proto::api::{ApiErrorCode, ErrorCode};

/// Files at least this large get a hashing progress bar.
const PROGRESS_MIN_BYTES: u64 = 64 * 1024 * 1024;
/// How often a blocking download polls the daemon, in ms.
const POLL_MS: u64 = 50;

pub(super) async fn daemon_call(
    ctx: &Ctx,
    req: &ControlRequest,
    timeout: Duration,
) -> Result<ControlResponse, CliError> {
    match control::call(&ctx.home.socket(), req, timeout).await {
        // The daemon's code decides the exit: 3 for `unavailable` and `daemon_not_running`.
        Ok(ControlResponse::Error { code, message }) => Err(CliError::new(code, message)),
        Ok(r) => Ok(r),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            Err(CliError::no_daemon(&ctx.home.dir))
        }
        // HOME and its socket are private to their user.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(CliError::refused(
            ErrorCode::NotAllowed,
            format!("cannot reach the daemon of {}: {e} (a daemon serves its own user only)", ctx.home.dir.display()),
        )),
        Err(e) => Err(CliError::unavailable(format!("the daemon of {} did not answer: {e}", ctx.home.dir.display()))),
    }
}

async fn require_daemon(ctx: &Ctx) -> Result<(), CliError> {
    daemon_call(ctx, &ControlRequest::Ping, Duration::from_secs(5)).await.map(|_| ())
}

pub(super) fn ok_fields(r: ControlResponse) -> serde_json::Value {
    match r {
        ControlResponse::Ok { fields } => fields,
        _ => json!({}),
    }
}

pub async fn upload(ctx: &mut Ctx, out: &mut Out, file: &Path, group: &str) -> Result<(), CliError> {
    // `peer upload GROUP FILE`: the refusal (of GROUP as a name, or of FILE as a path) says so.
    let swapped = swapped_upload(file, group);
    proto::names::validate_id("group", group)
        .map_err(|m| CliError::refused(ErrorCode::InvalidName, format!("{m}{swapped}")))?;
    require_daemon(ctx).await?;
    if ctx.home.session().is_none() {
        return Err(CliError::refused(ErrorCode::Unauthenticated, "not logged in (run: peer login USER)"));
    }
    let path = std::path::absolute(file)
        .map_err(|e| CliError::refused(ErrorCode::NoSuchFile, format!("{}: {e}", file.display())))?;
    let meta = std::fs::metadata(&path).map_err(|e| {
        CliError::refused(ErrorCode::NoSuchFile, format!("cannot read {}: {e}{swapped}", file.display()))
    })?;
    if !meta.is_file() {
        return Err(CliError::refused(ErrorCode::NoSuchFile, format!("{} is not a regular file", file.display())));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::refused(ErrorCode::InvalidName, format!("{} has no UTF-8 file name", file.display())))?
        .to_string();
    proto::names::validate_file_name(&name).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;

    let size = meta.len();
    crate::hashing::check_size(&file.display().to_string(), size)
        .map_err(|m| CliError::refused(ErrorCode::FileTooLarge, m))?;

    let progress = Arc::new(AtomicU64::new(0));
    let task = {
        let (path, name, progress) = (path.clone(), name.clone(), progress.clone());
        tokio::task::spawn_blocking(move || crate::hashing::hash_file(&path, &name, &progress))
    };
    let mut bar = (size >= PROGRESS_MIN_BYTES).then(|| Progress::new(format!("hashing {name}"), size));
    tokio::pin!(task);
    let hashed = loop {
        tokio::select! {
            r = &mut task => break r,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if let Some(b) = bar.as_mut() { b.set(progress.load(Ordering::Relaxed)); }
            }
        }
    };
    if let Some(b) = bar.as_mut() {
        b.set(size);
        b.finish();
    }
    let hashed =
        hashed.map_err(|e| CliError::refused(ApiErrorCode::IoError, e.to_string()))?.map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => CliError::refused(ErrorCode::FileTooLarge, e.to_string()),
            _ => CliError::refused(ErrorCode::NoSuchFile, format!("cannot read {}: {e}", file.display())),
        })?;
    let pieces = hashed.pieces.len();
    let size = hashed.meta.size;
    let sha1 = hashed.meta.sha1.clone();
    // The tracker gets only the list's digest; the list stays in HOME, where the daemon serves it.
    let store = PieceListStore::new(&ctx.home);
    let file_meta = hashed.meta;
    {
        let (key, list) = (file_meta.piece_list_sha1.clone(), hashed.pieces);
        tokio::task::spawn_blocking(move || store.save(&key, &list))
            .await
            .map_err(|e| CliError::refused(ApiErrorCode::IoError, e.to_string()))?
            .map_err(|e| {
                CliError::refused(
                    ApiErrorCode::IoError,
                    format!("cannot store the piece list in {}: {e}", ctx.home.dir.display()),
                )
            })?;
    }
    let req =
        ControlRequest::Upload { path: path.to_string_lossy().into_owned(), group: group.into(), meta: file_meta };
    let r = daemon_call(ctx, &req, ctx.control_timeout()).await?;
    let mut fields = ok_fields(r);
    fields["size"] = json!(size);
    fields["pieces"] = json!(pieces);
    fields["sha1"] = json!(sha1);
    out.ok(format!("shared {name} in {group} ({size} bytes, {pieces} pieces, sha1 {sha1})"), fields);
    Ok(())
}

/// `peer upload GROUP FILE` for `peer upload FILE GROUP`: when FILE is no path but GROUP is
/// one, the hint that ends the refusal (else nothing).
fn swapped_upload(file: &Path, group: &str) -> String {
    if std::fs::symlink_metadata(file).is_err() && std::fs::symlink_metadata(group).is_ok() {
        let file = file.display().to_string();
        format!(" (peer upload takes FILE GROUP: did you mean `peer upload {group} {file}`?)")
    } else {
        String::new()
    }
}

/// DEST is a directory (the file lands as DEST/NAME) or a file path. A symlink at the resolved
/// file path is not followed: it is what is at the destination (see `check_dest`). The folders
/// of the path that do not exist yet are made by `make_folders`; one that exists as something
/// else than a folder is refused.
pub fn resolve_dest(dest: &Path, name: &str) -> Result<PathBuf, CliError> {
    let abs =
        std::path::absolute(dest).map_err(|e| CliError::usage(format!("bad destination {}: {e}", dest.display())))?;
    let as_dir = abs.is_dir() || dest.as_os_str().to_string_lossy().ends_with('/');
    let target = if as_dir { abs.join(name) } else { abs };
    let parent = target.parent().ok_or_else(|| CliError::usage(format!("bad destination {}", dest.display())))?;
    if let Some(blocker) = parent.ancestors().find(|a| a.exists()).filter(|a| !a.is_dir()) {
        return Err(CliError::usage(format!("{} is not a folder", blocker.display())));
    }
    if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        return Err(CliError::usage(format!("{} is a directory", target.display())));
    }
    Ok(target)
}

/// Makes the folders of `folder` that do not exist (as `mkdir -p`, curl's `--create-dirs`);
/// returns those it made, outermost first, for `unmake_folders` when the daemon refuses.
pub fn make_folders(folder: &Path) -> Result<Vec<PathBuf>, CliError> {
    let missing: Vec<PathBuf> = folder.ancestors().take_while(|a| !a.exists()).map(Path::to_path_buf).collect();
    let mut made = Vec::new();
    for dir in missing.into_iter().rev() {
        if let Err(e) = std::fs::create_dir(&dir) {
            unmake_folders(&made);
            return Err(CliError::refused(
                ApiErrorCode::IoError,
                format!("cannot create the destination folder {}: {e}", dir.display()),
            ));
        }
        made.push(dir);
    }
    Ok(made)
}

/// Removes the folders `make_folders` made, innermost first, if they are still empty.
fn unmake_folders(made: &[PathBuf]) {
    for dir in made.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The quick half of `dest_exists`, before asking the daemon: without `--force`, anything at the
/// destination that is not a regular file (a symlink above all) is refused at once. Whether a
/// regular file there already holds this file takes its SHA-1 against the tracker's metadata,
/// which the daemon, the authority on this, checks before writing anything.
pub fn check_dest(target: &Path, force: bool) -> Result<(), CliError> {
    use crate::daemon::disk::{dest_exists_message, Found};
    match Found::at(target) {
        Ok(Found::Nothing) | Ok(Found::Regular { .. }) => Ok(()),
        Ok(Found::Dir) => Err(CliError::usage(format!("{} is a directory", target.display()))),
        Ok(_) if !force => Err(CliError::refused(ApiErrorCode::DestExists, dest_exists_message(target))),
        _ => Ok(()),
    }
}

pub async fn download(
    ctx: &mut Ctx,
    out: &mut Out,
    group: &str,
    name: &str,
    dest: Option<&Path>,
    detach: bool,
    force: bool,
) -> Result<(), CliError> {
    proto::names::validate_id("group", group).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    proto::names::validate_file_name(name).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    // No DEST: the current folder (as transmission-cli, rqbit and curl -O). The daemon resolves
    // nothing itself: what it gets is absolute.
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::usage(format!("no DEST given and the current folder is unusable: {e}")))?;
    let target = resolve_dest(dest.unwrap_or(&cwd), name)?;
    check_dest(&target, force)?;
    require_daemon(ctx).await?;
    let made = make_folders(target.parent().unwrap_or(Path::new("/")))?;
    let dest_s = target.to_string_lossy().into_owned();
    let req = ControlRequest::Download { group: group.into(), name: name.into(), dest: dest_s.clone(), force };
    let started = Instant::now();
    let r = match daemon_call(ctx, &req, ctx.control_timeout()).await {
        Ok(r) => r,
        Err(e) => {
            unmake_folders(&made);
            return Err(swapped_download(ctx, e, group, name, dest).await);
        }
    };
    let fields = ok_fields(r);
    if fields["already_present"] == true {
        out.ok(format!("{dest_s} already holds {name} (same SHA-1); sharing it in {group}"), fields);
        return Ok(());
    }
    if fields["resumed"] == true && detach {
        out.ok(format!("resumed the paused download of {name} from {group} to {dest_s}"), fields);
        return Ok(());
    }
    if detach {
        out.ok(format!("downloading {name} from {group} to {dest_s} (see: peer show-downloads)"), fields);
        return Ok(());
    }
    follow(ctx, out, group, name, &dest_s, started).await
}

/// `peer download NAME GROUP` for `peer download GROUP NAME`: a refusal for want of GROUP, when
/// a group is named like NAME, says which order was meant (the refusal and its exit stay).
async fn swapped_download(ctx: &mut Ctx, e: CliError, group: &str, name: &str, dest: Option<&Path>) -> CliError {
    if e.code != ErrorCode::NoSuchGroup || proto::names::validate_id("group", name).is_err() {
        return e;
    }
    let Ok(client) = ctx.session_client() else { return e };
    let Ok(groups) = client.list_groups().await else { return e };
    if !groups.iter().any(|g| g.group == name) {
        return e;
    }
    let dest = dest.map(|d| format!(" {}", d.display())).unwrap_or_default();
    let hint = format!("peer download takes GROUP NAME [DEST]: did you mean `peer download {name} {group}{dest}`?");
    CliError { message: format!("{} ({hint})", e.message), ..e }
}

/// Waits for the download to `dest` to end, drawing its progress; Ctrl-C stops waiting (exit
/// 130) and leaves the download to the daemon. `started` is when the daemon was asked.
async fn follow(
    ctx: &Ctx,
    out: &mut Out,
    group: &str,
    name: &str,
    dest: &str,
    started: Instant,
) -> Result<(), CliError> {
    let mut bar: Option<Progress> = None;
    // Bytes already there when this command began following (a resumed download).
    let mut done_before: Option<u64> = None;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let end = |bar: &mut Option<Progress>| {
        if let Some(b) = bar.as_mut() {
            b.finish();
        }
    };
    loop {
        let (row, cancelled) =
            match daemon_call(ctx, &ControlRequest::Watch { dest: dest.into() }, ctx.control_timeout()).await? {
                ControlResponse::Watch { row, cancelled } => (row, cancelled),
                _ => return Err(CliError::unavailable("unexpected answer from the daemon")),
            };
        let Some(row) = row else {
            end(&mut bar);
            if cancelled {
                return Err(CliError::refused(
                    ApiErrorCode::DownloadFailed,
                    format!("the download of {name} from {group} was cancelled (peer cancel); {dest}.part is deleted"),
                ));
            }
            return Err(CliError::refused(
                ApiErrorCode::DownloadFailed,
                "the daemon forgot the download (was it restarted?)",
            ));
        };
        let before = *done_before.get_or_insert(if row.state == DownloadState::Complete { 0 } else { row.bytes_done });
        let b = bar.get_or_insert_with(|| Progress::new(name.to_string(), row.size));
        let phase = match row.state {
            DownloadState::Paused => Phase::Paused,
            DownloadState::Downloading if row.bytes_done >= row.size => Phase::Verifying,
            _ => Phase::Running,
        };
        b.update(row.bytes_done, row.rate_bytes_per_s, Some(row.peers), phase);
        match row.state {
            DownloadState::Complete => {
                let elapsed = started.elapsed();
                let fetched = row.size.saturating_sub(before);
                let avg = average_rate(fetched, elapsed);
                if let Some(b) = bar.as_mut() {
                    b.complete(avg, elapsed);
                }
                let earlier =
                    if before > 0 { format!(" ({} of it fetched before)", human_bytes(before)) } else { String::new() };
                out.ok(
                    format!(
                        "downloaded {name} ({}) to {dest} in {}, {}/s{earlier}; every piece verified",
                        human_bytes(row.size),
                        took(elapsed),
                        human_bytes(avg)
                    ),
                    json!({"group": group, "name": name, "dest": dest, "size": row.size,
                           "elapsed_ms": elapsed.as_millis() as u64, "avg_bytes_per_s": avg}),
                );
                return Ok(());
            }
            DownloadState::Failed => {
                end(&mut bar);
                let failure = row.error.unwrap_or_else(|| DownloadFailure::other("the download failed"));
                return Err(CliError::refused(failure.code, failure.message));
            }
            _ => {
                tokio::select! {
                    _ = &mut interrupted => {
                        end(&mut bar);
                        return Err(interrupted_error(group, name));
                    }
                    _ = tokio::time::sleep(Duration::from_millis(POLL_MS)) => {}
                }
            }
        }
    }
}

/// Ctrl-C on a blocking download: exit 130, one line saying that the daemon goes on.
pub fn interrupted_error(group: &str, name: &str) -> CliError {
    CliError {
        exit_code: 130,
        code: "interrupted".into(),
        message: format!(
            "interrupted; the daemon continues downloading {name} in the background \
             (watch it: peer show-downloads; stop it: peer cancel {group} {name})"
        ),
    }
}

async fn downloads(ctx: &Ctx) -> Result<Vec<DownloadRow>, CliError> {
    match daemon_call(ctx, &ControlRequest::ShowDownloads, ctx.control_timeout()).await? {
        ControlResponse::Downloads { rows } => Ok(rows),
        _ => Err(CliError::unavailable("unexpected answer from the daemon")),
    }
}

/// One download in the human view: `[D]` downloading, `[P]` paused, `[C]` complete, `[F]`
/// failed, then `[group] name`, how far, and where to; a running one also its rate, the time
/// left at that rate (`ETA -:--` while nothing moves) and the sharers connected.
pub fn download_line(r: &DownloadRow) -> String {
    let head = |tag: &str| format!("[{tag}] [{}] {}", r.group, r.name);
    let pct = percent(r.bytes_done, r.size);
    match r.state {
        DownloadState::Complete => format!("{}  {}  -> {}", head("C"), human_bytes(r.size), r.dest),
        DownloadState::Failed => format!(
            "{}  {pct:.1}% of {}  -> {}  ({})",
            head("F"),
            human_bytes(r.size),
            r.dest,
            r.error.as_ref().map_or_else(|| "failed".to_string(), |e| e.to_string())
        ),
        DownloadState::Paused => format!("{}  {pct:.1}% of {}  paused  -> {}", head("P"), human_bytes(r.size), r.dest),
        _ if r.bytes_done >= r.size => {
            format!("{}  {pct:.1}% of {}  verifying  -> {}", head("D"), human_bytes(r.size), r.dest)
        }
        _ => format!(
            "{}  {pct:.1}% of {}  {}/s  ETA {}  {} sharer{}  -> {}",
            head("D"),
            human_bytes(r.size),
            human_bytes(r.rate_bytes_per_s),
            eta_secs(r.bytes_done, r.size, r.rate_bytes_per_s).map_or_else(|| "-:--".to_string(), clock),
            r.peers,
            if r.peers == 1 { "" } else { "s" },
            r.dest
        ),
    }
}

/// The human view of `rows`: the active ones, or all of them with `all`.
pub fn downloads_text(rows: &[DownloadRow], all: bool) -> String {
    let shown: Vec<&DownloadRow> = rows.iter().filter(|r| all || r.state.is_active()).collect();
    if shown.is_empty() {
        let hidden = rows.len() - shown.len();
        return if hidden == 0 {
            "no downloads".to_string()
        } else {
            format!("no active downloads ({hidden} complete or failed: peer show-downloads --all)")
        };
    }
    shown.iter().map(|r| download_line(r)).collect::<Vec<_>>().join("\n")
}

/// How often `show-downloads --watch` draws the view again.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// `show-downloads`: the human view hides complete and failed downloads unless `all`; --json
/// always lists every download. With `watch` the view is drawn again every second (as
/// `watch peer show-downloads`): on a terminal, in place until Ctrl-C; otherwise one view after
/// the other, a blank line between, until no download is running (a script can wait on it).
pub async fn show_downloads(ctx: &mut Ctx, out: &mut Out, all: bool, watch: bool) -> Result<(), CliError> {
    if !watch {
        let rows = downloads(ctx).await?;
        out.done(downloads_text(&rows, all), &rows);
        return Ok(());
    }
    if ctx.global.json {
        return Err(CliError::usage(
            "--watch draws the human view again and again; with --json, run show-downloads when you need it",
        ));
    }
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stdout().is_terminal();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut first = true;
    loop {
        let rows = downloads(ctx).await?;
        let text = downloads_text(&rows, all);
        {
            let mut stdout = std::io::stdout().lock();
            let written = if terminal {
                // Home, the view, then clear what a longer previous view left below it.
                write!(stdout, "\x1b[H\x1b[2J{text}\n(every {} s; Ctrl-C to stop)\n", WATCH_EVERY.as_secs())
            } else if first {
                writeln!(stdout, "{text}")
            } else {
                writeln!(stdout, "\n{text}")
            };
            if written.and_then(|_| stdout.flush()).is_err() {
                // stdout closed (`| head`): nobody is watching any more.
                return Ok(());
            }
        }
        first = false;
        if !terminal && !rows.iter().any(|r| r.state == DownloadState::Downloading) {
            return Ok(());
        }
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
}

pub async fn list(ctx: &mut Ctx, out: &mut Out, group: &str) -> Result<(), CliError> {
    proto::names::validate_id("group", group).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    let client = ctx.session_client()?;
    let mut rows = match client.list_files(group).await {
        Ok(rows) => rows,
        Err(e) => return Err(super::groups::explain_not_member(&client, group, e).await),
    };
    // The number of pieces follows from the size (the tracker keeps no piece hashes).
    for r in &mut rows {
        r.pieces = crate::hashing::piece_count(r.size);
    }
    let human = if rows.is_empty() {
        format!("no files in {group}")
    } else {
        rows.iter()
            .map(|f| {
                let sharers = if f.sharers == 1 { "sharer" } else { "sharers" };
                let size = human_bytes(f.size);
                format!(
                    "{}  {size} ({} bytes)  {} pieces  {} {sharers}  sha1 {}",
                    f.name, f.size, f.pieces, f.sharers, f.sha1
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    out.done(human, &rows);
    Ok(())
}

pub async fn stop_share(ctx: &mut Ctx, out: &mut Out, group: &str, name: &str) -> Result<(), CliError> {
    proto::names::validate_id("group", group).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    proto::names::validate_file_name(name).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    let r =
        daemon_call(ctx, &ControlRequest::StopShare { group: group.into(), name: name.into() }, ctx.control_timeout())
            .await?;
    out.ok(format!("stopped sharing {name} in {group}; your copy stays"), ok_fields(r));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, bytes_done: u64) -> DownloadRow {
        let state: DownloadState = serde_json::from_value(serde_json::json!(state)).unwrap();
        let state_name = state.as_str();
        DownloadRow {
            group: "g".into(),
            name: "f.bin".into(),
            dest: "/d/f.bin".into(),
            state,
            bytes_done,
            size: 4 * 1024 * 1024,
            error: (state_name == "failed").then(|| DownloadFailure::parse("no_peers: nobody shares f.bin")),
            rate_bytes_per_s: if state_name == "downloading" { 1024 * 1024 } else { 0 },
            peers: if state_name == "downloading" { 2 } else { 0 },
        }
    }

    #[test]
    fn each_state_has_its_tag_and_what_a_person_needs() {
        let l = download_line(&row("downloading", 1024 * 1024));
        assert!(l.starts_with("[D] [g] f.bin"), "{l}");
        assert!(
            l.contains("25.0%") && l.contains("1.0 MiB/s") && l.contains("2 sharers") && l.contains("/d/f.bin"),
            "{l}"
        );
        assert!(l.contains("ETA 0:03"), "3 MiB left at 1 MiB/s: {l}");
        let mut stalled = row("downloading", 1024 * 1024);
        stalled.rate_bytes_per_s = 0;
        assert!(download_line(&stalled).contains("ETA -:--"), "nothing moves: {}", download_line(&stalled));
        let l = download_line(&row("downloading", 4 * 1024 * 1024));
        assert!(l.contains("verifying"), "not an idle 100%: {l}");
        let l = download_line(&row("paused", 1024 * 1024));
        assert!(l.starts_with("[P] [g] f.bin") && l.contains("paused") && l.contains("25.0%"), "{l}");
        assert!(download_line(&row("complete", 4 * 1024 * 1024)).starts_with("[C] [g] f.bin"));
        let l = download_line(&row("failed", 0));
        assert!(l.starts_with("[F] [g] f.bin") && l.contains("nobody shares"), "{l}");
    }

    #[test]
    fn the_default_view_shows_the_active_downloads() {
        let rows = vec![row("complete", 4 * 1024 * 1024), row("failed", 0)];
        let t = downloads_text(&rows, false);
        assert!(t.starts_with("no active downloads (2 complete or failed"), "{t}");
        let t = downloads_text(&rows, true);
        assert!(t.contains("[C]") && t.contains("[F]"), "{t}");
        let rows = vec![row("complete", 4 * 1024 * 1024), row("paused", 0), row("downloading", 0)];
        let t = downloads_text(&rows, false);
        assert!(t.contains("[P]") && t.contains("[D]") && !t.contains("[C]"), "{t}");
        assert_eq!(downloads_text(&[], false), "no downloads");
    }
}
