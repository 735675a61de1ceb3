//! Logging: the default filter keeps a node's log readable (openraft at warn, our own state
//! changes at info), and connection failures to another node are reported once, then as a
//! summary at most every [`UNREACHABLE_SUMMARY_EVERY`], instead of once per retry. Late answers
//! (an append not answered within openraft's deadline of one heartbeat, routine while a node
//! stops or starts) likewise: a warning and summaries, where openraft logs an ERROR per append.
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
const OPENRAFT_NOISE: [&str; 5] = [
    "Unreachable node",
    "backoff mode",
    "will be ignored because vote changed",
    "timeout while sending",
    // openraft's `Timeout` of an append (`timeout after 20ms when AppendEntries 1->2`), an
    // ERROR per append: [`PeerFailures::late`] reports the same facts.
    " when AppendEntries ",
];

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
    /// Calls not answered within openraft's deadline, per node, counted the same way.
    late: Arc<Mutex<HashMap<NodeId, Failing>>>,
}

/// What one more event of an episode calls for.
#[derive(Debug, PartialEq, Eq)]
enum Tally {
    /// The first of an episode: logged in full.
    First,
    /// A summary is due: the episode's length and count.
    Summary {
        secs: u64,
        count: u64,
    },
    Quiet,
}

/// Counts one event for `target` at `now` in `map`, episodes and summaries as for failures.
fn tally(map: &Mutex<HashMap<NodeId, Failing>>, target: NodeId, now: Instant) -> Tally {
    let mut nodes = map.lock().unwrap_or_else(|p| p.into_inner());
    let stale = nodes.get(&target).is_some_and(|f| now.duration_since(f.last_failure) >= NEW_EPISODE_AFTER);
    if stale {
        nodes.remove(&target);
    }
    match nodes.get_mut(&target) {
        None => {
            nodes.insert(target, Failing { since: now, failures: 1, last_report: now, last_failure: now });
            Tally::First
        }
        Some(f) => {
            f.failures += 1;
            f.last_failure = now;
            if now.duration_since(f.last_report) >= UNREACHABLE_SUMMARY_EVERY {
                f.last_report = now;
                Tally::Summary { secs: now.duration_since(f.since).as_secs(), count: f.failures }
            } else {
                Tally::Quiet
            }
        }
    }
}

impl PeerFailures {
    pub fn failed(&self, target: NodeId, error: &dyn std::fmt::Display) {
        match tally(&self.nodes, target, Instant::now()) {
            Tally::First => tracing::warn!("node {target} unreachable: {error}"),
            Tally::Summary { secs, count } => {
                tracing::warn!("node {target} unreachable for {secs} s ({count} failures)")
            }
            Tally::Quiet => {}
        }
    }

    /// A call to `target` (`what`, a Raft route) had no answer within openraft's `deadline`
    /// (openraft gave up on it and sends again; the request itself goes on, see raft_net).
    pub fn late(&self, target: NodeId, what: &str, deadline: std::time::Duration) {
        match tally(&self.late, target, Instant::now()) {
            Tally::First => tracing::warn!(
                "node {target} answers late: no answer to {what} within {} ms, openraft's deadline \
                 (it sends again; usual while a node stops or starts, a sign of overload otherwise)",
                deadline.as_millis()
            ),
            Tally::Summary { secs, count } => {
                tracing::warn!("node {target} answered late {count} times in {secs} s")
            }
            Tally::Quiet => {}
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

    #[test]
    fn late_answers_are_one_line_then_a_summary_every_10_s() {
        let map = Mutex::new(HashMap::new());
        let t0 = Instant::now();
        assert_eq!(tally(&map, 2, t0), Tally::First);
        for i in 1..100 {
            assert_eq!(tally(&map, 2, t0 + std::time::Duration::from_millis(i * 20)), Tally::Quiet);
        }
        assert_eq!(tally(&map, 3, t0), Tally::First, "per node");
        let later = t0 + UNREACHABLE_SUMMARY_EVERY;
        for i in 0..250u64 {
            let at = t0 + std::time::Duration::from_millis(2000 + i * 40);
            let _ = tally(&map, 2, at.min(later - std::time::Duration::from_millis(1)));
        }
        assert_eq!(tally(&map, 2, later), Tally::Summary { secs: 10, count: 351 });
        // Quiet for longer than an episode: the next one starts in full.
        assert_eq!(tally(&map, 2, later + NEW_EPISODE_AFTER), Tally::First);
    }
}
