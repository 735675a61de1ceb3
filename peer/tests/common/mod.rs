//! Test harness: a real tracker cluster (tracker-node processes) and real peers (peer daemons
//! and CLI invocations) on 127.0.0.1, ports chosen at run time, temporary HOMEs. Waits on
//! conditions, never fixed sleeps; every process started here is killed by PID on drop.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A binary of the workspace, next to this test's executable (target/<profile>/).
pub fn workspace_bin(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!("{}_BIN", name.to_uppercase().replace('-', "_"))) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(name);
    assert!(p.exists(), "{} is not built (run: cargo build --release -p {name})", p.display());
    p
}

pub fn peer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_peer"))
}

/// A plain HTTP/1.1 GET with a 1 s timeout, JSON body parsed (no client library needed).
pub fn http_get_json(addr: &str, path: &str) -> Option<Value> {
    use std::io::Read;
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_pid(child: &mut Child, signal: i32) {
    // SAFETY: kill(2) on the PID of a child this harness spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
}

pub struct Cluster {
    pub dir: TempDir,
    pub config: PathBuf,
    pub apis: Vec<String>,
    nodes: Vec<(u64, Option<Child>)>,
}

impl Cluster {
    pub fn start(n: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u64, u16, u16)> = (1..=n).map(|id| (id, free_port(), free_port())).collect();
        let mut toml = String::from("[cluster]\nheartbeat_ms = 20\nelection_timeout_ms = [80, 160]\n");
        for (id, api, raft) in &ports {
            toml.push_str(&format!(
                "\n[[node]]\nid = {id}\napi = \"127.0.0.1:{api}\"\nraft = \"127.0.0.1:{raft}\"\ndata_dir = \"node-{id}\"\n"
            ));
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, toml).unwrap();
        let apis = ports.iter().map(|(_, a, _)| format!("127.0.0.1:{a}")).collect();
        let mut c = Cluster { dir, config, apis, nodes: ports.iter().map(|(id, _, _)| (*id, None)).collect() };
        for id in 1..=n {
            c.start_node(id);
        }
        c.wait_leader(&[]);
        c
    }

    pub fn start_node(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .unwrap();
        let child = Command::new(workspace_bin("tracker-node"))
            .args(["run", "--config"])
            .arg(&self.config)
            .args(["--id", &id.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes.iter_mut().find(|(i, _)| *i == id).unwrap().1 = Some(child);
    }

    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes.iter_mut().find(|(i, _)| *i == id).unwrap().1.take() {
            kill_pid(&mut c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    pub fn status(&self, id: u64) -> Option<Value> {
        http_get_json(&self.apis[(id - 1) as usize], "/v1/status")
    }

    /// The leader all running nodes agree on.
    pub fn leader(&self) -> Option<u64> {
        let mut leader = None;
        for (id, child) in &self.nodes {
            if child.is_none() {
                continue;
            }
            let st = self.status(*id)?;
            let l = st["leader"].as_u64()?;
            if leader.is_some_and(|x| x != l) {
                return None;
            }
            leader = Some(l);
        }
        let l = leader?;
        self.nodes.iter().any(|(id, c)| *id == l && c.is_some()).then_some(l)
    }

    pub fn wait_leader(&self, except: &[u64]) -> u64 {
        let mut found = 0;
        wait_until("a tracker leader", Duration::from_secs(20), || match self.leader() {
            Some(l) if !except.contains(&l) => {
                found = l;
                true
            }
            _ => false,
        });
        found
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in self.nodes.iter_mut() {
            if let Some(mut c) = c.take() {
                kill_pid(&mut c, libc::SIGKILL);
                let _ = c.wait();
            }
        }
    }
}

/// One peer identity: a HOME, its daemon, its CLI.
pub struct Peer {
    pub home: PathBuf,
    pub config: PathBuf,
    daemon: Option<Child>,
    pub daemon_args: Vec<String>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {:?} / {:?}", self.stdout, self.stderr))
    }
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }
}

impl Peer {
    pub fn new(cluster: &Cluster, name: &str) -> Peer {
        let home = cluster.dir.path().join(format!("home-{name}"));
        Peer { home, config: cluster.config.clone(), daemon: None, daemon_args: Vec::new() }
    }

    pub fn start_daemon(&mut self) {
        std::fs::create_dir_all(&self.home).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.home.join("daemon.log")).unwrap();
        let child = Command::new(peer_bin())
            .arg("daemon")
            .args(&self.daemon_args)
            .env("PEER_HOME", &self.home)
            .env("PEER_CLUSTER", &self.config)
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
        if let Some(mut c) = self.daemon.take() {
            kill_pid(&mut c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
    }

    /// Runs the CLI with --json; `stdin` is fed to it.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(peer_bin())
            .arg("--json")
            .args(args)
            .env("PEER_HOME", &self.home)
            .env("PEER_CLUSTER", &self.config)
            .env_remove("PEER_TRACKERS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out: Output = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
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

/// A file of `size` pseudo-random bytes (seeded), and its SHA-1 (hex).
pub fn random_file(dir: &Path, name: &str, size: usize, seed: u64) -> (PathBuf, String) {
    use sha1::{Digest, Sha1};
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut data = vec![0u8; size];
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let p = dir.join(name);
    std::fs::write(&p, &data).unwrap();
    (p, hex::encode(Sha1::digest(&data)))
}

pub fn file_sha1(p: &Path) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(Sha1::digest(std::fs::read(p).unwrap()))
}

/// alice owns `group`, bob is a member; both logged in with daemons running.
pub fn team(cluster: &Cluster, group: &str) -> (Peer, Peer) {
    let mut alice = Peer::new(cluster, "alice");
    let mut bob = Peer::new(cluster, "bob");
    alice.start_daemon();
    bob.start_daemon();
    alice.register_and_login("alice");
    bob.register_and_login("bob");
    alice.ok(&["create-group", group]);
    bob.ok(&["join-group", group]);
    alice.ok(&["accept-request", group, "bob"]);
    (alice, bob)
}
