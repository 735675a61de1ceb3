//! A TCP proxy on every directed Raft link (node i → node j). Each node is started with
//! `TRACKER_RAFT_ROUTES` pointing its RPCs for j at the proxy of (i, j), so the harness can cut
//! any link: a cut link refuses new connections (accepts and drops them) and closes the ones
//! that are open, the way a partition kills keep-alive HTTP connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bound on connecting to the real node behind a proxy.
const CONNECT_TIMEOUT_MS: u64 = 250;
/// Most connections open at once on one link (a node's pool needs one or two).
const MAX_CONNECTIONS_PER_LINK: usize = 16;

struct Link {
    cut: AtomicBool,
    /// Bumped when the link is cut, so open connections close.
    cuts: watch::Sender<u64>,
    open: Arc<tokio::sync::Semaphore>,
}

/// The proxies of a cluster; ids are the tracker node ids.
pub struct Proxies {
    links: HashMap<(u64, u64), Arc<Link>>,
    addrs: HashMap<(u64, u64), String>,
}

impl Proxies {
    /// One proxy per ordered pair of distinct ids, forwarding to `rafts[j]` (the real raft
    /// address of node j).
    pub async fn start(rafts: &HashMap<u64, String>) -> std::io::Result<Proxies> {
        let mut links = HashMap::new();
        let mut addrs = HashMap::new();
        for (&i, _) in rafts {
            for (&j, target) in rafts {
                if i == j {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addrs.insert((i, j), listener.local_addr()?.to_string());
                let link = Arc::new(Link {
                    cut: AtomicBool::new(false),
                    cuts: watch::channel(0).0,
                    open: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS_PER_LINK)),
                });
                links.insert((i, j), link.clone());
                tokio::spawn(serve(listener, link, target.clone()));
            }
        }
        Ok(Proxies { links, addrs })
    }

    /// The `TRACKER_RAFT_ROUTES` value for node `i`.
    pub fn routes_for(&self, i: u64) -> String {
        let mut r: Vec<String> =
            self.addrs.iter().filter(|((a, _), _)| *a == i).map(|((_, b), addr)| format!("{b}={addr}")).collect();
        r.sort();
        r.join(",")
    }

    /// Cuts or restores both directions between `a` and `b`.
    pub fn set_cut(&self, a: u64, b: u64, cut: bool) {
        for key in [(a, b), (b, a)] {
            if let Some(link) = self.links.get(&key) {
                link.cut.store(cut, Ordering::SeqCst);
                if cut {
                    link.cuts.send_modify(|n| *n += 1);
                }
            }
        }
    }

    pub fn heal_all(&self) {
        for link in self.links.values() {
            link.cut.store(false, Ordering::SeqCst);
        }
    }
}

async fn serve(listener: TcpListener, link: Arc<Link>, target: String) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if link.cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let Ok(permit) = link.open.clone().try_acquire_owned() else {
            drop(inbound);
            continue;
        };
        let (link, target) = (link.clone(), target.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut cuts = link.cuts.subscribe();
            let outbound = match tokio::time::timeout(
                Duration::from_millis(CONNECT_TIMEOUT_MS),
                TcpStream::connect(&target),
            )
            .await
            {
                Ok(Ok(s)) => s,
                _ => return,
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (mut a, mut b) = (inbound, outbound);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                _ = cuts.changed() => {}
            }
        });
    }
}
