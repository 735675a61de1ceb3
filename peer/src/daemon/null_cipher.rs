//! **For measuring only, never shipped**: the piece channel with AES-GCM replaced by a copy.
//!
//! Built only with `--features null-cipher-for-bench`, so that the download benchmark can tell
//! what the encryption itself costs (docs/BENCH.md, "What moved the figures": "The encrypted channel, on downloads"): everything else
//! stays as shipped (the TLS 1.3 handshake, both keys proven, the records and their copies,
//! tickets), only the record protection is the identity with a zero tag. Records are *not*
//! confidential and *not* authenticated. A daemon built this way says so at start, and cannot
//! talk to a normal build: the handshake's own records fail to decrypt on the other side.

use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundOpaqueMessage,
    OutboundPlainMessage, PrefixedPayload, Tls13AeadAlgorithm, UnsupportedOperationError,
};
use rustls::{ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion, SupportedCipherSuite, Tls13CipherSuite};

/// Bytes of the (zero) tag after each record, as AES-GCM's, so records keep their sizes.
const TAG_BYTES: usize = 16;

struct NullAead;

struct Copy;

impl MessageEncrypter for Copy {
    fn encrypt(&mut self, msg: OutboundPlainMessage<'_>, _seq: u64) -> Result<OutboundOpaqueMessage, Error> {
        let mut payload = PrefixedPayload::with_capacity(self.encrypted_payload_len(msg.payload.len()));
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        payload.extend_from_slice(&[0u8; TAG_BYTES]);
        Ok(OutboundOpaqueMessage::new(ContentType::ApplicationData, ProtocolVersion::TLSv1_2, payload))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + TAG_BYTES
    }
}

impl MessageDecrypter for Copy {
    fn decrypt<'a>(&mut self, mut msg: InboundOpaqueMessage<'a>, _seq: u64) -> Result<InboundPlainMessage<'a>, Error> {
        let len = msg.payload.len();
        if len < TAG_BYTES || msg.payload[len - TAG_BYTES..] != [0u8; TAG_BYTES] {
            return Err(Error::DecryptError);
        }
        msg.payload.truncate(len - TAG_BYTES);
        msg.into_tls13_unpadded_message()
    }
}

impl Tls13AeadAlgorithm for NullAead {
    fn encrypter(&self, _key: AeadKey, _iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Copy)
    }

    fn decrypter(&self, _key: AeadKey, _iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Copy)
    }

    fn key_len(&self) -> usize {
        16
    }

    fn extract_keys(&self, _key: AeadKey, _iv: Iv) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Err(UnsupportedOperationError)
    }
}

/// TLS13_AES_128_GCM_SHA256 as ring provides it, with [`NullAead`] for its record protection.
pub fn suite() -> SupportedCipherSuite {
    let SupportedCipherSuite::Tls13(base) = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 else {
        unreachable!("a TLS 1.3 suite")
    };
    let suite = Tls13CipherSuite {
        common: rustls::CipherSuiteCommon {
            suite: base.common.suite,
            hash_provider: base.common.hash_provider,
            confidentiality_limit: base.common.confidentiality_limit,
        },
        hkdf_provider: base.hkdf_provider,
        aead_alg: &NullAead,
        quic: None,
    };
    SupportedCipherSuite::Tls13(Box::leak(Box::new(suite)))
}
