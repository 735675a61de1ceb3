//! Making the cluster's certificates (rcgen): the CA, and one certificate and key per node, in a
//! folder of this user only (0700, keys 0600), written atomically under an exclusive lock on the
//! folder, so that nodes started at the same moment from one cluster file create one CA and all
//! use it. Used on a node's first start when the cluster file names no certificate
//! ([`ensure_generated`]), and by `tracker-node certs` ([`make_certs`]). The same folder holds
//! the cluster's ticket signing key (`ticket.key`, Ed25519 PKCS#8 PEM, 0600), made the same
//! way: one per cluster, shared by every node.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use proto::cluster::{
    node_cert_file_name, node_key_file_name, ClusterConfig, NodeTlsFiles, OPERATOR_CERT_FILE, OPERATOR_KEY_FILE,
    OPERATOR_TLS_NAME, TICKET_KEY_FILE,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use super::node_name;

/// The CA's subject. Fixed, so that the CA can be rebuilt from its key alone to sign a
/// certificate for a node listed later (a certificate's issuer is the CA's subject and key).
pub const CA_COMMON_NAME: &str = "tracker cluster CA";
/// How long certificates are valid. Long, because an expired certificate stops the cluster
/// (docs/OPERATIONS.md says how to rotate them before that).
pub const VALIDITY_DAYS: i64 = 3650;
/// Certificates start being valid this long before they are made, for clocks that differ.
const BACKDATE_DAYS: i64 = 1;
/// How long a node waits for another process to finish creating the files.
const LOCK_WAIT_MS: u64 = 30_000;
const LOCK_POLL_MS: u64 = 20;
/// The lock file in the certificate folder.
pub const LOCK_FILE: &str = ".lock";

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";

/// The cluster CA: its certificate as written, and what signs with it.
pub struct Ca {
    pub pem: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    p.distinguished_name = dn;
    // Signs node certificates only: no intermediate CAs under it.
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut p);
    Ok(p)
}

fn set_validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(BACKDATE_DAYS);
    p.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

impl Ca {
    /// A new CA with a new key (ECDSA P-256).
    pub fn generate() -> anyhow::Result<(Ca, String)> {
        let key = KeyPair::generate().context("cannot generate the CA key")?;
        let cert = ca_params()?.self_signed(&key).context("cannot make the CA certificate")?;
        let key_pem = key.serialize_pem();
        Ok((Ca { pem: cert.pem(), cert, key }, key_pem))
    }

