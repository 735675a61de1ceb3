//! The steps peer tests share, on top of `Peer`: a peer logged in with its daemon running, a
//! group's owner and its members, a team of two; a download started, followed, failed and
//! resumed, as the CLI and the daemon's log tell it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::files::random_file;
use crate::peer::Peer;
use crate::wait::wait_until;

impl Peer {
    /// `name`'s peer with its daemon running (started with `daemon_args`), registered and logged
    /// in as `name`.
    pub fn logged_in(cluster: &Cluster, name: &str, daemon_args: &[&str]) -> Peer {
        let mut p = Peer::new(cluster, name);
        p.daemon_args = daemon_args.iter().map(|s| s.to_string()).collect();
        p.start_daemon();
        p.register_and_login(name);
        p
    }

    /// A peer `logged_in` as `name` that creates `group`, and so owns it.
    pub fn owner(cluster: &Cluster, name: &str, group: &str, daemon_args: &[&str]) -> Peer {
        let p = Peer::logged_in(cluster, name, daemon_args);
        p.ok(&["create-group", group]);
        p
    }

    /// A peer `logged_in` as `name` that `owner` admits to `group`.
    pub fn member(cluster: &Cluster, name: &str, group: &str, owner: &Peer, daemon_args: &[&str]) -> Peer {
        let p = Peer::logged_in(cluster, name, daemon_args);
        owner.admit(group, &p, name);
        p
    }

    /// `member`, logged in as `member_user`, asks to join `group`; this peer, its owner, accepts.
    pub fn admit(&self, group: &str, member: &Peer, member_user: &str) {
        member.ok(&["join-group", group]);
        self.ok(&["accept-request", group, member_user]);
    }

    /// Creates `group` with this peer's user as its owner and admits `member`, logged in as
    /// `member_user`.
    pub fn form_group(&self, group: &str, member: &Peer, member_user: &str) {
        self.ok(&["create-group", group]);
        self.admit(group, member, member_user);
    }

    /// Makes `random_file(dir, name, size, seed)` and uploads it to `group`; returns its path and
    /// SHA-1.
    pub fn upload_random(&self, dir: &Path, name: &str, size: usize, seed: u64, group: &str) -> (PathBuf, String) {
        let (path, sha1) = random_file(dir, name, size, seed);
        self.ok(&["upload", path.to_str().unwrap(), group]);
        (path, sha1)
    }

    /// Copies `src` into this peer's HOME and uploads the copy to `group` (one more sharer of the
    /// same file); returns the copy's path.
    pub fn share_copy(&self, src: &Path, group: &str) -> PathBuf {
        std::fs::create_dir_all(&self.home).unwrap();
        let copy = self.home.join(src.file_name().unwrap());
        std::fs::copy(src, &copy).unwrap();
        self.ok(&["upload", copy.to_str().unwrap(), group]);
        copy
    }

    /// Starts a detached download of `name` of `group` into the folder `dest` (made first).
    pub fn start_download(&self, group: &str, name: &str, dest: &Path) {
        std::fs::create_dir_all(dest).unwrap();
        self.ok(&["download", group, name, dest.to_str().unwrap(), "--detach"]);
    }

    /// The row of the download of `name` in `show-downloads`, if it is listed.
    pub fn download_row(&self, name: &str) -> Option<Value> {
        self.downloads().into_iter().find(|r| r["name"] == name)
    }

    /// Waits (at most `timeout`) until the download of `name` has at least `fraction` of its
    /// bytes, asserting all along that it is still running; returns its row then. A download a
    /// child process starts may not be listed yet: that is waited for too.
    pub fn wait_progress(&self, name: &str, fraction: f64, timeout: Duration) -> Value {
        let mut last = Value::Null;
        wait_until(&format!("{name} to pass {:.0}%", fraction * 100.0), timeout, || {
            let Some(row) = self.download_row(name) else { return false };
            assert_eq!(row["state"], "downloading", "the download of {name} ended too early: {row}");
            let enough = row["bytes_done"].as_f64().unwrap() >= fraction * row["size"].as_f64().unwrap();
            last = row;
            enough
        });
        last
    }

    /// Downloads `name` of `group` into the folder `dest` (made first), blocking, and asserts
    /// that it fails with `download_failed` and leaves no file there; returns the error message.
    pub fn failed_download(&self, group: &str, name: &str, dest: &Path) -> String {
        std::fs::create_dir_all(dest).unwrap();
        let msg = self.run(&["download", group, name, dest.to_str().unwrap()]).refused("download_failed");
        assert!(!dest.join(name).exists(), "a failed download produced {name}: {msg}");
        msg
    }

    /// The first `resuming download` line of the daemon's log after its first `log_from` bytes,
    /// and the number of verified pieces that line says the download resumed from.
    pub fn resume_line(&self, log_from: usize) -> (String, u64) {
        let log = self.daemon_log();
        let log = &log[log_from..];
        let line =
            log.lines().find(|l| l.contains("resuming download")).unwrap_or_else(|| panic!("no resume in: {log}"));
        let verified = line
            .split("verified_pieces=")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no verified_pieces in {line:?}"));
        (line.to_string(), verified)
    }
}

/// alice owns `group`, bob is a member; both logged in with daemons running.
pub fn team(cluster: &Cluster, group: &str) -> (Peer, Peer) {
    team_with(cluster, group, &[])
}

/// `team`, with alice's daemon started with `alice_args`.
pub fn team_with(cluster: &Cluster, group: &str, alice_args: &[&str]) -> (Peer, Peer) {
    let alice = Peer::owner(cluster, "alice", group, alice_args);
    let bob = Peer::member(cluster, "bob", group, &alice, &[]);
    (alice, bob)
}

/// `team`, with alice serving each piece `delay_ms` late (`--serve-delay-ms`, a hidden test
/// flag), so that a download from her stays under way while a test acts on it.
pub fn slow_team(cluster: &Cluster, group: &str, delay_ms: u64) -> (Peer, Peer) {
    team_with(cluster, group, &["--serve-delay-ms", &delay_ms.to_string()])
}
