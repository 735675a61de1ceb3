//! Hosts of their own for tests: Linux network namespaces, each with its own address on a
//! private bridge, so that tracker nodes and peers talk over real interfaces instead of one
//! shared 127.0.0.1 (issue 13). Needs root; [`available`] says why not, and tests then skip.
//!
//! Layout of one [`Net`] (every name starts with `p2pt-<pid>-<n>-`, so that concurrent test
//! processes never collide and a crashed one's leftovers can be swept):
//!
//! ```text
//!   ns <id>-hub:  bridge br0, ports v0 v1 .. v(N-1)        (no address; nothing else)
//!   ns <id>-h<i>: lo up, eth0 (veth peer of v<i>) = 10.77.0.<i+1>/24
//! ```
//!
//! Nothing is created in the host's own namespace: no interface, no route, no address. The
//! subnet therefore never collides with the host's networks, nor with another `Net`'s (each is
//! its own L2 world). The test process reaches the hosts by running code in one of them
//! ([`Net::run_in`]: a thread that `setns(2)`s into it) and starts programs in them with
//! `ip netns exec` ([`Net::wrapper`]). A cut ([`Net::cut`]) sets the host's bridge port down:
//! the host's cable is pulled, its packets are dropped, open TCP connections stall.
//!
//! Everything is deleted on drop (also when a test panics). Processes started in a namespace
//! must be stopped by their owner first (declare the `Net` before the cluster, so it drops last).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::cluster::Cluster;

/// The first part of every namespace name this module creates.
pub const PREFIX: &str = "p2pt";
/// The hosts' subnet: host `i` is `10.77.0.<i+1>`. Private to each [`Net`].
pub const SUBNET: [u8; 3] = [10, 77, 0];

static NEXT: AtomicU32 = AtomicU32::new(0);

/// `Ok` when this process can create network namespaces; else why not, in a sentence for a
/// "skipped: ..." line.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid(2) has no failure mode and no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("network namespaces need root (ip netns add); this test runs as another user".into());
    }
    let probe = format!("{PREFIX}-{}-probe{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    ip(&["netns", "add", &probe]).map_err(|e| format!("cannot create a network namespace: {e}"))?;
    let _ = ip(&["netns", "del", &probe]);
    Ok(())
}

/// Prints why a test is skipped and returns true when namespaces are not available.
pub fn skip(test: &str) -> bool {
    match available() {
        Ok(()) => false,
        Err(why) => {
            eprintln!("skipped: {test}: {why}");
            true
        }
    }
}

/// Runs `ip ARGS`; the error carries its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The iptables program to use: `iptables-legacy` where both exist (the kernel's ip_tables,
/// which needs no nf_tables), else `iptables`; an error says how to get one.
fn iptables() -> Result<&'static str, String> {
    for prog in ["iptables-legacy", "iptables"] {
        let found = Command::new(prog).arg("--version").stdin(Stdio::null()).output();
        if matches!(found, Ok(o) if o.status.success()) {
            return Ok(prog);
        }
    }
    Err("no iptables here (install the iptables package): packet loss needs its `statistic` match".into())
}

/// Whether [`Net::set_loss`] can work here (an iptables program; the kernel's answer to the
/// first rule says the rest).
pub fn loss_available() -> Result<(), String> {
    iptables().map(|_| ())
}

/// Namespaces of this module left by a test process that no longer runs (killed before its
/// drop ran): deleted, so that they do not pile up.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).stdin(Stdio::null()).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A bridge and `hosts` namespaces plugged into it (see the module docs).
pub struct Net {
    id: String,
    hub: String,
    hosts: Vec<String>,
}

impl Net {
    /// Creates the bridge and the hosts; on error, deletes what it made.
    pub fn new(hosts: usize) -> Result<Net, String> {
        assert!((1..=250).contains(&hosts), "1 to 250 hosts");
        sweep_stale();
        let id = format!("{PREFIX}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let hub = format!("{id}-hub");
        ip(&["netns", "add", &hub])?;
        let mut net = Net { id: id.clone(), hub: hub.clone(), hosts: Vec::new() };
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..hosts {
            let ns = format!("{id}-h{i}");
            ip(&["netns", "add", &ns])?;
            net.hosts.push(ns.clone());
            let port = format!("v{i}");
            ip(&["-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", net.ip(i)), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// `p2pt-<pid>-<n>`: the prefix of every namespace of this net.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host `i`'s namespace name.
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], i as u8 + 1)
    }

    /// `ip netns exec <ns>`: what to put before a program to run it in host `i`.
    pub fn wrapper(&self, i: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.hosts[i].clone()]
    }

