//! The Raft port's accept loop: mutual TLS 1.3 on every connection, then the node's identity,
//! then HTTP. A connection is served only when its client certificate chains to the cluster
//! CA (checked by rustls during the handshake) and names exactly one node of the cluster
//! (`tls::peer_identity`, checked here before any request is read); each request then carries
//! that node id to the handlers ([`PeerNode`]), which refuse messages sent in another node's
//! name. Everything is bounded: connections still opening go through the project's admission
//! policy (`admission`: in total, per source address and per /24 or /64, with slots kept for
//! addresses that hold none, closed at once over a bound; the first byte within a second, the
//! handshake within two), authenticated connections are bounded in total, and a connection's
//! idle time. Refusals are logged at warn level, at most [`MAX_WARNINGS_PER_WINDOW`] lines per
//! [`WARN_WINDOW_MS`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Extensions;
use axum::Router;
use raft_store::{NodeId, Raft};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use admission::{Limits, Refusal};

use crate::accept::{Ended, NoFirstByte};
use crate::tls;

/// Connections accepted whose first byte or TLS handshake is not over. Unauthenticated clients
/// can hold these only, never the connection slots below. A node opens a few connections to
/// each other node at once, and several nodes may share a host (or a /24): 16 per address and
/// 32 per network leave them room; 16 of the 64 are kept for addresses holding none, so a node
/// reconnecting finds a slot while attackers on many networks hold the rest.
pub const OPENING_LIMITS: Limits = Limits { total: 64, per_address: 16, per_prefix: 32, kept_for_new: 16 };
/// Authenticated connections served at once (a node keeps 2-3 open to each other node).
pub const MAX_RAFT_CONNECTIONS: usize = 64;
/// A connection that has sent nothing this long after it was accepted is closed.
pub const FIRST_BYTE_TIMEOUT_MS: u64 = admission::FIRST_BYTE_TIMEOUT_MS;
/// The TLS handshake must be over this long after the connection was accepted.
pub const HANDSHAKE_TIMEOUT_MS: u64 = admission::HANDSHAKE_TIMEOUT_MS;
// The first byte comes within the handshake's allowance; one address (several nodes on one
// host) may open as many connections at once as can be served.
const _: () =
    assert!(FIRST_BYTE_TIMEOUT_MS <= HANDSHAKE_TIMEOUT_MS && OPENING_LIMITS.per_address <= MAX_RAFT_CONNECTIONS);
/// An idle connection (no request started) is closed after this long. Longer than the client
/// pool's idle timeout (raft_net::client), so the client closes first and never sends on a
/// connection the server is closing.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Refusal warnings: at most this many lines per window, then one line with the count.
pub const MAX_WARNINGS_PER_WINDOW: u64 = 20;
pub const WARN_WINDOW_MS: u64 = 10_000;

/// The node id a Raft request's connection authenticated as (a request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerNode(pub NodeId);

/// Who may speak Raft: a node listed in the cluster file this node started with, or a member
/// of the cluster now (a node added later, through `members add`, which the operator ran with
/// a file that lists it).
#[derive(Clone)]
pub struct PeerPolicy {
    listed: BTreeSet<NodeId>,
    raft: Raft,
}

impl PeerPolicy {
    pub fn new(listed: impl IntoIterator<Item = NodeId>, raft: Raft) -> Self {
        PeerPolicy { listed: listed.into_iter().collect(), raft }
    }

    fn nodes(&self) -> BTreeSet<NodeId> {
        let mut ids = self.listed.clone();
        let m = self.raft.metrics().borrow().membership_config.clone();
        ids.extend(m.membership().nodes().map(|(id, _)| *id));
        ids
    }
}

/// Rate-limited warnings, so a flood of refused connections cannot flood the log.
struct Warnings {
    state: Mutex<(Instant, u64, u64)>, // (window start, lines in window, suppressed)
}

impl Warnings {
    fn new() -> Self {
        Warnings { state: Mutex::new((Instant::now(), 0, 0)) }
    }

