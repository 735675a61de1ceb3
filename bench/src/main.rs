//! Benchmarks of the tracker cluster, run against real `tracker-node` processes on 127.0.0.1.
//! Each prints a markdown report on stdout (progress on stderr). Build first:
//! `cargo build --release --workspace`, then `target/release/bench failover --kills 10`
//! or `target/release/bench scale`, or `target/release/bench announce`.

mod announce;
mod etcd;
mod failover;
mod load;
mod scale;
mod sys;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bench", about = "Benchmarks of the tracker cluster (markdown reports)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The failover window: SIGKILL the leader again and again under a steady write load, and
    /// measure the time from each kill to the next acknowledged write
    Failover(failover::Args),
    /// The tracker at scale: bulk-load files' metadata, then memory, disk, snapshots, upload
    /// throughput per client count, cold restart to the first read; etcd as the anchor
    Scale(scale::Args),
    /// Peer liveness at scale: N daemons (100k) saying alive every 30 s to a 3-node cluster;
    /// the leader's CPU and the calls' latency
    Announce(announce::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Failover(args) => failover::run(args),
        Cmd::Scale(args) => scale::run(args),
        Cmd::Announce(args) => announce::run(args),
    }
}
