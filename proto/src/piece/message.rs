//! The piece protocol's messages and the ways a frame can fail to decode: the types both the
//! frame codec (`codec.rs`) and each message family's body code (`piece_list.rs`) share, so
//! neither imports the other's.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// First message each way: which file (by whole-file SHA-1) in which group, and who asks.
    Handshake {
        protocol_version: u16,
        file_sha1: [u8; 20],
        group: String,
        user: String,
        peer_id: [u8; 16],
        ticket: Vec<u8>,
    },
    /// Which pieces the sender has, MSB first; may be re-sent to replace the last one.
    Bitfield {
        num_pieces: u32,
        bits: Vec<u8>,
    },
    Have {
        piece: u32,
    },
    Request {
        piece: u32,
    },
    Cancel {
        piece: u32,
    },
    Piece {
        piece: u32,
        data: Vec<u8>,
    },
    Reject {
        piece: u32,
    },
    KeepAlive,
    /// The sender's last message before it closes.
    Error {
        code: u16,
        message: String,
    },
    /// Send me hashes `start..start + count` of the file's piece list (`count` is 1 to
    /// `MAX_PIECE_LIST_HASHES_PER_FRAME`).
    PieceListRequest {
        start: u32,
        count: u32,
    },
    /// Hashes `start..start + hashes.len()` of a piece list of `num_pieces` hashes.
    PieceList {
        num_pieces: u32,
        start: u32,
        hashes: Vec<[u8; 20]>,
    },
    /// Downloader to sharer, on an open connection: a fresh ticket for the same file, user and
    /// key, which the connection is served on from now (docs/PROTOCOL.md, "Tickets while a
    /// connection lasts").
    Ticket {
        ticket: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes is over the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("empty frame (no message type)")]
    EmptyFrame,
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("{what} is cut short")]
    Truncated { what: &'static str },
    #[error("{trailing} bytes left over after a {what} message")]
    TrailingBytes { what: &'static str, trailing: usize },
    #[error("{what} is {len} bytes, over the limit of {max}")]
    FieldTooLong { what: &'static str, len: usize, max: usize },
    #[error("{what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("bitfield of {num_pieces} pieces needs {want} bytes, got {got}")]
    BitfieldLength { num_pieces: u32, want: usize, got: usize },
    #[error("bitfield has bits set past piece {num_pieces}")]
    BitfieldSpareBits { num_pieces: u32 },
    #[error("piece-list request for {count} hashes; a request asks for 1 to {max}")]
    PieceListCount { count: u32, max: usize },
    #[error("piece list of {len} bytes is not a whole number of 20-byte hashes")]
    PieceListLength { len: usize },
    #[error("piece list of {num_pieces} hashes cannot hold {count} hashes from {start}")]
    PieceListRange { num_pieces: u32, start: u32, count: usize },
}

impl Message {
    /// The message's name as docs/PROTOCOL.md writes it, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Handshake { .. } => "handshake",
            Message::Bitfield { .. } => "bitfield",
            Message::Have { .. } => "have",
            Message::Request { .. } => "request",
            Message::Cancel { .. } => "cancel",
            Message::Piece { .. } => "piece",
            Message::Reject { .. } => "reject",
            Message::KeepAlive => "keep-alive",
            Message::Error { .. } => "error",
            Message::PieceListRequest { .. } => "piece-list request",
            Message::PieceList { .. } => "piece list",
            Message::Ticket { .. } => "ticket",
        }
    }
}
