//! The Raft network client: one HTTPS connection pool shared by all targets, a timeout on
//! every RPC, and connection failures reported as `Unreachable` so openraft backs off.
//!
//! Mutual TLS (crate::tls): the client presents this node's certificate, and dials node N as
//! `https://node-N.tracker.invalid/...`, so rustls checks that the server's certificate was
//! signed by the cluster CA *and* names node N. [`NodeResolver`] turns those names into the
//! nodes' addresses (from the membership, or a test route).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use raft_store::{NodeId, TrackerNode, TypeConfig};
use serde::de::DeserializeOwned;

use super::wire;

/// Bound on connecting to another node: loopback or LAN, a peer that takes longer is down.
const CONNECT_TIMEOUT_MS: u64 = 250;

/// Fault-injection hook for test harnesses: `TRACKER_RAFT_ROUTES="2=127.0.0.1:9102,3=..."`
/// makes this node send its Raft RPCs for node 2 to that address (a proxy the harness controls)
/// instead of the address in the membership. Unset in production. Because an inherited variable
/// would silently reroute Raft traffic, every route must be a loopback socket address (a proxy
/// on this machine), anything else stops the node at start, and a set variable is logged at
/// warn level.
pub const RAFT_ROUTES_ENV: &str = "TRACKER_RAFT_ROUTES";

/// How long a pooled connection may idle before the client closes it; shorter than the
/// server's idle limit (`listener::IDLE_TIMEOUT_MS`), so the client always closes first.
const POOL_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Idle connections kept per node (openraft keeps one replication stream per target, plus votes).
const POOL_MAX_IDLE_PER_NODE: usize = 4;

#[derive(Clone)]
pub struct NetworkFactory {
    http: reqwest::Client,
    secret: Option<String>,
    routes: HashMap<NodeId, String>,
    resolver: NodeResolver,
    backoff: BackoffMs,
    failures: crate::logging::PeerFailures,
    voters: Voters,
}

/// The voters of this node's latest membership (all configs of a joint one), kept current by
/// [`Voters::follow`]. Empty until the node has a membership: then nothing is filtered.
#[derive(Clone, Default)]
pub struct Voters(Arc<RwLock<std::collections::BTreeSet<NodeId>>>);

impl Voters {
    /// Keeps the set equal to `raft`'s membership until the node stops.
    pub async fn follow(self, raft: raft_store::Raft) {
        let mut metrics = raft.metrics();
        loop {
            let ids: std::collections::BTreeSet<NodeId> =
                metrics.borrow().membership_config.membership().voter_ids().collect();
            *self.0.write().unwrap_or_else(|p| p.into_inner()) = ids;
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether a higher vote that node `from` answered an append with must be ignored: `from`
    /// is not a voter of this leader's membership (it was just removed, or is a learner), so it
    /// cannot lead and its term must not depose this leader (openraft 0.9 steps down on any
    /// higher vote in an append reply; a node removed while unreachable answers a stale append
    /// after it started campaigning). The voters refuse its vote requests (raft_net::server);
    /// this closes the same door on the reply path. Safe: a leader that is really stale learns
    /// it from the voters, without whom it commits nothing.
    pub fn ignores_higher_vote_of(&self, from: NodeId) -> bool {
        let voters = self.0.read().unwrap_or_else(|p| p.into_inner());
        !voters.is_empty() && !voters.contains(&from)
    }
}

/// Resolves `node-N.tracker.invalid` to node N's Raft address. The names never reach DNS.
#[derive(Clone, Default)]
pub struct NodeResolver {
    addrs: Arc<RwLock<HashMap<NodeId, String>>>,
}

impl NodeResolver {
    fn set(&self, id: NodeId, addr: &str) {
        let mut m = self.addrs.write().unwrap_or_else(|p| p.into_inner());
        if m.get(&id).map(String::as_str) != Some(addr) {
            m.insert(id, addr.to_string());
        }
    }
}

impl reqwest::dns::Resolve for NodeResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addr = crate::tls::node_id_of_name(name.as_str())
            .and_then(|id| self.addrs.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned());
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addr = addr.ok_or_else(|| format!("{name} is not a node this one knows the address of"))?;
            // The cluster file's addresses are ip:port; a host name still resolves.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr.as_str()).await?.collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// How often the leader retries a node it cannot reach: from `first_ms`, doubling, capped at
/// `max_ms`. openraft's default is a flat 500 ms, longer than our election timeout: a node
/// restarted after a crash would not hear from the leader in time, campaign with a stale log,
/// and force a needless election (seen in the failover bench). The cap is half the minimum
/// election timeout, so a returning node always hears a heartbeat before its timer fires.
#[derive(Clone, Copy, Debug)]
pub struct BackoffMs {
    pub first_ms: u64,
    pub max_ms: u64,
}

impl BackoffMs {
    pub fn for_timings(heartbeat_ms: u64, election_timeout_min_ms: u64) -> Self {
        let max_ms = (election_timeout_min_ms / 2).max(10);
        BackoffMs { first_ms: heartbeat_ms.clamp(5, max_ms), max_ms }
    }

    fn iter(self) -> impl Iterator<Item = Duration> + Send + 'static {
        let mut next = self.first_ms;
        std::iter::from_fn(move || {
            let d = Duration::from_millis(next);
            next = (next * 2).min(self.max_ms);
            Some(d)
        })
    }
}

/// Parses `id=ip:port` pairs separated by commas. A malformed pair, a repeated id or an
/// address that is not a loopback socket address is an error.
fn parse_routes(s: &str) -> anyhow::Result<HashMap<NodeId, String>> {
    let mut routes = HashMap::new();
    for p in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) =
            p.split_once('=').ok_or_else(|| anyhow::anyhow!("{RAFT_ROUTES_ENV}: expected id=ip:port, got {p:?}"))?;
        let id: NodeId = id.trim().parse().map_err(|_| anyhow::anyhow!("{RAFT_ROUTES_ENV}: bad node id in {p:?}"))?;
        let sock: std::net::SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{RAFT_ROUTES_ENV}: {addr:?} is not an ip:port address"))?;
        if !sock.ip().is_loopback() {
            anyhow::bail!(
                "{RAFT_ROUTES_ENV}: {sock} is not a loopback address; this test hook only reroutes to a local proxy"
            );
        }
        if routes.insert(id, sock.to_string()).is_some() {
            anyhow::bail!("{RAFT_ROUTES_ENV}: node {id} is routed twice");
        }
    }
    Ok(routes)
}

