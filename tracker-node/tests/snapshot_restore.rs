//! `tracker-node snapshot save FILE` and `tracker-node restore --from FILE`, with real
//! processes: a cluster with data (and a cluster secret, which the save presents) is saved,
//! stopped and moved away; new data_dirs are restored from the file; the new cluster starts with
//! the same state digest and keeps taking writes.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use testkit::*;

const WAIT: Duration = Duration::from_secs(20);

fn register(cluster: &Cluster, user: &str) {
    wait_until(&format!("{user} to be registered"), WAIT, || {
        let leader = cluster.wait_leader(&[]);
        let body = format!(r#"{{"user":"{user}","password":"pw-{user}"}}"#);
        http_as(cluster.api(leader), "POST", "/v1/users", None, None, Some(&body)).status == 200
    });
}

#[test]
fn a_saved_snapshot_restores_into_a_new_cluster_with_the_same_state() {
    let mut cluster = Cluster::start_with(ClusterOptions { extra: "secret = \"s3cret\"".into(), ..Default::default() });
    cluster.wait_leader(&[]);
    for u in ["alice", "bob", "carol"] {
        register(&cluster, u);
    }
    let digest = cluster.wait_converged(WAIT);
    let config = cluster.config.to_str().unwrap().to_string();

    // Without the secret, the admin call is refused.
    let leader = cluster.wait_leader(&[]);
    assert_eq!(http_as(cluster.api(leader), "GET", "/v1/admin/snapshot", None, None, None).status, 403);

    let file = cluster.dir.path().join("backup.snap");
    let out = tracker_node(&["snapshot", "save", "--config", &config, file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "save: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("saved the state at index ") && stdout.contains(" sha256 "), "{stdout}");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // Restore refuses while the data_dirs exist.
    let out = tracker_node(&["restore", "--config", &config, "--from", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: restore makes new data_dirs only"));

    for id in cluster.ids() {
        assert_eq!(cluster.terminate(id, WAIT), Some(0));
    }
    cluster.restore_from(&file);
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    cluster.wait_leader(&[]);
    assert_eq!(cluster.wait_converged(WAIT), digest, "the restored cluster has the saved state");
    let st = cluster.status(1).unwrap();
    assert_eq!(st["users"], 3, "{st}");
    assert_eq!(st["voters"], serde_json::json!([1, 2, 3]), "{st}");

    // It is a working cluster: it takes writes, and the old users log in.
    register(&cluster, "dave");
    let leader = cluster.wait_leader(&[]);
    let r = http_as(
        cluster.api(leader),
        "POST",
        "/v1/sessions",
        None,
        None,
        Some(r#"{"user":"alice","password":"pw-alice"}"#),
    );
    assert_eq!(r.status, 200, "{r:?}");
    for id in cluster.ids() {
        cluster.terminate(id, WAIT);
    }
}

/// A listed node that takes the connection and never answers (paused) does not hold an operator
/// command: the command asks the leader the other nodes name first, and gives a node not known
/// to lead a few seconds, not its whole budget (`commands::admin_call`).
#[test]
fn a_paused_node_listed_first_does_not_hold_an_admin_command() {
    let mut cluster = Cluster::start(3);
    cluster.wait_stable_leader();
    register(&cluster, "alice");
    // Node 1 is listed first in the cluster file; paused, its kernel still accepts connections.
    cluster.signal(1, libc::SIGSTOP);
    let (leader, _) = cluster.wait_stable_leader_of(&[2, 3], WAIT);
    assert_ne!(leader, 1, "the paused node cannot be the leader the others agree on");
    let config = cluster.config.to_str().unwrap().to_string();
    let file = cluster.dir.path().join("while-paused.snap");
    let started = std::time::Instant::now();
    let out = tracker_node(&["snapshot", "save", "--config", &config, file.to_str().unwrap()]);
    let took = started.elapsed();
    cluster.signal(1, libc::SIGCONT);
    assert_eq!(out.status.code(), Some(0), "save: {}", String::from_utf8_lossy(&out.stderr));
    // The budget is 60 s: a command that waited on the paused node would take all of it.
    assert!(took < Duration::from_secs(30), "snapshot save took {took:?} with node 1 paused");
}
