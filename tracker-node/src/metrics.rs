//! Prometheus metrics (text format 0.0.4), with the families etcd operators watch under this
//! node's names: Raft state and leadership (`tracker_has_leader`, `tracker_leader_changes_seen_total`,
//! term, indexes), proposals (`tracker_proposals_committed_total`, `_failed_total`, `_pending`;
//! applied is `tracker_applied_index`), disk (`tracker_disk_wal_fsync_seconds`,
//! `tracker_disk_append_seconds`), snapshots, write latency per command kind, login throttling,
//! and the process (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_start_time_seconds`). Each family is tested to parse
//! (`tests` below) and read back in tracker-node/tests/raft_cluster.rs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use proto::api::NodeStatus;
use raft_store::storage::timing::Histogram;

/// Write latency bounds, in seconds.
const WRITE_BUCKETS_S: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Default)]
pub struct Metrics {
    writes: Mutex<BTreeMap<&'static str, Histogram>>,
    /// Writes the leader refused before proposing (forged session, bad name, reused key).
    precheck_refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Proposals this node made that were committed and applied (whatever their outcome).
    proposals_committed: AtomicU64,
    /// Proposals that failed: not committed in time, leadership lost, node stopping.
    proposals_failed: AtomicU64,
    /// Proposals waiting for their commit now.
    proposals_pending: AtomicU64,
    /// Changes of the leader this node has seen (to another leader, or to none).
    leader_changes: AtomicU64,
}

/// Counts a proposal as pending while it lives; `committed` or `failed` when it ends.
pub struct Proposal<'a> {
    metrics: &'a Metrics,
    done: bool,
}

impl Proposal<'_> {
    pub fn committed(mut self) {
        self.metrics.proposals_committed.fetch_add(1, Ordering::Relaxed);
        self.done = true;
    }
}

impl Drop for Proposal<'_> {
    fn drop(&mut self) {
        self.metrics.proposals_pending.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            self.metrics.proposals_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Figures that come from storage rather than from this struct.
pub struct StorageFigures<'a> {
    pub sled_bytes: u64,
    pub snapshot_file_bytes: u64,
    pub last_snapshot: Option<raft_store::storage::SnapshotStats>,
    /// The log's disk latencies.
    pub disk: Option<&'a raft_store::storage::timing::DiskTimings>,
}

impl Metrics {
    pub fn observe_write(&self, kind: &'static str, elapsed: Duration) {
        let mut w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(kind).or_insert_with(|| Histogram::new(&WRITE_BUCKETS_S)).observe(elapsed);
    }

    /// A proposal starts: pending until the returned value is marked committed or dropped.
    pub fn proposal(&self) -> Proposal<'_> {
        self.proposals_pending.fetch_add(1, Ordering::Relaxed);
        Proposal { metrics: self, done: false }
    }

    /// The leader this node knows changed (the metrics watcher calls it).
    pub fn leader_changed(&self) {
        self.leader_changes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_precheck_refusal(&self, kind: &'static str) {
        *self.precheck_refusals.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
    }

    pub fn render(&self, st: &NodeStatus, storage: &StorageFigures<'_>) -> String {
        let sled_bytes = storage.sled_bytes;
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge("tracker_is_leader", "1 when this node is the Raft leader", (st.role == "leader") as u8 as f64);
        gauge("tracker_has_leader", "1 when this node knows a leader", st.leader.is_some() as u8 as f64);
        gauge(
            "tracker_proposals_pending",
            "proposals waiting for their commit",
            self.proposals_pending.load(Ordering::Relaxed) as f64,
        );
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
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "tracker_proposals_committed_total",
            "proposals committed and applied",
            self.proposals_committed.load(Ordering::Relaxed),
        );
        counter(
            "tracker_proposals_failed_total",
            "proposals not committed (timeout, lost leadership, stopping)",
            self.proposals_failed.load(Ordering::Relaxed),
        );
        counter(
            "tracker_leader_changes_seen_total",
            "changes of the leader this node has seen",
            self.leader_changes.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP tracker_write_seconds time from proposal to applied outcome\n# TYPE tracker_write_seconds histogram");
        for (kind, h) in self.writes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            histogram_lines(&mut out, "tracker_write_seconds", &format!("command=\"{kind}\","), h);
        }
        if let Some(disk) = &storage.disk {
            let _ = writeln!(out, "# HELP tracker_disk_wal_fsync_seconds time to flush an appended batch of log entries to disk\n# TYPE tracker_disk_wal_fsync_seconds histogram");
            histogram_lines(&mut out, "tracker_disk_wal_fsync_seconds", "", &disk.fsync());
            let _ = writeln!(out, "# HELP tracker_disk_append_seconds time to encode, write and flush an appended batch\n# TYPE tracker_disk_append_seconds histogram");
            histogram_lines(&mut out, "tracker_disk_append_seconds", "", &disk.append());
        }
        process_metrics(&mut out);
        out
    }
}

