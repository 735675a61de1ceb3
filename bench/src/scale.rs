//! `bench scale`: the tracker at a realistic size. Starts a 3-node cluster of the real
//! `tracker-node` binary, registers users, creates groups and uploads the metadata of many
//! files through the API with concurrent clients (`tracker-client`, keep-alive, one login per
//! user, an Idempotency-Key on every write), then reports per node memory, disk and snapshot
//! figures, upload throughput at several client counts, the time from a cold restart of the
//! whole cluster to the first linearizable read, and, as the comparison anchor, etcd's memory
//! and disk with as many keys. Goals are reported, never asserted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use proto::api::FileMetaBody;
use serde_json::{json, Value};
use testkit::{http, http_get_json, runtime, Cluster, ClusterOptions, ClusterView};
use tracker_client::{ClientError, RetryPolicy, TrackerClient};

use crate::etcd;
use crate::load::{drive, Failure, Live, Phase, Progress};
use crate::sys::{disk_use, hex40, machine, mem, mib, ms, poll, table, today_utc, Disk, Mem};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Files whose metadata is uploaded in the bulk load
    #[arg(long, default_value_t = 100_000)]
    files: u64,
    /// Groups created before the files (file i goes to group i mod groups)
    #[arg(long, default_value_t = 10_000)]
    groups: u64,
    /// Registered users (argon2: tens of ms each); group j is owned by user j mod users
    #[arg(long, default_value_t = 32)]
    users: u64,
    /// Size every uploaded file claims to have (metadata only: nothing of that size exists)
    #[arg(long, default_value_t = 1 << 30)]
    file_size_bytes: u64,
    /// Concurrent clients of the bulk load (and of etcd's load)
    #[arg(long, default_value_t = 32)]
    load_clients: usize,
    /// Client counts of the upload-throughput levels, measured after the bulk load
    #[arg(long, default_value = "1,8,32", value_delimiter = ',')]
    clients_levels: Vec<usize>,
    /// Fresh uploads per throughput level
    #[arg(long, default_value_t = 3000)]
    uploads_per_level: u64,
    #[arg(long, default_value_t = 20)]
    heartbeat_ms: u64,
    /// Election timeout range, MIN,MAX (the shipped cluster.toml's by default)
    #[arg(long, default_value = "60,120", value_parser = crate::failover::parse_range)]
    election_timeout_ms: (u64, u64),
    /// Log entries between snapshots (cluster.toml `snapshot_logs_threshold`; shipped: 5000)
    #[arg(long, default_value_t = 5000)]
    snapshot_logs_threshold: u64,
    /// Bound on the whole bulk load (registrations, groups, files); the run stops past it
    #[arg(long, default_value_t = 1800)]
    load_timeout_s: u64,
    /// Bound on each other wait (convergence, snapshot, restart, etcd start)
    #[arg(long, default_value_t = 120)]
    wait_s: u64,
    /// Skip the etcd comparison
    #[arg(long)]
    skip_etcd: bool,
    /// Keys written to etcd (default: as many as --files)
    #[arg(long)]
    etcd_keys: Option<u64>,
    /// Bytes of each etcd value (about an upload's entry in the tracker's log)
    #[arg(long, default_value_t = 300)]
    etcd_value_bytes: usize,
    /// Also write every figure as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One node's figures at one moment.
#[derive(Clone, Debug, Default)]
struct NodeFigures {
    id: u64,
    pid: Option<u32>,
    mem: Option<Mem>,
    disk: Disk,
    role: String,
    term: u64,
    last_log: u64,
    applied: u64,
    snapshot_index: Option<u64>,
    purged: Option<u64>,
    users: u64,
    groups: u64,
    files: u64,
    sled_bytes: Option<u64>,
    snapshot_file_bytes: Option<u64>,
    snapshot_build_ms: Option<f64>,
    snapshot_built_bytes: Option<u64>,
}

