//! A peer identity for tests: a HOME of its own, its daemon (a process this harness started),
//! and its CLI run with `--json`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::bins::peer_bin;
use crate::cluster::Cluster;
use crate::process::{kill_now, stop_within, wrapped};
use crate::wait::wait_until;

/// One peer identity: a HOME, its daemon, its CLI.
pub struct Peer {
    pub home: PathBuf,
    pub config: PathBuf,
    daemon: Option<Child>,
    pub daemon_args: Vec<String>,
    /// A command the daemon and the CLI run under (e.g. `ip netns exec NS`); empty: none.
    pub wrapper: Vec<String>,
}

/// How a CLI invocation ended, and what it printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` with `stdin` written to it (then closed), and collects what it printed.
    pub fn of(mut cmd: Command, stdin: &str) -> Run {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} / {:?}", self.stdout, self.stderr))
    }
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }

    /// Asserts that the command was refused (exit 1) with the error `code`; returns the error's
    /// message.
    pub fn refused(&self, code: &str) -> String {
        assert_eq!(self.code, 1, "{} {}", self.stdout, self.stderr);
        assert_eq!(self.error_code(), code, "{}", self.stdout);
        self.json()["error"]["message"].as_str().unwrap().to_string()
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Peer {
    pub fn new(cluster: &Cluster, name: &str) -> Peer {
        let home = cluster.dir.path().join(format!("home-{name}"));
        Peer { home, config: cluster.config.clone(), daemon: None, daemon_args: Vec::new(), wrapper: Vec::new() }
    }

    pub fn start_daemon(&mut self) {
        std::fs::create_dir_all(&self.home).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.home.join("daemon.log")).unwrap();
        let child = self
            .command()
            .arg("daemon")
            .args(&self.daemon_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let sock = self.home.join("daemon.sock");
        wait_until("the peer daemon's socket", Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    pub fn kill_daemon(&mut self) {
        if let Some(c) = self.daemon.take() {
            kill_now(c);
        }
    }

    /// Sends `signal` to the daemon and waits up to `timeout` for it to exit (then SIGKILL).
    /// Returns how it exited, or `None` when it had to be killed or was not running.
    pub fn signal_daemon(&mut self, signal: i32, timeout: Duration) -> Option<ExitStatus> {
        stop_within(self.daemon.take()?, signal, timeout)
    }

    /// This HOME's session token, if logged in.
    pub fn token(&self) -> Option<String> {
        let s: Value = serde_json::from_slice(&std::fs::read(self.home.join("session.json")).ok()?).ok()?;
        s["token"].as_str().map(str::to_string)
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
    }

    /// The peer binary as this peer runs it: its HOME and cluster file (PEER_TRACKERS unset), under
    /// its wrapper; no arguments yet (not even --json).
    pub fn command(&self) -> Command {
        let mut cmd = wrapped(Some(self.wrapper.as_slice()), &peer_bin());
        cmd.env("PEER_HOME", &self.home).env("PEER_CLUSTER", &self.config).env_remove("PEER_TRACKERS");
        cmd
    }

    /// Runs the CLI with --json; `stdin` is fed to it.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = self.command();
        cmd.arg("--json").args(args);
        Run::of(cmd, stdin)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// Runs a command that must succeed; returns its JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        let r = self.run(args);
        assert_eq!(r.code, 0, "peer {args:?} failed: {} {}", r.stdout, r.stderr);
        r.json()
    }

    pub fn register_and_login(&self, user: &str) {
        let pw = format!("{user}-password\n");
        let r = self.run_with_stdin(&["register", user, "--password-stdin"], &pw);
        assert_eq!(r.code, 0, "register {user}: {}", r.stderr);
        let r = self.run_with_stdin(&["login", user, "--password-stdin"], &pw);
        assert_eq!(r.code, 0, "login {user}: {}", r.stderr);
    }

    pub fn downloads(&self) -> Vec<Value> {
        self.ok(&["show-downloads"]).as_array().cloned().unwrap_or_default()
    }

    pub fn wait_download(&self, name: &str, timeout: Duration) -> Value {
        let mut row = Value::Null;
        wait_until(&format!("download of {name} to end"), timeout, || {
            if let Some(r) = self.downloads().into_iter().find(|r| r["name"] == name) {
                if r["state"] != "downloading" {
                    row = r;
                    return true;
                }
            }
            false
        });
        row
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill_daemon();
    }
}
