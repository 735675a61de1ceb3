//! The accept step the daemon's two servers share (the piece server's TCP listener and the
//! control socket): the next connection, or `None` once the daemon stops.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Pause after a failed accept before the next one: out of file descriptors, most likely, and
/// retrying at once would only spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// The next accepted connection from `accept` (a listener's `accept()`), or `None` when `stop`
/// is cancelled. A failed accept is logged as `what: error` and tried again after a pause.
pub async fn next<T, F>(stop: &CancellationToken, what: &str, mut accept: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = std::io::Result<T>>,
{
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            r = accept() => match r {
                Ok(x) => return Some(x),
                Err(e) => tracing::warn!("{what}: {e}"),
            },
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)) => {}
        }
    }
}
