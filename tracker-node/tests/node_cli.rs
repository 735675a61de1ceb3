//! The `tracker-node` command itself: bad cluster files and bad flags (exit 2), the cluster
//! secret, SIGTERM, `up` (a local cluster as child processes, all stopped on Ctrl-C), and the
//! `status` output of the contract for every role: leader, follower, learner, candidate and
//! unreachable.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::*;

const WAIT: Duration = Duration::from_secs(20);

/// `tracker-node status --config <cluster> --json`, parsed.
fn status_json(cluster: &Cluster) -> Vec<Value> {
    let out = tracker_node(&["status", "--config", cluster.config.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "status: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().clone()
}

fn row(rows: &[Value], id: u64) -> &Value {
    rows.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no row for node {id}: {rows:?}"))
}

/// Every field of the contract's row other than `id`, `api` and `reachable` is null.
fn assert_unreachable_row(r: &Value) {
    assert_eq!(r["reachable"], false, "{r}");
    for k in ["role", "term", "leader", "last_log_index", "applied_index", "voters", "learners"] {
        assert!(r[k].is_null(), "{k} of an unreachable node is null: {r}");
    }
}

#[test]
fn a_bad_cluster_file_is_exit_2_with_the_file_the_line_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    // (file text, the line, the problem as proto::cluster words it; None: toml's own words)
    let cases: [(&str, usize, Option<&str>); 4] = [
        (
            "[cluster]\nheartbeat_ms = 20\n\n[[node]]\nid = 1\napi = \"127.0.0.1:99999\"\nraft = \"127.0.0.1:7101\"\ndata_dir = \"n1\"\n",
            6,
            Some("api \"127.0.0.1:99999\" is not an address like \"127.0.0.1:7001\""),
        ),
        (
            "[cluster]\nheartbeat_ms = 20\nelection_timeout_ms = [10, 5]\n",
            3,
            Some("election_timeout_ms must be [min, max] with 0 < min < max"),
        ),
        ("[cluster\n", 1, None),
        (
            "[cluster]\n\n[[node]]\nid = 1\napi = \"127.0.0.1:7001\"\nraft = \"127.0.0.1:7101\"\ndata_dir = \"a\"\n\n[[node]]\nid = 1\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"b\"\n",
            10,
            Some("duplicate node id 1 (first at line 4)"),
        ),
    ];
    for (i, (text, line, problem)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}-cluster.toml"));
        std::fs::write(&path, text).unwrap();
        let file = path.to_str().unwrap();
        // Every subcommand that reads the file refuses it the same way, before doing anything.
        for args in [
            vec!["run", "--config", file, "--id", "1"],
            vec!["up", "--config", file],
            vec!["status", "--config", file],
            vec!["status", "--config", file, "--json"],
            vec!["members", "add", "--config", file, "--id", "1"],
            vec!["members", "remove", "--config", file, "--id", "1"],
        ] {
            let out = tracker_node(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "case {i} {args:?}: {err}");
            let at = format!("error: {file}:{line}: ");
            match problem {
                Some(p) => assert_eq!(
                    err,
                    format!("{at}{p}\n"),
                    "case {i} {args:?}: one line naming the file, the line and the problem"
                ),
                None => {
                    assert!(err.starts_with(&at) && err.len() > at.len() + 5, "case {i} {args:?}: {err}");
                    assert_eq!(err.lines().count(), 1, "case {i} {args:?}: one line: {err}");
                }
            }
            assert!(out.stdout.is_empty(), "case {i} {args:?}: nothing on stdout");
        }
    }
    let missing = dir.path().join("missing.toml");
    let out = tracker_node(&["run", "--config", missing.to_str().unwrap(), "--id", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(&format!("error: cannot read {}: ", missing.display())), "{err}");
    // A node id the file does not list.
    let path = dir.path().join("one-node.toml");
    std::fs::write(
        &path,
        "[cluster]\n\n[[node]]\nid = 1\napi = \"127.0.0.1:7001\"\nraft = \"127.0.0.1:7101\"\ndata_dir = \"a\"\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    for args in [
        vec!["run", "--config", file, "--id", "9"],
        vec!["members", "add", "--config", file, "--id", "9"],
        vec!["members", "remove", "--config", file, "--id", "9"],
    ] {
        let out = tracker_node(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("error: {file}: node 9 is not listed (listed ids: 1)\n"),
            "{args:?}"
        );
    }
}

#[test]
fn bad_flags_are_exit_2_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    // A valid file, so that only the flags are wrong (no node listens at these ports: nothing
    // here may get as far as calling one).
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, "[[node]]\nid = 1\napi = \"127.0.0.1:1\"\nraft = \"127.0.0.1:2\"\ndata_dir = \"a\"\n")
        .unwrap();
    let f = path.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["--bogus"],
        &["run", "--config", f],
        &["run", "--config", f, "--id", "one"],
        &["run", "--config", f, "--id", "-1"],
        &["run", "--config", f, "--id", "1", "--bogus"],
        &["run", "--config", f, "--id", "1", "extra"],
        &["run", "--config"],
        &["up", "--config", f, "--id", "1"],
        &["up", "--config", f, "--bogus"],
        &["up", "--config"],
        &["status", "--config", f, "--json=yes"],
        &["status", "--config", f, "--verbose"],
        &["status", "--config", f, "extra"],
        &["members"],
        &["members", "--config", f],
        &["members", "promote", "--config", f, "--id", "1"],
        &["members", "add", "--config", f],
        &["members", "add", "--config", f, "--id", "x"],
        &["members", "add", "--config", f, "--id", "1", "--json=yes"],
        &["members", "remove", "--config", f],
        &["members", "remove", "--config", f, "--id", ""],
        &["certs", "--config", f, "--bogus"],
        &["certs", "--config", f, "extra"],
        &["certs", "--config", f, "--out"],
        &["snapshot"],
        &["snapshot", "save", "--config", f],
        &["snapshot", "save", "--config", f, "out.snap", "extra"],
        &["snapshot", "save", "--config", f, "out.snap", "--bogus"],
        &["snapshot", "load", "--config", f, "out.snap"],
        &["restore", "--config", f],
        &["restore", "--config", f, "--from"],
        &["restore", "--config", f, "--from", "in.snap", "--bogus"],
        &["restore", "--config", f, "--from", "in.snap", "extra"],
    ];
    let mut wrong = Vec::new();
    for args in cases {
        let started = Instant::now();
        let out = tracker_node(args);
        let err = String::from_utf8_lossy(&out.stderr);
        // A command cut short (no subcommand) gets clap's usage, on stderr; anything else an
        // `error: ` line.
        let incomplete = args.is_empty() || *args == ["members"] || *args == ["snapshot"];
        let explained = if incomplete { err.contains("Usage: tracker-node") } else { err.starts_with("error: ") };
        if out.status.code() != Some(2) || !explained || !out.stdout.is_empty() {
            wrong.push(format!(
                "{args:?}: exit {:?}, stderr {err:?}, stdout {:?}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?} did not stop at the flags");
    }
    assert!(
        wrong.is_empty(),
        "every bad invocation is exit 2 with `error: ...` (or the usage) on stderr:\n{}",
        wrong.join("\n")
    );
}

/// `TRACKER_RAFT_ROUTES` (a fault-injection hook) takes loopback routes only: any other stops
/// `run` at start with one error naming the variable, and a loopback route is run with a warning
/// in the node's log, so an inherited variable never reroutes Raft traffic silently.
#[test]
fn raft_routes_to_a_non_loopback_address_stop_the_node_and_a_loopback_one_is_logged() {
    let mut cluster = Cluster::start_with(ClusterOptions { nodes: 3, start: 0, ..Default::default() });
    let config = cluster.config.to_str().unwrap().to_string();
    for route in ["2=10.0.0.1:1", "2=127.0.0.1:9,3=192.168.1.1:9", "2=[::ffff:10.0.0.1]:1"] {
        let started = Instant::now();
        let mut child = Command::new(workspace_bin("tracker-node"))
            .args(["run", "--config", &config, "--id", "1"])
            .env("TRACKER_RAFT_ROUTES", route)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It must stop by itself; a node that runs on is killed and the test fails.
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > WAIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tracker-node run with TRACKER_RAFT_ROUTES={route} did not stop at start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{route}: {err}");
        assert!(out.status.code().is_some(), "{route}: an exit, not a signal: {:?}", out.status);
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{route}: one error line: {err}");
        assert!(
            errors[0].contains("TRACKER_RAFT_ROUTES") && errors[0].contains("is not a loopback address"),
            "{route}: {err}"
        );
        assert!(cluster.status(1).is_none(), "{route}: the api must not be served");
    }

    // A loopback route: the node starts and serves, and its log says at warn level that Raft
    // traffic is rerouted, and where to.
    cluster.set_node_env(1, "TRACKER_RAFT_ROUTES", "2=127.0.0.1:1,3=[::1]:2");
    cluster.start_node(1);
    wait_until("node 1 to serve its api", WAIT, || cluster.status(1).is_some());
    let mut warning = String::new();
    wait_until("node 1's log to warn that TRACKER_RAFT_ROUTES is set", WAIT, || {
        let log = cluster.log(1);
        match log.lines().find(|l| l.contains("TRACKER_RAFT_ROUTES is set: Raft traffic is rerouted")) {
            Some(l) => {
                warning = l.to_string();
                true
            }
            None => false,
        }
    });
    assert!(warning.contains("WARN"), "at warn level: {warning}");
    assert!(warning.contains("127.0.0.1:1") && warning.contains("[::1]:2"), "names the routes: {warning}");
    assert!(!cluster.log(1).lines().any(|l| l.starts_with("error: ")), "{}", cluster.log(1));

    assert_eq!(cluster.terminate(1, WAIT), Some(0), "{}", cluster.log(1));
}

#[test]
fn with_a_secret_raft_and_admin_calls_without_it_are_refused() {
    let cluster =
        Cluster::start_with(ClusterOptions { extra: "secret = \"s3cret-for-tests\"".into(), ..Default::default() });
    let leader = cluster.wait_leader(&[]);
    let raft = &cluster.rafts[(leader - 1) as usize];
    let vote = r#"{"vote":{"leader_id":{"term":999,"node_id":2},"committed":false},"last_log_id":null}"#;
    // Refused: 403 for a call without the secret, or, where the Raft port speaks mutual TLS,
    // 400 for a plaintext call before any secret is looked at.
    for headers in [vec![], vec![("x-cluster-secret", "wrong")]] {
        let r = http(raft, "POST", "/raft/vote", &headers, Some(vote)).expect("raft port answers");
        assert!(r.status == 403 || (r.status == 400 && r.body.contains("mutual TLS")), "{headers:?}: {r:?}");
    }
    let members = r#"{"action":"remove","id":2,"api":"127.0.0.1:1","raft":"127.0.0.1:1"}"#;
    let r = http(cluster.api(leader), "POST", "/v1/admin/members", &[], Some(members)).unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "forbidden");
    // The secret opens admin calls over TLS only: in clear it is refused even when right. (An
    // accepted call may meet a leader change: 307 also means the credential passed.)
    let right = ("x-cluster-secret", "s3cret-for-tests");
    let r = http(cluster.api(leader), "GET", "/v1/admin/snapshot", &[right], None).unwrap();
    assert_eq!((r.status, r.json()["error"]["code"].clone()), (403, json!("forbidden")), "{r:?}");
    let snapshot = |headers: &[(&str, &str)]| {
        let (get, path) = ("GET", "/v1/admin/snapshot");
        https_with_timeout(&cluster.config, TlsAs::Anonymous, cluster.api(leader), get, path, headers, None, WAIT)
            .unwrap()
            .status
    };
    assert_eq!(snapshot(&[]), 403);
    assert_eq!(snapshot(&[("x-cluster-secret", "wrong")]), 403);
    assert!([200, 307].contains(&snapshot(&[right])));
    // The forged vote moved nothing: no node took its term of 999 (an election of its own
    // may happen on a busy machine; one to term 999 cannot), and the voters are the same.
    for id in cluster.ids() {
        let st = cluster.status(id).unwrap();
        assert_eq!(st["voters"], json!([1, 2, 3]), "node {id}: {st}");
        assert!(st["term"].as_u64().unwrap() < 999, "node {id} took the forged term: {st}");
    }
    // The secret is never logged.
    for id in cluster.ids() {
        assert!(!cluster.log(id).contains("s3cret-for-tests"), "node {id} logged the secret");
    }
}

