//! The client API's trust boundary, played against the real binaries: admin calls are the
//! operator's only (TLS with the operator's certificate of the cluster CA), a membership change
//! that would leave no reachable quorum is refused before it is proposed, and a process that
//! takes a node's API port while the node is down never sees a request from a client that
//! pins the cluster CA (the peer CLI). The first two run their nodes in this process
//! (testkit::inproc; a node taken away is stopped at once, `crash`) and the operator's commands
//! as processes; the last needs node processes (the peer CLI's harness is written for them).

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testkit::inproc::InprocCluster;
use testkit::*;

const WAIT: Duration = Duration::from_secs(20);

fn voters_everywhere(cluster: &InprocCluster, ids: &[u64], want: serde_json::Value) {
    for id in ids {
        let st = cluster.status(*id).unwrap_or_else(|| panic!("node {id} answers its status"));
        assert_eq!((&st["voters"], &st["learners"]), (&want, &json!([])), "node {id}: {st}");
    }
}

#[test]
fn admin_calls_need_the_operators_certificate_and_refused_ones_change_nothing() {
    // Alone: the leader and term must stay the same through the attacks: no other load beside it.
    let _alone = alone();
    let cluster = InprocCluster::start(3);
    let (leader, _) = cluster.wait_stable_leader();
    let api = cluster.api(leader);
    // The attacks of the issue: add voters that do not exist, remove a real one.
    let add = r#"{"action":"add","id":9,"api":"127.0.0.1:9","raft":"127.0.0.1:9"}"#;
    let remove = r#"{"action":"remove","id":2,"api":"127.0.0.1:1","raft":"127.0.0.1:1"}"#;
    for body in [add, remove] {
        // Plain HTTP, with no credential and with a made-up secret.
        for headers in [vec![], vec![("x-cluster-secret", "guess")]] {
            let r = http(api, "POST", "/v1/admin/members", &headers, Some(body)).expect("the leader answers");
            assert_eq!((r.status, r.json()["error"]["code"].clone()), (403, json!("forbidden")), "{r:?}");
            assert!(r.json()["error"]["message"].as_str().unwrap().contains("TLS"), "{r:?}");
        }
        // TLS without a certificate, and with a node's certificate (of the CA, not the operator's).
        for who in [TlsAs::Anonymous, TlsAs::Node(1)] {
            let r = https_with_timeout(&cluster.config, who, api, "POST", "/v1/admin/members", &[], Some(body), WAIT)
                .unwrap_or_else(|e| panic!("{who:?}: {e}"));
            assert_eq!((r.status, r.json()["error"]["code"].clone()), (403, json!("forbidden")), "{who:?}: {r:?}");
            assert!(r.json()["error"]["message"].as_str().unwrap().contains("operator"), "{r:?}");
        }
    }
    for who in [TlsAs::Anonymous, TlsAs::Node(2)] {
        let r = https_with_timeout(&cluster.config, who, api, "GET", "/v1/admin/snapshot", &[], None, WAIT).unwrap();
        assert_eq!(r.status, 403, "{who:?}: {r:?}");
    }
    assert_eq!(http(api, "GET", "/v1/admin/snapshot", &[], None).unwrap().status, 403);
    voters_everywhere(&cluster, &[1, 2, 3], json!([1, 2, 3]));

    // The operator's certificate opens them: the call that `snapshot save` makes.
    let r = https_with_timeout(&cluster.config, TlsAs::Operator, api, "GET", "/v1/admin/snapshot", &[], None, WAIT)
        .unwrap();
    assert!([200, 307].contains(&r.status), "{r:?}");

    // Without the operator's key at hand, the command says which file it needs and changes nothing.
    let key = cluster.config.parent().unwrap().join("tls/operator.key");
    let moved = key.with_extension("moved");
    std::fs::rename(&key, &moved).unwrap();
    let out = tracker_node(&["members", "remove", "--config", cluster.config.to_str().unwrap(), "--id", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: admin calls need the operator's certificate"), "{stderr}");
    assert!(stderr.contains("operator.key"), "{stderr}");
    std::fs::rename(&moved, &key).unwrap();
    voters_everywhere(&cluster, &[1, 2, 3], json!([1, 2, 3]));
}

#[test]
fn a_change_that_would_leave_no_reachable_quorum_is_refused_before_it_is_proposed() {
    let mut cluster = InprocCluster::start(3);
    let (leader, _) = cluster.wait_stable_leader();
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|i| *i != leader).collect();
    let (down, up) = (followers[0], followers[1]);
    cluster.crash(down);
    let config = cluster.config.to_str().unwrap().to_string();
    let last_index = |id: u64| cluster.status(id).unwrap()["last_log_index"].as_u64().unwrap();
    let before = last_index(leader);

    // Removing the follower that is up would leave {leader, down}: 1 of 2 answers.
    let out = tracker_node(&["members", "remove", "--config", &config, "--id", &up.to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(would_lose_quorum)") && stderr.contains("1 of 2 needed"), "{stderr}");
    let (now_leader, _) = cluster.wait_stable_leader();
    assert_eq!(now_leader, leader, "the refusal moved nothing");
    assert_eq!(last_index(leader), before, "nothing was proposed");
    voters_everywhere(&cluster, &[leader, up], json!([1, 2, 3]));

    // Removing the node that is down leaves {leader, up}, both answering: done.
    let out = tracker_node(&["members", "remove", "--config", &config, "--id", &down.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut want: Vec<u64> = vec![leader, up];
    want.sort();
    wait_until("the two to be the voters", WAIT, || {
        [leader, up].iter().all(|id| cluster.status(*id).is_some_and(|st| st["voters"] == json!(want)))
    });
}

/// A TLS server on `listener` with a self-signed certificate for `name` (what an attacker who
/// took a node's port can make); counts connections and the bytes of requests it decrypted.
fn impostor(listener: TcpListener, name: String) -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let cert = rcgen::generate_simple_self_signed(vec![name]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap(),
    );
    let (connections, plaintext) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, p) = (connections.clone(), plaintext.clone());
    listener.set_nonblocking(false).unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = [0u8; 4096];
            while let Ok(n) = tls.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p.fetch_add(n, Ordering::SeqCst);
            }
        }
    });
    (connections, plaintext)
}

#[test]
fn a_process_on_a_dead_nodes_api_port_never_sees_a_password() {
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_stable_leader();
    let victim = cluster.other_than(&[leader]);
    cluster.kill(victim);
    let listener = TcpListener::bind(cluster.api(victim)).expect("the dead node's api port is free");
    let (connections, plaintext) = impostor(listener, format!("node-{victim}.tracker.invalid"));

    // Only the impostor as tracker: the CLI refuses its certificate, says so, exits 3.
    let mallet = Peer::new(&cluster, "mallet");
    let only_impostor = cluster.api(victim).to_string();
    let r = mallet.run_with_stdin(
        &["--tracker", &only_impostor, "--timeout", "3", "register", "alice", "--password-stdin"],
        "alice-password\n",
    );
    assert_eq!(r.code, 3, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.to_lowercase().contains("certificate"), "the refusal names the certificate: {}", r.stderr);
    assert!(connections.load(Ordering::SeqCst) >= 1, "the CLI did try the impostor");

    // The whole cluster file, the impostor among its nodes: the others answer.
    let alice = Peer::new(&cluster, "alice");
    alice.register_and_login("alice");
    assert_eq!(alice.ok(&["list-groups"]), json!([]));
    assert_eq!(plaintext.load(Ordering::SeqCst), 0, "the impostor decrypted nothing");
}
