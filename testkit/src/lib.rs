//! Test and benchmark harness: a real tracker cluster (tracker-node processes) and real peers
//! (peer daemons and CLI invocations) on 127.0.0.1, ports chosen at run time, temporary HOMEs.
//! Waits on conditions, never fixed sleeps; every process started here is killed by PID on drop.
//!
//! Used by the integration tests of `tracker-node` and `peer`, and by `bench`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub mod flood;
pub mod netns;

/// A loopback TCP port for a process this harness starts, reserved for the rest of this test
/// process (see [`ports`] for why and how).
pub fn free_port() -> u16 {
    ports::reserve()
}

/// Run-time ports that nothing else on the machine takes between the moment a test picks
/// them and the moment the node it starts binds them.
///
/// Binding port 0 and releasing it (the usual trick) hands out a port from the kernel's
/// ephemeral range, which the kernel hands out again to the next outgoing connection of any
/// process, or to the next test that binds port 0: on a busy machine the node then fails to
/// bind ("address in use") and the test fails for nothing. So ports are drawn instead:
///
/// - from below the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, usually
///   32768-60999), from [`POOL_START`] up: outgoing connections never get those ports, only an
///   explicit bind does;
/// - at random, so that concurrent test processes rarely even try the same port;
/// - only if they can be bound right now (nothing listens there);
/// - and reserved across every test process of this user with an `flock` on
///   `$TMPDIR/testkit-ports-<uid>/<port>`, held until this process exits (the kernel drops the
///   lock when the process dies, however it dies, so a crashed test leaves nothing stale). A
///   port is never handed out twice within one process either: the lock is per open file, so a
///   second attempt in this process conflicts with the first.
///
/// Only processes that go through this function are kept apart; a program outside the tests
/// that binds a fixed port in the pool can still collide, which the bind check makes unlikely.
pub mod fuzz;

pub mod ports {
    use std::collections::hash_map::RandomState;
    use std::fs::File;
    use std::hash::{BuildHasher, Hasher};
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// The lowest port drawn (well above the ports services usually listen on).
    pub const POOL_START: u16 = 20_000;
    /// Fewest ports a pool must have to be used.
    const MIN_POOL: u16 = 2_000;

    /// The locks of the ports this process holds; closing a file would release its port.
    static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

    /// The kernel's ephemeral range, `(low, high)` inclusive.
    pub fn ephemeral_range() -> (u16, u16) {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((32768, 60999))
    }

    /// The ports drawn from, `[low, high)`: below the ephemeral range, or above it when there
    /// is no room below. With an ephemeral range that covers nearly everything, the whole
    /// range above 1024 (the reservation still keeps test processes apart).
    pub fn pool() -> (u16, u16) {
        let (lo, hi) = ephemeral_range();
        if lo >= POOL_START.saturating_add(MIN_POOL) {
            (POOL_START, lo)
        } else if hi <= u16::MAX - MIN_POOL {
            (hi + 1, u16::MAX)
        } else {
            (1024, u16::MAX)
        }
    }

    fn random_u64() -> u64 {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // RandomState is seeded randomly per process; the counter makes each draw different.
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        h.finish()
    }

    fn lock_dir() -> PathBuf {
        // SAFETY: getuid(2) has no failure mode and no preconditions.
        let uid = unsafe { libc::getuid() };
        let dir = std::env::temp_dir().join(format!("testkit-ports-{uid}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        dir
    }

    /// Draws, checks and reserves one port (see the module docs).
    pub fn reserve() -> u16 {
        let (lo, hi) = pool();
        let dir = lock_dir();
        for _ in 0..10_000 {
            let port = lo + (random_u64() % u64::from(hi - lo)) as u16;
            let Ok(file) = File::options().create(true).truncate(false).write(true).open(dir.join(port.to_string()))
            else {
                continue;
            };
            // SAFETY: flock(2) on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue; // another test process (or this one) holds it
            }
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue; // something listens there; dropping `file` releases the lock
            }
            HELD.lock().unwrap_or_else(|p| p.into_inner()).push(file);
            return port;
        }
        panic!("no free loopback port in {lo}..{hi} after 10000 draws");
    }
}

