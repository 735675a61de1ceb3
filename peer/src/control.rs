//! The control protocol between the CLI and its HOME's daemon: one JSON request per line on
//! the Unix socket `HOME/daemon.sock`, one JSON response line back.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use proto::api::FileMetaBody;

/// Longest control line, in bytes: a request carries names, paths and digests (an upload's
/// piece list stays in HOME/piece-lists/, stored there by the CLI).
pub const MAX_CONTROL_LINE_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    Ping,
    /// Share `path` (already hashed by the CLI into `meta`, its piece list stored in HOME) in `group`.
    Upload {
        path: String,
        group: String,
        meta: FileMetaBody,
    },
    Download {
        group: String,
        name: String,
        dest: String,
    },
    ShowDownloads,
    StopShare {
        group: String,
        name: String,
    },
    /// The CLI logged in or out: re-read the session, announce or pause.
    SessionChanged,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DownloadRow {
    pub group: String,
    pub name: String,
    pub dest: String,
    pub state: String,
    pub bytes_done: u64,
    pub size: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ControlResponse {
    Pong { pid: u32, peer_addr: String },
    Ok { fields: serde_json::Value },
    Downloads { rows: Vec<DownloadRow> },
    Error { code: String, message: String },
}

/// Sends one request to the daemon of the HOME whose socket is `socket`.
pub async fn call(socket: &Path, req: &ControlRequest, timeout: Duration) -> std::io::Result<ControlResponse> {
    let fut = async {
        let stream = UnixStream::connect(socket).await?;
        let (r, mut w) = stream.into_split();
        let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        line.push(b'\n');
        w.write_all(&line).await?;
        w.flush().await?;
        let mut reader = BufReader::new(r);
        let mut resp = String::new();
        reader.read_line(&mut resp).await?;
        if resp.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the daemon closed the connection"));
        }
        serde_json::from_str(&resp).map_err(std::io::Error::other)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the daemon did not answer in time"))?
}