/// The `_bucket`, `_sum` and `_count` lines of one histogram; `labels` ends with a comma or is
/// empty.
fn histogram_lines(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    for (b, n) in h.bounds_s.iter().zip(&h.counts) {
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", h.total);
    let plain = labels.trim_end_matches(',');
    let braces = if plain.is_empty() { String::new() } else { format!("{{{plain}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_s);
    let _ = writeln!(out, "{name}_count{braces} {}", h.total);
}

/// The standard process families, from /proc/self (Linux).
fn process_metrics(out: &mut String) {
    let ticks_per_s = 100.0; // USER_HZ, 100 on Linux
    let page_bytes = 4096.0;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()); // `man 5 proc` numbering
    let mut gauge = |name: &str, kind: &str, help: &str, v: Option<f64>| {
        if let Some(v) = v {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    };
    let cpu = field(14).zip(field(15)).map(|(u, s)| (u + s) / ticks_per_s);
    gauge("process_cpu_seconds_total", "counter", "user and system CPU time spent", cpu);
    gauge("process_resident_memory_bytes", "gauge", "resident memory size", field(24).map(|p| p * page_bytes));
    gauge("process_virtual_memory_bytes", "gauge", "virtual memory size", field(23));
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).ok();
    gauge("process_open_fds", "gauge", "open file descriptors", fds);
    let boot_s = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok()));
    let start = boot_s.zip(field(22)).map(|(b, t)| b + t / ticks_per_s);
    gauge("process_start_time_seconds", "gauge", "start time since the epoch", start);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line is a comment or `name{labels} value` with a number; every sample's family has
    /// a TYPE line before it.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut typed = std::collections::BTreeSet::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                let (name, kind) = (it.next().unwrap(), it.next().unwrap());
                assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
                typed.insert(name.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
            let name = key.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(typed.contains(name) || typed.contains(family), "no TYPE before {line}");
            samples.insert(key.to_string(), v);
        }
        samples
    }

    fn status(role: &str, leader: Option<u64>) -> NodeStatus {
        serde_json::from_value(serde_json::json!({
            "id": 1, "api": "127.0.0.1:1", "role": role, "term": 3, "leader": leader, "leader_api": null,
            "voters": [1, 2, 3], "learners": [],
            "last_log_index": 10, "applied_index": 9, "snapshot_index": null, "purged_index": null,
            "users": 2, "groups": 1, "files": 0
        }))
        .unwrap_or_else(|e| panic!("NodeStatus fixture: {e}"))
    }

    #[test]
    fn the_etcd_families_are_there_and_parse() {
        let m = Metrics::default();
        m.observe_write("login", Duration::from_millis(3));
        {
            let p = m.proposal();
            p.committed();
        }
        drop(m.proposal()); // a proposal that failed
        let _pending = m.proposal();
        m.leader_changed();
        let disk = raft_store::storage::timing::DiskTimings::default();
        disk.fsync.lock().unwrap().observe(Duration::from_millis(2));
        let storage = StorageFigures { sled_bytes: 1, snapshot_file_bytes: 2, last_snapshot: None, disk: Some(&disk) };
        let text = m.render(&status("leader", Some(1)), &storage);
        let s = parse(&text);
        assert_eq!(s["tracker_has_leader"], 1.0);
        assert_eq!(s["tracker_is_leader"], 1.0);
        assert_eq!(s["tracker_proposals_committed_total"], 1.0);
        assert_eq!(s["tracker_proposals_failed_total"], 1.0);
        assert_eq!(s["tracker_proposals_pending"], 1.0);
        assert_eq!(s["tracker_leader_changes_seen_total"], 1.0);
        assert_eq!(s["tracker_disk_wal_fsync_seconds_count"], 1.0);
        assert_eq!(s["tracker_disk_wal_fsync_seconds_bucket{le=\"0.002\"}"], 1.0);
        assert_eq!(s["tracker_disk_wal_fsync_seconds_bucket{le=\"0.001\"}"], 0.0);
        assert_eq!(s["tracker_write_seconds_count{command=\"login\"}"], 1.0);
        assert!(s["process_resident_memory_bytes"] > 1e6, "{text}");
        assert!(s["process_open_fds"] >= 3.0);
        assert!(s["process_cpu_seconds_total"] >= 0.0);
        assert!(s["process_start_time_seconds"] > 1.6e9);
        let s = parse(&m.render(&status("candidate", None), &storage));
        assert_eq!(s["tracker_has_leader"], 0.0);
    }
}
