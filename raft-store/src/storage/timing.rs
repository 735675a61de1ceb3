//! How long the log's disk work takes, for the node's metrics (etcd's
//! `disk_wal_fsync_duration_seconds` and `disk_backend_commit_duration_seconds`): plain counters
//! behind a lock, updated once per appended batch.

use std::sync::Mutex;
use std::time::Duration;

/// etcd's bounds for disk latency: 1 ms doubling to 8.192 s.
pub const DISK_BUCKETS_S: [f64; 14] =
    [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/// A Prometheus-style histogram: cumulative counts per upper bound, their sum and count.
#[derive(Clone, Debug)]
pub struct Histogram {
    pub bounds_s: &'static [f64],
    /// `counts[i]`: observations at most `bounds_s[i]`.
    pub counts: Vec<u64>,
    pub sum_s: f64,
    pub total: u64,
}

impl Histogram {
    pub fn new(bounds_s: &'static [f64]) -> Self {
        Histogram { bounds_s, counts: vec![0; bounds_s.len()], sum_s: 0.0, total: 0 }
    }

    pub fn observe(&mut self, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        for (i, b) in self.bounds_s.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum_s += s;
        self.total += 1;
    }
}

/// The log's disk latencies: a whole append (encode, write the batch, flush) and its flush alone.
#[derive(Debug)]
pub struct DiskTimings {
    pub append: Mutex<Histogram>,
    pub fsync: Mutex<Histogram>,
}

impl Default for DiskTimings {
    fn default() -> Self {
        DiskTimings {
            append: Mutex::new(Histogram::new(&DISK_BUCKETS_S)),
            fsync: Mutex::new(Histogram::new(&DISK_BUCKETS_S)),
        }
    }
}

impl DiskTimings {
    pub fn append(&self) -> Histogram {
        self.append.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn fsync(&self) -> Histogram {
        self.fsync.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_cumulative_per_bound() {
        let mut h = Histogram::new(&DISK_BUCKETS_S);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        assert_eq!(h.total, 3);
        assert_eq!(&h.counts[..3], &[1, 1, 2], "<=1 ms: 1; <=2 ms: 1; <=4 ms: 2");
        assert_eq!(*h.counts.last().unwrap(), 2, "10 s is above every bound: only in the total");
        assert!((h.sum_s - 10.0035).abs() < 1e-9);
    }
}
