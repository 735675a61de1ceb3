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
