//! `peer status`: where this peer stands. HOME's session (and whether the tracker still takes
//! it), HOME's daemon (where it listens, the address the tracker lists), the tracker nodes
//! (which one leads, how many answer), and the daemon's shares and downloads. Nothing has to be
//! up: what does not answer is reported as such, and the command exits 0 whenever it could look,
//! whatever it found (as `git status` and `systemctl --user status` report rather than fail;
//! scripts read `--json`).

use std::time::Duration;

use serde::Serialize;

use super::{CliError, Ctx, Out};
use crate::control::{self, ControlRequest, ControlResponse, DownloadState};
use proto::api::{ApiErrorCode, ErrorCode, Role};
use tracker_client::ClientError;

/// How long HOME's daemon may take to answer each question.
const DAEMON_WAIT_MS: u64 = 5_000;

#[derive(Serialize)]
struct Status {
    home: String,
    /// HOME's session user, or null when not logged in.
    user: Option<String>,
    session_expires_at_ms: Option<u64>,
    /// Whether the tracker still takes the session: null when no node answered (or no session).
    session_valid: Option<bool>,
    daemon: DaemonStatus,
    tracker: TrackerStatus,
    /// What the daemon shares, and its downloads by state: null without a daemon.
    shares: Option<usize>,
    downloads: Option<DownloadCounts>,
}

#[derive(Serialize, Default)]
struct DaemonStatus {
    running: bool,
    pid: Option<u32>,
    /// Where its piece server listens.
    listen: Option<String>,
    /// The address the tracker lists it at (other peers connect there), once it has.
    listed_as: Option<String>,
    /// Why the daemon could not be asked, when it runs but did not answer.
    error: Option<String>,
}

#[derive(Serialize, Default)]
struct TrackerStatus {
    /// The tracker addresses asked (`--tracker`, else the cluster file's).
    nodes: Vec<String>,
    /// How many of them answered.
    answering: usize,
    /// The leader's node id and api address, as the nodes that answered report it.
    leader: Option<u64>,
    leader_api: Option<String>,
    /// Why no tracker could be asked (a cluster file that cannot be read).
    error: Option<String>,
}

#[derive(Serialize, Default)]
struct DownloadCounts {
    downloading: usize,
    paused: usize,
    complete: usize,
    failed: usize,
}

pub async fn status(ctx: &mut Ctx, out: &mut Out) -> Result<(), CliError> {
    let session = ctx.home.session();
    let (daemon, shares, downloads) = daemon_status(ctx).await;
    let tracker = tracker_status(ctx).await;
    let session_valid = match &session {
        Some(s) if tracker.leader.is_some() => match ctx.client()?.with_token(Some(s.token.clone())).whoami().await {
            Ok(u) => Some(u.user == s.user),
            Err(ClientError::Refused { code, .. }) if code == ApiErrorCode::State(ErrorCode::Unauthenticated) => {
                Some(false)
            }
            Err(_) => None,
        },
        _ => None,
    };
    let status = Status {
        home: ctx.home.dir.display().to_string(),
        user: session.as_ref().map(|s| s.user.clone()),
        session_expires_at_ms: session.as_ref().map(|s| s.expires_at_ms),
        session_valid,
        daemon,
        tracker,
        shares,
        downloads,
    };
    out.ok(human(&status), &status);
    Ok(())
}

