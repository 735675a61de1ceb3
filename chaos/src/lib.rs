//! A Jepsen-style chaos harness for the tracker cluster: real `tracker-node` processes on
//! loopback behind per-link proxies, concurrent clients recording a history, a nemesis
//! injecting faults on a seeded schedule, a poller watching for two leaders in one term, and
//! a checker run on the history and the final state. See docs/RELIABILITY.md.

pub mod checker;
pub mod faults;
pub mod history;
pub mod links;
pub mod proxy;
pub mod relay;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use testkit::{node_get_json, Cluster, ClusterOptions, ClusterView};
use tracker_client::{RetryPolicy, TrackerClient};

use checker::{FinalState, Verdict};
use faults::{Fault, FaultKind, Schedule};
use history::{Entry, Outcome};
use workload::{user_name, Shared};

/// Set by `request_stop` (the CLI's SIGINT/SIGTERM handler): the run ends early, heals its
/// faults and stops every process it started, instead of leaving nodes behind.
static STOP: AtomicBool = AtomicBool::new(false);

pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub seed: u64,
    pub duration_s: u64,
    pub nodes: u64,
    pub clients: usize,
    /// Mean pause between faults is 3/4 of this; each fault lasts `fault_duration_ms`.
    pub fault_interval_ms: u64,
    pub fault_duration_ms: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// Writes without faults for this long before the first fault (counted in `duration_s`):
    /// the report says how many elections happened in it (the goal is none).
    pub steady_s: u64,
    /// Run every node on a host of its own (network namespaces), the links delayed by relays.
    pub netns: Option<NetnsConfig>,
    /// `[cluster] snapshot_logs_threshold`: 500 by default, far below the shipped 5000, so
    /// that runs exercise snapshots (and replicas catching up from them) often.
    pub snapshot_logs_threshold: u64,
}

impl Config {
    /// The runs the test suite makes: 3 nodes, 8 clients, a fault every ~1.1 s lasting 0.8 s,
    /// the shipped Raft timings (heartbeat 20 ms, election timeout 60–120 ms), snapshots every
    /// 500 entries, on loopback.
    pub fn suite(seed: u64, duration_s: u64) -> Config {
        Config {
            seed,
            duration_s,
            nodes: 3,
            clients: 8,
            fault_interval_ms: 1_500,
            fault_duration_ms: 800,
            heartbeat_ms: 20,
            election_timeout_ms: (60, 120),
            steady_s: 0,
            netns: None,
            snapshot_logs_threshold: 500,
        }
    }
}

/// Netns mode: node i on host i-1 (10.77.0.i), the clients on host `nodes`; between every pair
/// of nodes a relay with this one-way delay and jitter (see `relay.rs`); partitions of one node
/// pull its cable, bridges cut relays. Each node's host loses `loss_pct` % of the packets it
/// receives (testkit::netns::Net::set_loss). The same flags for `chaos run` and `bench failover`.
#[derive(Clone, Debug, Serialize, clap::Args)]
pub struct NetnsConfig {
    /// Netns mode: one-way delay of every node-to-node link
    #[arg(long, default_value_t = 1.0)]
    pub delay_ms: f64,
    /// Netns mode: jitter of that delay (uniform, ±)
    #[arg(long, default_value_t = 1.0)]
    pub jitter_ms: f64,
    /// Netns mode: bytes in flight per direction of a relayed connection
    #[arg(long, default_value_t = 4 << 20)]
    pub window_bytes: usize,
    /// Netns mode: percent of the packets into each node's host dropped at random (iptables)
    #[arg(long, default_value_t = 0.0)]
    pub loss_pct: f64,
}

