//! The control socket: one JSON request line from the CLI, one JSON response line back.
//! Bounded: one line of at most MAX_CONTROL_LINE_BYTES, a read timeout, a cap on clients.
//!
//! Private: the socket file is 0600 from the moment it has its name (bound inside a fresh 0700
//! directory, chmod-ed there, then renamed into HOME), and every connection's peer uid
//! (SO_PEERCRED) must be the daemon's own; root is no exception. Anyone else gets one
//! `not_allowed` error line, and the daemon logs the refusal.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::accept;
use super::download::manage;
use super::handles::Daemon;
use super::reply::{client_error, error};
use super::shares::Share;
use crate::control::{ControlRequest, ControlResponse, MAX_CONTROL_LINE_BYTES};
use crate::home::Home;

const MAX_CONTROL_CLIENTS: usize = 32;
const CONTROL_READ_TIMEOUT_MS: u64 = 10_000;
/// Most time `list-shares` spends checking the shares against the tracker before it answers
/// (shares not checked in time are listed as they stand, and checked by the keepalive loop).
const LIST_SHARES_RECONCILE_MS: u64 = 3_000;

/// Binds HOME's control socket with mode 0600 whatever the umask: bound in a fresh 0700
/// directory of HOME where nobody else can reach it, chmod-ed and checked there, then renamed
/// onto `HOME/daemon.sock` (replacing a stale socket atomically).
pub fn bind(home: &Home) -> anyhow::Result<UnixListener> {
    let socket = home.socket();
    let private = home.dir.join(format!(".ctl-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", private.display()))?;
    let tmp = private.join("s");
    let result = (|| -> anyhow::Result<UnixListener> {
        let listener = UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        let meta = std::fs::symlink_metadata(&tmp)?;
        if !meta.file_type().is_socket() || meta.mode() & 0o777 != 0o600 {
            anyhow::bail!("the socket's mode is {:o}, not 600", meta.mode() & 0o777);
        }
        std::fs::rename(&tmp, &socket)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&private);
    result.map_err(|e| anyhow::anyhow!("cannot create the control socket {}: {e:#}", socket.display()))
}

/// Whether a caller of `peer_uid` may use this daemon, running as `own_uid`: only its own user.
pub fn caller_allowed(peer_uid: Option<u32>, own_uid: u32) -> bool {
    peer_uid == Some(own_uid)
}

pub async fn run(d: Arc<Daemon>, listener: UnixListener, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONTROL_CLIENTS));
    while let Some((stream, _)) = accept::next(&stop, "control accept", || listener.accept()).await {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let d = d.clone();
        let own_uid = super::disk::my_uid();
        let cred = stream.peer_cred().ok();
        let peer_uid = cred.map(|c| c.uid());
        let allowed = caller_allowed(peer_uid, own_uid);
        if !allowed {
            let who = |x: Option<String>| x.unwrap_or_else(|| "unknown".into());
            tracing::warn!(
                "refused a control connection from uid {} (pid {}): this daemon serves uid {own_uid} only",
                who(peer_uid.map(|u| u.to_string())),
                who(cred.and_then(|c| c.pid()).map(|p| p.to_string()))
            );
        }
        tokio::spawn(async move {
            let _permit = permit;
            let (r, mut w) = stream.into_split();
            let mut reader = BufReader::new(r.take(MAX_CONTROL_LINE_BYTES as u64 + 1));
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_millis(CONTROL_READ_TIMEOUT_MS), reader.read_line(&mut line)).await;
            // A caller of another uid gets its answer after its request line is read (so that
            // its write does not fail first), and nothing of the request is looked at.
            let resp = match read {
                _ if !allowed => error(
                    "not_allowed",
                    format!(
                        "this peer daemon serves uid {own_uid} only (you are uid {}); run your own with a HOME of yours",
                        peer_uid.map(|u| u.to_string()).unwrap_or_else(|| "unknown".into())
                    ),
                ),
                Ok(Ok(n)) if n > 0 && line.ends_with('\n') => match serde_json::from_str::<ControlRequest>(&line) {
                    Ok(req) => handle(&d, req).await,
                    Err(e) => error("invalid_request", format!("bad control request: {e}")),
                },
                Ok(Ok(_)) => error("invalid_request", "control request too long or cut short"),
                Ok(Err(e)) => error("invalid_request", e.to_string()),
                Err(_) => error("invalid_request", "control request timed out"),
            };
            let mut out = serde_json::to_vec(&resp).unwrap_or_default();
            out.push(b'\n');
            let _ = w.write_all(&out).await;
        });
    }
}

