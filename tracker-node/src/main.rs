//! `tracker-node`: one Raft node of the tracker cluster, a local cluster launcher, and the
//! operator's status and membership commands. Argument parsing, the process's setup (logging,
//! malloc, the runtime, signals) and the operator commands (`commands/`); a node itself is the
//! library's (`tracker_node::run`).

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use proto::cluster::ClusterConfig;
use tokio_util::sync::CancellationToken;
use tracker_node::{logging, sched, Listeners, NodeConfig};

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
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
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
    /// Run every listed node on this machine as child processes, their output prefixed
    /// `node N | `; a node that dies is started again (at most 5 times a minute); Ctrl-C stops
    /// them all
    Up {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show one row per listed node: reachable, role (`removed`: no longer a member, still
    /// running), term, leader, log and applied index
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Check every listed node's /health and /readyz, one line each; exit 0 when a leader is
    /// known and a quorum of the voters is healthy, 1 otherwise
    Health {
        #[command(flatten)]
        config: ConfigArg,
        /// Print one JSON object (the verdict and a row per node) instead of lines
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
    /// List the voters and learners, or change the voters (through the leader)
    Members {
        #[command(subcommand)]
        action: MembersCmd,
    },
    /// Save the cluster's state to a file (through the leader)
    Snapshot {
        #[command(subcommand)]
        action: SnapshotCmd,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout
    #[command(hide = true)]
    Man,
    /// Create new data_dirs for the listed nodes, seeded with a saved snapshot
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// The file written by `tracker-node snapshot save`
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Ask the leader for a snapshot consistent as of now and write it to FILE (mode 0600)
    Save {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum MembersCmd {
    /// Make listed node N a voter: it joins as a learner, catches up, then votes
    Add(MemberArgs),
    /// Remove node N from the voters (then stop its process: it keeps running)
    Remove(MemberArgs),
    /// List the voters and learners as the leader reports them, with each one's own role
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print one JSON object instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct MemberArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(long, value_name = "N")]
    id: u64,
    /// Print the leader's JSON answer instead of a sentence
    #[arg(long)]
    json: bool,
}

/// `--config`'s default.
const DEFAULT_CONFIG: &str = "cluster.toml";

fn load(c: &ConfigArg) -> Result<Arc<ClusterConfig>, ExitCode> {
    ClusterConfig::load(&c.config).map(Arc::new).map_err(|e| {
        eprintln!("error: {e}{}", config_hint(&e, &c.config));
        ExitCode::from(2)
    })
}

/// Run away from the cluster file without `--config`, a command says where it looked and how
/// to name the file (as etcdctl points at `--endpoints`).
fn config_hint(e: &proto::cluster::ConfigError, path: &std::path::Path) -> String {
    let missing = matches!(e, proto::cluster::ConfigError::Read { source, .. }
        if source.kind() == std::io::ErrorKind::NotFound);
    if !missing || path != std::path::Path::new(DEFAULT_CONFIG) {
        return String::new();
    }
    let here = std::env::current_dir().map(|d| format!(" in {}", d.display())).unwrap_or_default();
    format!(
        " (there is no {DEFAULT_CONFIG}{here}: name the cluster file with --config FILE, or run this in its folder)"
    )
}

fn main() -> ExitCode {
    sched::tune_malloc();
    let cli = Cli::parse();
    if !matches!(cli.command, Cmd::Run { .. } | Cmd::Up { .. }) {
        proto::stdout::exit_quietly_on_closed_stdout();
    }
    logging::init();
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
    let result = match cli.command {
        Cmd::Run { config, id } => return run_node(&config, id).await,
        Cmd::Members { action } => return members(action).await,
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
        Cmd::Health { config, json } => match load(&config) {
            Ok(cfg) => commands::health::run(&cfg, json).await,
            Err(code) => return code,
        },
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "tracker-node", &mut std::io::stdout());
            Ok(0)
        }
        Cmd::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map(|_| 0).map_err(Into::into)
        }
        Cmd::Snapshot { action: SnapshotCmd::Save { config, file } } => match load(&config) {
            Ok(cfg) => commands::snapshot::save(&cfg, &file).await,
            Err(code) => return code,
        },
        Cmd::Restore { config, from } => match load(&config) {
            Ok(cfg) => commands::snapshot::restore(&cfg, &from),
            Err(code) => return code,
        },
    };
    exit_code(result)
}

/// A command's outcome as the process's exit code; an error is one line on stderr, exit 1.
fn exit_code(result: anyhow::Result<i32>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `tracker-node run`: node `id` of the cluster file, in the foreground until SIGINT/SIGTERM.
async fn run_node(config: &ConfigArg, id: u64) -> ExitCode {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let listed = match cfg.require_node(id) {
        Ok(n) => n.clone(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = refuse_unsafe_build_unless_told() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // Before anything listens: another node on this data_dir, or one that is a file or
    // read-only, is one line naming it; the TLS files named in the cluster file are the
    // operator's to fix (exit 2); the ones made here on a first start are created now.
    let node = match NodeConfig::prepare(cfg, id).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    // A port in use is one line naming it.
    let listeners = match Listeners::bind(&listed) {
        Ok(l) => l,
        Err(e) => return exit_code(Err(e)),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    exit_code(tracker_node::run(node, listeners, shutdown).await.map(|_| 0))
}

/// `tracker-node members add|remove --id N`, `members list`.
async fn members(action: MembersCmd) -> ExitCode {
    let (verb, MemberArgs { config, id, json }) = match action {
        MembersCmd::Add(args) => ("add", args),
        MembersCmd::Remove(args) => ("remove", args),
        MembersCmd::List { config, json } => {
            return match load(&config) {
                Ok(cfg) => exit_code(commands::members::list_members(&cfg, json).await),
                Err(code) => code,
            }
        }
    };
    let cfg = match load(&config) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    if let Err(e) = cfg.require_node(id) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    exit_code(commands::members::run(&cfg, verb, id, json).await)
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
