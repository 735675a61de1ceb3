//! The accept step the API's and the Raft port's listeners share: the next connection, while the
//! connections already served are reaped as they end.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Pause after an accept error (out of descriptors and the like), rather than spin.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// The next connection on `listener`, or `None` once `stop` is cancelled. Finished tasks of
/// `tasks` are reaped meanwhile; an accept error is logged under `what` ("api", "raft").
pub async fn next<T: 'static>(
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
