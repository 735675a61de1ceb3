//! Mutual TLS between tracker nodes: only a certificate of the cluster's CA that names a node
//! of the cluster speaks Raft.
//!
//! Every node has a certificate signed by the cluster CA whose one name is
//! `node-<id>.tracker.invalid` (`.invalid` is reserved: no DNS answers for it, so the name can
//! only mean "node <id> of this cluster"). The Raft server asks every client for its certificate
//! and checks it against the CA, TLS 1.3 only (`server_config`); after the handshake,
//! [`peer_identity`] reads the node id it names, which must be a node of the cluster
//! (raft_net::listener). The Raft client presents its own certificate and checks that the
//! server's was signed by the same CA and names the node it meant to reach (`client_config`;
//! its URLs use the node names, resolved to the node's address). The CA is pinned: no system
//! or bundled roots are ever trusted.
//!
//! Where the files come from is `ClusterConfig::tls` (proto): named in the cluster file, or
//! created by [`pki`] beside it on a node's first start. The cluster's ticket signing key
//! (`ClusterConfig::ticket_key_file`) lives and is checked beside them: every node loads the
//! same key, private to its user, and signs access tickets with it (proto::ticket).

pub mod pki;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use proto::cluster::{ClusterConfig, ConfigError, NodeTlsFiles, Problem, TlsFile};
use proto::ticket::TicketSigner;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

/// The DNS-style name every node certificate carries: `node-<id>` + this suffix.
pub use proto::cluster::TLS_NAME_SUFFIX as NODE_NAME_SUFFIX;

/// The name node `id`'s certificate carries, and the host name the Raft client dials it by.
pub fn node_name(id: u64) -> String {
    format!("node-{id}{NODE_NAME_SUFFIX}")
}

/// The node id in a name made by [`node_name`].
pub fn node_id_of_name(name: &str) -> Option<u64> {
    let id = name.strip_prefix("node-")?.strip_suffix(NODE_NAME_SUFFIX)?;
    // Canonical decimal only: "node-01" is not node 1.
    if id.starts_with('0') || id.starts_with('+') {
        return None;
    }
    id.parse().ok()
}

/// The crypto provider of every TLS config here (ring: lighter to build than aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What node `id` needs to speak Raft (its server and client TLS configs) and to sign access
/// tickets (the cluster's ticket key).
#[derive(Clone)]
pub struct NodeTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    /// The client API's server config: the same node certificate; a client certificate of the
    /// cluster CA is optional (the operator's, for admin calls), anything else is refused.
    pub api: Arc<ServerConfig>,
    pub ticket: Arc<TicketSigner>,
}

/// Why a node's TLS could not be set up. `Config` is the operator's to fix in the cluster file or
/// its files (exit 2); `Other` is anything else (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Creates node `id`'s files first when the cluster file names none (see [`pki::ensure_generated`]),
/// then loads and checks them: the CA parses, the key is private to this user, the certificate
/// chains to the CA, names node `id`, and matches the key; the ticket key is private to this
/// user and an Ed25519 key. A file that names its TLS files but no ticket key is refused.
pub fn for_node(cfg: &ClusterConfig, id: u64) -> Result<NodeTls, SetupError> {
    let files = cfg.tls_files(id);
    if !files.named {
        for created in pki::ensure_generated(cfg, &files, id)? {
            tracing::info!(file = %created.display(), "created TLS file");
        }
    }
    let (server, client, api) = load(cfg, &files, id)?;
    let ticket_file = cfg.ticket_key_file()?;
    let ticket = load_ticket_signer(cfg, &ticket_file)?;
    tracing::info!(
        file = %ticket_file.path.display(),
        public_key = %proto::ticket::hex_lower(&ticket.public_key()),
        "loaded the cluster's ticket key"
    );
    Ok(NodeTls { server, client, api, ticket: Arc::new(ticket) })
}

/// The cluster's ticket signer from its key file: PKCS#8 (PEM, or DER), Ed25519, readable by
/// this user only (whoever reads it can grant anyone access to any group's files).
pub fn load_ticket_signer(cfg: &ClusterConfig, f: &TlsFile) -> Result<TicketSigner, SetupError> {
    check_key_private(cfg, f)?;
    let bytes = read(cfg, f)?;
    let der = if bytes.starts_with(b"-----BEGIN") {
        rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&bytes)
            .map_err(|e| invalid(cfg, f, format!("not a PEM PKCS#8 private key: {e}")))?
            .secret_pkcs8_der()
            .to_vec()
    } else {
        bytes
    };
    TicketSigner::from_pkcs8(&der).map_err(|e| invalid(cfg, f, e))
}

