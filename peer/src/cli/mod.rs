//! The `peer` command line: global options, the subcommands (with the original system's
//! snake_case names as aliases), exit codes and the human / `--json` output.

pub mod account;
pub mod files;
pub mod groups;
pub mod manage;
pub mod output;
pub mod status;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracker_client::{ClientError, RetryPolicy, TrackerClient};

use crate::home::Home;
use crate::trackers::Trackers;

pub use output::{CliError, Out};

#[derive(Parser, Debug)]
#[command(
    name = "peer",
    version,
    about = "Share files inside groups: the peer daemon, its CLI and an interactive shell",
    after_help = "Exit codes: 0 done, 1 refused, 2 usage, 3 unavailable (no tracker leader, or no daemon for HOME), \
                  130 interrupted (Ctrl-C on a blocking download: the daemon goes on with it)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// This peer's identity: session, daemon socket, download state [default: the platform data dir]
    #[arg(long, global = true, env = "PEER_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The cluster file whose api addresses are the trackers
    #[arg(long, global = true, env = "PEER_CLUSTER", value_name = "FILE", default_value = "cluster.toml")]
    pub cluster: PathBuf,
    /// Tracker api addresses, overriding --cluster
    #[arg(long, global = true, env = "PEER_TRACKERS", value_name = "ADDR[,ADDR..]", value_delimiter = ',')]
    pub tracker: Option<Vec<String>>,
    /// Machine-readable output: one JSON value on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds a tracker call may take, retries and failovers included
    #[arg(long, global = true, value_name = "SECS", default_value_t = 15)]
    pub timeout: u64,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run this peer: serve pieces and run downloads (foreground)
    Daemon {
        /// Address to serve pieces on (IP:PORT; 0.0.0.0:PORT for all interfaces). The tracker
        /// lists this daemon at the address its calls come from, with this port
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        listen: String,
        /// The address other peers are told to use (e.g. behind a port forward): the tracker
        /// takes its PORT; HOST is informational, since the tracker always lists the address
        /// this daemon's calls come from (the daemon warns when they differ)
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_advertise)]
        advertise: Option<String>,
        /// Fault injection for tests: pause this long before sending each piece
        #[arg(long, value_name = "MS", default_value_t = 0, hide = true)]
        serve_delay_ms: u64,
        /// Fault injection for tests: serve wrong piece lists
        #[arg(long, value_name = "HOW", value_enum, hide = true)]
        serve_bad_piece_list: Option<crate::daemon::BadPieceList>,
        /// Test only: close served connections that ask for nothing after this many ms.
        #[arg(long, value_name = "MS", hide = true)]
        no_request_timeout_ms: Option<u64>,
    },
    /// Create an account
    #[command(alias = "create_user", alias = "create-user")]
    Register {
        user: String,
        /// Read the password from the first line of stdin
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log in; resumes this peer's shares
    ///
    /// A HOME holds one user's shares and downloads: logging in as another user puts the
    /// previous user's aside (and brings back the new user's), refused with `home_in_use` while
    /// the HOME's daemon serves them.
    Login {
        user: String,
        /// Read the password from the first line of stdin
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log out; this peer's shares pause until the next login
    Logout,
    /// Create a group, owned by you
    #[command(alias = "create_group")]
    CreateGroup { group: String },
    /// Ask to join a group (its owner accepts)
    ///
    /// Asking again while your request is pending says so; it is not an error (exit 0).
    #[command(alias = "join_group")]
    JoinGroup { group: String },
    /// Leave a group (an owner hands it to the next member; the last one deletes it)
    #[command(alias = "leave_group")]
    LeaveGroup { group: String },
    /// List every group
    #[command(alias = "list_groups")]
    ListGroups,
    /// List the pending join requests of a group you own
    #[command(alias = "list_requests")]
    ListRequests { group: String },
    /// Accept USER's request to join GROUP (owner only)
    #[command(alias = "accept_request")]
    AcceptRequest { group: String, user: String },
    /// Remove USER from GROUP (owner only): they stop being a member and stop sharing there
    #[command(alias = "remove_member")]
    RemoveMember { group: String, user: String },
    /// Share PATH in GROUP (needs the daemon)
    ///
    /// PATH comes first, GROUP second (a swap is refused with the order meant).
    #[command(alias = "upload_file")]
    Upload {
        #[arg(value_name = "PATH")]
        file: PathBuf,
        group: String,
    },
    /// Download NAME from GROUP into DEST (default: the current folder) (needs the daemon)
    ///
    /// Blocks until the file is complete and verified, with a progress bar on a terminal, then
    /// says how long it took and the average rate. Ctrl-C stops waiting, not the download: the
    /// daemon goes on with it, and the command exits 130 (stop the download with: peer cancel
    /// GROUP NAME).
    #[command(alias = "download_file")]
    Download {
        /// The group the file is shared in
        group: String,
        /// The file's name in the group (see: peer list-files GROUP)
        name: String,
        /// A directory (the file lands as DEST/NAME) or a file path; a DEST ending in / is a
        /// directory, and missing ones are created [default: the current folder]
        dest: Option<PathBuf>,
        /// Return once the download is under way
        #[arg(long)]
        detach: bool,
        /// Replace an existing file at the destination (a symlink there is replaced, not followed)
        #[arg(long)]
        force: bool,
    },
    /// List a group's files (members only)
    #[command(alias = "list_files")]
    ListFiles { group: String },
    /// Show this peer's downloads (needs the daemon)
    ///
    /// By default the active ones (downloading, paused): destination, percent, rate, time left
    /// and sharers connected. --all adds the complete and failed ones. With --json, every
    /// download, each {"group", "name", "dest", "state": "downloading"|"paused"|"complete"|
    /// "failed", "bytes_done", "size", "error", "rate_bytes_per_s", "peers"}.
    #[command(alias = "show_downloads")]
    ShowDownloads {
        /// Also show complete and failed downloads
        #[arg(long)]
        all: bool,
        /// Draw the view again every second: on a terminal in place until Ctrl-C; otherwise one
        /// view after another until no download is running (not with --json)
        #[arg(long)]
        watch: bool,
    },
    /// Stop a download (downloading or paused) and delete its .part (needs the daemon)
    ///
    /// A `peer download` waiting for it ends with exit 1. Refused (exit 1, no_such_file) when
    /// there is no active download of NAME in GROUP.
    Cancel(DownloadOf),
    /// Pause a download: stop fetching, keep the .part and its verified pieces (needs the daemon)
    ///
    /// The download shows as "paused" and stays paused across daemon restarts.
    Pause(DownloadOf),
    /// Resume a paused download from its verified pieces (needs the daemon)
    Resume(DownloadOf),
    /// Drop a finished or failed download from show-downloads (needs the daemon)
    ///
    /// The file itself stays (and stays shared). An active or paused download is refused: use
    /// `peer cancel` for it.
    Forget(DownloadOf),
    /// List what this peer shares, per group: name, size, path (needs the daemon)
    #[command(alias = "list_shares")]
    ListShares,
    /// Stop sharing NAME in GROUP; the local copy stays (needs the daemon)
    #[command(alias = "stop_share")]
    StopShare { group: String, name: String },
    /// Where this peer stands: who is logged in, the daemon, the tracker, shares and downloads
    ///
    /// HOME's session user (and whether the tracker still takes the session); whether HOME's
    /// daemon runs, where it listens and the address the tracker lists it at; which tracker
    /// node leads and how many answer; the daemon's shares and its downloads by state. Needs
    /// neither a daemon nor a tracker: what does not answer is reported. Exit 0 whenever it
    /// could look, whatever it found (scripts read --json).
    Status,
    /// Interactive: one command a line, in the original system's words
    ///
    /// On a terminal: line editing, history in HOME/shell_history (mode 0600, passwords never
    /// kept), TAB completion of commands, group and file names, "did you mean" for a mistyped
    /// command; Ctrl-C drops the line (or stops waiting for a command), Ctrl-D or `quit` leaves.
    ///
    /// Exit status: on a terminal, 0 when you quit. With a script on stdin, 0 only if every
    /// line succeeded, else the exit code (1 refused, 2 usage, 3 unavailable) of the last line
    /// that failed; each failure also prints its own `error: ` line.
    Shell,
}

/// The download that `cancel`, `pause`, `resume` and `forget` act on.
#[derive(Args, Debug, Clone)]
pub struct DownloadOf {
    /// The group of the download
    pub group: String,
    /// The name of the file, as show-downloads lists it
    pub name: String,
}

/// Everything a command needs: HOME, the tracker client, output mode.
pub struct Ctx {
    pub home: Home,
    pub global: Global,
    pub trackers: Option<Trackers>,
}

impl Ctx {
    pub fn new(global: Global) -> Result<Ctx, CliError> {
        let home = Home::resolve(global.home.clone()).map_err(|e| CliError::usage(e.to_string()))?;
        Ok(Ctx { home, trackers: None, global })
    }

    /// The trackers: `--tracker`, else the api addresses of `--cluster`; and the cluster CA to
    /// pin (crate::trackers says when).
    pub fn trackers(&mut self) -> Result<Trackers, CliError> {
        if let Some(t) = &self.trackers {
            return Ok(t.clone());
        }
        let flag: Option<Vec<String>> = match &self.global.tracker {
            Some(list) if !list.is_empty() => {
                Some(list.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            }
            _ => None,
        };
        let cluster = proto::cluster::ClusterConfig::load(&self.global.cluster).map_err(|e| e.to_string());
        let trackers = Trackers::resolve(flag, cluster).map_err(CliError::usage)?;
        self.trackers = Some(trackers.clone());
        Ok(trackers)
    }

    /// The tracker addresses (see [`Ctx::trackers`]).
    pub fn tracker_addrs(&mut self) -> Result<Vec<String>, CliError> {
        Ok(self.trackers()?.addrs)
    }

    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy { budget_ms: self.global.timeout.max(1) * 1000, ..RetryPolicy::default() }
    }

    /// A client without a session.
    pub fn client(&mut self) -> Result<TrackerClient, CliError> {
        let policy = self.policy();
        Ok(self.trackers()?.client(policy))
    }

    /// A client acting for this HOME's session; not logged in is `unauthenticated`.
    pub fn session_client(&mut self) -> Result<TrackerClient, CliError> {
        let Some(session) = self.home.session() else {
            return Err(CliError::refused("unauthenticated", "not logged in (run: peer login USER)"));
        };
        Ok(self.client()?.with_token(Some(session.token)))
    }

    pub fn control_timeout(&self) -> Duration {
        Duration::from_secs(self.global.timeout.max(1) + 5)
    }
}

/// `--advertise HOST:PORT`: a non-empty host (a name, an IPv4 address or `[IPv6]`) and a port
/// from 1 to 65535.
fn parse_advertise(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not HOST:PORT with a port from 1 to 65535");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if port == 0 || bare.is_empty() || bare.contains(char::is_whitespace) || (bare != host) != bare.contains(':') {
        return Err(bad());
    }
    Ok(s.to_string())
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Refused { code, message } => CliError::refused(code, message),
            ClientError::Unavailable { .. } | ClientError::Protocol(_) => CliError::unavailable(e.to_string()),
        }
    }
}

