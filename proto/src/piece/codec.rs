//! Frames and messages of the piece protocol, encoded and decoded without I/O.
//!
//! Frame: `u32` big-endian length of what follows, `u8` message type, body. The length is
//! checked against `MAX_FRAME_LEN_BYTES` before anything is allocated; a body with bytes left
//! over after its message is an error. `decode` is incremental: `Ok(None)` means "need more".

use super::body::Body;
pub use super::message::{DecodeError, Message};
use super::piece_list;

/// Largest frame body (type byte included): a full piece plus its index.
pub const MAX_FRAME_LEN_BYTES: usize = 512 * 1024 + 64;
/// Longest group or user name carried in a handshake, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest error message, in bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;
/// Longest access ticket, in bytes.
pub const MAX_TICKET_BYTES: usize = 4096;

const T_HANDSHAKE: u8 = 0;
const T_BITFIELD: u8 = 1;
const T_HAVE: u8 = 2;
const T_REQUEST: u8 = 3;
const T_CANCEL: u8 = 4;
const T_PIECE: u8 = 5;
const T_REJECT: u8 = 6;
const T_KEEPALIVE: u8 = 7;
const T_ERROR: u8 = 8;
const T_PIECE_LIST_REQUEST: u8 = 9;
const T_PIECE_LIST: u8 = 10;
const T_TICKET: u8 = 11;

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_u16(out, s.len() as u16);
    out.extend_from_slice(s);
}
/// The type and body of a message that is a piece index alone (`have`, `request`, `cancel`,
/// `reject`).
fn put_piece_index(out: &mut Vec<u8>, kind: u8, piece: u32) {
    out.push(kind);
    put_u32(out, piece);
}