fn invalid(cfg: &ClusterConfig, f: &TlsFile, reason: impl std::fmt::Display) -> SetupError {
    SetupError::Config(
        cfg.tls_error(f, Problem::TlsFileInvalid { key: f.key, path: f.path.clone(), reason: reason.to_string() }),
    )
}

fn unreadable(cfg: &ClusterConfig, f: &TlsFile, e: impl std::fmt::Display) -> SetupError {
    SetupError::Config(
        cfg.tls_error(f, Problem::TlsFileUnreadable { key: f.key, path: f.path.clone(), reason: e.to_string() }),
    )
}

/// Reads a PEM file; a missing or unreadable file is the operator's to fix.
fn read(cfg: &ClusterConfig, f: &TlsFile) -> Result<Vec<u8>, SetupError> {
    std::fs::read(&f.path).map_err(|e| unreadable(cfg, f, e))
}

/// The CA certificates of a PEM file (one or more: a second CA can be trusted during a
/// rotation); the one parser the API's clients use too.
pub use tracker_client::tls::ca_roots;

/// A private key must be readable by this user only: anyone who can read it can speak Raft as
/// this node.
fn check_key_private(cfg: &ClusterConfig, f: &TlsFile) -> Result<(), SetupError> {
    let meta = std::fs::metadata(&f.path).map_err(|e| unreadable(cfg, f, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(invalid(
            cfg,
            f,
            format!(
                "other users can read or change it (mode {mode:04o}); make it private with: chmod 600 {}",
                f.path.display()
            ),
        ));
    }
    Ok(())
}

/// Node `id`'s Raft server, Raft client and API server TLS configs, from its checked files.
type Configs = (Arc<ServerConfig>, Arc<ClientConfig>, Arc<ServerConfig>);

fn load(cfg: &ClusterConfig, files: &NodeTlsFiles, id: u64) -> Result<Configs, SetupError> {
    let provider = provider();
    let roots = Arc::new(ca_roots(&read(cfg, &files.ca)?).map_err(|e| invalid(cfg, &files.ca, e))?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cfg, &files.cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(cfg, &files.cert, format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cfg, &files.cert, "holds no certificate"));
    }
    check_key_private(cfg, &files.key)?;
    let key_pem = read(cfg, &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid(cfg, &files.key, format!("not a PEM private key: {e}")))?;

    // The node's own certificate must be one the other nodes accept: better refused here, with
    // the file named, than as handshake failures later.
    let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| invalid(cfg, &files.ca, e))?;
    let name = ServerName::try_from(node_name(id)).map_err(|e| anyhow::anyhow!("bad node name: {e}"))?;
    server_verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now()).map_err(|e| {
        invalid(
            cfg,
            &files.cert,
            format!("it is not a certificate of the CA in {} for node {id} ({e})", files.ca.path.display()),
        )
    })?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| invalid(cfg, &files.ca, e))?;
    client_verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()).map_err(|e| {
        invalid(cfg, &files.cert, format!("the other nodes would refuse it as a client certificate ({e})"))
    })?;

    // The API asks for a certificate but serves clients without one (peers, scripts); one that
    // is shown must chain to the CA, and only the operator's opens the admin calls.
    let api_client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| invalid(cfg, &files.ca, e))?;
    let mut api = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| anyhow::anyhow!("TLS 1.3 is not available: {e}"))?
        .with_client_cert_verifier(api_client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| invalid(cfg, &files.key, format!("it does not match {} ({e})", files.cert.path.display())))?;
    api.alpn_protocols = vec![b"http/1.1".to_vec()];

    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| anyhow::anyhow!("TLS 1.3 is not available: {e}"))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| invalid(cfg, &files.key, format!("it does not match {} ({e})", files.cert.path.display())))?;
    let mut server = server;
    // No session resumption: every connection shows its certificate again. Connections are
    // long-lived (pooled), so full handshakes are rare.
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];

    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| anyhow::anyhow!("TLS 1.3 is not available: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| invalid(cfg, &files.key, format!("it does not match {} ({e})", files.cert.path.display())))?;
    let mut client = client;
    client.resumption = rustls::client::Resumption::disabled();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok((Arc::new(server), Arc::new(client), Arc::new(api)))
}

