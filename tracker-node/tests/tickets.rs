//! Access tickets, peer keys, trusted peer addresses and remove-member, against real nodes over
//! HTTP: tickets go to members only (not after leave, removal or logout) and verify under the
//! cluster's ticket key whichever node leads; the tracker records a peer's host from the
//! connection, never from the client; an owner's removal ends the member's shares; liveness
//! calls are answered by the leader from memory.
//!
//! The nodes run in this process (testkit::inproc); a leader taken away is stopped at once (`crash`).

use std::time::{SystemTime, UNIX_EPOCH};

use proto::ticket::{verify, Ticket, MAX_CLOCK_SKEW_MS, TICKET_LIFETIME_MS};
use serde_json::{json, Value};
use testkit::inproc::InprocCluster;
use testkit::*;

const SHA1: &str = "5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f5f";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A peer key: 32 bytes of `b`, as 64 hex characters.
fn key(b: u8) -> String {
    hex::encode([b; 32])
}

/// Sends a request and follows 307s to the leader, waiting out 503s (an election).
fn call(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> HttpResponse {
    call_following_redirects(addr, method, path, token, body)
}

/// Sends one raw request (no redirect followed) to a follower, chosen in a stable view of who
/// leads, and returns `(leader, term, follower, answer)` once the view was the same after the
/// answer; an election in between is a reason to ask again (at most 5 times), not a failure.
fn from_a_follower(cluster: &InprocCluster, send: impl Fn(&str) -> HttpResponse) -> (u64, u64, u64, HttpResponse) {
    for _ in 0..5 {
        let (leader, term) = cluster.wait_stable_leader();
        let follower = cluster.running().into_iter().find(|i| *i != leader).expect("a follower runs");
        let r = send(cluster.api(follower));
        if cluster.stable_view().map(|(l, t, _)| (l, t)) == Some((leader, term)) {
            return (leader, term, follower, r);
        }
    }
    panic!("no stable leader for long enough to ask a follower");
}

fn ok(r: HttpResponse) -> Value {
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// The status and error code of a refusal.
fn refusal(r: &HttpResponse) -> (u16, String) {
    (r.status, r.json()["error"]["code"].as_str().unwrap_or_default().to_string())
}

fn token(cluster: &InprocCluster, user: &str) -> String {
    let rt = runtime();
    rt.block_on(logged_in(&cluster.client(), user)).token().unwrap().to_string()
}

fn upload_body(name: &str, peer_addr: &str, peer_key: &str) -> String {
    json!({
        "file": {"name": name, "size": 1000, "piece_len": 524288, "piece_list_sha1": "1".repeat(40), "sha1": SHA1},
        "peer_addr": peer_addr,
        "peer_key": peer_key,
    })
    .to_string()
}

/// `t` uploads `name` to `group`, shared from `peer_addr` with `peer_key`.
fn upload(api: &str, t: &str, group: &str, name: &str, peer_addr: &str, peer_key: &str) -> Value {
    ok(call(api, "POST", &format!("/v1/groups/{group}/files"), Some(t), Some(&upload_body(name, peer_addr, peer_key))))
}

/// `owner` creates `group` and accepts each of `members`.
fn group_with(api: &str, group: &str, owner: &str, members: &[&str]) {
    ok(call(api, "POST", "/v1/groups", Some(owner), Some(&json!({ "group": group }).to_string())));
    for m in members {
        ok(call(api, "POST", &format!("/v1/groups/{group}/requests"), Some(m), None));
    }
    for m in members {
        let user = call(api, "GET", "/v1/session", Some(m), None).json()["user"].as_str().unwrap().to_string();
        ok(call(
            api,
            "POST",
            &format!("/v1/groups/{group}/members"),
            Some(owner),
            Some(&json!({ "user": user }).to_string()),
        ));
    }
}

fn ticket_path(group: &str, name: &str) -> String {
    format!("/v1/groups/{group}/files/{name}/ticket")
}

/// The caller's daemon announces itself with `peer_key`: tickets are issued for that key only.
fn announce(api: &str, t: &str, peer_key: &str) {
    let body = json!({ "peer_addr": "127.0.0.1:7", "peer_key": peer_key }).to_string();
    ok(call(api, "PUT", "/v1/peer", Some(t), Some(&body)));
}

fn ask_ticket(api: &str, t: &str, group: &str, name: &str, peer_key: &str) -> HttpResponse {
    call(api, "POST", &ticket_path(group, name), Some(t), Some(&json!({ "peer_key": peer_key }).to_string()))
}

/// The cluster's ticket key as node `id` serves it (no session needed, no redirect).
fn ticket_key(cluster: &InprocCluster, id: u64) -> [u8; 32] {
    let r = http(cluster.api(id), "GET", "/v1/ticket-key", &[], None).expect("node answers");
    assert_eq!(r.status, 200, "{r:?}");
    let k = r.json()["key"].as_str().expect("a key").to_string();
    assert_eq!(k.len(), 64, "{k}");
    hex::decode(k).unwrap().try_into().unwrap()
}

/// A ticket answer checked under `cluster_key`: what it grants, and that the JSON around it says
/// the same.
fn verified(r: HttpResponse, cluster_key: &[u8; 32]) -> Ticket {
    let v = ok(r);
    let bytes = hex::decode(v["ticket"].as_str().expect("a ticket")).unwrap();
    let t = verify(&bytes, cluster_key, now_ms()).unwrap_or_else(|e| panic!("the ticket does not verify: {e}"));
    assert_eq!(v["expires_at_ms"].as_u64(), Some(t.expires_at_ms));
    assert_eq!(v["file_sha1"].as_str(), Some(hex::encode(t.file_sha1).as_str()));
    t
}

#[test]
fn a_members_ticket_binds_group_file_user_and_key_and_verifies_under_the_key_of_every_leader() {
    let mut cluster = InprocCluster::start(3);
    let leader = cluster.wait_leader(&[]);
    // Every node serves the same key: the cluster's, from the one key file.
    let cluster_key = ticket_key(&cluster, 1);
    for id in cluster.ids() {
        assert_eq!(ticket_key(&cluster, id), cluster_key, "node {id}");
    }
    let alice = token(&cluster, "alice");
    let bob = token(&cluster, "bob");
    let api = cluster.api(leader).to_string();
    group_with(&api, "team", &alice, &[&bob]);
    upload(&api, &alice, "team", "doc.txt", "127.0.0.1:7", &key(1));

    announce(&api, &bob, &key(0xb0));
    let asked_at = now_ms();
    let t = verified(ask_ticket(&api, &bob, "team", "doc.txt", &key(0xb0)), &cluster_key);
    assert_eq!(t.group, "team");
    assert_eq!(t.user, "bob");
    assert_eq!(hex::encode(t.file_sha1), SHA1);
    assert_eq!(t.peer_key, [0xb0; 32], "the key the caller asked for");
    assert!(
        t.expires_at_ms >= asked_at + TICKET_LIFETIME_MS - MAX_CLOCK_SKEW_MS
            && t.expires_at_ms <= now_ms() + TICKET_LIFETIME_MS + MAX_CLOCK_SKEW_MS,
        "valid for about {TICKET_LIFETIME_MS} ms: {} (asked at {asked_at})",
        t.expires_at_ms
    );
    // A key given in capitals is the same key.
    let upper = verified(ask_ticket(&api, &bob, "team", "doc.txt", &key(0xb0).to_uppercase()), &cluster_key);
    assert_eq!(upper.peer_key, [0xb0; 32]);
    // The membership check is a read on the leader: a follower redirects, to the leader of the
    // same stable view.
    let body = json!({ "peer_key": key(2) }).to_string();
    let (now_leader, _, follower, r) = from_a_follower(&cluster, |api| {
        http_as(api, "POST", &ticket_path("team", "doc.txt"), Some(&bob), None, Some(&body))
    });
    assert_eq!(r.status, 307, "node {follower}: {r:?}");
    assert_eq!(r.json()["leader"]["id"], now_leader, "{r:?}");
    assert!(r.json().get("ticket").is_none(), "{r:?}");
    // The client library's calls.
    let rt = runtime();
    let client = cluster.client().with_token(Some(bob.clone()));
    assert_eq!(rt.block_on(client.ticket_key()).unwrap(), hex::encode(cluster_key));
    announce(&api, &bob, &key(3));
    let tr = rt.block_on(client.ticket("team", "doc.txt", &key(3))).unwrap();
    let t = verify(&hex::decode(&tr.ticket).unwrap(), &cluster_key, now_ms()).unwrap();
    assert_eq!((t.user.as_str(), t.peer_key), ("bob", [3; 32]));
    assert_eq!(tr.file_sha1, SHA1);

    // The leader dies: the new leader, elected in a later term, signs with the same cluster key.
    // Who leads and in which term are read from one stable view just before the kill.
    let (old, term_before) = cluster.wait_stable_leader();
    cluster.crash(old);
    let (new_leader, term_after) = cluster.wait_stable_leader();
    assert!(term_after > term_before, "node {new_leader} leads term {term_after}; the killed {old} led {term_before}");
    assert_eq!(cluster.running().len(), 2, "{:?}", cluster.running());
    for id in cluster.running() {
        assert_eq!(ticket_key(&cluster, id), cluster_key, "node {id} after the failover");
    }
    announce(cluster.api(new_leader), &bob, &key(4));
    let r = ask_ticket(cluster.api(new_leader), &bob, "team", "doc.txt", &key(4));
    let t = verified(r, &cluster_key);
    assert_eq!((t.group.as_str(), t.user.as_str(), t.peer_key), ("team", "bob", [4; 32]));
    announce(cluster.api(new_leader), &bob, &key(5));
    let tr = rt.block_on(client.ticket("team", "doc.txt", &key(5))).unwrap();
    assert!(verify(&hex::decode(&tr.ticket).unwrap(), &cluster_key, now_ms()).is_ok());
}

#[test]
fn a_member_gets_no_ticket_for_another_key_than_the_one_his_daemon_announced() {
    let cluster = InprocCluster::start(1);
    let api = cluster.api(1).to_string();
    let cluster_key = ticket_key(&cluster, 1);
    let [alice, bob] = ["alice", "bob"].map(|u| token(&cluster, u));
    group_with(&api, "team", &alice, &[&bob]);
    upload(&api, &alice, "team", "doc.txt", "127.0.0.1:7", &key(1));
    let (bobs, mallorys) = (key(0xb0), key(0x66));
    // Before his daemon announced any key, bob gets no ticket for any key: not even his own.
    let r = ask_ticket(&api, &bob, "team", "doc.txt", &bobs);
    assert_eq!(refusal(&r), (403, "not_allowed".to_string()), "{r:?}");
    announce(&api, &bob, &bobs);
    // bob asks for a ticket bound to mallory's key, to hand her access: refused, no ticket.
    let r = ask_ticket(&api, &bob, "team", "doc.txt", &mallorys);
    assert_eq!(refusal(&r), (403, "not_allowed".to_string()), "{r:?}");
    assert!(r.json().get("ticket").is_none(), "{r:?}");
    let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("announce"), "the refusal says what to do: {message}");
    // The same in capitals is still mallory's key.
    let r = ask_ticket(&api, &bob, "team", "doc.txt", &mallorys.to_uppercase());
    assert_eq!(refusal(&r), (403, "not_allowed".to_string()), "{r:?}");
    // His own announced key gets one; once his daemon announces another key, the old one is
    // refused and the new one served.
    assert_eq!(verified(ask_ticket(&api, &bob, "team", "doc.txt", &bobs), &cluster_key).peer_key, [0xb0; 32]);
    announce(&api, &bob, &key(0xb1));
    let r = ask_ticket(&api, &bob, "team", "doc.txt", &bobs);
    assert_eq!(refusal(&r), (403, "not_allowed".to_string()), "{r:?}");
    assert_eq!(verified(ask_ticket(&api, &bob, "team", "doc.txt", &key(0xb1)), &cluster_key).peer_key, [0xb1; 32]);
    // The refusals wrote nothing: the tracker still lists bob's latest key only.
    let details = ok(call(&api, "GET", "/v1/groups/team/files/doc.txt", Some(&alice), None));
    assert_eq!(details["sharers"].as_array().unwrap().len(), 1, "{details}");
}

#[test]
fn no_ticket_for_non_members_nor_after_leave_removal_or_logout() {
    let cluster = InprocCluster::start(1);
    let api = cluster.api(1).to_string();
    let cluster_key = ticket_key(&cluster, 1);
    let [alice, bob, carol, dave, erin] = ["alice", "bob", "carol", "dave", "erin"].map(|u| token(&cluster, u));
    group_with(&api, "team", &alice, &[&bob, &dave, &erin]);
    upload(&api, &alice, "team", "doc.txt", "127.0.0.1:7", &key(1));
    let no_ticket = |r: &HttpResponse| assert!(r.json().get("ticket").is_none(), "{r:?}");

    // Not a member, no session, no such file or group, a malformed key: refused, no ticket.
    let cases: Vec<(HttpResponse, (u16, &str))> = vec![
        (ask_ticket(&api, &carol, "team", "doc.txt", &key(9)), (403, "not_member")),
        (
            http_as(
                &api,
                "POST",
                &ticket_path("team", "doc.txt"),
                None,
                None,
                Some(&json!({"peer_key": key(9)}).to_string()),
            ),
            (401, "unauthenticated"),
        ),
        (ask_ticket(&api, &"cd".repeat(32), "team", "doc.txt", &key(9)), (401, "unauthenticated")),
        (ask_ticket(&api, &bob, "team", "nope.txt", &key(9)), (404, "no_such_file")),
        (ask_ticket(&api, &bob, "nope", "doc.txt", &key(9)), (404, "no_such_group")),
        (ask_ticket(&api, &bob, "team", "doc.txt", "xyz"), (400, "invalid_request")),
        (ask_ticket(&api, &bob, "team", "doc.txt", &"g".repeat(64)), (400, "invalid_request")),
        (ask_ticket(&api, &bob, "team", "doc.txt", &key(9)[..62]), (400, "invalid_request")),
    ];
    for (r, want) in &cases {
        assert_eq!(refusal(r), (want.0, want.1.to_string()), "{r:?}");
        no_ticket(r);
    }
    // Each of bob, dave and erin gets a ticket while a member with an open session ...
    for t in [&bob, &dave, &erin] {
        announce(&api, t, &key(9));
        verified(ask_ticket(&api, t, "team", "doc.txt", &key(9)), &cluster_key);
    }
    // ... and none once bob left, dave was removed by the owner, erin logged out.
    ok(call(&api, "DELETE", "/v1/groups/team/members/me", Some(&bob), None));
    ok(call(&api, "DELETE", "/v1/groups/team/members/dave", Some(&alice), None));
    ok(call(&api, "DELETE", "/v1/sessions", Some(&erin), None));
    for (who, t, want) in [
        ("bob", &bob, (403, "not_member")),
        ("dave", &dave, (403, "not_member")),
        ("erin", &erin, (401, "unauthenticated")),
    ] {
        let r = ask_ticket(&api, t, "team", "doc.txt", &key(9));
        assert_eq!(refusal(&r), (want.0, want.1.to_string()), "{who}: {r:?}");
        no_ticket(&r);
    }
    // The owner still gets one.
    announce(&api, &alice, &key(8));
    let t = verified(ask_ticket(&api, &alice, "team", "doc.txt", &key(8)), &cluster_key);
    assert_eq!(t.user, "alice");
}

#[test]
fn the_tracker_records_the_requests_host_and_only_the_clients_port() {
    let cluster = InprocCluster::start(1);
    let api = cluster.api(1).to_string();
    let alice = token(&cluster, "alice");
    group_with(&api, "team", &alice, &[]);
    let sharers = || ok(call(&api, "GET", "/v1/groups/team/files/doc.txt", Some(&alice), None))["sharers"].clone();

    // An upload naming another host: the tracker keeps the port, the host is where the call came from.
    upload(&api, &alice, "team", "doc.txt", "10.0.0.1:25", &key(0xaa));
    assert_eq!(sharers(), json!([{"user": "alice", "peer_addr": "127.0.0.1:25", "peer_key": key(0xaa)}]));
    // An announce with a 200-character host, and a key in capitals (stored lowercase).
    let long_host = "h".repeat(200);
    let body = json!({"peer_addr": format!("{long_host}:26"), "peer_key": key(0xbb).to_uppercase()}).to_string();
    let v = ok(call(&api, "PUT", "/v1/peer", Some(&alice), Some(&body)));
    assert_eq!((v["user"].as_str(), v["shares"].as_u64()), (Some("alice"), Some(1)), "{v}");
    assert_eq!(v["peer_addr"], "127.0.0.1:26", "the announce answers the address it recorded: {v}");
    assert_eq!(sharers(), json!([{"user": "alice", "peer_addr": "127.0.0.1:26", "peer_key": key(0xbb)}]));

    // Malformed ports and keys: 400, and nothing changes (not the record, not the log).
    let before = cluster.status(1).unwrap()["last_log_index"].as_u64().unwrap();
    let bad_addrs = ["10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:-1", "10.0.0.1:abc", "10.0.0.1", ":25", "10.0.0.1:"];
    let bad_keys = ["", "00", &key(1)[..63], &format!("{}0", key(1)), &"z".repeat(64), &format!("{} ", &key(1)[..63])];
    let mut refused = Vec::new();
    for a in bad_addrs {
        let body = json!({"peer_addr": a, "peer_key": key(0xcc)}).to_string();
        refused.push((format!("announce {a:?}"), call(&api, "PUT", "/v1/peer", Some(&alice), Some(&body))));
        refused.push((
            format!("upload {a:?}"),
            call(&api, "POST", "/v1/groups/team/files", Some(&alice), Some(&upload_body("new.txt", a, &key(0xcc)))),
        ));
    }
    let too_long = format!("{}:27", "h".repeat(300));
    let body = json!({"peer_addr": too_long, "peer_key": key(0xcc)}).to_string();
    refused.push(("announce 303 bytes".into(), call(&api, "PUT", "/v1/peer", Some(&alice), Some(&body))));
    for k in bad_keys {
        let body = json!({"peer_addr": "127.0.0.1:28", "peer_key": k}).to_string();
        refused.push((format!("announce key {k:?}"), call(&api, "PUT", "/v1/peer", Some(&alice), Some(&body))));
        refused.push((
            format!("upload key {k:?}"),
            call(&api, "POST", "/v1/groups/team/files", Some(&alice), Some(&upload_body("new.txt", "127.0.0.1:28", k))),
        ));
    }
    // A body without a peer key is not an announce or an upload at all.
    let r = call(&api, "PUT", "/v1/peer", Some(&alice), Some(r#"{"peer_addr":"127.0.0.1:28"}"#));
    assert_eq!(refusal(&r), (422, "invalid_request".to_string()), "{r:?}");
    for (what, r) in &refused {
        assert_eq!(refusal(r), (400, "invalid_request".to_string()), "{what}: {r:?}");
    }
    assert_eq!(cluster.status(1).unwrap()["last_log_index"].as_u64().unwrap(), before, "nothing was proposed");
    assert_eq!(sharers(), json!([{"user": "alice", "peer_addr": "127.0.0.1:26", "peer_key": key(0xbb)}]));
    assert_eq!(cluster.status(1).unwrap()["files"], 1);
}

#[test]
fn liveness_calls_are_the_leaders_soft_state_and_going_away_drops_a_sharer_at_once() {
    let cluster = InprocCluster::start(3);
    let leader = cluster.wait_leader(&[]);
    let api = cluster.api(leader).to_string();
    let alice = token(&cluster, "alice");
    group_with(&api, "team", &alice, &[]);
    upload(&api, &alice, "team", "doc.txt", "10.0.0.1:25", &key(0xaa));
    let sharers = || ok(call(&api, "GET", "/v1/groups/team/files/doc.txt", Some(&alice), None))["sharers"].clone();
    let listed = json!([{"user": "alice", "peer_addr": "127.0.0.1:25", "peer_key": key(0xaa)}]);
    assert_eq!(sharers(), listed);
    let body = |addr: &str, k: &str| json!({"peer_addr": addr, "peer_key": k}).to_string();
    let me = body("10.9.9.9:25", &key(0xaa));

    // A follower redirects, like every call (checked against one stable view of who leads).
    let (now_leader, _, follower, r) =
        from_a_follower(&cluster, |api| http_as(api, "POST", "/v1/peer/alive", Some(&alice), None, Some(&me)));
    assert_eq!(r.status, 307, "node {follower}: {r:?}");
    assert_eq!(r.json()["leader"]["id"], now_leader, "{r:?}");
    // The leader answers from memory: nothing reaches the log.
    let before = cluster.status(leader).unwrap()["last_log_index"].as_u64().unwrap();
    for _ in 0..5 {
        let v = ok(call(&api, "POST", "/v1/peer/alive", Some(&alice), Some(&me)));
        assert_eq!(
            v,
            json!({"ok": true, "user": "alice", "peer_addr": "127.0.0.1:25", "listed": true, "alive_every_ms": 10_000})
        );
    }
    assert_eq!(cluster.status(leader).unwrap()["last_log_index"].as_u64().unwrap(), before, "no log entry");
    // Another key or port is not the daemon the tracker lists: it speaks for nobody.
    for other in [body("127.0.0.1:25", &key(0xbb)), body("127.0.0.1:26", &key(0xaa))] {
        let v = ok(call(&api, "POST", "/v1/peer/alive", Some(&alice), Some(&other)));
        assert_eq!(v["listed"], false, "{v}");
        let v = ok(call(&api, "DELETE", "/v1/peer/alive", Some(&alice), Some(&other)));
        assert_eq!(v["listed"], false, "{v}");
    }
    assert_eq!(sharers(), listed);
    // Refusals: no session, a malformed body.
    let r = call(&api, "POST", "/v1/peer/alive", None, Some(&me));
    assert_eq!(refusal(&r), (401, "unauthenticated".to_string()), "{r:?}");
    let r = call(&api, "POST", "/v1/peer/alive", Some(&"0".repeat(64)), Some(&me));
    assert_eq!(refusal(&r), (401, "unauthenticated".to_string()), "{r:?}");
    let r = call(&api, "POST", "/v1/peer/alive", Some(&alice), Some(&body("10.0.0.1:0", &key(0xaa))));
    assert_eq!(refusal(&r), (400, "invalid_request".to_string()), "{r:?}");

    // Going away drops the sharer at once (even in the new leader's grace period); the file
    // stays listed; saying alive again brings it back.
    let v = ok(call(&api, "DELETE", "/v1/peer/alive", Some(&alice), Some(&me)));
    assert_eq!(v["listed"], true, "{v}");
    assert_eq!(sharers(), json!([]));
    let files = ok(call(&api, "GET", "/v1/groups/team/files", Some(&alice), None));
    assert_eq!(files[0]["sharers"], 0, "{files}");
    ok(call(&api, "POST", "/v1/peer/alive", Some(&alice), Some(&me)));
    assert_eq!(sharers(), listed);
    assert_eq!(cluster.status(leader).unwrap()["last_log_index"].as_u64().unwrap(), before, "no log entry");
}

#[test]
fn the_owner_removes_a_member_whose_shares_in_the_group_end() {
    let cluster = InprocCluster::start(1);
    let api = cluster.api(1).to_string();
    let [alice, bob, carol, dave, me] = ["alice", "bob", "carol", "dave", "me"].map(|u| token(&cluster, u));
    group_with(&api, "team", &alice, &[&bob, &carol, &me]);
    group_with(&api, "other", &bob, &[]);
    let up = |t: &str, g: &str, name: &str, k: u8| upload(&api, t, g, name, "127.0.0.1:9", &key(k));
    up(&alice, "team", "a.txt", 1);
    up(&bob, "team", "a.txt", 2);
    up(&bob, "team", "b.txt", 2);
    up(&bob, "other", "c.txt", 2);
    let sharers_of = |t: &str, g: &str| -> Vec<(String, u64)> {
        let rows = ok(call(&api, "GET", &format!("/v1/groups/{g}/files"), Some(t), None));
        rows.as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap().to_string(), f["sharers"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(sharers_of(&alice, "team"), vec![("a.txt".into(), 2), ("b.txt".into(), 1)]);

    let remove = |t: &str, user: &str| call(&api, "DELETE", &format!("/v1/groups/team/members/{user}"), Some(t), None);
    let members = || {
        let groups = ok(call(&api, "GET", "/v1/groups", Some(&alice), None));
        // A page of groups (`{"groups": [...], "next_after": ...}`), or the bare list of old.
        let groups = groups.get("groups").cloned().unwrap_or(groups);
        groups.as_array().unwrap().iter().find(|g| g["group"] == "team").unwrap()["members"].clone()
    };
    let cases = [
        (remove(&bob, "carol"), (403, "not_owner")),
        (remove(&carol, "bob"), (403, "not_owner")),
        (remove(&alice, "alice"), (403, "not_allowed")),
        (remove(&alice, "dave"), (403, "not_member")),
        (remove(&alice, "a%20b"), (400, "invalid_name")),
        (call(&api, "DELETE", "/v1/groups/nope/members/bob", Some(&alice), None), (404, "no_such_group")),
        (remove(&dave, "bob"), (403, "not_owner")),
    ];
    for (r, want) in &cases {
        assert_eq!(refusal(r), (want.0, want.1.to_string()), "{r:?}");
    }
    assert!(remove(&alice, "alice").json()["error"]["message"].as_str().unwrap().contains("leave"));
    assert_eq!(members(), json!(4), "no refusal removed anyone");
    assert_eq!(sharers_of(&alice, "team"), vec![("a.txt".into(), 2), ("b.txt".into(), 1)]);

    let v = ok(remove(&alice, "bob"));
    assert_eq!(v, json!({"ok": true, "group": "team", "user": "bob", "shares_ended": 2}));
    // The files stay listed with fewer sharers; bob reads none of them; his share elsewhere stays.
    assert_eq!(sharers_of(&alice, "team"), vec![("a.txt".into(), 1), ("b.txt".into(), 0)]);
    let r = call(&api, "GET", "/v1/groups/team/files", Some(&bob), None);
    assert_eq!(refusal(&r), (403, "not_member".to_string()), "{r:?}");
    let r = call(&api, "GET", "/v1/groups/team/files/a.txt", Some(&bob), None);
    assert_eq!(refusal(&r), (403, "not_member".to_string()), "{r:?}");
    assert_eq!(sharers_of(&bob, "other"), vec![("c.txt".into(), 1)]);
    let details = ok(call(&api, "GET", "/v1/groups/team/files/a.txt", Some(&alice), None));
    assert_eq!(details["sharers"], json!([{"user": "alice", "peer_addr": "127.0.0.1:9", "peer_key": key(1)}]));
    // Removing him again: he is not a member.
    assert_eq!(refusal(&remove(&alice, "bob")), (403, "not_member".to_string()));

    // The client library: a user named "me" is removed, not taken for the owner leaving.
    let rt = runtime();
    let owner = cluster.client().with_token(Some(alice.clone()));
    let v = rt.block_on(owner.remove_member("team", "me")).unwrap();
    assert_eq!((v.user.as_str(), v.shares_ended), ("me", 0), "{v:?}");
    let groups = rt.block_on(owner.list_groups()).unwrap();
    let team = groups.iter().find(|g| g.group == "team").unwrap();
    assert_eq!((team.owner.as_str(), team.members, team.member), ("alice", 2, true), "{groups:?}");
    let r = call(&api, "GET", "/v1/groups/team/files", Some(&me), None);
    assert_eq!(refusal(&r), (403, "not_member".to_string()));
    let e = rt.block_on(cluster.client().with_token(Some(carol.clone())).remove_member("team", "alice")).unwrap_err();
    assert_eq!(e.code(), "not_owner");
}
