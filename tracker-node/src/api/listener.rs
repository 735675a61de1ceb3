//! The client API's accept loop: HTTPS on every address, with the node's certificate (the
//! cluster CA signed it; clients pin that CA), and plain HTTP as well when the node listens on
//! a loopback address (scripts and tests on the same machine; nothing crosses a network in
//! clear). The first byte tells them apart: a TLS connection starts with a handshake record.
//!
//! Each request carries how its connection came ([`Channel`]) and its source address
//! (`ConnectInfo`, for the login throttle). Everything is bounded, by the project's one
//! admission policy (`admission`): connections still opening (first byte, TLS handshake) and
//! connections served are each bounded in total, per source address and per /24 (/64), with
//! slots kept for addresses that hold none, and a connection over a bound is closed at once.
//! The allowances are short: the first byte within a second, the handshake within two, the
//! first request's head within [`FIRST_REQUEST_TIMEOUT_MS`] after that; only a client that has
//! been served keeps an idle connection, for [`IDLE_TIMEOUT_MS`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Extensions;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use admission::{Gate, Limits, Refusal};

use crate::accept::{Ended, NoFirstByte};
use crate::tls;

/// Connections accepted whose first byte or TLS handshake is not over. A handshake takes
/// milliseconds, but a host's clients may all connect at once (64 in `tests/login_flood.rs`,
/// 32 in `bench scale`), and the accept loop takes a burst before their tasks run: 64 per
/// address, 128 per /24 (two such hosts); 64 of the 256 are kept for addresses that hold
/// none, so attackers on many networks still leave a newcomer its first connection.
pub const OPENING_LIMITS: Limits = Limits { total: 256, per_address: 64, per_prefix: 128, kept_for_new: 64 };
/// Connections served (handshake done), idle keep-alive ones included. A peer daemon keeps
/// one or two; 128 per address is a NAT with dozens of daemons behind it.
pub const SERVED_LIMITS: Limits = Limits { total: 2_048, per_address: 128, per_prefix: 512, kept_for_new: 256 };
/// A connection that has sent nothing this long after it was accepted is closed.
pub const FIRST_BYTE_TIMEOUT_MS: u64 = admission::FIRST_BYTE_TIMEOUT_MS;
/// The TLS handshake must be over this long after the connection was accepted.
pub const HANDSHAKE_TIMEOUT_MS: u64 = admission::HANDSHAKE_TIMEOUT_MS;
/// The first request's head must have arrived this long after the handshake (or, in plain
/// HTTP, the first byte). Clients send it at once; a browser's speculative connection that is
/// closed unused is simply opened again.
pub const FIRST_REQUEST_TIMEOUT_MS: u64 = 3_000;
/// A served connection waiting for its next request (and that request's head) is closed after
/// this long: hyper's `header_read_timeout`, which runs from the moment the connection is ready
/// for a head, idle time included. Longer than the tracker client's pool idle time (30 s), so
/// the client closes first.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
// The first byte comes within the handshake's allowance, and a served client's idle time is
// longer than a new connection's wait for its first request.
const _: () = assert!(FIRST_BYTE_TIMEOUT_MS <= HANDSHAKE_TIMEOUT_MS && FIRST_REQUEST_TIMEOUT_MS < IDLE_TIMEOUT_MS);

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
        proto::error::ApiErrorCode::HttpsRequired,
        format!("this tracker node serves its API on {addr} over HTTPS only (plain HTTP is for loopback addresses)"),
    ))
    .unwrap_or_default();
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Serves `router` on `listener` until `stop` is cancelled, then waits (bounded:
/// `accept::SHUTDOWN_GRACE_MS`) for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls_config: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
) {
    let local = listener.local_addr().ok();
    let plain_ok = local.as_ref().is_some_and(plain_http_allowed);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let served = Gate::new(SERVED_LIMITS);
    let refused = |from: SocketAddr, full: Refusal| {
        tracing::debug!(%from, "api: closing a connection while others open: {full}");
    };
    crate::accept::serve_each(listener, &stop, "api", OPENING_LIMITS, refused, |tcp, from, opening_slot| {
        let (acceptor, router, stop, served) = (acceptor.clone(), router.clone(), stop.clone(), served.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
            let opened = tokio::time::timeout_at(deadline, open(tcp, &acceptor, plain_ok, local)).await;
            drop(opening_slot);
            let (stream, channel) = match opened {
                Ok(Ok(Opened::Tls(stream))) => {
                    let operator = tls::is_operator(stream.get_ref().1.peer_certificates());
                    (Opened::Tls(stream), Channel::Tls { operator })
                }
                Ok(Ok(plain)) => (plain, Channel::Plain),
                Ok(Err(reason)) => return tracing::debug!(%from, "api connection refused: {reason}"),
                Err(_) => return tracing::debug!(%from, "api connection: no handshake within the time limit"),
            };
            let _served_slot = match served.enter(from.ip()) {
                Ok(s) => s,
                Err(full) => return tracing::debug!(%from, "api: closing a connection after its handshake: {full}"),
            };
            match stream {
                Opened::Tls(s) => serve_connection(*s, from, channel, router, stop).await,
                Opened::Plain(s) => serve_connection(s, from, channel, router, stop).await,
            }
        }
    })
    .await;
}

/// An opened connection; the TLS state is boxed (over a kilobyte, against 32 bytes of TCP).
enum Opened {
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
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
    match crate::accept::first_byte(&tcp).await {
        Err(NoFirstByte::Silent) => Err("sent nothing within the first-byte allowance".into()),
        Err(NoFirstByte::Closed) => Err("closed before its first byte".into()),
        Ok(0x16) => acceptor
            .accept(tcp)
            .await
            .map(|s| Opened::Tls(Box::new(s)))
            .map_err(|e| format!("TLS handshake failed: {e}")),
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

/// HTTP/1.1 on one connection until the client closes it, its first request's head is
/// overdue (`FIRST_REQUEST_TIMEOUT_MS`), it idles past `IDLE_TIMEOUT_MS`, or the node stops.
async fn serve_connection<S>(stream: S, from: SocketAddr, channel: Channel, router: Router, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Set when hyper hands over the first request, i.e. once its head has been read whole.
    let requested = Arc::new(AtomicBool::new(false));
    let seen = requested.clone();
    let tag = move |extensions: &mut Extensions| {
        seen.store(true, Ordering::Relaxed);
        extensions.insert(channel);
        extensions.insert(ConnectInfo(from));
    };
    let first_request_overdue = async {
        tokio::time::sleep(Duration::from_millis(FIRST_REQUEST_TIMEOUT_MS)).await;
        if requested.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    match crate::accept::serve_http1(stream, router, tag, IDLE_TIMEOUT_MS, first_request_overdue, &stop).await {
        Ended::Closed(Err(e)) => tracing::debug!(%from, "api connection ended: {e}"),
        // Dropping the connection closed it: nothing was asked, nothing is lost.
        Ended::GaveUp => {
            tracing::debug!(%from, "api connection: no request within {FIRST_REQUEST_TIMEOUT_MS} ms of opening")
        }
        Ended::Closed(Ok(())) | Ended::Stopped => {}
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
    fn the_accept_bounds_hold_together() {
        for l in [OPENING_LIMITS, SERVED_LIMITS] {
            l.validate().unwrap();
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
