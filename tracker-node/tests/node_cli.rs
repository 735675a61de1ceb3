//! The `tracker-node` command itself: bad cluster files, the cluster secret, SIGTERM, and the
//! `status` output of the contract.

use std::process::Command;
use std::time::Duration;

use testkit::*;

fn tracker_node(args: &[&str]) -> std::process::Output {
    Command::new(workspace_bin("tracker-node")).args(args).output().unwrap()
}

#[test]
fn a_bad_cluster_file_is_exit_2_with_the_line_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[cluster]\nheartbeat_ms = 20\n\n[[node]]\nid = 1\napi = \"127.0.0.1:99999\"\nraft = \"127.0.0.1:7101\"\ndata_dir = \"n1\"\n", ":6:"),
        ("[cluster]\nheartbeat_ms = 20\nelection_timeout_ms = [10, 5]\n", "election_timeout_ms"),
        ("[cluster\n", "cluster.toml"),
        ("[cluster]\n\n[[node]]\nid = 1\napi = \"127.0.0.1:7001\"\nraft = \"127.0.0.1:7101\"\ndata_dir = \"a\"\n\n[[node]]\nid = 1\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"b\"\n", "1"),
    ];
    for (i, (text, must_name)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}-cluster.toml"));
        std::fs::write(&path, text).unwrap();
        for args in [vec!["run", "--config", path.to_str().unwrap(), "--id", "1"], vec!["status", "--config", path.to_str().unwrap()]] {
            let out = tracker_node(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "case {i} {args:?}: {err}");
            assert!(err.starts_with("error: ") && err.contains(must_name), "case {i}: the message names the problem: {err}");
        }
    }
    let out = tracker_node(&["run", "--config", dir.path().join("missing.toml").to_str().unwrap(), "--id", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    // A node id the file does not list.
    let path = dir.path().join("case0-cluster.toml");
    std::fs::write(&path, "[cluster]\n\n[[node]]\nid = 1\napi = \"127.0.0.1:7001\"\nraft = \"127.0.0.1:7101\"\ndata_dir = \"a\"\n").unwrap();
    let out = tracker_node(&["run", "--config", path.to_str().unwrap(), "--id", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node 9 is not listed"));
}

#[test]
fn with_a_secret_raft_and_admin_calls_without_it_are_refused() {
    let cluster = Cluster::start_with(ClusterOptions { extra: "secret = \"s3cret-for-tests\"".into(), ..Default::default() });
    let leader = cluster.wait_leader(&[]);
    let raft = &cluster.rafts[(leader - 1) as usize];
    let vote = r#"{"vote":{"leader_id":{"term":999,"node_id":2},"committed":false},"last_log_id":null}"#;
    let r = http(raft, "POST", "/raft/vote", &[], Some(vote)).expect("raft port answers");
    assert_eq!(r.status, 403, "{r:?}");
    let r = http(raft, "POST", "/raft/vote", &[("x-cluster-secret", "wrong")], Some(vote)).unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let members = r#"{"action":"remove","id":2,"api":"127.0.0.1:1","raft":"127.0.0.1:1"}"#;
    let r = http(cluster.api(leader), "POST", "/v1/admin/members", &[], Some(members)).unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "forbidden");
    // Nothing changed: the same leader, term and voters.
    let st = cluster.status(leader).unwrap();
    assert_eq!(st["role"], "leader");
    assert_eq!(st["voters"], serde_json::json!([1, 2, 3]));
    assert!(st["term"].as_u64().unwrap() < 999);
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
    assert_eq!(cluster.terminate(leader, Duration::from_secs(10)), Some(0), "exit 0 on SIGTERM:\n{}", cluster.log(leader));
    rt.block_on(admin.create_group("while_down")).unwrap();
    cluster.start_node(leader);
    cluster.wait_converged(Duration::from_secs(20));
    assert_eq!(rt.block_on(group_names(&admin)), vec!["kept", "while_down"]);
}

#[test]
fn status_prints_one_row_per_listed_node_and_json_per_contract() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(&[]);
    let down = cluster.ids().into_iter().find(|i| *i != leader).unwrap();
    cluster.kill(down);
    let config = cluster.config.to_str().unwrap().to_string();

    let out = tracker_node(&["status", "--config", &config, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        let id = row["id"].as_u64().unwrap();
        assert_eq!(row["api"], cluster.api(id));
        if id == down {
            assert_eq!(row["reachable"], false);
            assert!(row["role"].is_null() && row["term"].is_null() && row["leader"].is_null());
        } else {
            assert_eq!(row["reachable"], true);
            assert_eq!(row["role"], if id == leader { "leader" } else { "follower" });
            assert_eq!(row["leader"], leader);
            assert_eq!(row["voters"], serde_json::json!([1, 2, 3]));
            assert_eq!(row["learners"], serde_json::json!([]));
            for k in ["term", "last_log_index", "applied_index"] {
                assert!(row[k].is_u64(), "{k} in {row}");
            }
        }
    }

    let out = tracker_node(&["status", "--config", &config]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and one row per node:\n{text}");
    assert!(lines[0].starts_with("id"), "{text}");
    assert!(lines.iter().any(|l| l.starts_with(&leader.to_string()) && l.contains("leader")), "{text}");
    assert!(lines.iter().any(|l| l.starts_with(&down.to_string()) && l.contains("unreachable")), "{text}");
}
