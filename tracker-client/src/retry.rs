//! The retry policy as plain data and plain functions: what an answer means, which node to try
//! next, whether to follow a redirect, how long an attempt may take, how long to wait before
//! the next round, and when a cluster that refuses every connection is down rather than
//! electing. Tested without sockets; `lib.rs` does the I/O and asks these.

use std::collections::BTreeSet;
use std::time::Duration;

use proto::api::{ApiErrorCode, ErrorBody, NotLeaderBody};

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total time one call may take, retries included.
    pub budget_ms: u64,
    /// Bound on one attempt (connect + request + response). A frozen node accepts TCP and
    /// never answers; this is what moves the client on to the next node.
    pub attempt_timeout_ms: u64,
    /// Bound on connecting to a node.
    pub connect_timeout_ms: u64,
    /// First pause after a round in which no node could answer; doubles up to the cap.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Redirects followed before the client stops trusting hints for this round.
    pub max_redirects_per_round: usize,
    /// When every listed node has refused the connection (nothing listens: the cluster is
    /// down, not electing) and nothing else was heard for this long, the call gives up
    /// without spending the rest of its budget (docs/CONTRACT.md, "Exit codes": "exits 3 at once").
    pub all_refused_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            budget_ms: 15_000,
            attempt_timeout_ms: 700,
            connect_timeout_ms: 200,
            // Short pauses: a round is two or three small requests, and during an election the
            // pause is what the client adds to the failover window. Jitter spreads clients out.
            backoff_initial_ms: 10,
            backoff_max_ms: 100,
            max_redirects_per_round: 4,
            // A few rounds, so a node that is restarting right now is still found.
            all_refused_ms: 500,
        }
    }
}

impl RetryPolicy {
    /// Pause before round `round` (0-based) of attempts, with up to 50% jitter so that many
    /// clients do not retry in lockstep. `jitter` is in [0, 1).
    pub fn backoff(&self, round: u32, jitter: f64) -> Duration {
        let base = self.backoff_initial_ms.saturating_mul(1u64 << round.min(16)).min(self.backoff_max_ms);
        // At most half the base, exactly (the float product can round past it for huge bases).
        let j = ((base as f64 * 0.5 * jitter.clamp(0.0, 1.0)) as u64).min(base / 2);
        Duration::from_millis(base.saturating_sub(j).max(1))
    }

    /// How long the next attempt may take when `elapsed` of the budget is spent: the attempt
    /// bound, cut to what is left, so a call never overruns its budget by a slow attempt.
    /// `None` when the budget is spent.
    pub fn attempt_timeout(&self, elapsed: Duration) -> Option<Duration> {
        let left = Duration::from_millis(self.budget_ms).checked_sub(elapsed)?;
        if left.is_zero() {
            return None;
        }
        Some(left.min(Duration::from_millis(self.attempt_timeout_ms)))
    }

    /// Whether to follow a redirect from `from` to `to`, having followed `followed` in this
    /// round. Not to the node itself, nor to a node that failed during this call (a dead leader
    /// that followers still name: a reason to try the others, not to loop), nor past the cap.
    pub fn follow_redirect(&self, from: &str, to: &str, failed: &[String], followed: usize) -> bool {
        to != from && !failed.iter().any(|f| f == to) && followed < self.max_redirects_per_round
    }
}

/// What an HTTP answer from a node means for the call, from its status and body alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the body is the call's result.
    Done,
    /// 307 naming the leader: ask it.
    Redirect(String),
    /// The node answers but cannot serve now (no leader, no quorum, a server error): try the
    /// others, and again after a pause.
    Busy(String),
    /// A 4xx refusal in the API's error shape: final, and the same on any node.
    Refused { code: ApiErrorCode, message: String },
    /// A 4xx that is not in the API's error shape: not a tracker's answer.
    Protocol(String),
}

/// Classifies the answer `status` + `body` of `node`.
pub fn classify(node: &str, status: u16, body: &[u8]) -> Verdict {
    if (200..300).contains(&status) {
        return Verdict::Done;
    }
    if status == 307 {
        return match serde_json::from_slice::<NotLeaderBody>(body) {
            Ok(nl) => Verdict::Redirect(nl.leader.api),
            Err(_) => Verdict::Busy(format!("{node}: redirect without a leader")),
        };
    }
    let err: Option<ErrorBody> = serde_json::from_slice(body).ok();
    if status >= 500 {
        let m = err.map(|e| e.error.message).unwrap_or_else(|| format!("status {status}"));
        return Verdict::Busy(format!("{node}: {m}"));
    }
    match err {
        Some(e) => Verdict::Refused { code: e.error.code, message: e.error.message },
        None => Verdict::Protocol(format!("{node} answered status {status}")),
    }
}