impl NetnsConfig {
    /// A host for each of `nodes` nodes and one more for the clients, with this loss on the
    /// nodes' hosts, and the relays' link spec.
    pub fn hosts(&self, nodes: usize) -> anyhow::Result<(testkit::netns::Net, relay::LinkSpec)> {
        anyhow::ensure!(self.delay_ms >= 0.0 && self.jitter_ms >= 0.0, "--delay-ms and --jitter-ms must be 0 or more");
        testkit::netns::available().map_err(|why| anyhow::anyhow!("--netns: {why}"))?;
        let net = testkit::netns::Net::new(nodes + 1).map_err(|e| anyhow::anyhow!("--netns: {e}"))?;
        if self.loss_pct > 0.0 {
            for host in 0..nodes {
                net.set_loss(host, self.loss_pct).map_err(|e| anyhow::anyhow!("--loss-pct: {e}"))?;
            }
        }
        Ok((net, links::spec(self.delay_ms, self.jitter_ms, self.window_bytes)))
    }
}

/// The steady phase: terms seen at its start and end (the highest any node reports).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Steady {
    pub seconds: u64,
    pub term_before: u64,
    pub term_after: u64,
    pub leader_before: Option<u64>,
    pub leader_after: Option<u64>,
    pub acked_writes: u64,
}

/// Longest wait for the cluster to converge once faults stop.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client's budget for one operation: short, so that a fault makes an `unknown` soon and the
/// client moves on (its next operation is a new one with a new request id).
const OP_BUDGET_MS: u64 = 5_000;

#[derive(Debug, Serialize)]
pub struct Report {
    pub config: Config,
    pub ops: BTreeMap<String, [u64; 3]>,
    pub faults: BTreeMap<FaultKind, u64>,
    /// Per fault kind: gaps (ms) from the fault to the next acknowledged write invoked after it.
    pub gaps_ms: BTreeMap<FaultKind, Vec<u64>>,
    pub terms_with_two_leaders: Vec<(u64, Vec<u64>)>,
    pub leader_observations: u64,
    pub converged: Result<String, String>,
    /// Client tasks that panicked (or were cancelled), with the panic message. A panicked
    /// client stops recording operations, so its run proves less than it claims: it fails.
    pub client_panics: Vec<String>,
    /// Kill-alls after which the restarted nodes had no leader within the recovery timeout
    /// (`faults::Fault::recovered`). A cluster that does not come back in time fails the run,
    /// even if it converges later.
    pub unrecovered_kill_alls: u64,
    pub steady: Option<Steady>,
    pub verdict: Verdict,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.verdict.ok()
            && self.terms_with_two_leaders.is_empty()
            && self.converged.is_ok()
            && self.client_panics.is_empty()
            && self.unrecovered_kill_alls == 0
    }
}

pub fn run(cfg: Config) -> anyhow::Result<Report> {
    let Some(ns) = cfg.netns.clone() else { return run_on(cfg, None) };
    let (net, spec) = ns.hosts(cfg.nodes as usize)?;
    // The clients, the poller and the checker run on the last host.
    net.run_in(cfg.nodes as usize, || run_on(cfg, Some((&net, spec))))
}

