//! What the API's and the Raft port's listeners share: the accept loop (a slot of the opening
//! stage's admission for every connection, or closed at once; finished connections reaped; a
//! pause after an accept error; a bounded wait for the rest at shutdown), the first byte a
//! client sends, and HTTP/1.1 on a connection once it is opened.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::Extensions;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use admission::{Gate, Limits, Refusal, Slot};

/// Pause after an accept error (out of descriptors and the like), rather than spin.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 50;
/// How long shutdown waits for the requests in flight before it drops their connections.
pub const SHUTDOWN_GRACE_MS: u64 = 2_000;

/// Accepts connections on `listener` until `stop` is cancelled, each on a task of its own: the
/// future `connection` makes of it and of its slot in the opening stage (`opening`, one
/// [`Gate`]). Never waits for a slot: a connection over a bound is closed at once, after
/// `refused` has logged why. Then waits at most [`SHUTDOWN_GRACE_MS`] for the connections'
/// tasks. Accept errors are logged under `what` ("api", "raft").
pub async fn serve_each<Fut>(
    listener: TcpListener,
    stop: &CancellationToken,
    what: &str,
    opening: Limits,
    refused: impl Fn(SocketAddr, Refusal),
    connection: impl Fn(TcpStream, SocketAddr, Slot) -> Fut,
) where
    Fut: Future<Output = ()> + Send + 'static,
{
    let opening = Gate::new(opening);
    let mut tasks = JoinSet::new();
    while let Some((tcp, from)) = next(&listener, &mut tasks, stop, what).await {
        match opening.enter(from.ip()) {
            Ok(slot) => {
                let _ = tcp.set_nodelay(true);
                tasks.spawn(connection(tcp, from, slot));
            }
            Err(full) => refused(from, full),
        }
    }
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), all_done).await.is_err() {
        tasks.abort_all();
    }
}

/// The next connection on `listener`, or `None` once `stop` is cancelled. Finished tasks of
/// `tasks` are reaped meanwhile; an accept error is logged under `what`.
async fn next<T: 'static>(
    listener: &TcpListener,
    tasks: &mut JoinSet<T>,
    stop: &CancellationToken,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!("{what} listener: {e}");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                }
            },
        }
    }
}

/// Why a connection gave no first byte.
#[derive(Debug, PartialEq, Eq)]
pub enum NoFirstByte {
    /// Nothing within the first-byte allowance.
    Silent,
    /// Closed (or failed) before sending anything.
    Closed,
}

/// The first byte a client sends, peeked (it stays in the stream for the TLS handshake or
/// HTTP), within the first-byte allowance ([`admission::FIRST_BYTE_TIMEOUT_MS`]). A TLS connection starts with a handshake record
/// (0x16), which is how a listener tells TLS from plain HTTP before it answers.
pub async fn first_byte(tcp: &TcpStream) -> Result<u8, NoFirstByte> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(admission::FIRST_BYTE_TIMEOUT_MS), tcp.peek(&mut first)).await {
        Err(_) => Err(NoFirstByte::Silent),
        Ok(Ok(0) | Err(_)) => Err(NoFirstByte::Closed),
        Ok(Ok(_)) => Ok(first[0]),
    }
}

/// How a connection served by [`serve_http1`] ended.
pub enum Ended {
    /// The client closed it or it idled out; `Err` is what hyper says went wrong.
    Closed(Result<(), hyper::Error>),
    /// `give_up` came first; dropping the connection closed it.
    GaveUp,
    /// The node stopped; the requests in flight were answered first.
    Stopped,
}

/// HTTP/1.1 on an opened connection: `router` answers every request, after `tag` has put into
/// its extensions what the handlers know of the connection. It runs until the client closes
/// the connection, the connection waits for a request's head longer than `idle_ms` (hyper's
/// `header_read_timeout`, which counts idle time), `give_up` completes, or `stop` is cancelled.
pub async fn serve_http1<S>(
    stream: S,
    router: Router,
    tag: impl Fn(&mut Extensions) + Send + Sync + 'static,
    idle_ms: u64,
    give_up: impl Future<Output = ()>,
    stop: &CancellationToken,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        tag(req.extensions_mut());
        let mut router = router.clone();
        async move { router.call(req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(idle_ms)).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => Ended::Closed(r),
        _ = give_up => Ended::GaveUp,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
            Ended::Stopped
        }
    }
}
