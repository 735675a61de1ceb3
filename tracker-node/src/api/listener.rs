//! The client API's accept loop: HTTPS on every address, with the node's certificate (the
//! cluster CA signed it; clients pin that CA), and plain HTTP as well when the node listens on
//! a loopback address (scripts and tests on the same machine; nothing crosses a network in
//! clear). The first byte tells them apart: a TLS connection starts with a handshake record.
//!
//! Each request carries how its connection came ([`Channel`]) and its source address
//! (`ConnectInfo`, for the login throttle). Everything is bounded: handshakes in progress,
//! connections served, the time to the first byte and to the end of the handshake, and a
//! connection's idle time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::tls;

/// TLS handshakes (and first bytes awaited) at once.
pub const MAX_API_HANDSHAKES: usize = 128;
/// Connections served at once; one more is closed at once.
pub const MAX_API_CONNECTIONS: usize = 2_048;
/// A client gets this long to send its first byte and finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// An idle keep-alive connection is closed after this long.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE_MS: u64 = 2_000;

/// How a request's connection reached the API (a request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Plain HTTP, served on loopback addresses only.
    Plain,
    /// TLS; `operator` when the client showed the operator's certificate of the cluster CA.
    Tls { operator: bool },
}

/// Whether plain HTTP is served on `addr`: loopback only.
pub fn plain_http_allowed(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// What a plain-HTTP client gets on an address that serves HTTPS only: the API's error shape.
fn https_only_refusal(addr: &SocketAddr) -> String {
    let body = serde_json::to_string(&proto::api::ErrorBody::new(
        "https_required",
        format!("this tracker node serves its API on {addr} over HTTPS only (plain HTTP is for loopback addresses)"),
    ))
    .unwrap_or_default();
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Serves `router` on `listener` until `stop` is cancelled, then waits (bounded) for the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls_config: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
) {
    let local = listener.local_addr().ok();
    let plain_ok = local.as_ref().is_some_and(plain_http_allowed);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let handshakes = Arc::new(Semaphore::new(MAX_API_HANDSHAKES));
    let connections = Arc::new(Semaphore::new(MAX_API_CONNECTIONS));
    let mut tasks = JoinSet::new();
    loop {
        let (tcp, from) = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("api listener: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%from, "api: {MAX_API_CONNECTIONS} connections open, closing one more");
            continue;
        };
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            tracing::debug!(%from, "api: {MAX_API_HANDSHAKES} handshakes in progress, closing one more");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, stop) = (acceptor.clone(), router.clone(), stop.clone());
        tasks.spawn(async move {
            let _slot = slot;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
            let opened = tokio::time::timeout_at(deadline, open(tcp, &acceptor, plain_ok, local)).await;
            drop(handshake);
            match opened {
                Ok(Ok(Opened::Tls(stream))) => {
                    let operator = tls::is_operator(stream.get_ref().1.peer_certificates());
                    serve_connection(stream, from, Channel::Tls { operator }, router, stop).await
                }
                Ok(Ok(Opened::Plain(tcp))) => serve_connection(tcp, from, Channel::Plain, router, stop).await,
                Ok(Err(reason)) => tracing::debug!(%from, "api connection refused: {reason}"),
                Err(_) => tracing::debug!(%from, "api connection: no request or handshake within the time limit"),
            }
        });
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), drain).await.is_err() {
        tasks.abort_all();
    }
}

enum Opened {
    Tls(tokio_rustls::server::TlsStream<TcpStream>),
    Plain(TcpStream),
}

/// TLS if the client starts a handshake; plain HTTP if this address allows it; otherwise the
/// refusal, in the API's error shape.
async fn open(
    mut tcp: TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    plain_ok: bool,
    local: Option<SocketAddr>,
) -> Result<Opened, String> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => Err("closed before its first byte".into()),
        Ok(_) if first[0] == 0x16 => {
            acceptor.accept(tcp).await.map(Opened::Tls).map_err(|e| format!("TLS handshake failed: {e}"))
        }
        Ok(_) if plain_ok => Ok(Opened::Plain(tcp)),
        Ok(_) => {
            if let Some(addr) = local {
                let _ = tcp.write_all(https_only_refusal(&addr).as_bytes()).await;
            }
            let _ = tcp.shutdown().await;
            Err("plain HTTP on an address that serves HTTPS only".into())
        }
    }
}

/// HTTP/1.1 on one connection until the client closes it, it idles past `IDLE_TIMEOUT_MS`, or
/// the node stops.
async fn serve_connection<S>(stream: S, from: SocketAddr, channel: Channel, router: Router, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(channel);
        req.extensions_mut().insert(ConnectInfo(from));
        let mut router = router.clone();
        async move { router.call(req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(IDLE_TIMEOUT_MS)).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%from, "api connection ended: {e}");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_addresses_only() {
        for ok in ["127.0.0.1:7001", "127.8.9.1:1", "[::1]:7001"] {
            assert!(plain_http_allowed(&ok.parse().unwrap()), "{ok}");
        }
        for no in ["0.0.0.0:7001", "10.0.0.1:7001", "[::]:7001", "192.168.1.2:80"] {
            assert!(!plain_http_allowed(&no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn the_refusal_is_the_documented_error_shape() {
        let r = https_only_refusal(&"10.0.0.1:7001".parse().unwrap());
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "https_required");
        assert!(r.contains(&format!("Content-Length: {}", body.len())));
    }
}
