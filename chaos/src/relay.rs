//! `chaos relay`: a TCP relay that delays every byte by a one-way delay with jitter. It stands
//! in for `tc qdisc ... netem delay D J`, which this project's test machines lack (no
//! `sch_netem` in their kernels): started inside the *sending* host's network namespace, it
//! listens on that host's 127.0.0.1 and forwards to another host's real address, so every
//! byte between the two hosts crosses it once, both ways (request and answer).
//!
//! What it models:
//! - one-way delay `delay ± jitter` per chunk of bytes read (uniform in `[D-J, D+J]`, never
//!   below 0), in each direction, so the round trip is about `2·D` with jitter;
//! - order: bytes of one connection leave in the order they came (a chunk never overtakes the
//!   one before it: its due time is at least the previous one's), as TCP delivers them;
//! - a bandwidth-delay window: at most `window_bytes` per direction of a connection are in
//!   flight, counted from when they are read until one more one-way delay after they were
//!   delivered (the time an acknowledgement would take to come back), so a bulk transfer runs
//!   at most `window / RTT` like a TCP flow with that window on a link with that RTT, instead
//!   of into an endless buffer;
//! - cuts: `cut LABEL` on stdin (with `--control-stdin`) closes the route's open connections
//!   and refuses new ones until `heal LABEL` (or `heal`), the way a partition ends keep-alive
//!   connections (the same semantics as `proxy.rs`).
//!
//! What it does not model: packet loss and retransmission, reordering at the IP layer,
//! congestion or a bandwidth limit other than the window, delay on the TCP handshake (the
//! connection to the target is made at once), and per-packet rather than per-read delay. The
//! relay splits each TCP connection in two, so the endpoints' own congestion control sees a
//! short local hop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

/// Largest chunk read at once; the unit of delay.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks queued per direction (on top of the byte window: many tiny writes stay bounded too).
const QUEUE_CHUNKS: usize = 4096;
/// Bound on connecting to the target.
const CONNECT_TIMEOUT_MS: u64 = 500;
/// Most connections open at once per route.
const MAX_CONNECTIONS_PER_ROUTE: usize = 64;

/// How the relay treats bytes.
#[derive(Clone, Copy, Debug)]
pub struct LinkSpec {
    pub delay: Duration,
    pub jitter: Duration,
    pub window_bytes: usize,
}

impl LinkSpec {
    /// One draw of the one-way delay: uniform in `[delay - jitter, delay + jitter]`, at least 0.
    fn draw(&self, rng: &mut impl Rng) -> Duration {
        let (d, j) = (self.delay.as_nanos() as i128, self.jitter.as_nanos() as i128);
        let x = if j == 0 { d } else { d + rng.gen_range(-j..=j) };
        Duration::from_nanos(x.max(0) as u64)
    }
}

/// One listening address, what it forwards to, and the label cuts name it by.
#[derive(Clone, Debug)]
pub struct Route {
    pub label: String,
    pub listen: SocketAddr,
    pub target: String,
}

impl std::str::FromStr for Route {
    type Err = String;
    /// `LABEL=LISTEN=TARGET` or `LISTEN=TARGET` (the label is then the target).
    fn from_str(s: &str) -> Result<Route, String> {
        let parts: Vec<&str> = s.split('=').collect();
        let (label, listen, target) = match parts.as_slice() {
            [l, a, t] => (l.to_string(), *a, *t),
            [a, t] => (t.to_string(), *a, *t),
            _ => return Err(format!("expected [LABEL=]LISTEN=TARGET, got {s:?}")),
        };
        let listen = listen.parse().map_err(|_| format!("{listen:?} is not an ip:port address"))?;
        Ok(Route { label, listen, target: target.to_string() })
    }
}

/// The routes cut now, and the open connections of each route (to close on a cut).
#[derive(Default)]
struct Cuts {
    cut: HashSet<String>,
    open: HashMap<String, Vec<(u64, TcpStream)>>,
    next_conn: u64,
}

type Shared = Arc<Mutex<Cuts>>;