impl NetworkFactory {
    /// `tls` is this node's client config (crate::tls::NodeTls::client).
    pub fn new(tls: &rustls::ClientConfig, secret: Option<String>, backoff: BackoffMs) -> anyhow::Result<Self> {
        let resolver = NodeResolver::default();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .https_only(true)
            .dns_resolver(Arc::new(resolver.clone()))
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_NODE)
            .tcp_nodelay(true)
            .no_proxy()
            .build()?;
        let routes = match std::env::var(RAFT_ROUTES_ENV) {
            Ok(s) => {
                let routes = parse_routes(&s)?;
                tracing::warn!(
                    ?routes,
                    "{RAFT_ROUTES_ENV} is set: Raft traffic is rerouted for fault injection (a test hook)"
                );
                routes
            }
            Err(_) => Default::default(),
        };
        Ok(NetworkFactory {
            http,
            secret,
            routes,
            resolver,
            backoff,
            failures: Default::default(),
            voters: Voters::default(),
        })
    }

    /// The voter set this factory's connections consult; follow it with [`Voters::follow`].
    pub fn voters(&self) -> Voters {
        self.voters.clone()
    }
}

pub struct Connection {
    http: reqwest::Client,
    secret: Option<String>,
    target: NodeId,
    base: String,
    backoff: BackoffMs,
    failures: crate::logging::PeerFailures,
    voters: Voters,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &TrackerNode) -> Self::Network {
        self.resolver.set(target, self.routes.get(&target).unwrap_or(&node.raft));
        Connection {
            http: self.http.clone(),
            secret: self.secret.clone(),
            target,
            // The host is the name the target's certificate must carry; the resolver maps it
            // to the address.
            base: format!("https://{}", crate::tls::node_name(target)),
            backoff: self.backoff,
            failures: self.failures.clone(),
            voters: self.voters.clone(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_PER_TARGET)),
        }
    }
}

/// How long a request may run on after openraft stopped waiting for it (see [`Connection::call`]):
/// past this, the target is taken as gone and the connection is dropped.
const DETACHED_TIMEOUT_MS: u64 = 2_000;
/// Requests in flight to one target, the ones openraft gave up on included. A call that finds
/// them all taken waits for one inside openraft's deadline; nothing unsent is ever cancelled.
const IN_FLIGHT_PER_TARGET: usize = 4;

/// What a detached request ended with, mapped to openraft's errors by the caller.
enum Outcome {
    Body(bytes::Bytes),
    Unreachable(reqwest::Error),
    Network(reqwest::Error),
    Status(std::io::Error),
}

