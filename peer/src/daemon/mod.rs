//! The peer daemon: serves pieces of what this HOME shares, runs downloads that swarm, and
//! answers its CLI on the control socket. One daemon per HOME.
//!
//! Shutdown: a root cancellation token; the piece server, the control server and every
//! download hold child tokens. State files (shares.json, downloads.json) are rewritten
//! atomically on every change, so a SIGKILL loses at most in-flight pieces, which the
//! restarted daemon re-verifies and fetches again.

pub mod accept;
pub mod channel;
pub mod control_server;
pub mod disk;
pub mod download;
pub mod handles;
#[cfg(feature = "null-cipher-for-bench")]
mod null_cipher;
pub mod reconcile;
pub mod reply;
pub mod serve;
pub mod shares;
pub mod slots;
pub mod spread;
pub mod standing;
pub mod tickets;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::{self, ControlRequest};
use crate::home::Home;
use crate::piece_lists::PieceListStore;
pub use handles::{BadPieceList, Daemon, Faults};
use shares::ShareTable;
pub use standing::{AnnounceState, Standing, ANNOUNCE_INTERVAL_MS};

/// Every `alive_every_ms` (what the tracker last said; `ANNOUNCE_INTERVAL_MS` until it has):
/// announce if the last attempt failed, else tell the tracker
/// this daemon is alive (`POST /v1/peer/alive`, answered by the leader from memory, no log
/// entry). A refusal as `unauthenticated` ends the session here too.
async fn keepalive(st: Arc<Standing>, shares: Arc<ShareTable>, stop: CancellationToken) {
    use std::sync::atomic::Ordering;
    let mut not_listed_warned = false;
    let mut round: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(st.announce.alive_every()) => {}
            // A new interval: wait again, for the new one.
            _ = st.announce.alive_every_changed.notified() => continue,
        }
        let Some(s) = st.home.session() else { continue };
        let _call = st.announce.alive_calls.lock().await;
        if stop.is_cancelled() {
            return;
        }
        let result = if st.announce.announced.load(Ordering::SeqCst) {
            let client = st.tracker.with_token(Some(s.token.clone()));
            client.alive(&st.peer_addr, &st.peer_key_hex).await.map(|v| {
                st.announce.listed.store(v.listed, Ordering::SeqCst);
                st.announce.learn_alive_every(v.alive_every_ms);
                if !v.listed {
                    if !not_listed_warned {
                        tracing::warn!(
                            tracker_sees = %v.peer_addr,
                            "the tracker lists another address or daemon for this user (announced later from \
                             another HOME?): this daemon's shares are not offered until it announces again \
                             (`peer login`)"
                        );
                    }
                    not_listed_warned = true;
                } else {
                    not_listed_warned = false;
                }
            })
        } else {
            st.try_announce().await
        };
        match result {
            Err(tracker_client::ClientError::Refused { code, .. }) if code == "unauthenticated" => st.session_ended(&s),
            Err(e) => {
                // Unheard, the tracker may stop counting this daemon alive: until it hears us
                // again, "not among the sharers" proves nothing.
                st.announce.listed.store(false, Ordering::SeqCst);
                tracing::debug!("liveness call failed: {e}")
            }
            Ok(()) => {}
        }
        drop(_call);
        round += 1;
        if round % RECONCILE_EVERY_ROUNDS == 0 {
            reconcile::reconcile_shares(&st, &shares, KEEPALIVE_RECONCILE_MS).await;
        }
    }
}

/// The keepalive loop checks the shares against the tracker every this many rounds (one
/// liveness period: 30 s by default);
/// `list-shares` checks them at once.
const RECONCILE_EVERY_ROUNDS: u64 = 3;

/// Most time the keepalive loop spends checking shares against the tracker per round.
const KEEPALIVE_RECONCILE_MS: u64 = 5_000;
/// What the daemon needs from its caller: the CLI builds it from flags, the environment and
/// the cluster file.
pub struct Config {
    pub home: Home,
    /// The tracker nodes' API addresses and the cluster CA to pin.
    pub trackers: crate::trackers::Trackers,
    pub policy: tracker_client::RetryPolicy,
    /// `--advertise HOST:PORT`, as given.
    pub advertise: Option<String>,
    pub faults: Faults,
}

/// The daemon's two listening sockets, bound by the caller before `run`, so that a bind error
/// is the caller's to report and a test can hand in sockets of its own.
pub struct Listeners {
    /// Where the piece server accepts other peers.
    pub pieces: TcpListener,
    /// HOME/daemon.sock, mode 0600, for this user's CLI.
    pub control: tokio::net::UnixListener,
}

impl Listeners {
    /// Refuses when a daemon already runs for `home`; otherwise binds `listen` (IP:PORT) and
    /// the control socket.
    pub async fn bind(home: &Home, listen: &str) -> anyhow::Result<Listeners> {
        home.ensure()?;
        let socket = home.socket();
        if control::call(&socket, &ControlRequest::Ping, Duration::from_secs(2)).await.is_ok() {
            anyhow::bail!("a peer daemon is already running for {}", home.dir.display());
        }
        let _ = std::fs::remove_file(&socket);
        let listen_addr: SocketAddr = listen.parse().with_context(|| format!("--listen {listen:?} is not IP:PORT"))?;
        let pieces = TcpListener::bind(listen_addr).await.with_context(|| format!("cannot listen on {listen_addr}"))?;
        let control = control_server::bind(home)?;
        Ok(Listeners { pieces, control })
    }
}