impl NodeFigures {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "pid": self.pid, "rss_bytes": self.mem.map(|m| m.rss), "hwm_bytes": self.mem.map(|m| m.hwm),
            "data_dir_apparent_bytes": self.disk.apparent, "data_dir_allocated_bytes": self.disk.allocated,
            "data_dir_files": self.disk.files, "role": self.role, "term": self.term, "last_log_index": self.last_log,
            "applied_index": self.applied, "snapshot_index": self.snapshot_index, "purged_index": self.purged,
            "users": self.users, "groups": self.groups, "files": self.files, "sled_size_bytes": self.sled_bytes,
            "snapshot_file_bytes": self.snapshot_file_bytes, "snapshot_build_ms": self.snapshot_build_ms,
            "snapshot_built_bytes": self.snapshot_built_bytes,
        })
    }
    fn log_entries(&self) -> u64 {
        self.last_log.saturating_sub(self.purged.unwrap_or(0))
    }
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

fn node_figures(c: &Cluster, id: u64) -> NodeFigures {
    let pid = c.pid(id);
    let mut f = NodeFigures { id, pid, mem: pid.and_then(mem), disk: disk_use(&c.data_dir(id)), ..Default::default() };
    if let Some(st) = c.status(id) {
        let u = |k: &str| st[k].as_u64();
        f.role = st["role"].as_str().unwrap_or("").to_string();
        f.term = u("term").unwrap_or(0);
        f.last_log = u("last_log_index").unwrap_or(0);
        f.applied = u("applied_index").unwrap_or(0);
        f.snapshot_index = u("snapshot_index");
        f.purged = u("purged_index");
        f.users = u("users").unwrap_or(0);
        f.groups = u("groups").unwrap_or(0);
        f.files = u("files").unwrap_or(0);
    }
    if let Some(r) = http(c.api(id), "GET", "/metrics", &[], None).filter(|r| r.status == 200) {
        f.sled_bytes = metric(&r.body, "tracker_sled_size_bytes").map(|v| v as u64);
        f.snapshot_file_bytes = metric(&r.body, "tracker_snapshot_file_bytes").map(|v| v as u64);
        f.snapshot_build_ms = metric(&r.body, "tracker_snapshot_build_ms");
        f.snapshot_built_bytes = metric(&r.body, "tracker_snapshot_built_bytes").map(|v| v as u64);
    }
    f
}

fn all_figures(c: &Cluster) -> Vec<NodeFigures> {
    c.ids().into_iter().map(|id| node_figures(c, id)).collect()
}

/// Waits until every running node has applied its whole log, at the same index.
fn wait_applied(c: &Cluster, timeout: Duration) -> anyhow::Result<u64> {
    poll("every node to apply its whole log at the same index", timeout, || {
        let mut at = None;
        for id in c.running() {
            let st = c.status(id)?;
            let (a, l) = (st["applied_index"].as_u64()?, st["last_log_index"].as_u64()?);
            if a != l || at.is_some_and(|x| x != a) {
                return None;
            }
            at = Some(a);
        }
        at
    })
}

fn term_and_leader(c: &Cluster) -> (u64, u64) {
    for id in c.running() {
        if let Some(st) = c.status(id) {
            if let (Some(t), Some(l)) = (st["term"].as_u64(), st["leader"].as_u64()) {
                return (t, l);
            }
        }
    }
    (0, 0)
}

fn failure(e: ClientError) -> Failure {
    (e.code().to_string(), e.to_string())
}

/// A password call retried while the node's bounded password pool answers 429 (`rate_limited`,
/// nothing proposed): after Retry-After (1 s), at most 30 times.
async fn patient<T, Fut>(mut call: impl FnMut() -> Fut) -> Result<T, Failure>
where
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(e) if e.code() == "rate_limited" && tries < 30 => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            r => return r.map_err(failure),
        }
    }
}

fn group_name(j: u64) -> String {
    format!("g{j:05}")
}

/// What the tracker part of the run measured.
struct TrackerRun {
    cluster_toml: String,
    phases: Vec<Phase>,
    terms: Vec<(String, (u64, u64), (u64, u64))>,
    after_load: Vec<NodeFigures>,
    after_load_applied: u64,
    snapshot_note: Option<String>,
    levels: Vec<Phase>,
    after_levels: Vec<NodeFigures>,
    at_kill: Vec<NodeFigures>,
    restart: Restart,
    after_restart: Vec<NodeFigures>,
    log_notes: Vec<String>,
}

