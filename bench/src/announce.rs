//! `bench announce`: peer liveness at scale. N peer daemons, each a user with a session and an
//! announced address and key, say "alive" (`POST /v1/peer/alive`) every `--interval-s` seconds,
//! as daemons do, to a 3-node cluster on this machine; reports the leader's CPU (cores used) and
//! RSS, each node's CPU, and the latency of the calls.
//!
//! The N users are not registered through the API (100k argon2 hashes would take the better
//! part of an hour on 2 cores and measure the password pool, not liveness): the bench builds
//! the state they would have (register, login, announce, applied with the state machine's own
//! `apply`) and starts every node from it as from a restored snapshot (`seed_state`). The calls
//! then go over HTTPS, the cluster CA pinned, as a peer's do.
//!
//! The load is open-loop: each call has a scheduled time (N / interval per second in all), and
//! its latency is counted from that time, so a slow answer also delays and counts against the
//! calls behind it (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft_store::{Command, Request, TrackerState};
use sha2::{Digest, Sha256};
use testkit::{Cluster, ClusterOptions, ClusterView};

use crate::sys::{mib, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Simulated peer daemons (one user, session, address and key each)
    #[arg(long, default_value_t = 100_000)]
    peers: u64,
    /// Seconds between two "alive" calls of one daemon (the rate is peers / interval)
    #[arg(long, default_value_t = 30)]
    interval_s: u64,
    /// Seconds of load measured
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Concurrent connections to the leader
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 20)]
    heartbeat_ms: u64,
    /// Election timeout range, MIN,MAX
    #[arg(long, default_value = "60,120", value_parser = crate::failover::parse_range)]
    election_timeout_ms: (u64, u64),
}

