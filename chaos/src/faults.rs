//! The nemesis: faults injected on a seeded random schedule, one at a time, each healed before
//! the next, so at most a minority is ever down or cut off.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use testkit::Cluster;

use crate::proxy::Proxies;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    KillLeader,
    KillAny,
    PauseLeader,
    PartitionLeader,
    PartitionMinority,
    Bridge,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] =
        [FaultKind::KillLeader, FaultKind::KillAny, FaultKind::PauseLeader, FaultKind::PartitionLeader, FaultKind::PartitionMinority, FaultKind::Bridge];

    /// Relative weights of the schedule: leader kills most, then partitions.
    fn weight(self) -> u32 {
        match self {
            FaultKind::KillLeader => 35,
            FaultKind::KillAny => 10,
            FaultKind::PauseLeader => 15,
            FaultKind::PartitionLeader => 15,
            FaultKind::PartitionMinority => 15,
            FaultKind::Bridge => 10,
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
    pub healed_ms: u64,
    /// The nodes hit (killed, paused, or cut off from the rest; for a bridge, the bridge).
    pub nodes: Vec<u64>,
}

pub struct Schedule {
    pub seed: u64,
    pub interval_ms: u64,
    pub duration_ms: u64,
}

/// Injects faults until `deadline`; returns what it did. Every fault is healed on return.
pub fn run(cluster: &Arc<Mutex<Cluster>>, proxies: &Proxies, schedule: &Schedule, started: Instant, deadline: Instant) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(schedule.seed);
    let ids = cluster.lock().unwrap().ids();
    let minority = (ids.len() - 1) / 2;
    let now_ms = || started.elapsed().as_millis() as u64;
    let mut faults = Vec::new();
    loop {
        let pause = Duration::from_millis(rng.gen_range(schedule.interval_ms / 2..=schedule.interval_ms));
        if crate::stop_requested() || Instant::now() + pause + Duration::from_millis(schedule.duration_ms) >= deadline {
            break;
        }
        std::thread::sleep(pause);
        let kind = *FaultKind::ALL.choose_weighted(&mut rng, |k| k.weight()).expect("weights are positive");
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
        };
        match kind {
            FaultKind::KillLeader | FaultKind::KillAny => cluster.lock().unwrap().kill(nodes[0]),
            FaultKind::PauseLeader => cluster.lock().unwrap().signal(nodes[0], libc::SIGSTOP),
            FaultKind::PartitionLeader | FaultKind::PartitionMinority => {
                for &a in &nodes {
                    for &b in ids.iter().filter(|b| !nodes.contains(b)) {
                        proxies.set_cut(a, b, true);
                    }
                }
            }
            FaultKind::Bridge => {
                // The rest split in two halves that cannot talk; the bridge hears both.
                let rest = &others[1..];
                let (left, right) = rest.split_at(rest.len() / 2);
                for &a in left {
                    for &b in right {
                        proxies.set_cut(a, b, true);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(schedule.duration_ms));
        match kind {
            FaultKind::KillLeader | FaultKind::KillAny => cluster.lock().unwrap().start_node(nodes[0]),
            FaultKind::PauseLeader => cluster.lock().unwrap().signal(nodes[0], libc::SIGCONT),
            _ => proxies.heal_all(),
        }
        faults.push(Fault { kind, at_ms, healed_ms: now_ms(), nodes });
    }
    proxies.heal_all();
    faults
}