/// Runs the daemon on `listeners` until `shutdown` is cancelled (the CLI cancels it on SIGINT
/// and SIGTERM), then tells the tracker it is going and waits for its servers to end.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> anyhow::Result<()> {
    let home = config.home.clone();
    let local = listeners.pieces.local_addr()?;
    let advertise = config.advertise.clone();
    let daemon = Arc::new(Daemon::start(config, local, &shutdown)?);
    let st = daemon.standing.clone();
    crate::home::write_json(
        &home.daemon_info_path(),
        &serde_json::json!({"pid": std::process::id(), "peer_addr": st.peer_addr, "listen": local.to_string()}),
    )?;
    tracing::info!(home = %home.dir.display(), listen = %local, peer_addr = %st.peer_addr, peer_key = %st.peer_key_hex, "peer daemon started");
    println!("{}", startup_line(&home.dir.display().to_string(), local, advertise.as_deref()));

    let serve_task = tokio::spawn(serve::run(daemon.clone(), listeners.pieces, shutdown.child_token()));
    let control_task = tokio::spawn(control_server::run(daemon.clone(), listeners.control, shutdown.child_token()));
    {
        let d = daemon.clone();
        tokio::spawn(async move {
            d.standing.announce().await;
            d.cluster_key.check_against(&d.standing.tracker).await;
            // Logged in while this daemon was down: what a logout paused goes on.
            download::manage::resume_after_login(&d.downloads).await;
        });
    }
    tokio::spawn(keepalive(st.clone(), daemon.shares.clone(), shutdown.child_token()));

    shutdown.cancelled().await;
    tracing::info!("stopping");
    going_away(&st).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = serve_task.await;
        let _ = control_task.await;
    })
    .await;
    let _ = std::fs::remove_file(home.socket());
    let _ = std::fs::remove_file(home.daemon_info_path());
    Ok(())
}

impl Daemon {
    /// The handles of a daemon for `config` serving pieces on `local`; every download read
    /// from downloads.json gets its task before anyone can ask about it.
    fn start(config: Config, local: SocketAddr, shutdown: &CancellationToken) -> anyhow::Result<Daemon> {
        let Config { home, trackers, policy, advertise, faults } = config;
        // Only the port of what we announce is used: the tracker lists the host our calls come from.
        let peer_addr = advertise.clone().unwrap_or_else(|| local.to_string());
        let identity = crate::identity::PeerIdentity::load_or_create(&home.dir)?;
        let channel = Arc::new(channel::Channel::new(&identity)?);
        if channel::UNENCRYPTED_BENCH_BUILD {
            tracing::warn!(
                "built with null-cipher-for-bench: piece connections are NOT encrypted (benchmark build, never for use)"
            );
            eprintln!("warning: this peer was built with null-cipher-for-bench: piece connections are NOT encrypted");
        }
        let standing = Arc::new(Standing {
            home: home.clone(),
            tracker: trackers.client(policy),
            peer_addr,
            peer_key_hex: identity.public_hex(),
            announce: AnnounceState::new(local, advertise),
        });
        let shares = Arc::new(ShareTable::load(&home)?);
        let piece_lists = PieceListStore::new(&home);
        let downloads = download::Downloads {
            table: Arc::new(download::DownloadTable::load(&home)?),
            standing: standing.clone(),
            shares: shares.clone(),
            channel: channel.clone(),
            piece_lists: piece_lists.clone(),
            shutdown: shutdown.clone(),
        };
        download::resume_all(&downloads);
        Ok(Daemon {
            standing,
            channel,
            cluster_key: tickets::ClusterKey::load(&home.dir),
            shares,
            downloads,
            piece_lists,
            list_rebuild: tokio::sync::Mutex::new(()),
            faults,
        })
    }
}

/// Tells the tracker we are going: our shares stop being listed now, not in 30 s.
async fn going_away(st: &Standing) {
    let Some(client) = st.session_client() else { return };
    let going = async {
        let _after_any_alive = st.announce.alive_calls.lock().await;
        client.going_away(&st.peer_addr, &st.peer_key_hex).await
    };
    match tokio::time::timeout(Duration::from_secs(3), going).await {
        Ok(Ok(_)) => tracing::info!("told the tracker this daemon is going away"),
        Ok(Err(e)) => tracing::warn!("cannot tell the tracker this daemon is going away: {e}"),
        Err(_) => tracing::warn!("cannot tell the tracker this daemon is going away: no answer within 3 s"),
    }
}

/// The daemon's first line on stdout: where it listens and what other peers are told. The
/// address they actually see is printed once the tracker has answered the announce.
fn startup_line(home: &str, local: SocketAddr, advertise: Option<&str>) -> String {
    let port = match advertise {
        Some(adv) => format!("port {} (--advertise {adv})", adv.rsplit_once(':').map_or("?", |(_, p)| p)),
        None => format!("port {}", local.port()),
    };
    let all = if local.ip().is_unspecified() { "all interfaces; " } else { "" };
    format!(
        "peer daemon for {home} serving pieces on {local} ({all}other peers are told {port} at the address the \
         tracker sees this daemon's calls come from)"
    )
}
