//! Tickets on the peer's side (docs/PROTOCOL.md, "Tickets"): the sharer checks the ticket a
//! downloader presents against the cluster's ticket key, which it learns from the tracker once
//! and pins in `HOME/ticket-key`; a tracker that later names another key is not believed (the
//! operator removes the file after a deliberate key change).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::ticket::Ticket;
use tracker_client::TrackerClient;

/// The file in HOME that pins the cluster's ticket key (64 hex characters).
pub const PIN_FILE: &str = "ticket-key";
/// Fewest milliseconds between two attempts to learn the key from the tracker, so that a flood
/// of handshakes while the tracker is away does not become a flood of tracker calls.
const FETCH_INTERVAL_MS: u64 = 5_000;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The cluster's ticket key as this HOME knows it.
pub struct ClusterKey {
    path: PathBuf,
    state: tokio::sync::Mutex<KeyState>,
}

#[derive(Default)]
struct KeyState {
    key: Option<[u8; 32]>,
    last_fetch: Option<Instant>,
}

impl ClusterKey {
    /// The pin of `home_dir`, read now if it exists.
    pub fn load(home_dir: &std::path::Path) -> Self {
        let path = home_dir.join(PIN_FILE);
        let key = std::fs::read_to_string(&path).ok().and_then(|s| parse_key(s.trim()));
        ClusterKey { path, state: tokio::sync::Mutex::new(KeyState { key, ..Default::default() }) }
    }

    /// The pinned key, or the tracker's (then pinned). `None` while neither is known.
    pub async fn get(&self, tracker: &TrackerClient) -> Option<[u8; 32]> {
        let mut st = self.state.lock().await;
        if let Some(k) = st.key {
            return Some(k);
        }
        if st.last_fetch.is_some_and(|t| t.elapsed() < Duration::from_millis(FETCH_INTERVAL_MS)) {
            return None;
        }
        st.last_fetch = Some(Instant::now());
        match tracker.ticket_key().await {
            Ok(hex_key) => match parse_key(&hex_key) {
                Some(k) => {
                    if let Err(e) = write_pin(&self.path, &hex_key) {
                        tracing::warn!("cannot pin the cluster's ticket key in {}: {e}", self.path.display());
                    }
                    tracing::info!(key = %hex_key, "pinned the cluster's ticket key");
                    st.key = Some(k);
                    Some(k)
                }
                None => {
                    tracing::warn!("the tracker's ticket key {hex_key:?} is not 64 hex characters");
                    None
                }
            },
            Err(e) => {
                tracing::warn!("cannot learn the cluster's ticket key: {e}");
                None
            }
        }
    }

    /// Checks that the pin agrees with the tracker (called at start): a mismatch is logged
    /// loudly and the pin kept.
    pub async fn check_against(&self, tracker: &TrackerClient) {
        let pinned = self.state.lock().await.key;
        let Some(pinned) = pinned else {
            self.get(tracker).await;
            return;
        };
        if let Ok(theirs) = tracker.ticket_key().await {
            if parse_key(&theirs) != Some(pinned) {
                tracing::error!(
                    pinned = %hex::encode(pinned),
                    tracker = %theirs,
                    "the tracker names another ticket key than the one pinned in {}; tickets are checked against the \
                     pinned key (remove that file if the cluster's key was changed on purpose)",
                    self.path.display()
                );
            }
        }
    }
}

/// Writes the pin whole or not at all, 0600 like every file in HOME (a public key, but a pin
/// no one else may change).
fn write_pin(path: &std::path::Path, hex_key: &str) -> anyhow::Result<()> {
    crate::home::write_private(path, format!("{hex_key}\n").as_bytes())
}

fn parse_key(s: &str) -> Option<[u8; 32]> {
    proto::ticket::peer_key_from_hex(s).ok()
}

/// What a connection must match for its ticket to count.
pub struct Expect<'a> {
    pub group: &'a str,
    pub file_sha1: &'a [u8; 20],
    pub user: &'a str,
    /// The key the downloader proved in the TLS handshake.
    pub channel_key: &'a [u8; 32],
}

/// The ticket's holder, if `bytes` is a valid ticket for exactly this connection; otherwise why
/// not, in words for the `error` frame and the sharer's log.
pub fn check(bytes: &[u8], cluster_key: &[u8; 32], now_ms: u64, want: &Expect<'_>) -> Result<Ticket, String> {
    if bytes.is_empty() {
        return Err("no ticket: ask the tracker for one (members only)".into());
    }
    let t = proto::ticket::verify(bytes, cluster_key, now_ms).map_err(|e| format!("ticket refused: {e}"))?;
    if t.group != want.group || &t.file_sha1 != want.file_sha1 {
        return Err(format!("the ticket is for {}/{}, not this file", t.group, hex::encode(t.file_sha1)));
    }
    if t.user != want.user {
        return Err(format!("the ticket is {}'s, not {}'s", t.user, want.user));
    }
    if &t.peer_key != want.channel_key {
        return Err("the ticket is bound to another peer key than this connection's".into());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ticket::{TicketSigner, TICKET_LIFETIME_MS};

    fn signed(s: &TicketSigner, group: &str, user: &str, key: [u8; 32], sha: [u8; 20], exp: u64) -> Vec<u8> {
        s.sign(&Ticket { group: group.into(), file_sha1: sha, user: user.into(), peer_key: key, expires_at_ms: exp })
    }

    #[test]
    fn a_ticket_counts_only_for_its_file_its_user_and_its_key() {
        let s = TicketSigner::from_pkcs8(&TicketSigner::generate_pkcs8()).unwrap();
        let ck = s.public_key();
        let (now, sha, key) = (1_000_000, [1u8; 20], [2u8; 32]);
        let want = Expect { group: "g", file_sha1: &sha, user: "bob", channel_key: &key };
        let good = signed(&s, "g", "bob", key, sha, now + TICKET_LIFETIME_MS);
        assert_eq!(check(&good, &ck, now, &want).unwrap().user, "bob");

        let e = check(&[], &ck, now, &want).unwrap_err();
        assert!(e.contains("no ticket"), "{e}");
        let e = check(&signed(&s, "h", "bob", key, sha, now + 1000), &ck, now, &want).unwrap_err();
        assert!(e.contains("not this file"), "{e}");
        let e = check(&signed(&s, "g", "bob", key, [9; 20], now + 1000), &ck, now, &want).unwrap_err();
        assert!(e.contains("not this file"), "{e}");
        let e = check(&signed(&s, "g", "mallory", key, sha, now + 1000), &ck, now, &want).unwrap_err();
        assert!(e.contains("mallory"), "{e}");
        let e = check(&signed(&s, "g", "bob", [3; 32], sha, now + 1000), &ck, now, &want).unwrap_err();
        assert!(e.contains("another peer key"), "{e}");
        let e = check(&good, &[0u8; 32], now, &want).unwrap_err();
        assert!(e.starts_with("ticket refused"), "{e}");
        let e = check(&good, &ck, now + TICKET_LIFETIME_MS + 3_600_000, &want).unwrap_err();
        assert!(e.starts_with("ticket refused"), "expired: {e}");
    }
}
