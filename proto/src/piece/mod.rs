//! The peer-to-peer piece protocol: frames, messages and an incremental codec
//! (docs/PROTOCOL.md describes the connection lifecycle and the byte layout), and the size
//! bounds that peers and tracker share.

mod bitfield;
mod body;
mod codec;
mod message;
mod piece_list;

pub use bitfield::{bits_to_bools, bools_to_bits};
pub use codec::{
    check_bitfield, decode, encode, encode_piece_header, example_messages, piece_frame_header, DecodeError, Message,
    MAX_ERROR_MESSAGE_BYTES, MAX_FRAME_LEN_BYTES, MAX_NAME_BYTES, MAX_TICKET_BYTES, PIECE_HEADER_BYTES,
};
pub use piece_list::MAX_PIECE_LIST_HASHES_PER_FRAME;

/// The protocol version every handshake names. 3: the connection is TLS 1.3 between two proven
/// peer keys and the handshake carries a ticket from the tracker (docs/PROTOCOL.md, "The
/// channel", "Tickets"). 2 added the piece list (`piece_list_request` / `piece_list`); 1 got the
/// piece hashes from the tracker. Other versions are refused with error 1.
pub const PROTOCOL_VERSION: u16 = 3;

/// Longest wait for one frame to be written, by the piece server and the downloader alike
/// (docs/PROTOCOL.md, "Timeouts").
pub const WRITE_TIMEOUT_MS: u64 = 10_000;

/// An `error` code that means "not now", not "never": no free slot, or the connection asked
/// for nothing for too long (docs/PROTOCOL.md, error codes). A downloader tries again later.
pub fn is_busy(code: u16) -> bool {
    code == error_code::BUSY || code == error_code::IDLE
}

/// Every piece is this long except the last, which is the remainder.
pub const PIECE_LEN_BYTES: u64 = 512 * 1024;

/// Most pieces a shared file may have: 2^21. A downloader holds the whole piece list in memory
/// (20 bytes a piece: 40 MiB at this bound) and sends its bitfield in one frame (256 KiB), and the
/// uploader keeps the list in its HOME; the tracker applies the same bound (docs/PROTOCOL.md,
/// "Largest file").
pub const MAX_PIECES: u64 = 1 << 21;

/// Largest shareable file: `MAX_PIECES` pieces of 512 KiB, 1 TiB.
pub const MAX_FILE_SIZE_BYTES: u64 = MAX_PIECES * PIECE_LEN_BYTES;

/// Number of pieces of a file of `size_bytes` bytes.
pub fn piece_count(size_bytes: u64) -> u64 {
    size_bytes.div_ceil(PIECE_LEN_BYTES)
}

// The bounds fit the frames, checked when the crate compiles: the largest file's bitfield is one
// frame (type, num_pieces, bits), so is a full piece-list answer (type, num_pieces, start,
// hashes), and piece indexes fit the protocol's u32 fields.
const _: () = assert!(1 + 4 + (MAX_PIECES as usize).div_ceil(8) <= MAX_FRAME_LEN_BYTES);
const _: () = assert!(1 + 8 + 20 * MAX_PIECE_LIST_HASHES_PER_FRAME <= MAX_FRAME_LEN_BYTES);
const _: () = assert!(MAX_PIECES <= u32::MAX as u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(MAX_FILE_SIZE_BYTES, 1 << 40);
        assert_eq!(piece_count(MAX_FILE_SIZE_BYTES), MAX_PIECES);
        assert_eq!(piece_count(0), 0);
        assert_eq!(piece_count(1), 1);
        assert_eq!(piece_count(PIECE_LEN_BYTES), 1);
        assert_eq!(piece_count(PIECE_LEN_BYTES + 1), 2);
    }
}

/// Codes of the `error` frame (docs/PROTOCOL.md, "Messages"), shared by the sharer that sends
/// them and anything that reads them.
pub mod error_code {
    /// The handshake names a protocol version this peer does not speak.
    pub const VERSION: u16 = 1;
    /// A message that is not allowed at this point of the connection.
    pub const UNEXPECTED: u16 = 2;
    /// This peer is logged out: its shares are paused.
    pub const LOGGED_OUT: u16 = 3;
    /// This peer does not share that file (in that group).
    pub const NOT_SHARED: u16 = 4;
    /// This peer has not verified the file's piece list yet (it is downloading it).
    pub const LIST_NOT_YET: u16 = 5;
    /// A `piece_list_request` past the end of the list.
    pub const BAD_RANGE: u16 = 6;
    /// No valid ticket for this file, this user and this connection's key (the message says
    /// which check failed).
    pub const TICKET: u16 = 7;
    /// No free serving slot (for the sender's address, its user, or at all): try again later.
    pub const BUSY: u16 = 8;
    /// The connection asked for nothing (no `request`, no `piece_list_request`) for too long.
    pub const IDLE: u16 = 9;
    /// A frame that does not decode (too long, unknown type, malformed body).
    pub const MALFORMED: u16 = 10;
}