/// The order in which to try nodes within one round: the cached leader first, then the
/// others in list order starting after it, skipping nodes that failed during this call.
pub fn round_order(nodes: &[String], leader: Option<&str>, failed: &[String]) -> Vec<String> {
    let start = leader.and_then(|l| nodes.iter().position(|n| n == l)).unwrap_or(0);
    let mut out: Vec<String> = Vec::with_capacity(nodes.len());
    if let Some(l) = leader {
        if !failed.iter().any(|f| f == l) {
            out.push(l.to_string());
        }
    }
    for k in 0..nodes.len() {
        let n = &nodes[(start + k) % nodes.len()];
        if !out.contains(n) && !failed.contains(n) {
            out.push(n.clone());
        }
    }
    // Every node failed this round: try them all again (they may be back).
    if out.is_empty() {
        out = nodes.to_vec();
    }
    out
}

/// Tells a cluster that is down (every node refuses the connection: nothing listens) from
/// one that is electing (some node answers, if only 503, or accepts and is slow). Anything
/// but a refused connection ends the streak.
#[derive(Clone, Debug, Default)]
pub struct RefusalStreak {
    /// When (time into the call) the first refusal of the streak came.
    since: Option<Duration>,
    refused: BTreeSet<String>,
}

impl RefusalStreak {
    /// `node` refused the connection at `at` (time into the call).
    pub fn refused(&mut self, node: &str, at: Duration) {
        self.since.get_or_insert(at);
        self.refused.insert(node.to_string());
    }

    /// Some node answered, timed out or failed otherwise: someone may be there.
    pub fn heard(&mut self) {
        self.since = None;
        self.refused.clear();
    }

