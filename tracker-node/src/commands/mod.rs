//! The operator commands other than `run`: `up` (a local cluster as child processes),
//! `status` (one row per node), `members` (voter changes through the leader), `certs` (the
//! cluster CA and node certificates).

pub mod certs;
pub mod members;
pub mod snapshot;
pub mod status;
pub mod up;

use std::time::Duration;

/// An HTTP client for operator commands: short connect timeout, no proxies, no automatic
/// redirects (the commands follow the leader themselves).
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?)
}
