//! The nemesis: faults injected on a seeded random schedule, one at a time, each healed before
//! the next. Every fault but one leaves a majority up and connected; the exception, the
//! kill-all, SIGKILLs every node and restarts them, so only what is on disk survives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use testkit::{Cluster, ClusterView};

use crate::links::Links;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    KillLeader,
    KillAny,
    PauseLeader,
    PartitionLeader,
    PartitionMinority,
    Bridge,
    /// SIGKILL every node at once, then restart them all: a whole-cluster crash.
    KillAll,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::KillLeader,
        FaultKind::KillAny,
        FaultKind::PauseLeader,
        FaultKind::PartitionLeader,
        FaultKind::PartitionMinority,
        FaultKind::Bridge,
        FaultKind::KillAll,
    ];

    /// Relative weights of the schedule: leader kills most, then partitions. A kill-all costs
    /// the whole cluster's restart (its duration plus the restart: a second or more of no
    /// service), so it is rare.
    fn weight(self) -> u32 {
        match self {
            FaultKind::KillLeader => 35,
            FaultKind::KillAny => 10,
            FaultKind::PauseLeader => 15,
            FaultKind::PartitionLeader => 15,
            FaultKind::PartitionMinority => 15,
            FaultKind::Bridge => 10,
            FaultKind::KillAll => 2,
        }
    }

    pub fn is_partition(self) -> bool {
        matches!(self, FaultKind::PartitionLeader | FaultKind::PartitionMinority | FaultKind::Bridge)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    /// Milliseconds since the start of the run.
    pub at_ms: u64,
    /// When it was healed (for a kill-all: once the restarted nodes had a leader again).
    pub healed_ms: u64,
    /// The nodes hit (killed, paused, or cut off from the rest; for a bridge, the bridge; for a
    /// kill-all, every node).
    pub nodes: Vec<u64>,
    /// False for a kill-all after which the restarted nodes had no leader within
    /// `KILL_ALL_RECOVERY_TIMEOUT`: the run fails (see `Report::unrecovered_kill_alls`).
    pub recovered: bool,
}

pub struct Schedule {
    pub seed: u64,
    pub interval_ms: u64,
    pub duration_ms: u64,
}

/// A kill-all at least every this many faults: a run of 40 s or more (at the default interval)
/// has one whatever its seed draws, and about one fault in 13 is one.
pub const KILL_ALL_AT_LEAST_EVERY: usize = 15;

/// Longest wait for a leader after a kill-all's restart, before the schedule goes on anyway. A
/// restart that had no leader by then is recorded in the fault (`recovered: false`) and fails
/// the run, even if the cluster recovers later.
const KILL_ALL_RECOVERY_TIMEOUT: Duration = Duration::from_secs(20);

/// The next fault's kind: a weighted draw, except that the `KILL_ALL_AT_LEAST_EVERY`th fault
/// since the last kill-all is one. `since_kill_all` counts the faults injected since then.
pub fn next_kind(rng: &mut impl Rng, since_kill_all: usize) -> FaultKind {
    if since_kill_all + 1 >= KILL_ALL_AT_LEAST_EVERY {
        return FaultKind::KillAll;
    }
    *FaultKind::ALL.choose_weighted(rng, |k| k.weight()).expect("weights are positive")
}

/// Injects faults until `deadline`; returns what it did. Every fault is healed on return.
pub fn run(
    cluster: &Arc<Mutex<Cluster>>,
    links: &dyn Links,
    schedule: &Schedule,
    started: Instant,
    deadline: Instant,
) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(schedule.seed);
    let ids = cluster.lock().unwrap().ids();
    let minority = (ids.len() - 1) / 2;
    let now_ms = || started.elapsed().as_millis() as u64;
    let mut faults: Vec<Fault> = Vec::new();
    loop {
        let pause = Duration::from_millis(rng.gen_range(schedule.interval_ms / 2..=schedule.interval_ms));
        if crate::stop_requested() || Instant::now() + pause + Duration::from_millis(schedule.duration_ms) >= deadline {
            break;
        }
        std::thread::sleep(pause);
        let since_kill_all = faults.iter().rev().take_while(|f| f.kind != FaultKind::KillAll).count();
        let kind = next_kind(&mut rng, since_kill_all);
        let leader = cluster.lock().unwrap().leader();
        let mut others: Vec<u64> = ids.clone();
        others.shuffle(&mut rng);
        let at_ms = now_ms();
        let nodes: Vec<u64> = match kind {
            FaultKind::KillLeader | FaultKind::PauseLeader | FaultKind::PartitionLeader => match leader {
                Some(l) => vec![l],
                None => continue, // mid-election: try again at the next tick
            },
            FaultKind::KillAny => vec![others[0]],
            FaultKind::PartitionMinority => others[..minority].to_vec(),
            FaultKind::Bridge => vec![others[0]],
            FaultKind::KillAll => ids.clone(),
        };
        inject(cluster, links, kind, &nodes, &ids, &others);
        std::thread::sleep(Duration::from_millis(schedule.duration_ms));
        let recovered = heal(cluster, links, kind, &nodes);
        faults.push(Fault { kind, at_ms, healed_ms: now_ms(), nodes, recovered });
    }
    links.heal_all();
    faults
}

