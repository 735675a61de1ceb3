//! Test and benchmark harness: a real tracker cluster (tracker-node processes) and real peers
//! (peer daemons and CLI invocations) on 127.0.0.1, ports chosen at run time, temporary HOMEs.
//! Waits on conditions, never fixed sleeps; every process started here is killed by PID on drop.
//!
//! Used by the integration tests of `tracker-node` and `peer`, and by `bench`.

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

/// A binary of the workspace: `$TRACKER_NODE_BIN` / `$PEER_BIN` when set, else next to the
/// running executable (a bench binary in target/<profile>/, or a test in target/<profile>/deps/).
pub fn workspace_bin(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!("{}_BIN", name.to_uppercase().replace('-', "_"))) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap();
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap();
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} is not built (run: cargo build --release --workspace)", p.display());
    p
}

pub fn peer_bin() -> PathBuf {
    workspace_bin("peer")
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

/// The answer to a raw HTTP request: status code, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A plain HTTP/1.1 request (no redirects followed, 2 s timeouts). `None` when the node cannot be
/// reached or the answer is not HTTP.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Option<HttpResponse> {
    use std::io::Read;
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Some(HttpResponse { status, headers, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
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
    pub rafts: Vec<String>,
    nodes: Vec<(u64, Option<Child>)>,
    env: Vec<(u64, String, String)>,
}

/// How to lay out a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Nodes written to cluster.toml (ids 1..=nodes).
    pub nodes: u64,
    /// Nodes started at once (the first `start` of them); the others are listed but not run.
    pub start: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// Extra lines for the `[cluster]` table, e.g. `snapshot_logs_threshold = 50`.
    pub extra: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { nodes: 3, start: 3, heartbeat_ms: 20, election_timeout_ms: (80, 160), extra: String::new() }
    }
}

impl Cluster {
    /// `n` nodes, all started, with a leader elected.
    pub fn start(n: u64) -> Cluster {
        let c = Cluster::start_with(ClusterOptions { nodes: n, start: n, ..Default::default() });
        c.wait_leader(&[]);
        c
    }

