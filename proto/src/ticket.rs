//! Access tickets: the tracker cluster's signed word that `user`, whose peer channel key is
//! `peer_key`, may fetch the file with whole-file SHA-1 `file_sha1` in `group` until
//! `expires_at_ms`.
//!
//! The cluster shares one Ed25519 key (`ticket.key`, beside the cluster CA); any leader signs
//! tickets with it and any sharer checks them against its public half (`GET /v1/ticket-key`).
//! A ticket is short-lived ([`TICKET_LIFETIME_MS`]): a member who leaves, is removed or logs
//! out gets no new one, and the old ones run out within minutes.
//!
//! Byte layout (docs/PROTOCOL.md, "Tickets"), integers big-endian:
//!
//! ```text
//! version u8 (= 1) | group: u16 len + UTF-8 | file_sha1 [20] | user: u16 len + UTF-8
//!   | peer_key [32] | expires_at_ms u64 | signature [64]
//! ```
//!
//! The Ed25519 signature covers [`SIGNING_DOMAIN`] followed by every byte before the signature,
//! so a ticket's signature can never be mistaken for a signature over anything else.

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::names::{validate_id, MAX_ID_LEN};
use crate::piece::MAX_TICKET_BYTES;

/// The format version this code writes and reads.
pub const TICKET_VERSION: u8 = 1;
/// How long a ticket is valid after it is issued: 5 minutes.
pub const TICKET_LIFETIME_MS: u64 = 5 * 60 * 1000;
/// How far the clocks of a tracker node and a sharer may disagree.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;
/// What every ticket signature covers first (domain separation).
pub const SIGNING_DOMAIN: &[u8] = b"p2p-ticket-v1\0";
/// Length of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;
/// Placeholder peer key (64 zeros) for callers that have no peer channel key yet.
pub const NO_PEER_KEY_YET: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a ticket grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub group: String,
    pub file_sha1: [u8; 20],
    pub user: String,
    /// The Ed25519 public key of the peer channel the ticket's holder speaks on.
    pub peer_key: [u8; 32],
    /// Unix time in milliseconds after which the ticket is refused.
    pub expires_at_ms: u64,
}

/// Why a ticket (or a ticket key) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is {len} bytes; the limit is {MAX_TICKET_BYTES}")]
    TooLong { len: usize },
    #[error("the ticket is cut short ({0})")]
    Truncated(&'static str),
    #[error("the ticket has format version {0}; this peer reads version {TICKET_VERSION}")]
    Version(u8),
    #[error("the ticket's {field} is malformed: {reason}")]
    Malformed { field: &'static str, reason: String },
    #[error("the ticket has {0} bytes after its signature")]
    TrailingBytes(usize),
    #[error("the ticket's signature is not the tracker cluster's")]
    BadSignature,
    #[error("the ticket expired at {expires_at_ms} (now {now_ms}); ask the tracker for a new one")]
    Expired { expires_at_ms: u64, now_ms: u64 },
    #[error("the ticket claims to be valid until {expires_at_ms}, further ahead than any ticket is issued for (now {now_ms})")]
    TooFarAhead { expires_at_ms: u64, now_ms: u64 },
    #[error("the ticket key is not usable: {0}")]
    BadKey(String),
}

/// The cluster's signing half of the ticket key.
pub struct TicketSigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for TicketSigner {
    // Never prints the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSigner").field("public_key", &hex_lower(&self.public_key())).finish()
    }
}

impl TicketSigner {
    /// The signer of a PKCS#8 DER Ed25519 private key (v2, as [`TicketSigner::generate_pkcs8`]
    /// writes it, or v1, as `openssl genpkey -algorithm ed25519` does).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, TicketError> {
        let key = match Ed25519KeyPair::from_pkcs8(der) {
            Ok(k) => k,
            Err(_) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| TicketError::BadKey(format!("not a PKCS#8 Ed25519 private key ({e})")))?,
        };
        Ok(TicketSigner { key })
    }

    /// A new Ed25519 private key as PKCS#8 (v2) DER.
    pub fn generate_pkcs8() -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng).expect("the system's random source works").as_ref().to_vec()
    }

    /// The public key sharers check tickets against.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public_key().as_ref().try_into().expect("an Ed25519 public key is 32 bytes")
    }

    /// The ticket's bytes, signed.
    ///
    /// Panics when a name is longer than `u16::MAX` bytes (the caller passes validated names:
    /// a ticket with names over [`MAX_ID_LEN`] is refused by [`verify`] anyway).
    pub fn sign(&self, t: &Ticket) -> Vec<u8> {
        let mut out = body(t);
        let sig = self.key.sign(&signed_message(&out));
        out.extend_from_slice(sig.as_ref());
        out
    }
}

