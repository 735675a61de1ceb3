//! Reading and writing piece-protocol frames on a tokio stream, with a timeout on every
//! read and write. The codec itself (bytes in, messages out) is `proto::piece`.

use std::time::Duration;

use proto::piece::{decode, encode, piece_frame_header, Message, PIECE_HEADER_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads frames from `R`, keeping leftover bytes between calls.
///
/// A piece's payload is read into a buffer of its own, which becomes the message's `data`:
/// the bytes are copied once from the stream (from TLS's plaintext) and not again out of a
/// shared buffer.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    /// The piece frame being read: its index, the payload so far, the payload's length.
    piece: Option<(u32, Vec<u8>, usize)>,
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
        FrameReader { inner, buf: Vec::with_capacity(1 << 20), start: 0, piece: None }
    }

    /// The next message, waiting at most `timeout_ms` for its bytes.
    pub async fn next(&mut self, timeout_ms: u64) -> Result<Message, WireError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            if let Some(msg) = self.buffered()? {
                return Ok(msg);
            }
            let n = tokio::time::timeout_at(deadline, self.read_more())
                .await
                .map_err(|_| WireError::Timeout(timeout_ms))??;
            if n == 0 {
                return Err(WireError::Closed);
            }
        }
    }

    /// The next message if it can be had without waiting: a whole frame already buffered, or
    /// in the stream now. `None` when it would wait (a part of a frame stays buffered for the
    /// next call). Nothing is armed: no timer, no wake-up. (A zero `tokio::time::timeout` is
    /// not the same: when the read is not ready it waits for the timer's next tick, up to a
    /// millisecond, which is what paced a sharer at one piece per tick.)
    pub fn next_ready(&mut self) -> Option<Result<Message, WireError>> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            match self.buffered() {
                Ok(Some(msg)) => return Some(Ok(msg)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            let read = std::pin::pin!(self.read_more());
            match std::future::Future::poll(read, &mut cx) {
                std::task::Poll::Pending => return None,
                std::task::Poll::Ready(Ok(0)) => return Some(Err(WireError::Closed)),
                std::task::Poll::Ready(Ok(_)) => {}
                std::task::Poll::Ready(Err(e)) => return Some(Err(e.into())),
            }
        }
    }

    /// Reads what the stream has (at least one byte, or 0 at its end): into the piece being
    /// read, never past its end, or else into the frame buffer. Cancel-safe: what was read
    /// stays.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        match &mut self.piece {
            Some((_, data, len)) => {
                let left = (*len - data.len()) as u64;
                (&mut self.inner).take(left).read_buf(data).await
            }
            None => {
                self.make_room();
                self.inner.read_buf(&mut self.buf).await
            }
        }
    }

    /// A whole message from the bytes already read, if they hold one.
    fn buffered(&mut self) -> Result<Option<Message>, WireError> {
        if let Some((_, data, len)) = &self.piece {
            if data.len() < *len {
                return Ok(None);
            }
            let (piece, data, _) = self.piece.take().expect("a piece is being read");
            return Ok(Some(Message::Piece { piece, data }));
        }
        let pending = &self.buf[self.start..];
        if let Some((piece, len)) = piece_frame_header(pending) {
            if pending.len() < PIECE_HEADER_BYTES + len {
                // The payload goes to a buffer of its own from here on.
                let mut data = Vec::with_capacity(len);
                data.extend_from_slice(&pending[PIECE_HEADER_BYTES..]);
                self.buf.clear();
                self.start = 0;
                self.piece = Some((piece, data, len));
                return Ok(None);
            }
        }
        match decode(&self.buf[self.start..]) {
            Ok(Some((msg, used))) => {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(msg))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(WireError::Decode(e.to_string())),
        }
    }

    /// Room for the rest of the frame being read (at least 64 KiB): the consumed front is
    /// dropped first, and the buffer grows only for a frame larger than it.
    fn make_room(&mut self) {
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
        // Vectored writes: under TLS a piece's header goes in the records of its data, not in
        // a record and a system call of its own.
        let mut slices: Vec<std::io::IoSlice<'_>> =
            parts.iter().filter(|p| !p.is_empty()).map(|p| std::io::IoSlice::new(p)).collect();
        let mut left: &mut [std::io::IoSlice<'_>] = &mut slices;
        while !left.is_empty() {
            let n = w.write_vectored(left).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
            }
            std::io::IoSlice::advance_slices(&mut left, n);
        }
        w.flush().await
    };
    tokio::time::timeout(Duration::from_millis(timeout_ms), io).await.map_err(|_| WireError::Timeout(timeout_ms))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use proto::piece::MAX_FRAME_LEN_BYTES;
    use tokio::io::{duplex, AsyncWriteExt};

    use super::*;

    fn frame(msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode(msg, &mut out);
        out
    }

    fn handshake() -> Message {
        let mut examples = proto::piece::example_messages().into_iter();
        examples.find(|m| matches!(m, Message::Handshake { .. })).expect("a handshake among the examples")
    }

    /// A piece's payload read into its own buffer survives a read cut short by its timeout,
    /// and what follows the piece is read as the next frame.
    #[tokio::test]
    async fn a_piece_read_in_parts_across_a_timeout_comes_whole_and_the_next_frame_follows() {
        let data: Vec<u8> = (0..512 * 1024).map(|i| (i % 253) as u8).collect();
        let mut bytes = frame(&Message::Piece { piece: 9, data: data.clone() });
        bytes.extend(frame(&Message::Have { piece: 4 }));
        let (mut tx, rx) = duplex(1 << 20);
        let mut r = FrameReader::new(rx);
        let cut = 100_000;
        tx.write_all(&bytes[..cut]).await.unwrap();
        assert!(matches!(r.next(20).await, Err(WireError::Timeout(20))));
        assert!(r.next_ready().is_none());
        tx.write_all(&bytes[cut..]).await.unwrap();
        match r.next(1_000).await {
            Ok(Message::Piece { piece: 9, data: got }) => assert!(got == data, "the payload comes back intact"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.next(1_000).await, Ok(Message::Have { piece: 4 })));
    }

    /// `next_ready` takes every whole frame that is there, leaves a part of one buffered, and
    /// never waits (it is not async: nothing can make it wait for a timer or the peer).
    #[tokio::test]
    async fn next_ready_takes_the_frames_that_are_there_and_keeps_a_partial_one() {
        let (mut tx, rx) = duplex(1 << 20);
        let mut r = FrameReader::new(rx);
        assert!(r.next_ready().is_none(), "nothing sent yet");
        let third = frame(&Message::Request { piece: 3 });
        let mut bytes = frame(&Message::Request { piece: 1 });
        bytes.extend(frame(&Message::Cancel { piece: 1 }));
        bytes.extend(&third[..3]);
        tx.write_all(&bytes).await.unwrap();
        assert!(matches!(r.next_ready(), Some(Ok(Message::Request { piece: 1 }))));
        assert!(matches!(r.next_ready(), Some(Ok(Message::Cancel { piece: 1 }))));
        assert!(r.next_ready().is_none(), "a part of a frame is not a message");
        tx.write_all(&third[3..]).await.unwrap();
        assert!(matches!(r.next_ready(), Some(Ok(Message::Request { piece: 3 }))));
        assert!(r.next_ready().is_none());
        drop(tx);
        assert!(matches!(r.next_ready(), Some(Err(WireError::Closed))));
    }

    #[tokio::test]
    async fn a_stream_that_never_sends_times_out_after_the_bound() {
        let (_silent, rx) = duplex(1024);
        let mut r = FrameReader::new(rx);
        let started = Instant::now();
        let e = r.next(50).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, WireError::Timeout(50)), "{e:?}");
        assert_eq!(e.to_string(), "timed out after 50 ms");
        assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(2), "{took:?}");

        // Half a frame is no frame: the bound holds for the rest of it too.
        let (mut tx, rx) = duplex(1024);
        let bytes = frame(&handshake());
        tx.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
        let mut r = FrameReader::new(rx);
        let started = Instant::now();
        assert!(matches!(r.next(50).await, Err(WireError::Timeout(50))));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_frame_split_across_many_writes_decodes_and_frames_in_one_write_come_apart() {
        let piece = Message::Piece { piece: 5, data: (0..512 * 1024).map(|i| (i % 251) as u8).collect() };
        let msgs = vec![handshake(), Message::KeepAlive, piece, Message::Request { piece: 9 }, Message::KeepAlive];
        let bytes: Vec<u8> = msgs.iter().flat_map(frame).collect();
        // Small writes, a few bytes each (and a pipe smaller than a piece frame), ...
        let (mut tx, rx) = duplex(4096);
        let writer = {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                for chunk in bytes.chunks(7) {
                    tx.write_all(chunk).await.unwrap();
                }
                tx
            })
        };
        let mut r = FrameReader::new(rx);
        for want in &msgs {
            assert_eq!(&r.next(5_000).await.unwrap(), want);
        }
        // ... and, once the writer is gone with nothing left, the stream is closed.
        drop(writer.await.unwrap());
        assert!(matches!(r.next(5_000).await, Err(WireError::Closed)));

        // Every frame in one write.
        let (mut tx, rx) = duplex(bytes.len());
        tx.write_all(&bytes).await.unwrap();
        drop(tx);
        let mut r = FrameReader::new(rx);
        for want in &msgs {
            assert_eq!(&r.next(5_000).await.unwrap(), want);
        }
        assert!(matches!(r.next(5_000).await, Err(WireError::Closed)));
    }

    #[tokio::test]
    async fn a_length_over_the_largest_frame_is_a_decode_error_before_the_body_arrives() {
        let (mut tx, rx) = duplex(1024);
        tx.write_all(&((MAX_FRAME_LEN_BYTES + 1) as u32).to_be_bytes()).await.unwrap();
        let mut r = FrameReader::new(rx);
        let started = Instant::now();
        // The writer stays open and sends nothing more: waiting for the body would time out.
        let e = r.next(5_000).await.unwrap_err();
        assert!(matches!(e, WireError::Decode(_)), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "refused from the length alone");
        let (mut tx, rx) = duplex(1024);
        tx.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(FrameReader::new(rx).next(5_000).await, Err(WireError::Decode(_))));
    }

    #[tokio::test]
    async fn a_closed_stream_is_closed_even_mid_frame() {
        let (tx, rx) = duplex(1024);
        drop(tx);
        assert!(matches!(FrameReader::new(rx).next(5_000).await, Err(WireError::Closed)));
        let (mut tx, rx) = duplex(1024);
        let bytes = frame(&handshake());
        tx.write_all(&bytes[..bytes.len() - 1]).await.unwrap();
        drop(tx);
        let e = FrameReader::new(rx).next(5_000).await.unwrap_err();
        assert!(matches!(e, WireError::Closed), "{e:?}");
        assert_eq!(e.to_string(), "connection closed");
    }

    #[tokio::test]
    async fn a_write_nobody_reads_times_out_after_the_bound() {
        // A 64-byte pipe whose other end never reads: a piece frame cannot leave.
        let (mut tx, _deaf) = duplex(64);
        let piece = Message::Piece { piece: 0, data: vec![0; 4096] };
        let started = Instant::now();
        let e = send(&mut tx, &piece, 50).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, WireError::Timeout(50)), "{e:?}");
        assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(2), "{took:?}");
        // A frame that fits goes through at once.
        let (mut tx, rx) = duplex(64);
        send(&mut tx, &Message::Have { piece: 3 }, 50).await.unwrap();
        assert_eq!(FrameReader::new(rx).next(50).await.unwrap(), Message::Have { piece: 3 });
    }
}