impl Connection {
    /// Posts one encoded RPC body and decodes openraft's answer. Connection failures and
    /// timeouts are `Unreachable` (openraft backs off); anything else is a network error.
    ///
    /// The request runs in a task of its own, which openraft's deadline does not cancel.
    /// openraft 0.9 gives every AppendEntries, heartbeats included, a deadline of one heartbeat
    /// interval; an HTTP/1.1 request cancelled half-way closes its connection, so under load
    /// (a follower's fsync, a slow round trip) one late answer used to cost a new TCP and TLS
    /// handshake for the next append, which was late in turn: the follower heard nothing for
    /// an election timeout and campaigned. Now the late request still reaches the follower (it
    /// resets its timer and appends), its answer is dropped, the connection goes back to the
    /// pool, and openraft's next append carries on from what it knows.
    async fn call<Resp, E>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, TrackerNode, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut builder = self
            .http
            .post(format!("{}{}", self.base, path))
            .timeout(timeout.max(Duration::from_millis(DETACHED_TIMEOUT_MS)))
            .header(reqwest::header::CONTENT_TYPE, wire::CONTENT_TYPE)
            .body(body);
        if let Some(s) = &self.secret {
            builder = builder.header(proto::api::CLUSTER_SECRET, s);
        }
        let permit = self.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let failures = self.failures.clone();
        let target = self.target;
        tokio::spawn(async move {
            let outcome = send(builder, target).await;
            match &outcome {
                Outcome::Unreachable(e) => failures.failed(target, &error_chain(e)),
                Outcome::Body(_) | Outcome::Status(_) => failures.succeeded(target),
                Outcome::Network(_) => {}
            }
            drop(permit);
            let _ = tx.send(outcome);
        });
        // Dropped before the answer came (openraft's deadline, or ours), it reports the call
        // as late: one line and summaries per node, in place of openraft's ERROR per append.
        let mut pending = Pending { failures: &self.failures, target, what: path, deadline: timeout, answered: false };
        let outcome = tokio::time::timeout(timeout, rx).await.map_err(|_| {
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer in {timeout:?}"));
            RPCError::Unreachable(Unreachable::new(&e))
        })?;
        pending.answered = true;
        let bytes = match outcome.expect("the request task always answers") {
            Outcome::Body(b) => b,
            // Logged in the task, rate-limited per node; openraft's own line per retry is held
            // back by the default log filter (crate::logging).
            Outcome::Unreachable(e) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Outcome::Network(e) => return Err(RPCError::Network(NetworkError::new(&e))),
            Outcome::Status(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            wire::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A call waiting for its answer; see [`Connection::call`].
struct Pending<'a> {
    failures: &'a crate::logging::PeerFailures,
    target: NodeId,
    what: &'a str,
    deadline: Duration,
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.failures.late(self.target, self.what, self.deadline);
        }
    }
}

/// Sends one request and reads its whole answer, so the connection is reusable afterwards.
async fn send(builder: reqwest::RequestBuilder, target: NodeId) -> Outcome {
    let resp = match builder.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() || e.is_timeout() => return Outcome::Unreachable(e),
        Err(e) => return Outcome::Network(e),
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Outcome::Status(std::io::Error::other(format!("node {target} answered {status}: {text}")));
    }
    match resp.bytes().await {
        Ok(b) => Outcome::Body(b),
        Err(e) if e.is_timeout() => Outcome::Unreachable(e),
        Err(e) => Outcome::Network(e),
    }
}

/// An error and its sources, innermost last: `connect error: Connection refused (os error 111)`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