async fn handle(d: &Arc<Daemon>, req: ControlRequest) -> ControlResponse {
    match req {
        ControlRequest::Ping => {
            let a = &d.standing.announce;
            // What the tracker last said it lists, while it still lists this daemon.
            let listed_as = if a.listed.load(std::sync::atomic::Ordering::SeqCst) {
                a.tracker_addr.lock().unwrap_or_else(|p| p.into_inner()).clone()
            } else {
                None
            };
            ControlResponse::Pong {
                pid: std::process::id(),
                peer_addr: d.standing.peer_addr.clone(),
                listen: Some(a.listen_addr.to_string()),
                listed_as,
            }
        }
        ControlRequest::Upload { path, group, meta } => {
            let Some(client) = d.standing.session_client() else {
                return error("unauthenticated", "not logged in (run: peer login USER)");
            };
            let (name, size, sha1, key) =
                (meta.name.clone(), meta.size, meta.sha1.clone(), meta.piece_list_sha1.clone());
            if let Err(m) = crate::hashing::check_size(&name, size) {
                return error("file_too_large", m);
            }
            // The CLI stored the piece list before asking: serve only what we can answer for.
            let (store, k) = (d.piece_lists.clone(), key.clone());
            let stored = tokio::task::spawn_blocking(move || store.load(&k, crate::hashing::piece_count(size))).await;
            if !matches!(stored, Ok(Ok(Some(_)))) {
                return error(
                    "invalid_request",
                    format!("the piece list of {name} is not in this HOME; upload it again with: peer upload"),
                );
            }
            match d.standing.register_sharer(&client, &group, meta).await {
                Ok(v) => {
                    d.shares.add(Share { group, name, path, size, sha1, piece_list_sha1: Some(key) });
                    ControlResponse::Ok { fields: serde_json::to_value(v).unwrap_or_default() }
                }
                Err(e) => client_error(e),
            }
        }
        ControlRequest::Download { group, name, dest, force } => {
            match super::download::start(&d.downloads, group, name, dest, force).await {
                Ok(started) => ControlResponse::Ok { fields: serde_json::to_value(started).unwrap_or_default() },
                Err(r) => r,
            }
        }
        ControlRequest::ShowDownloads => ControlResponse::Downloads { rows: d.downloads.table.rows() },
        ControlRequest::Watch { dest } => {
            let (row, cancelled) = d.downloads.table.watch(&dest);
            ControlResponse::Watch { row, cancelled }
        }
        ControlRequest::Cancel { group, name } => manage::run(&d.downloads, manage::Op::Cancel, group, name).await,
        ControlRequest::Pause { group, name } => manage::run(&d.downloads, manage::Op::Pause, group, name).await,
        ControlRequest::Resume { group, name } => manage::run(&d.downloads, manage::Op::Resume, group, name).await,
        ControlRequest::Forget { group, name } => manage::run(&d.downloads, manage::Op::Forget, group, name).await,
        ControlRequest::ListShares => {
            // In step with the tracker: what it ended (a removal, a leave) is not listed here.
            super::reconcile::reconcile_shares(&d.standing, &d.shares, LIST_SHARES_RECONCILE_MS).await;
            ControlResponse::Shares { rows: d.shares.rows() }
        }
        ControlRequest::StopShare { group, name } => {
            let Some(client) = d.standing.session_client() else {
                return error("unauthenticated", "not logged in (run: peer login USER)");
            };
            match client.stop_share(&group, &name).await {
                Ok(v) => {
                    d.shares.remove(&group, &name);
                    ControlResponse::Ok { fields: serde_json::to_value(v).unwrap_or_default() }
                }
                Err(e) => client_error(e),
            }
        }
        ControlRequest::SessionChanged => {
            d.standing.announce().await;
            let resumed = manage::resume_after_login(&d.downloads).await;
            ControlResponse::Ok {
                fields: json!({ "logged_in": d.standing.home.session().is_some(), "resumed_downloads": resumed }),
            }
        }
        ControlRequest::LoggingOut => {
            let paused = manage::pause_for_logout(&d.downloads).await;
            ControlResponse::Ok { fields: json!({ "paused_downloads": paused }) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_daemons_own_uid_is_served() {
        assert!(caller_allowed(Some(1000), 1000));
        assert!(!caller_allowed(Some(0), 1000), "root is refused too");
        assert!(!caller_allowed(Some(1001), 1000));
        assert!(!caller_allowed(Some(65534), 0));
        assert!(!caller_allowed(None, 1000), "no credentials, no service");
    }
}