/// Every byte of the ticket before the signature.
fn body(t: &Ticket) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 + t.group.len() + 20 + 2 + t.user.len() + 32 + 8 + SIGNATURE_BYTES);
    out.push(TICKET_VERSION);
    put_str(&mut out, &t.group);
    out.extend_from_slice(&t.file_sha1);
    put_str(&mut out, &t.user);
    out.extend_from_slice(&t.peer_key);
    out.extend_from_slice(&t.expires_at_ms.to_be_bytes());
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("ticket names are at most 64 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + body.len());
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(body);
    m
}

/// Reads fields off a byte slice, never past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TicketError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or(TicketError::Truncated(what))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], TicketError> {
        Ok(self.take(N, what)?.try_into().expect("take returns N bytes"))
    }

    /// A user or group name: its length is checked before anything is copied.
    fn name(&mut self, field: &'static str) -> Result<String, TicketError> {
        let len = u16::from_be_bytes(self.array(field)?) as usize;
        if len > MAX_ID_LEN {
            return Err(TicketError::Malformed {
                field,
                reason: format!("{len} bytes long; the limit is {MAX_ID_LEN}"),
            });
        }
        let raw = self.take(len, field)?;
        let s =
            std::str::from_utf8(raw).map_err(|_| TicketError::Malformed { field, reason: "not UTF-8".to_string() })?;
        validate_id(field, s).map_err(|reason| TicketError::Malformed { field, reason })?;
        Ok(s.to_string())
    }
}

/// Checks a ticket against the cluster's public key at time `now_ms` (unix ms) and returns what
/// it grants. Refused: anything over [`MAX_TICKET_BYTES`], another version, names that are not
/// valid user/group names, bytes after the signature, a signature that is not the cluster's, an
/// expired ticket (`expires_at_ms + MAX_CLOCK_SKEW_MS <= now_ms`) and one that claims a validity
/// longer than any ticket is issued for. The caller still checks that the ticket's group, file
/// and user are the ones asked for, and that the peer key is the channel's.
pub fn verify(bytes: &[u8], cluster_key: &[u8; 32], now_ms: u64) -> Result<Ticket, TicketError> {
    if bytes.len() > MAX_TICKET_BYTES {
        return Err(TicketError::TooLong { len: bytes.len() });
    }
    let mut r = Reader { bytes, at: 0 };
    let [version] = r.array::<1>("version")?;
    if version != TICKET_VERSION {
        return Err(TicketError::Version(version));
    }
    let group = r.name("group")?;
    let file_sha1 = r.array::<20>("file_sha1")?;
    let user = r.name("user")?;
    let peer_key = r.array::<32>("peer_key")?;
    let expires_at_ms = u64::from_be_bytes(r.array::<8>("expires_at_ms")?);
    let body_len = r.at;
    let signature = r.take(SIGNATURE_BYTES, "signature")?;
    if r.at != bytes.len() {
        return Err(TicketError::TrailingBytes(bytes.len() - r.at));
    }
    UnparsedPublicKey::new(&ED25519, cluster_key)
        .verify(&signed_message(&bytes[..body_len]), signature)
        .map_err(|_| TicketError::BadSignature)?;
    if expires_at_ms.saturating_add(MAX_CLOCK_SKEW_MS) <= now_ms {
        return Err(TicketError::Expired { expires_at_ms, now_ms });
    }
    if expires_at_ms > now_ms.saturating_add(TICKET_LIFETIME_MS + MAX_CLOCK_SKEW_MS) {
        return Err(TicketError::TooFarAhead { expires_at_ms, now_ms });
    }
    Ok(Ticket { group, file_sha1, user, peer_key, expires_at_ms })
}

/// A peer key given as 64 hex characters (either case), as the API carries it.
pub fn peer_key_from_hex(s: &str) -> Result<[u8; 32], TicketError> {
    let bad = |reason: String| TicketError::Malformed { field: "peer_key", reason };
    if s.len() != 64 {
        return Err(bad(format!("a peer key is 64 hex characters, got {}", s.len())));
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16).ok_or_else(|| bad(format!("{:?} is not a hex digit", b as char)));
        out[i] = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
    }
    Ok(out)
}

