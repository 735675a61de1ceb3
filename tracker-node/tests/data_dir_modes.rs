//! A node's data_dir holds every user's argon2 hash (sled's log and the snapshots): only the
//! node's own user may read it. Played with the real binaries: a fresh node makes its data_dir
//! 0700 and every file in it 0600 (after writes and a snapshot), and a node whose data_dir, or a
//! file in it, other users can reach refuses to start with one line naming the path, the mode and
//! the fix, until the operator runs that fix.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::*;

const WAIT: Duration = Duration::from_secs(30);
fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every directory and regular file under `dir` (itself included), with its mode.
fn modes_under(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let below = walk(dir).into_iter().map(|(p, meta)| (p, meta.is_dir(), meta.permissions().mode() & 0o777));
    std::iter::once((dir.to_path_buf(), true, mode(dir))).chain(below).collect()
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// `tracker-node run` for node `id`, as the operator starts it; it must exit by itself within
/// `WAIT` (a refusal): (exit code, stderr). Killed (by its PID) if it does not.
fn run_expecting_exit(cluster: &Cluster, id: u64) -> (Option<i32>, String) {
    let mut child = Command::new(workspace_bin("tracker-node"))
        .args(["run", "--config"])
        .arg(&cluster.config)
        .args(["--id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > WAIT {
            // SAFETY: kill(2) on the PID of the child this test spawned and has not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let out = child.wait_with_output().unwrap();
            panic!(
                "node {id} kept running on a data_dir other users can read; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_fresh_data_dir_is_private_to_the_node_after_writes_and_a_snapshot() {
    // A snapshot every 50 entries: the walk sees snapshots/ with a snapshot in it.
    let cluster =
        Cluster::start_with(ClusterOptions { extra: "snapshot_logs_threshold = 50".into(), ..Default::default() });
    cluster.wait_leader(&[]);
    let rt = runtime();
    let alice = rt.block_on(logged_in(&cluster.client(), "alice"));
    for i in 0..120 {
        rt.block_on(alice.create_group(&format!("g{i}"))).unwrap();
    }
    wait_until("every node to have written a snapshot", WAIT, || {
        (1..=3).all(|id| cluster.data_dir(id).join("snapshots/current.snap").exists())
    });
    let mut loose = Vec::new();
    let mut files = 0;
    for id in 1..=3 {
        for (p, is_dir, m) in modes_under(&cluster.data_dir(id)) {
            let want = if is_dir { 0o700 } else { 0o600 };
            files += usize::from(!is_dir);
            if m != want {
                loose.push(format!("{} is {m:04o}, not {want:04o}", p.display()));
            }
        }
    }
    eprintln!("walked 3 data_dirs: {files} files");
    assert!(files >= 3 * 3, "each data_dir holds at least sled's files, a snapshot and the lock");
    assert!(loose.is_empty(), "{loose:#?}");
}

#[test]
fn a_node_refuses_to_start_on_a_data_dir_other_users_can_read_and_says_how_to_fix_it() {
    let mut cluster = Cluster::start(3);
    let rt = runtime();
    rt.block_on(logged_in(&cluster.client(), "alice"));
    let dir = cluster.data_dir(3);
    wait_until("node 3 to have its sled files", WAIT, || dir.join("sled/db").exists());
    assert_eq!(cluster.terminate(3, WAIT), Some(0), "node 3 stops cleanly");

    // The data_dir itself, as an earlier version (or a umask of 022) left it.
    chmod(&dir, 0o755);
    let (code, stderr) = run_expecting_exit(&cluster, 3);
    assert_eq!(code, Some(1), "{stderr}");
    let fix = format!("chmod -R go-rwx {}", dir.display());
    let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(
        line.contains(&dir.display().to_string()) && line.contains("0755") && line.contains(&fix),
        "one line naming the path, the mode and the fix: {stderr}"
    );
    assert_eq!(mode(&dir), 0o755, "the operator's folder is not changed behind their back");

    // A file in it: the one with the hashes.
    chmod(&dir, 0o700);
    let db = dir.join("sled/db");
    chmod(&db, 0o644);
    let (code, stderr) = run_expecting_exit(&cluster, 3);
    assert_eq!(code, Some(1), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(
        line.contains(&db.display().to_string()) && line.contains("0644") && line.contains(&fix),
        "one line naming the file, the mode and the fix: {stderr}"
    );

    // The fix the message gives is enough: the node starts and rejoins.
    let out = Command::new("chmod").args(["-R", "go-rwx"]).arg(&dir).output().unwrap();
    assert!(out.status.success());
    cluster.start_node(3);
    wait_until("nodes 1-3 to agree on one leader again", WAIT, || cluster.stable_view_of(&[1, 2, 3]).is_some());
    rt.block_on(logged_in(&cluster.client(), "bob"));
}