    /// `program` as a command run in host `i`.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i]]).arg(program);
        c
    }

    /// Pulls host `i`'s cable: its bridge port goes down, every packet to or from it is lost.
    pub fn cut(&self, i: usize) -> Result<(), String> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"])
    }

    /// Plugs host `i`'s cable back in.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"])
    }

    /// Makes host `i` lose each packet it receives on its cable with probability `loss_pct`
    /// / 100 (iptables' `statistic` match in random mode, in the host's own namespace): real
    /// loss, which TCP sees and recovers from by retransmission, in place of `tc netem`, which
    /// this kernel lacks. Loopback inside the host is not touched. 0 removes the loss.
    pub fn set_loss(&self, i: usize, loss_pct: f64) -> Result<(), String> {
        if !(0.0..=100.0).contains(&loss_pct) {
            return Err(format!("loss {loss_pct}% is not between 0 and 100"));
        }
        let prog = iptables()?;
        let ns = self.hosts[i].as_str();
        let run = |args: &[&str]| ip(&[&["netns", "exec", ns, prog, "-w"][..], args].concat());
        run(&["-F", "INPUT"])?;
        if loss_pct > 0.0 {
            let p = format!("{:.6}", loss_pct / 100.0);
            let rule =
                ["-A", "INPUT", "-i", "eth0", "-m", "statistic", "--mode", "random", "--probability", &p, "-j", "DROP"];
            run(&rule)?;
        }
        Ok(())
    }

    /// Runs `f` on a thread inside host `i`'s namespace (sockets it opens, threads and processes
    /// it starts are there too) and returns its result; a panic in `f` is raised here.
    pub fn run_in<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        let ns = self.hosts[i].clone();
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                enter(&ns).unwrap_or_else(|e| panic!("{e}"));
                f()
            });
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Moves the calling thread into host `i`'s namespace (for a binary's main thread; threads
    /// and processes it starts afterwards are there too).
    pub fn enter(&self, i: usize) -> Result<(), String> {
        enter(&self.hosts[i])
    }
}

/// `setns(2)` of the calling thread into the named namespace.
fn enter(ns: &str) -> Result<(), String> {
    let path = format!("/run/netns/{ns}");
    let f = std::fs::File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    // SAFETY: setns(2) on a descriptor this function owns; it changes only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns into {ns}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.hub)) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("testkit::netns: {e}");
            }
        }
    }
}

/// Puts the nodes of `cluster` (started with `start: 0`, so none runs yet) on hosts: node `id`
/// on host `id - 1`, at that host's address with the ports the cluster drew; cluster.toml is
/// rewritten to list those addresses, and each node will run in its namespace. The hosts from
/// `cluster.ids().len()` on are left for clients and peers.
pub fn place_cluster(net: &Net, cluster: &mut Cluster) {
    let mut toml = std::fs::read_to_string(&cluster.config).unwrap();
    for id in cluster.ids() {
        let host = (id - 1) as usize;
        assert!(host < net.len(), "node {id} has no host: the net has {} hosts", net.len());
        let ip = net.ip(host).to_string();
        for addr in [&mut cluster.apis[host], &mut cluster.rafts[host]] {
            let moved = addr.replace("127.0.0.1", &ip);
            toml = toml.replace(&format!("\"{addr}\""), &format!("\"{moved}\""));
            *addr = moved;
        }
        cluster.set_node_wrapper(id, net.wrapper(host));
    }
    std::fs::write(&cluster.config, toml).unwrap();
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;

    fn listed() -> String {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Two hosts talk over the bridge at their own addresses (and not over loopback); a pulled
    /// cable stops them, a plugged one lets them talk again; the drop deletes every namespace.
    #[test]
    fn hosts_talk_over_the_bridge_a_cut_stops_them_and_drop_deletes_everything() {
        if skip("hosts_talk_over_the_bridge_a_cut_stops_them_and_drop_deletes_everything") {
            return;
        }
        let net = Net::new(2).unwrap();
        let id = net.id().to_string();
        assert_eq!(listed().matches(&id).count(), 3, "a hub and two hosts: {}", listed());
        let server = net.ip(1);
        let listener = net.run_in(1, || TcpListener::bind((server, 0)).unwrap());
        let port = listener.local_addr().unwrap().port();
        // Answers each connection with the address it came from, until told to stop (its
        // socket would keep host 1's namespace alive after the drop).
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server_thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut s, peer)) => {
                            let _ = s.set_nonblocking(false);
                            let _ = s.write_all(peer.ip().to_string().as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        let ask = || {
            net.run_in(0, || {
                let to = (server, port).into();
                let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(500)).ok()?;
                let mut who = String::new();
                s.read_to_string(&mut who).ok()?;
                Some(who)
            })
        };
        assert_eq!(ask().as_deref(), Some("10.77.0.1"), "host 0 reaches host 1 from its own address");
        assert!(
            net.run_in(0, || TcpStream::connect(("127.0.0.1", port)).is_err()),
            "host 1's port is not on host 0's loopback"
        );
        net.cut(1).unwrap();
        assert_eq!(ask(), None, "a pulled cable: no connection");
        net.heal(1).unwrap();
        let mut back = None;
        crate::wait::wait_until("the healed link to carry a connection", Duration::from_secs(10), || {
            back = ask();
            back.is_some()
        });
        assert_eq!(back.as_deref(), Some("10.77.0.1"));
        match loss_available() {
            Ok(()) => {
                net.set_loss(1, 100.0).unwrap();
                assert_eq!(ask(), None, "every packet into host 1 lost: no connection");
                net.set_loss(1, 0.0).unwrap();
                assert_eq!(ask().as_deref(), Some("10.77.0.1"), "the loss removed");
                assert!(net.set_loss(1, 101.0).is_err());
            }
            Err(why) => eprintln!("skipped: the loss part: {why}"),
        }
        stop.store(true, Ordering::Relaxed);
        server_thread.join().unwrap();
        drop(net);
        assert!(!listed().contains(&id), "every namespace deleted: {}", listed());
    }
}
