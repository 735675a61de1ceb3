//! Benchmarks of the tracker cluster, run against real `tracker-node` processes on 127.0.0.1.
//! Each prints a markdown report on stdout (progress on stderr). Build first:
//! `cargo build --release --workspace`, then `target/release/bench failover --kills 10`
//! or `target/release/bench scale`, or `target/release/bench announce`. `bench floor` is the
//! machine's lower bound for the download benchmark (`scripts/bench-download.sh`).

mod announce;
mod etcd;
mod failover;
mod floor;
mod load;
mod scale;
mod sys;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Benchmarks of the tracker cluster, and the machine's floor for downloads (markdown reports)"
)]
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
    /// The machine's floor for the download benchmark: each step of moving a byte between two
    /// peers (read, AES-GCM, loopback TCP, SHA-1, write) timed alone on one core, and the time
    /// under which no client can finish each shape (1 -> 1, 1 -> 3, 4 -> 1)
    Floor(floor::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Failover(args) => failover::run(args),
        Cmd::Scale(args) => scale::run(args),
        Cmd::Announce(args) => announce::run(args),
        Cmd::Floor(args) => floor::run(args),
    }
}
