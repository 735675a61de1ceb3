//! The operator's paper cuts of issue 36, a test each: what the tracker-node commands tell an
//! operator (a missing cluster file, `health`, `members list`, a removed node), `up`'s output
//! and restarts, the log of a routine restart, and the curl recipe of docs/OPERATIONS.md.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::*;

use crate::node_cli::{lines_of, UpGuard};

const WAIT: Duration = Duration::from_secs(20);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_command_run_where_there_is_no_cluster_file_hints_at_config() {
    let empty = tempfile::tempdir().unwrap();
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["health"],
        vec!["members", "list"],
        vec!["members", "add", "--id", "1"],
        vec!["up"],
    ] {
        let out = Command::new(workspace_bin("tracker-node")).args(&args).current_dir(empty.path()).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.starts_with("error: cannot read cluster.toml: "), "{args:?}: {err}");
        assert!(err.contains("name the cluster file with --config FILE"), "{args:?}: {err}");
        assert!(err.contains(&empty.path().display().to_string()), "{args:?}: says where it looked: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A file named with --config that is missing: the path the operator typed, no hint needed.
    let missing = empty.path().join("other.toml");
    let out = tracker_node(&["status", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("--config FILE"), "{}", stderr(&out));
}

fn health(config: &str) -> (Option<i32>, String, String) {
    let out = tracker_node(&["health", "--config", config]);
    (out.status.code(), stdout(&out), stderr(&out))
}

fn health_json(config: &str) -> (Option<i32>, Value) {
    let out = tracker_node(&["health", "--config", config, "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    (out.status.code(), v)
}

#[test]
fn health_is_exit_0_while_a_quorum_is_healthy_and_exit_1_without() {
    let mut cluster = Cluster::start(3);
    let config = cluster.config.to_str().unwrap().to_string();
    let (leader, _) = cluster.wait_stable_leader();

    // All up: a line per node, then the verdict.
    let mut seen = None;
    wait_until("health to report three healthy voters", WAIT, || {
        let (code, out, err) = health(&config);
        let ok = code == Some(0) && out.contains("3 of 3 voters healthy");
        seen = Some((code, out, err));
        ok
    });
    let (_, out, _) = seen.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "one line per node and the verdict:\n{out}");
    for id in cluster.ids() {
        let line = lines.iter().find(|l| l.starts_with(&format!("node {id} "))).unwrap_or_else(|| panic!("{out}"));
        assert!(line.starts_with(&format!("node {id} {} healthy: ", cluster.api(id))), "{line}");
        assert!(line.ends_with("; ready"), "{line}");
    }
    assert!(lines[3].starts_with("cluster healthy: node "), "{out}");

    // A follower down: still a quorum, and the row says it did not answer.
    let down = cluster.other_than(&[leader]);
    cluster.kill(down);
    let (code, v) = health_json(&config);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["voters"], json!([1, 2, 3]), "{v}");
    assert_eq!(v["quorum"], 2, "{v}");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{v}");
    let row = nodes.iter().find(|n| n["id"] == down).unwrap();
    assert_eq!((&row["reachable"], &row["health"], &row["ready"]), (&json!(false), &json!(false), &json!(false)));
    for n in nodes.iter().filter(|n| n["id"] != down) {
        assert_eq!((&n["reachable"], &n["health"]), (&json!(true), &json!(true)), "{n}");
        assert!(n["health_detail"].is_string(), "{n}");
    }
    let (_, out, _) = health(&config);
    assert!(out.contains(&format!("node {down} {} unreachable", cluster.api(down))), "{out}");

    // Two down: no quorum; exit 1 with the reason on stderr.
    let second = cluster.other_than(&[down]);
    cluster.kill(second);
    let mut last = None;
    wait_until("health to find the cluster unhealthy", WAIT, || {
        let (code, out, err) = health(&config);
        let done = code == Some(1);
        last = Some((out, err));
        done
    });
    let (_, err) = last.unwrap();
    assert!(err.starts_with("error: the cluster is unhealthy: "), "{err}");
    let (code, v) = health_json(&config);
    assert_eq!((code, &v["healthy"]), (Some(1), &json!(false)), "{v}");
}

fn status_row(cluster: &Cluster, id: u64) -> Value {
    let out = tracker_node(&["status", "--config", cluster.config.to_str().unwrap(), "--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone()
}

#[test]
fn members_list_shows_the_voters_and_learners_as_the_leader_sees_them() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: 4,
        start: 3,
        extra: "initial_members = [1, 2, 3]".into(),
        ..Default::default()
    });
    let config = cluster.config.to_str().unwrap().to_string();
    cluster.wait_stable_leader();

    let out = tracker_node(&["members", "list", "--config", &config, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&v["voters"], &v["learners"]), (&json!([1, 2, 3]), &json!([])), "{v}");
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{v}");
    for m in members {
        let id = m["id"].as_u64().unwrap();
        assert_eq!(m["api"], cluster.api(id), "{m}");
        assert_eq!(m["raft"], cluster.rafts[(id - 1) as usize], "{m}");
        assert_eq!(m["voter"], true, "{m}");
        assert!(["leader", "follower"].contains(&m["role"].as_str().unwrap()), "{m}");
    }
    assert!(members.iter().any(|m| m["id"] == v["leader"] && m["role"] == "leader"), "{v}");
    let out = tracker_node(&["members", "list", "--config", &config]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(text.lines().count(), 5, "a header, three members, the listed non-member:\n{text}");
    assert!(text.lines().last().unwrap().ends_with("but not members: 4"), "{text}");
    for id in 1..=3u64 {
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(&id.to_string())).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "voter", "{line}");
        assert_eq!(cols[3], cluster.api(id), "{line}");
    }
}