fn run_on(cfg: Config, netns: Option<(&testkit::netns::Net, relay::LinkSpec)>) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (cluster, links) = start_cluster(&cfg, netns, &rt)?;
    let apis = cluster.apis.clone();
    let policy = RetryPolicy { budget_ms: OP_BUDGET_MS, ..Default::default() };
    // Over HTTPS when the nodes are on hosts of their own (netns mode): they serve only that there.
    let base = cluster.client_with(policy);
    let clients: Vec<TrackerClient> = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..cfg.clients {
            out.push(account(&base, &user_name(i)).await?);
        }
        anyhow::Ok(out)
    })?;
    let poller = LeaderPoller::start(apis, cluster.config.clone());
    let cluster = Arc::new(Mutex::new(cluster));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(cfg.duration_s);
    let shared = Arc::new(Shared {
        started,
        history: Mutex::new(Vec::new()),
        registry: Mutex::new(Default::default()),
        acked: Mutex::new(Default::default()),
    });
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, c)| rt.spawn(workload::client_loop(i, c, shared.clone(), cfg.seed, deadline)))
        .collect();
    let steady = (cfg.steady_s > 0).then(|| steady_phase(&cluster, &shared, cfg.steady_s.min(cfg.duration_s)));
    let schedule = Schedule { seed: cfg.seed, interval_ms: cfg.fault_interval_ms, duration_ms: cfg.fault_duration_ms };
    let faults = faults::run(&cluster, links.as_ref(), &schedule, started, deadline);
    let client_panics = rt.block_on(join_clients(tasks));
    let (claims, leader_observations) = poller.stop();

    // Faults are healed; every node must converge to one state.
    let converged = {
        let c = cluster.lock().unwrap();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.wait_converged(CONVERGE_TIMEOUT)))
            .map_err(|_| format!("nodes did not converge within {} s", CONVERGE_TIMEOUT.as_secs()))
    };
    let fin = rt.block_on(final_state(&clients));
    let history = shared.history.lock().unwrap().clone();
    let verdict = checker::check(&history, &fin);
    dump_history(&history, &faults);
    Ok(Report {
        ops: count_ops(&history),
        faults: faults.iter().fold(BTreeMap::new(), |mut m, f| {
            *m.entry(f.kind).or_insert(0) += 1;
            m
        }),
        gaps_ms: gaps(&history, &faults),
        terms_with_two_leaders: claims
            .into_iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(t, ids)| (t, ids.into_iter().collect()))
            .collect(),
        leader_observations,
        converged,
        client_panics,
        unrecovered_kill_alls: faults.iter().filter(|f| !f.recovered).count() as u64,
        steady,
        verdict,
        config: cfg,
    })
}

/// Starts the nodes behind their links (relays between hosts in netns mode, proxies on
/// loopback otherwise) and waits for a leader.
fn start_cluster<'n>(
    cfg: &Config,
    netns: Option<(&'n testkit::netns::Net, relay::LinkSpec)>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<(Cluster, Box<dyn links::Links + 'n>)> {
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: cfg.nodes,
        start: 0,
        heartbeat_ms: cfg.heartbeat_ms,
        election_timeout_ms: cfg.election_timeout_ms,
        extra: format!("snapshot_logs_threshold = {}", cfg.snapshot_logs_threshold),
    });
    let links: Box<dyn links::Links + 'n> = match netns {
        Some((net, spec)) => {
            testkit::netns::place_cluster(net, &mut cluster);
            Box::new(links::Relays::start(net, &mut cluster, spec)?)
        }
        None => {
            let rafts: HashMap<u64, String> =
                cluster.ids().into_iter().map(|id| (id, cluster.rafts[(id - 1) as usize].clone())).collect();
            let proxies = rt.block_on(proxy::Proxies::start(&rafts))?;
            for id in cluster.ids() {
                cluster.set_node_env(id, "TRACKER_RAFT_ROUTES", &proxies.routes_for(id));
            }
            Box::new(proxies)
        }
    };
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    cluster.wait_leader(&[]);
    Ok((cluster, links))
}

/// Polls every node's own claim to lead, so that two leaders in one term are seen.
struct LeaderPoller {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(BTreeMap<u64, BTreeSet<u64>>, u64)>,
}

impl LeaderPoller {
    fn start(apis: Vec<String>, config: std::path::PathBuf) -> LeaderPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut claims: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
            let mut observations = 0u64;
            while !flag.load(Ordering::Relaxed) {
                for api in &apis {
                    let Some(st) = node_get_json(&config, api, "/v1/status") else { continue };
                    if st["role"] != "leader" {
                        continue;
                    }
                    if let (Some(term), Some(id)) = (st["term"].as_u64(), st["id"].as_u64()) {
                        claims.entry(term).or_default().insert(id);
                        observations += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (claims, observations)
        });
        LeaderPoller { stop, thread }
    }

