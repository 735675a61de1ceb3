//! HTTPS to the tracker's client API with the cluster's CA pinned.
//!
//! Every tracker node serves its API over TLS with its node certificate, which the cluster CA
//! signed for the one name `node-<id>.tracker.invalid` (tracker-node/src/tls). A client knows
//! the nodes by address only (the cluster file's `api`, a `--tracker` list, a leader redirect),
//! so it cannot ask for one node's name in particular: it accepts a certificate that chains to
//! the pinned CA and is valid for a node name it presents (checked by rustls's WebPKI verifier
//! with that name). Nothing else is trusted: no system or bundled roots. A process that took a
//! node's port while the node was down, or anything between the client and the node, has no
//! such certificate, so it never sees a password, a token, or gives out a ticket key.
//!
//! The operator's commands add a client certificate (`operator.tracker.invalid`, beside the CA):
//! the nodes accept admin calls only over TLS with that certificate.

use std::sync::Arc;

use proto::cluster::TLS_NAME_SUFFIX;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How a client reaches the tracker API over TLS: the cluster CA, and optionally the
/// certificate it shows (the operator's).
#[derive(Clone)]
pub struct TrackerTls {
    pub(crate) config: Arc<ClientConfig>,
}

impl std::fmt::Debug for TrackerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrackerTls(cluster CA pinned)")
    }
}

/// A certificate and key to present, both PEM.
pub struct Identity<'a> {
    pub cert_pem: &'a [u8],
    pub key_pem: &'a [u8],
}

impl TrackerTls {
    /// Trusts the CA certificate(s) in `ca_pem` only; presents `identity` when asked for a
    /// client certificate. `Err` says what is wrong with which part, for the caller to name its
    /// file.
    pub fn new(ca_pem: &[u8], identity: Option<Identity<'_>>) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(ca_roots(ca_pem)?);
        let inner = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| format!("the CA certificate cannot check servers: {e}"))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS 1.3 is not available: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyNodeOfTheCa { inner }));
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(id.cert_pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("the client certificate is not PEM: {e}"))?;
                if chain.is_empty() {
                    return Err("the client certificate file holds no certificate".into());
                }
                let key = PrivateKeyDer::from_pem_slice(id.key_pem)
                    .map_err(|e| format!("the client key is not a PEM private key: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("the client key does not match its certificate: {e}"))?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TrackerTls { config: Arc::new(config) })
    }
}

impl TrackerTls {
    /// A reqwest builder that speaks to the nodes with this TLS config (and nothing else:
    /// no proxies, no automatic redirects).
    pub fn reqwest_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .use_preconfigured_tls((*self.config).clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
    }

    /// Reads the cluster file's CA (`ClusterConfig::ca_file`), and with `operator` the
    /// operator's certificate and key beside it. Errors name the file.
    pub fn from_cluster(cfg: &proto::cluster::ClusterConfig, operator: bool) -> Result<Self, String> {
        let ca = cfg.ca_file();
        let read = |f: &proto::cluster::TlsFile| {
            std::fs::read(&f.path).map_err(|e| format!("cannot read the {} {}: {e}", f.key, f.path.display()))
        };
        let ca_pem = read(&ca)?;
        if !operator {
            return TrackerTls::new(&ca_pem, None).map_err(|e| format!("{}: {e}", ca.path.display()));
        }
        let (cert, key) = cfg.operator_files();
        let (cert_pem, key_pem) = (read(&cert)?, read(&key)?);
        TrackerTls::new(&ca_pem, Some(Identity { cert_pem: &cert_pem, key_pem: &key_pem }))
            .map_err(|e| format!("{} with {}: {e}", ca.path.display(), cert.path.display()))
    }
}

/// The CA certificates of a PEM file (one or more: a second CA can be trusted during a
/// rotation). The nodes parse their CA with it too (tracker-node/src/tls).
pub fn ca_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the CA file is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("the CA file holds no certificate".into());
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| format!("the CA file holds a certificate that is not a CA: {e}"))?;
    }
    Ok(roots)
}

/// Whether `name` is a tracker node's certificate name: `node-<decimal id>` + the suffix.
pub fn is_node_name(name: &str) -> bool {
    name.strip_prefix("node-")
        .and_then(|rest| rest.strip_suffix(TLS_NAME_SUFFIX))
        .is_some_and(|id| !id.is_empty() && !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Accepts a server certificate that the pinned CA signed for some tracker node's name: the
/// name is taken from the certificate, then the whole check (chain, validity, usage, the name)
/// is rustls's own with that name.
#[derive(Debug)]
struct AnyNodeOfTheCa {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyNodeOfTheCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let name = cert
            .valid_dns_names()
            .find(|n| is_node_name(n))
            .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))?;
        let name = ServerName::try_from(name.to_string())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))?;
        self.inner.verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_nothing_else() {
        assert!(is_node_name("node-1.tracker.invalid"));
        assert!(is_node_name("node-42.tracker.invalid"));
        for bad in [
            "node-.tracker.invalid",
            "node-01.tracker.invalid",
            "node-x.tracker.invalid",
            "operator.tracker.invalid",
            "node-1.tracker.invalid.example",
            "evil.node-1.tracker.invalid",
            "node-1",
        ] {
            assert!(!is_node_name(bad), "{bad}");
        }
    }

    #[test]
    fn garbage_ca_files_are_named_errors() {
        assert!(TrackerTls::new(b"", None).unwrap_err().contains("no certificate"));
        assert!(TrackerTls::new(b"not pem at all", None).is_err());
    }
}
