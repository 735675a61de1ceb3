//! upload, download, list-files, show-downloads, stop-share. Uploads are hashed here (every
//! core, progress on a terminal) and handed to the daemon, which registers and serves them;
//! downloads run in the daemon, and the CLI follows their progress.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{CliError, Ctx, Out};
use crate::control::{self, ControlRequest, ControlResponse, DownloadRow};
use crate::piece_lists::PieceListStore;
use crate::progress::Progress;

/// Files at least this large get a hashing progress bar.
const PROGRESS_MIN_BYTES: u64 = 64 * 1024 * 1024;
/// How often a blocking download polls the daemon, in ms.
const POLL_MS: u64 = 50;

async fn daemon_call(ctx: &Ctx, req: &ControlRequest, timeout: Duration) -> Result<ControlResponse, CliError> {
    match control::call(&ctx.home.socket(), req, timeout).await {
        Ok(ControlResponse::Error { code, message }) => Err(CliError::refused(&code, message).with_exit_for(&code)),
        Ok(r) => Ok(r),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            Err(CliError::no_daemon(&ctx.home.dir))
        }
        Err(e) => Err(CliError::unavailable(format!("the daemon of {} did not answer: {e}", ctx.home.dir.display()))),
    }
}

impl CliError {
    /// Daemon-reported `unavailable` keeps its exit code 3.
    fn with_exit_for(mut self, code: &str) -> Self {
        if code == "unavailable" || code == "daemon_not_running" {
            self.exit_code = 3;
        }
        self
    }
}

async fn require_daemon(ctx: &Ctx) -> Result<(), CliError> {
    daemon_call(ctx, &ControlRequest::Ping, Duration::from_secs(5)).await.map(|_| ())
}

fn ok_fields(r: ControlResponse) -> serde_json::Value {
    match r {
        ControlResponse::Ok { fields } => fields,
        _ => json!({}),
    }
}