    /// Whether every one of `nodes` has refused, and only refusals came, for `window` by `now`.
    pub fn gave_up(&self, nodes: &[String], now: Duration, window: Duration) -> bool {
        match self.since {
            Some(since) => nodes.iter().all(|n| self.refused.contains(n)) && now.saturating_sub(since) >= window,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn leader_first_then_the_rest() {
        let nodes = v(&["a", "b", "c"]);
        assert_eq!(round_order(&nodes, Some("b"), &[]), v(&["b", "c", "a"]));
        assert_eq!(round_order(&nodes, Some("c"), &[]), v(&["c", "a", "b"]));
        assert_eq!(round_order(&nodes, None, &[]), v(&["a", "b", "c"]));
        // A hinted leader outside the list (a node added later) is tried first too.
        assert_eq!(round_order(&nodes, Some("d"), &[]), v(&["d", "a", "b", "c"]));
    }

    #[test]
    fn failed_nodes_are_skipped_even_when_named_leader() {
        let nodes = v(&["a", "b", "c"]);
        assert_eq!(round_order(&nodes, Some("a"), &v(&["a"])), v(&["b", "c"]));
        assert_eq!(round_order(&nodes, Some("b"), &v(&["c"])), v(&["b", "a"]));
        assert_eq!(round_order(&nodes, None, &v(&["a", "c"])), v(&["b"]));
        // All failed: all of them again, in list order.
        assert_eq!(round_order(&nodes, Some("a"), &v(&["a", "b", "c"])), v(&["a", "b", "c"]));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(0, 0.0), ms(10));
        assert_eq!(p.backoff(1, 0.0), ms(20));
        assert_eq!(p.backoff(2, 0.0), ms(40));
        assert_eq!(p.backoff(10, 0.0), ms(100));
        assert_eq!(p.backoff(40, 0.0), ms(100));
        assert!(p.backoff(3, 0.99) >= ms(40));
    }

    #[test]
    fn backoff_stays_between_half_the_base_and_the_cap_for_any_round_and_jitter() {
        let policies = [
            RetryPolicy::default(),
            RetryPolicy { backoff_initial_ms: 1, backoff_max_ms: 1, ..Default::default() },
            RetryPolicy { backoff_initial_ms: 0, backoff_max_ms: 0, ..Default::default() },
            RetryPolicy { backoff_initial_ms: u64::MAX / 2, backoff_max_ms: u64::MAX, ..Default::default() },
        ];
        for p in &policies {
            for round in [0, 1, 2, 5, 16, 17, 63, 64, 1000, u32::MAX] {
                for jitter in [-1.0, 0.0, 0.25, 0.5, 0.999, 1.0, 7.0, f64::NAN] {
                    let d = p.backoff(round, jitter).as_millis() as u64;
                    assert!(d <= p.backoff_max_ms.max(1), "{p:?} round {round} jitter {jitter}: {d} over the cap");
                    assert!(d >= 1, "never a busy loop");
                    let base = p.backoff_initial_ms.saturating_mul(1 << round.min(16)).min(p.backoff_max_ms);
                    assert!(d >= base / 2, "{p:?} round {round} jitter {jitter}: {d} under half of {base}");
                }
            }
        }
    }

    #[test]
    fn an_attempt_never_outlasts_the_budget() {
        let p = RetryPolicy { budget_ms: 1_000, attempt_timeout_ms: 700, ..Default::default() };
        assert_eq!(p.attempt_timeout(ms(0)), Some(ms(700)));
        assert_eq!(p.attempt_timeout(ms(300)), Some(ms(700)));
        assert_eq!(p.attempt_timeout(ms(600)), Some(ms(400)));
        assert_eq!(p.attempt_timeout(ms(999)), Some(ms(1)));
        assert_eq!(p.attempt_timeout(ms(1_000)), None, "budget spent");
        assert_eq!(p.attempt_timeout(ms(5_000)), None);
    }

    #[test]
    fn redirects_are_followed_within_the_cap_never_to_self_or_a_failed_node() {
        let p = RetryPolicy { max_redirects_per_round: 2, ..Default::default() };
        let failed = v(&["c"]);
        let cases = [
            ("a", "b", 0, true),
            ("a", "b", 1, true),
            ("a", "b", 2, false), // cap reached
            ("a", "a", 0, false), // a node naming itself while saying it does not lead
            ("a", "c", 0, false), // c failed during this call: try the others instead
        ];
        for (from, to, followed, want) in cases {
            assert_eq!(p.follow_redirect(from, to, &failed, followed), want, "{from} -> {to} after {followed}");
        }
    }

    #[test]
    fn answers_are_classified_by_status_and_body() {
        let not_leader = br#"{"error":{"code":"not_leader","message":"m"},"leader":{"id":3,"api":"127.0.0.1:7003"}}"#;
        let unavailable = br#"{"error":{"code":"unavailable","message":"no leader"}}"#;
        let refused = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"no"}}}}"#).into_bytes();
        let cases: Vec<(u16, Vec<u8>, Verdict)> = vec![
            (200, b"{}".to_vec(), Verdict::Done),
            (204, Vec::new(), Verdict::Done),
            (307, not_leader.to_vec(), Verdict::Redirect("127.0.0.1:7003".into())),
            (307, b"<html>".to_vec(), Verdict::Busy("n: redirect without a leader".into())),
            (503, unavailable.to_vec(), Verdict::Busy("n: no leader".into())),
            (500, Vec::new(), Verdict::Busy("n: status 500".into())),
            (502, b"bad gateway".to_vec(), Verdict::Busy("n: status 502".into())),
            (
                401,
                refused("unauthenticated"),
                Verdict::Refused { code: "unauthenticated".into(), message: "no".into() },
            ),
            (409, refused("group_exists"), Verdict::Refused { code: "group_exists".into(), message: "no".into() }),
            (
                422,
                refused("idempotency_key_reused"),
                Verdict::Refused { code: "idempotency_key_reused".into(), message: "no".into() },
            ),
            (429, refused("rate_limited"), Verdict::Refused { code: "rate_limited".into(), message: "no".into() }),
            (404, Vec::new(), Verdict::Protocol("n answered status 404".into())),
            (400, b"not json".to_vec(), Verdict::Protocol("n answered status 400".into())),
        ];
        for (status, body, want) in cases {
            assert_eq!(classify("n", status, &body), want, "status {status}");
        }
    }

    #[test]
    fn a_cluster_is_down_only_when_every_node_refused_and_nothing_else_came_for_the_window() {
        let nodes = v(&["a", "b", "c"]);
        let window = ms(500);
        let mut s = RefusalStreak::default();
        assert!(!s.gave_up(&nodes, ms(10_000), window), "nothing happened yet");
        s.refused("a", ms(0));
        s.refused("b", ms(1));
        assert!(!s.gave_up(&nodes, ms(10_000), window), "c has not refused");
        s.refused("c", ms(2));
        assert!(!s.gave_up(&nodes, ms(499), window), "within the window");
        assert!(s.gave_up(&nodes, ms(500), window));
        // One answer (a 503 during an election, a timeout from a frozen node) ends the streak.
        s.heard();
        assert!(!s.gave_up(&nodes, ms(10_000), window));
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            s.refused(n, ms(600 + i as u64));
        }
        assert!(!s.gave_up(&nodes, ms(1_000), window), "the window restarts with the streak");
        assert!(s.gave_up(&nodes, ms(1_100), window));
        // A redirect target outside the list does not stand in for a listed node.
        let mut s = RefusalStreak::default();
        s.refused("a", ms(0));
        s.refused("b", ms(0));
        s.refused("z", ms(0));
        assert!(!s.gave_up(&nodes, ms(1_000), window));
    }
}