#[test]
fn sigterm_stops_a_node_cleanly_and_it_restarts_from_disk() {
    let mut cluster = Cluster::start(3);
    let rt = runtime();
    let admin = rt.block_on(logged_in(&cluster.client(), "alice"));
    rt.block_on(admin.create_group("kept")).unwrap();
    let leader = cluster.wait_leader(&[]);
    assert_eq!(
        cluster.terminate(leader, Duration::from_secs(10)),
        Some(0),
        "exit 0 on SIGTERM:\n{}",
        cluster.log(leader)
    );
    rt.block_on(admin.create_group("while_down")).unwrap();
    cluster.start_node(leader);
    cluster.wait_converged(Duration::from_secs(20));
    assert_eq!(rt.block_on(group_names(&admin)), vec!["kept", "while_down"]);
}

/// Runs `status` until its rows match one stable view of the cluster: an election between the
/// view and the command (the term moved) is a reason to look again, a wrong row is not.
/// `check` gets the view's leader and term and the command's output, and returns `Err` only
/// for "the term moved".
fn status_against_stable_view<T>(cluster: &Cluster, mut check: impl FnMut(u64, u64) -> Result<T, String>) -> T {
    let mut moved = Vec::new();
    for _ in 0..5 {
        let (leader, term) = cluster.wait_stable_leader();
        match check(leader, term) {
            Ok(t) => return t,
            Err(why) => moved.push(why),
        }
    }
    panic!("the term kept moving under `status`: {moved:?}");
}

