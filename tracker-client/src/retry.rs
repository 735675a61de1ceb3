//! The retry policy as plain data and plain functions: which node to try next, how long to
//! wait before the next round. Tested without sockets.

use std::time::Duration;

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
        }
    }
}

impl RetryPolicy {
    /// Pause before round `round` (0-based) of attempts, with up to 50% jitter so that many
    /// clients do not retry in lockstep. `jitter` is in [0, 1).
    pub fn backoff(&self, round: u32, jitter: f64) -> Duration {
        let base = self.backoff_initial_ms.saturating_mul(1u64 << round.min(16)).min(self.backoff_max_ms);
        let j = (base as f64 * 0.5 * jitter.clamp(0.0, 1.0)) as u64;
        Duration::from_millis(base.saturating_sub(j).max(1))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn leader_first_then_the_rest() {
        let nodes = v(&["a", "b", "c"]);
        assert_eq!(round_order(&nodes, Some("b"), &[]), v(&["b", "c", "a"]));
        assert_eq!(round_order(&nodes, None, &[]), v(&["a", "b", "c"]));
        // A hinted leader outside the list (a node added later) is tried first too.
        assert_eq!(round_order(&nodes, Some("d"), &[]), v(&["d", "a", "b", "c"]));
    }

    #[test]
    fn failed_nodes_are_skipped_even_when_named_leader() {
        let nodes = v(&["a", "b", "c"]);
        assert_eq!(round_order(&nodes, Some("a"), &v(&["a"])), v(&["b", "c"]));
        assert_eq!(round_order(&nodes, Some("a"), &v(&["a", "b", "c"])), v(&["a", "b", "c"]));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(10));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(20));
        assert_eq!(p.backoff(10, 0.0), Duration::from_millis(100));
        assert_eq!(p.backoff(40, 0.0), Duration::from_millis(100));
        assert!(p.backoff(3, 0.99) >= Duration::from_millis(40));
    }
}
