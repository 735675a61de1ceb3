//! The API's contract over real HTTP, against real nodes: every refusal code of docs/API.md
//! with its documented status (`rate_limited` included), `GET /v1/session` (whoami), and passwords that never reach a
//! log, a data file (sled's log, snapshots) or a process's argv. The first two run their nodes in
//! this process (testkit::inproc); the last needs processes (their argv and their stderr).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::inproc::InprocCluster;
use testkit::*;

const WAIT: Duration = Duration::from_secs(20);

/// Sends a request to `addr` and follows 307s to the leader (a raw client doing what the API
/// says), waiting out the 503s of an election. Returns the first other answer and the statuses
/// seen before it.
fn follow(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (HttpResponse, Vec<u16>) {
    let mut addr = addr.to_string();
    let mut seen = Vec::new();
    for _ in 0..100 {
        let r = http_as(&addr, method, path, token, None, body);
        match r.status {
            307 => {
                let location = r.header("location").expect("a 307 has a Location").to_string();
                let rest = location.strip_prefix("http://").expect("Location is an http URL");
                addr = rest.split('/').next().unwrap().to_string();
            }
            503 => std::thread::sleep(Duration::from_millis(50)),
            _ => return (r, seen),
        }
        seen.push(r.status);
    }
    panic!("{method} {path}: no leader answered ({seen:?})");
}

fn ok(r: HttpResponse) -> Value {
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn register(addr: &str, user: &str, password: &str) {
    ok(http_as(addr, "POST", "/v1/users", None, None, Some(&json!({"user": user, "password": password}).to_string())));
}

fn login(addr: &str, user: &str, password: &str) -> String {
    let v = ok(http_as(
        addr,
        "POST",
        "/v1/sessions",
        None,
        None,
        Some(&json!({"user": user, "password": password}).to_string()),
    ));
    v["token"].as_str().unwrap().to_string()
}

fn upload_body(name: &str, size: u64, sha1: &str) -> String {
    json!({
        "file": {"name": name, "size": size, "piece_len": 524288, "piece_list_sha1": "1".repeat(40), "sha1": sha1},
        "peer_addr": "127.0.0.1:9",
        "peer_key": "ab".repeat(32)
    })
    .to_string()
}

#[test]
fn every_refusal_code_of_the_api_has_its_documented_status() {
    const SECRET: &str = "refusal-table-secret";
    let cluster = InprocCluster::start_with(ClusterOptions {
        nodes: 1,
        start: 1,
        extra: format!("secret = \"{SECRET}\""),
        ..Default::default()
    });
    cluster.wait_leader(&[]);
    let api = cluster.api(1);

    // alice owns "team" (with a file in it), bob is a member, carol is not.
    for u in ["alice", "bob", "carol"] {
        register(api, u, &format!("{u}-password"));
    }
    let alice = login(api, "alice", "alice-password");
    let bob = login(api, "bob", "bob-password");
    let carol = login(api, "carol", "carol-password");
    ok(http_as(api, "POST", "/v1/groups", Some(&alice), None, Some(r#"{"group":"team"}"#)));
    ok(http_as(api, "POST", "/v1/groups/team/requests", Some(&bob), None, None));
    ok(http_as(api, "POST", "/v1/groups/team/members", Some(&alice), None, Some(r#"{"user":"bob"}"#)));
    ok(http_as(
        api,
        "POST",
        "/v1/groups/team/files",
        Some(&alice),
        None,
        Some(&upload_body("doc.txt", 1000, &"a".repeat(40))),
    ));
    ok(http_as(api, "POST", "/v1/groups", Some(&alice), Some("key-1"), Some(r#"{"group":"keyed"}"#)));

    let forged = "ab".repeat(32);
    let admin = r#"{"action":"remove","id":1,"api":"127.0.0.1:1","raft":"127.0.0.1:2"}"#;
    let big = upload_body("big.iso", (1u64 << 40) + 1, &"b".repeat(40));
    let conflict = upload_body("doc.txt", 1000, &"c".repeat(40));
    // (code, status, method, path, token, idempotency key, body)
    type Case<'a> = (&'a str, u16, &'a str, &'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("invalid_name", 400, "POST", "/v1/groups", Some(&alice), None, Some(r#"{"group":"no spaces allowed"}"#)),
        ("invalid_request", 400, "POST", "/v1/users", None, None, Some(r#"{"user":"dave","password":""}"#)),
        ("bad_credentials", 401, "POST", "/v1/sessions", None, None, Some(r#"{"user":"alice","password":"wrong"}"#)),
        ("unauthenticated", 401, "GET", "/v1/groups", None, None, None),
        ("unauthenticated", 401, "GET", "/v1/groups", Some(&forged), None, None),
        ("not_member", 403, "GET", "/v1/groups/team/files", Some(&carol), None, None),
        ("not_owner", 403, "GET", "/v1/groups/team/requests", Some(&bob), None, None),
        ("not_allowed", 403, "DELETE", "/v1/groups/team/members/alice", Some(&alice), None, None),
        ("forbidden", 403, "POST", "/v1/admin/members", None, None, Some(admin)),
        ("no_such_group", 404, "GET", "/v1/groups/nope/files", Some(&alice), None, None),
        ("no_such_file", 404, "GET", "/v1/groups/team/files/nope.txt", Some(&alice), None, None),
        ("no_such_request", 404, "POST", "/v1/groups/team/members", Some(&alice), None, Some(r#"{"user":"carol"}"#)),
        ("user_exists", 409, "POST", "/v1/users", None, None, Some(r#"{"user":"alice","password":"x"}"#)),
        ("group_exists", 409, "POST", "/v1/groups", Some(&alice), None, Some(r#"{"group":"team"}"#)),
        ("already_member", 409, "POST", "/v1/groups/team/requests", Some(&bob), None, None),
        ("file_conflict", 409, "POST", "/v1/groups/team/files", Some(&alice), None, Some(&conflict)),
        ("file_too_large", 413, "POST", "/v1/groups/team/files", Some(&alice), None, Some(&big)),
        (
            "idempotency_key_reused",
            422,
            "POST",
            "/v1/groups",
            Some(&alice),
            Some("key-1"),
            Some(r#"{"group":"other"}"#),
        ),
    ];
    // Every code docs/API.md lists under "Refusals" is in the table.
    let documented = [
        "invalid_name",
        "invalid_request",
        "bad_credentials",
        "unauthenticated",
        "not_member",
        "not_owner",
        "not_allowed",
        "forbidden",
        "no_such_group",
        "no_such_file",
        "no_such_request",
        "user_exists",
        "group_exists",
        "already_member",
        "file_conflict",
        "file_too_large",
        "idempotency_key_reused",
    ];
    for code in documented {
        assert!(cases.iter().any(|c| c.0 == code), "{code} has no case");
    }
    let mut wrong = Vec::new();
    for (code, status, method, path, token, key, body) in &cases {
        let r = http_as(api, method, path, *token, *key, *body);
        let v = r.json();
        let shaped = v["error"]["code"] == *code && v["error"]["message"].as_str().is_some_and(|m| !m.is_empty());
        let json_type = r.header("content-type").is_some_and(|t| t.starts_with("application/json"));
        if r.status != *status || !shaped || !json_type {
            wrong.push(format!("{code}: want {status}, got {} {:?} {}", r.status, r.header("content-type"), r.body));
        }
    }
    assert!(wrong.is_empty(), "refusals not as documented:\n{}", wrong.join("\n"));

    // rate_limited: logins are throttled per user after 3 free failures; a throttled attempt
    // is 429 with Retry-After, even with the right password (it gets no password check).
    register(api, "eve", "eve-password");
    let as_eve = |pw: &str| {
        http_as(api, "POST", "/v1/sessions", None, None, Some(&json!({"user": "eve", "password": pw}).to_string()))
    };
    let mut statuses = Vec::new();
    while statuses.len() < 6 && statuses.last() != Some(&429) {
        statuses.push(as_eve("wrong").status);
    }
    // [401, 401, 401, 429]; one more 401 if this machine stalled past the first 1 s wait.
    let n = statuses.len();
    assert!(
        statuses[n - 1] == 429 && n >= 4 && statuses[..n - 1].iter().all(|s| *s == 401),
        "3 free failures, then throttled: {statuses:?}"
    );
    let throttled_at = std::time::Instant::now();
    let r = as_eve("eve-password");
    if throttled_at.elapsed() < Duration::from_secs(1) {
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (429, Some("rate_limited")), "{r:?}");
        assert!(r.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1), "{r:?}");
        assert!(r.header("content-type").is_some_and(|t| t.starts_with("application/json")), "{r:?}");
    }

    // Refusals changed nothing: the state is what the setup made.
    let st = cluster.status(1).unwrap();
    assert_eq!(
        (st["users"].as_u64(), st["groups"].as_u64(), st["files"].as_u64()),
        (Some(4), Some(2), Some(1)),
        "{st}"
    );
}

#[test]
fn whoami_names_the_session_user_through_the_leader_until_logout() {
    let cluster = InprocCluster::start(3);
    let rt = runtime();
    let alice = rt.block_on(logged_in(&cluster.client(), "alice")).token().unwrap().to_string();
    let bob = rt.block_on(logged_in(&cluster.client(), "bob")).token().unwrap().to_string();
    let whoami = |id: u64, token: Option<&str>| follow(cluster.api(id), "GET", "/v1/session", token, None).0;

    for id in cluster.ids() {
        assert_eq!(ok(whoami(id, Some(&alice))), json!({"ok": true, "user": "alice"}), "from node {id}");
        assert_eq!(ok(whoami(id, Some(&bob))), json!({"ok": true, "user": "bob"}), "from node {id}");
    }
    // A follower sends the read to the leader (reads see every acknowledged write).
    let (leader, term) = cluster.wait_stable_leader();
    let follower = cluster.other_than(&[leader]);
    let r = http_as(cluster.api(follower), "GET", "/v1/session", Some(&alice), None, None);
    if cluster.stable_view().is_some_and(|(l, t, _)| (l, t) == (leader, term)) {
        assert_eq!(r.status, 307, "{r:?}");
        assert_eq!(r.header("location"), Some(format!("http://{}/v1/session", cluster.api(leader)).as_str()));
    }
    // The client library's call.
    let c = cluster.client().with_token(Some(alice.clone()));
    assert_eq!(rt.block_on(c.whoami()).unwrap(), proto::api::UserBody { user: "alice".into() });

    // Without a session, with a malformed one, with one nobody opened: 401 unauthenticated.
    for token in [None, Some("not-a-token"), Some(&*"cd".repeat(32))] {
        let r = whoami(follower, token);
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("unauthenticated")), "{token:?}: {r:?}");
    }
    // Logout ends the session at once, cluster-wide; bob's is untouched.
    let (r, _) = follow(cluster.api(follower), "DELETE", "/v1/sessions", Some(&alice), None);
    assert_eq!(ok(r)["user"], "alice");
    for id in cluster.ids() {
        let r = whoami(id, Some(&alice));
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (401, Some("unauthenticated")),
            "from node {id}: {r:?}"
        );
        let c = client_of(cluster.api(id)).with_token(Some(alice.clone()));
        assert_eq!(rt.block_on(c.whoami()).unwrap_err().code(), "unauthenticated", "through node {id}");
    }
    assert_eq!(ok(whoami(leader, Some(&bob)))["user"], "bob");
}

fn client_of(api: &str) -> tracker_client::TrackerClient {
    tracker_client::TrackerClient::new(vec![api.to_string()], tracker_client::RetryPolicy::default())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// docs/CONTRACT.md: "A password never appears in argv, logs or the Raft log". Passwords go in
/// through every door (register through a follower and the leader, a failed and a good login,
/// the client library), the nodes log at debug level, snapshots are taken so that the state
/// is on disk in every form; then every byte of every node's log file and data directory is
/// searched. The argon2 hash the leader computed must be found there (the search reads the
/// right files, in a form where a string is visible), the passwords must not.
#[test]
fn a_password_never_reaches_a_log_a_data_file_or_argv() {
    const PASSWORD: &str = "Zq7-unmistakable-Password-4491";
    const WRONG: &str = "Xk2-another-unmistakable-9917";
    const CLIENT_PASSWORD: &str = "Mv5-third-unmistakable-2286";
    let mut cluster = Cluster::start_with(ClusterOptions {
        start: 0,
        extra: "snapshot_logs_threshold = 10".into(),
        ..Default::default()
    });
    for id in cluster.ids() {
        cluster.set_node_env(id, "RUST_LOG", "debug");
        cluster.start_node(id);
    }
    let (leader, _) = cluster.wait_stable_leader();
    let follower = cluster.other_than(&[leader]);
    let body = json!({"user": "alice", "password": PASSWORD}).to_string();

    // Through a follower: redirected to the leader (the follower read the body, and must not
    // keep it anywhere), which hashes it.
    let (r, _) = follow(cluster.api(follower), "POST", "/v1/users", None, Some(&body));
    assert_eq!(r.status, 200, "{r:?}");
    let rt = runtime();
    let client = cluster.client();
    rt.block_on(client.register("bob", CLIENT_PASSWORD)).unwrap();
    let wrong = rt.block_on(client.login("alice", WRONG)).unwrap_err();
    assert_eq!(wrong.code(), "bad_credentials");
    let alice = client.with_token(Some(rt.block_on(client.login("alice", PASSWORD)).unwrap().token));
    rt.block_on(client.login("bob", CLIENT_PASSWORD)).unwrap();
    // Enough entries after the accounts for every node to snapshot them.
    for i in 0..25 {
        rt.block_on(alice.create_group(&format!("g{i}"))).unwrap();
    }
    cluster.wait_converged(WAIT);
    wait_until("every node to snapshot past the accounts", WAIT, || {
        cluster
            .ids()
            .iter()
            .all(|id| cluster.status(*id).is_some_and(|st| st["snapshot_index"].as_u64().unwrap_or(0) >= 10))
    });

    // argv of every node.
    for id in cluster.ids() {
        let pid = cluster.pid(id).unwrap();
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        for pw in [PASSWORD, WRONG, CLIENT_PASSWORD] {
            assert!(!contains(&argv, pw.as_bytes()), "node {id}'s argv holds a password");
        }
    }
    // Stop every node cleanly, so that everything is flushed to disk, then read it all.
    for id in cluster.ids() {
        assert_eq!(cluster.terminate(id, WAIT), Some(0));
    }
    let mut leaks = Vec::new();
    let mut hashes_found_in = Vec::new();
    let files = files_under(cluster.dir.path());
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for pw in [PASSWORD, WRONG, CLIENT_PASSWORD] {
            if contains(&bytes, pw.as_bytes()) {
                leaks.push(format!("{} holds {pw:?}", f.display()));
            }
        }
        if contains(&bytes, b"$argon2id$") {
            hashes_found_in.push(f.strip_prefix(cluster.dir.path()).unwrap().display().to_string());
        }
    }
    assert!(leaks.is_empty(), "passwords on disk:\n{}", leaks.join("\n"));
    // The search can see what is there: each node's data directory holds the argon2 hashes.
    for id in cluster.ids() {
        assert!(
            hashes_found_in.iter().any(|f| f.starts_with(&format!("node-{id}/"))),
            "no argon2 hash under node-{id}: {hashes_found_in:?}"
        );
    }
    let logs: Vec<String> = cluster.ids().iter().map(|id| cluster.log(*id)).collect();
    assert!(logs.iter().all(|l| l.contains("DEBUG")), "the nodes logged at debug level");
    assert!(files.len() > 3 * 3, "node logs, sled files and snapshots were searched: {files:?}");
}