#[test]
fn status_prints_one_row_per_listed_node_and_json_per_contract() {
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_stable_leader();
    let down = cluster.other_than(&[leader]);
    cluster.kill(down);
    let config = cluster.config.to_str().unwrap().to_string();

    status_against_stable_view(&cluster, |leader, term| {
        let rows = status_json(&cluster);
        assert_eq!(rows.len(), 3, "one row per listed node: {rows:?}");
        if let Some(r) = rows.iter().find(|r| r["reachable"] == true && r["term"] != term) {
            return Err(format!("term {term} -> {r}"));
        }
        for id in cluster.ids() {
            let r = row(&rows, id);
            assert_eq!(r["api"], cluster.api(id));
            if id == down {
                assert_unreachable_row(r);
                continue;
            }
            assert_eq!(r["reachable"], true, "{r}");
            assert_eq!(r["role"], if id == leader { "leader" } else { "follower" }, "{r}");
            assert_eq!(r["leader"], leader, "{r}");
            assert_eq!(r["voters"], json!([1, 2, 3]), "{r}");
            assert_eq!(r["learners"], json!([]), "{r}");
            let (last, applied) = (r["last_log_index"].as_u64().unwrap(), r["applied_index"].as_u64().unwrap());
            assert!(applied <= last && applied > 0, "{r}");
        }
        Ok(())
    });

    status_against_stable_view(&cluster, |leader, term| {
        let out = tracker_node(&["status", "--config", &config]);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "a header and one row per node:\n{text}");
        assert!(lines[0].starts_with("id"), "{text}");
        let row = |id: u64| lines.iter().find(|l| l.split_whitespace().next() == Some(&id.to_string())).copied();
        let cols = |id: u64| {
            row(id).unwrap_or_else(|| panic!("no row for {id}:\n{text}")).split_whitespace().collect::<Vec<_>>()
        };
        // id, api, role, term, leader, ...
        let follower = cluster.other_than(&[leader, down]);
        if cols(leader)[3] != term.to_string() || cols(follower)[3] != term.to_string() {
            return Err(format!("term {term} ->\n{text}"));
        }
        assert_eq!(
            cols(leader)[..5],
            [&*leader.to_string(), cluster.api(leader), "leader", &*term.to_string(), &*leader.to_string()],
            "{text}"
        );
        assert_eq!(
            cols(follower)[..5],
            [&*follower.to_string(), cluster.api(follower), "follower", &*term.to_string(), &*leader.to_string()],
            "{text}"
        );
        assert_eq!(cols(down), [&*down.to_string(), cluster.api(down), "unreachable"], "{text}");
        Ok(())
    });

    // With no node reachable, status still prints every row, and says so with exit 3.
    for id in cluster.running() {
        cluster.kill(id);
    }
    let out = tracker_node(&["status", "--config", &config, "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    rows.as_array().unwrap().iter().for_each(assert_unreachable_row);
}

/// A node that is a learner (in the membership, not a voter) reports role `learner`, and
/// every reachable row lists it among the learners.
///
/// `members add` makes a node a learner only until it has caught up, a few milliseconds on
/// loopback; to hold that state still, the two followers are stopped (SIGSTOP) before the
/// change: the leader appends the membership entry that adds node 4 as a learner and
/// replicates it to node 4 (learners get the log as it is appended), but without a quorum the
/// entry cannot commit, so the promotion to voter cannot start. Once the followers resume,
/// the change completes and node 4 becomes a voting follower.
#[test]
fn status_json_shows_a_learner() {
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: 4,
        start: 3,
        extra: "initial_members = [1, 2, 3]".into(),
        ..Default::default()
    });
    cluster.wait_stable_leader();
    cluster.start_node(4);
    wait_until("node 4 to serve its api", WAIT, || cluster.status(4).is_some());

    // Stop both followers while the leader is known to lead (retry if an election slips in).
    let mut leader_and_stopped = None;
    for _ in 0..5 {
        let mut view = None;
        wait_until("nodes 1-3 to agree on a leader", WAIT, || {
            view = cluster.stable_view_of(&[1, 2, 3]);
            view.is_some()
        });
        let (leader, term, _) = view.unwrap();
        let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
        for f in &followers {
            cluster.signal(*f, libc::SIGSTOP);
        }
        let st = cluster.status(leader).unwrap();
        if st["role"] == "leader" && st["term"] == term {
            leader_and_stopped = Some((leader, followers));
            break;
        }
        for f in &followers {
            cluster.signal(*f, libc::SIGCONT);
        }
    }
    let (leader, stopped) = leader_and_stopped.expect("a leader held still while its followers were stopped");

    // The change, sent to the leader as `members add` sends it; it waits for a quorum.
    let add = format!(r#"{{"action":"add","id":4,"api":"{}","raft":"{}"}}"#, cluster.api(4), cluster.rafts[3]);
    let (leader_api, config) = (cluster.api(leader).to_string(), cluster.config.clone());
    let change = std::thread::spawn(move || {
        let (post, path, long) = ("POST", "/v1/admin/members", Duration::from_secs(60));
        https_with_timeout(&config, TlsAs::Operator, &leader_api, post, path, &[], Some(&add), long)
    });
    wait_until("node 4 to hear that it is a learner", WAIT, || {
        cluster.status(4).is_some_and(|st| st["role"] == "learner" && st["learners"] == json!([4]))
    });

    let rows = status_json(&cluster);
    let r4 = row(&rows, 4);
    assert_eq!(r4["reachable"], true, "{r4}");
    assert_eq!(r4["role"], "learner", "{r4}");
    assert_eq!(r4["voters"], json!([1, 2, 3]), "{r4}");
    assert_eq!(r4["learners"], json!([4]), "{r4}");
    assert_eq!(r4["leader"], leader, "a learner knows the leader it replicates from: {r4}");
    let rl = row(&rows, leader);
    assert_eq!(
        (&rl["role"], &rl["voters"], &rl["learners"]),
        (&json!("leader"), &json!([1, 2, 3]), &json!([4])),
        "{rl}"
    );
    for f in &stopped {
        assert_unreachable_row(row(&rows, *f));
    }

    // The followers resume: the change completes (or, if they elected a leader of their own
    // meanwhile, `members add` does it again), and node 4 is a voter.
    for f in &stopped {
        cluster.signal(*f, libc::SIGCONT);
    }
    let answer = change.join().unwrap();
    if !answer.as_ref().is_ok_and(|r| r.status == 200) {
        let out = tracker_node(&["members", "add", "--config", cluster.config.to_str().unwrap(), "--id", "4"]);
        assert!(out.status.success(), "members add 4 after {answer:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_until("node 4 to be a voter, in every node's view", WAIT, || {
        cluster.stable_view().is_some_and(|(_, _, view)| {
            view.iter().all(|(id, st)| {
                st["voters"] == json!([1, 2, 3, 4])
                    && st["learners"] == json!([])
                    && (*id != 4 || st["role"] == "follower" || st["role"] == "leader")
            })
        })
    });
}