pub async fn upload(ctx: &mut Ctx, out: &mut Out, file: &Path, group: &str) -> Result<(), CliError> {
    proto::names::validate_id("group", group).map_err(|m| CliError::refused("invalid_name", m))?;
    require_daemon(ctx).await?;
    if ctx.home.session().is_none() {
        return Err(CliError::refused("unauthenticated", "not logged in (run: peer login USER)"));
    }
    let path =
        std::path::absolute(file).map_err(|e| CliError::refused("no_such_file", format!("{}: {e}", file.display())))?;
    let meta = std::fs::metadata(&path)
        .map_err(|e| CliError::refused("no_such_file", format!("cannot read {}: {e}", file.display())))?;
    if !meta.is_file() {
        return Err(CliError::refused("no_such_file", format!("{} is not a regular file", file.display())));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::refused("invalid_name", format!("{} has no UTF-8 file name", file.display())))?
        .to_string();
    proto::names::validate_file_name(&name).map_err(|m| CliError::refused("invalid_name", m))?;

    let size = meta.len();
    crate::hashing::check_size(&file.display().to_string(), size)
        .map_err(|m| CliError::refused("file_too_large", m))?;

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
    let hashed = hashed.map_err(|e| CliError::refused("io_error", e.to_string()))?.map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => CliError::refused("file_too_large", e.to_string()),
        _ => CliError::refused("no_such_file", format!("cannot read {}: {e}", file.display())),
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
            .map_err(|e| CliError::refused("io_error", e.to_string()))?
            .map_err(|e| {
                CliError::refused("io_error", format!("cannot store the piece list in {}: {e}", ctx.home.dir.display()))
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

/// DEST is a directory (the file lands as DEST/NAME) or a file path.
pub fn resolve_dest(dest: &Path, name: &str) -> Result<PathBuf, CliError> {
    let abs =
        std::path::absolute(dest).map_err(|e| CliError::usage(format!("bad destination {}: {e}", dest.display())))?;
    let as_dir = abs.is_dir() || dest.as_os_str().to_string_lossy().ends_with('/');
    let target = if as_dir { abs.join(name) } else { abs };
    let parent = target.parent().ok_or_else(|| CliError::usage(format!("bad destination {}", dest.display())))?;
    if !parent.is_dir() {
        return Err(CliError::usage(format!("destination folder {} does not exist", parent.display())));
    }
    if target.is_dir() {
        return Err(CliError::usage(format!("{} is a directory", target.display())));
    }
    Ok(target)
}

pub async fn download(
    ctx: &mut Ctx,
    out: &mut Out,
    group: &str,
    name: &str,
    dest: &Path,
    detach: bool,
) -> Result<(), CliError> {
    proto::names::validate_id("group", group).map_err(|m| CliError::refused("invalid_name", m))?;
    proto::names::validate_file_name(name).map_err(|m| CliError::refused("invalid_name", m))?;
    let target = resolve_dest(dest, name)?;
    require_daemon(ctx).await?;
    let dest_s = target.to_string_lossy().into_owned();
    let req = ControlRequest::Download { group: group.into(), name: name.into(), dest: dest_s.clone() };
    let r = daemon_call(ctx, &req, ctx.control_timeout()).await?;
    let fields = ok_fields(r);
    if detach {
        out.ok(format!("downloading {name} from {group} to {dest_s} (see: peer show-downloads)"), fields);
        return Ok(());
    }
    let mut bar: Option<Progress> = None;
    loop {
        let rows = downloads(ctx).await?;
        let row = rows.into_iter().find(|r| r.group == group && r.name == name && r.dest == dest_s);
        let Some(row) = row else {
            return Err(CliError::refused("download_failed", "the daemon forgot the download (was it restarted?)"));
        };
        let b = bar.get_or_insert_with(|| Progress::new(name.to_string(), row.size));
        b.set(row.bytes_done);
        match row.state.as_str() {
            "complete" => {
                b.finish();
                out.ok(
                    format!("downloaded {name} to {dest_s} ({} bytes, every piece verified)", row.size),
                    json!({"group": group, "name": name, "dest": dest_s, "size": row.size}),
                );
                return Ok(());
            }
            "failed" => {
                b.finish();
                let msg = row.error.unwrap_or_else(|| "the download failed".into());
                let code = if msg.starts_with("no_peers") { "no_peers" } else { "download_failed" };
                return Err(CliError::refused(code, msg.trim_start_matches("no_peers: ").to_string()));
            }
            _ => tokio::time::sleep(Duration::from_millis(POLL_MS)).await,
        }
    }
}

async fn downloads(ctx: &Ctx) -> Result<Vec<DownloadRow>, CliError> {
    match daemon_call(ctx, &ControlRequest::ShowDownloads, ctx.control_timeout()).await? {
        ControlResponse::Downloads { rows } => Ok(rows),
        _ => Err(CliError::unavailable("unexpected answer from the daemon")),
    }
}

pub async fn show_downloads(ctx: &mut Ctx, out: &mut Out) -> Result<(), CliError> {
    let rows = downloads(ctx).await?;
    let human = if rows.is_empty() {
        "no downloads".to_string()
    } else {
        rows.iter()
            .map(|r| {
                let tag = match r.state.as_str() {
                    "complete" => "C",
                    "failed" => "F",
                    _ => "D",
                };
                format!("[{tag}] [{}] {}", r.group, r.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    out.done(human, serde_json::to_value(&rows).unwrap_or_default());
    Ok(())
}

pub async fn list(ctx: &mut Ctx, out: &mut Out, group: &str) -> Result<(), CliError> {
    proto::names::validate_id("group", group).map_err(|m| CliError::refused("invalid_name", m))?;
    let mut rows = ctx.session_client()?.list_files(group).await?;
    // The number of pieces follows from the size (the tracker keeps no piece hashes).
    for r in &mut rows {
        r.pieces = crate::hashing::piece_count(r.size);
    }
    let human = if rows.is_empty() {
        format!("no files in {group}")
    } else {
        rows.iter()
            .map(|f| {
                format!("{}  {} bytes  {} pieces  {} sharer(s)  sha1 {}", f.name, f.size, f.pieces, f.sharers, f.sha1)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    out.done(human, serde_json::to_value(&rows).unwrap_or_default());
    Ok(())
}

pub async fn stop_share(ctx: &mut Ctx, out: &mut Out, group: &str, name: &str) -> Result<(), CliError> {
    proto::names::validate_id("group", group).map_err(|m| CliError::refused("invalid_name", m))?;
    proto::names::validate_file_name(name).map_err(|m| CliError::refused("invalid_name", m))?;
    let r =
        daemon_call(ctx, &ControlRequest::StopShare { group: group.into(), name: name.into() }, ctx.control_timeout())
            .await?;
    out.ok(format!("stopped sharing {name} in {group}; your copy stays"), ok_fields(r));
    Ok(())
}
