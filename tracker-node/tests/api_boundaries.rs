//! What reaches the Raft log, played against real nodes over raw HTTP: writes with a made-up
//! session, oversize bodies and reused idempotency keys are refused by the leader before any
//! proposal (the log does not move), and idempotency keys are scoped to the user and the call
//! and bound to the request's content, across a leader failover too.
//!
//! The nodes run in this process (testkit::inproc); a node taken away is stopped at once (`crash`).

use std::time::Duration;

use testkit::inproc::InprocCluster;
use testkit::*;

fn last_log_index(cluster: &InprocCluster, id: u64) -> u64 {
    cluster.status(id).unwrap()["last_log_index"].as_u64().unwrap()
}

fn post(addr: &str, path: &str, token: Option<&str>, key: Option<&str>, body: &str) -> HttpResponse {
    http_as(addr, "POST", path, token, key, Some(body))
}

fn delete(addr: &str, path: &str, token: &str, key: &str) -> HttpResponse {
    http_as(addr, "DELETE", path, Some(token), Some(key), None)
}

/// Sends a raw request and returns the status and the parsed JSON body.
fn raw(addr: &str, head_lines: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("{head_lines}Host: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or_default();
    (status, json)
}

#[test]
fn every_refusal_of_a_body_or_a_route_has_the_documented_json_shape() {
    let cluster = InprocCluster::start(1);
    let api = cluster.api(1);
    let json = "POST /v1/users HTTP/1.1\r\nContent-Type: application/json\r\n";
    let cases: &[(&str, &str, u16, &str)] = &[
        ("malformed JSON", json, 400, "{\"user\": "),
        ("wrong type", json, 422, r#"{"user": 5, "password": "x"}"#),
        ("missing field", json, 422, r#"{"user": "alice"}"#),
        ("unknown route", "GET /v1/nothing HTTP/1.1\r\n", 404, ""),
        ("wrong method", "PATCH /v1/users HTTP/1.1\r\n", 405, ""),
        ("no content type", "POST /v1/users HTTP/1.1\r\n", 415, r#"{"user":"alice","password":"secret1"}"#),
    ];
    for (what, head, status, body) in cases {
        let (got, value) = raw(api, head, body);
        assert_eq!(got, *status, "{what}: {value}");
        assert!(value["error"]["code"].is_string() && value["error"]["message"].is_string(), "{what}: {value}");
    }
    let (got, value) = raw(api, json, &format!(r#"{{"user":"alice","password":"{}"}}"#, "p".repeat(20_000)));
    assert_eq!(got, 413, "{value}");
    assert_eq!(value["error"]["code"], "body_too_large");
    assert_eq!(cluster.status(1).unwrap()["users"], 0, "nothing was registered");
}

/// Declares an 8 MiB body, sends 64 KiB of it, and reads the status the node answers.
fn oversize_post_status(addr: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let declared = 8 * 1024 * 1024;
    let head = format!(
        "POST /v1/groups HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{\"group\":\""
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(&vec![b'g'; 64 * 1024]);
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {text}"))
}

/// Runs `step` against the leader of one stable view (every running node agrees on the leader
/// and the term) and returns what it gives once the view is the same after it. A step that met
/// an election, whose raw requests may have reached a node that no longer led, is run again (at
/// most 5 times): `step` gets the leader and the try number (0 first), to pick fresh names.
fn on_stable_leader<T>(cluster: &InprocCluster, mut step: impl FnMut(u64, usize) -> T) -> T {
    for attempt in 0..5 {
        let (leader, term) = cluster.wait_stable_leader();
        let out = step(leader, attempt);
        if cluster.stable_view().map(|(l, t, _)| (l, t)) == Some((leader, term)) {
            return out;
        }
    }
    panic!("no leader kept its term for long enough for one step of the test");
}

/// `tracker_precheck_refusals_total{command=...}` summed over the running nodes: each refusal is
/// counted by the node that answered it, and a leader change in between spreads them.
fn precheck_refusals(cluster: &InprocCluster, command: &str) -> u64 {
    let prefix = format!("tracker_precheck_refusals_total{{command=\"{command}\"}} ");
    cluster
        .running()
        .into_iter()
        .map(|id| {
            let m = http(cluster.api(id), "GET", "/metrics", &[], None).expect("node answers").body;
            m.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map(|n| n.trim().parse::<u64>().unwrap())
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn writes_with_a_made_up_session_or_an_oversize_body_never_reach_the_log() {
    let cluster = InprocCluster::start(3);
    let rt = runtime();
    rt.block_on(logged_in(&cluster.client(), "alice"));
    cluster.wait_converged(Duration::from_secs(20));
    // Refusals of create_group and upload_file answered by a node's precheck, whichever node
    // that was (a retried step's too): the metric must count exactly these.
    let (mut refused_create, mut refused_upload) = (0u64, 0u64);

    // Each step's log indexes are read on the leader of one term: an election appends an entry
    // of its own, so a step that met one is done again.
    let forged = "ab".repeat(32);
    let (answers, oversize, before, after) = on_stable_leader(&cluster, |leader, _| {
        let api = cluster.api(leader);
        let before = last_log_index(&cluster, leader);
        let answers: Vec<HttpResponse> = (0..4)
            .map(|i| post(api, "/v1/groups", Some(&forged), Some(&format!("k{i}")), &format!(r#"{{"group":"g{i}"}}"#)))
            .collect();
        refused_create += answers.iter().filter(|r| r.status == 401).count() as u64;
        // A body far beyond what any call needs is refused from its declared length, before the
        // node reads it: the answer comes while the sender is still sending.
        let oversize = oversize_post_status(api, &forged);
        (answers, oversize, before, last_log_index(&cluster, leader))
    });
    for r in &answers {
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], "unauthenticated");
    }
    assert_eq!(oversize, 413);
    assert_eq!(after, before, "a made-up session or an oversize body reached the log");

    // A real session: bob's register and login are the only entries of their step.
    let (t, before_login, after_login) = on_stable_leader(&cluster, |leader, n| {
        let user = if n == 0 { "bob".to_string() } else { format!("bob{n}") };
        let before = last_log_index(&cluster, leader);
        let t = rt.block_on(logged_in(&cluster.client(), &user)).token().unwrap().to_string();
        (t, before, last_log_index(&cluster, leader))
    });
    assert_eq!(after_login, before_login + 2, "only bob's register and login were proposed");

    // A name over the limit, with a real session, is refused by the leader's precheck.
    let (r, before, after) = on_stable_leader(&cluster, |leader, _| {
        let before = last_log_index(&cluster, leader);
        let r = post(
            cluster.api(leader),
            "/v1/groups",
            Some(&t),
            Some("long"),
            &format!(r#"{{"group":"{}"}}"#, "g".repeat(65)),
        );
        refused_create += (r.status == 400) as u64;
        (r, before, last_log_index(&cluster, leader))
    });
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "invalid_name");
    assert_eq!(after, before, "the refused name reached the log");

    // A file over the size bound, in a group bob owns.
    rt.block_on(cluster.client().with_token(Some(t.clone())).create_group("team")).unwrap();
    let upload = r#"{"file":{"name":"big.iso","size":1099511627777,"piece_len":524288,"piece_list_sha1":"0000000000000000000000000000000000000000","sha1":"0000000000000000000000000000000000000000"},"peer_addr":"127.0.0.1:9","peer_key":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
    let (r, before, after) = on_stable_leader(&cluster, |leader, _| {
        let before = last_log_index(&cluster, leader);
        let r = post(cluster.api(leader), "/v1/groups/team/files", Some(&t), Some("big"), upload);
        refused_upload += (r.status == 413) as u64;
        (r, before, last_log_index(&cluster, leader))
    });
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "file_too_large");
    assert_eq!(after, before, "the refused upload reached the log");

    // Every one of those refusals was counted, by the node that answered it (4 made-up sessions
    // and the long name when no election came in between).
    assert!(refused_create >= 5 && refused_upload >= 1, "{refused_create} {refused_upload}");
    assert_eq!(precheck_refusals(&cluster, "create_group"), refused_create);
    assert_eq!(precheck_refusals(&cluster, "upload_file"), refused_upload);
}

#[test]
fn idempotency_keys_are_scoped_to_user_and_call_and_bound_to_content() {
    let mut cluster = InprocCluster::start(3);
    let rt = runtime();
    let alice = rt.block_on(logged_in(&cluster.client(), "alice")).token().unwrap().to_string();
    let bob = rt.block_on(logged_in(&cluster.client(), "bob")).token().unwrap().to_string();
    // Raw requests go to the leader of a stable view; a step that met an election is sent again,
    // under the same key, which is itself what the key promises to make safe.
    let r = same_key_on_leader(&cluster, "/v1/groups", &alice, r#"{"group":"alpha"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["group"], "alpha");
    // Another user's call under the same key is its own request.
    let r = same_key_on_leader(&cluster, "/v1/groups", &bob, r#"{"group":"beta"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["group"], "beta");
    // Another call by alice under the same key is its own request too.
    let r = same_key_on_leader(&cluster, "/v1/groups/beta/requests", &alice, "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    // Same key, same call, other content: 422, and nothing changes (the log of one term).
    let (r, before, after) = on_stable_leader(&cluster, |leader, _| {
        let before = last_log_index(&cluster, leader);
        let r = post(cluster.api(leader), "/v1/groups", Some(&alice), Some("same-key"), r#"{"group":"gamma"}"#);
        (r, before, last_log_index(&cluster, leader))
    });
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "idempotency_key_reused");
    assert_eq!(after, before, "the reused key reached the log");
    let groups = rt.block_on(group_names(&cluster.client().with_token(Some(alice.clone()))));
    assert_eq!(groups, vec!["alpha".to_string(), "beta".to_string()]);

    // A true retry after the leader dies answers the first outcome on the new leader, elected
    // in a later term (who led, and in which term, from one stable view just before the kill).
    let (old, term_before) = cluster.wait_stable_leader();
    cluster.crash(old);
    let (new_leader, term_after) = cluster.wait_stable_leader();
    assert!(term_after > term_before, "node {new_leader} leads term {term_after}; the killed {old} led {term_before}");
    let r = same_key_on_leader(&cluster, "/v1/groups", &alice, r#"{"group":"alpha"}"#);
    assert_eq!(r.status, 200, "a retry answers the first outcome: {}", r.body);
    assert_eq!(r.json()["group"], "alpha");

    // A logout under a key alice already used for other calls logs her out. A logout answered
    // before an election is the logout: a resend of it may find the session closed already.
    let mut answers = Vec::new();
    on_stable_leader(&cluster, |leader, _| {
        answers.push(delete(cluster.api(leader), "/v1/sessions", &alice, "same-key"))
    });
    let r = answers.iter().find(|r| r.status == 200).unwrap_or_else(|| panic!("no logout answered 200: {answers:?}"));
    assert_eq!(r.json()["user"], "alice");
    let auth = format!("Bearer {alice}");
    let who = on_stable_leader(&cluster, |leader, _| {
        http(cluster.api(leader), "GET", "/v1/session", &[("authorization", &auth)], None).unwrap()
    });
    assert_eq!(who.status, 401, "the session is closed: {}", who.body);
}

/// A POST under the key `same-key`, to the leader of a stable view ([`on_stable_leader`]).
fn same_key_on_leader(cluster: &InprocCluster, path: &str, token: &str, body: &str) -> HttpResponse {
    on_stable_leader(cluster, |leader, _| post(cluster.api(leader), path, Some(token), Some("same-key"), body))
}

#[test]
fn health_and_readyz_follow_the_quorum() {
    let mut cluster = InprocCluster::start(3);
    let leader = cluster.wait_leader(&[]);
    wait_until("every node to report healthy and ready", Duration::from_secs(20), || {
        cluster.ids().iter().all(|id| {
            let h = http(cluster.api(*id), "GET", "/health", &[], None);
            let r = http(cluster.api(*id), "GET", "/readyz", &[], None);
            h.is_some_and(|h| h.status == 200 && h.json()["health"] == true) && r.is_some_and(|r| r.status == 200)
        })
    });
    // Two of three down: the survivor has no quorum and says so.
    let survivor = leader;
    for id in cluster.ids() {
        if id != survivor {
            cluster.crash(id);
        }
    }
    wait_until("the survivor to report unhealthy", Duration::from_secs(20), || {
        http(cluster.api(survivor), "GET", "/health", &[], None).is_some_and(|h| {
            h.status == 503 && h.json()["error"]["code"] == "unavailable" && h.json()["error"]["message"].is_string()
        })
    });
    let r = http(cluster.api(survivor), "GET", "/readyz", &[], None).unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
}