/// With two of three nodes down, the survivor cannot win an election and stays a candidate,
/// term after term.
#[test]
fn status_json_shows_a_candidate() {
    let mut cluster = Cluster::start(3);
    let (leader, term) = cluster.wait_stable_leader();
    let survivor = cluster.other_than(&[leader]);
    for id in cluster.ids().into_iter().filter(|i| *i != survivor) {
        cluster.kill(id);
    }
    let mut rows = Vec::new();
    wait_until("the survivor to stand for election", WAIT, || {
        rows = status_json(&cluster);
        row(&rows, survivor)["role"] == "candidate"
    });
    let r = row(&rows, survivor);
    assert_eq!(r["reachable"], true, "{r}");
    assert!(r["term"].as_u64().unwrap() > term, "a candidate has moved to a new term: {r}");
    assert!(r["leader"].is_null(), "a candidate knows no leader: {r}");
    assert_eq!(r["voters"], json!([1, 2, 3]), "{r}");
    for id in cluster.ids().into_iter().filter(|i| *i != survivor) {
        assert_unreachable_row(row(&rows, id));
    }
    // It keeps trying: a later look finds a later term, and still no leader.
    let first = r["term"].as_u64().unwrap();
    wait_until("the candidate to try again in a later term", WAIT, || {
        cluster.status(survivor).is_some_and(|st| st["term"].as_u64().unwrap() > first && st["leader"].is_null())
    });
}

