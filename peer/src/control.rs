//! The CLI's end of the control socket: one JSON request per line on the Unix socket
//! `HOME/daemon.sock`, one JSON response line back. The messages are `proto::control`'s (the
//! socket is 0600 and the daemon answers only callers of its own uid, SO_PEERCRED).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub use proto::control::{
    ControlRequest, ControlResponse, DownloadFailure, DownloadRow, DownloadStarted, DownloadState, ShareRow,
    MAX_CONTROL_LINE_BYTES,
};

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
