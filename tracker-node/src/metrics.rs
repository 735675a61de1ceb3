//! Prometheus metrics through `prometheus-client` (text format 0.0.4), with the families etcd
//! operators watch under this node's names: Raft state and leadership (`tracker_has_leader`,
//! `tracker_leader_changes_seen_total`, term, indexes), proposals
//! (`tracker_proposals_committed_total`, `_failed_total`, `_pending`; applied is
//! `tracker_applied_index`), disk (`tracker_disk_wal_fsync_seconds`, `tracker_disk_append_seconds`,
//! timed in raft-store's log store), snapshots, write latency per command kind, login throttling,
//! and the process (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_start_time_seconds`). Counters and histograms are kept as events
//! happen; the gauges are set from the node's status when `/metrics` is asked for. Each node has
//! a registry of its own; the `process_*` families describe the process, which several nodes
//! share when they run in one (in-process tests).

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use proto::api::NodeStatus;
use raft_store::storage::timing::DiskTimings;

/// Write latency bounds, in seconds.
const WRITE_BUCKETS_S: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The content type of what `render` returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
}

type IntGauge = Gauge<i64, AtomicI64>;

/// The gauges set from the node's status and the process at each scrape.
#[derive(Default)]
struct Scraped {
    is_leader: IntGauge,
    has_leader: IntGauge,
    term: IntGauge,
    leader_id: IntGauge,
    last_log_index: IntGauge,
    applied_index: IntGauge,
    snapshot_index: IntGauge,
    purged_index: IntGauge,
    voters: IntGauge,
    users: IntGauge,
    groups: IntGauge,
    files: IntGauge,
    sled_size_bytes: IntGauge,
    snapshot_file_bytes: IntGauge,
    snapshot_build_ms: IntGauge,
    snapshot_built_bytes: IntGauge,
    login_throttle_records: IntGauge,
}

pub struct Metrics {
    registry: Registry,
    scraped: Scraped,
    writes: Family<CommandLabel, Histogram, fn() -> Histogram>,
    /// Writes the leader refused before proposing (forged session, bad name, reused key).
    precheck_refusals: Family<CommandLabel, Counter>,
    /// Proposals this node made that were committed and applied (whatever their outcome).
    proposals_committed: Counter,
    /// Proposals that failed: not committed in time, leadership lost, node stopping.
    proposals_failed: Counter,
    /// Proposals waiting for their commit now.
    proposals_pending: IntGauge,
    /// Changes of the leader this node has seen (to another leader, or to none).
    leader_changes: Counter,
    /// The log's disk latencies, once the store is known.
    disk: Arc<Mutex<Option<Arc<DiskTimings>>>>,
}

/// Figures that come from storage rather than from this struct.
pub struct StorageFigures {
    pub sled_bytes: u64,
    pub snapshot_file_bytes: u64,
    pub last_snapshot: Option<raft_store::storage::SnapshotStats>,
    pub login_throttle_records: usize,
}

/// Counts a proposal as pending while it lives; `committed` or `failed` when it ends.
pub struct Proposal<'a> {
    metrics: &'a Metrics,
    done: bool,
}

impl Proposal<'_> {
    pub fn committed(mut self) {
        self.metrics.proposals_committed.inc();
        self.done = true;
    }
}

impl Drop for Proposal<'_> {
    fn drop(&mut self) {
        self.metrics.proposals_pending.dec();
        if !self.done {
            self.metrics.proposals_failed.inc();
        }
    }
}

/// Encodes raft-store's disk histograms at each scrape.
#[derive(Debug)]
struct DiskCollector(Arc<Mutex<Option<Arc<DiskTimings>>>>);

impl DiskCollector {
    fn encode_one(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        h: &raft_store::storage::timing::Histogram,
    ) -> Result<(), std::fmt::Error> {
        // raft-store keeps cumulative counts; the encoder wants each bucket's own.
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(h.counts.len() + 1);
        let mut below = 0;
        for (b, c) in h.bounds_s.iter().zip(&h.counts) {
            buckets.push((*b, c - below));
            below = *c;
        }
        buckets.push((f64::INFINITY, h.total - below));
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum_s, h.total, &buckets, None)
    }
}