    /// The CA of `ca_pem` (as written by [`Ca::generate`]) with its key. Checks that the key
    /// signs certificates that `ca_pem` vouches for, so a CA made by another tool is refused
    /// here instead of producing certificates nobody accepts.
    pub fn load(ca_pem: &str, key_pem: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::from_pem(key_pem).context("the CA key is not a PEM private key")?;
        let cert = ca_params()?.self_signed(&key).context("cannot rebuild the CA from its key")?;
        let ca = Ca { pem: ca_pem.to_string(), cert, key };
        let roots = super::ca_roots(ca_pem.as_bytes()).map_err(|e| anyhow::anyhow!("the CA certificate {e}"))?;
        let (probe, _) = ca.node_cert(0)?;
        let probe = rustls::pki_types::CertificateDer::from(probe.der().to_vec());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), super::provider()).build()?;
        verifier.verify_client_cert(&probe, &[], rustls::pki_types::UnixTime::now()).map_err(|_| {
            anyhow::anyhow!("the CA key does not belong to the CA certificate (or the CA was not made by tracker-node)")
        })?;
        Ok(ca)
    }

    /// A certificate and key for node `id`: its one name `node-<id>.tracker.invalid`, usable as
    /// a TLS server and client.
    fn node_cert(&self, id: u64) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
        let key = KeyPair::generate().context("cannot generate a node key")?;
        let mut p = CertificateParams::new(vec![node_name(id)])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("tracker node {id}"));
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        set_validity(&mut p);
        let cert = p.signed_by(&key, &self.cert, &self.key).context("cannot sign a node certificate")?;
        Ok((cert, key))
    }

    /// The operator's certificate and key, as PEM: the one name `operator.tracker.invalid`,
    /// usable as a TLS client only (it opens the admin calls; it cannot serve as a node).
    pub fn operator_pem(&self) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate().context("cannot generate the operator key")?;
        let mut p = CertificateParams::new(vec![OPERATOR_TLS_NAME.to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "tracker cluster operator");
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        set_validity(&mut p);
        let cert = p.signed_by(&key, &self.cert, &self.key).context("cannot sign the operator certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Node `id`'s certificate and key, as PEM.
    pub fn node_pem(&self, id: u64) -> anyhow::Result<(String, String)> {
        let (cert, key) = self.node_cert(id)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Creates `dir` (0700) if needed; refuses one that other users can write to, or that belongs
/// to someone else (they could put their own CA in it).
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the certificate folder {}", dir.display()))?;
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    // SAFETY: geteuid(2) has no failure mode and no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "the certificate folder {} belongs to another user (uid {}); it must be this user's (uid {me})",
            dir.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        bail!(
            "other users can write to the certificate folder {} (mode {mode:04o}); fix with: chmod 700 {}",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// An exclusive lock on a certificate folder, held until dropped (or the process dies: the
/// kernel drops an flock with the file).
pub struct DirLock(#[allow(dead_code)] File);

impl DirLock {
    /// Waits (bounded) for the folder's lock.
    pub fn acquire(dir: &Path) -> anyhow::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        let deadline = Instant::now() + Duration::from_millis(LOCK_WAIT_MS);
        loop {
            // SAFETY: flock(2) on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(DirLock(file));
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
            if Instant::now() >= deadline {
                bail!(
                    "another process has held {} for {} s; is a `tracker-node certs` or a node stuck?",
                    path.display(),
                    LOCK_WAIT_MS / 1000
                );
            }
            std::thread::sleep(Duration::from_millis(LOCK_POLL_MS));
        }
    }
}

/// Writes `contents` to `path` atomically (a temporary file in the same folder, fsynced, then
/// renamed), with `mode`.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The CA in `dir`, created when the folder has neither `ca.pem` nor `ca.key`. `None` when
/// `ca.pem` is there without its key (the operator kept the key elsewhere: nothing can be
/// signed here). Adds what it created to `created`. Call with the folder locked.
fn ca_in(dir: &Path, created: &mut Vec<PathBuf>) -> anyhow::Result<Option<Ca>> {
    let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => {
            let (ca, key_pem) = Ca::generate()?;
            // The key first: a crash between the two leaves a key, from which the certificate
            // is made again below on the next start.
            write_file(&key_path, &key_pem, 0o600)?;
            write_file(&cert_path, &ca.pem, 0o644)?;
            created.extend([key_path, cert_path]);
            Ok(Some(ca))
        }
        (false, true) => {
            let key_pem =
                std::fs::read_to_string(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
            let key = KeyPair::from_pem(&key_pem)
                .with_context(|| format!("{} is not a PEM private key", key_path.display()))?;
            let pem = ca_params()?.self_signed(&key)?.pem();
            write_file(&cert_path, &pem, 0o644)?;
            created.push(cert_path);
            Ok(Some(Ca::load(&pem, &key_pem)?))
        }
        (true, false) => Ok(None),
        (true, true) => {
            let pem =
                std::fs::read_to_string(&cert_path).with_context(|| format!("cannot read {}", cert_path.display()))?;
            let key_pem =
                std::fs::read_to_string(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
            Ca::load(&pem, &key_pem).with_context(|| format!("the CA in {}", dir.display())).map(Some)
        }
    }
}

/// The PEM label of a PKCS#8 private key.
const PKCS8_PEM_LABEL: &str = "PRIVATE KEY";

/// A new ticket signing key as PKCS#8 PEM.
pub fn ticket_key_pem() -> String {
    pem::encode(&pem::Pem::new(PKCS8_PEM_LABEL, proto::ticket::TicketSigner::generate_pkcs8()))
}

/// Writes the cluster's ticket key into `dir` unless it is there. Call with the folder locked.
fn ticket_key_in(dir: &Path, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let path = dir.join(TICKET_KEY_FILE);
    if path.exists() {
        return Ok(());
    }
    write_file(&path, &ticket_key_pem(), 0o600)?;
    created.push(path);
    Ok(())
}

/// Writes the operator's pair into `dir` unless both files are there and a CA key is at hand.
fn operator_pair_in(dir: &Path, ca: Option<&Ca>, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let (cert_path, key_path) = (dir.join(OPERATOR_CERT_FILE), dir.join(OPERATOR_KEY_FILE));
    if cert_path.exists() && key_path.exists() {
        return Ok(());
    }
    let Some(ca) = ca else { return Ok(()) };
    let (cert_pem, key_pem) = ca.operator_pem()?;
    write_file(&key_path, &key_pem, 0o600)?;
    write_file(&cert_path, &cert_pem, 0o644)?;
    created.extend([key_path, cert_path]);
    Ok(())
}

/// Writes node `id`'s pair into `dir` unless both files are there.
fn node_pair_in(dir: &Path, ca: Option<&Ca>, id: u64, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let (cert_path, key_path) = (dir.join(node_cert_file_name(id)), dir.join(node_key_file_name(id)));
    if cert_path.exists() && key_path.exists() {
        return Ok(());
    }
    let Some(ca) = ca else {
        bail!(
            "{} has no certificate for node {id}, and no {CA_KEY_FILE} to make one: run `tracker-node certs` where the CA key is \
             and copy {} and {} here",
            dir.display(),
            node_cert_file_name(id),
            node_key_file_name(id)
        );
    };
    let (cert_pem, key_pem) = ca.node_pem(id)?;
    write_file(&key_path, &key_pem, 0o600)?;
    write_file(&cert_path, &cert_pem, 0o644)?;
    created.extend([key_path, cert_path]);
    Ok(())
}

/// For a cluster file that names no certificate: makes sure the generated folder has the CA
/// and node `id`'s pair, creating what is missing. Whichever node gets the folder's lock first
/// creates the CA; the others wait for it and use it. Returns the files it created.
pub fn ensure_generated(cfg: &ClusterConfig, files: &NodeTlsFiles, id: u64) -> anyhow::Result<Vec<PathBuf>> {
    let dir = files.ca.path.parent().unwrap_or_else(|| Path::new(".")).to_path_buf();
    let ticket_key = dir.join(TICKET_KEY_FILE);
    // Fast path, no lock: everything is there (every start after the first).
    let operator = dir.join(OPERATOR_KEY_FILE);
    let all_there = [&files.ca.path, &files.cert.path, &files.key.path, &ticket_key, &operator];
    if all_there.iter().all(|p| p.exists()) {
        ensure_private_dir(&dir)?;
        return Ok(Vec::new());
    }
    ensure_private_dir(&dir)?;
    let _lock = DirLock::acquire(&dir)?;
    let mut created = Vec::new();
    let ca =
        ca_in(&dir, &mut created).with_context(|| format!("cannot set up the cluster CA of {}", cfg.path.display()))?;
    node_pair_in(&dir, ca.as_ref(), id, &mut created)?;
    // Also for a folder made before the operator certificate existed.
    operator_pair_in(&dir, ca.as_ref(), &mut created)?;
    // Also for a folder made before tickets existed: the first node started after the upgrade
    // makes the key, under the lock, and the others use it.
    ticket_key_in(&dir, &mut created)?;
    Ok(created)
}

/// `tracker-node certs`: the CA (kept if `out` has one), a pair for every listed node that
/// has none in `out`, and the ticket key (kept if there). Returns the files it created, in order.
pub fn make_certs(cfg: &ClusterConfig, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    ensure_private_dir(out)?;
    let _lock = DirLock::acquire(out)?;
    let mut created = Vec::new();
    let ca = ca_in(out, &mut created)?;
    if ca.is_none() {
        bail!(
            "{} has {CA_CERT_FILE} but not {CA_KEY_FILE}: node certificates cannot be signed without the CA key \
             (run this where the key is, or move the folder away to make a new CA)",
            out.display()
        );
    }
    for n in &cfg.nodes {
        node_pair_in(out, ca.as_ref(), n.id, &mut created)?;
    }
    operator_pair_in(out, ca.as_ref(), &mut created)?;
    ticket_key_in(out, &mut created)?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_rebuilt_from_its_key_signs_certificates_its_pem_vouches_for() {
        let (ca, key_pem) = Ca::generate().unwrap();
        let again = Ca::load(&ca.pem, &key_pem).unwrap();
        let (cert_pem, _) = again.node_pem(4).unwrap();
        let roots = crate::tls::ca_roots(ca.pem.as_bytes()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), crate::tls::provider())
                .build()
                .unwrap();
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        verifier.verify_client_cert(&der, &[], rustls::pki_types::UnixTime::now()).unwrap();
        // Another CA's key does not pass for this CA.
        let (_, other_key) = Ca::generate().unwrap();
        assert!(Ca::load(&ca.pem, &other_key).is_err());
    }

    #[test]
    fn concurrent_creators_agree_on_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let handles: Vec<_> = (1..=4u64)
            .map(|id| {
                let tls = tls.clone();
                std::thread::spawn(move || {
                    ensure_private_dir(&tls).unwrap();
                    let _lock = DirLock::acquire(&tls).unwrap();
                    let mut created = Vec::new();
                    let ca = ca_in(&tls, &mut created).unwrap();
                    node_pair_in(&tls, ca.as_ref(), id, &mut created).unwrap();
                    ticket_key_in(&tls, &mut created).unwrap();
                    created
                })
            })
            .collect();
        let created: Vec<Vec<PathBuf>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ca_creators = created.iter().filter(|c| c.contains(&tls.join(CA_CERT_FILE))).count();
        assert_eq!(ca_creators, 1, "{created:?}");
        let key_creators = created.iter().filter(|c| c.contains(&tls.join(TICKET_KEY_FILE))).count();
        assert_eq!(key_creators, 1, "one ticket key for the cluster: {created:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tls.join(TICKET_KEY_FILE)), 0o600);
        assert_eq!(mode(&tls), 0o700);
        assert_eq!(mode(&tls.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&tls.join("node-3.key")), 0o600);
        assert!(tls.join("node-4.pem").exists());
        assert!(!tls.join(OPERATOR_KEY_FILE).exists(), "only ensure_generated and certs make it");
        // The key file loads as the nodes load it.
        let files = proto::cluster::TlsFile { path: tls.join(TICKET_KEY_FILE), line: None, key: "ticket_key" };
        let cfg = proto::cluster::ClusterConfig::parse(
            "[[node]]\nid = 1\napi = \"127.0.0.1:1\"\nraft = \"127.0.0.1:2\"\ndata_dir = \"d\"\n",
            &dir.path().join("cluster.toml"),
        )
        .unwrap();
        super::super::load_ticket_signer(&cfg, &files).unwrap();
    }

    #[test]
    fn a_folder_others_can_write_to_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&tls).unwrap_err().to_string();
        assert!(err.contains("chmod 700"), "{err}");
    }
}