/// Cuts, heals (`heal` alone: every route), as `--control-stdin` reads them.
fn control(cuts_line: &str, state: &Mutex<Cuts>) {
    let mut words = cuts_line.split_whitespace();
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    match (words.next(), words.next()) {
        (Some("cut"), Some(label)) => {
            st.cut.insert(label.to_string());
            for (_, s) in st.open.remove(label).unwrap_or_default() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        (Some("heal"), Some(label)) => {
            st.cut.remove(label);
        }
        (Some("heal"), None) => st.cut.clear(),
        _ => eprintln!("relay: ignored control line {cuts_line:?} (expected: cut LABEL | heal [LABEL])"),
    }
}

/// Binds every route, prints `ready` on stdout, and relays until killed (or, with
/// `control_stdin`, until stdin ends: the harness that started it is gone).
pub fn run(routes: Vec<Route>, spec: LinkSpec, control_stdin: bool) -> anyhow::Result<()> {
    let state: Shared = Arc::default();
    let mut listeners = Vec::new();
    for r in &routes {
        let l =
            TcpListener::bind(r.listen).map_err(|e| anyhow::anyhow!("relay: cannot listen on {}: {e}", r.listen))?;
        listeners.push((l, r.clone()));
    }
    for (l, r) in listeners {
        let (state, spec) = (state.clone(), spec);
        std::thread::Builder::new()
            .name(format!("accept {}", r.label))
            .spawn(move || accept_loop(l, r, spec, state))?;
    }
    println!("ready");
    std::io::stdout().flush()?;
    if control_stdin {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            control(&line, &state);
            println!("ok {line}");
            std::io::stdout().flush()?;
        }
        return Ok(());
    }
    loop {
        std::thread::park();
    }
}

fn accept_loop(listener: TcpListener, route: Route, spec: LinkSpec, state: Shared) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for inbound in listener.incoming() {
        let Ok(inbound) = inbound else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        use std::sync::atomic::Ordering::SeqCst;
        let refused = state.lock().unwrap_or_else(|p| p.into_inner()).cut.contains(&route.label);
        if refused || open.load(SeqCst) >= MAX_CONNECTIONS_PER_ROUTE {
            drop(inbound);
            continue;
        }
        open.fetch_add(1, SeqCst);
        let (route, state, open) = (route.clone(), state.clone(), open.clone());
        let _ = std::thread::Builder::new().name(format!("conn {}", route.label)).spawn(move || {
            connection(inbound, &route, spec, &state);
            open.fetch_sub(1, SeqCst);
        });
    }
}

fn connect(target: &str) -> Option<TcpStream> {
    let addrs: Vec<SocketAddr> = target.to_socket_addrs().ok()?.collect();
    addrs.iter().find_map(|a| TcpStream::connect_timeout(a, Duration::from_millis(CONNECT_TIMEOUT_MS)).ok())
}

/// Relays one connection both ways until either side closes or the route is cut.
fn connection(inbound: TcpStream, route: &Route, spec: LinkSpec, state: &Shared) {
    let Some(outbound) = connect(&route.target) else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let id = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        if st.cut.contains(&route.label) {
            return;
        }
        st.next_conn += 1;
        let id = st.next_conn;
        let open = st.open.entry(route.label.clone()).or_default();
        for s in [&inbound, &outbound] {
            if let Ok(c) = s.try_clone() {
                open.push((id, c));
            }
        }
        id
    };
    let clones = (inbound.try_clone(), outbound.try_clone());
    if let (Ok(in2), Ok(out2)) = clones {
        let forward = std::thread::spawn(move || direction(inbound, outbound, spec));
        direction(out2, in2, spec);
        let _ = forward.join();
    }
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = st.open.get_mut(&route.label) {
        v.retain(|(i, _)| *i != id);
    }
}

/// Bytes in flight on one direction: the window (see the module docs).
struct Window {
    state: Mutex<WindowState>,
    freed: Condvar,
}

struct WindowState {
    in_flight: usize,
    /// (when the bytes leave the window, how many), in time order.
    releases: VecDeque<(Instant, usize)>,
    closed: bool,
}

impl Window {
    /// Waits until `n` more bytes fit (or the window is empty), then takes them.
    fn take(&self, n: usize, cap: usize) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = Instant::now();
            while st.releases.front().is_some_and(|(t, _)| *t <= now) {
                let (_, k) = st.releases.pop_front().unwrap();
                st.in_flight -= k;
            }
            if st.closed {
                return false;
            }
            if st.in_flight == 0 || st.in_flight + n <= cap {
                st.in_flight += n;
                return true;
            }
            let wait = st.releases.front().map_or(Duration::from_millis(50), |(t, _)| t.saturating_duration_since(now));
            st = self.freed.wait_timeout(st, wait.max(Duration::from_micros(50))).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn release_at(&self, at: Instant, n: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.releases.push_back((at, n));
        self.freed.notify_all();
    }

