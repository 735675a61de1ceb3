//! The piece channel: TLS 1.3 between two peers that each prove an Ed25519 key, Syncthing's
//! model with raw public keys (RFC 7250) instead of certificates. No CA and no names are
//! involved: who a key belongs to is the tracker's record (a sharer's key is listed with its
//! address; a downloader's key is bound into its ticket), and each side checks the other's key
//! against that record after the handshake (docs/PROTOCOL.md, "The channel").
//!
//! The handshake itself proves possession: rustls verifies the peer's signature over the
//! handshake with the key it presented. The only cipher suites offered are AES-GCM (AES-128
//! first), which ring runs on the CPU's AES instructions.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::identity::PeerIdentity;

pub type ServerStream = tokio_rustls::server::TlsStream<Buffered>;
pub type ClientStream = tokio_rustls::client::TlsStream<Buffered>;

/// The TCP stream under TLS, with reads buffered. rustls asks for at most 4 KiB per read (its
/// deframer's read size), which unbuffered meant a system call per 4 KiB of pieces; through
/// this buffer one call takes whatever the socket holds, up to [`READ_BUFFER_BYTES`]. Writes
/// pass straight through.
pub type Buffered = tokio::io::BufReader<TcpStream>;

/// Bytes one read from the socket may bring under TLS.
pub const READ_BUFFER_BYTES: usize = 256 * 1024;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The SubjectPublicKeyInfo of an Ed25519 public key: what a raw-public-key handshake carries.
pub fn spki_of(public: &[u8; 32]) -> Vec<u8> {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(public);
    der
}

/// The Ed25519 key of a SubjectPublicKeyInfo, if it is exactly one (nothing else is accepted).
pub fn key_of_spki(der: &[u8]) -> Option<[u8; 32]> {
    let key = der.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    key.try_into().ok()
}

/// The TLS side of a daemon or downloader: its key, as a server and as a client.
pub struct Channel {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("TLS handshake timed out after {0} ms")]
    Timeout(u64),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("the peer presented no Ed25519 key")]
    NoKey,
    #[error("the peer's key is {got}, the tracker lists {want}")]
    WrongKey { got: String, want: String },
}

fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    // AES-GCM only: hardware AES on any x86-64 or ARMv8 machine that runs a tracker's peers.
    p.cipher_suites = vec![
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ];
    #[cfg(feature = "null-cipher-for-bench")]
    {
        p.cipher_suites = vec![super::null_cipher::suite()];
    }
    Arc::new(p)
}

/// True in a build whose piece connections are not encrypted (`null-cipher-for-bench`, for the
/// benchmark only); the daemon says so at start.
pub const UNENCRYPTED_BENCH_BUILD: bool = cfg!(feature = "null-cipher-for-bench");

impl Channel {
    pub fn new(identity: &PeerIdentity) -> anyhow::Result<Self> {
        let provider = provider();
        let key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.pkcs8().to_vec())))
            .map_err(|e| anyhow::anyhow!("cannot use this peer's key for TLS: {e}"))?;
        let certified = Arc::new(CertifiedKey::new(vec![CertificateDer::from(spki_of(&identity.public()))], key));
        let algs = provider.signature_verification_algorithms;
        let verifier = Arc::new(AnyEd25519Key { algs });

        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(Arc::new(rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified.clone())));
        // No session tickets or resumption: every connection proves its key afresh.
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});

        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified)));
        client.resumption = rustls::client::Resumption::disabled();
        client.enable_sni = false;
        Ok(Channel { acceptor: TlsAcceptor::from(Arc::new(server)), connector: TlsConnector::from(Arc::new(client)) })
    }

    /// The server side of a handshake: the stream and the downloader's proven key.
    pub async fn accept(&self, tcp: TcpStream, timeout_ms: u64) -> Result<(ServerStream, [u8; 32]), ChannelError> {
        let tls = tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            self.acceptor.accept(Buffered::with_capacity(READ_BUFFER_BYTES, tcp)),
        )
        .await
        .map_err(|_| ChannelError::Timeout(timeout_ms))?
        .map_err(ChannelError::Handshake)?;
        let key = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| key_of_spki(c));
        Ok((tls, key.ok_or(ChannelError::NoKey)?))
    }

    /// The client side: connects over `tcp` and checks that the sharer proved `want_key`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        want_key: &[u8; 32],
        timeout_ms: u64,
    ) -> Result<ClientStream, ChannelError> {
        // The name is not checked by anyone (keys are); it only fills the protocol's field.
        let name = ServerName::try_from("peer.invalid").expect("a valid DNS name");
        let tls = tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            self.connector.connect(name, Buffered::with_capacity(READ_BUFFER_BYTES, tcp)),
        )
        .await
        .map_err(|_| ChannelError::Timeout(timeout_ms))?
        .map_err(ChannelError::Handshake)?;
        let got = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| key_of_spki(c));
        match got {
            None => Err(ChannelError::NoKey),
            Some(k) if k != *want_key => {
                Err(ChannelError::WrongKey { got: hex::encode(k), want: hex::encode(want_key) })
            }
            Some(_) => Ok(tls),
        }
    }
}

