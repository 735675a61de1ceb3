//! `bench failover`: a writer does one write after another through the project's tracker
//! client (the code the peer uses); the bench SIGKILLs the leader, measures the time from the
//! kill to the first acknowledged write *invoked after* the kill, restarts the killed node,
//! waits until every node has the same state digest, and repeats. Before the kills, a steady
//! phase measures write latency and checks that no election happens without a fault.
//!
//! With `--netns` (root only), every node runs on a host of its own (`testkit::netns`) and
//! the writer on another, and every node-to-node Raft link goes through a `chaos relay`
//! (`--delay-ms` ± `--jitter-ms` one way, both ways): the stand-in for `tc netem` delay.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::{logged_in, runtime, wait_until, Cluster, ClusterOptions, ClusterView, SteadyWrites};

use crate::sys::{ms, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Leader kills to measure
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Tracker nodes in the cluster
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// Election timeout range, MIN,MAX
    #[arg(long, default_value = "150,300", value_parser = parse_range)]
    election_timeout_ms: (u64, u64),
    /// Length of the steady-write phase before the kills
    #[arg(long, default_value_t = 10)]
    steady_s: u64,
    /// Nodes and writer on hosts of their own (network namespaces), Raft links through relays
    #[arg(long)]
    netns: bool,
    #[command(flatten)]
    links: chaos::NetnsConfig,
}

pub(crate) fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once(',').ok_or("expected MIN,MAX")?;
    let (a, b) = (a.trim().parse().map_err(|_| "bad MIN")?, b.trim().parse().map_err(|_| "bad MAX")?);
    if a == 0 || a >= b {
        return Err("need 0 < MIN < MAX".into());
    }
    Ok((a, b))
}

/// One acknowledged write: when it was invoked and when its answer came.
#[derive(Clone, Copy)]
struct Ack {
    invoked: Instant,
    acked: Instant,
}

/// The longest the bench waits for anything (an election, a convergence, the next write).
const WAIT: Duration = Duration::from_secs(30);

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster = Cluster::start_with(ClusterOptions {
        nodes: args.nodes,
        start: if args.netns { 0 } else { args.nodes },
        heartbeat_ms: args.heartbeat_ms,
        election_timeout_ms: args.election_timeout_ms,
        extra: String::new(),
    });
    if !args.netns {
        return measure(args, cluster);
    }
    let (net, spec) = args.links.hosts(args.nodes as usize)?;
    testkit::netns::place_cluster(&net, &mut cluster);
    let _relays = chaos::links::Relays::start(&net, &mut cluster, spec)?;
    net.run_in(args.nodes as usize, || {
        for id in cluster.ids() {
            cluster.start_node(id);
        }
        measure(args, cluster)
    })
}

fn measure(args: Args, cluster: Cluster) -> anyhow::Result<()> {
    cluster.wait_leader(&[]);
    let cluster = Arc::new(Mutex::new(cluster));
    let rt = runtime();
    let client = rt.block_on(logged_in(&cluster.lock().unwrap().client(), "bench"));

    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (acks, failures, client) = (acks.clone(), failures.clone(), client.clone());
        SteadyWrites::start(move |rt, i| {
            let invoked = Instant::now();
            match rt.block_on(client.create_group(&format!("g{i}"))) {
                Ok(_) => acks.lock().unwrap().push(Ack { invoked, acked: Instant::now() }),
                Err(e) => failures.lock().unwrap().push(format!("g{i}: {e}")),
            }
        })
    };

    // Steady phase: latency, throughput, and no term change without a fault.
    eprintln!("steady writes for {} s...", args.steady_s);
    let term_of_leader = |c: &Cluster| {
        let l = c.wait_leader(&[]);
        (l, c.status(l).and_then(|s| s["term"].as_u64()).unwrap_or(0))
    };
    let (leader0, term0) = term_of_leader(&cluster.lock().unwrap());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.steady_s));
    let (leader1, term1) = term_of_leader(&cluster.lock().unwrap());
    let steady: Vec<Ack> = acks.lock().unwrap().iter().filter(|a| a.invoked >= t0).copied().collect();
    let mut lat_ms: Vec<f64> = steady.iter().map(|a| ms(a.acked - a.invoked)).collect();
    lat_ms.sort_by(f64::total_cmp);

    // The kills.
    let mut gaps_ms = Vec::new();
    for k in 1..=args.kills {
        let mut c = cluster.lock().unwrap();
        let leader = c.wait_leader(&[]);
        let killed_at = Instant::now();
        c.kill(leader);
        let mut gap = None;
        wait_until("a write invoked after the kill to be acknowledged", WAIT, || {
            gap = acks.lock().unwrap().iter().find(|a| a.invoked >= killed_at).map(|a| a.acked - killed_at);
            gap.is_some()
        });
        let gap = ms(gap.unwrap());
        let new_leader = c.wait_leader(&[leader]);
        eprintln!("kill {k}: node {leader} killed, node {new_leader} leads, next write acknowledged after {gap:.0} ms");
        gaps_ms.push(gap);
        c.start_node(leader);
        c.wait_caught_up(leader, WAIT);
    }
    writer.stop();
    let digest = cluster.lock().unwrap().wait_converged(WAIT);
    let failures = failures.lock().unwrap().clone();
    let total_writes = acks.lock().unwrap().len();

    let (lo, hi) = args.election_timeout_ms;
    println!(
        "## Failover window: {} nodes, heartbeat {} ms, election timeout {lo}–{hi} ms{}",
        args.nodes,
        args.heartbeat_ms,
        if args.netns {
            format!(
                "; netns, every node on its own host, Raft links through relays of {} ± {} ms one way, {}% packet loss",
                args.links.delay_ms, args.links.jitter_ms, args.links.loss_pct
            )
        } else {
            String::new()
        }
    );
    println!();
    println!("Time from SIGKILL of the leader to the next acknowledged write invoked after the kill,");
    println!("measured by a client doing one write after another through `tracker-client`.");
    println!();
    println!("| kills | median | max | min | each (ms) |");
    println!("|---|---|---|---|---|");
    let mut sorted = gaps_ms.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {} |",
        sorted.len(),
        percentile(&sorted, 0.5),
        sorted.last().copied().unwrap_or(0.0),
        sorted.first().copied().unwrap_or(0.0),
        gaps_ms.iter().map(|g| format!("{g:.0}")).collect::<Vec<_>>().join(", ")
    );
    println!();
    println!("Steady phase ({} s, no faults): {} writes, {:.0} writes/s, latency median {:.1} ms, p99 {:.1} ms, max {:.1} ms; leader {} → {}, term {} → {} ({}).",
        args.steady_s,
        steady.len(),
        steady.len() as f64 / args.steady_s as f64,
        percentile(&lat_ms, 0.5),
        percentile(&lat_ms, 0.99),
        lat_ms.last().copied().unwrap_or(0.0),
        leader0, leader1, term0, term1,
        if term0 == term1 { "no election without a fault" } else { "AN ELECTION HAPPENED WITHOUT A FAULT" });
    println!();
    println!(
        "Writes acknowledged in the whole run: {total_writes}; failed: {}{}; every node ends at state digest {}.",
        failures.len(),
        if failures.is_empty() { String::new() } else { format!(" ({})", failures.join("; ")) },
        &digest[..12]
    );
    if term0 != term1 || !failures.is_empty() {
        anyhow::bail!("the run saw a spurious election or failed writes");
    }
    Ok(())
}
