//! Mutual TLS on the Raft port (docs/SECURITY.md), with real processes.
//!
//! The attack: anyone who can reach a node's raft port posts a forged append (a `login` entry
//! for alice with a token of their choice: a session without her password) or a forged vote
//! with a higher term (the leader steps down; a stream of them stops all writes). Each is sent
//! (a) over plain HTTP, (b) over TLS without a client certificate, (c) with a certificate of
//! another CA naming a listed node, (d) with a certificate of the cluster CA naming a node that
//! is not listed, to every node; all are refused, and afterwards the term and the leader are
//! the same and the forged token opens no session. Controls show that the forged bodies are
//! well-formed: with a certificate of a listed node they reach the handlers.
//!
//! Also: nodes started at once on a fresh file create one CA and elect a leader; a node listed
//! later gets a certificate of the same CA and joins; `tracker-node certs` output works when the
//! file names it, and named files that are missing or open to others stop a node with exit 2.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use raft_store::{Command as TrackerCommand, NodeId, Request, TypeConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use testkit::*;

const WAIT: Duration = Duration::from_secs(20);

fn node_name(id: u64) -> String {
    format!("node-{id}.tracker.invalid")
}

/// The append RPC body as the nodes encode it (tracker-node's raft_net::wire::AppendWire).
#[derive(Serialize)]
struct AppendWire {
    vote: Vote<NodeId>,
    prev_log_id: Option<LogId<NodeId>>,
    leader_commit: Option<LogId<NodeId>>,
    entries: Vec<serde_bytes::ByteBuf>,
}

/// A forged append and vote in the name of node `claim`, in term `term`, and the token the
/// forged `login` entry would open a session for.
struct Forged {
    append: Vec<u8>,
    vote: Vec<u8>,
    token: String,
}

fn forge(claim: u64, term: u64, after: Option<LogId<NodeId>>) -> Forged {
    let token = "ab".repeat(32);
    let token_hash = hex::encode(Sha256::digest(token.as_bytes()));
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let index = after.map_or(1, |l| l.index + 1);
    let log_id = LogId::new(CommittedLeaderId::new(term, claim), index);
    let entry = openraft::Entry::<TypeConfig> {
        log_id,
        payload: EntryPayload::Normal(Request {
            request_id: None,
            now_ms,
            command: TrackerCommand::Login { user: "alice".into(), token_hash, expires_at_ms: now_ms + 3_600_000 },
        }),
    };
    let append = AppendWire {
        vote: Vote::new_committed(term, claim),
        prev_log_id: after,
        leader_commit: Some(log_id),
        entries: vec![serde_bytes::ByteBuf::from(rmp_serde::to_vec_named(&entry).unwrap())],
    };
    let vote = openraft::raft::VoteRequest::<NodeId>::new(Vote::new(term, claim), after);
    Forged { append: rmp_serde::to_vec_named(&append).unwrap(), vote: rmp_serde::to_vec_named(&vote).unwrap(), token }
}

/// A certificate and key, PEM.
struct Identity {
    cert: String,
    key: String,
}

/// A CA with the same subject as the cluster's (the subject proves nothing; the key does).
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tracker cluster CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

/// A node certificate naming `name`, signed by the CA whose key is `ca_key`.
fn mint(ca_key: &KeyPair, name: &str) -> Identity {
    let ca = ca_params().self_signed(ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &ca, ca_key).unwrap();
    Identity { cert: cert.pem(), key: key.serialize_pem() }
}

fn cluster_ca_key(cluster: &Cluster) -> KeyPair {
    KeyPair::from_pem(&std::fs::read_to_string(cluster.dir.path().join("tls/ca.key")).unwrap()).unwrap()
}

/// What came back: an HTTP answer, or the connection failed (refused at the TLS layer).
#[derive(Debug)]
enum Outcome {
    Answered(u16, Vec<u8>),
    Failed(String),
}

/// POSTs `body` to `path` on node `target`'s raft address over TLS 1.3, checking the server
/// against the cluster CA, presenting `identity` (or no certificate).
fn post_tls(cluster: &Cluster, target: u64, identity: Option<&Identity>, path: &str, body: &[u8]) -> Outcome {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cluster.dir.path().join("tls/ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(id.cert.as_bytes()).map(Result::unwrap).collect(),
                PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let addr: std::net::SocketAddr = cluster.rafts[(target - 1) as usize].parse().unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .resolve(&node_name(target), addr)
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap();
    let url = format!("https://{}:{}{path}", node_name(target), addr.port());
    send(client.post(url).body(body.to_vec()))
}

fn send(req: reqwest::RequestBuilder) -> Outcome {
    runtime().block_on(async move {
        match req.header("content-type", "application/msgpack").send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                Outcome::Answered(status, r.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
            }
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!("; {s}"));
                    src = s.source();
                }
                Outcome::Failed(msg)
            }
        }
    })
}