/// HOME's daemon: does it answer, where does it listen, what the tracker lists; its shares and
/// downloads.
async fn daemon_status(ctx: &Ctx) -> (DaemonStatus, Option<usize>, Option<DownloadCounts>) {
    let wait = Duration::from_millis(DAEMON_WAIT_MS);
    let socket = ctx.home.socket();
    let mut d = DaemonStatus::default();
    match control::call(&socket, &ControlRequest::Ping, wait).await {
        Ok(ControlResponse::Pong { pid, peer_addr, listen, listed_as }) => {
            d.running = true;
            d.pid = Some(pid);
            d.listen = Some(listen.unwrap_or(peer_addr));
            d.listed_as = listed_as;
        }
        Ok(_) => {
            d.running = true;
            d.error = Some("the daemon gave an unexpected answer".into());
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {}
        Err(e) => {
            d.error = Some(format!("the daemon of {} did not answer: {e}", ctx.home.dir.display()));
        }
    }
    if !d.running || d.error.is_some() {
        return (d, None, None);
    }
    let shares = match control::call(&socket, &ControlRequest::ListShares, wait).await {
        Ok(ControlResponse::Shares { rows }) => Some(rows.len()),
        _ => None,
    };
    let downloads = match control::call(&socket, &ControlRequest::ShowDownloads, wait).await {
        Ok(ControlResponse::Downloads { rows }) => {
            let mut c = DownloadCounts::default();
            for r in rows {
                *match r.state {
                    DownloadState::Downloading => &mut c.downloading,
                    DownloadState::Paused => &mut c.paused,
                    DownloadState::Complete => &mut c.complete,
                    DownloadState::Failed => &mut c.failed,
                } += 1;
            }
            Some(c)
        }
        _ => None,
    };
    (d, shares, downloads)
}

/// Every tracker node asked at once, each once (no failover, one attempt's time limit): how
/// many answer and which one they say leads.
async fn tracker_status(ctx: &mut Ctx) -> TrackerStatus {
    let mut t = TrackerStatus::default();
    let client = match ctx.trackers() {
        Ok(trackers) => {
            t.nodes = trackers.addrs.clone();
            trackers.client(ctx.policy())
        }
        Err(e) => {
            t.error = Some(e.message);
            return t;
        }
    };
    let mut asks = tokio::task::JoinSet::new();
    for node in t.nodes.clone() {
        let client = client.clone();
        asks.spawn(async move { client.node_status(&node).await });
    }
    while let Some(answer) = asks.join_next().await {
        let Ok(Ok(s)) = answer else { continue };
        t.answering += 1;
        if s.role == Role::Leader {
            t.leader = Some(s.id);
            t.leader_api = Some(s.api.clone());
        } else if t.leader.is_none() {
            t.leader = s.leader;
            t.leader_api = s.leader_api.clone();
        }
    }
    t
}

fn human(s: &Status) -> String {
    let mut lines = vec![format!("home       {}", s.home)];
    lines.push(match (&s.user, s.session_valid) {
        (None, _) => "user       not logged in (run: peer login USER)".to_string(),
        (Some(u), Some(false)) => format!("user       {u}, but the session ended (run: peer login {u})"),
        (Some(u), Some(true)) => format!("user       {u} (logged in)"),
        (Some(u), None) => format!("user       {u} (logged in here; the tracker could not confirm it)"),
    });
    let d = &s.daemon;
    lines.push(if let Some(e) = &d.error {
        format!("daemon     {e}")
    } else if !d.running {
        "daemon     not running (start it with: peer daemon)".to_string()
    } else {
        let listen = d.listen.as_deref().unwrap_or("?");
        let listed = match &d.listed_as {
            Some(a) => format!("; the tracker lists it at {a}"),
            None => "; the tracker does not list it (yet)".to_string(),
        };
        format!("daemon     running (pid {}), listening on {listen}{listed}", d.pid.unwrap_or(0))
    });
    let t = &s.tracker;
    lines.push(if let Some(e) = &t.error {
        format!("tracker    {e}")
    } else {
        let answer = format!("{} of {} node(s) answer", t.answering, t.nodes.len());
        match (t.leader, &t.leader_api) {
            (Some(id), Some(api)) => format!("tracker    node {id} leads ({api}); {answer}"),
            (Some(id), None) => format!("tracker    node {id} leads; {answer}"),
            (None, _) if t.answering == 0 => format!("tracker    no node answers ({})", t.nodes.join(", ")),
            (None, _) => format!("tracker    no leader known; {answer}"),
        }
    });
    match (s.shares, &s.downloads) {
        (None, None) if !d.running => {}
        (shares, downloads) => {
            let shares = shares.map_or("unknown".to_string(), |n| n.to_string());
            lines.push(format!("shares     {shares}"));
            lines.push(match downloads {
                Some(c) => format!(
                    "downloads  {} downloading, {} paused, {} complete, {} failed",
                    c.downloading, c.paused, c.complete, c.failed
                ),
                None => "downloads  unknown".to_string(),
            });
        }
    }
    lines.join("\n")
}