/// A binary of the workspace: `$TRACKER_NODE_BIN` / `$PEER_BIN` when set (used as is: the
/// caller chose it, e.g. a deliberately broken build), else next to the running executable (a
/// bench binary in target/<profile>/, or a test in target/<profile>/deps/).
///
/// The binary next to the executable is checked to be current with the workspace's sources
/// first, and rebuilt when it is not (see [`fresh_bin`]): `cargo test -p peer` builds only
/// what `peer`'s tests link, not `tracker-node`, so without the check it would run whatever
/// `tracker-node` an earlier build left in target/.
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
    fresh_bin::ensure(&p, name);
    assert!(p.exists(), "{} is not built (run: cargo build --release --workspace)", p.display());
    p
}

/// Keeps the workspace binaries the tests run current with their sources.
///
/// A binary is stale when a file it was built from is newer than it: the files listed in its
/// dep-info (`target/<profile>/<name>.d`, which cargo writes beside it: every source file of
/// every workspace crate it links), the `Cargo.toml` of each of those crates, the workspace's
/// `Cargo.toml` and `Cargo.lock`. A stale or missing binary is rebuilt with
/// `cargo build -p <name> --bin <name>` in the same profile and target directory, once per
/// binary per test process (the first caller builds, concurrent callers wait for it). Only
/// changes made before the test run began count (see [`fresh_bin::stale_reason`]).
///
/// This cannot deadlock with the `cargo test` that runs the test: cargo releases its build
/// lock once the test binaries are built, before it runs them. Another cargo building at the
/// same time makes the nested build wait for it, as any cargo command would.
///
/// cargo does not relink a binary whose inputs changed in a way that does not matter to it
/// (a `Cargo.lock` change in another crate's dependencies): the binary keeps its old time, so
/// a stamp file records when a build last found it current, and inputs are compared with the
/// later of the two. Without the workspace's sources (a bench binary copied elsewhere), there is
/// nothing to check and nothing is built.
pub mod fresh_bin {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Mutex;
    use std::time::SystemTime;

    /// Binaries already checked by this process.
    static CHECKED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