#[derive(Default)]
struct Restart {
    first_read_ms: Option<f64>,
    first_read_node: u64,
    api_up_ms: Vec<(u64, Option<f64>)>,
    caught_up_ms: Option<f64>,
    files_after: u64,
    note: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.users >= 1 && args.groups >= 1 && args.load_clients >= 1,
        "--users, --groups and --load-clients must be at least 1"
    );
    anyhow::ensure!(args.clients_levels.iter().all(|&c| c >= 1), "every --clients-levels entry must be at least 1");
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let date = today_utc();
    let machine = machine();

    let tracker = run_tracker(&args)?;
    let etcd = if args.skip_etcd {
        None
    } else {
        let keys = args.etcd_keys.unwrap_or(args.files);
        Some(etcd::run(
            keys,
            args.etcd_value_bytes,
            args.load_clients,
            args.groups,
            Duration::from_secs(args.wait_s),
            Duration::from_secs(args.load_timeout_s),
        ))
    };

    let report = Report { args: &args, command, date, machine, tracker, etcd };
    println!("{}", markdown(&report));
    if let Some(path) = &args.json {
        let v = json_report(&report);
        std::fs::write(path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("JSON written to {}", path.display());
    }
    Ok(())
}

fn run_tracker(args: &Args) -> anyhow::Result<TrackerRun> {
    let wait = Duration::from_secs(args.wait_s);
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: 3,
        start: 3,
        heartbeat_ms: args.heartbeat_ms,
        election_timeout_ms: args.election_timeout_ms,
        extra: format!("snapshot_logs_threshold = {}", args.snapshot_logs_threshold),
    });
    let cluster_toml = std::fs::read_to_string(&cluster.config).unwrap_or_default();
    eprintln!("tracker cluster in {} (nodes {:?})", cluster.dir.path().display(), cluster.apis);
    poll("a tracker leader", wait, || cluster.leader())?;

    let rt = runtime();
    // Longer attempts than the peer's default: under a bulk load a write may take longer than
    // 700 ms, and a client that gives up on it only retries the same write elsewhere.
    let policy = RetryPolicy { attempt_timeout_ms: 6_000, budget_ms: 30_000, ..RetryPolicy::default() };
    let base = TrackerClient::new(cluster.apis.clone(), policy);
    let live = Arc::new(Live::default());
    let pids: Vec<(u64, u32)> = cluster.ids().into_iter().filter_map(|id| Some((id, cluster.pid(id)?))).collect();
    let apis = cluster.apis.clone();
    let progress = Progress::start(live.clone(), move || {
        let rss: Vec<String> =
            pids.iter().map(|(id, p)| format!("n{id} {}", mem(*p).map(|m| mib(m.rss)).unwrap_or("-".into()))).collect();
        let st = apis.iter().find_map(|a| http_get_json(a, "/v1/status"));
        let (term, leader, applied) = st
            .map(|s| {
                (
                    s["term"].as_u64().unwrap_or(0),
                    s["leader"].as_u64().unwrap_or(0),
                    s["applied_index"].as_u64().unwrap_or(0),
                )
            })
            .unwrap_or_default();
        format!("term {term}, leader {leader}, applied {applied}; RSS {}", rss.join(", "))
    });

    let deadline = Instant::now() + Duration::from_secs(args.load_timeout_s);
    let mut phases = Vec::new();
    let mut terms = Vec::new();

    // Users: register, then one login each; every later call of that user reuses the token.
    let users: Vec<String> = (0..args.users).map(|u| format!("u{u:03}")).collect();
    let t0 = term_and_leader(&cluster);
    let reg = rt.block_on(drive(&live, "register users", args.users, 2, deadline, {
        let (base, users) = (base.clone(), users.clone());
        move |_, u| {
            let (base, user) = (base.clone(), users[u as usize].clone());
            async move {
                let pw = format!("{user}-password");
                patient(|| base.register(&user, &pw)).await.map(|_| ())
            }
        }
    }));
    let tokens = Arc::new(Mutex::new(vec![String::new(); args.users as usize]));
    let login = rt.block_on(drive(&live, "log users in", args.users, 2, deadline, {
        let (base, users, tokens) = (base.clone(), users.clone(), tokens.clone());
        move |_, u| {
            let (base, user, tokens) = (base.clone(), users[u as usize].clone(), tokens.clone());
            async move {
                let pw = format!("{user}-password");
                let s = patient(|| base.login(&user, &pw)).await?;
                tokens.lock().unwrap()[u as usize] = s.token;
                Ok(())
            }
        }
    }));
    terms.push(("users".to_string(), t0, term_and_leader(&cluster)));
    let ok_users = reg.acked == args.users && login.acked == args.users;
    phases.push(reg);
    phases.push(login);
    anyhow::ensure!(
        ok_users,
        "registration or login failed: {:?}",
        phases.iter().map(|p| p.error_samples.clone()).collect::<Vec<_>>()
    );
    let tokens = tokens.lock().unwrap().clone();
    let token0 = tokens[0].clone();
    let clients: Arc<Vec<TrackerClient>> = Arc::new(tokens.into_iter().map(|t| base.with_token(Some(t))).collect());
    let n_users = args.users;

    // Groups: group j is created (and so owned) by user j mod users.
    let t0 = term_and_leader(&cluster);
    let groups = rt.block_on(drive(&live, "create groups", args.groups, args.load_clients, deadline, {
        let clients = clients.clone();
        move |_, j| {
            let c = clients[(j % n_users) as usize].clone();
            async move { c.create_group(&group_name(j)).await.map(|_| ()).map_err(failure) }
        }
    }));
    terms.push(("groups".to_string(), t0, term_and_leader(&cluster)));
    eprintln!("groups: {}", groups.summary());
    phases.push(groups);

    // Files: file i goes to group i mod groups, uploaded by that group's owner.
    let upload = |prefix: &'static str, clients: Arc<Vec<TrackerClient>>, n_groups: u64, size: u64| {
        move |_: usize, i: u64| {
            let j = i % n_groups;
            let u = j % n_users;
            let c = clients[u as usize].clone();
            let seed = (prefix.as_bytes()[0] as u64) << 56 | i;
            let file = FileMetaBody {
                name: format!("{prefix}{i:06}.bin"),
                size,
                piece_len: 524_288,
                piece_list_sha1: hex40(seed << 1),
                sha1: hex40(seed << 1 | 1),
            };
            let peer = format!("127.0.0.1:{}", 20_000 + u);
            let key = format!("{:064x}", u + 1);
            async move { c.upload(&group_name(j), file, &peer, &key).await.map(|_| ()).map_err(failure) }
        }
    };
    let t0 = term_and_leader(&cluster);
    let files = rt.block_on(drive(
        &live,
        "upload files",
        args.files,
        args.load_clients,
        deadline,
        upload("f", clients.clone(), args.groups, args.file_size_bytes),
    ));
    terms.push(("files".to_string(), t0, term_and_leader(&cluster)));
    eprintln!("files: {}", files.summary());
    let cut = files.cut_short || phases.iter().any(|p| p.cut_short);
    phases.push(files);
    if cut {
        eprintln!(
            "the bulk load did not finish within --load-timeout-s {}; reporting what was measured",
            args.load_timeout_s
        );
    }

    // After the load: every node applied everything; a snapshot exists at this size.
    let after_load_applied = wait_applied(&cluster, wait)?;
    let want = after_load_applied.saturating_sub(args.snapshot_logs_threshold);
    let snapshot_note = if after_load_applied >= args.snapshot_logs_threshold {
        poll("every node to hold a snapshot near the end of the load", wait, || {
            cluster
                .ids()
                .into_iter()
                .all(|id| node_figures(&cluster, id).snapshot_index.is_some_and(|s| s >= want))
                .then_some(())
        })
        .err()
        .map(|e| e.to_string())
    } else {
        Some(format!(
            "the log ({after_load_applied} entries) never reached the snapshot threshold ({})",
            args.snapshot_logs_threshold
        ))
    };
    let after_load = all_figures(&cluster);

    // Upload throughput on fresh uploads, per client count.
    let mut levels = Vec::new();
    for (k, &c) in args.clients_levels.iter().enumerate() {
        const PREFIXES: [&str; 8] = ["a", "b", "c", "d", "e", "h", "k", "m"];
        let prefix = PREFIXES[k % PREFIXES.len()];
        let deadline = Instant::now() + Duration::from_secs(args.load_timeout_s);
        let t0 = term_and_leader(&cluster);
        let p = rt.block_on(drive(
            &live,
            &format!("uploads, {c} clients"),
            args.uploads_per_level,
            c,
            deadline,
            upload(prefix, clients.clone(), args.groups, args.file_size_bytes),
        ));
        terms.push((format!("{c} clients"), t0, term_and_leader(&cluster)));
        eprintln!(
            "{c} clients: {:.0} uploads/s, p50 {:.1} ms, p99 {:.1} ms, {} failed",
            p.rate(),
            p.p(0.5),
            p.p(0.99),
            p.failed
        );
        levels.push(p);
    }
    drop(progress);
    wait_applied(&cluster, wait)?;
    let after_levels = all_figures(&cluster);

    // Cold restart: SIGKILL all three, start all three, time the first linearizable read.
    let at_kill_pre = all_figures(&cluster);
    eprintln!("cold restart: SIGKILL of all three nodes");
    for id in cluster.ids() {
        cluster.kill(id);
    }
    let at_kill: Vec<NodeFigures> = at_kill_pre
        .into_iter()
        .map(|mut f| {
            f.disk = disk_use(&cluster.data_dir(f.id));
            f
        })
        .collect();
    let restart_at = Instant::now();
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    let mut restart = rt.block_on(first_read(&cluster.apis, &token0, &group_name(0), restart_at, wait));
    if restart.first_read_ms.is_some() {
        match wait_applied(&cluster, wait) {
            Ok(_) => restart.caught_up_ms = Some(ms(restart_at.elapsed())),
            Err(e) => restart.note = Some(e.to_string()),
        }
    }
    let after_restart = all_figures(&cluster);
    restart.files_after = after_restart.iter().map(|f| f.files).max().unwrap_or(0);
    eprintln!(
        "cold restart: first read after {} ms, all caught up after {} ms",
        restart.first_read_ms.map(|v| format!("{v:.0}")).unwrap_or("-".into()),
        restart.caught_up_ms.map(|v| format!("{v:.0}")).unwrap_or("-".into())
    );

    let log_notes = cluster.ids().into_iter().map(|id| log_summary(id, &cluster.log(id))).collect();
    Ok(TrackerRun {
        cluster_toml,
        phases,
        terms,
        after_load,
        after_load_applied,
        snapshot_note,
        levels,
        after_levels,
        at_kill,
        restart,
        after_restart,
        log_notes,
    })
}