/// `peer daemon`: binds its sockets, runs it, and stops it on SIGINT or SIGTERM.
async fn run_daemon(
    ctx: &mut Ctx,
    listen: &str,
    advertise: Option<String>,
    faults: crate::daemon::Faults,
) -> Result<(), CliError> {
    let failed = |e: anyhow::Error| CliError::refused("daemon_failed", format!("{e:#}"));
    let config = crate::daemon::Config {
        home: ctx.home.clone(),
        trackers: ctx.trackers()?,
        policy: ctx.policy(),
        advertise,
        faults,
    };
    let listeners = crate::daemon::Listeners::bind(&config.home, listen).await.map_err(failed)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| failed(e.into()))?;
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        on_signal.cancel();
    });
    crate::daemon::run(config, listeners, shutdown).await.map_err(failed)
}

/// Runs one command (all but `shell`, which main.rs starts); the shell runs its lines through
/// here too.
pub async fn run_command(ctx: &mut Ctx, command: Command, out: &mut Out) -> Result<(), CliError> {
    match command {
        Command::Daemon { listen, advertise, serve_delay_ms, serve_bad_piece_list, no_request_timeout_ms } => {
            let faults =
                crate::daemon::Faults { serve_delay_ms, bad_piece_list: serve_bad_piece_list, no_request_timeout_ms };
            run_daemon(ctx, &listen, advertise, faults).await
        }
        Command::Register { user, password_stdin } => account::register(ctx, out, &user, password_stdin).await,
        Command::Login { user, password_stdin } => account::login(ctx, out, &user, password_stdin).await,
        Command::Logout => account::logout(ctx, out).await,
        Command::CreateGroup { group } => groups::create(ctx, out, &group).await,
        Command::JoinGroup { group } => groups::join(ctx, out, &group).await,
        Command::LeaveGroup { group } => groups::leave(ctx, out, &group).await,
        Command::ListGroups => groups::list(ctx, out).await,
        Command::ListRequests { group } => groups::list_requests(ctx, out, &group).await,
        Command::AcceptRequest { group, user } => groups::accept(ctx, out, &group, &user).await,
        Command::RemoveMember { group, user } => groups::remove_member(ctx, out, &group, &user).await,
        Command::Upload { file, group } => files::upload(ctx, out, &file, &group).await,
        Command::Download { group, name, dest, detach, force } => {
            files::download(ctx, out, &group, &name, dest.as_deref(), detach, force).await
        }
        Command::ListFiles { group } => files::list(ctx, out, &group).await,
        Command::ShowDownloads { all, watch } => files::show_downloads(ctx, out, all, watch).await,
        Command::Cancel(d) => manage::cancel(ctx, out, &d.group, &d.name).await,
        Command::Pause(d) => manage::pause(ctx, out, &d.group, &d.name).await,
        Command::Resume(d) => manage::resume(ctx, out, &d.group, &d.name).await,
        Command::Forget(d) => manage::forget(ctx, out, &d.group, &d.name).await,
        Command::ListShares => manage::list_shares(ctx, out).await,
        Command::StopShare { group, name } => files::stop_share(ctx, out, &group, &name).await,
        Command::Status => status::status(ctx, out).await,
        // `peer shell` is started by main.rs, above this module; a shell line naming it is
        // refused by the shell itself.
        Command::Shell => Err(CliError::usage("already in the shell")),
    }
}

