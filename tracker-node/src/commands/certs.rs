//! `tracker-node certs --config FILE [--out DIR]`: the cluster CA, a certificate and key for
//! every listed node, and the cluster's ticket signing key, for a cluster on several machines. A
//! CA already in DIR is kept (so a node listed later gets a certificate of the same CA); pairs
//! and the ticket key already there are kept. Prints what it created and what goes where.

use std::path::{Path, PathBuf};

use proto::cluster::{ClusterConfig, TlsSettings, GENERATED_TLS_DIR, TICKET_KEY_FILE};

use tracker_node::tls::pki;

/// The default output folder: the named CA's folder, else `tls/` beside the cluster file.
pub fn default_out(cfg: &ClusterConfig) -> PathBuf {
    match &cfg.tls {
        TlsSettings::Named { ca, .. } => ca.parent().unwrap_or_else(|| Path::new(".")).to_path_buf(),
        TlsSettings::Generated { dir } => dir.clone(),
    }
}

/// `path` as the cluster file would name it: relative to the file's folder when it is inside it.
fn as_named(cfg: &ClusterConfig, path: &Path) -> String {
    let base = match cfg.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match abs(path).strip_prefix(abs(base)) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => abs(path).display().to_string(),
    }
}

pub fn run(cfg: &ClusterConfig, out: Option<&Path>) -> anyhow::Result<i32> {
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| default_out(cfg));
    let created = pki::make_certs(cfg, &out)?;
    for f in &created {
        println!("created {}", f.display());
    }
    if created.is_empty() {
        println!(
            "nothing to create: {} already has the CA, every listed node's certificate and key, and the ticket key",
            out.display()
        );
    }
    let ca = as_named(cfg, &out.join(pki::CA_CERT_FILE));
    let ticket_key = as_named(cfg, &out.join(TICKET_KEY_FILE));
    println!();
    println!(
        "Copy to each node's machine {}, {} (the same for every node: it signs access tickets) and that node's \
         node-<id>.pem and node-<id>.key",
        out.join(pki::CA_CERT_FILE).display(),
        out.join(TICKET_KEY_FILE).display()
    );
    println!(
        "(keys stay mode 0600). {} stays with the operator: it signs certificates for new nodes.",
        out.join(pki::CA_KEY_FILE).display()
    );
    println!(
        "Name them in {} (a node's cert and key default to node-<id>.pem and node-<id>.key beside the CA):",
        cfg.path.display()
    );
    println!();
    println!("[cluster.tls]");
    println!("ca = {}", toml::Value::String(ca));
    println!("ticket_key = {}", toml::Value::String(ticket_key));
    if out == cfg.path.parent().unwrap_or_else(|| Path::new("")).join(GENERATED_TLS_DIR) {
        println!();
        println!("(This is also where a node looks when the file names no certificate.)");
    }
    Ok(0)
}
