//! Connection floods for the accept-path tests: many TCP connections to one address, each from a
//! loopback source address of the test's choosing (127.0.0.0/8 plays other hosts), each sending
//! a fixed opening (nothing, or the start of a TLS ClientHello) and then nothing, and each
//! reopened as soon as the server closes it. It runs on a thread and runtime of its own, so the
//! test's own code runs beside it; it stops (and closes every connection) when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The first 11 bytes of a TLS ClientHello: a handshake record announcing 512 bytes, then a
/// ClientHello header announcing 508. A server that has seen them waits for the rest.
pub const PARTIAL_CLIENT_HELLO: [u8; 11] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];

/// What a flood does.
#[derive(Clone, Debug)]
pub struct FloodSpec {
    pub target: SocketAddr,
    /// Source addresses, each with `per_source` connections.
    pub sources: Vec<Ipv4Addr>,
    pub per_source: usize,
    /// Sent right after connecting; empty: a silent connection.
    pub opening: Vec<u8>,
    /// A connection is reopened no sooner than this after the previous one opened. A server
    /// that refuses at once would otherwise meet a reconnect loop as fast as the attacker's
    /// CPU, and here the attacker shares the server's 2 cores: 600 slots at 500 ms is still
    /// 1 200 connections a second, far more than a real client population opens, while leaving
    /// the test measuring admission rather than which process wins the CPU.
    pub min_reopen_interval_ms: u64,
}

impl FloodSpec {
    /// Silent connections from `sources`.
    pub fn silent(target: SocketAddr, sources: Vec<Ipv4Addr>, per_source: usize) -> Self {
        FloodSpec { target, sources, per_source, opening: Vec::new(), min_reopen_interval_ms: 500 }
    }
}

/// Counters of a running flood.
#[derive(Default, Debug)]
pub struct FloodStats {
    /// Connections the kernel completed (connect returned).
    pub opened: AtomicU64,
    /// Connections the server closed (EOF or reset seen).
    pub closed_by_server: AtomicU64,
    /// Connections open right now, and the most seen at once.
    pub open_now: AtomicU64,
    pub open_max: AtomicU64,
}

/// A running flood; dropping it stops it.
pub struct Flood {
    stop: Arc<AtomicBool>,
    pub stats: Arc<FloodStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Niceness of the flood's thread. The attacker plays remote hosts, which spend their own CPU;
/// here it shares the 2 cores with the nodes it attacks (whose API threads run at nice 5), so
/// at the default priority its reconnect loop would starve their accept loops and the test
/// would measure this machine's CPU, not the defence. At 19 it takes what the nodes leave.
const FLOOD_THREAD_NICE: i32 = 19;

/// Lowers the calling thread's priority to `FLOOD_THREAD_NICE` (on Linux, nice is per thread).
fn yield_to_the_nodes() {
    // SAFETY: setpriority on the calling thread's own id; no memory is touched.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, FLOOD_THREAD_NICE);
    }
}

/// Starts `spec` and returns once every connection was tried at least once.
pub fn flood(spec: FloodSpec) -> Flood {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(FloodStats::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let thread = {
        let (stop, stats) = (stop.clone(), stats.clone());
        std::thread::spawn(move || {
            yield_to_the_nodes();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                let (first_tx, mut first_rx) = tokio::sync::mpsc::channel::<()>(1024);
                for src in spec.sources.clone() {
                    for _ in 0..spec.per_source {
                        let (spec, stop, stats, first_tx) =
                            (spec.clone(), stop.clone(), stats.clone(), first_tx.clone());
                        tasks.push(tokio::spawn(one_connection(spec, src, stop, stats, first_tx)));
                    }
                }
                drop(first_tx);
                // Every task reports its first attempt (or ends): then the flood is on.
                while first_rx.recv().await.is_some() {}
                let _ = ready_tx.send(());
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                for t in tasks {
                    t.abort();
                }
            });
        })
    };
    let _ = ready_rx.recv_timeout(Duration::from_secs(60));
    Flood { stop, stats, thread: Some(thread) }
}

/// One connection slot of the flood: connect from `src`, send the opening, wait for the server
/// to close, again.
async fn one_connection(
    spec: FloodSpec,
    src: Ipv4Addr,
    stop: Arc<AtomicBool>,
    stats: Arc<FloodStats>,
    first: tokio::sync::mpsc::Sender<()>,
) {
    let mut first = Some(first);
    while !stop.load(Ordering::Relaxed) {
        let started = tokio::time::Instant::now();
        if let Ok(mut tcp) = connect_from(src, spec.target).await {
            stats.opened.fetch_add(1, Ordering::Relaxed);
            let now = stats.open_now.fetch_add(1, Ordering::Relaxed) + 1;
            stats.open_max.fetch_max(now, Ordering::Relaxed);
            if let Some(f) = first.take() {
                let _ = f.send(()).await;
            }
            if spec.opening.is_empty() || tcp.write_all(&spec.opening).await.is_ok() {
                let mut buf = [0u8; 1024];
                // Read (and drop) whatever the server says until it closes.
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }
            stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
            stats.open_now.fetch_sub(1, Ordering::Relaxed);
        } else if let Some(f) = first.take() {
            let _ = f.send(()).await;
        }
        tokio::time::sleep_until(started + Duration::from_millis(spec.min_reopen_interval_ms)).await;
    }
}

async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((src, 0)))?;
    tokio::time::timeout(Duration::from_secs(2), s.connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))?
}

impl Flood {
    /// (opened, closed by the server, open now, most open at once)
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let s = &self.stats;
        (
            s.opened.load(Ordering::Relaxed),
            s.closed_by_server.load(Ordering::Relaxed),
            s.open_now.load(Ordering::Relaxed),
            s.open_max.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (p50, p99, max) of `samples`, in their unit; zeros when empty.
pub fn percentiles(samples: &[u64]) -> (u64, u64, u64) {
    if samples.is_empty() {
        return (0, 0, 0);
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99), *s.last().unwrap())
}
