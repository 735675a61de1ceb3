//! The peer-to-peer piece protocol: frames, messages and an incremental codec
//! (docs/PROTOCOL.md describes the connection lifecycle and the byte layout).

mod codec;

pub use codec::{check_bitfield, decode, encode, encode_piece_header, DecodeError, Message, MAX_ERROR_MESSAGE_BYTES, MAX_FRAME_LEN_BYTES, MAX_NAME_BYTES, MAX_TICKET_BYTES};
