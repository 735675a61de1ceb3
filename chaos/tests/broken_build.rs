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

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn config() -> chaos::Config {
    chaos::Config {
        seed: 1,
        duration_s: 15,
        nodes: 3,
        clients: 8,
        fault_interval_ms: 1_500,
        fault_duration_ms: 800,
        heartbeat_ms: 20,
        election_timeout_ms: (60, 120),
    }
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

#[test]
fn broken_build_is_caught() {
    let broken = build_broken();

    // The normal build (the one every other test runs), same seed and length: passes.
    let normal_bin = std::env::var_os("TRACKER_NODE_BIN");
    let normal = chaos::run(config()).expect("the chaos run starts");
    let md = normal.markdown();
    println!("normal build:\n{md}");
    assert!(normal.ok(), "the normal build must pass the run the broken one fails: {md}");

    std::env::set_var("TRACKER_NODE_BIN", &broken);
    std::env::set_var(UNSAFE_BUILD_ENV.0, UNSAFE_BUILD_ENV.1);
    let report = chaos::run(config()).expect("the chaos run starts");
    match normal_bin {
        Some(bin) => std::env::set_var("TRACKER_NODE_BIN", bin),
        None => std::env::remove_var("TRACKER_NODE_BIN"),
    }
    std::env::remove_var(UNSAFE_BUILD_ENV.0);
    let md = report.markdown();
    println!("unsafe-ack-before-commit build:\n{md}");
    assert!(!report.ok(), "the checker must catch acknowledgements before commit: {md}");
    assert!(!report.verdict.lost_writes.is_empty() || !report.verdict.not_linearizable.is_empty(), "{md}");
}