/// Reads `up`'s stdout lines on a thread; the channel closes at end of file, which comes only
/// once every process holding the pipe (`up` and the children it started) has exited.
pub(crate) fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Kills `up`'s whole process group (it and its children) if the test ends early.
pub(crate) struct UpGuard(pub(crate) std::process::Child);

impl Drop for UpGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on the process group this test created for `up` (pgid = its pid).
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn up_runs_every_listed_node_prints_their_ids_and_apis_and_ctrl_c_stops_them_all() {
    // The file only: `up` starts the nodes.
    let cluster = Cluster::start_with(ClusterOptions { start: 0, ..Default::default() });
    let log = std::fs::File::create(cluster.dir.path().join("up.log")).unwrap();
    let child = Command::new(workspace_bin("tracker-node"))
        .args(["up", "--config", cluster.config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let mut up = UpGuard(child);
    let lines = lines_of(up.0.stdout.take().unwrap());
    let next_line =
        |what: &str| lines.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for {what} from `up`: {e}"));

    // One line per node with its id and api address (and the pid of its process).
    let mut pids = Vec::new();
    for id in cluster.ids() {
        let line = next_line(&format!("node {id}'s line"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            words.len() >= 4 && words[..4] == ["node", &id.to_string(), "api", cluster.api(id)],
            "node {id}: {line:?}"
        );
        let pid: i32 = line
            .split("(pid ")
            .nth(1)
            .and_then(|p| p.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("{line:?}"));
        assert!(pid_alive(pid), "node {id}'s process {pid} runs");
        pids.push(pid);
    }

    // A working cluster: a leader, and a write through it.
    let apis = cluster.apis.clone();
    wait_until("the nodes started by `up` to elect a leader", WAIT, || {
        let leaders: Vec<Option<u64>> =
            apis.iter().map(|a| http_get_json(a, "/v1/status").and_then(|s| s["leader"].as_u64())).collect();
        leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
    });
    let rt = runtime();
    let alice = rt.block_on(logged_in(&cluster.client(), "alice"));
    rt.block_on(alice.create_group("via_up")).unwrap();
    assert_eq!(rt.block_on(group_names(&alice)), ["via_up"]);

    // Ctrl-C, to `up` alone (a terminal would signal the children too; `up` must not rely on it).
    // SAFETY: kill(2) on the pid of the child this test spawned and has not reaped.
    unsafe { libc::kill(up.0.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let code = loop {
        if let Some(st) = up.0.try_wait().unwrap() {
            break st.code();
        }
        assert!(started.elapsed() < WAIT, "`up` did not exit after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0), "{}", std::fs::read_to_string(cluster.dir.path().join("up.log")).unwrap_or_default());
    // Its output ends (every holder of the pipe, each child included, has exited) after a
    // "stopped" line per node.
    let mut rest = Vec::new();
    loop {
        match lines.recv_timeout(WAIT) {
            Ok(l) => rest.push(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("`up`'s stdout is still open (a child survives?): {e}; so far {rest:?}"),
        }
    }
    for id in cluster.ids() {
        assert!(rest.iter().any(|l| *l == format!("node {id} stopped")), "{rest:?}");
    }
    for (id, pid) in cluster.ids().into_iter().zip(&pids) {
        assert!(!pid_alive(*pid), "node {id} (pid {pid}) survived `up`");
    }
    for addr in cluster.apis.iter().chain(&cluster.rafts) {
        let r = std::net::TcpStream::connect(addr);
        assert!(
            r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
            "{addr} still listens: {r:?}"
        );
    }
    // Each node stopped cleanly on the SIGTERM `up` sent it, not killed after the grace period.
    let log = std::fs::read_to_string(cluster.dir.path().join("up.log")).unwrap();
    assert_eq!(log.matches("stopped cleanly").count(), 3, "{log}");
}

/// A second `run` on a data_dir in use, a data_dir that is a file, and a port in use: exit 1
/// with one line naming the folder or the address, before anything starts.
#[test]
fn a_data_dir_in_use_a_file_as_data_dir_and_a_port_in_use_are_one_line_each() {
    let mut cluster = Cluster::start_with(ClusterOptions { nodes: 3, start: 1, ..Default::default() });
    wait_until("node 1 to serve its api", WAIT, || cluster.status(1).is_some());
    let config = cluster.config.to_str().unwrap().to_string();
    let data_dir = cluster.data_dir(1);
    let one_line = |out: &std::process::Output, want: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert_eq!(err.trim_end(), want);
    };

    // The same node again: its data_dir is locked by the first, whose pid is named.
    let out = tracker_node(&["run", "--config", &config, "--id", "1"]);
    let pid = cluster.pid(1).unwrap();
    one_line(&out, &format!("error: data_dir {} is in use by another tracker-node (pid {pid})", data_dir.display()));
    assert!(cluster.status(1).is_some(), "the first node still runs");

    // Node 2's data_dir is a file.
    let file = cluster.data_dir(2);
    std::fs::write(&file, "not a folder").unwrap();
    let out = tracker_node(&["run", "--config", &config, "--id", "2"]);
    one_line(&out, &format!("error: data_dir {} is not a directory", file.display()));
    std::fs::remove_file(&file).unwrap();

    // Node 3's api address is taken by another process.
    let api = cluster.api(3).to_string();
    let _taken = std::net::TcpListener::bind(&api).unwrap();
    let out = tracker_node(&["run", "--config", &config, "--id", "3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        errors,
        [format!("error: api address {api} is in use by another process (is another tracker-node running?)")],
        "{err}"
    );
    cluster.terminate(1, WAIT);
}

/// `members add` of a voter and `members remove` of a non-voter say so; a change prints one
/// sentence, or the leader's JSON with `--json`.
#[test]
fn members_add_of_a_voter_says_so_and_changes_are_one_sentence() {
    let cluster = Cluster::start(3);
    cluster.wait_stable_leader();
    let config = cluster.config.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let out = tracker_node(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(
        run(&["members", "add", "--config", &config, "--id", "2"]),
        "node 2 is already a voter (voters: 1, 2, 3)\n"
    );
    let json: Value =
        serde_json::from_str(&run(&["members", "add", "--config", &config, "--id", "2", "--json"])).unwrap();
    assert_eq!(json, json!({"ok": true, "id": 2, "voters": [1, 2, 3], "unchanged": true}));

    assert_eq!(
        run(&["members", "remove", "--config", &config, "--id", "3"]),
        "node 3 is no longer a voter (voters: 1, 2)\n"
    );
    wait_until("a leader among the voters 1 and 2", WAIT, || {
        cluster.stable_view_of(&[1, 2]).is_some_and(|(_, _, v)| v.iter().all(|(_, st)| st["voters"] == json!([1, 2])))
    });
    assert_eq!(run(&["members", "remove", "--config", &config, "--id", "3"]), "node 3 is not a voter (voters: 1, 2)\n");
    let json: Value =
        serde_json::from_str(&run(&["members", "add", "--config", &config, "--id", "3", "--json"])).unwrap();
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["voters"], json!([1, 2, 3]), "{json}");
}

/// The hidden helpers for packagers: a completion script per shell and a man page, for
/// `tracker-node` and `peer`, generated from their clap definitions; neither shows in `--help`.
#[test]
fn completions_and_man_pages_are_generated_for_both_binaries() {
    for (bin, name) in [(workspace_bin("tracker-node"), "tracker-node"), (peer_bin(), "peer")] {
        let run = |args: &[&str]| Command::new(&bin).args(args).output().unwrap();
        for shell in ["bash", "zsh", "fish"] {
            let out = run(&["completions", shell]);
            assert_eq!(out.status.code(), Some(0), "{name} completions {shell}");
            let script = String::from_utf8_lossy(&out.stdout);
            assert!(script.contains(name) && script.len() > 500, "{name} completions {shell}: {script}");
        }
        let out = run(&["man"]);
        assert_eq!(out.status.code(), Some(0), "{name} man");
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(page.contains(&format!(".TH {name} 1")) && page.contains(".SH NAME"), "{name} man: {page}");
        let help = String::from_utf8_lossy(&run(&["--help"]).stdout).to_string();
        assert!(!help.contains("completions") && !help.contains("\n  man "), "{name} --help hides them: {help}");
    }
}