fn post_plain(cluster: &Cluster, target: u64, path: &str, body: &[u8]) -> Outcome {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build().unwrap();
    send(client.post(format!("http://{}{path}", cluster.rafts[(target - 1) as usize])).body(body.to_vec()))
}

/// The last log id of the leader, as a forger who watched the cluster would guess it.
fn last_log_id(cluster: &Cluster, leader: u64, term: u64) -> Option<LogId<NodeId>> {
    let st = cluster.status(leader).unwrap();
    let index = st["last_log_index"].as_u64()?;
    Some(LogId::new(CommittedLeaderId::new(term, leader), index))
}

#[test]
fn forged_raft_messages_from_outside_the_cluster_are_refused() {
    // Alone: the leader and term must stay the same through the attacks: no other load beside it.
    let _alone = alone();
    let cluster = Cluster::start(3);
    let rt = runtime();
    // alice exists, so a forged `login alice` would be a working session if it got in.
    rt.block_on(logged_in(&cluster.client(), "alice"));
    let (leader, term) = cluster.wait_stable_leader();
    let follower = cluster.other_than(&[leader]);
    // A much higher term: an append in the name of a made-up leader, node 9, carrying
    // `login alice` with the forger's token (before mutual TLS, sent over plain HTTP to every
    // node, it gave the forger a session as alice: docs/SECURITY.md), and a vote in the name of
    // a follower, which the leader would step down for.
    let last = last_log_id(&cluster, leader, term);
    let forged = Forged { vote: forge(follower, term + 100, last).vote, ..forge(9, term + 100, last) };

    let ca_key = cluster_ca_key(&cluster);
    let other_ca = KeyPair::generate().unwrap();
    let attackers: Vec<(&str, Option<Identity>)> = vec![
        ("(b) TLS without a client certificate", None),
        ("(c) a certificate of another CA naming a listed node", Some(mint(&other_ca, &node_name(follower)))),
        ("(d) a cluster CA certificate naming an unlisted node", Some(mint(&ca_key, &node_name(9)))),
    ];
    for target in cluster.ids() {
        for (path, body) in [("/raft/append", &forged.append), ("/raft/vote", &forged.vote)] {
            match post_plain(&cluster, target, path, body) {
                Outcome::Answered(400, text) => {
                    assert!(String::from_utf8_lossy(&text).contains("mutual TLS"), "{}", String::from_utf8_lossy(&text))
                }
                other => panic!("(a) plain HTTP {path} to node {target}: {other:?}"),
            }
            for (what, identity) in &attackers {
                match post_tls(&cluster, target, identity.as_ref(), path, body) {
                    Outcome::Failed(why) => eprintln!("{what}: {path} to node {target} refused: {why}"),
                    out => panic!("{what}: {path} to node {target} was not refused: {out:?}"),
                }
            }
        }
    }

    // Controls: with a certificate of a listed node, the same bodies reach the handlers. Sent in
    // the name of another node, they are refused there (a node speaks for itself only)...
    let other_node = cluster.other_than(&[leader, follower]);
    let insider = mint(&ca_key, &node_name(other_node));
    for (path, body) in [("/raft/append", &forged.append), ("/raft/vote", &forged.vote)] {
        match post_tls(&cluster, leader, Some(&insider), path, body) {
            Outcome::Answered(403, text) => {
                assert!(String::from_utf8_lossy(&text).contains("in the name of"), "{}", String::from_utf8_lossy(&text))
            }
            other => panic!("{path} from node {other_node}'s certificate in another node's name: {other:?}"),
        }
    }
    // ...and in its own name with a stale term, openraft answers (and refuses the vote).
    let stale = forge(other_node, 0, None);
    match post_tls(&cluster, leader, Some(&insider), "/raft/vote", &stale.vote) {
        Outcome::Answered(200, bytes) => {
            let r: Result<openraft::raft::VoteResponse<NodeId>, openraft::error::RaftError<NodeId>> =
                rmp_serde::from_slice(&bytes).expect("a vote answer");
            assert!(!r.expect("answered").vote_granted, "a stale vote is not granted");
        }
        other => panic!("a stale vote from a node of the cluster: {other:?}"),
    }

    // Nothing moved: same leader, same term, and the forged token opens no session anywhere.
    let (leader_after, term_after) = cluster.wait_stable_leader();
    assert_eq!((leader_after, term_after), (leader, term), "the forged messages moved the cluster");
    for id in cluster.ids() {
        let st = cluster.status(id).unwrap();
        assert!(st["term"].as_u64().unwrap() < term + 100, "node {id} took the forged term: {st}");
    }
    let auth = format!("Bearer {}", forged.token);
    let r = http(cluster.api(leader), "GET", "/v1/session", &[("authorization", &auth)], None).unwrap();
    assert_eq!(r.status, 401, "the forged token is a session: {r:?}");
    // Sessions are read on the leader; the followers' states are the leader's, entry for entry.
    cluster.wait_converged(WAIT);
    // Every refusal is logged, with its reason.
    let logs: String = cluster.ids().into_iter().map(|id| cluster.log(id)).collect();
    for reason in ["plain HTTP", "TLS handshake failed", "names no node of this cluster", "in the name of another node"]
    {
        assert!(logs.contains(reason), "no warning says {reason:?}");
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Log lines of node `id` that say it created `file`.
fn created(cluster: &Cluster, id: u64, file: &str) -> bool {
    cluster.log(id).lines().any(|l| l.contains("created TLS file") && l.contains(file))
}

#[test]
fn nodes_started_at_once_on_a_fresh_file_create_one_ca_and_elect_a_leader() {
    // Three processes started back to back, before any of them could have finished.
    let cluster = Cluster::start(3);
    cluster.wait_stable_leader();
    let tls = cluster.dir.path().join("tls");
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&tls.join("ca.key")), 0o600);
    for id in cluster.ids() {
        assert_eq!(mode(&tls.join(format!("node-{id}.key"))), 0o600);
        assert!(tls.join(format!("node-{id}.pem")).exists());
        assert!(created(&cluster, id, &format!("node-{id}.pem")), "node {id} made its own certificate");
    }
    let ca_makers: Vec<u64> = cluster.ids().into_iter().filter(|id| created(&cluster, *id, "ca.pem")).collect();
    assert_eq!(ca_makers.len(), 1, "exactly one node creates the CA: {ca_makers:?}");
    // And one ticket key for the cluster, private like the other keys.
    assert_eq!(mode(&tls.join("ticket.key")), 0o600);
    let key_makers: Vec<u64> = cluster.ids().into_iter().filter(|id| created(&cluster, *id, "ticket.key")).collect();
    assert_eq!(key_makers.len(), 1, "exactly one node creates the ticket key: {key_makers:?}");
}