    /// The workspace root this harness was compiled in.
    pub fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit lives in the workspace").to_path_buf()
    }

    fn mtime(p: &Path) -> Option<SystemTime> {
        std::fs::metadata(p).and_then(|m| m.modified()).ok()
    }

    fn stamp_of(bin: &Path) -> PathBuf {
        let name = bin.file_name().unwrap().to_string_lossy();
        bin.with_file_name(format!(".testkit-fresh-{name}"))
    }

    /// The files a binary was built from, out of its dep-info (`<bin>.d`: `target: dep dep ...`,
    /// spaces in paths escaped as `\ `). `None` when there is no dep-info to read.
    pub fn inputs(bin: &Path, root: &Path) -> Option<Vec<PathBuf>> {
        let text = std::fs::read_to_string(bin.with_extension("d")).ok()?;
        let line = text.lines().next()?;
        let (_, deps) = line.split_once(": ")?;
        let mut files: Vec<PathBuf> = Vec::new();
        let mut cur = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    cur.push(' ');
                    chars.next();
                }
                ' ' => {
                    if !cur.is_empty() {
                        files.push(PathBuf::from(std::mem::take(&mut cur)));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            files.push(PathBuf::from(cur));
        }
        // The manifest of every crate a source belongs to.
        let mut manifests = BTreeSet::new();
        for f in &files {
            let mut dir = f.parent();
            while let Some(d) = dir {
                if !d.starts_with(root) {
                    break;
                }
                if d.join("Cargo.toml").exists() {
                    manifests.insert(d.join("Cargo.toml"));
                    break;
                }
                dir = d.parent();
            }
        }
        files.extend(manifests);
        files.push(root.join("Cargo.toml"));
        files.push(root.join("Cargo.lock"));
        Some(files)
    }

    /// Why `bin` must be rebuilt, or `None` when it is current. Only changes made before
    /// `run_began` count: an edit made while a test run is under way (another engineer saving a
    /// file) is not this run's business, and rebuilding from a half-done edit would fail it.
    pub fn stale_reason(bin: &Path, root: &Path, run_began: SystemTime) -> Option<String> {
        let Some(built) = mtime(bin) else { return Some("it does not exist".into()) };
        let checked = mtime(&stamp_of(bin)).map_or(built, |s| s.max(built));
        let Some(inputs) = inputs(bin, root) else { return Some("it has no dep-info beside it".into()) };
        inputs.into_iter().find_map(|f| match mtime(&f) {
            None => Some(format!("{} was removed", f.display())),
            Some(t) if t > checked && t <= run_began => Some(format!("{} changed after it was built", f.display())),
            Some(_) => None,
        })
    }

    /// When a process started, from `/proc/<pid>/stat` (clock ticks since boot) and the boot
    /// time in `/proc/stat`; also its command name.
    fn process_start(pid: u32) -> Option<(String, SystemTime)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        // Fields after the command: state is field 3, starttime field 22.
        let ticks: u64 = rest.split_whitespace().nth(22 - 3)?.parse().ok()?;
        let btime: u64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
        // SAFETY: sysconf(3) has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let since_boot = std::time::Duration::from_millis(ticks * 1000 / hz);
        Some((comm, SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(btime) + since_boot))
    }

    /// When this test run began: the `cargo` that runs this test (its parent), or else this
    /// process. Rounded up by a second, the granularity of the boot time.
    pub fn run_began() -> SystemTime {
        let me = std::process::id();
        let parent = std::fs::read_to_string(format!("/proc/{me}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()));
        let began = match parent.and_then(process_start) {
            Some((comm, t)) if comm == "cargo" => Some(t),
            _ => process_start(me).map(|(_, t)| t),
        };
        began.map_or_else(SystemTime::now, |t| t + std::time::Duration::from_secs(1))
    }

    /// The cargo options that build into `profile_dir` (`<target>/<profile>`), or `None` when
    /// it is not laid out like that (cross builds: `<target>/<triple>/<profile>`).
    fn profile_args(profile_dir: &Path) -> Option<Vec<String>> {
        let target = profile_dir.parent()?;
        if !target.join("CACHEDIR.TAG").exists() {
            return None;
        }
        let mut args = match profile_dir.file_name()?.to_str()? {
            "release" => vec!["--release".to_string()],
            "debug" => vec![],
            other => vec!["--profile".to_string(), other.to_string()],
        };
        args.push("--target-dir".into());
        args.push(target.to_string_lossy().into_owned());
        Some(args)
    }

    /// Checks `bin` (package and binary `name`) once per process; rebuilds it when stale.
    pub fn ensure(bin: &Path, name: &str) {
        let root = workspace_root();
        if !root.join(name).join("Cargo.toml").exists() || !root.join("Cargo.lock").exists() {
            return; // no sources here to build from
        }
        let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
        if checked.contains(bin) {
            return;
        }
        if let Some(why) = stale_reason(bin, &root, run_began()) {
            let Some(profile) = bin.parent().and_then(profile_args) else {
                panic!("{} is out of date ({why}); rebuild it: cargo build -p {name} --bin {name}", bin.display());
            };
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(&root).args(["build", "-p", name, "--bin", name]).args(&profile);
            eprintln!("testkit: {} is out of date ({why}); building it: {cmd:?}", bin.display());
            let started = SystemTime::now();
            let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
            assert!(status.success(), "building {name} failed ({cmd:?}); the tests need a current {}", bin.display());
            // cargo found it current as of `started`: edits made during the build still count.
            let stamp = stamp_of(bin);
            if let Ok(f) = std::fs::File::create(&stamp) {
                let _ = f.set_modified(started);
            }
        }
        checked.insert(bin.to_path_buf());
    }
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

/// A raw request with an optional session token and idempotency key; the node must answer.
pub fn http_as(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    http(addr, method, path, &headers, body).unwrap_or_else(|| panic!("{addr} did not answer {method} {path}"))
}

/// A plain HTTP/1.1 request (no redirects followed, 2 s timeouts). `None` when the node cannot be
/// reached or the answer is not HTTP.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<HttpResponse> {
    http_with_timeout(addr, method, path, headers, body, Duration::from_secs(2))
}

/// [`http`] with `timeout` for reading the answer (for calls that wait, like a membership
/// change).
pub fn http_with_timeout(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> Option<HttpResponse> {
    use std::io::Read;
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    let body = body.unwrap_or("");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
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

/// Who a test's HTTPS call shows itself as to a node's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsAs {
    /// No client certificate (a peer, a script).
    Anonymous,
    /// The operator's certificate beside the cluster CA (what `tracker-node members` shows).
    Operator,
    /// Node N's own certificate: of the cluster CA, but not the operator's.
    Node(u64),
}

/// One HTTPS call to a node's API with the CA of the cluster file `config` pinned, as
/// `who`; `Err` says why no answer came (a TLS refusal, a timeout).
#[allow(clippy::too_many_arguments)]
pub fn https_with_timeout(
    config: &Path,
    who: TlsAs,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let cfg = proto::cluster::ClusterConfig::load(config).map_err(|e| e.to_string())?;
    let tls = match who {
        TlsAs::Node(id) => {
            let files = cfg.tls_files(id);
            let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            let (ca, cert, key) = (read(&files.ca.path)?, read(&files.cert.path)?, read(&files.key.path)?);
            tracker_client::TrackerTls::new(
                &ca,
                Some(tracker_client::tls::Identity { cert_pem: &cert, key_pem: &key }),
            )?
        }
        _ => tracker_client::TrackerTls::from_cluster(&cfg, who == TlsAs::Operator)?,
    };
    let client = tls.reqwest_builder().timeout(timeout).build().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut b = client.request(method, format!("https://{addr}{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(body) = body {
            b = b.header("content-type", "application/json").body(body.to_string());
        }
        let r = b.send().await.map_err(|e| format!("{e:?}"))?;
        let status = r.status().as_u16();
        let headers =
            r.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
        let body = r.text().await.map_err(|e| e.to_string())?;
        Ok(HttpResponse { status, headers, body })
    })
}

/// Whether `addr` (`ip:port`) is a loopback address, where nodes also serve plain HTTP.
pub fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
}