/// The most tips a mistyped command gets ("similar subcommands exist: ...").
const MAX_COMMAND_TIPS: usize = 3;

/// Parses argv as `Cli::parse` does (a usage error prints clap's message and exits 2), with
/// [`fewer_tips`] for a mistyped command.
pub fn parse_args() -> Cli {
    Cli::try_parse().unwrap_or_else(|e| fewer_tips(e).exit())
}

/// The tips of a mistyped command, as git and cargo give them: the closest command first, each
/// command once and in the spelling typed (its snake_case alias only for a word with `_`: those
/// aliases are the shell's words, accepted but not offered to a kebab-case typist), at most
/// [`MAX_COMMAND_TIPS`]. clap offers every name and alias above its similarity bar, the closest
/// last.
pub fn fewer_tips(mut e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidSubcommand {
        return e;
    }
    let (Some(ContextValue::String(typed)), Some(ContextValue::Strings(similar))) =
        (e.get(ContextKind::InvalidSubcommand).cloned(), e.get(ContextKind::SuggestedSubcommand).cloned())
    else {
        return e;
    };
    let cli = <Cli as clap::CommandFactory>::command();
    let mut tips: Vec<String> = Vec::new();
    for word in similar.iter().rev() {
        let Some(sub) = cli.find_subcommand(word) else { continue };
        let snake = sub.get_all_aliases().find(|a| a.contains('_'));
        let tip = match snake {
            Some(alias) if typed.contains('_') => alias.to_string(),
            _ => sub.get_name().to_string(),
        };
        if !tips.contains(&tip) {
            tips.push(tip);
        }
    }
    tips.truncate(MAX_COMMAND_TIPS);
    e.insert(ContextKind::SuggestedSubcommand, ContextValue::Strings(tips));
    e
}