/// Accepts any Ed25519 raw public key whose holder signs the handshake; which key is wanted is
/// checked by the caller after the handshake, against the tracker's record.
#[derive(Debug)]
struct AnyEd25519Key {
    algs: WebPkiSupportedAlgorithms,
}

impl AnyEd25519Key {
    fn check(der: &[u8]) -> Result<(), rustls::Error> {
        key_of_spki(der).map(|_| ()).ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
    }
    /// A raw key stands alone: no chain.
    fn check_alone(end_entity: &[u8], intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding));
        }
        Self::check(end_entity)
    }
}

/// The signature methods rustls's server and client verifier traits both have, the same for a
/// raw Ed25519 key either way: TLS 1.3 only, Ed25519 only, raw public keys.
macro_rules! raw_key_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Self::check(cert)?;
            verify_tls13_signature_with_raw_key(message, &SubjectPublicKeyInfoDer::from(cert.as_ref()), dss, &self.algs)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
        fn requires_raw_public_keys(&self) -> bool {
            true
        }
    };
}

impl ServerCertVerifier for AnyEd25519Key {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Self::check_alone(end_entity, intermediates).map(|_| ServerCertVerified::assertion())
    }
    raw_key_signatures!();
}

impl ClientCertVerifier for AnyEd25519Key {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Self::check_alone(end_entity, intermediates).map(|_| ClientCertVerified::assertion())
    }
    raw_key_signatures!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_exact_ed25519_spki_gives_a_key() {
        let k = [7u8; 32];
        assert_eq!(key_of_spki(&spki_of(&k)), Some(k));
        let mut long = spki_of(&k);
        long.push(0);
        assert_eq!(key_of_spki(&long), None);
        assert_eq!(key_of_spki(&spki_of(&k)[..43]), None);
        let mut other_alg = spki_of(&k);
        other_alg[8] = 0x71; // Ed448's OID ends in 113
        assert_eq!(key_of_spki(&other_alg), None);
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap());
        let (a, b) = tokio::join!(a, l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    #[tokio::test]
    async fn both_sides_learn_the_others_proven_key_and_bytes_cross() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (sharer, downloader) = (PeerIdentity::ephemeral(), PeerIdentity::ephemeral());
        let (sc, dc) = (Channel::new(&sharer).unwrap(), Channel::new(&downloader).unwrap());
        let (c, s) = pair().await;
        let want = sharer.public();
        let (client, server) = tokio::join!(dc.connect(c, &want, 5_000), sc.accept(s, 5_000));
        let (mut client, (mut server, their_key)) = (client.unwrap(), server.unwrap());
        assert_eq!(their_key, downloader.public());
        client.write_all(b"hello").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        let suite = client.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    }

    #[tokio::test]
    async fn a_sharer_with_another_key_than_the_tracker_lists_is_refused() {
        let (sharer, downloader) = (PeerIdentity::ephemeral(), PeerIdentity::ephemeral());
        let (sc, dc) = (Channel::new(&sharer).unwrap(), Channel::new(&downloader).unwrap());
        let (c, s) = pair().await;
        let listed = PeerIdentity::ephemeral().public();
        let (client, _server) = tokio::join!(dc.connect(c, &listed, 5_000), sc.accept(s, 5_000));
        assert!(matches!(client, Err(ChannelError::WrongKey { .. })), "{:?}", client.err());
    }

    #[tokio::test]
    async fn a_plain_tcp_client_does_not_get_through_and_the_handshake_times_out() {
        let sc = Channel::new(&PeerIdentity::ephemeral()).unwrap();
        let (_c, s) = pair().await;
        let r = sc.accept(s, 200).await;
        assert!(matches!(r, Err(ChannelError::Timeout(200))), "{:?}", r.err());
    }
}