    fn give_back(&self, n: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.in_flight -= n;
        self.freed.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.freed.notify_all();
    }
}

/// One direction: a reader stamps each chunk with its due time, a writer sends it then.
fn direction(mut from: TcpStream, to: TcpStream, spec: LinkSpec) {
    let window = Arc::new(Window {
        state: Mutex::new(WindowState { in_flight: 0, releases: VecDeque::new(), closed: false }),
        freed: Condvar::new(),
    });
    let (tx, rx): (SyncSender<(Instant, Vec<u8>)>, Receiver<(Instant, Vec<u8>)>) = sync_channel(QUEUE_CHUNKS);
    let writer = {
        let (window, mut to2) = (window.clone(), to.try_clone());
        std::thread::spawn(move || {
            for (due, chunk) in rx {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let Ok(to) = to2.as_mut() else { break };
                if to.write_all(&chunk).is_err() {
                    break;
                }
                // The acknowledgement's trip back: the bytes leave the window one delay later.
                window.release_at(Instant::now() + spec.delay, chunk.len());
            }
            window.close();
        })
    };
    let mut rng = rand::thread_rng();
    let mut last_due = Instant::now();
    let cap = spec.window_bytes.max(1);
    let chunk_max = CHUNK_BYTES.min(cap);
    let mut buf = vec![0u8; chunk_max];
    loop {
        if !window.take(chunk_max, cap) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        // Give back what this read did not use.
        window.give_back(chunk_max - n);
        if n == 0 {
            break;
        }
        let due = (Instant::now() + spec.draw(&mut rng)).max(last_due);
        last_due = due;
        if tx.send((due, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
    // Pass the end on (half-close), and make the other direction's reader stop if it is gone.
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_with_and_without_a_label() {
        let r: Route = "2=127.0.0.1:9000=10.77.0.2:7102".parse().unwrap();
        assert_eq!((r.label.as_str(), r.listen.port(), r.target.as_str()), ("2", 9000, "10.77.0.2:7102"));
        let r: Route = "127.0.0.1:9000=10.77.0.2:7102".parse().unwrap();
        assert_eq!(r.label, "10.77.0.2:7102");
        assert!("nonsense".parse::<Route>().is_err());
    }

    #[test]
    fn delay_draws_stay_in_range() {
        let spec = LinkSpec { delay: Duration::from_millis(1), jitter: Duration::from_millis(1), window_bytes: 1 };
        let mut rng = rand::thread_rng();
        for _ in 0..1000 {
            assert!(spec.draw(&mut rng) <= Duration::from_millis(2));
        }
    }

    /// A relay on loopback with 20 ms each way: an echo takes about 40 ms, bytes keep their
    /// order, a cut closes the connection and a heal lets new ones through.
    #[test]
    fn delays_both_ways_keeps_order_and_cuts() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for s in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut r = s.try_clone().unwrap();
                    let mut w = s;
                    let _ = std::io::copy(&mut r, &mut w);
                });
            }
        });
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = probe.local_addr().unwrap();
        drop(probe);
        let spec =
            LinkSpec { delay: Duration::from_millis(20), jitter: Duration::from_millis(2), window_bytes: 1 << 20 };
        let state: Shared = Arc::default();
        let route = Route { label: "x".into(), listen, target };
        let l = TcpListener::bind(listen).unwrap();
        {
            let state = state.clone();
            std::thread::spawn(move || accept_loop(l, route, spec, state));
        }
        let mut c = TcpStream::connect(listen).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t0 = Instant::now();
        let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = c.try_clone().unwrap();
        let m2 = msg.clone();
        std::thread::spawn(move || w.write_all(&m2).unwrap());
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        let rtt = t0.elapsed();
        assert_eq!(back, msg, "bytes come back in order");
        assert!(rtt >= Duration::from_millis(36), "round trip {rtt:?} is at least 2 × (20 - 2) ms");
        control("cut x", &state);
        let mut one = [0u8; 1];
        assert!(matches!(c.read(&mut one), Ok(0) | Err(_)), "a cut closes open connections");
        control("heal", &state);
        let mut c = TcpStream::connect(listen).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"hi").unwrap();
        let mut two = [0u8; 2];
        c.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"hi");
    }
}