#[test]
fn after_members_remove_the_command_says_to_stop_the_node_and_status_shows_it_removed() {
    let cluster = Cluster::start(3);
    let config = cluster.config.to_str().unwrap().to_string();
    cluster.wait_stable_leader();

    // Remove node 3: the sentence on stdout as before; stderr says to stop the node.
    let out = tracker_node(&["members", "remove", "--config", &config, "--id", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "node 3 is no longer a voter (voters: 1, 2)\n");
    let err = stderr(&out);
    assert!(err.starts_with(&format!("node 3 still runs (it answers on {}): stop it", cluster.api(3))), "{err}");
    assert!(err.contains(&cluster.data_dir(3).display().to_string()), "names the data_dir: {err}");

    // The node still runs; status shows it as removed, whatever it says of itself.
    // --json keeps the contract's role values and says it is no member.
    wait_until("status to show node 3 as removed", WAIT, || status_row(&cluster, 3)["member"] == false);
    let role = status_row(&cluster, 3)["role"].clone();
    assert!(["leader", "follower", "candidate", "learner"].contains(&role.as_str().unwrap_or("")), "{role}");
    let out = tracker_node(&["status", "--config", &config]);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.starts_with("3 ")).unwrap_or_else(|| panic!("{text}"));
    assert_eq!(line.split_whitespace().nth(2), Some("removed"), "{text}");
    assert!(cluster.status(3).is_some(), "node 3 still answers");
    let out = tracker_node(&["members", "list", "--config", &config, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["voters"], json!([1, 2]), "{v}");
}

/// The pid in a line `node N api ADDR (pid P)`, if the line is node `id`'s.
fn pid_in(line: &str, id: u64) -> Option<i32> {
    line.strip_prefix(&format!("node {id} api "))?.split("(pid ").nth(1)?.trim_end_matches(')').parse().ok()
}

#[test]
fn up_prefixes_each_nodes_lines_restarts_a_node_that_died_at_most_5_times_a_minute() {
    use std::os::unix::process::CommandExt;
    let cluster = Cluster::start_with(ClusterOptions { start: 0, ..Default::default() });
    let log_path = cluster.dir.path().join("up.log");
    let child = Command::new(workspace_bin("tracker-node"))
        .args(["up", "--config", cluster.config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut up = UpGuard(child);
    let lines = lines_of(up.0.stdout.take().unwrap());
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let next_pid = |id: u64| loop {
        let line = lines.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for node {id}'s pid: {e}\n{}", log()));
        if let Some(pid) = pid_in(&line, id) {
            return pid;
        }
    };
    let mut pid = next_pid(1);
    let _ = (next_pid(2), next_pid(3));

    // Each node's log lines come prefixed with its id.
    let apis = cluster.apis.clone();
    wait_until("the nodes started by `up` to elect a leader", WAIT, || {
        apis.iter().all(|a| http_get_json(a, "/v1/status").is_some_and(|s| s["leader"].is_u64()))
    });
    for id in cluster.ids() {
        let prefixed = format!("node {id} | ");
        assert!(log().lines().any(|l| l.starts_with(&prefixed) && l.contains("INFO")), "{}", log());
    }
    assert!(
        log().lines().all(|l| l.starts_with("node ")),
        "every line on up's stderr is a node's or about a node:\n{}",
        log()
    );

    // Node 1 dies: it is started again, with a line saying so and its new pid.
    for restart in 1..=5 {
        // SAFETY: kill(2) on node 1's process, which `up` started for this test.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let new = next_pid(1);
        assert_ne!(new, pid);
        pid = new;
        let said = format!("restarting it (restart {restart} of at most 5 within 60 s)");
        wait_until("up to say it restarted node 1", WAIT, || log().contains(&said));
        assert!(log().contains("node 1 exited (signal: 9"), "{}", log());
    }
    wait_until("node 1, restarted, to serve its api", WAIT, || http_get_json(&apis[0], "/v1/status").is_some());

    // A sixth death within the minute: it stays down, and `up` says so.
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("up to give up on node 1", WAIT, || {
        log().lines().any(|l| {
            l.starts_with("node 1 exited (signal: 9")
                && l.ends_with("after 5 restarts within 60 s: not restarting it again")
        })
    });

    // Ctrl-C still stops the others; the exit is 1, a node having stayed down.
    // SAFETY: kill(2) on the pid of the child this test spawned and has not reaped.
    unsafe { libc::kill(up.0.id() as i32, libc::SIGINT) };
    let started = std::time::Instant::now();
    let code = loop {
        if let Some(st) = up.0.try_wait().unwrap() {
            break st.code();
        }
        assert!(started.elapsed() < WAIT, "`up` did not exit after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(1), "{}", log());
    for id in [2, 3] {
        assert!(log().lines().any(|l| l.starts_with(&format!("node {id} | ")) && l.contains("stopped cleanly")));
    }
}

/// A routine restart (SIGTERM one node, start it again; the leader too) logs nothing at ERROR
/// level: openraft's `RPCError err=timeout after 20ms` per late append (a node that stops,
/// starts or stalls answers after the heartbeat deadline) is summarised as a warning (`node N
/// answers late`), as unreachable nodes are. A stalled node (SIGSTOP) makes the late appends
/// certain: a restart on a fast machine may have none.
#[test]
fn a_routine_restart_or_a_stalled_node_logs_no_error() {
    std::env::remove_var("RUST_LOG");
    let mut cluster = Cluster::start(3);
    for round in 0..2 {
        let (leader, _) = cluster.wait_stable_leader();
        let victims = [cluster.other_than(&[leader]), leader];
        for victim in victims {
            assert_eq!(cluster.terminate(victim, WAIT), Some(0), "round {round}: {}", cluster.log(victim));
            cluster.start_node(victim);
            cluster.wait_converged(WAIT);
        }
    }
    let (leader, _) = cluster.wait_stable_leader();
    let slow = cluster.other_than(&[leader]);
    let at = cluster.log(leader).len();
    let late = format!("node {slow} answers late: no answer to /raft/append within 20 ms");
    cluster.signal(slow, libc::SIGSTOP);
    wait_until("the leader to say the stalled node answers late", WAIT, || cluster.log(leader)[at..].contains(&late));
    cluster.signal(slow, libc::SIGCONT);
    cluster.wait_converged(WAIT);
    let log = cluster.log(leader)[at..].to_string();
    assert!(log.lines().count() < 10, "the stall is a few lines:\n{log}");
    for id in cluster.ids() {
        let log = cluster.log(id);
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
        assert!(errors.is_empty(), "node {id} logged at ERROR level:\n{}", errors.join("\n"));
    }
}

/// The curl recipe of docs/OPERATIONS.md, "Checking a node by hand", as written there with the
/// node's port and the cluster's CA, reaches a node over HTTPS; the naive one fails on the name.
#[test]
fn the_curl_recipe_of_operations_md_checks_a_node_over_https() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATIONS.md")).unwrap();
    let section = doc.split("## Checking a node by hand").nth(1).expect("the section").split("\n## ").next().unwrap();
    let recipe = section.lines().find(|l| l.starts_with("curl --cacert tls/ca.pem --connect-to")).expect("the recipe");
    let cluster = Cluster::start(3);
    let port = cluster.api(1).rsplit(':').next().unwrap().to_string();
    let ca = cluster.dir.path().join("tls/ca.pem");
    let run = |line: &str| {
        let args: Vec<String> = line
            .replace("7001", &port)
            .split_whitespace()
            .skip(1)
            .map(|a| if a == "tls/ca.pem" { ca.to_str().unwrap().to_string() } else { a.to_string() })
            .collect();
        Command::new("curl").args(["-sS", "--max-time", "5"]).args(&args).output().expect("curl is installed")
    };
    let out = run(recipe);
    assert_eq!(out.status.code(), Some(0), "{recipe}: {}", stderr(&out));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert!(body["health"].is_boolean(), "{body}");
    let naive = "curl --cacert tls/ca.pem https://127.0.0.1:7001/health";
    assert!(section.contains(naive), "the section shows what fails");
    let out = run(naive);
    assert_ne!(out.status.code(), Some(0), "the certificate does not name 127.0.0.1");
}
