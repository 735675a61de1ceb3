//! The daemon's standing with the tracker: this HOME's session, the address and key it
//! announces, whether the announce went through and whether the tracker lists it. One owner
//! (`Daemon::standing`, an `Arc`), shared with everything that calls the tracker for the
//! daemon; the keepalive loop (`daemon::run`) keeps it current.

use std::net::SocketAddr;

use proto::api::{FileMetaBody, UploadResponse};
use tracker_client::{ClientError, TrackerClient};

use crate::home::{Home, Session};

/// Where this daemon stands with the tracker, and how to reach it for the current session.
pub struct Standing {
    pub home: Home,
    pub tracker: TrackerClient,
    /// What this daemon announces (`--advertise`, else the address it listens on). The tracker
    /// keeps only its port: the host it lists is the one its connection came from.
    pub peer_addr: String,
    /// This HOME's public key (64 hex characters): proved on every piece connection,
    /// announced with `peer_addr`.
    pub peer_key_hex: String,
    /// Where it listens, what the tracker lists, whether the announce went through.
    pub announce: AnnounceState,
}

/// How often the daemon tells the tracker it is alive until the tracker says otherwise; the
/// tracker lists a sharer only while its daemon was heard from within its liveness period
/// (30 s by default, docs/API.md) and answers every announce and alive call with a third of it
/// (`alive_every_ms`). The same call checks the session.
pub const ANNOUNCE_INTERVAL_MS: u64 = 10_000;
/// The range of `alive_every_ms` the daemon follows: a third of the cluster's allowed
/// `peer_liveness_ms` range (docs/OPERATIONS.md). Outside it, the daemon keeps what it had.
pub const ALIVE_EVERY_RANGE_MS: (u64, u64) = (1_000, 200_000);

/// The keepalive interval after a tracker's answer said `answered` (0: it did not say).
pub fn next_alive_every_ms(current_ms: u64, answered_ms: u64) -> u64 {
    if (ALIVE_EVERY_RANGE_MS.0..=ALIVE_EVERY_RANGE_MS.1).contains(&answered_ms) {
        answered_ms
    } else {
        current_ms
    }
}

/// The daemon's standing with the tracker.
pub struct AnnounceState {
    /// `--advertise` as given, if it was.
    pub advertise: Option<String>,
    /// The address the piece server is bound to.
    pub listen_addr: SocketAddr,
    /// The address the tracker lists for this daemon, from its last announce reply.
    pub tracker_addr: std::sync::Mutex<Option<String>>,
    /// The current session's announce went through; until it has, the keepalive loop retries it.
    pub announced: std::sync::atomic::AtomicBool,
    /// Held around each liveness call, so the "going away" call at shutdown comes after any
    /// "alive" still in flight.
    pub alive_calls: tokio::sync::Mutex<()>,
    /// The tracker's last word (announce, alive) was that it lists this daemon for the user:
    /// only then does "not among the sharers" mean the tracker ended a share.
    pub listed: std::sync::atomic::AtomicBool,
    /// One check of the shares against the tracker at a time; where the next round starts.
    pub reconcile: tokio::sync::Mutex<usize>,
    /// How often the keepalive loop calls, as the tracker last said.
    pub alive_every_ms: std::sync::atomic::AtomicU64,
    /// Wakes the keepalive loop's wait when `alive_every_ms` changes, so that a shorter period
    /// learned at the first announce applies at once, not after the default's first wait.
    pub alive_every_changed: tokio::sync::Notify,
}

impl AnnounceState {
    /// Follows the tracker's `alive_every_ms` from an announce or alive answer.
    pub fn learn_alive_every(&self, answered_ms: u64) {
        use std::sync::atomic::Ordering;
        let current = self.alive_every_ms.load(Ordering::SeqCst);
        let next = next_alive_every_ms(current, answered_ms);
        if next != current {
            self.alive_every_ms.store(next, Ordering::SeqCst);
            self.alive_every_changed.notify_waiters();
        }
    }

