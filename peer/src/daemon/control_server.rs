//! The control socket: one JSON request line from the CLI, one JSON response line back.
//! Bounded: one line of at most MAX_CONTROL_LINE_BYTES, a read timeout, a cap on clients.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracker_client::ClientError;

use super::shares::Share;
use super::Daemon;
use crate::control::{ControlRequest, ControlResponse, MAX_CONTROL_LINE_BYTES};

const MAX_CONTROL_CLIENTS: usize = 32;
const CONTROL_READ_TIMEOUT_MS: u64 = 10_000;

pub async fn run(d: Arc<Daemon>, listener: UnixListener, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONTROL_CLIENTS));
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("control accept: {e}");
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let d = d.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (r, mut w) = stream.into_split();
            let mut reader = BufReader::new(r.take(MAX_CONTROL_LINE_BYTES as u64 + 1));
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_millis(CONTROL_READ_TIMEOUT_MS), reader.read_line(&mut line)).await;
            let resp = match read {
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

fn error(code: &str, message: impl Into<String>) -> ControlResponse {
    ControlResponse::Error { code: code.into(), message: message.into() }
}

pub fn client_error(e: ClientError) -> ControlResponse {
    match e {
        ClientError::Refused { code, message } => error(&code, message),
        other => error("unavailable", other.to_string()),
    }
}

async fn handle(d: &Arc<Daemon>, req: ControlRequest) -> ControlResponse {
    match req {
        ControlRequest::Ping => ControlResponse::Pong { pid: std::process::id(), peer_addr: d.peer_addr.clone() },
        ControlRequest::Upload { path, group, meta } => {
            let Some(client) = d.session_client() else {
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
            match client.upload(&group, meta, &d.peer_addr).await {
                Ok(v) => {
                    d.shares.add(Share { group, name, path, size, sha1, piece_list_sha1: Some(key) });
                    ControlResponse::Ok { fields: v }
                }
                Err(e) => client_error(e),
            }
        }
        ControlRequest::Download { group, name, dest } => match super::download::start(d, group, name, dest).await {
            Ok(fields) => ControlResponse::Ok { fields },
            Err(r) => r,
        },
        ControlRequest::ShowDownloads => ControlResponse::Downloads { rows: d.downloads.rows() },
        ControlRequest::StopShare { group, name } => {
            let Some(client) = d.session_client() else {
                return error("unauthenticated", "not logged in (run: peer login USER)");
            };
            match client.stop_share(&group, &name).await {
                Ok(v) => {
                    d.shares.remove(&group, &name);
                    ControlResponse::Ok { fields: v }
                }
                Err(e) => client_error(e),
            }
        }
        ControlRequest::SessionChanged => {
            d.announce().await;
            ControlResponse::Ok { fields: json!({ "logged_in": d.home.session().is_some() }) }
        }
    }
}
