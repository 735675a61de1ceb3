//! Prometheus metrics: Raft state gauges, counts of users, groups and files, and write
//! latency per command kind.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use proto::api::NodeStatus;

/// Histogram bucket bounds, in seconds.
const BUCKETS_S: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_S.len()],
    sum_s: f64,
    total: u64,
}

#[derive(Default)]
pub struct Metrics {
    writes: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Writes the leader refused before proposing (forged session, bad name, reused key).
    precheck_refusals: Mutex<BTreeMap<&'static str, u64>>,
}

/// Figures that come from storage rather than from this struct.
pub struct StorageFigures {
    pub sled_bytes: u64,
    pub snapshot_file_bytes: u64,
    pub last_snapshot: Option<raft_store::storage::SnapshotStats>,
}

impl Metrics {
    pub fn observe_write(&self, kind: &'static str, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        let mut w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let h = w.entry(kind).or_default();
        for (i, b) in BUCKETS_S.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum_s += s;
        h.total += 1;
    }

    pub fn observe_precheck_refusal(&self, kind: &'static str) {
        *self.precheck_refusals.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
    }

    pub fn render(&self, st: &NodeStatus, storage: &StorageFigures) -> String {
        let sled_bytes = storage.sled_bytes;
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge("tracker_is_leader", "1 when this node is the Raft leader", (st.role == "leader") as u8 as f64);
        gauge("tracker_term", "current Raft term", st.term as f64);
        gauge("tracker_leader_id", "id of the known leader, 0 if none", st.leader.unwrap_or(0) as f64);
        gauge("tracker_last_log_index", "index of the last log entry", st.last_log_index.unwrap_or(0) as f64);
        gauge("tracker_applied_index", "index of the last applied entry", st.applied_index.unwrap_or(0) as f64);
        gauge("tracker_snapshot_index", "last index in the current snapshot", st.snapshot_index.unwrap_or(0) as f64);
        gauge("tracker_purged_index", "last purged log index", st.purged_index.unwrap_or(0) as f64);
        gauge("tracker_voters", "number of voters", st.voters.len() as f64);
        gauge("tracker_users", "registered users", st.users as f64);
        gauge("tracker_groups", "groups", st.groups as f64);
        gauge("tracker_files", "shared files", st.files as f64);
        gauge("tracker_sled_size_bytes", "sled files on disk", sled_bytes as f64);
        gauge("tracker_snapshot_file_bytes", "size of the current snapshot file", storage.snapshot_file_bytes as f64);
        if let Some(b) = storage.last_snapshot {
            gauge("tracker_snapshot_build_ms", "time to build the last snapshot this node built", b.build_ms as f64);
            gauge("tracker_snapshot_built_bytes", "size of the last snapshot this node built", b.size_bytes as f64);
        }
        {
            let p = self.precheck_refusals.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(out, "# HELP tracker_precheck_refusals_total writes refused by the leader before proposal\n# TYPE tracker_precheck_refusals_total counter");
            for (kind, n) in p.iter() {
                let _ = writeln!(out, "tracker_precheck_refusals_total{{command=\"{kind}\"}} {n}");
            }
        }
        let w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP tracker_write_seconds time from proposal to applied outcome\n# TYPE tracker_write_seconds histogram");
        for (kind, h) in w.iter() {
            for (i, b) in BUCKETS_S.iter().enumerate() {
                let _ = writeln!(out, "tracker_write_seconds_bucket{{command=\"{kind}\",le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "tracker_write_seconds_bucket{{command=\"{kind}\",le=\"+Inf\"}} {}", h.total);
            let _ = writeln!(out, "tracker_write_seconds_sum{{command=\"{kind}\"}} {}", h.sum_s);
            let _ = writeln!(out, "tracker_write_seconds_count{{command=\"{kind}\"}} {}", h.total);
        }
        out
    }
}
