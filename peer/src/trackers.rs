//! Where the tracker cluster is and how to reach it: its nodes' API addresses, and the cluster
//! CA to pin when speaking HTTPS to them.
//!
//! The peer speaks HTTPS with the cluster file's CA pinned as soon as the CA is there (the nodes
//! create it beside the file on their first start), to the file's nodes and to `--tracker`
//! addresses alike: a process that took a node's port while it was down cannot pass for a node,
//! learn a password, or hand out a ticket key. Without a CA, only loopback addresses are reached,
//! over plain HTTP (which the nodes serve on loopback only); any other address needs the CA.

use std::net::SocketAddr;

use proto::cluster::ClusterConfig;
use tracker_client::{RetryPolicy, TrackerClient, TrackerTls};

#[derive(Clone, Debug)]
pub struct Trackers {
    pub addrs: Vec<String>,
    /// `Some` once the cluster CA is pinned: every call goes over HTTPS.
    pub tls: Option<TrackerTls>,
}

impl Trackers {
    /// `flag`: the `--tracker` list, if given; `cluster`: the cluster file, loaded or why not.
    /// The file's CA is pinned whenever it is there, for `--tracker` addresses too.
    pub fn resolve(flag: Option<Vec<String>>, cluster: Result<ClusterConfig, String>) -> Result<Trackers, String> {
        let tls = match &cluster {
            Ok(cfg) if cfg.ca_file().path.exists() => Some(TrackerTls::from_cluster(cfg, false)?),
            _ => None,
        };
        let addrs: Vec<String> = match (flag, &cluster) {
            (Some(addrs), _) => addrs,
            (None, Ok(cfg)) => cfg.api_addrs().iter().map(|a| a.to_string()).collect(),
            (None, Err(why)) => return Err(format!("{why} (pass --cluster FILE or --tracker ADDR)")),
        };
        if addrs.is_empty() {
            return Err("no tracker addresses (pass --cluster FILE or --tracker ADDR)".into());
        }
        if tls.is_none() {
            if let Some(far) = addrs.iter().find(|a| !is_loopback(a)) {
                let why = match &cluster {
                    Ok(cfg) => format!("its CA {} is not there", cfg.ca_file().path.display()),
                    Err(why) => format!("the cluster file cannot be read: {why}"),
                };
                return Err(format!(
                    "the tracker at {far} is reached over HTTPS, checked against the cluster's CA, and {why}"
                ));
            }
        }
        Ok(Trackers { addrs, tls })
    }

    /// A client of these trackers, over HTTPS when the CA is pinned.
    pub fn client(&self, policy: RetryPolicy) -> TrackerClient {
        let client = TrackerClient::new(self.addrs.clone(), policy);
        match &self.tls {
            Some(tls) => client.with_tls(tls),
            None => client,
        }
    }
}

/// An `IP:PORT` on a loopback address; a host name is not (it may resolve anywhere).
fn is_loopback(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path, api: &str) -> ClusterConfig {
        let text = format!("[[node]]\nid = 1\napi = \"{api}\"\nraft = \"127.0.0.1:2\"\ndata_dir = \"d\"\n");
        ClusterConfig::parse(&text, &dir.join("cluster.toml")).unwrap()
    }

    #[test]
    fn plain_http_only_to_loopback_and_only_without_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        // Loopback --tracker and no file: plain.
        let t = Trackers::resolve(Some(vec!["127.0.0.1:7001".into()]), Err("none".into())).unwrap();
        assert!(t.tls.is_none());
        // A far --tracker without a readable file: refused, saying why.
        let e = Trackers::resolve(Some(vec!["10.1.2.3:7001".into()]), Err("no such file".into())).unwrap_err();
        assert!(e.contains("10.1.2.3:7001") && e.contains("no such file"), "{e}");
        // A far --tracker with a file whose CA is missing: the CA file is named.
        let e = Trackers::resolve(Some(vec!["tracker1:7001".into()]), Ok(cfg(dir.path(), "127.0.0.1:1"))).unwrap_err();
        assert!(e.contains("ca.pem"), "{e}");
        // The file on loopback before its CA exists: plain; a far node in the file: the CA is needed.
        let t = Trackers::resolve(None, Ok(cfg(dir.path(), "127.0.0.1:7001"))).unwrap();
        assert!(t.tls.is_none());
        assert_eq!(t.addrs, vec!["127.0.0.1:7001".to_string()]);
        assert!(Trackers::resolve(None, Ok(cfg(dir.path(), "10.0.0.1:7001"))).is_err());
        // Once the CA is there, it is pinned, for --tracker addresses on loopback too; a CA file
        // that is not a certificate is an error, not plain HTTP.
        std::fs::create_dir(dir.path().join("tls")).unwrap();
        std::fs::write(dir.path().join("tls/ca.pem"), "not a certificate").unwrap();
        let e = Trackers::resolve(Some(vec!["127.0.0.1:7001".into()]), Ok(cfg(dir.path(), "127.0.0.1:1"))).unwrap_err();
        assert!(e.contains("ca.pem"), "{e}");
    }
}