impl Collector for DiskCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(disk) = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone() else { return Ok(()) };
        Self::encode_one(
            &mut encoder,
            "tracker_disk_wal_fsync_seconds",
            "time to flush an appended batch of log entries to disk",
            &disk.fsync(),
        )?;
        Self::encode_one(
            &mut encoder,
            "tracker_disk_append_seconds",
            "time to encode, write and flush an appended batch",
            &disk.append(),
        )
    }
}

impl Scraped {
    /// Registers every gauge under its name.
    fn register(&self, registry: &mut Registry) {
        let gauges: [(&str, &str, &IntGauge); 17] = [
            ("tracker_is_leader", "1 when this node is the Raft leader", &self.is_leader),
            ("tracker_has_leader", "1 when this node knows a leader", &self.has_leader),
            ("tracker_term", "current Raft term", &self.term),
            ("tracker_leader_id", "id of the known leader, 0 if none", &self.leader_id),
            ("tracker_last_log_index", "index of the last log entry", &self.last_log_index),
            ("tracker_applied_index", "index of the last applied entry", &self.applied_index),
            ("tracker_snapshot_index", "last index in the current snapshot", &self.snapshot_index),
            ("tracker_purged_index", "last purged log index", &self.purged_index),
            ("tracker_voters", "number of voters", &self.voters),
            ("tracker_users", "registered users", &self.users),
            ("tracker_groups", "groups", &self.groups),
            ("tracker_files", "shared files", &self.files),
            ("tracker_sled_size_bytes", "sled files on disk", &self.sled_size_bytes),
            ("tracker_snapshot_file_bytes", "size of the current snapshot file", &self.snapshot_file_bytes),
            ("tracker_snapshot_build_ms", "time to build the last snapshot this node built", &self.snapshot_build_ms),
            ("tracker_snapshot_built_bytes", "size of the last snapshot this node built", &self.snapshot_built_bytes),
            (
                "tracker_login_throttle_records",
                "users and addresses with recent failed logins",
                &self.login_throttle_records,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
    }
}

/// Registers `metric` under `name` and hands it back (the registry keeps a clone).
fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        let scraped = Scraped::default();
        scraped.register(r);
        let writes: Family<CommandLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(WRITE_BUCKETS_S));
        let writes = registered(r, "tracker_write_seconds", "time from proposal to applied outcome", writes);
        let precheck_refusals = registered(
            r,
            "tracker_precheck_refusals",
            "writes refused by the leader before proposal",
            Family::<CommandLabel, Counter>::default(),
        );
        let proposals_committed =
            registered(r, "tracker_proposals_committed", "proposals committed and applied", Counter::default());
        let proposals_failed = registered(
            r,
            "tracker_proposals_failed",
            "proposals not committed (timeout, lost leadership, stopping)",
            Counter::default(),
        );
        let proposals_pending =
            registered(r, "tracker_proposals_pending", "proposals waiting for their commit", IntGauge::default());
        let leader_changes = registered(
            r,
            "tracker_leader_changes_seen",
            "changes of the leader this node has seen",
            Counter::default(),
        );
        let disk = Arc::new(Mutex::new(None));
        registry.register_collector(Box::new(DiskCollector(disk.clone())));
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            scraped,
            writes,
            precheck_refusals,
            proposals_committed,
            proposals_failed,
            proposals_pending,
            leader_changes,
            disk,
        }
    }
}

impl Metrics {
    /// Exposes the log's disk latencies (`tracker_disk_*`).
    pub fn with_disk(self, disk: Arc<DiskTimings>) -> Self {
        *self.disk.lock().unwrap_or_else(|p| p.into_inner()) = Some(disk);
        self
    }

    pub fn observe_write(&self, kind: &'static str, elapsed: Duration) {
        self.writes.get_or_create(&CommandLabel { command: kind }).observe(elapsed.as_secs_f64());
    }

    pub fn observe_precheck_refusal(&self, kind: &'static str) {
        self.precheck_refusals.get_or_create(&CommandLabel { command: kind }).inc();
    }

