//! The piece server: other peers connect, name a file by its whole-file SHA-1 and group,
//! get our bitfield (complete for shared files, partial for downloads in progress, followed
//! by `have` as pieces verify), and request pieces, which are read with positional reads.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use proto::piece::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;

use super::download::conn::{bools_to_bits, name_of, HANDSHAKE_TIMEOUT_MS, PROTOCOL_VERSION, WRITE_TIMEOUT_MS};
use super::download::Live;
use super::wire::{self, FrameReader};
use super::{disk, Daemon};

/// Most peers served at once; more wait for a slot.
pub const MAX_SERVE_CONNECTIONS: usize = 64;
/// A connection with no request for this long is closed.
const IDLE_TIMEOUT_MS: u64 = 60_000;

pub async fn run(d: Arc<Daemon>, listener: TcpListener, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_SERVE_CONNECTIONS));
    loop {
        let (stream, from) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (d, stop) = (d.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut served = Served::default();
            tokio::select! {
                r = serve_one(&d, stream, &mut served) => {
                    if let Err(e) = r {
                        tracing::debug!(peer = %from, "serving ended: {e}");
                    }
                }
                _ = stop.cancelled() => {}
            }
            if served.pieces > 0 {
                tracing::info!(peer = %from, file = %served.file, pieces_served = served.pieces, "served a peer");
            }
        });
    }
}

/// What a connection serves: a complete file, or a download in progress.
enum Source {
    Complete { file: File, size: u64, pieces: usize },
    Partial { live: Arc<Live>, file: Arc<File>, size: u64 },
}

impl Source {
    fn has(&self, i: u32) -> bool {
        match self {
            Source::Complete { pieces, .. } => (i as usize) < *pieces,
            Source::Partial { live, .. } => {
                let p = live.picker.lock().unwrap_or_else(|p| p.into_inner());
                (i as usize) < p.len() && p.has(i)
            }
        }
    }
    fn bitfield(&self) -> Message {
        match self {
            Source::Complete { pieces, .. } => {
                Message::Bitfield { num_pieces: *pieces as u32, bits: bools_to_bits(&vec![true; *pieces]) }
            }
            Source::Partial { live, .. } => {
                let p = live.picker.lock().unwrap_or_else(|p| p.into_inner());
                Message::Bitfield { num_pieces: p.len() as u32, bits: bools_to_bits(p.have_vec()) }
            }
        }
    }
}

async fn refuse(w: &mut tokio::net::tcp::OwnedWriteHalf, code: u16, message: String) -> Result<(), String> {
    let _ = wire::send(w, &Message::Error { code, message: message.clone() }, WRITE_TIMEOUT_MS).await;
    Err(message)
}

/// What one connection was served, for the log.
#[derive(Default)]
struct Served {
    file: String,
    pieces: u64,
}

async fn serve_one(d: &Arc<Daemon>, stream: TcpStream, served: &mut Served) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut reader = FrameReader::new(r);
    let (file_sha1, group) = match reader.next(HANDSHAKE_TIMEOUT_MS).await.map_err(|e| e.to_string())? {
        Message::Handshake { protocol_version, file_sha1, group, .. } => {
            if protocol_version != PROTOCOL_VERSION {
                return refuse(&mut w, 1, format!("protocol version {protocol_version} is not supported")).await;
            }
            (file_sha1, group)
        }
        other => return refuse(&mut w, 2, format!("expected a handshake, got {}", name_of(&other))).await,
    };
    if d.home.session().is_none() {
        return refuse(&mut w, 3, "this peer is logged out; its shares are paused".into()).await;
    }
    let sha1_hex = hex::encode(file_sha1);
    served.file = format!("{group}/{sha1_hex}");
    let mut have_rx: Option<broadcast::Receiver<u32>> = None;
    let source = if let Some(share) = d.shares.find(&group, &sha1_hex) {
        let file = File::open(&share.path).map_err(|e| format!("cannot open {}: {e}", share.path))?;
        Source::Complete { file, size: share.size, pieces: crate::hashing::piece_count(share.size) as usize }
    } else if let Some(live) = d.downloads.find_active(&group, &sha1_hex) {
        have_rx = Some(live.have_tx.subscribe());
        let file = live.part.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(file) = file else {
            return refuse(&mut w, 4, "this file is not available here".into()).await;
        };
        let size = live.meta().size;
        tracing::info!(file = %served.file, "serving the verified pieces of a download in progress");
        Source::Partial { live, file, size }
    } else {
        return refuse(&mut w, 4, format!("this peer does not share {sha1_hex} in {group}")).await;
    };
    let hello = Message::Handshake {
        protocol_version: PROTOCOL_VERSION,
        file_sha1,
        group,
        user: d.home.session().map(|s| s.user).unwrap_or_default(),
        peer_id: [0u8; 16],
        ticket: Vec::new(),
    };
    wire::send(&mut w, &hello, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
    wire::send(&mut w, &source.bitfield(), WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;

    let mut buf: Vec<u8> = Vec::new();
    let mut header: Vec<u8> = Vec::with_capacity(16);
    loop {
        let msg = match have_rx.as_mut() {
            Some(rx) => tokio::select! {
                m = reader.next(IDLE_TIMEOUT_MS) => m.map_err(|e| e.to_string())?,
                h = rx.recv() => {
                    let out = match h {
                        Ok(piece) => Message::Have { piece },
                        Err(broadcast::error::RecvError::Lagged(_)) => source.bitfield(),
                        Err(broadcast::error::RecvError::Closed) => { have_rx = None; continue; }
                    };
                    wire::send(&mut w, &out, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
                    continue;
                }
            },
            None => reader.next(IDLE_TIMEOUT_MS).await.map_err(|e| e.to_string())?,
        };
        match msg {
            Message::Request { piece } => {
                if !source.has(piece) {
                    wire::send(&mut w, &Message::Reject { piece }, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
                    continue;
                }
                let (file, size) = match &source {
                    Source::Complete { file, size, .. } => (file.try_clone().map_err(|e| e.to_string())?, *size),
                    Source::Partial { file, size, .. } => (file.try_clone().map_err(|e| e.to_string())?, *size),
                };
                let mut b = std::mem::take(&mut buf);
                let read = tokio::task::spawn_blocking(move || disk::read_piece(&file, size, piece as u64, &mut b).map(|_| b))
                    .await
                    .map_err(|e| e.to_string())?;
                if d.serve_delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(d.serve_delay_ms)).await;
                }
                match read {
                    Ok(b) => {
                        header.clear();
                        proto::piece::encode_piece_header(piece, b.len(), &mut header);
                        wire::write_all(&mut w, &header, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
                        wire::write_all(&mut w, &b, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
                        served.pieces += 1;
                        buf = b;
                    }
                    Err(e) => {
                        tracing::warn!(piece, "cannot read piece: {e}");
                        wire::send(&mut w, &Message::Reject { piece }, WRITE_TIMEOUT_MS).await.map_err(|e| e.to_string())?;
                    }
                }
            }
            Message::Cancel { .. } | Message::KeepAlive | Message::Have { .. } => {}
            Message::Error { message, .. } => return Err(format!("peer closed: {message}")),
            other => return refuse(&mut w, 2, format!("unexpected {}", name_of(&other))).await,
        }
    }
}
