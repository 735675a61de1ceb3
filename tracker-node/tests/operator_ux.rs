//! The operator's paper cuts of issue 36, a test each: what the tracker-node commands tell an
//! operator (a missing cluster file, `health`, `members list`, a removed node), `up`'s output
//! and restarts, the log of a routine restart, and the curl recipe of docs/OPERATIONS.md.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::*;

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
