//! The piece-list message family: a downloader asks a sharer for a range of the file's piece
//! hashes (`piece_list_request`), the sharer answers with them (`piece_list`). The tracker knows
//! only the SHA-1 of the whole list, so the downloader checks what it receives against that
//! before it trusts a single piece (docs/PROTOCOL.md, "The piece list").
//!
//! Bodies only; the frame around them and the dispatch on the type byte are `codec.rs`.

use super::body::Body;
use super::message::{DecodeError, Message};

/// Most hashes in one `piece_list` frame (or asked for by one `piece_list_request`): 320 KiB of
/// hashes, well under the frame limit, so the largest file's list (2^21 pieces) is 128 frames.
pub const MAX_PIECE_LIST_HASHES_PER_FRAME: usize = 16_384;

/// `start: u32`, `count: u32`.
pub(super) fn encode_request(start: u32, count: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
}

pub(super) fn decode_request(body: &[u8]) -> Result<Message, DecodeError> {
    let mut b = Body { b: body, what: "piece-list request" };
    let start = b.u32()?;
    let count = b.u32()?;
    b.end()?;
    if count == 0 || count as usize > MAX_PIECE_LIST_HASHES_PER_FRAME {
        return Err(DecodeError::PieceListCount { count, max: MAX_PIECE_LIST_HASHES_PER_FRAME });
    }
    Ok(Message::PieceListRequest { start, count })
}

/// `num_pieces: u32`, `start: u32`, then the hashes, 20 bytes each, up to the end of the frame.
/// The caller keeps `hashes.len()` within `MAX_PIECE_LIST_HASHES_PER_FRAME`.
pub(super) fn encode_list(num_pieces: u32, start: u32, hashes: &[[u8; 20]], out: &mut Vec<u8>) {
    debug_assert!(hashes.len() <= MAX_PIECE_LIST_HASHES_PER_FRAME, "piece-list frame over its bound");
    out.reserve(8 + 20 * hashes.len());
    out.extend_from_slice(&num_pieces.to_be_bytes());
    out.extend_from_slice(&start.to_be_bytes());
    for h in hashes {
        out.extend_from_slice(h);
    }
}

pub(super) fn decode_list(body: &[u8]) -> Result<Message, DecodeError> {
    let mut b = Body { b: body, what: "piece list" };
    let num_pieces = b.u32()?;
    let start = b.u32()?;
    let rest = b.b;
    #[allow(clippy::manual_is_multiple_of)] // rust-version 1.80 has no `is_multiple_of`
    if rest.len() % 20 != 0 {
        return Err(DecodeError::PieceListLength { len: rest.len() });
    }
    let count = rest.len() / 20;
    // Checked before anything is copied out of the frame.
    if count > MAX_PIECE_LIST_HASHES_PER_FRAME {
        return Err(DecodeError::FieldTooLong { what: "piece list", len: count, max: MAX_PIECE_LIST_HASHES_PER_FRAME });
    }
    if start as u64 + count as u64 > num_pieces as u64 {
        return Err(DecodeError::PieceListRange { num_pieces, start, count });
    }
    let hashes = rest.chunks_exact(20).map(|c| c.try_into().expect("20 bytes")).collect();
    Ok(Message::PieceList { num_pieces, start, hashes })
}