    /// The leaders claimed per term, and how many claims were seen.
    fn stop(self) -> (BTreeMap<u64, BTreeSet<u64>>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("poller thread")
    }
}

/// The whole history and the faults with their times, for reading a failed run by hand
/// (`CHAOS_HISTORY_OUT`).
fn dump_history(history: &[Entry], faults: &[Fault]) {
    let Some(path) = std::env::var_os("CHAOS_HISTORY_OUT") else { return };
    let dump = serde_json::json!({"history": history, "faults": faults});
    if let Err(e) = std::fs::write(&path, serde_json::to_vec(&dump).unwrap_or_default()) {
        eprintln!("cannot write the history to {}: {e}", std::path::Path::new(&path).display());
    }
}

/// The highest term any node reports, and the leader if the nodes agree.
fn max_term(cluster: &Cluster) -> (u64, Option<u64>) {
    let term = cluster.ids().into_iter().filter_map(|id| cluster.status(id)?["term"].as_u64()).max().unwrap_or(0);
    (term, cluster.leader())
}

/// Lets the clients write for `seconds` without faults and records the terms around it.
fn steady_phase(cluster: &Arc<Mutex<Cluster>>, shared: &Shared, seconds: u64) -> Steady {
    let (term_before, leader_before) = max_term(&cluster.lock().unwrap());
    let t0 = shared.started.elapsed().as_millis() as u64;
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end && !stop_requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (term_after, leader_after) = max_term(&cluster.lock().unwrap());
    let t1 = shared.started.elapsed().as_millis() as u64;
    let acked_writes = shared
        .history
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.op.is_write() && e.outcome == Outcome::Ok && e.invoke_ms >= t0 && e.complete_ms <= t1)
        .count() as u64;
    Steady { seconds, term_before, term_after, leader_before, leader_after, acked_writes }
}

/// Waits for every client task. A task that panicked (or was cancelled) is reported, never
/// dropped: its operations stopped being recorded, so the run must not pass.
pub async fn join_clients(tasks: Vec<tokio::task::JoinHandle<()>>) -> Vec<String> {
    let mut panics = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if let Err(e) = t.await {
            let why = if e.is_panic() {
                let payload = e.into_panic();
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into())
            } else {
                e.to_string()
            };
            panics.push(format!("client {i}: {why}"));
        }
    }
    panics
}