/// Starts fault `kind` on `nodes` (`others`: every node, shuffled).
fn inject(
    cluster: &Arc<Mutex<Cluster>>,
    links: &dyn Links,
    kind: FaultKind,
    nodes: &[u64],
    ids: &[u64],
    others: &[u64],
) {
    match kind {
        FaultKind::KillLeader | FaultKind::KillAny => cluster.lock().unwrap().kill(nodes[0]),
        FaultKind::KillAll => {
            // Every SIGKILL sent before any is reaped, so no node outlives another by more
            // than the time it takes to send a signal.
            let mut c = cluster.lock().unwrap();
            for &id in nodes {
                c.signal(id, libc::SIGKILL);
            }
            for &id in nodes {
                c.kill(id);
            }
        }
        FaultKind::PauseLeader => cluster.lock().unwrap().signal(nodes[0], libc::SIGSTOP),
        FaultKind::PartitionLeader | FaultKind::PartitionMinority if nodes.len() == 1 => {
            links.isolate(nodes[0], ids);
        }
        FaultKind::PartitionLeader | FaultKind::PartitionMinority => {
            for &a in nodes {
                for &b in ids.iter().filter(|b| !nodes.contains(b)) {
                    links.set_cut(a, b, true);
                }
            }
        }
        FaultKind::Bridge => {
            // The rest split in two halves that cannot talk; the bridge hears both.
            let rest = &others[1..];
            let (left, right) = rest.split_at(rest.len() / 2);
            for &a in left {
                for &b in right {
                    links.set_cut(a, b, true);
                }
            }
        }
    }
}

/// Ends fault `kind` on `nodes`; false if a kill-all's restart found no leader in time.
fn heal(cluster: &Arc<Mutex<Cluster>>, links: &dyn Links, kind: FaultKind, nodes: &[u64]) -> bool {
    let mut recovered = true;
    match kind {
        FaultKind::KillLeader | FaultKind::KillAny => cluster.lock().unwrap().start_node(nodes[0]),
        FaultKind::KillAll => {
            let mut c = cluster.lock().unwrap();
            for &id in nodes {
                c.start_node(id);
            }
            drop(c);
            // The next fault waits for the cluster to serve again, so that its gap measures
            // itself and not the tail of this restart.
            // A run stopped from outside (Ctrl-C) is not a failed recovery.
            recovered = wait_for_leader(cluster, KILL_ALL_RECOVERY_TIMEOUT) || crate::stop_requested();
        }
        FaultKind::PauseLeader => cluster.lock().unwrap().signal(nodes[0], libc::SIGCONT),
        _ => links.heal_all(),
    }
    recovered
}

/// Polls until the running nodes agree on a leader, or `timeout`; false on timeout.
fn wait_for_leader(cluster: &Arc<Mutex<Cluster>>, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout && !crate::stop_requested() {
        if cluster.lock().unwrap().leader().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_has_a_kill_all_now_and_then_but_not_often() {
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (mut since, mut kill_alls, mut longest) = (0usize, 0usize, 0usize);
            for _ in 0..1_000 {
                if next_kind(&mut rng, since) == FaultKind::KillAll {
                    kill_alls += 1;
                    since = 0;
                } else {
                    since += 1;
                    longest = longest.max(since);
                }
            }
            assert!(longest < KILL_ALL_AT_LEAST_EVERY, "seed {seed}: {longest} faults in a row without a kill-all");
            // Weighted 2 in 102, plus the forced ones: about one fault in 13.
            assert!((50..=110).contains(&kill_alls), "seed {seed}: {kill_alls} kill-alls in 1000 faults");
        }
    }
}