fn encode_err<E: std::error::Error>(e: wire::WireError) -> RPCError<NodeId, TrackerNode, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<TypeConfig> for Connection {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(self.backoff.iter())
    }

    /// Sends the leading entries that fit in `MAX_APPEND_BATCH_BYTES`; when the batch was cut,
    /// a success is reported as a partial success up to the last entry sent, and openraft
    /// sends the rest next. Every RPC is bounded in bytes, so it fits the time limit openraft
    /// gives it (the heartbeat interval), whatever the entries weigh.
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, TrackerNode, RaftError<NodeId>>> {
        let enc = wire::encode_append(&req, wire::MAX_APPEND_BATCH_BYTES).map_err(encode_err)?;
        if enc.cut_at.is_some() {
            tracing::debug!(
                target = self.target,
                sent = enc.entries_sent,
                of = req.entries.len(),
                "append batch cut at the byte bound"
            );
        }
        let resp: AppendEntriesResponse<NodeId> = self.call("/raft/append", enc.body, option.hard_ttl()).await?;
        if let AppendEntriesResponse::HigherVote(vote) = &resp {
            if self.voters.ignores_higher_vote_of(self.target) {
                let e = std::io::Error::other(format!(
                    "node {} answered with a higher vote ({vote}) but is not a voter of this cluster: ignored",
                    self.target
                ));
                self.failures.failed(self.target, &e.to_string());
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        }
        Ok(match (resp, enc.cut_at) {
            (AppendEntriesResponse::Success, Some(last_sent)) => AppendEntriesResponse::PartialSuccess(Some(last_sent)),
            (other, _) => other,
        })
    }

    /// One snapshot chunk (`SNAPSHOT_CHUNK_BYTES`, set as openraft's chunk size) under the
    /// snapshot timeout, not the heartbeat's.
    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, TrackerNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let body = wire::encode_snapshot(req).map_err(encode_err)?;
        self.call("/raft/snapshot", body, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, TrackerNode, RaftError<NodeId>>> {
        let body = wire::encode(&req).map_err(encode_err)?;
        self.call("/raft/vote", body, option.hard_ttl()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openraft drops an RPC at its deadline (one heartbeat for appends). The request must run
    /// on: it reaches the target, and its connection goes back to the pool, so the next RPC
    /// does not pay a new TCP and TLS handshake (which under load made the next one late too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_rpc_past_its_deadline_still_completes_and_its_connection_is_reused() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let toml = "[[node]]\nid = 1\napi = \"127.0.0.1:1\"\nraft = \"127.0.0.1:2\"\ndata_dir = \"d1\"\n\
                    [[node]]\nid = 2\napi = \"127.0.0.1:3\"\nraft = \"127.0.0.1:4\"\ndata_dir = \"d2\"\n";
        let cfg = proto::cluster::ClusterConfig::parse(toml, &dir.path().join("cluster.toml")).unwrap();
        let (one, two) = (crate::tls::for_node(&cfg, 1).unwrap(), crate::tls::for_node(&cfg, 2).unwrap());

        // Node 2: answers every vote, the first one 300 ms late; counts connections and answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let router = {
            let answered = answered.clone();
            axum::Router::new().route(
                "/raft/vote",
                axum::routing::post(move || {
                    let answered = answered.clone();
                    async move {
                        if answered.load(Ordering::SeqCst) == 0 {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let vote = openraft::Vote::new(1, 1);
                        let ok: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
                            Ok(VoteResponse { vote, vote_granted: true, last_log_id: None });
                        answered.fetch_add(1, Ordering::SeqCst);
                        wire::encode(&ok).unwrap()
                    }
                }),
            )
        };
        {
            let (accepted, acceptor) = (accepted.clone(), tokio_rustls::TlsAcceptor::from(two.server.clone()));
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, router) = (acceptor.clone(), router.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let mut router = router.clone();
                            async move { tower_service::Service::call(&mut router, req).await }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        }

        let mut factory = NetworkFactory::new(&one.client, None, BackoffMs::for_timings(20, 60)).unwrap();
        let node = TrackerNode { api: "127.0.0.1:3".into(), raft: addr.to_string() };
        let mut conn = factory.new_client(2, &node).await;
        let req = || VoteRequest::new(openraft::Vote::new(1, 1), None);
        let late = conn.vote(req(), RPCOption::new(Duration::from_millis(50))).await;
        assert!(matches!(late, Err(RPCError::Unreachable(_))), "past its deadline: {late:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // Answered, and its task has read the whole answer (the permit is given back after
        // that): only then is its connection back in the pool.
        while answered.load(Ordering::SeqCst) == 0 || conn.in_flight.available_permits() < IN_FLIGHT_PER_TARGET {
            assert!(std::time::Instant::now() < deadline, "the late request never completed at node 2");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let on_time = conn.vote(req(), RPCOption::new(Duration::from_millis(2_000))).await;
        assert!(on_time.is_ok(), "{on_time:?}");
        assert_eq!(answered.load(Ordering::SeqCst), 2);
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "the late request's connection was reused");
    }

    #[test]
    fn routes_parse_loopback_pairs_only() {
        let r = parse_routes("2=127.0.0.1:9102, 3=127.0.0.5:9103,").unwrap();
        assert_eq!(r.get(&2).map(String::as_str), Some("127.0.0.1:9102"));
        assert_eq!(r.get(&3).map(String::as_str), Some("127.0.0.5:9103"));
        assert!(parse_routes("").unwrap().is_empty());
        for bad in [
            "2",
            "x=127.0.0.1:1",
            "2=localhost:1",
            "2=10.0.0.1:9102",
            "2=127.0.0.1",
            "2=127.0.0.1:1,2=127.0.0.1:2",
            "2=[::1]:x",
        ] {
            assert!(parse_routes(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_routes("4=[::1]:9104").is_ok());
    }

    #[test]
    fn only_a_voters_higher_vote_counts() {
        let voters = Voters::default();
        // No membership yet: nothing is filtered.
        assert!(!voters.ignores_higher_vote_of(4));
        *voters.0.write().unwrap() = [1, 2, 3].into();
        assert!(!voters.ignores_higher_vote_of(2));
        assert!(voters.ignores_higher_vote_of(4), "a removed node or a learner");
    }

    #[test]
    fn backoff_starts_at_the_heartbeat_and_stays_under_half_an_election() {
        let b = BackoffMs::for_timings(20, 60);
        let d: Vec<u64> = b.iter().take(5).map(|d| d.as_millis() as u64).collect();
        assert_eq!(d, vec![20, 30, 30, 30, 30]);
    }
}