/// Longest wait for a freshly registered user's login to succeed.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Registers `user` and logs in. Login is retried until it succeeds: a register acknowledged
/// before it applied (only in the deliberately broken build) is not yet there to log in to.
async fn account(base: &TrackerClient, user: &str) -> anyhow::Result<TrackerClient> {
    let pw = format!("{user}-password");
    base.register(user, &pw).await.map_err(|e| anyhow::anyhow!("register {user}: {e}"))?;
    let start = Instant::now();
    loop {
        match base.login(user, &pw).await {
            Ok(s) => return Ok(base.with_token(Some(s.token))),
            Err(e) if start.elapsed() >= LOGIN_TIMEOUT => {
                anyhow::bail!("login {user}: {e} (for {} s)", LOGIN_TIMEOUT.as_secs())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// What every client sees at the end: groups (and its memberships) and each group's files.
async fn final_state(clients: &[TrackerClient]) -> FinalState {
    let mut fin = FinalState::default();
    for (i, c) in clients.iter().enumerate() {
        let rows = retry(|| c.list_groups()).await;
        for g in rows {
            fin.groups.insert(g.group.clone());
            if g.member {
                fin.members.insert((g.group.clone(), user_name(i)));
                if g.owner == user_name(i) {
                    for f in retry(|| c.list_files(&g.group)).await {
                        fin.files.insert((g.group.clone(), f.name));
                    }
                }
            }
        }
    }
    fin
}

/// The final reads happen on a healed cluster; a failure there is retried a few times.
async fn retry<T, F, Fut>(f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, tracker_client::ClientError>>,
{
    let mut last = String::new();
    for _ in 0..5 {
        match f().await {
            Ok(v) => return v,
            Err(e) => last = e.to_string(),
        }
    }
    panic!("final read failed on a healed cluster: {last}");
}

fn count_ops(history: &[Entry]) -> BTreeMap<String, [u64; 3]> {
    let mut m: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for e in history {
        let c = m.entry(e.op.kind().to_string()).or_default();
        match e.outcome {
            Outcome::Ok => c[0] += 1,
            Outcome::Fail(_) => c[1] += 1,
            Outcome::Unknown(_) => c[2] += 1,
        }
    }
    m
}

/// For each fault: time from its injection to the first acknowledged write invoked after it.
fn gaps(history: &[Entry], faults: &[Fault]) -> BTreeMap<FaultKind, Vec<u64>> {
    let mut acked: Vec<(u64, u64)> = history
        .iter()
        .filter(|e| e.op.is_write() && e.outcome == Outcome::Ok)
        .map(|e| (e.invoke_ms, e.complete_ms))
        .collect();
    acked.sort();
    let mut out: BTreeMap<FaultKind, Vec<u64>> = BTreeMap::new();
    for f in faults {
        let first = acked.iter().filter(|(inv, _)| *inv >= f.at_ms).map(|(_, comp)| *comp).min();
        if let Some(c) = first {
            out.entry(f.kind).or_default().push(c - f.at_ms);
        }
    }
    out
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        self.write_tables(&mut s);
        self.write_verdict_lines(&mut s);
        self.write_run_lines(&mut s);
        let _ = writeln!(s, "\n**Verdict: {}**", if self.ok() { "PASS" } else { "FAIL" });
        s
    }

    /// The operations and faults tables.
    fn write_tables(&self, s: &mut String) {
        let c = &self.config;
        let _ = writeln!(
            s,
            "## Chaos run: seed {}, {} s, {} nodes, {} clients\n",
            c.seed, c.duration_s, c.nodes, c.clients
        );
        let _ = writeln!(s, "| operation | ok | failed | unknown |\n|---|---|---|---|");
        let mut total = [0u64; 3];
        for (k, v) in &self.ops {
            let _ = writeln!(s, "| {k} | {} | {} | {} |", v[0], v[1], v[2]);
            for i in 0..3 {
                total[i] += v[i];
            }
        }
        let _ = writeln!(s, "| **all** | {} | {} | {} |\n", total[0], total[1], total[2]);
        let _ = writeln!(
            s,
            "| fault | injected | gap to next acknowledged write: median | p99 | max |\n|---|---|---|---|---|"
        );
        for (k, n) in &self.faults {
            let mut g = self.gaps_ms.get(k).cloned().unwrap_or_default();
            g.sort();
            let _ = writeln!(
                s,
                "| {k:?} | {n} | {} ms | {} ms | {} ms |",
                pct(&g, 0.5),
                pct(&g, 0.99),
                g.last().copied().unwrap_or(0)
            );
        }
    }

    /// What the checker and the poller found.
    fn write_verdict_lines(&self, s: &mut String) {
        let v = &self.verdict;
        let _ = writeln!(s, "\n- acknowledged writes lost: **{}**", v.lost_writes.len());
        let _ = writeln!(s, "- refused writes that took effect: {}", v.refused_but_applied.len());
        let _ = writeln!(s, "- writes applied twice: {}", v.applied_twice.len());
        if !v.written_twice.is_empty() {
            let _ = writeln!(s, "- flags the workload wrote twice (a harness fault): {}", v.written_twice.len());
        }
        let _ =
            writeln!(s, "- linearizability: {} keys checked, {} violations", v.keys_checked, v.not_linearizable.len());
        let _ = writeln!(
            s,
            "- write windows not searched (over {} operations; their order rules were checked): {}",
            checker::MAX_SEARCH_OPS,
            v.search_skipped
        );
        let _ = writeln!(
            s,
            "- terms with two leaders: {} ({} leader observations)",
            self.terms_with_two_leaders.len(),
            self.leader_observations
        );
        let _ = writeln!(
            s,
            "- convergence: {}",
            match &self.converged {
                Ok(d) => format!("every node at state digest {}", &d[..12.min(d.len())]),
                Err(e) => e.clone(),
            }
        );
    }

    /// Recovery, the steady phase, the netns links, panics and the first offending operations.
    fn write_run_lines(&self, s: &mut String) {
        let (c, v) = (&self.config, &self.verdict);
        let _ = writeln!(s, "- kill-alls with no leader after the restart in time: {}", self.unrecovered_kill_alls);
        if let Some(st) = &self.steady {
            let _ = writeln!(
                s,
                "- steady phase ({} s, no faults, {} acknowledged writes): term {} → {}, leader {:?} → {:?}: **{} election(s)**",
                st.seconds,
                st.acked_writes,
                st.term_before,
                st.term_after,
                st.leader_before,
                st.leader_after,
                st.term_after.saturating_sub(st.term_before)
            );
        }
        if let Some(n) = &c.netns {
            let _ = writeln!(
                s,
                "- netns mode: every node on its own host, Raft links through relays of {} ms ± {} ms one way (window {} bytes), {}% of the packets into each node's host lost",
                n.delay_ms, n.jitter_ms, n.window_bytes, n.loss_pct
            );
        }
        let _ = writeln!(s, "- client tasks panicked: {}", self.client_panics.len());
        for p in &self.client_panics {
            let _ = writeln!(s, "  - panicked: {p}");
        }
        for (what, list) in [
            ("lost", &v.lost_writes),
            ("refused but applied", &v.refused_but_applied),
            ("applied twice", &v.applied_twice),
            ("not linearizable", &v.not_linearizable),
            ("written twice by the workload", &v.written_twice),
        ] {
            for line in list.iter().take(10) {
                let _ = writeln!(s, "  - {what}: {line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(client_panics: Vec<String>) -> Report {
        Report {
            config: Config { clients: 2, ..Config::suite(1, 1) },
            ops: BTreeMap::new(),
            faults: BTreeMap::new(),
            gaps_ms: BTreeMap::new(),
            terms_with_two_leaders: Vec::new(),
            leader_observations: 0,
            converged: Ok("0123456789abcdef".into()),
            client_panics,
            unrecovered_kill_alls: 0,
            steady: None,
            verdict: Verdict::default(),
        }
    }

    #[test]
    fn a_kill_all_without_a_leader_in_time_fails_the_run() {
        let mut failed = report(Vec::new());
        failed.unrecovered_kill_alls = 1;
        assert!(!failed.ok(), "a cluster that did not come back after a kill-all must fail the run");
        let md = failed.markdown();
        assert!(md.contains("kill-alls with no leader after the restart in time: 1"), "{md}");
        assert!(md.contains("**Verdict: FAIL**"), "{md}");
        let passed = report(Vec::new()).markdown();
        assert!(passed.contains("in time: 0") && passed.contains("**Verdict: PASS**"), "{passed}");
    }

    #[test]
    fn a_panicking_client_fails_the_run() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let panics = rt.block_on(async {
            let ok = tokio::spawn(async {});
            let with_str = tokio::spawn(async { panic!("boom") });
            let with_string = tokio::spawn(async { panic!("boom at op {}", 7) });
            join_clients(vec![ok, with_str, with_string]).await
        });
        assert_eq!(panics, vec!["client 1: boom".to_string(), "client 2: boom at op 7".to_string()]);
        let failed = report(panics);
        assert!(!failed.ok(), "a run with a panicked client must fail");
        let md = failed.markdown();
        assert!(md.contains("client tasks panicked: 2") && md.contains("**Verdict: FAIL**"), "{md}");
        assert!(report(Vec::new()).ok(), "the same run without the panic passes");
    }
}
