//! `chaos run`: a seeded chaos run against real tracker nodes; a markdown report (or JSON),
//! exit code 1 on any violation or panicked client. Build first: `cargo build --release --workspace`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chaos", about = "Jepsen-style chaos runs against the tracker cluster")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a cluster, run clients and faults, check the history, print a report
    Run {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 60)]
        duration_s: u64,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Longest pause between two faults (the pause is drawn from [half, all] of it)
        #[arg(long, default_value_t = 1_500)]
        fault_interval_ms: u64,
        /// How long each fault lasts before it is healed
        #[arg(long, default_value_t = 800)]
        fault_duration_ms: u64,
        #[arg(long, default_value_t = 20)]
        heartbeat_ms: u64,
        /// MIN,MAX
        #[arg(long, default_value = "60,120")]
        election_timeout_ms: String,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
}

extern "C" fn on_signal(_: libc::c_int) {
    chaos::request_stop();
}

fn main() -> anyhow::Result<()> {
    // SIGINT/SIGTERM end the run early but cleanly: faults healed, every node stopped.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let Cmd::Run {
        seed,
        duration_s,
        nodes,
        clients,
        fault_interval_ms,
        fault_duration_ms,
        heartbeat_ms,
        election_timeout_ms,
        json,
    } = Cli::parse().command;
    let (lo, hi) = election_timeout_ms
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("--election-timeout-ms must be MIN,MAX"))?;
    anyhow::ensure!(nodes >= 3 && nodes % 2 == 1, "--nodes must be an odd number, at least 3");
    anyhow::ensure!(clients >= 1 && clients <= 64, "--clients must be 1 to 64");
    let report = chaos::run(chaos::Config {
        seed,
        duration_s,
        nodes,
        clients,
        fault_interval_ms,
        fault_duration_ms,
        heartbeat_ms,
        election_timeout_ms: (lo, hi),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.markdown());
    }
    std::process::exit(if report.ok() { 0 } else { 1 });
}