    /// The keepalive loop's current interval.
    pub fn alive_every(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.alive_every_ms.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl AnnounceState {
    pub fn new(listen_addr: SocketAddr, advertise: Option<String>) -> Self {
        AnnounceState {
            advertise,
            listen_addr,
            tracker_addr: std::sync::Mutex::new(None),
            announced: std::sync::atomic::AtomicBool::new(false),
            alive_calls: tokio::sync::Mutex::new(()),
            listed: std::sync::atomic::AtomicBool::new(false),
            reconcile: tokio::sync::Mutex::new(0),
            alive_every_ms: std::sync::atomic::AtomicU64::new(ANNOUNCE_INTERVAL_MS),
            alive_every_changed: tokio::sync::Notify::new(),
        }
    }
}

impl Default for AnnounceState {
    fn default() -> Self {
        AnnounceState::new(SocketAddr::from(([127, 0, 0, 1], 0)), None)
    }
}

impl Standing {
    /// A tracker client acting for this HOME's current session, if there is one.
    pub fn session_client(&self) -> Option<TrackerClient> {
        self.home.session().map(|s| self.tracker.with_token(Some(s.token)))
    }

    /// This HOME's session's user, if logged in.
    pub fn user(&self) -> Option<String> {
        self.home.session().map(|s| s.user)
    }

    /// Lists this daemon as a sharer of `meta` in `group` (an upload of its metadata: the same
    /// call registers a new file and adds a sharer to a known one).
    pub async fn register_sharer(
        &self,
        client: &TrackerClient,
        group: &str,
        meta: FileMetaBody,
    ) -> Result<UploadResponse, ClientError> {
        client.upload(group, meta, &self.peer_addr, &self.peer_key_hex).await
    }

    /// Tells the tracker where we serve; called at start, after every login, and by the
    /// keepalive loop until it succeeds.
    pub async fn announce(&self) {
        let _ = self.try_announce().await;
    }

    pub(super) async fn try_announce(&self) -> Result<(), ClientError> {
        use std::sync::atomic::Ordering;
        let Some(client) = self.session_client() else {
            self.announce.announced.store(false, Ordering::SeqCst);
            tracing::info!("not logged in: shares stay paused until `peer login`");
            return Ok(());
        };
        match client.announce(&self.peer_addr, &self.peer_key_hex).await {
            Ok(v) => {
                self.announce.announced.store(true, Ordering::SeqCst);
                self.announce.listed.store(true, Ordering::SeqCst);
                self.announce.learn_alive_every(v.alive_every_ms);
                tracing::info!(peer_addr = %self.peer_addr, listed_as = %v.peer_addr, shares = %v.shares, "announced to the tracker");
                self.tracker_listed(&v.peer_addr);
                Ok(())
            }
            Err(e) => {
                self.announce.announced.store(false, Ordering::SeqCst);
                tracing::warn!(
                    "cannot announce to the tracker (retrying every {:.0?}): {e}",
                    self.announce.alive_every()
                );
                Err(e)
            }
        }
    }

    /// The tracker lists this daemon at `listed`: say so when it is news, and warn when peers
    /// could not reach us there.
    fn tracker_listed(&self, listed: &str) {
        let mut last = self.announce.tracker_addr.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() == Some(listed) {
            return;
        }
        *last = Some(listed.to_string());
        drop(last);
        println!("other peers reach this daemon at {listed} (the address the tracker lists)");
        let Ok(listed_addr) = listed.parse::<SocketAddr>() else { return };
        let listen_ip = self.announce.listen_addr.ip();
        if !listen_ip.is_unspecified() && listen_ip.to_canonical() != listed_addr.ip().to_canonical() {
            tracing::warn!(
                "the tracker lists this daemon at {listed}, but it listens on {} only: other peers cannot connect; \
                 listen on 0.0.0.0 (or on {}) instead",
                self.announce.listen_addr,
                listed_addr.ip()
            );
        }
        if let Some(adv) = &self.announce.advertise {
            let host = adv.rsplit_once(':').map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'));
            let same = host
                .and_then(|h| h.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| ip.to_canonical() == listed_addr.ip().to_canonical());
            if !same {
                tracing::warn!(
                    "--advertise {adv}: the tracker lists {listed} — it takes only the port from --advertise; the host \
                     is always the address this daemon's calls come from"
                );
            }
        }
    }

    /// The tracker no longer knows session `s` (logged out through the API from elsewhere, or
    /// expired): shares pause as with `peer logout` — the piece server answers error 3 from then
    /// on, until the next `peer login`.
    pub(super) fn session_ended(&self, s: &Session) {
        // A login meanwhile wrote a new token: that one stands.
        if self.home.session().is_some_and(|now| now.token == s.token) {
            self.home.clear_session();
            self.announce.announced.store(false, std::sync::atomic::Ordering::SeqCst);
            tracing::warn!(
                user = %s.user,
                "the tracker no longer knows this peer's session (logged out elsewhere, or expired): shares are paused \
                 until `peer login`"
            );
        }
    }
}

#[cfg(test)]
mod alive_every_tests {
    use super::*;

    #[test]
    fn the_daemon_follows_the_trackers_interval_within_its_range() {
        assert_eq!(next_alive_every_ms(ANNOUNCE_INTERVAL_MS, 2_000), 2_000);
        assert_eq!(next_alive_every_ms(2_000, 10_000), 10_000);
        // A tracker that does not say (0), or says something out of range, changes nothing.
        assert_eq!(next_alive_every_ms(2_000, 0), 2_000);
        assert_eq!(next_alive_every_ms(2_000, 999), 2_000);
        assert_eq!(next_alive_every_ms(2_000, 200_001), 2_000);
        let state = AnnounceState::default();
        assert_eq!(state.alive_every(), std::time::Duration::from_millis(ANNOUNCE_INTERVAL_MS));
        state.learn_alive_every(1_000);
        assert_eq!(state.alive_every(), std::time::Duration::from_millis(1_000));
    }
}
