//! The links between tracker nodes, as the nemesis cuts them: loopback proxies
//! ([`crate::proxy::Proxies`]) or, in netns mode, one delaying relay process per node inside
//! that node's namespace ([`Relays`], see `relay.rs`) plus the hosts' cables
//! ([`testkit::netns::Net::cut`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use testkit::netns::Net;
use testkit::{free_port, Cluster};

use crate::proxy::Proxies;
use crate::relay::LinkSpec;

/// What the nemesis needs from the network.
pub trait Links: Sync {
    /// Cuts or restores both directions between nodes `a` and `b`.
    fn set_cut(&self, a: u64, b: u64, cut: bool);
    /// Cuts `node` off from every other node in `ids` (clients included, where the network can).
    fn isolate(&self, node: u64, ids: &[u64]) {
        for &b in ids.iter().filter(|b| **b != node) {
            self.set_cut(node, b, true);
        }
    }
    /// Undoes every cut and isolation.
    fn heal_all(&self);
}

impl Links for Proxies {
    fn set_cut(&self, a: u64, b: u64, cut: bool) {
        Proxies::set_cut(self, a, b, cut)
    }
    fn heal_all(&self) {
        Proxies::heal_all(self)
    }
}

struct RelayProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

/// One `chaos relay` process per node, in the node's namespace: node i's Raft RPCs for node j
/// go to 127.0.0.1:P(i,j) there (`TRACKER_RAFT_ROUTES`, which takes loopback routes only), and
/// the relay forwards them to node j's real address with the configured delay both ways.
/// Isolation pulls the host's cable (`ip link set down`), which also cuts it off from clients.
pub struct Relays<'a> {
    net: &'a Net,
    procs: Mutex<HashMap<u64, RelayProc>>,
    isolated: Mutex<Vec<u64>>,
}

impl<'a> Relays<'a> {
    /// Starts the relays for every node of `cluster` (placed on `net` by
    /// `testkit::netns::place_cluster`, not yet started) and sets each node's routes.
    pub fn start(net: &'a Net, cluster: &mut Cluster, spec: LinkSpec) -> anyhow::Result<Relays<'a>> {
        let relay_bin = testkit::workspace_bin("chaos");
        let ids = cluster.ids();
        let mut procs = HashMap::new();
        for &i in &ids {
            let mut routes = Vec::new();
            let mut env = Vec::new();
            for &j in ids.iter().filter(|j| **j != i) {
                let port = free_port();
                routes.push(format!("{j}=127.0.0.1:{port}={}", cluster.rafts[(j - 1) as usize]));
                env.push(format!("{j}=127.0.0.1:{port}"));
            }
            let mut cmd = net.command((i - 1) as usize, &relay_bin);
            cmd.args(["relay", "--control-stdin"])
                .args(["--delay-ms", &format!("{}", spec.delay.as_secs_f64() * 1e3)])
                .args(["--jitter-ms", &format!("{}", spec.jitter.as_secs_f64() * 1e3)])
                .args(["--window-bytes", &spec.window_bytes.to_string()]);
            for r in &routes {
                cmd.args(["--route", r]);
            }
            let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
            let stdin = child.stdin.take().expect("piped");
            let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            if line.trim() != "ready" {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the relay of node {i} did not start (said {line:?})");
            }
            procs.insert(i, RelayProc { child, stdin, stdout });
            cluster.set_node_env(i, "TRACKER_RAFT_ROUTES", &env.join(","));
        }
        Ok(Relays { net, procs: Mutex::new(procs), isolated: Mutex::new(Vec::new()) })
    }

    /// Sends one control line to node `i`'s relay and waits for its `ok`.
    fn tell(&self, i: u64, line: &str) {
        let mut procs = self.procs.lock().unwrap();
        let Some(p) = procs.get_mut(&i) else { return };
        if writeln!(p.stdin, "{line}").and_then(|_| p.stdin.flush()).is_err() {
            eprintln!("chaos: the relay of node {i} is gone");
            return;
        }
        let mut ok = String::new();
        let _ = p.stdout.read_line(&mut ok);
    }
}

impl Links for Relays<'_> {
    fn set_cut(&self, a: u64, b: u64, cut: bool) {
        let verb = if cut { "cut" } else { "heal" };
        self.tell(a, &format!("{verb} {b}"));
        self.tell(b, &format!("{verb} {a}"));
    }

    fn isolate(&self, node: u64, _ids: &[u64]) {
        if let Err(e) = self.net.cut((node - 1) as usize) {
            eprintln!("chaos: {e}");
        }
        self.isolated.lock().unwrap().push(node);
    }

    fn heal_all(&self) {
        for node in std::mem::take(&mut *self.isolated.lock().unwrap()) {
            if let Err(e) = self.net.heal((node - 1) as usize) {
                eprintln!("chaos: {e}");
            }
        }
        let ids: Vec<u64> = self.procs.lock().unwrap().keys().copied().collect();
        for i in ids {
            self.tell(i, "heal");
        }
    }
}

impl Drop for Relays<'_> {
    fn drop(&mut self) {
        for (_, mut p) in self.procs.lock().unwrap().drain() {
            // SAFETY: kill(2) on the PID of a child this process spawned and has not reaped.
            unsafe { libc::kill(p.child.id() as i32, libc::SIGKILL) };
            let _ = p.child.wait();
        }
    }
}

/// The relay's link for a one-way delay and jitter in milliseconds, with `window_bytes`.
pub fn spec(delay_ms: f64, jitter_ms: f64, window_bytes: usize) -> LinkSpec {
    LinkSpec {
        delay: Duration::from_secs_f64(delay_ms / 1e3),
        jitter: Duration::from_secs_f64(jitter_ms / 1e3),
        window_bytes,
    }
}