    fn refused(&self, from: SocketAddr, reason: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0.elapsed() >= Duration::from_millis(WARN_WINDOW_MS) {
            if s.2 > 0 {
                tracing::warn!(suppressed = s.2, "more Raft connections were refused than logged");
            }
            *s = (Instant::now(), 0, 0);
        }
        if s.1 < MAX_WARNINGS_PER_WINDOW {
            s.1 += 1;
            tracing::warn!(%from, "refused a Raft connection: {reason}");
        } else {
            s.2 += 1;
        }
    }
}

/// What a plain-HTTP client gets: a readable refusal instead of a reset.
fn plain_http_refusal() -> String {
    let body = "this is a tracker node's Raft port: it speaks mutual TLS only, with a certificate of the cluster CA\n";
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Serves `router` on `listener` with mutual TLS until `stop` is cancelled, then waits (bounded:
/// `accept::SHUTDOWN_GRACE_MS`) for the connections' requests to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls_config: Arc<rustls::ServerConfig>,
    policy: PeerPolicy,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let connections = Arc::new(Semaphore::new(MAX_RAFT_CONNECTIONS));
    let warnings = Arc::new(Warnings::new());
    let refused = |from: SocketAddr, full: Refusal| warnings.refused(from, &full.to_string());
    crate::accept::serve_each(listener, &stop, "raft", OPENING_LIMITS, refused, |tcp, from, handshake| {
        let (acceptor, connections, warnings, policy, router, stop) =
            (acceptor.clone(), connections.clone(), warnings.clone(), policy.clone(), router.clone(), stop.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
            let stream = match tokio::time::timeout_at(deadline, handshake_and_identify(tcp, &acceptor, &policy)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(reason)) => return warnings.refused(from, &reason),
                Err(_) => return warnings.refused(from, "no TLS handshake within the time limit"),
            };
            drop(handshake);
            let (tls_stream, peer) = stream;
            let Ok(_slot) = connections.try_acquire_owned() else {
                return warnings.refused(
                    from,
                    &format!("node {} authenticated but {MAX_RAFT_CONNECTIONS} Raft connections are open", peer.0),
                );
            };
            serve_connection(tls_stream, peer, router, stop).await;
        }
    })
    .await;
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The TLS handshake, then the node the client's certificate names. `Err` is the reason to log.
async fn handshake_and_identify(
    mut tcp: TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    policy: &PeerPolicy,
) -> Result<(TlsStream, PeerNode), String> {
    // A TLS connection starts with a handshake record (0x16); a person or script sending plain
    // HTTP gets a sentence saying why it is refused instead of a reset.
    match crate::accept::first_byte(&tcp).await {
        Err(NoFirstByte::Silent) => return Err("sent nothing within the first-byte allowance".into()),
        Err(NoFirstByte::Closed) => return Err("closed before a TLS handshake".into()),
        Ok(0x16) => {}
        Ok(first) if first.is_ascii_uppercase() => {
            let _ = tcp.write_all(plain_http_refusal().as_bytes()).await;
            let _ = tcp.shutdown().await;
            return Err("plain HTTP; this port speaks mutual TLS only".into());
        }
        Ok(_) => return Err("not TLS".into()),
    }
    let stream = acceptor.accept(tcp).await.map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (_, conn) = stream.get_ref();
    let id = tls::peer_identity(conn.peer_certificates(), &policy.nodes()).map_err(|e| e.to_string())?;
    Ok((stream, PeerNode(id)))
}

/// HTTP/1.1 on an authenticated connection until the client closes it, it idles past
/// `IDLE_TIMEOUT_MS`, or the node stops.
async fn serve_connection(stream: TlsStream, peer: PeerNode, router: Router, stop: CancellationToken) {
    let tag = move |extensions: &mut Extensions| {
        extensions.insert(peer);
    };
    let ended = crate::accept::serve_http1(stream, router, tag, IDLE_TIMEOUT_MS, std::future::pending(), &stop).await;
    if let Ended::Closed(Err(e)) = ended {
        tracing::debug!(peer = peer.0, "raft connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opening_bounds_hold_together() {
        OPENING_LIMITS.validate().unwrap();
    }
}
