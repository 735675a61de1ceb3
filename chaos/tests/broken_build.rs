//! The checker can fail: the same short seeded run against the normal `tracker-node` and
//! against the deliberately broken build (`--features unsafe-ack-before-commit`, which answers
//! a write before it is committed). The normal build must pass; the broken one must fail with
//! lost acknowledged writes or linearizability violations.
//!
//! The broken binary is built here, by this test, into its own target directory beside the
//! one running the test (`<target>/broken`): building the feature in the shared target
//! directory would replace the `tracker-node` binary every other test runs. That directory
//! shares nothing with the main one, so its first build compiles every dependency again. That
//! build is made cheap: no debug info and no optimisation (less than half the CPU time of the
//! release profile), except for argon2 and blake2, which hash the passwords and would be slow
//! unoptimised. Optimisation does not change what the binary does. Later runs find it up to
//! date in seconds. docs/RELIABILITY.md has the figures.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config() -> chaos::Config {
    chaos::Config::suite(1, 15)
}

/// What the broken build requires in its environment before it agrees to start.
const UNSAFE_BUILD_ENV: (&str, &str) = ("TRACKER_UNSAFE_TEST_BUILD", "loses-acknowledged-writes");

/// Builds `tracker-node --features unsafe-ack-before-commit` and returns its path.
fn build_broken() -> PathBuf {
    // This test runs as <target>/<profile>/deps/broken_build-<hash>.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).expect("the test binary lives in <target>/<profile>/deps").join("broken");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let started = Instant::now();
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--release", "-p", "tracker-node", "--features", "unsafe-ack-before-commit"])
        .args(["--config", "profile.release.debug=0", "--config", "profile.release.opt-level=0"])
        .args([
            "--config",
            "profile.release.package.argon2.opt-level=3",
            "--config",
            "profile.release.package.blake2.opt-level=3",
        ])
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the broken tracker-node failed");
    eprintln!("broken tracker-node built in {:.1} s", started.elapsed().as_secs_f64());
    target.join("release").join("tracker-node")
}

/// Runs `<bin> run` for node 1 of a valid one-node cluster file, with `TRACKER_UNSAFE_TEST_BUILD`
/// set to `value` (or unset); waits (bounded) for it to exit: (exit code, stderr).
fn run_refused(bin: &Path, value: Option<&str>) -> (Option<i32>, String) {
    let dir = tempfile_dir();
    let config = dir.join("cluster.toml");
    let (api, raft) = (testkit::free_port(), testkit::free_port());
    std::fs::write(
        &config,
        format!("[[node]]\nid = 1\napi = \"127.0.0.1:{api}\"\nraft = \"127.0.0.1:{raft}\"\ndata_dir = \"node-1\"\n"),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--config"]).arg(&config).args(["--id", "1"]);
    match value {
        Some(v) => cmd.env(UNSAFE_BUILD_ENV.0, v),
        None => cmd.env_remove(UNSAFE_BUILD_ENV.0),
    };
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "the broken build ran with {}={value:?} instead of refusing: {}",
                UNSAFE_BUILD_ENV.0,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let nothing_made = !dir.join("node-1").exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(nothing_made, "the refused node created its data_dir");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("broken-build-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The cluster directories a kept chaos run left in the temporary directory since `before`.
fn kept_clusters(before: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let now: BTreeSet<PathBuf> =
        std::fs::read_dir(std::env::temp_dir()).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    now.difference(before).filter(|p| p.join("cluster.toml").is_file()).cloned().collect()
}

#[test]
fn broken_build_is_caught() {
    let broken = build_broken();

    // Without the harness's word the broken build refuses to start: exit 2, one error naming
    // the feature, what it does, and the variable. A wrong value is no word either.
    for value in [None, Some("yes")] {
        let (code, err) = run_refused(&broken, value);
        assert_eq!(code, Some(2), "{}={value:?}: {err}", UNSAFE_BUILD_ENV.0);
        assert!(err.starts_with("error: "), "{value:?}: {err}");
        for words in ["unsafe-ack-before-commit", "LOSES THEM on a crash", UNSAFE_BUILD_ENV.0] {
            assert!(err.contains(words), "{value:?}: the refusal says {words:?}: {err}");
        }
        assert!(!err.contains("WARNING"), "{value:?}: {err}");
    }

    // The normal build (the one every other test runs), same seed and length: passes.
    let normal_bin = std::env::var_os("TRACKER_NODE_BIN");
    let normal = chaos::run(config()).expect("the chaos run starts");
    let md = normal.markdown();
    println!("normal build:\n{md}");
    assert!(normal.ok(), "the normal build must pass the run the broken one fails: {md}");

    std::env::set_var("TRACKER_NODE_BIN", &broken);
    std::env::set_var(UNSAFE_BUILD_ENV.0, UNSAFE_BUILD_ENV.1);
    // The run's cluster directory is kept (testkit's TESTKIT_KEEP), to read its node logs.
    let temp_before: BTreeSet<PathBuf> =
        std::fs::read_dir(std::env::temp_dir()).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    std::env::set_var("TESTKIT_KEEP", "1");
    let report = chaos::run(config()).expect("the chaos run starts");
    std::env::remove_var("TESTKIT_KEEP");
    match normal_bin {
        Some(bin) => std::env::set_var("TRACKER_NODE_BIN", bin),
        None => std::env::remove_var("TRACKER_NODE_BIN"),
    }
    std::env::remove_var(UNSAFE_BUILD_ENV.0);

    // Every node of the broken run said, in its log, that it is the unsafe build. Other tests
    // may have cluster directories there at the same moment; only this run's has its logs
    // warn, and it is the one removed.
    let warning = "WARNING: UNSAFE TEST BUILD (unsafe-ack-before-commit)";
    let candidates = kept_clusters(&temp_before);
    let ours: Vec<&PathBuf> = candidates
        .iter()
        .filter(|d| std::fs::read_to_string(d.join("node-1.log")).is_ok_and(|l| l.contains(warning)))
        .collect();
    assert_eq!(ours.len(), 1, "one kept cluster of the broken run has node logs with {warning:?}: {candidates:?}");
    for id in 1..=config().nodes {
        let log = std::fs::read_to_string(ours[0].join(format!("node-{id}.log"))).unwrap_or_default();
        assert!(log.lines().any(|l| l.starts_with(warning)), "node {id}'s log of the broken run: {log}");
    }
    let _ = std::fs::remove_dir_all(ours[0]);
    let md = report.markdown();
    println!("unsafe-ack-before-commit build:\n{md}");
    assert!(!report.ok(), "the checker must catch acknowledgements before commit: {md}");
    assert!(!report.verdict.lost_writes.is_empty() || !report.verdict.not_linearizable.is_empty(), "{md}");
}
