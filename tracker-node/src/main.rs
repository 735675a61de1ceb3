//! `tracker-node`: one Raft node of the tracker cluster, a local cluster launcher, and the
//! operator's status and membership commands. Argument parsing only; the work is in the
//! modules.

mod api;
mod commands;
mod metrics;
mod node;
mod raft_net;
mod sched;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use proto::cluster::ClusterConfig;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "tracker-node",
    version,
    about = "A tracker node of the P2P file sharing cluster (Raft on openraft + sled)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct ConfigArg {
    /// The cluster file (see cluster.toml); relative data_dirs are relative to its folder
    #[arg(long, value_name = "FILE", default_value = "cluster.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node in the foreground until SIGINT/SIGTERM
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// This node's id, as listed in the cluster file
        #[arg(long, value_name = "N")]
        id: u64,
    },
    /// Run every listed node on this machine as child processes; Ctrl-C stops them all
    Up {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show one row per listed node: reachable, role, term, leader, log and applied index
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Create the cluster CA and every listed node's certificate and key (mutual TLS between
    /// nodes), for clusters on several machines; see docs/OPERATIONS.md
    Certs {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to write them (default: the folder of `[cluster.tls] ca`, else tls/ beside the file)
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Change the voters (through the leader)
    Members {
        #[command(subcommand)]
        action: MembersCmd,
    },
}

#[derive(Subcommand)]
enum MembersCmd {
    /// Make listed node N a voter: it joins as a learner, catches up, then votes
    Add {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "N")]
        id: u64,
    },
    /// Remove node N from the voters
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_name = "N")]
        id: u64,
    },
}

fn load(c: &ConfigArg) -> Result<Arc<ClusterConfig>, ExitCode> {
    ClusterConfig::load(&c.config).map(Arc::new).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    sched::tune_malloc();
    let cli = Cli::parse();
    init_logging();
    // The API's threads yield the CPU to Raft's (node.rs runs Raft on a runtime of its own at
    // normal priority): under a flood of calls, heartbeats still go out on time.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("api")
        .on_thread_start(|| sched::lower_thread_priority(sched::API_THREAD_NICE))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> ExitCode {
    let result: anyhow::Result<i32> = match cli.command {
        Cmd::Run { config, id } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(e) = cfg.require_node(id) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            if let Err(e) = refuse_unsafe_build_unless_told() {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            // Before anything listens: the files named in the cluster file are the operator's
            // to fix (exit 2); the ones made here on a first start are created now.
            // Off the runtime's threads: it may wait (bounded) for another node creating the CA.
            let tls_cfg = cfg.clone();
            let node_tls = match tokio::task::spawn_blocking(move || tls::for_node(&tls_cfg, id)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(if matches!(e, tls::SetupError::Config(_)) { 2 } else { 1 });
                }
                Err(e) => {
                    eprintln!("error: setting up TLS failed: {e}");
                    return ExitCode::from(1);
                }
            };
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            node::run(cfg, id, node_tls, shutdown).await.map(|_| 0)
        }
        Cmd::Up { config } => match load(&config) {
            Ok(cfg) => commands::up::run(&cfg, &config.config).await,
            Err(code) => return code,
        },
        Cmd::Certs { config, out } => match load(&config) {
            Ok(cfg) => commands::certs::run(&cfg, out.as_deref()),
            Err(code) => return code,
        },
        Cmd::Status { config, json } => match load(&config) {
            Ok(cfg) => commands::status::run(&cfg, json).await,
            Err(code) => return code,
        },
        Cmd::Members { action } => {
            let (config, verb, id) = match action {
                MembersCmd::Add { config, id } => (config, "add", id),
                MembersCmd::Remove { config, id } => (config, "remove", id),
            };
            match load(&config) {
                Ok(cfg) => {
                    if let Err(e) = cfg.require_node(id) {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                    commands::members::run(&cfg, verb, id).await
                }
                Err(code) => return code,
            }
        }
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The environment variable a test harness sets to run the deliberately broken build.
#[cfg_attr(not(feature = "unsafe-ack-before-commit"), allow(dead_code))]
const UNSAFE_BUILD_ENV: &str = "TRACKER_UNSAFE_TEST_BUILD";

/// A build with `unsafe-ack-before-commit` acknowledges writes before they commit and loses
/// them on a crash. It exists only for the chaos checker's demonstration; `--all-features`
/// turns it on too, so such a build refuses to run unless the harness says it is a test build.
fn refuse_unsafe_build_unless_told() -> Result<(), String> {
    #[cfg(feature = "unsafe-ack-before-commit")]
    {
        if std::env::var(UNSAFE_BUILD_ENV).as_deref() != Ok("loses-acknowledged-writes") {
            return Err(format!(
                "this tracker-node was built with the feature unsafe-ack-before-commit: it acknowledges \
                 writes before they commit and LOSES THEM on a crash. It is only for the chaos checker's \
                 demonstration; rebuild without --features unsafe-ack-before-commit (or --all-features), \
                 or set {UNSAFE_BUILD_ENV}=loses-acknowledged-writes in a test harness"
            ));
        }
        eprintln!("WARNING: UNSAFE TEST BUILD (unsafe-ack-before-commit): acknowledged writes can be lost");
        tracing::warn!("UNSAFE TEST BUILD: writes are acknowledged before they commit");
    }
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
}
