//! Logging: the default filter keeps a node's log readable (openraft at warn, our own state
//! changes at info), and connection failures to another node are reported once, then as a
//! summary at most every [`UNREACHABLE_SUMMARY_EVERY`], instead of once per retry.
//!
//! `RUST_LOG`, when set, replaces all of it: its filter applies as written and nothing is
//! held back (openraft's own per-retry lines included).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft_store::NodeId;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// The filter without `RUST_LOG`.
pub const DEFAULT_FILTER: &str = "info,openraft=warn";

/// How often a node that stays unreachable is reported again.
pub const UNREACHABLE_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Words of openraft's lines that repeat per retry while another node is down (or on every
/// benign race of an election); [`RaftRetryNoise`] drops them, [`PeerFailures`] reports the
/// same facts once.
const OPENRAFT_NOISE: [&str; 4] =
    ["Unreachable node", "backoff mode", "will be ignored because vote changed", "timeout while sending"];

/// Drops openraft's per-retry lines (see [`OPENRAFT_NOISE`]). Installed only without `RUST_LOG`.
struct RaftRetryNoise;

struct ContainsNoise(bool);

impl Visit for ContainsNoise {
    fn record_debug(&mut self, _field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0 {
            let s = format!("{value:?}");
            self.0 = OPENRAFT_NOISE.iter().any(|w| s.contains(w));
        }
    }
    fn record_str(&mut self, _field: &Field, value: &str) {
        if !self.0 {
            self.0 = OPENRAFT_NOISE.iter().any(|w| value.contains(w));
        }
    }
}

impl<S: Subscriber> Layer<S> for RaftRetryNoise {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        if !event.metadata().target().starts_with("openraft") {
            return true;
        }
        let mut v = ContainsNoise(false);
        event.record(&mut v);
        !v.0
    }
}

/// Sets up the `tracing` subscriber on stderr.
pub fn init() {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => tracing_subscriber::registry().with(filter).with(fmt).init(),
        Err(_) => tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
            .with(fmt)
            .with(RaftRetryNoise)
            .init(),
    }
}

/// A failure this long after the previous one to the same node starts a new episode (logged
/// in full again): the node answered meanwhile, or nobody was calling it (a follower does not
/// call the others; a leader retries a node every few tens of milliseconds).
const NEW_EPISODE_AFTER: Duration = Duration::from_secs(5);

struct Failing {
    since: Instant,
    failures: u64,
    last_report: Instant,
    last_failure: Instant,
}

/// Connection failures per node, shared by every connection of this node's Raft client: the
/// first failure is logged, then a summary at most every [`UNREACHABLE_SUMMARY_EVERY`], and
/// one line when the node answers again.
#[derive(Clone, Default)]
pub struct PeerFailures {
    nodes: Arc<Mutex<HashMap<NodeId, Failing>>>,
}

impl PeerFailures {
    pub fn failed(&self, target: NodeId, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let stale = nodes.get(&target).is_some_and(|f| now.duration_since(f.last_failure) >= NEW_EPISODE_AFTER);
        if stale {
            nodes.remove(&target);
        }
        match nodes.get_mut(&target) {
            None => {
                nodes.insert(target, Failing { since: now, failures: 1, last_report: now, last_failure: now });
                drop(nodes);
                tracing::warn!("node {target} unreachable: {error}");
            }
            Some(f) => {
                f.failures += 1;
                f.last_failure = now;
                if now.duration_since(f.last_report) >= UNREACHABLE_SUMMARY_EVERY {
                    f.last_report = now;
                    let (secs, failures) = (now.duration_since(f.since).as_secs(), f.failures);
                    drop(nodes);
                    tracing::warn!("node {target} unreachable for {secs} s ({failures} failures)");
                }
            }
        }
    }

    pub fn succeeded(&self, target: NodeId) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = nodes.remove(&target) {
            drop(nodes);
            tracing::info!(
                "node {target} reachable again after {} s ({} failures)",
                f.since.elapsed().as_secs(),
                f.failures
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_down_is_one_entry_until_it_answers() {
        let p = PeerFailures::default();
        for _ in 0..100 {
            p.failed(2, &"connection refused");
        }
        {
            let n = p.nodes.lock().unwrap();
            assert_eq!(n.get(&2).map(|f| f.failures), Some(100));
        }
        p.succeeded(2);
        assert!(p.nodes.lock().unwrap().is_empty());
    }
}