/// Appends the frame of `msg` to `out`.
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    if let Message::Piece { piece, data } = msg {
        encode_piece_header(*piece, data.len(), out);
        out.extend_from_slice(data);
        return;
    }
    let start = out.len();
    put_u32(out, 0);
    match msg {
        Message::Handshake { protocol_version, file_sha1, group, user, peer_id, ticket } => {
            out.push(T_HANDSHAKE);
            put_u16(out, *protocol_version);
            out.extend_from_slice(file_sha1);
            put_str(out, group.as_bytes());
            put_str(out, user.as_bytes());
            out.extend_from_slice(peer_id);
            put_str(out, ticket);
        }
        Message::Bitfield { num_pieces, bits } => {
            out.push(T_BITFIELD);
            put_u32(out, *num_pieces);
            out.extend_from_slice(bits);
        }
        Message::Have { piece } => put_piece_index(out, T_HAVE, *piece),
        Message::Request { piece } => put_piece_index(out, T_REQUEST, *piece),
        Message::Cancel { piece } => put_piece_index(out, T_CANCEL, *piece),
        Message::Reject { piece } => put_piece_index(out, T_REJECT, *piece),
        Message::KeepAlive => out.push(T_KEEPALIVE),
        Message::Error { code, message } => {
            out.push(T_ERROR);
            put_u16(out, *code);
            let m = message.as_bytes();
            // Cut an over-long message at a character boundary rather than send a bad frame.
            let mut end = m.len().min(MAX_ERROR_MESSAGE_BYTES);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            put_str(out, &m[..end]);
        }
        Message::PieceListRequest { start, count } => {
            out.push(T_PIECE_LIST_REQUEST);
            piece_list::encode_request(*start, *count, out);
        }
        Message::PieceList { num_pieces, start, hashes } => {
            out.push(T_PIECE_LIST);
            piece_list::encode_list(*num_pieces, *start, hashes, out);
        }
        Message::Ticket { ticket } => {
            out.push(T_TICKET);
            put_str(out, ticket);
        }
        Message::Piece { .. } => unreachable!("handled above"),
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends the header of a piece frame whose `data_len` payload bytes the caller writes next,
/// so a sender can write the payload from its own buffer without copying it.
pub fn encode_piece_header(piece: u32, data_len: usize, out: &mut Vec<u8>) {
    put_u32(out, (1 + 4 + data_len) as u32);
    out.push(T_PIECE);
    put_u32(out, piece);
}

/// Bytes before a piece frame's payload: length, type and piece index.
pub const PIECE_HEADER_BYTES: usize = 4 + 1 + 4;

/// When `buf` starts with the header of a piece frame within the size bound: `(piece, payload
/// length)`, so a reader can take the payload into a buffer of its own rather than have
/// `decode` copy it out of the stream's. `None` for anything else (including a frame `decode`
/// will refuse), which is left to `decode`.
pub fn piece_frame_header(buf: &[u8]) -> Option<(u32, usize)> {
    if buf.len() < PIECE_HEADER_BYTES || buf[4] != T_PIECE {
        return None;
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if !(5..=MAX_FRAME_LEN_BYTES).contains(&len) {
        return None;
    }
    Some((u32::from_be_bytes(buf[5..9].try_into().expect("4 bytes")), len - 5))
}

/// Checks a bitfield's length and that no bit past the last piece is set.
pub fn check_bitfield(num_pieces: u32, bits: &[u8]) -> Result<(), DecodeError> {
    let want = (num_pieces as usize).div_ceil(8);
    if bits.len() != want {
        return Err(DecodeError::BitfieldLength { num_pieces, want, got: bits.len() });
    }
    let spare = want * 8 - num_pieces as usize;
    if spare > 0 && bits[want - 1] & ((1u8 << spare) - 1) != 0 {
        return Err(DecodeError::BitfieldSpareBits { num_pieces });
    }
    Ok(())
}

/// Decodes one message from the front of `buf`: `Ok(Some((message, bytes used)))`, or
/// `Ok(None)` when `buf` does not yet hold a whole frame.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME_LEN_BYTES {
        return Err(DecodeError::FrameTooLarge { len, max: MAX_FRAME_LEN_BYTES });
    }
    if len == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let kind = buf[4];
    let body = &buf[5..4 + len];
    let piece_msg = |what: &'static str| -> Result<u32, DecodeError> {
        let mut b = Body { b: body, what };
        let piece = b.u32()?;
        b.end()?;
        Ok(piece)
    };
    let msg = match kind {
        T_HANDSHAKE => {
            let mut b = Body { b: body, what: "handshake" };
            let protocol_version = b.u16()?;
            let file_sha1: [u8; 20] = b.take(20)?.try_into().expect("20 bytes");
            let group = b.string("group", MAX_NAME_BYTES)?;
            let user = b.string("user", MAX_NAME_BYTES)?;
            let peer_id: [u8; 16] = b.take(16)?.try_into().expect("16 bytes");
            let ticket = b.bytes("ticket", MAX_TICKET_BYTES)?.to_vec();
            b.end()?;
            Message::Handshake { protocol_version, file_sha1, group, user, peer_id, ticket }
        }
        T_BITFIELD => {
            let mut b = Body { b: body, what: "bitfield" };
            let num_pieces = b.u32()?;
            let bits = b.b.to_vec();
            check_bitfield(num_pieces, &bits)?;
            Message::Bitfield { num_pieces, bits }
        }
        T_HAVE => Message::Have { piece: piece_msg("have")? },
        T_REQUEST => Message::Request { piece: piece_msg("request")? },
        T_CANCEL => Message::Cancel { piece: piece_msg("cancel")? },
        T_REJECT => Message::Reject { piece: piece_msg("reject")? },
        T_PIECE => {
            let mut b = Body { b: body, what: "piece" };
            let piece = b.u32()?;
            Message::Piece { piece, data: b.b.to_vec() }
        }
        T_KEEPALIVE => {
            Body { b: body, what: "keep-alive" }.end()?;
            Message::KeepAlive
        }
        T_ERROR => {
            let mut b = Body { b: body, what: "error" };
            let code = b.u16()?;
            let message = b.string("error message", MAX_ERROR_MESSAGE_BYTES)?;
            b.end()?;
            Message::Error { code, message }
        }
        T_PIECE_LIST_REQUEST => piece_list::decode_request(body)?,
        T_PIECE_LIST => piece_list::decode_list(body)?,
        T_TICKET => {
            let mut b = Body { b: body, what: "ticket" };
            let ticket = b.bytes("ticket", MAX_TICKET_BYTES)?.to_vec();
            b.end()?;
            Message::Ticket { ticket }
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok(Some((msg, 4 + len)))
}

/// Messages of every type, a handshake first, with the edge cases (an empty bitfield, piece
/// and piece list; the largest piece-list request; an empty ticket): what the codec's tests
/// round-trip and cut at every byte, the fuzzer's seeds and the peer's frame tests. A new
/// message type gets its examples here, and so in all of them.
pub fn example_messages() -> Vec<Message> {
    vec![
        Message::Handshake {
            protocol_version: 3,
            file_sha1: [7; 20],
            group: "dev_team".into(),
            user: "alice".into(),
            peer_id: [9; 16],
            ticket: vec![9; 180],
        },
        Message::Bitfield { num_pieces: 10, bits: vec![0xff, 0xc0] },
        Message::Bitfield { num_pieces: 0, bits: vec![] },
        Message::Have { piece: 3 },
        Message::Request { piece: u32::MAX },
        Message::Cancel { piece: 0 },
        Message::Piece { piece: 2, data: (0..1000u32).map(|i| i as u8).collect() },
        Message::Piece { piece: 1, data: vec![] },
        Message::Reject { piece: 5 },
        Message::KeepAlive,
        Message::Error { code: 3, message: "logged out".into() },
        Message::PieceListRequest { start: 0, count: 1 },
        Message::PieceListRequest { start: 16_384, count: piece_list::MAX_PIECE_LIST_HASHES_PER_FRAME as u32 },
        Message::PieceList { num_pieces: 3, start: 0, hashes: vec![[1; 20], [2; 20], [3; 20]] },
        Message::PieceList { num_pieces: 5, start: 4, hashes: vec![[0xab; 20]] },
        Message::PieceList { num_pieces: 0, start: 0, hashes: vec![] },
        Message::Ticket { ticket: vec![9; 40] },
        Message::Ticket { ticket: vec![] },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::piece::MAX_PIECE_LIST_HASHES_PER_FRAME;
    use proptest::prelude::*;

    #[test]
    fn a_piece_header_is_recognised_only_within_the_bounds() {
        let mut out = Vec::new();
        encode_piece_header(7, 1000, &mut out);
        assert_eq!(out.len(), PIECE_HEADER_BYTES);
        assert_eq!(piece_frame_header(&out), Some((7, 1000)));
        assert_eq!(piece_frame_header(&out[..8]), None, "a part of the header");
        let mut request = Vec::new();
        encode(&Message::Request { piece: 7 }, &mut request);
        assert_eq!(piece_frame_header(&request), None, "not a piece");
        let mut huge = Vec::new();
        encode_piece_header(7, MAX_FRAME_LEN_BYTES, &mut huge);
        assert_eq!(piece_frame_header(&huge), None, "over the frame bound: left to decode, which refuses it");
    }

    #[test]
    fn round_trip_every_message() {
        for m in example_messages() {
            let mut buf = Vec::new();
            encode(&m, &mut buf);
            assert_eq!(decode(&buf).unwrap(), Some((m.clone(), buf.len())), "{m:?}");
        }
    }

    #[test]
    fn split_at_every_offset() {
        for m in example_messages() {
            let mut buf = Vec::new();
            encode(&m, &mut buf);
            for cut in 0..buf.len() {
                assert_eq!(decode(&buf[..cut]).unwrap(), None, "{m:?} cut at {cut}");
            }
            // Two messages back to back: the first decodes alone, leaving the second.
            let mut two = buf.clone();
            encode(&Message::KeepAlive, &mut two);
            let (first, used) = decode(&two).unwrap().unwrap();
            assert_eq!(first, m);
            assert_eq!(decode(&two[used..]).unwrap(), Some((Message::KeepAlive, 5)));
        }
    }

    #[test]
    fn oversize_frame_is_refused_before_the_body_arrives() {
        let buf = ((MAX_FRAME_LEN_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(decode(&buf), Err(DecodeError::FrameTooLarge { .. })));
        assert!(matches!(decode(&u32::MAX.to_be_bytes()), Err(DecodeError::FrameTooLarge { .. })));
    }

    #[test]
    fn bad_frames_are_errors() {
        let frame = |kind: u8, body: &[u8]| {
            let mut v = ((body.len() + 1) as u32).to_be_bytes().to_vec();
            v.push(kind);
            v.extend_from_slice(body);
            v
        };
        assert_eq!(decode(&[0, 0, 0, 0]), Err(DecodeError::EmptyFrame));
        assert_eq!(decode(&frame(99, &[])), Err(DecodeError::UnknownType(99)));
        assert!(matches!(decode(&frame(T_HAVE, &[0, 0, 0, 1, 9])), Err(DecodeError::TrailingBytes { .. })));
        assert!(matches!(decode(&frame(T_HAVE, &[0, 0])), Err(DecodeError::Truncated { .. })));
        assert!(matches!(decode(&frame(T_KEEPALIVE, &[1])), Err(DecodeError::TrailingBytes { .. })));
        // Bitfield: 10 pieces need 2 bytes; bits past piece 10 must be zero.
        assert!(matches!(decode(&frame(T_BITFIELD, &[0, 0, 0, 10, 0xff])), Err(DecodeError::BitfieldLength { .. })));
        assert!(matches!(
            decode(&frame(T_BITFIELD, &[0, 0, 0, 10, 0xff, 0xe0])),
            Err(DecodeError::BitfieldSpareBits { .. })
        ));
        // Handshake with a 65-byte group name.
        let mut hs = vec![0, 1];
        hs.extend_from_slice(&[0; 20]);
        hs.extend_from_slice(&65u16.to_be_bytes());
        hs.extend_from_slice(&[b'a'; 65]);
        assert!(matches!(decode(&frame(T_HANDSHAKE, &hs)), Err(DecodeError::FieldTooLong { .. })));
        // Handshake cut inside the user string.
        let mut hs = vec![0, 1];
        hs.extend_from_slice(&[0; 20]);
        hs.extend_from_slice(&1u16.to_be_bytes());
        hs.push(b'g');
        hs.extend_from_slice(&5u16.to_be_bytes());
        hs.extend_from_slice(b"ab");
        assert!(matches!(decode(&frame(T_HANDSHAKE, &hs)), Err(DecodeError::Truncated { .. })));
        // Non-UTF-8 error message.
        assert!(matches!(decode(&frame(T_ERROR, &[0, 1, 0, 1, 0xff])), Err(DecodeError::NotUtf8 { .. })));
        // A renewal ticket over the bound, one cut short, one with bytes after it.
        let mut t = ((MAX_TICKET_BYTES + 1) as u16).to_be_bytes().to_vec();
        t.extend_from_slice(&vec![0; MAX_TICKET_BYTES + 1]);
        assert!(matches!(decode(&frame(T_TICKET, &t)), Err(DecodeError::FieldTooLong { .. })));
        assert!(matches!(decode(&frame(T_TICKET, &[0, 5, 1])), Err(DecodeError::Truncated { .. })));
        assert!(matches!(decode(&frame(T_TICKET, &[0, 1, 1, 2])), Err(DecodeError::TrailingBytes { .. })));
    }

    #[test]
    fn bad_piece_list_frames_are_errors() {
        let frame = |kind: u8, body: &[u8]| {
            let mut v = ((body.len() + 1) as u32).to_be_bytes().to_vec();
            v.push(kind);
            v.extend_from_slice(body);
            v
        };
        let be = |xs: &[u32]| xs.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
        // Requests: 1 to MAX hashes, nothing after the two fields.
        assert_eq!(
            decode(&frame(T_PIECE_LIST_REQUEST, &be(&[0, 0]))),
            Err(DecodeError::PieceListCount { count: 0, max: MAX_PIECE_LIST_HASHES_PER_FRAME })
        );
        let over = MAX_PIECE_LIST_HASHES_PER_FRAME as u32 + 1;
        assert!(matches!(
            decode(&frame(T_PIECE_LIST_REQUEST, &be(&[0, over]))),
            Err(DecodeError::PieceListCount { .. })
        ));
        assert!(matches!(decode(&frame(T_PIECE_LIST_REQUEST, &be(&[0]))), Err(DecodeError::Truncated { .. })));
        let mut long = be(&[0, 1]);
        long.push(0);
        assert!(matches!(decode(&frame(T_PIECE_LIST_REQUEST, &long)), Err(DecodeError::TrailingBytes { .. })));
        // Answers: whole hashes only.
        let mut partial = be(&[2, 0]);
        partial.extend_from_slice(&[0; 21]);
        assert_eq!(decode(&frame(T_PIECE_LIST, &partial)), Err(DecodeError::PieceListLength { len: 21 }));
        assert!(matches!(decode(&frame(T_PIECE_LIST, &be(&[2]))), Err(DecodeError::Truncated { .. })));
        // Hashes past the end of the list it claims.
        let mut past = be(&[2, 1]);
        past.extend_from_slice(&[0; 40]);
        assert_eq!(
            decode(&frame(T_PIECE_LIST, &past)),
            Err(DecodeError::PieceListRange { num_pieces: 2, start: 1, count: 2 })
        );
        let mut wrap = be(&[u32::MAX, u32::MAX]);
        wrap.extend_from_slice(&[0; 20]);
        assert!(matches!(decode(&frame(T_PIECE_LIST, &wrap)), Err(DecodeError::PieceListRange { .. })));
        // More hashes than a frame may carry (the frame itself is under MAX_FRAME_LEN_BYTES).
        let mut many = be(&[u32::MAX, 0]);
        many.resize(many.len() + 20 * (MAX_PIECE_LIST_HASHES_PER_FRAME + 1), 0);
        assert!(many.len() < MAX_FRAME_LEN_BYTES);
        assert!(matches!(
            decode(&frame(T_PIECE_LIST, &many)),
            Err(DecodeError::FieldTooLong { what: "piece list", .. })
        ));
        // The largest allowed answer decodes.
        let mut full = be(&[u32::MAX, 0]);
        full.resize(full.len() + 20 * MAX_PIECE_LIST_HASHES_PER_FRAME, 7);
        let (m, used) = decode(&frame(T_PIECE_LIST, &full)).unwrap().unwrap();
        assert_eq!(used, full.len() + 5);
        assert!(matches!(m, Message::PieceList { hashes, .. } if hashes.len() == MAX_PIECE_LIST_HASHES_PER_FRAME));
    }

    #[test]
    fn piece_header_matches_encode() {
        let data = vec![5u8; 77];
        let mut a = Vec::new();
        encode(&Message::Piece { piece: 4, data: data.clone() }, &mut a);
        let mut b = Vec::new();
        encode_piece_header(4, data.len(), &mut b);
        b.extend_from_slice(&data);
        assert_eq!(a, b);
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let name = "[a-z0-9_.-]{0,64}";
        prop_oneof![
            (
                any::<u16>(),
                any::<[u8; 20]>(),
                name,
                name,
                any::<[u8; 16]>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(protocol_version, file_sha1, group, user, peer_id, ticket)| {
                    Message::Handshake { protocol_version, file_sha1, group, user, peer_id, ticket }
                }),
            (0u32..200).prop_flat_map(|n| {
                proptest::collection::vec(any::<bool>(), n as usize).prop_map(move |have| {
                    let mut bits = vec![0u8; (n as usize).div_ceil(8)];
                    for (i, h) in have.iter().enumerate() {
                        if *h {
                            bits[i / 8] |= 0x80 >> (i % 8);
                        }
                    }
                    Message::Bitfield { num_pieces: n, bits }
                })
            }),
            any::<u32>().prop_map(|piece| Message::Have { piece }),
            any::<u32>().prop_map(|piece| Message::Request { piece }),
            any::<u32>().prop_map(|piece| Message::Cancel { piece }),
            (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..2048))
                .prop_map(|(piece, data)| Message::Piece { piece, data }),
            any::<u32>().prop_map(|piece| Message::Reject { piece }),
            Just(Message::KeepAlive),
            proptest::collection::vec(any::<u8>(), 0..=MAX_TICKET_BYTES).prop_map(|ticket| Message::Ticket { ticket }),
            (any::<u16>(), ".{0,100}").prop_map(|(code, message)| Message::Error { code, message }),
            (any::<u32>(), 1..=MAX_PIECE_LIST_HASHES_PER_FRAME as u32)
                .prop_map(|(start, count)| Message::PieceListRequest { start, count }),
            (proptest::collection::vec(any::<[u8; 20]>(), 0..300), any::<u32>(), any::<u32>()).prop_map(
                |(hashes, start, extra)| {
                    // Any range that fits: num_pieces at least start + count.
                    let count = hashes.len() as u32;
                    let start = start % (u32::MAX - count - 1000);
                    let num_pieces = start + count + extra % 1000;
                    Message::PieceList { num_pieces, start, hashes }
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn random_messages_round_trip(m in arb_message()) {
            let mut buf = Vec::new();
            encode(&m, &mut buf);
            prop_assert_eq!(decode(&buf).unwrap(), Some((m, buf.len())));
        }

        /// Any body under a piece-list type byte either fails to decode or decodes to a message
        /// that encodes back to exactly that frame (one encoding per message).
        #[test]
        fn piece_list_frames_are_canonical(
            kind in prop_oneof![Just(T_PIECE_LIST_REQUEST), Just(T_PIECE_LIST)],
            head in proptest::collection::vec(any::<u8>(), 0..12),
            hashes in 0usize..4,
            fill in any::<u8>(),
        ) {
            let mut body = head;
            body.resize(body.len() + 20 * hashes, fill);
            let mut buf = ((body.len() + 1) as u32).to_be_bytes().to_vec();
            buf.push(kind);
            buf.extend_from_slice(&body);
            if let Ok(Some((m, used))) = decode(&buf) {
                prop_assert_eq!(used, buf.len());
                let mut again = Vec::new();
                encode(&m, &mut again);
                prop_assert_eq!(again, buf);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }
}
