//! Reading and writing piece-protocol frames on a tokio stream, with a timeout on every
//! read and write. The codec itself (bytes in, messages out) is `proto::piece`.

use std::time::Duration;

use proto::piece::{decode, encode, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads frames from `R`, keeping leftover bytes between calls.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Decode(String),
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader { inner, buf: Vec::with_capacity(1 << 20), start: 0 }
    }

    /// The next message, waiting at most `timeout_ms` for its bytes.
    pub async fn next(&mut self, timeout_ms: u64) -> Result<Message, WireError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            match decode(&self.buf[self.start..]) {
                Ok(Some((msg, used))) => {
                    self.start += used;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(msg);
                }
                Ok(None) => {}
                Err(e) => return Err(WireError::Decode(e.to_string())),
            }
            // Make room for the rest of this frame. Leftover bytes move to the front only when
            // the buffer would otherwise grow: a piece frame is not copied around per read.
            let pending = self.buf.len() - self.start;
            let frame_len = if pending >= 4 {
                4 + u32::from_be_bytes(self.buf[self.start..self.start + 4].try_into().expect("4 bytes")) as usize
            } else {
                4
            };
            let want = frame_len.max(64 * 1024);
            if self.buf.capacity() - self.buf.len() < want.saturating_sub(pending).max(16 * 1024) {
                if self.start > 0 {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                if self.buf.capacity() - self.buf.len() < want {
                    self.buf.reserve(want.max(1 << 20));
                }
            }
            let n = tokio::time::timeout_at(deadline, self.inner.read_buf(&mut self.buf))
                .await
                .map_err(|_| WireError::Timeout(timeout_ms))??;
            if n == 0 {
                return Err(WireError::Closed);
            }
        }
    }
}

/// Writes `msg` as one frame within `timeout_ms`.
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message, timeout_ms: u64) -> Result<(), WireError> {
    let mut out = Vec::new();
    encode(msg, &mut out);
    write_all(w, &out, timeout_ms).await
}

/// Writes `bytes` and flushes them within `timeout_ms`. The flush matters on the TLS channel:
/// a record left in the session's buffer would not leave until the next write.
pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8], timeout_ms: u64) -> Result<(), WireError> {
    write_parts(w, &[bytes], timeout_ms).await
}

/// Writes each of `parts` in order (a piece's header, then its data from the caller's buffer,
/// uncopied), then flushes, all within `timeout_ms`.
pub async fn write_parts<W: AsyncWrite + Unpin>(w: &mut W, parts: &[&[u8]], timeout_ms: u64) -> Result<(), WireError> {
    let io = async {
        for p in parts {
            w.write_all(p).await?;
        }
        w.flush().await
    };
    tokio::time::timeout(Duration::from_millis(timeout_ms), io).await.map_err(|_| WireError::Timeout(timeout_ms))??;
    Ok(())
}