/// Lowercase hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn signer() -> TicketSigner {
        TicketSigner::from_pkcs8(&TicketSigner::generate_pkcs8()).unwrap()
    }

    fn ticket() -> Ticket {
        Ticket {
            group: "dev_team".into(),
            file_sha1: [7; 20],
            user: "alice".into(),
            peer_key: [9; 32],
            expires_at_ms: NOW + TICKET_LIFETIME_MS,
        }
    }

    #[test]
    fn a_signed_ticket_round_trips_with_the_documented_layout() {
        let s = signer();
        let t = ticket();
        let bytes = s.sign(&t);
        assert_eq!(verify(&bytes, &s.public_key(), NOW), Ok(t.clone()));
        // version | 2+8 group | 20 | 2+5 user | 32 | 8 | 64
        assert_eq!(bytes.len(), 1 + 2 + 8 + 20 + 2 + 5 + 32 + 8 + 64);
        assert_eq!(bytes[0], TICKET_VERSION);
        assert_eq!(&bytes[1..3], &[0, 8]);
        assert_eq!(&bytes[3..11], b"dev_team");
        assert_eq!(&bytes[11..31], &[7; 20]);
        assert_eq!(&bytes[31..33], &[0, 5]);
        assert_eq!(&bytes[33..38], b"alice");
        assert_eq!(&bytes[38..70], &[9; 32]);
        assert_eq!(&bytes[70..78], &t.expires_at_ms.to_be_bytes());
        // The signature covers the domain prefix and the body: a plain ring verification of
        // the same bytes shows it.
        let mut msg = SIGNING_DOMAIN.to_vec();
        msg.extend_from_slice(&bytes[..78]);
        UnparsedPublicKey::new(&ED25519, s.public_key()).verify(&msg, &bytes[78..]).unwrap();
        // The largest ticket fits the bound with room to spare.
        let big = Ticket { group: "g".repeat(64), user: "u".repeat(64), ..t };
        let bytes = s.sign(&big);
        assert!(bytes.len() <= MAX_TICKET_BYTES);
        assert_eq!(verify(&bytes, &s.public_key(), NOW), Ok(big));
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let s = signer();
        let bytes = s.sign(&ticket());
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(verify(&b, &s.public_key(), NOW).is_err(), "bit {i} flipped was accepted");
        }
    }

    #[test]
    fn truncation_at_every_offset_and_trailing_bytes_are_refused() {
        let s = signer();
        let bytes = s.sign(&ticket());
        for n in 0..bytes.len() {
            let r = verify(&bytes[..n], &s.public_key(), NOW);
            assert!(matches!(r, Err(TicketError::Truncated(_))), "cut at {n}: {r:?}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(verify(&longer, &s.public_key(), NOW), Err(TicketError::TrailingBytes(1)));
    }

    #[test]
    fn another_key_or_a_key_made_from_the_ticket_is_refused() {
        let (s, other) = (signer(), signer());
        let bytes = s.sign(&ticket());
        assert_eq!(verify(&bytes, &other.public_key(), NOW), Err(TicketError::BadSignature));
        assert_eq!(verify(&bytes, &[0; 32], NOW), Err(TicketError::BadSignature));
        // The same body signed without the domain prefix does not pass.
        let body = &bytes[..bytes.len() - SIGNATURE_BYTES];
        let pkcs8 = TicketSigner::generate_pkcs8();
        let raw = Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
        let signer = TicketSigner::from_pkcs8(&pkcs8).unwrap();
        let mut forged = body.to_vec();
        forged.extend_from_slice(raw.sign(body).as_ref());
        assert_eq!(verify(&forged, &signer.public_key(), NOW), Err(TicketError::BadSignature));
    }

    #[test]
    fn expiry_and_far_future_are_refused_within_the_clock_skew() {
        let s = signer();
        let key = s.public_key();
        let at = |expires_at_ms| s.sign(&Ticket { expires_at_ms, ..ticket() });
        // Expired, but within the skew: still accepted; past the skew: refused.
        assert!(verify(&at(NOW - 1), &key, NOW).is_ok());
        assert!(verify(&at(NOW - MAX_CLOCK_SKEW_MS + 1), &key, NOW).is_ok());
        assert_eq!(
            verify(&at(NOW - MAX_CLOCK_SKEW_MS), &key, NOW),
            Err(TicketError::Expired { expires_at_ms: NOW - MAX_CLOCK_SKEW_MS, now_ms: NOW })
        );
        assert!(matches!(verify(&at(0), &key, NOW), Err(TicketError::Expired { .. })));
        // As far ahead as a fresh ticket from a clock ahead by the skew: accepted; further: refused.
        let limit = NOW + TICKET_LIFETIME_MS + MAX_CLOCK_SKEW_MS;
        assert!(verify(&at(limit), &key, NOW).is_ok());
        assert!(matches!(verify(&at(limit + 1), &key, NOW), Err(TicketError::TooFarAhead { .. })));
        assert!(matches!(verify(&at(u64::MAX), &key, NOW), Err(TicketError::TooFarAhead { .. })));
        assert!(verify(&at(u64::MAX), &key, u64::MAX - 1).is_ok());
    }

    #[test]
    fn bad_names_versions_and_lengths_are_refused_before_the_signature() {
        let s = signer();
        let key = s.public_key();
        // A name that is not a valid user name, signed by the cluster: still refused.
        let bad_user = s.sign(&Ticket { user: "a b".into(), ..ticket() });
        assert!(matches!(verify(&bad_user, &key, NOW), Err(TicketError::Malformed { field: "user", .. })));
        let long_group = s.sign(&Ticket { group: "g".repeat(65), ..ticket() });
        assert!(matches!(verify(&long_group, &key, NOW), Err(TicketError::Malformed { field: "group", .. })));
        let mut v2 = s.sign(&ticket());
        v2[0] = 2;
        assert_eq!(verify(&v2, &key, NOW), Err(TicketError::Version(2)));
        let huge = vec![TICKET_VERSION; MAX_TICKET_BYTES + 1];
        assert_eq!(verify(&huge, &key, NOW), Err(TicketError::TooLong { len: MAX_TICKET_BYTES + 1 }));
        // A declared name length far beyond the bytes there: refused without reading on.
        let claim = [TICKET_VERSION, 0xff, 0xff];
        assert!(matches!(verify(&claim, &key, NOW), Err(TicketError::Malformed { field: "group", .. })));
        assert!(verify(&[], &key, NOW).is_err());
    }

    #[test]
    fn keys_load_from_pkcs8_and_refuse_anything_else() {
        let der = TicketSigner::generate_pkcs8();
        let a = TicketSigner::from_pkcs8(&der).unwrap();
        let b = TicketSigner::from_pkcs8(&der).unwrap();
        assert_eq!(a.public_key(), b.public_key(), "one key file, one public key on every node");
        // The same key as PKCS#8 v1 (what `openssl genpkey -algorithm ed25519` writes): the
        // 32-byte seed sits at the same place in both forms.
        // v2 (ring): 16-byte header | seed [32] | `81 21 00` | public key [32].
        let seed_at = der.len() - 32 - 3 - 32;
        let mut v1 =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        v1.extend_from_slice(&der[seed_at..seed_at + 32]);
        assert_eq!(TicketSigner::from_pkcs8(&v1).unwrap().public_key(), a.public_key());
        assert!(matches!(TicketSigner::from_pkcs8(b"not a key"), Err(TicketError::BadKey(_))));
        assert!(!format!("{a:?}").contains(&hex_lower(&der)), "Debug prints no private key");
    }

    #[test]
    fn peer_keys_parse_from_hex() {
        assert_eq!(peer_key_from_hex(NO_PEER_KEY_YET), Ok([0; 32]));
        assert_eq!(peer_key_from_hex(&"Ab".repeat(32)), Ok([0xab; 32]));
        assert_eq!(hex_lower(&[0xab; 32]), "ab".repeat(32));
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65), &"é".repeat(32)] {
            assert!(peer_key_from_hex(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever bytes arrive, verify answers and does not panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600), now in 0u64..) {
            let key = [3u8; 32];
            let _ = verify(&bytes, &key, now);
        }

        /// Random bytes after a valid prefix (so the parser gets deep) never panic and never pass.
        #[test]
        fn random_tails_after_a_valid_prefix_never_pass(cut in 0usize..78, tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let s = signer();
            let mut bytes = s.sign(&ticket())[..cut].to_vec();
            bytes.extend_from_slice(&tail);
            proptest::prop_assert!(verify(&bytes, &s.public_key(), NOW).is_err());
        }
    }
}