/// Kills a process this test started, by PID, when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_node_listed_later_gets_a_certificate_of_the_same_ca_and_joins() {
    let mut cluster =
        Cluster::start_with(ClusterOptions { extra: "initial_members = [1, 2, 3]".into(), ..Default::default() });
    cluster.wait_stable_leader();
    // The operator lists node 4 in the file the running nodes started with.
    let (api, raft) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let mut text = std::fs::read_to_string(&cluster.config).unwrap();
    text.push_str(&format!("\n[[node]]\nid = 4\napi = \"{api}\"\nraft = \"{raft}\"\ndata_dir = \"node-4\"\n"));
    std::fs::write(&cluster.config, text).unwrap();
    let log = std::fs::File::create(cluster.dir.path().join("node-4.log")).unwrap();
    let node4 = Guard(
        Command::new(workspace_bin("tracker-node"))
            .args(["run", "--config", cluster.config.to_str().unwrap(), "--id", "4"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_until("node 4 to serve its api", WAIT, || http_get_json(&api, "/v1/status").is_some());
    let log4 = cluster.log(4);
    assert!(
        log4.contains("node-4.pem") && !log4.contains("ca.pem"),
        "node 4 made its certificate with the existing CA: {log4}"
    );

    let (leader, _) = cluster.wait_stable_leader();
    let add = format!(r#"{{"action":"add","id":4,"api":"{api}","raft":"{raft}"}}"#);
    let r = https_with_timeout(
        &cluster.config,
        TlsAs::Operator,
        cluster.api(leader),
        "POST",
        "/v1/admin/members",
        &[],
        Some(&add),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    wait_until("node 4 to be a voter", WAIT, || {
        http_get_json(&api, "/v1/status").is_some_and(|st| st["voters"] == serde_json::json!([1, 2, 3, 4]))
    });
    // Without the old leader, three of four voters must elect, node 4 among them: the others
    // take its votes (and its appends, if it wins) although their file did not list it.
    cluster.kill(leader);
    let rt = runtime();
    rt.block_on(logged_in(&cluster.client(), "after-the-kill"));
    let new_leader = http_get_json(&api, "/v1/status").unwrap()["leader"].as_u64().unwrap();
    assert_ne!(new_leader, leader);
    drop(node4);
}

#[test]
fn certs_command_output_works_when_named_in_the_file() {
    let mut cluster = Cluster::start_with(ClusterOptions { start: 0, ..Default::default() });
    let dir = cluster.dir.path().to_path_buf();
    let config = cluster.config.to_str().unwrap().to_string();
    let pki = dir.join("pki");
    let out = tracker_node(&["certs", "--config", &config, "--out", pki.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    for f in ["ca.pem", "ca.key", "node-1.pem", "node-1.key", "node-3.key", "ticket.key"] {
        assert!(stdout.contains(&format!("created {}", pki.join(f).display())), "{f}: {stdout}");
    }
    assert!(stdout.contains("ca = \"pki/ca.pem\""), "{stdout}");
    assert!(stdout.contains("ticket_key = \"pki/ticket.key\""), "{stdout}");
    assert_eq!(mode(&pki), 0o700);
    assert_eq!(mode(&pki.join("node-2.key")), 0o600);
    assert_eq!(mode(&pki.join("ticket.key")), 0o600);
    // Again: the CA and the pairs are kept.
    let again = tracker_node(&["certs", "--config", &config, "--out", pki.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to create"));

    // Node 1's pair elsewhere, named; nodes 2 and 3 use theirs beside the CA.
    let keys: PathBuf = dir.join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::rename(pki.join("node-1.pem"), keys.join("one.pem")).unwrap();
    std::fs::rename(pki.join("node-1.key"), keys.join("one.key")).unwrap();
    let text = std::fs::read_to_string(&cluster.config).unwrap();
    let text = text.replacen("\n[[node]]", "\n[cluster.tls]\nca = \"pki/ca.pem\"\n\n[[node]]", 1);
    let text = text
        .replace("data_dir = \"node-1\"\n", "data_dir = \"node-1\"\ncert = \"keys/one.pem\"\nkey = \"keys/one.key\"\n");
    std::fs::write(&cluster.config, &text).unwrap();
    let ca_line = text.lines().position(|l| l.starts_with("ca = ")).unwrap() + 1;

    // Named files that are missing, or a key others can read: exit 2, the file and line named,
    // and nothing generated in their place.
    let node3_key = pki.join("node-3.key");
    std::fs::rename(&node3_key, dir.join("away.key")).unwrap();
    let out = tracker_node(&["run", "--config", &config, "--id", "3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(&format!("error: {config}:{ca_line}: key {} cannot be read", node3_key.display())),
        "{err}"
    );
    assert!(!node3_key.exists(), "a named file is never generated");
    std::fs::rename(dir.join("away.key"), &node3_key).unwrap();
    std::fs::set_permissions(&node3_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = tracker_node(&["run", "--config", &config, "--id", "3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&node3_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Node 2 given node 3's pair: refused before it listens.
    let swapped = text.replace(
        "data_dir = \"node-2\"\n",
        "data_dir = \"node-2\"\ncert = \"pki/node-3.pem\"\nkey = \"pki/node-3.key\"\n",
    );
    let swapped_path = dir.join("swapped.toml");
    std::fs::write(&swapped_path, swapped).unwrap();
    let out = tracker_node(&["run", "--config", swapped_path.to_str().unwrap(), "--id", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a certificate of the CA") && err.contains("for node 2"), "{err}");

    // The file names its TLS files but not the ticket key: exit 2, saying what to add.
    let out = tracker_node(&["run", "--config", &config, "--id", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with(&format!("error: {config}:{ca_line}: [cluster.tls] names")), "{err}");
    assert!(err.contains("add ticket_key = \"pki/ticket.key\"") && err.contains("tracker-node certs"), "{err}");
    let text = text.replace("ca = \"pki/ca.pem\"\n", "ca = \"pki/ca.pem\"\nticket_key = \"pki/ticket.key\"\n");
    std::fs::write(&cluster.config, &text).unwrap();
    // A ticket key others can read: refused like a node key.
    std::fs::set_permissions(pki.join("ticket.key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = tracker_node(&["run", "--config", &config, "--id", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ticket_key") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(pki.join("ticket.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    for id in cluster.ids() {
        cluster.start_node(id);
    }
    cluster.wait_stable_leader();
    rt_register(&cluster);
    assert!(!dir.join("tls").exists(), "nothing is generated when the file names the certificates");
}

fn rt_register(cluster: &Cluster) {
    runtime().block_on(logged_in(&cluster.client(), "bob"));
}