/// The session token of simulated peer `i`: 64 lowercase hex, as the API hands them out.
fn token(i: u64) -> String {
    hex(&Sha256::digest(format!("bench-announce-token-{i}").as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn peer_addr(i: u64) -> String {
    format!("127.0.0.1:{}", 20_000 + i % 40_000)
}

fn peer_key(i: u64) -> String {
    hex(&Sha256::digest(format!("bench-announce-key-{i}").as_bytes()))
}

/// The state after each of `peers` users registered, logged in (a day-long session) and
/// announced its daemon; and the number of commands applied (the log index it stands for).
fn state_of(peers: u64, now_ms: u64) -> anyhow::Result<(TrackerState, u64)> {
    let mut state = TrackerState::default();
    let mut index = 0u64;
    let mut apply = |command: Command| -> anyhow::Result<()> {
        index += 1;
        match state.apply(&Request { request_id: None, now_ms, command }) {
            raft_store::Response::Refused(r) => anyhow::bail!("seeding the state: {r:?}"),
            _ => Ok(()),
        }
    };
    for i in 0..peers {
        let user = format!("p{i}");
        let token_hash = hex(&Sha256::digest(token(i).as_bytes()));
        // A placeholder in the PHC shape: nobody logs in with a password here.
        let password_hash = format!("$argon2id$v=19$m=19456,t=2,p=1$YmVuY2g$bench{i}");
        apply(Command::Register { user: user.clone(), password_hash })?;
        apply(Command::Login { user, token_hash: token_hash.clone(), expires_at_ms: now_ms + 86_400_000 })?;
        apply(Command::Announce { token_hash, peer_addr: peer_addr(i), peer_key: peer_key(i) })?;
    }
    Ok((state, index))
}

/// CPU time (user + system) of `pid`, from /proc.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis(ticks * 1000 / hz))
}

#[derive(Default)]
struct Tally {
    latencies_ms: Mutex<Vec<f64>>,
    listed: AtomicU64,
    not_listed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: 3,
        start: 0,
        heartbeat_ms: args.heartbeat_ms,
        election_timeout_ms: args.election_timeout_ms,
        extra: String::new(),
    });
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let built = Instant::now();
    let (state, index) = state_of(args.peers, now_ms)?;
    let cfg = proto::cluster::ClusterConfig::load(&cluster.config)?;
    let voters: BTreeMap<u64, raft_store::TrackerNode> = cfg
        .nodes
        .iter()
        .map(|n| (n.id, raft_store::TrackerNode { api: n.api.to_string(), raft: n.raft.to_string() }))
        .collect();
    for n in &cfg.nodes {
        raft_store::storage::seed_state(&n.data_dir, &state, index, voters.clone())?;
    }
    drop(state);
    eprintln!("state of {} peers built and seeded in {:.1} s", args.peers, built.elapsed().as_secs_f64());
    for id in cluster.ids() {
        cluster.start_node(id);
    }
    let leader = cluster.wait_leader(&[]);
    let leader_api = cluster.api(leader).to_string();
    let term0 = cluster.status(leader).and_then(|s| s["term"].as_u64()).unwrap_or(0);

    let tls = tracker_client::TrackerTls::from_cluster(&cfg, false).map_err(anyhow::Error::msg)?;
    let http =
        tls.reqwest_builder().pool_max_idle_per_host(args.connections).timeout(Duration::from_secs(5)).build()?;
    let rate = args.peers as f64 / args.interval_s as f64;
    let total = (rate * args.duration_s as f64) as u64;
    eprintln!("{total} alive calls at {rate:.0}/s over {} connections to node {leader}...", args.connections);

    let pids: Vec<(u64, u32)> = cluster.ids().into_iter().filter_map(|id| cluster.pid(id).map(|p| (id, p))).collect();
    let cpu0: Vec<Option<Duration>> = pids.iter().map(|(_, p)| cpu_time(*p)).collect();
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let start = Instant::now();
    rt.block_on(async {
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..args.connections {
            let (http, tally, next, url) =
                (http.clone(), tally.clone(), next.clone(), format!("https://{leader_api}/v1/peer/alive"));
            workers.spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= total {
                        break;
                    }
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    let i = k % args.peers;
                    let body = serde_json::json!({ "peer_addr": peer_addr(i), "peer_key": peer_key(i) });
                    let r = http.post(&url).bearer_auth(token(i)).json(&body).send().await;
                    let outcome = match r {
                        Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
                            Ok(v) if v["listed"] == true => Ok(true),
                            Ok(_) => Ok(false),
                            Err(e) => Err(format!("body: {e}")),
                        },
                        Ok(r) => Err(format!("status {}", r.status().as_u16())),
                        Err(e) if e.is_timeout() => Err("timeout".into()),
                        Err(e) => Err(format!("{e}")),
                    };
                    let latency_ms = due.elapsed().as_secs_f64() * 1000.0;
                    match outcome {
                        Ok(true) => {
                            tally.listed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {
                            tally.not_listed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => *tally.errors.lock().unwrap().entry(e).or_default() += 1,
                    }
                    tally.latencies_ms.lock().unwrap().push(latency_ms);
                }
            });
        }
        while workers.join_next().await.is_some() {}
    });
    let wall = start.elapsed();
    let cpu1: Vec<Option<Duration>> = pids.iter().map(|(_, p)| cpu_time(*p)).collect();
    let term1 = cluster.status(leader).and_then(|s| s["term"].as_u64()).unwrap_or(0);
    let leader_after = cluster.leader();

    let mut lat = tally.latencies_ms.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let errors: u64 = tally.errors.lock().unwrap().values().sum();
    println!(
        "## Peer liveness: {} daemons saying alive every {} s ({rate:.0} calls/s), 3 tracker nodes",
        args.peers, args.interval_s
    );
    println!();
    println!(
        "`target/release/bench announce --peers {} --interval-s {} --duration-s {}` — {}, {}; every process on 127.0.0.1, \
         calls over HTTPS (cluster CA pinned), {} connections, open loop (latency from each call's scheduled time). \
         Cluster: heartbeat {} ms, election timeout {}–{} ms.",
        args.peers,
        args.interval_s,
        args.duration_s,
        crate::sys::today_utc(),
        crate::sys::machine(),
        args.connections,
        args.heartbeat_ms,
        args.election_timeout_ms.0,
        args.election_timeout_ms.1
    );
    println!();
    println!("| calls | wall | achieved/s | listed | not listed | errors | latency p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} s | {:.0} | {} | {} | {} | {:.1} ms | {:.1} ms | {:.0} ms |",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        tally.listed.load(Ordering::Relaxed),
        tally.not_listed.load(Ordering::Relaxed),
        errors,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    if errors > 0 {
        println!();
        println!("Errors: {:?}", tally.errors.lock().unwrap());
    }
    println!();
    println!("| node | role | CPU during the load (cores) | RSS after |");
    println!("|---|---|---|---|");
    for (k, (id, pid)) in pids.iter().enumerate() {
        let cores = match (cpu0[k], cpu1[k]) {
            (Some(a), Some(b)) => format!("{:.2}", (b - a).as_secs_f64() / wall.as_secs_f64()),
            _ => "?".into(),
        };
        let rss = crate::sys::mem(*pid).map(|m| mib(m.rss)).unwrap_or_else(|| "?".into());
        let role = if *id == leader { "leader" } else { "follower" };
        println!("| {id} | {role} | {cores} | {rss} |");
    }
    println!();
    println!(
        "Term {term0} → {term1}, leader {leader} → {}: {}.",
        leader_after.map(|l| l.to_string()).unwrap_or_else(|| "none".into()),
        if term1 == term0 { "no election during the load" } else { "an election happened during the load" }
    );
    println!("Goals (issue 13): leader CPU below one core, p99 below 50 ms.");
    Ok(())
}
