//! The Raft RPC wire format: MessagePack bodies (compact, self-describing, so openraft's
//! serde types round-trip without hand-written codecs), log entries pre-encoded one by one
//! so that a batch can be cut at a byte bound, and snapshot chunks as raw bytes.
//!
//! Pure functions over bytes: no sockets, tested below.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest};
use openraft::{LogId, Vote};
use raft_store::{Entry, NodeId, SnapshotMeta, TypeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Content type of every Raft RPC body, request and response.
pub const CONTENT_TYPE: &str = "application/msgpack";

/// Most bytes of entries one append RPC carries. openraft 0.9 gives every append RPC the
/// heartbeat interval as its time limit (replication/mod.rs), so the payload must follow the
/// time limit: 256 KiB crosses a 1 Gbit/s link in 2 ms and loopback in well under 1 ms,
/// leaving the follower most of a 20 ms heartbeat for its fsync. One entry is always sent,
/// whatever its size (API bodies bound an entry to a few KiB).
pub const MAX_APPEND_BATCH_BYTES: usize = 256 * 1024;

/// Largest Raft RPC body a node accepts: a full append batch, or one snapshot chunk
/// (`SNAPSHOT_CHUNK_BYTES`), with room for the envelope.
pub const MAX_RAFT_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Size of one snapshot chunk on the wire.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot encode a raft message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("malformed raft message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

/// An append RPC on the wire: openraft's request with each entry already encoded.
#[derive(Serialize, Deserialize)]
pub struct AppendWire {
    pub vote: Vote<NodeId>,
    pub prev_log_id: Option<LogId<NodeId>>,
    pub leader_commit: Option<LogId<NodeId>>,
    pub entries: Vec<serde_bytes::ByteBuf>,
}

/// What the client sends for one append: the body, and the last log id it carries when the
/// batch was cut short (the caller then reports a partial success up to it).
pub struct EncodedAppend {
    pub body: Vec<u8>,
    pub entries_sent: usize,
    pub cut_at: Option<LogId<NodeId>>,
}

/// Encodes as many leading entries of `req` as fit in `max_bytes` (at least one).
pub fn encode_append(req: &AppendEntriesRequest<TypeConfig>, max_bytes: usize) -> Result<EncodedAppend, WireError> {
    let mut entries = Vec::with_capacity(req.entries.len());
    let mut total = 0usize;
    for e in &req.entries {
        let bytes = encode(e)?;
        // Each entry travels as a binary blob: its bytes plus a header of at most 5 bytes.
        let cost = bytes.len() + 5;
        if !entries.is_empty() && total + cost > max_bytes {
            break;
        }
        total += cost;
        entries.push(serde_bytes::ByteBuf::from(bytes));
    }
    let entries_sent = entries.len();
    let cut_at = (entries_sent < req.entries.len()).then(|| req.entries[entries_sent - 1].log_id);
    let wire = AppendWire { vote: req.vote, prev_log_id: req.prev_log_id, leader_commit: req.leader_commit, entries };
    Ok(EncodedAppend { body: encode(&wire)?, entries_sent, cut_at })
}

pub fn decode_append(bytes: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, WireError> {
    let wire: AppendWire = decode(bytes)?;
    let entries = wire.entries.iter().map(|b| decode::<Entry>(b)).collect::<Result<Vec<_>, _>>()?;
    Ok(AppendEntriesRequest {
        vote: wire.vote,
        prev_log_id: wire.prev_log_id,
        leader_commit: wire.leader_commit,
        entries,
    })
}

/// One snapshot chunk on the wire, its bytes as one binary blob.
#[derive(Serialize, Deserialize)]
pub struct SnapshotWire {
    pub vote: Vote<NodeId>,
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub data: serde_bytes::ByteBuf,
    pub done: bool,
}

pub fn encode_snapshot(req: InstallSnapshotRequest<TypeConfig>) -> Result<Vec<u8>, WireError> {
    encode(&SnapshotWire {
        vote: req.vote,
        meta: req.meta,
        offset: req.offset,
        data: serde_bytes::ByteBuf::from(req.data),
        done: req.done,
    })
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, WireError> {
    let w: SnapshotWire = decode(bytes)?;
    Ok(InstallSnapshotRequest { vote: w.vote, meta: w.meta, offset: w.offset, data: w.data.into_vec(), done: w.done })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use raft_store::{Command, FileMeta, Request, Sha1Digest};

    fn entry(index: u64, name_len: usize) -> Entry {
        let file = FileMeta {
            name: "n".repeat(name_len),
            size: 1 << 30,
            piece_len: 512 * 1024,
            piece_list_sha1: Sha1Digest([1; 20]),
            sha1: Sha1Digest([2; 20]),
        };
        let command = Command::UploadFile {
            token_hash: "ab".repeat(32),
            group: "g".into(),
            file,
            peer_addr: "10.0.0.1:7000".into(),
            peer_key: "cd".repeat(32),
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
            payload: EntryPayload::Normal(Request { request_id: Some("k".into()), now_ms: 42, command }),
        }
    }

    fn request(n: u64, name_len: usize) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 0)),
            leader_commit: None,
            entries: (1..=n).map(|i| entry(i, name_len)).collect(),
        }
    }

    #[test]
    fn append_round_trips() {
        let req = request(5, 200);
        let enc = encode_append(&req, MAX_APPEND_BATCH_BYTES).unwrap();
        assert_eq!(enc.entries_sent, 5);
        assert!(enc.cut_at.is_none());
        let back = decode_append(&enc.body).unwrap();
        assert_eq!(back.entries, req.entries);
        assert_eq!(back.vote, req.vote);
        assert_eq!(back.prev_log_id, req.prev_log_id);
    }

    #[test]
    fn a_batch_is_cut_at_the_byte_bound_and_says_where() {
        let req = request(1000, 255);
        let enc = encode_append(&req, 64 * 1024).unwrap();
        assert!(enc.entries_sent > 1 && enc.entries_sent < 1000, "{}", enc.entries_sent);
        assert!(enc.body.len() <= 64 * 1024 + 256, "{}", enc.body.len());
        assert_eq!(enc.cut_at, Some(req.entries[enc.entries_sent - 1].log_id));
        assert_eq!(decode_append(&enc.body).unwrap().entries.len(), enc.entries_sent);
    }

    #[test]
    fn one_entry_is_always_sent_even_over_the_bound() {
        let req = request(3, 255);
        let enc = encode_append(&req, 10).unwrap();
        assert_eq!(enc.entries_sent, 1);
        assert_eq!(enc.cut_at, Some(req.entries[0].log_id));
    }

    #[test]
    fn an_entry_is_compact() {
        // The whole upload of a 1 GiB file: no piece hashes, binary framing (with the uploader's
        // 64-hex peer key, ~440 bytes).
        let bytes = encode(&entry(1, 12)).unwrap();
        assert!(bytes.len() < 512, "{} bytes", bytes.len());
    }

    #[test]
    fn snapshot_chunk_round_trips_as_raw_bytes() {
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            meta: SnapshotMeta::default(),
            offset: 7,
            data: vec![0xff; 100_000],
            done: true,
        };
        let bytes = encode_snapshot(req.clone()).unwrap();
        assert!(bytes.len() < 100_200, "{}", bytes.len());
        assert_eq!(decode_snapshot(&bytes).unwrap(), req);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"\xc1", b"\x92\x01", &[0x80u8; 3][..]] {
            assert!(decode_append(bad).is_err());
            assert!(decode_snapshot(bad).is_err());
        }
    }

    /// Bounded-time fuzzing of what the Raft port decodes from a peer (`testkit::fuzz`,
    /// `FUZZ_SECONDS`): mutated appends, snapshot chunks and votes never panic, and what decodes
    /// re-encodes to the same message.
    #[test]
    fn fuzzed_raft_bodies_never_panic_and_what_decodes_round_trips() {
        use openraft::raft::VoteRequest;
        use testkit::fuzz::{budget, mutate, seed_rng};
        let mut seeds: Vec<Vec<u8>> = [request(3, 20), request(1, 255), request(0, 0)]
            .iter()
            .map(|r| encode_append(r, MAX_APPEND_BATCH_BYTES).unwrap().body)
            .collect();
        let chunk = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            meta: SnapshotMeta::default(),
            offset: 1 << 20,
            data: vec![7; 64],
            done: false,
        };
        seeds.push(encode_snapshot(chunk).unwrap());
        let vote = VoteRequest::<NodeId>::new(Vote::new(4, 2), Some(LogId::new(CommittedLeaderId::new(3, 1), 9)));
        seeds.push(encode(&vote).unwrap());
        let mut rng = seed_rng();
        let start = std::time::Instant::now();
        let (mut rounds, mut accepted) = (0u64, 0u64);
        while start.elapsed() < budget() {
            let input = mutate(&mut rng, &seeds, MAX_RAFT_BODY_BYTES as u32);
            rounds += 1;
            if let Ok(req) = decode_append(&input) {
                accepted += 1;
                let again = encode_append(&req, usize::MAX).unwrap();
                let back = decode_append(&again.body).unwrap();
                assert_eq!(
                    (back.vote, back.prev_log_id, back.leader_commit, &back.entries),
                    (req.vote, req.prev_log_id, req.leader_commit, &req.entries)
                );
            }
            if let Ok(chunk) = decode_snapshot(&input) {
                accepted += 1;
                assert_eq!(decode_snapshot(&encode_snapshot(chunk.clone()).unwrap()).unwrap(), chunk);
            }
            if let Ok(v) = decode::<VoteRequest<NodeId>>(&input) {
                accepted += 1;
                assert_eq!(decode::<VoteRequest<NodeId>>(&encode(&v).unwrap()).unwrap(), v);
            }
        }
        println!("{rounds} raft bodies, {accepted} accepted");
        assert!(rounds > 1000 && accepted > 0, "the fuzzer ran ({rounds} inputs, {accepted} accepted)");
    }
}