/// Why a peer that completed the handshake (so its certificate chains to the cluster CA) may
/// still not speak Raft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("it presented no certificate")]
    NoCertificate,
    #[error("its certificate cannot be read: {0}")]
    Unreadable(String),
    #[error("its certificate names no node of this cluster (nodes: {0})")]
    NotANode(String),
    #[error("its certificate names several nodes ({0}); a node certificate names one")]
    SeveralNodes(String),
}

fn join(ids: impl IntoIterator<Item = u64>) -> String {
    ids.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// The node id a verified peer certificate names, out of `nodes` (the listed nodes and the
/// members). It must name exactly one of them.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>, nodes: &BTreeSet<u64>) -> Result<u64, IdentityError> {
    let cert = certs.and_then(|c| c.first()).ok_or(IdentityError::NoCertificate)?;
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| IdentityError::Unreadable(e.to_string()))?;
    let named: Vec<u64> = nodes
        .iter()
        .copied()
        .filter(|id| {
            ServerName::try_from(node_name(*id)).is_ok_and(|n| ee.verify_is_valid_for_subject_name(&n).is_ok())
        })
        .collect();
    match named.as_slice() {
        [id] => Ok(*id),
        [] => Err(IdentityError::NotANode(join(nodes.iter().copied()))),
        several => Err(IdentityError::SeveralNodes(join(several.iter().copied()))),
    }
}

/// Whether a verified client certificate (it chains to the cluster CA: rustls checked it in the
/// handshake) is the operator's: valid for `operator.tracker.invalid`.
pub fn is_operator(certs: Option<&[CertificateDer<'_>]>) -> bool {
    let Some(cert) = certs.and_then(|c| c.first()) else { return false };
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else { return false };
    ServerName::try_from(proto::cluster::OPERATOR_TLS_NAME)
        .is_ok_and(|n| ee.verify_is_valid_for_subject_name(&n).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_naming(names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn node_names_round_trip_and_nothing_else_parses() {
        assert_eq!(node_name(7), "node-7.tracker.invalid");
        assert_eq!(node_id_of_name(&node_name(7)), Some(7));
        for bad in [
            "node-.tracker.invalid",
            "node-01.tracker.invalid",
            "node-x.tracker.invalid",
            "node-1.tracker.example",
            "7",
            "node-+1.tracker.invalid",
        ] {
            assert_eq!(node_id_of_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn identity_is_the_one_listed_node_the_certificate_names() {
        let nodes: BTreeSet<u64> = [1, 2, 3].into();
        let one = [cert_naming(&["node-2.tracker.invalid"])];
        assert_eq!(peer_identity(Some(&one), &nodes), Ok(2));
        let unlisted = [cert_naming(&["node-9.tracker.invalid"])];
        assert_eq!(peer_identity(Some(&unlisted), &nodes), Err(IdentityError::NotANode("1, 2, 3".into())));
        let other = [cert_naming(&["node-2.example.com", "localhost"])];
        assert!(matches!(peer_identity(Some(&other), &nodes), Err(IdentityError::NotANode(_))));
        let two = [cert_naming(&["node-1.tracker.invalid", "node-3.tracker.invalid"])];
        assert_eq!(peer_identity(Some(&two), &nodes), Err(IdentityError::SeveralNodes("1, 3".into())));
        // An unlisted name beside a listed one: the listed one is who it is.
        let extra = [cert_naming(&["node-9.tracker.invalid", "node-1.tracker.invalid"])];
        assert_eq!(peer_identity(Some(&extra), &nodes), Ok(1));
        assert_eq!(peer_identity(None, &nodes), Err(IdentityError::NoCertificate));
        assert_eq!(peer_identity(Some(&[]), &nodes), Err(IdentityError::NoCertificate));
        assert!(matches!(
            peer_identity(Some(&[CertificateDer::from(vec![1, 2, 3])]), &nodes),
            Err(IdentityError::Unreadable(_))
        ));
    }
}
