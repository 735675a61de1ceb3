//! The peer daemon: serves pieces of what this HOME shares, runs downloads that swarm, and
//! answers its CLI on the control socket. One daemon per HOME.
//!
//! Shutdown: a root cancellation token; the piece server, the control server and every
//! download hold child tokens. State files (shares.json, downloads.json) are rewritten
//! atomically on every change, so a SIGKILL loses at most in-flight pieces, which the
//! restarted daemon re-verifies and fetches again.

pub mod control_server;
pub mod disk;
pub mod download;
pub mod serve;
pub mod shares;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracker_client::TrackerClient;

use crate::cli::Ctx;
use crate::control::{self, ControlRequest};
use crate::home::Home;
use crate::piece_lists::PieceListStore;

/// Everything the daemon's tasks share.
pub struct Daemon {
    pub home: Home,
    pub tracker: TrackerClient,
    /// Where other peers reach our piece server (announced to the tracker).
    pub peer_addr: String,
    pub shares: shares::ShareTable,
    pub downloads: download::DownloadTable,
    pub shutdown: CancellationToken,
    /// The piece lists this HOME keeps (what the piece server answers `piece_list_request` with).
    pub piece_lists: PieceListStore,
    /// One rebuild of a lost piece list at a time (each reads a whole shared file).
    pub list_rebuild: tokio::sync::Mutex<()>,
    /// Test-only fault injection.
    pub faults: Faults,
}

/// Faults a test can make a daemon commit (hidden flags of `peer daemon`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Pause this long before sending each piece.
    pub serve_delay_ms: u64,
    /// Serve piece lists that are wrong in this way.
    pub bad_piece_list: Option<BadPieceList>,
}

/// How a faulty sharer's piece list is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BadPieceList {
    /// The right length, one hash per frame altered.
    Corrupt,
    /// One hash short: the list claims one piece fewer than the file has.
    Short,
}

impl Daemon {
    /// A tracker client acting for this HOME's current session, if there is one.
    pub fn session_client(&self) -> Option<TrackerClient> {
        self.home.session().map(|s| self.tracker.with_token(Some(s.token)))
    }

    /// Tells the tracker where we serve; called at start and after every login.
    pub async fn announce(&self) {
        let Some(client) = self.session_client() else {
            tracing::info!("not logged in: shares stay paused until `peer login`");
            return;
        };
        match client.announce(&self.peer_addr).await {
            Ok(v) => tracing::info!(peer_addr = %self.peer_addr, shares = %v["shares"], "announced to the tracker"),
            Err(e) => tracing::warn!("cannot announce to the tracker: {e}"),
        }
    }
}

pub async fn run(ctx: &mut Ctx, listen: &str, faults: Faults) -> anyhow::Result<()> {
    let home = ctx.home.clone();
    home.ensure()?;
    let socket = home.socket();
    if control::call(&socket, &ControlRequest::Ping, Duration::from_secs(2)).await.is_ok() {
        anyhow::bail!("a peer daemon is already running for {}", home.dir.display());
    }
    let _ = std::fs::remove_file(&socket);

    let listen_addr: SocketAddr = listen.parse().with_context(|| format!("--listen {listen:?} is not IP:PORT"))?;
    let listener = TcpListener::bind(listen_addr).await.with_context(|| format!("cannot listen on {listen_addr}"))?;
    let mut local = listener.local_addr()?;
    if local.ip().is_unspecified() {
        // 0.0.0.0 cannot be dialled; announce loopback and say so.
        tracing::warn!(
            "listening on {local}; announcing 127.0.0.1 — pass --listen with this machine's address for other machines"
        );
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let control_listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("cannot create the control socket {}", socket.display()))?;

    let addrs = ctx.tracker_addrs().map_err(|e| anyhow::anyhow!(e.message))?;
    let tracker = TrackerClient::new(addrs, ctx.policy());
    let shutdown = CancellationToken::new();
    let daemon = Arc::new(Daemon {
        shares: shares::ShareTable::load(&home)?,
        downloads: download::DownloadTable::load(&home)?,
        home: home.clone(),
        tracker,
        peer_addr: local.to_string(),
        shutdown: shutdown.clone(),
        piece_lists: PieceListStore::new(&home),
        list_rebuild: tokio::sync::Mutex::new(()),
        faults,
    });
    crate::home::write_json(
        &home.daemon_info_path(),
        &serde_json::json!({"pid": std::process::id(), "peer_addr": daemon.peer_addr}),
    )?;
    tracing::info!(home = %home.dir.display(), peer_addr = %daemon.peer_addr, "peer daemon started");
    println!("peer daemon for {} serving pieces on {}", home.dir.display(), daemon.peer_addr);

    let serve_task = tokio::spawn(serve::run(daemon.clone(), listener, shutdown.child_token()));
    let control_task = tokio::spawn(control_server::run(daemon.clone(), control_listener, shutdown.child_token()));
    {
        let d = daemon.clone();
        tokio::spawn(async move { d.announce().await });
    }
    download::resume_all(&daemon);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = serve_task.await;
        let _ = control_task.await;
    })
    .await;
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(home.daemon_info_path());
    Ok(())
}
