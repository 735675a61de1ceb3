//! Bounded-time fuzzing of the client API's bodies against a real 3-node cluster
//! (`testkit::fuzz`, `FUZZ_SECONDS`, default 5 s). Seeds are valid bodies of every call that
//! takes one, sent by a logged-in member; each round mutates one and sends it to the leader.
//! The promises: every answer is a documented status (never a 500, never a dropped connection),
//! a refusal has the `{"error":{"code","message"}}` shape, and afterwards every node answers and
//! all of them reach the same state (nothing a malformed body did split the replicas).
//!
//! The nodes run in this process (testkit::inproc).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::fuzz::{budget, mutate, seed_rng};
use testkit::inproc::InprocCluster;
use testkit::*;

const WAIT: Duration = Duration::from_secs(20);
/// Statuses the API documents (docs/API.md); anything else is a finding.
const DOCUMENTED: [u16; 14] = [200, 201, 307, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503];

fn ok_json(r: HttpResponse) -> Value {
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

#[test]
fn fuzzed_api_bodies_get_documented_answers_and_leave_the_replicas_equal() {
    let mut cluster = InprocCluster::start(3);
    let leader = cluster.wait_leader(&[]);
    let api = cluster.api(leader);
    let body = |v: Value| Some(v.to_string());
    ok_json(http_as(
        api,
        "POST",
        "/v1/users",
        None,
        None,
        body(json!({"user": "alice", "password": "pw-alice"})).as_deref(),
    ));
    let login = http_as(
        api,
        "POST",
        "/v1/sessions",
        None,
        None,
        body(json!({"user": "alice", "password": "pw-alice"})).as_deref(),
    );
    let token = ok_json(login)["token"].as_str().unwrap().to_string();
    ok_json(http_as(api, "POST", "/v1/groups", Some(&token), None, body(json!({"group": "g"})).as_deref()));
    let upload = json!({
        "file": {"name": "doc.txt", "size": 1000, "piece_len": 524288, "piece_list_sha1": "1".repeat(40), "sha1": "2".repeat(40)},
        "peer_addr": "127.0.0.1:9",
        "peer_key": "ab".repeat(32)
    });
    ok_json(http_as(api, "POST", "/v1/groups/g/files", Some(&token), None, Some(&upload.to_string())));

    // (method, path, seed body)
    let calls: Vec<(&str, &str, Value)> = vec![
        ("POST", "/v1/groups", json!({"group": "team-2"})),
        ("POST", "/v1/groups/g/files", upload.clone()),
        ("PUT", "/v1/peer", json!({"peer_addr": "127.0.0.1:6881", "peer_key": "cd".repeat(32)})),
        ("POST", "/v1/peer/alive", json!({"peer_addr": "127.0.0.1:6881", "peer_key": "cd".repeat(32)})),
        ("POST", "/v1/groups/g/members", json!({"user": "bob"})),
        ("POST", "/v1/groups/g/files/doc.txt/ticket", json!({"peer_key": "ef".repeat(32)})),
        ("POST", "/v1/sessions", json!({"user": "alice", "password": "wrong"})),
        ("POST", "/v1/users", json!({"user": "mallory", "password": "x"})),
        (
            "POST",
            "/v1/admin/members",
            json!({"action": "remove", "id": 2, "api": "127.0.0.1:1", "raft": "127.0.0.1:1"}),
        ),
    ];
    let seeds: Vec<Vec<u8>> = calls.iter().map(|(_, _, b)| b.to_string().into_bytes()).collect();
    let mut rng = seed_rng();
    let start = Instant::now();
    let (mut rounds, mut accepted) = (0u64, 0u64);
    while start.elapsed() < budget() {
        let input = mutate(&mut rng, &seeds, 64);
        // Any call takes the mutant: splices carry one call's fields into another anyway.
        let (method, path, _) = &calls[rng.below(calls.len())];
        let text = String::from_utf8_lossy(&input).into_owned();
        let key = format!("fuzz-{rounds}");
        let r = http_as(api, method, path, Some(&token), Some(&key), Some(&text));
        rounds += 1;
        assert!(DOCUMENTED.contains(&r.status), "{method} {path} {text:?}: undocumented answer {r:?}");
        if r.status >= 400 {
            let code = r.json()["error"]["code"].as_str().map(str::to_string);
            assert!(code.is_some_and(|c| !c.is_empty()), "{method} {path} {text:?}: not the error shape: {r:?}");
        }
        if r.status < 300 {
            accepted += 1;
        }
    }
    println!("{rounds} API bodies, {accepted} accepted");
    assert!(rounds > 50, "the fuzzer ran ({rounds} inputs)");
    // Every node answers, and they all reach the same state.
    cluster.wait_converged(WAIT);
    for id in cluster.ids() {
        assert!(cluster.status(id).is_some(), "node {id} stopped answering: {:?}", cluster.ended(id));
    }
}
