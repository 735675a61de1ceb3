//! `chaos run`: a seeded chaos run against real tracker nodes; a markdown report (or JSON),
//! exit code 1 on any violation or panicked client. Build first: `cargo build --release --workspace`.
//! `chaos relay`: the delaying TCP relay that netns mode starts in every node's namespace.

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
    Run(RunArgs),
    /// Relay TCP with a one-way delay and jitter both ways (stands in for tc netem; see relay.rs)
    Relay {
        /// [LABEL=]LISTEN=TARGET, e.g. 2=127.0.0.1:9102=10.77.0.2:7102 (repeat for more)
        #[arg(long = "route", required = true)]
        routes: Vec<chaos::relay::Route>,
        #[arg(long, default_value_t = 1.0)]
        delay_ms: f64,
        #[arg(long, default_value_t = 0.0)]
        jitter_ms: f64,
        /// Bytes in flight per direction of a connection (the link's bandwidth-delay window)
        #[arg(long, default_value_t = 4 << 20)]
        window_bytes: usize,
        /// Read `cut LABEL` / `heal [LABEL]` lines from stdin (answering `ok ...`); exit when it ends
        #[arg(long)]
        control_stdin: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
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
    /// Seconds of writes without faults at the start (within --duration-s); the report
    /// counts the elections in them
    #[arg(long, default_value_t = 0)]
    steady_s: u64,
    /// Every node on a host of its own (network namespaces, root only), the clients on
    /// another, Raft links through delaying relays
    #[arg(long)]
    netns: bool,
    #[command(flatten)]
    links: chaos::NetnsConfig,
    /// Log entries between snapshots (the shipped cluster.toml has 5000; runs snapshot often)
    #[arg(long, default_value_t = 500)]
    snapshot_logs_threshold: u64,
}

extern "C" fn on_signal(_: libc::c_int) {
    chaos::request_stop();
}

impl RunArgs {
    /// The run these flags ask for, or what is wrong with them.
    fn config(self) -> anyhow::Result<chaos::Config> {
        let election_timeout_ms = self
            .election_timeout_ms
            .split_once(',')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("--election-timeout-ms must be MIN,MAX"))?;
        anyhow::ensure!(self.nodes >= 3 && self.nodes % 2 == 1, "--nodes must be an odd number, at least 3");
        anyhow::ensure!(self.clients >= 1 && self.clients <= 64, "--clients must be 1 to 64");
        Ok(chaos::Config {
            seed: self.seed,
            duration_s: self.duration_s,
            nodes: self.nodes,
            clients: self.clients,
            fault_interval_ms: self.fault_interval_ms,
            fault_duration_ms: self.fault_duration_ms,
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_ms,
            steady_s: self.steady_s,
            snapshot_logs_threshold: self.snapshot_logs_threshold,
            netns: self.netns.then_some(self.links),
        })
    }
}

fn main() -> anyhow::Result<()> {
    // SIGINT/SIGTERM end the run early but cleanly: faults healed, every node stopped.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let args = match Cli::parse().command {
        Cmd::Relay { routes, delay_ms, jitter_ms, window_bytes, control_stdin } => {
            anyhow::ensure!(delay_ms >= 0.0 && jitter_ms >= 0.0, "--delay-ms and --jitter-ms must be 0 or more");
            return chaos::relay::run(routes, chaos::links::spec(delay_ms, jitter_ms, window_bytes), control_stdin);
        }
        Cmd::Run(args) => args,
    };
    let json = args.json;
    let report = chaos::run(args.config()?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.markdown());
    }
    std::process::exit(if report.ok() { 0 } else { 1 });
}