#[cfg(test)]
mod tips_tests {
    use super::*;
    use clap::error::{ContextKind, ContextValue};

    fn tips(args: &[&str]) -> Vec<String> {
        let e = Cli::try_parse_from(std::iter::once("peer").chain(args.iter().copied())).unwrap_err();
        match fewer_tips(e).get(ContextKind::SuggestedSubcommand) {
            Some(ContextValue::Strings(t)) => t.clone(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_mistyped_command_gets_the_closest_first_in_the_spelling_typed() {
        let t = tips(&["list-group"]);
        assert_eq!(t.first().map(String::as_str), Some("list-groups"), "{t:?}");
        assert!(t.len() <= MAX_COMMAND_TIPS && t.iter().all(|w| !w.contains('_')), "{t:?}");
        let t = tips(&["list_group"]);
        assert_eq!(t.first().map(String::as_str), Some("list_groups"), "{t:?}");
        assert!(t.iter().all(|w| !w.contains('-')), "{t:?}");
        assert_eq!(tips(&["--json", "donwload"]).first().map(String::as_str), Some("download"));
        // Each command once, whatever the names of it clap found similar.
        let t = tips(&["create-grp"]);
        assert_eq!(t.iter().filter(|w| *w == "create-group").count(), 1, "{t:?}");
        // The aliases stay accepted.
        assert!(Cli::try_parse_from(["peer", "list_groups"]).is_ok());
        assert!(Cli::try_parse_from(["peer", "create_user", "bob"]).is_ok());
    }
}