    /// Writes cluster.toml and starts the first `opts.start` nodes; does not wait for a leader.
    pub fn start_with(opts: ClusterOptions) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u64, u16, u16)> = (1..=opts.nodes).map(|id| (id, free_port(), free_port())).collect();
        let (lo, hi) = opts.election_timeout_ms;
        let mut toml = format!(
            "[cluster]\nheartbeat_ms = {}\nelection_timeout_ms = [{lo}, {hi}]\n{}\n",
            opts.heartbeat_ms, opts.extra
        );
        for (id, api, raft) in &ports {
            toml.push_str(&format!(
                "\n[[node]]\nid = {id}\napi = \"127.0.0.1:{api}\"\nraft = \"127.0.0.1:{raft}\"\ndata_dir = \"node-{id}\"\n"
            ));
        }
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, toml).unwrap();
        let apis = ports.iter().map(|(_, a, _)| format!("127.0.0.1:{a}")).collect();
        let rafts = ports.iter().map(|(_, _, r)| format!("127.0.0.1:{r}")).collect();
        let mut c = Cluster {
            dir,
            config,
            apis,
            rafts,
            nodes: ports.iter().map(|(id, _, _)| (*id, None)).collect(),
            env: Vec::new(),
        };
        for id in 1..=opts.start {
            c.start_node(id);
        }
        c
    }

    pub fn api(&self, id: u64) -> &str {
        &self.apis[(id - 1) as usize]
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|(id, _)| *id).collect()
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.iter().filter(|(_, c)| c.is_some()).map(|(id, _)| *id).collect()
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes.iter().find(|(i, _)| *i == id)?.1.as_ref().map(|c| c.id())
    }

    /// The tracker client code the peer uses, pointed at every node of this cluster.
    pub fn client(&self) -> tracker_client::TrackerClient {
        tracker_client::TrackerClient::new(self.apis.clone(), tracker_client::RetryPolicy::default())
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }

    /// Sends `signal` to a running node (by the PID this harness spawned).
    pub fn signal(&mut self, id: u64, signal: i32) {
        if let Some(c) = self.nodes.iter_mut().find(|(i, _)| *i == id).unwrap().1.as_mut() {
            kill_pid(c, signal);
        }
    }

    /// SIGTERM, then waits (bounded) for the node to exit; returns its exit code.
    pub fn terminate(&mut self, id: u64, timeout: Duration) -> Option<i32> {
        let mut c = self.nodes.iter_mut().find(|(i, _)| *i == id).unwrap().1.take()?;
        kill_pid(&mut c, libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.code();
            }
            if start.elapsed() > timeout {
                kill_pid(&mut c, libc::SIGKILL);
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An environment variable for node `id`, applied from its next start on.
    pub fn set_node_env(&mut self, id: u64, key: &str, value: &str) {
        self.env.retain(|(i, k, _)| !(*i == id && k == key));
        self.env.push((id, key.to_string(), value.to_string()));
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
            .envs(self.env.iter().filter(|(i, _, _)| *i == id).map(|(_, k, v)| (k, v)))
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
        http_get_json(self.api(id), "/v1/status")
    }

    /// The state machine digest of node `id` with its applied index.
    pub fn digest(&self, id: u64) -> Option<(String, u64)> {
        let st = http_get_json(self.api(id), "/v1/status?digest=true")?;
        Some((st["state_digest"].as_str()?.to_string(), st["applied_index"].as_u64()?))
    }

    /// Waits until node `id` has applied everything the leader had applied when this was called
    /// (for use under a running write load, where digests never stand still).
    pub fn wait_caught_up(&self, id: u64, timeout: Duration) {
        let leader = self.wait_leader(&[]);
        let target = self.status(leader).and_then(|s| s["applied_index"].as_u64()).unwrap_or(0);
        wait_until(&format!("node {id} to apply up to {target}"), timeout, || {
            self.status(id).and_then(|s| s["applied_index"].as_u64()).is_some_and(|a| a >= target)
        });
    }

    /// Waits until every running node has applied its whole log and reports the same digest
    /// at the same applied index (a node that has entries still to commit is not converged,
    /// even if its digest matches the others' at that moment).
    pub fn wait_converged(&self, timeout: Duration) -> String {
        let mut digest = String::new();
        wait_until("every running node to apply its whole log and reach the same state digest", timeout, || {
            let mut seen: Option<(String, u64)> = None;
            for id in self.running() {
                let Some(st) = http_get_json(self.api(id), "/v1/status?digest=true") else { return false };
                let (Some(d), Some(applied), Some(last)) =
                    (st["state_digest"].as_str(), st["applied_index"].as_u64(), st["last_log_index"].as_u64())
                else {
                    return false;
                };
                if applied != last || seen.as_ref().is_some_and(|s| s != &(d.to_string(), applied)) {
                    return false;
                }
                seen = Some((d.to_string(), applied));
            }
            match seen {
                Some((d, _)) => {
                    digest = d;
                    true
                }
                None => false,
            }
        });
        digest
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
        // TESTKIT_KEEP=1 keeps the cluster's files (cluster.toml, node logs, sled data).
        if std::env::var_os("TESTKIT_KEEP").is_some() {
            if let Ok(empty) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, empty).keep();
                eprintln!("testkit: kept {}", kept.display());
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

/// A small multi-threaded tokio runtime for tests that drive the async tracker client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Registers `user` (password `<user>-password`) and returns a client logged in as them.
pub async fn logged_in(client: &tracker_client::TrackerClient, user: &str) -> tracker_client::TrackerClient {
    let pw = format!("{user}-password");
    client.register(user, &pw).await.unwrap_or_else(|e| panic!("register {user}: {e}"));
    let s = client.login(user, &pw).await.unwrap_or_else(|e| panic!("login {user}: {e}"));
    client.with_token(Some(s.token))
}

/// The group names `client` sees, sorted.
pub async fn group_names(client: &tracker_client::TrackerClient) -> Vec<String> {
    let mut g: Vec<String> = client.list_groups().await.expect("list groups").into_iter().map(|r| r.group).collect();
    g.sort();
    g
}