    /// A proposal starts: pending until the returned value is marked committed or dropped.
    pub fn proposal(&self) -> Proposal<'_> {
        self.proposals_pending.inc();
        Proposal { metrics: self, done: false }
    }

    /// The leader this node knows changed (the metrics watcher calls it).
    pub fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    /// The whole exposition, with the gauges set from `st`, `storage` and the process now.
    pub fn render(&self, st: &NodeStatus, storage: &StorageFigures) -> String {
        let g = &self.scraped;
        let set = |gauge: &IntGauge, v: u64| {
            gauge.set(v.min(i64::MAX as u64) as i64);
        };
        set(&g.is_leader, (st.role == proto::api::Role::Leader) as u64);
        set(&g.has_leader, st.leader.is_some() as u64);
        set(&g.term, st.term);
        set(&g.leader_id, st.leader.unwrap_or(0));
        set(&g.last_log_index, st.last_log_index.unwrap_or(0));
        set(&g.applied_index, st.applied_index.unwrap_or(0));
        set(&g.snapshot_index, st.snapshot_index.unwrap_or(0));
        set(&g.purged_index, st.purged_index.unwrap_or(0));
        set(&g.voters, st.voters.len() as u64);
        set(&g.users, st.users);
        set(&g.groups, st.groups);
        set(&g.files, st.files);
        set(&g.sled_size_bytes, storage.sled_bytes);
        set(&g.snapshot_file_bytes, storage.snapshot_file_bytes);
        if let Some(b) = &storage.last_snapshot {
            set(&g.snapshot_build_ms, b.build_ms);
            set(&g.snapshot_built_bytes, b.size_bytes);
        }
        set(&g.login_throttle_records, storage.login_throttle_records as u64);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode the metrics: {e}");
        }
        out
    }
}

/// The standard process families, read from /proc at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let p = process_figures();
        let cpu = ConstCounter::new(p.cpu_s);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "user and system CPU time spent",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, f64); 4] = [
            ("process_resident_memory_bytes", "resident memory size", p.resident_bytes as f64),
            ("process_virtual_memory_bytes", "virtual memory size", p.virtual_bytes as f64),
            ("process_open_fds", "open file descriptors", p.open_fds as f64),
            ("process_start_time_seconds", "start time since the epoch", p.start_time_s),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// What /proc says about this process.
#[derive(Default)]
struct ProcessFigures {
    cpu_s: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: u64,
    start_time_s: f64,
}

fn process_figures() -> ProcessFigures {
    let ticks_per_s = 100.0; // USER_HZ, 100 on Linux
    let page_bytes = 4096.0;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0); // `man 5 proc` numbering
    let boot_s = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok()))
        .unwrap_or(0.0);
    ProcessFigures {
        cpu_s: (field(14) + field(15)) / ticks_per_s,
        resident_bytes: (field(24) * page_bytes) as u64,
        virtual_bytes: field(23) as u64,
        open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0),
        start_time_s: boot_s + field(22) / ticks_per_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
            assert!(!samples.contains_key(key), "{key} twice");
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
        let disk = Arc::new(raft_store::storage::timing::DiskTimings::default());
        let m = Metrics::default().with_disk(disk.clone());
        m.observe_write("login", Duration::from_millis(3));
        {
            let p = m.proposal();
            p.committed();
        }
        drop(m.proposal()); // a proposal that failed
        let _pending = m.proposal();
        m.leader_changed();
        disk.fsync.lock().unwrap().observe(Duration::from_millis(2));
        m.observe_precheck_refusal("create_group");
        let storage =
            StorageFigures { sled_bytes: 1, snapshot_file_bytes: 2, last_snapshot: None, login_throttle_records: 4 };
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
        assert_eq!(s["tracker_write_seconds_bucket{command=\"login\",le=\"0.0025\"}"], 0.0);
        assert_eq!(s["tracker_write_seconds_bucket{command=\"login\",le=\"0.005\"}"], 1.0);
        assert_eq!(s["tracker_precheck_refusals_total{command=\"create_group\"}"], 1.0);
        assert_eq!(s["tracker_login_throttle_records"], 4.0);
        assert_eq!(s["tracker_term"], 3.0);
        assert!(text.contains("\ntracker_term 3\n"), "integers print as integers: {text}");
        assert_eq!(s["tracker_disk_wal_fsync_seconds_bucket{le=\"+Inf\"}"], 1.0);
        assert!(s["process_resident_memory_bytes"] > 1e6, "{text}");
        assert!(s["process_open_fds"] >= 3.0);
        assert!(s["process_cpu_seconds_total"] >= 0.0);
        assert!(s["process_start_time_seconds"] > 1.6e9);
        let s = parse(&m.render(&status("candidate", None), &storage));
        assert_eq!(s["tracker_has_leader"], 0.0);
    }
}
