//! Shared files: list, details with sharers (for a download), upload, stop-share. Sharers
//! are listed and counted only while their daemon is alive (`liveness.rs`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proto::api::{FileDetails, FileMetaBody, FileRow, SharerRow, UploadRequest};
use raft_store::{Command, ErrorCode, FileMeta, Refusal, Reply, Sha1Digest};

use super::accounts::{peer_addr_from, peer_key_from};
use super::auth::bearer;
use super::body::Body;
use super::groups::reader;
use super::{now_ms, unexpected, written, ApiError, ApiResult, AppState};

pub fn meta_to_body(m: &FileMeta) -> FileMetaBody {
    FileMetaBody {
        name: m.name.clone(),
        size: m.size,
        piece_len: m.piece_len,
        piece_list_sha1: m.piece_list_sha1.to_hex(),
        sha1: m.sha1.to_hex(),
    }
}

fn body_to_meta(b: FileMetaBody) -> ApiResult<FileMeta> {
    let bad = |e: String| ApiError::Refused(Refusal::new(ErrorCode::InvalidRequest, e));
    let piece_list_sha1 = Sha1Digest::from_hex(&b.piece_list_sha1).map_err(bad)?;
    let sha1 = Sha1Digest::from_hex(&b.sha1).map_err(bad)?;
    Ok(FileMeta { name: b.name, size: b.size, piece_len: b.piece_len, piece_list_sha1, sha1 })
}

pub async fn list(State(s): State<AppState>, headers: HeaderMap, Path(group): Path<String>) -> ApiResult<Response> {
    let user = reader(&s, &headers).await?;
    let mut files = s.sm.read(|d| d.state.list_files(&user, &group))?;
    let now = s.liveness_now();
    for f in &mut files {
        s.liveness.retain_alive(&mut f.active_sharers, now, |x| &x.user);
    }
    let rows: Vec<FileRow> = files
        .into_iter()
        .map(|f| FileRow {
            pieces: FileMeta::piece_count(f.meta.size),
            name: f.meta.name,
            size: f.meta.size,
            sha1: f.meta.sha1.to_hex(),
            sharers: f.active_sharers.len() as u64,
        })
        .collect();
    Ok(Json(rows).into_response())
}

pub async fn details(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((group, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    raft_store::names::validate_file_name(&name).map_err(Refusal::invalid_name)?;
    let user = reader(&s, &headers).await?;
    let mut f = s.sm.read(|d| d.state.file(&user, &group, &name))?;
    s.liveness.retain_alive(&mut f.active_sharers, s.liveness_now(), |x| &x.user);
    let body = FileDetails {
        group,
        file: meta_to_body(&f.meta),
        sharers: f
            .active_sharers
            .into_iter()
            .map(|x| SharerRow { user: x.user, peer_addr: x.peer_addr, peer_key: x.peer_key })
            .collect(),
    };
    Ok(Json(body).into_response())
}

pub async fn upload(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(group): Path<String>,
    Body(req): Body<UploadRequest>,
) -> ApiResult<Response> {
    let token_hash = bearer(&headers)?;
    let file = body_to_meta(req.file)?;
    let peer_addr = peer_addr_from(from, &req.peer_addr)?;
    let peer_key = peer_key_from(&req.peer_key)?;
    let cmd = Command::UploadFile { token_hash: token_hash.clone(), group, file, peer_addr, peer_key };
    match s.write(&headers, cmd).await? {
        reply @ Reply::FileShared { .. } => {
            // Committed by this node as leader: the uploading daemon is alive.
            if let Ok(user) = s.sm.read(|d| d.state.authenticate(&token_hash, now_ms())) {
                let now = s.liveness_now();
                s.liveness.seen(&user, now);
            }
            written(reply)
        }
        other => Err(unexpected(other)),
    }
}

pub async fn stop_share(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((group, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    s.session_write(&headers, |token_hash| Command::StopShare { token_hash, group, name }).await
}