/// Warnings and errors in a node's log (it logs at info by default).
fn log_summary(id: u64, log: &str) -> String {
    let warn = log.lines().filter(|l| l.contains(" WARN ")).count();
    let err = log.lines().filter(|l| l.contains(" ERROR ")).count();
    let first = log
        .lines()
        .find(|l| l.contains(" ERROR "))
        .or_else(|| log.lines().find(|l| l.contains(" WARN ")))
        .map(|l| l.chars().take(300).collect::<String>());
    match first {
        Some(f) => format!(
            "node {id}: {warn} WARN, {err} ERROR lines; first {}: `{}`",
            if err > 0 { "ERROR" } else { "WARN" },
            f.replace('`', "'")
        ),
        None => format!("node {id}: no WARN or ERROR lines"),
    }
}

/// Each node's RSS, as `node 1 <label>12.3 MiB, node 2 ...`.
fn rss_list(nodes: &[NodeFigures], label: &str) -> String {
    nodes
        .iter()
        .map(|f| format!("node {} {label}{}", f.id, opt_mib(f.mem.map(|m| m.rss))))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A phase's cells in a load table: acknowledged/total, wall (with `wall_decimals`), rate
/// (bold where it is the table's figure), latency p50, p99, max, and what failed.
fn phase_cells(p: &Phase, wall_decimals: usize, bold_rate: bool) -> Vec<String> {
    let rate = if bold_rate { format!("**{:.0}**", p.rate()) } else { format!("{:.0}", p.rate()) };
    vec![
        format!("{}/{}", p.acked, p.total),
        format!("{:.*} s", wall_decimals, p.wall.as_secs_f64()),
        rate,
        format!("{:.1} ms", p.p(0.5)),
        format!("{:.1} ms", p.p(0.99)),
        format!("{:.0} ms", p.max()),
        p.errors_text(),
    ]
}

/// Polls every node at once with a linearizable read until one answers 200.
async fn first_read(apis: &[String], token: &str, group: &str, since: Instant, wait: Duration) -> Restart {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_secs(1))
        .build()
        .expect("http client");
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for (k, api) in apis.iter().enumerate() {
        let (http, done, token) = (http.clone(), done.clone(), token.to_string());
        // A member-only read of one group's files: small, and it passes the read index.
        let url = format!("http://{api}/v1/groups/{group}/files");
        tasks.spawn(async move {
            let mut up: Option<f64> = None;
            let mut ok: Option<f64> = None;
            while !done.load(Ordering::Relaxed) && since.elapsed() < wait {
                if let Ok(r) = http.get(&url).bearer_auth(&token).send().await {
                    up.get_or_insert(ms(since.elapsed()));
                    let status = r.status();
                    let _ = r.bytes().await;
                    if status.as_u16() == 200 {
                        ok = Some(ms(since.elapsed()));
                        done.store(true, Ordering::Relaxed);
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (k as u64 + 1, up, ok)
        });
    }
    let mut r = Restart::default();
    while let Some(Ok((id, up, ok))) = tasks.join_next().await {
        r.api_up_ms.push((id, up));
        if let Some(t) = ok {
            if r.first_read_ms.map_or(true, |x| t < x) {
                r.first_read_ms = Some(t);
                r.first_read_node = id;
            }
        }
    }
    r.api_up_ms.sort_by_key(|(id, _)| *id);
    if r.first_read_ms.is_none() {
        r.note = Some(format!("no node answered a linearizable read within {wait:?} of the restart"));
    }
    r
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "-".into())
}

fn opt_mib(v: Option<u64>) -> String {
    v.map(mib).unwrap_or_else(|| "-".into())
}

fn opt_u64(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// A data_dir's size on disk, `12.3 MiB (12.5 MiB<allocated>)`.
fn disk_cell(d: &Disk, allocated: &str) -> String {
    format!("{} ({}{allocated})", mib(d.apparent), mib(d.allocated))
}

/// What a report is written from: how the run was made (arguments, command line, date,
/// machine) and what it measured.
struct Report<'a> {
    args: &'a Args,
    command: String,
    date: String,
    machine: String,
    tracker: TrackerRun,
    etcd: Option<anyhow::Result<etcd::EtcdRun>>,
}

fn markdown(report: &Report) -> String {
    let Report { args, command, date, machine, tracker: t, etcd } = report;
    let etcd = etcd.as_ref();
    use std::fmt::Write;
    let mut o = String::new();
    let gib = args.file_size_bytes as f64 / (1u64 << 30) as f64;
    let _ = writeln!(
        o,
        "## Scale: {} files of {} in {} groups, {} users, 3 tracker nodes",
        args.files,
        if gib >= 1.0 { format!("{gib} GiB") } else { format!("{} bytes", args.file_size_bytes) },
        args.groups,
        args.users
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "`{command}` — {date}, {machine}, shared; every process on 127.0.0.1. Cluster: heartbeat {} ms, election timeout {}–{} ms, snapshot every {} entries; clients: `tracker-client` (keep-alive, one login per user, an Idempotency-Key on every write, attempt timeout 6 s).",
        args.heartbeat_ms, args.election_timeout_ms.0, args.election_timeout_ms.1, args.snapshot_logs_threshold);
    let _ = writeln!(o);
    let _ = writeln!(o, "### Load (closed loop: each client does one request at a time)");
    let _ = writeln!(o);
    let columns = ["phase", "clients", "acknowledged", "wall", "per second", "latency p50", "p99", "max", "failed"];
    o.push_str(&table(
        &columns,
        t.phases.iter().map(|p| [vec![p.label.clone(), p.workers.to_string()], phase_cells(p, 1, false)].concat()),
    ));
    let _ = writeln!(o);
    let elections: Vec<String> =
        t.terms.iter().map(|(n, a, b)| format!("{n}: term {} → {}, leader {} → {}", a.0, b.0, a.1, b.1)).collect();
    let _ = writeln!(o, "Terms and leaders across each phase: {}.", elections.join("; "));
    let _ = writeln!(o);
    let _ = writeln!(o, "### Per node after the load (every node applied index {})", t.after_load_applied);
    let _ = writeln!(o);
    node_table(&mut o, &t.after_load);
    if let Some(n) = &t.snapshot_note {
        let _ = writeln!(o, "\nSnapshot: {n}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "### Upload-metadata throughput (fresh uploads after the bulk load)");
    let _ = writeln!(o);
    let columns = ["clients", "uploads", "wall", "uploads/s", "latency p50", "p99", "max", "failed"];
    o.push_str(&table(
        &columns,
        t.levels.iter().map(|p| [vec![p.workers.to_string()], phase_cells(p, 2, true)].concat()),
    ));
    let _ = writeln!(o);
    let _ = writeln!(o, "After the levels: RSS {}.", rss_list(&t.after_levels, ""));
    let _ = writeln!(o);
    let _ = writeln!(o, "### Cold restart (SIGKILL all three nodes, start all three)");
    let _ = writeln!(o);
    let columns = [
        "node",
        "last log index",
        "snapshot index",
        "purged index",
        "log entries kept",
        "sled (metric)",
        "data_dir on disk",
    ];
    o.push_str(&table(
        &columns,
        t.at_kill.iter().map(|f| {
            vec![
                f.id.to_string(),
                f.last_log.to_string(),
                opt_u64(f.snapshot_index),
                opt_u64(f.purged),
                f.log_entries().to_string(),
                opt_mib(f.sled_bytes),
                disk_cell(&f.disk, " allocated"),
            ]
        }),
    ));
    let r = &t.restart;
    let _ = writeln!(o);
    let _ = writeln!(o, "From the restart of all three to the first 200 of a linearizable read (`GET /v1/groups/g00000/files` with a token issued before the kill): **{}** (node {}). API first answered (any status; - = not before the read succeeded): {}. Every node applied its whole log: {}. Files after the restart: {}.",
        opt_ms(r.first_read_ms), r.first_read_node,
        r.api_up_ms.iter().map(|(id, v)| format!("node {id} {}", opt_ms(*v))).collect::<Vec<_>>().join(", "),
        opt_ms(r.caught_up_ms), r.files_after);
    if let Some(n) = &r.note {
        let _ = writeln!(o, "\nRestart: {n}");
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "After the restart: {}.", rss_list(&t.after_restart, "RSS "));
    let _ = writeln!(o);
    let _ = writeln!(o, "Node logs: {}.", t.log_notes.join("; "));
    let _ = writeln!(o);

    let etcd_ok = etcd.and_then(|e| e.as_ref().ok());
    let _ = writeln!(o, "### Comparison anchor: etcd");
    let _ = writeln!(o);
    match etcd {
        None => {
            let _ = writeln!(o, "Skipped (`--skip-etcd`).");
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "Not run: {e:#}");
        }
        Some(Ok(e)) => {
            let _ = writeln!(o, "{} ({}), 3 members on 127.0.0.1, default settings (snapshot every {} entries, as etcd 3.4 defaults); {} keys like `/files/g00042/f001234.bin` with {}-byte values, written through the v3 JSON gateway (`POST /v3/kv/put`) by {} concurrent clients with keep-alive, spread over the members.",
                e.version, e.binary, e.snapshot_count, e.load.total, e.value_bytes, e.load.workers);
            let _ = writeln!(o);
            let p = &e.load;
            let _ = writeln!(
                o,
                "Load: {}/{} puts in {:.1} s, **{:.0} puts/s**, p50 {:.1} ms, p99 {:.1} ms, failed {}.",
                p.acked,
                p.total,
                p.wall.as_secs_f64(),
                p.rate(),
                p.p(0.5),
                p.p(0.99),
                p.errors_text()
            );
            let _ = writeln!(o);
            let columns = ["member", "RSS", "peak RSS", "data dir on disk", "keys (serializable count)"];
            o.push_str(&table(
                &columns,
                e.members.iter().map(|m| {
                    vec![
                        m.name.clone(),
                        opt_mib(m.mem.map(|x| x.rss)),
                        opt_mib(m.mem.map(|x| x.hwm)),
                        disk_cell(&m.disk, " allocated"),
                        opt_u64(m.keys),
                    ]
                }),
            ));
        }
    }
    let _ = writeln!(o);

    // Goals: reported, never asserted.
    let _ = writeln!(o, "### Goals (reported, not asserted)");
    let _ = writeln!(o);
    let max_rss = t.after_load.iter().filter_map(|f| f.mem.map(|m| m.rss)).max();
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    let rss_of = |figs: &[NodeFigures], leader: bool| -> Option<u64> {
        figs.iter().filter(|f| (f.role == "leader") == leader).filter_map(|f| f.mem.map(|m| m.rss)).max()
    };
    let mut goals = vec![vec![
        format!("each node's RSS ≤ 256 MiB at {} files", args.files),
        format!(
            "after the load: leader {}, followers up to {}; after the cold restart: up to {}",
            opt_mib(rss_of(&t.after_load, true)),
            opt_mib(rss_of(&t.after_load, false)),
            opt_mib(t.after_restart.iter().filter_map(|f| f.mem.map(|m| m.rss)).max())
        ),
        max_rss.map(|r| yes(r <= 256 << 20)).unwrap_or("-").to_string(),
    ]];
    goals.push(match etcd_ok {
        Some(e) => {
            let etcd_min = e.members.iter().filter_map(|m| m.mem.map(|x| x.rss)).min();
            let met = match (max_rss, etcd_min) {
                (Some(a), Some(b)) => yes(a < b),
                _ => "-",
            };
            vec![
                format!("… and below etcd's at {} keys", e.load.total),
                format!("tracker largest {} vs etcd smallest {}", opt_mib(max_rss), opt_mib(etcd_min)),
                met.to_string(),
            ]
        }
        None => vec!["… and below etcd's".to_string(), "etcd not run".to_string(), "-".to_string()],
    });
    goals.push(vec![
        "cold restart to the first read < 5 s".to_string(),
        opt_ms(r.first_read_ms),
        r.first_read_ms.map(|v| yes(v < 5000.0)).unwrap_or("-").to_string(),
    ]);
    let at32 = t.levels.iter().find(|p| p.workers == 32);
    goals.push(vec![
        "≥ 1000 uploads/s at 32 clients".to_string(),
        at32.map(|p| format!("{:.0} uploads/s", p.rate())).unwrap_or("not measured".into()),
        at32.map(|p| yes(p.rate() >= 1000.0)).unwrap_or("-").to_string(),
    ]);
    o.push_str(&table(&["goal", "measured", "met"], goals));
    o
}

fn node_table(o: &mut String, figs: &[NodeFigures]) {
    let columns = [
        "node",
        "role",
        "RSS",
        "peak RSS (VmHWM)",
        "data_dir on disk (allocated)",
        "sled (metric)",
        "snapshot file",
        "snapshot index",
        "last snapshot build",
        "log entries kept",
        "files",
    ];
    o.push_str(&table(
        &columns,
        figs.iter().map(|f| {
            vec![
                f.id.to_string(),
                f.role.clone(),
                opt_mib(f.mem.map(|m| m.rss)),
                opt_mib(f.mem.map(|m| m.hwm)),
                disk_cell(&f.disk, ""),
                opt_mib(f.sled_bytes),
                opt_mib(f.snapshot_file_bytes),
                opt_u64(f.snapshot_index),
                match (f.snapshot_build_ms, f.snapshot_built_bytes) {
                    (Some(t), Some(b)) => format!("{t:.0} ms, {}", mib(b)),
                    (Some(t), None) => format!("{t:.0} ms"),
                    _ => "- (none built by this node)".into(),
                },
                f.log_entries().to_string(),
                f.files.to_string(),
            ]
        }),
    ));
}

fn json_report(report: &Report) -> Value {
    let Report { args, command, date, machine, tracker: t, etcd } = report;
    let figs = |v: &[NodeFigures]| v.iter().map(|f| f.json()).collect::<Vec<_>>();
    json!({
        "command": command, "date": date, "machine": machine,
        "args": format!("{args:?}"),
        "cluster_toml": t.cluster_toml,
        "phases": t.phases.iter().map(|p| p.json()).collect::<Vec<_>>(),
        "terms": t.terms.iter().map(|(n, a, b)| json!({"phase": n, "term_before": a.0, "leader_before": a.1, "term_after": b.0, "leader_after": b.1})).collect::<Vec<_>>(),
        "after_load_applied_index": t.after_load_applied,
        "after_load": figs(&t.after_load),
        "snapshot_note": t.snapshot_note,
        "levels": t.levels.iter().map(|p| p.json()).collect::<Vec<_>>(),
        "after_levels": figs(&t.after_levels),
        "at_kill": figs(&t.at_kill),
        "restart": {
            "first_read_ms": t.restart.first_read_ms, "first_read_node": t.restart.first_read_node,
            "api_up_ms": t.restart.api_up_ms, "caught_up_ms": t.restart.caught_up_ms,
            "files_after": t.restart.files_after, "note": t.restart.note,
        },
        "after_restart": figs(&t.after_restart),
        "node_logs": t.log_notes,
        "etcd": match etcd {
            None => json!(null),
            Some(Err(e)) => json!({"error": format!("{e:#}")}),
            Some(Ok(e)) => e.json(),
        },
    })
}