/// GETs a node's JSON at `path`: plain HTTP on a loopback address, HTTPS with the CA of the
/// cluster file `config` pinned anywhere else (a node serves only HTTPS there). `None` unless
/// the answer is 200 with JSON.
pub fn node_get_json(config: &Path, addr: &str, path: &str) -> Option<Value> {
    if is_loopback(addr) {
        return http_get_json(addr, path);
    }
    let r = https_with_timeout(config, TlsAs::Anonymous, addr, "GET", path, &[], None, Duration::from_secs(1)).ok()?;
    if r.status != 200 {
        return None;
    }
    serde_json::from_str(&r.body).ok()
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

/// `bin` as a command, run under `wrapper` when there is one (`ip netns exec NS bin`: `ip`
/// execs `bin` in place, so the child's PID is the binary's).
fn wrapped(wrapper: Option<&[String]>, bin: &Path) -> Command {
    match wrapper {
        Some([program, args @ ..]) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        _ => Command::new(bin),
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
    /// Per node, a command the node's binary is run under (e.g. `ip netns exec NS`): see
    /// [`netns`].
    wrappers: Vec<(u64, Vec<String>)>,
}

/// `(leader, term, status of each node)`: see [`Cluster::stable_view`].
pub type StableView = (u64, u64, Vec<(u64, Value)>);

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
            wrappers: Vec::new(),
        };
        for id in 1..=opts.start {
            c.start_node(id);
        }
        c
    }

    /// Lists one more node in cluster.toml (the next id, new loopback ports, `node-<id>` data_dir),
    /// as an operator does before adding a node, and returns its id. Nothing is started, and the
    /// running nodes are not told: start it with [`Cluster::start_node`].
    pub fn add_node(&mut self) -> u64 {
        let id = self.nodes.iter().map(|(i, _)| *i).max().unwrap_or(0) + 1;
        let (api, raft) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
        let mut toml = std::fs::read_to_string(&self.config).unwrap();
        toml.push_str(&format!(
            "\n[[node]]\nid = {id}\napi = \"{api}\"\nraft = \"{raft}\"\ndata_dir = \"node-{id}\"\n"
        ));
        std::fs::write(&self.config, toml).unwrap();
        self.apis.push(api);
        self.rafts.push(raft);
        self.nodes.push((id, None));
        id
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
    /// Over HTTPS, the cluster CA pinned, when a node is not on a loopback address.
    pub fn client(&self) -> tracker_client::TrackerClient {
        self.client_with(tracker_client::RetryPolicy::default())
    }

    /// [`Cluster::client`] with a retry policy of the caller's.
    pub fn client_with(&self, policy: tracker_client::RetryPolicy) -> tracker_client::TrackerClient {
        let client = tracker_client::TrackerClient::new(self.apis.clone(), policy);
        if self.apis.iter().all(|a| is_loopback(a)) {
            return client;
        }
        let cfg = proto::cluster::ClusterConfig::load(&self.config).expect("the cluster file");
        let tls = tracker_client::TrackerTls::from_cluster(&cfg, false).expect("the cluster CA (the nodes made it)");
        client.with_tls(&tls)
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

    /// Runs node `id` under `argv` (`argv[0]` the program, then its arguments, then the
    /// node's binary and arguments) from its next start on, e.g. `ip netns exec NS`.
    pub fn set_node_wrapper(&mut self, id: u64, argv: Vec<String>) {
        self.wrappers.retain(|(i, _)| *i != id);
        self.wrappers.push((id, argv));
    }

    pub fn start_node(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .unwrap();
        let wrapper = self.wrappers.iter().find(|(i, _)| *i == id).map(|(_, w)| w.as_slice());
        let child = wrapped(wrapper, &workspace_bin("tracker-node"))
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
        node_get_json(&self.config, self.api(id), "/v1/status")
    }

    /// The state machine digest of node `id` with its applied index.
    pub fn digest(&self, id: u64) -> Option<(String, u64)> {
        let st = node_get_json(&self.config, self.api(id), "/v1/status?digest=true")?;
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
                let Some(st) = node_get_json(&self.config, self.api(id), "/v1/status?digest=true") else {
                    return false;
                };
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

    /// One consistent view of the running nodes: every one answers, all are in the same term
    /// and name the same running leader, which says it leads. `None` while an election is under
    /// way or a node has not heard who leads. The other nodes' roles are left for the caller to
    /// check. Returns `(leader, term, status of each running node)`.
    pub fn stable_view(&self) -> Option<StableView> {
        self.stable_view_of(&self.running())
    }

    /// [`Cluster::stable_view`] of the nodes `ids` only (e.g. the voters, leaving out a node
    /// that runs but has not joined yet).
    pub fn stable_view_of(&self, ids: &[u64]) -> Option<StableView> {
        let mut view = Vec::new();
        for id in ids {
            view.push((*id, self.status(*id)?));
        }
        let (_, first) = view.first()?;
        let (leader, term) = (first["leader"].as_u64()?, first["term"].as_u64()?);
        let agreed = ids.contains(&leader)
            && view.iter().all(|(id, st)| {
                st["term"].as_u64() == Some(term)
                    && st["leader"].as_u64() == Some(leader)
                    && (*id != leader || st["role"] == "leader")
            });
        agreed.then_some((leader, term, view))
    }

    /// Waits for [`Cluster::stable_view`] (up to 20 s) and returns `(leader, term)`. Elections
    /// take 80-160 ms here, and one can start at any moment on a busy machine: a test that
    /// checks roles should check them against this view, and retry when the term has moved.
    pub fn wait_stable_leader(&self) -> (u64, u64) {
        let mut found = (0, 0);
        wait_until("every running node to agree on one leader in one term", Duration::from_secs(20), || {
            self.stable_view().map(|(l, t, _)| found = (l, t)).is_some()
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
    /// A command the daemon and the CLI run under (e.g. `ip netns exec NS`); empty: none.
    pub wrapper: Vec<String>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} / {:?}", self.stdout, self.stderr))
    }
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
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
        let child = wrapped(Some(self.wrapper.as_slice()), &peer_bin())
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

    /// Sends `signal` to the daemon and waits up to `timeout` for it to exit (then SIGKILL).
    /// Returns how it exited, or `None` when it had to be killed or was not running.
    pub fn signal_daemon(&mut self, signal: i32, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.daemon.take()?;
        kill_pid(&mut c, signal);
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_pid(&mut c, libc::SIGKILL);
        let _ = c.wait();
        None
    }

    /// This HOME's session token, if logged in.
    pub fn token(&self) -> Option<String> {
        let s: Value = serde_json::from_slice(&std::fs::read(self.home.join("session.json")).ok()?).ok()?;
        s["token"].as_str().map(str::to_string)
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
    }

    /// Runs the CLI with --json; `stdin` is fed to it.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = wrapped(Some(self.wrapper.as_slice()), &peer_bin())
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

    /// Creates `group` with this peer's user as its owner and admits `member`, logged in as
    /// `member_user` (it asks to join, the owner accepts).
    pub fn form_group(&self, group: &str, member: &Peer, member_user: &str) {
        self.ok(&["create-group", group]);
        member.ok(&["join-group", group]);
        self.ok(&["accept-request", group, member_user]);
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

/// A call through the API that follows the cluster's redirects to the leader (307) and waits
/// out elections (503), at most 200 tries of 50 ms: the first other answer.
pub fn call_following_redirects(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let mut addr = addr.to_string();
    for _ in 0..200 {
        let r = http_as(&addr, method, path, token, None, body);
        match r.status {
            307 => {
                let location = r.header("location").expect("a 307 has a Location").to_string();
                addr = location.strip_prefix("http://").unwrap().split('/').next().unwrap().to_string();
            }
            503 => std::thread::sleep(Duration::from_millis(50)),
            _ => return r,
        }
    }
    panic!("{method} {path}: no leader answered");
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_distinct_and_locked() {
        let (lo, hi) = ports::ephemeral_range();
        let taken: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = taken.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), taken.len(), "a port is handed out once per process: {taken:?}");
        let (pool_lo, pool_hi) = ports::pool();
        for p in &taken {
            assert!(*p >= pool_lo && *p < pool_hi, "{p} outside the pool {pool_lo}..{pool_hi}");
            if pool_lo >= ports::POOL_START {
                assert!(*p < lo || *p > hi, "{p} is in the ephemeral range {lo}-{hi}");
            }
            // Another process (or another open of the file) cannot take the reservation.
            // SAFETY: getuid(2) has no failure mode.
            let dir = std::env::temp_dir().join(format!("testkit-ports-{}", unsafe { libc::getuid() }));
            let f = std::fs::File::open(dir.join(p.to_string())).unwrap();
            // SAFETY: flock(2) on a descriptor this test owns.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            assert_ne!(r, 0, "port {p}'s lock is held");
            // And it can be bound by the process it is for.
            drop(std::net::TcpListener::bind(("127.0.0.1", *p)).unwrap());
        }
    }

    /// A fake target dir: a binary, its dep-info naming two sources of a fake crate.
    fn layout(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let root = dir.join("ws");
        let src = root.join("krate/src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(root.join("Cargo.toml"), "").unwrap();
        std::fs::write(root.join("Cargo.lock"), "").unwrap();
        std::fs::write(root.join("krate/Cargo.toml"), "").unwrap();
        let (a, b) = (src.join("main.rs"), src.join("with space.rs"));
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let bin = dir.join("target/release/krate");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::write(&bin, "").unwrap();
        let dep_info = format!("{}: {} {}\n", bin.display(), a.display(), b.display().to_string().replace(' ', "\\ "));
        std::fs::write(bin.with_extension("d"), dep_info).unwrap();
        (root, bin, b)
    }

    fn set_mtime(p: &Path, t: SystemTime) {
        std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn a_binary_is_stale_when_a_source_changed_after_it_was_built_and_before_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let (root, bin, spaced) = layout(dir.path());
        let t0 = SystemTime::now() - Duration::from_secs(100);
        let all = fresh_bin::inputs(&bin, &root).unwrap();
        assert_eq!(
            all.len(),
            2 + 1 + 2,
            "two sources, their crate's manifest, the workspace's and Cargo.lock: {all:?}"
        );
        assert!(all.contains(&spaced), "escaped spaces are read: {all:?}");
        for f in &all {
            set_mtime(f, t0);
        }
        set_mtime(&bin, t0 + Duration::from_secs(10));
        let run = t0 + Duration::from_secs(50);
        assert_eq!(fresh_bin::stale_reason(&bin, &root, run), None);

        set_mtime(&spaced, t0 + Duration::from_secs(20));
        let why = fresh_bin::stale_reason(&bin, &root, run).expect("a source changed before the run");
        assert!(why.contains("with space.rs"), "{why}");
        // The same change, made after the run began, is not this run's business.
        assert_eq!(fresh_bin::stale_reason(&bin, &root, t0 + Duration::from_secs(15)), None);
        // A build that found it current (the stamp) covers changes made before it.
        let stamp = bin.with_file_name(".testkit-fresh-krate");
        std::fs::write(&stamp, "").unwrap();
        set_mtime(&stamp, t0 + Duration::from_secs(30));
        assert_eq!(fresh_bin::stale_reason(&bin, &root, run), None);
        // Cargo.lock counts too.
        set_mtime(&root.join("Cargo.lock"), t0 + Duration::from_secs(40));
        assert!(fresh_bin::stale_reason(&bin, &root, run).unwrap().contains("Cargo.lock"));

        std::fs::remove_file(&spaced).unwrap();
        assert!(fresh_bin::stale_reason(&bin, &root, run).unwrap().contains("was removed"));
        std::fs::remove_file(bin.with_extension("d")).unwrap();
        assert!(fresh_bin::stale_reason(&bin, &root, run).unwrap().contains("dep-info"));
        std::fs::remove_file(&bin).unwrap();
        assert!(fresh_bin::stale_reason(&bin, &root, run).unwrap().contains("does not exist"));
    }

    #[test]
    fn the_run_began_before_now() {
        let began = fresh_bin::run_began();
        assert!(began <= SystemTime::now() + Duration::from_secs(1));
        assert!(began > SystemTime::now() - Duration::from_secs(24 * 3600), "{began:?}");
    }
}
