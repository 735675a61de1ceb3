//! cluster.toml: the tracker cluster address book and timings.
//!
//! The file format is part of the user-facing contract (docs/CONTRACT.md, "cluster.toml").
//! Parsing is strict: unknown keys, duplicate ids or addresses, and timings that cannot
//! work are rejected, and every error names the file, the 1-based line and the problem,
//! because the binaries print it verbatim and exit 2.
//!
//! Mutual TLS between the nodes is always on; [`TlsSettings`] says where the certificates come
//! from: files the operator named (`[cluster.tls] ca`, per node `cert` and `key`), or, when the
//! file names none, a CA and node certificates that `tracker-node` creates in `tls/` beside the
//! file on first start.
//!
//! [`ClusterConfig::parse`] is pure (text in, typed value out). [`ClusterConfig::load`]
//! is the one place in this crate that touches the file system: it reads the file and
//! parses it, so that "cannot read" and "line 7 is wrong" come out of the same error type.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Raft heartbeat interval when `[cluster] heartbeat_ms` is absent.
pub const DEFAULT_HEARTBEAT_MS: u64 = 50;
/// Randomised election timeout range when `[cluster] election_timeout_ms` is absent.
pub const DEFAULT_ELECTION_TIMEOUT_MS: (u64, u64) = (150, 300);
/// The folder, beside the cluster file, where certificates are created when the file names none.
pub const GENERATED_TLS_DIR: &str = "tls";
/// The cluster's ticket signing key (Ed25519, PKCS#8 PEM) in a generated or `certs` folder.
pub const TICKET_KEY_FILE: &str = "ticket.key";
/// The operator's client certificate and key, beside the CA: admin calls need them (over TLS).
pub const OPERATOR_CERT_FILE: &str = "operator.pem";
pub const OPERATOR_KEY_FILE: &str = "operator.key";
/// Every name in the cluster's certificates ends so (`.invalid` is reserved: no DNS answers for
/// it, so such a name can only mean "of this cluster"): `node-<id>` + it for the nodes.
pub const TLS_NAME_SUFFIX: &str = ".tracker.invalid";
/// The one name of the operator's certificate.
pub const OPERATOR_TLS_NAME: &str = "operator.tracker.invalid";

/// Log entries since the last snapshot that trigger a new one, when
/// `[cluster] snapshot_logs_threshold` is absent.
pub const DEFAULT_SNAPSHOT_LOGS_THRESHOLD: u64 = 5000;
/// How long `members add` waits for the new node to catch up as a learner before it gives up
/// and takes it out again, when `[cluster] members_add_timeout_ms` is absent.
pub const DEFAULT_MEMBERS_ADD_TIMEOUT_MS: u64 = 30_000;
/// The range `members_add_timeout_ms` may take: at least a second, at most an hour.
pub const MEMBERS_ADD_TIMEOUT_RANGE_MS: (u64, u64) = (1_000, 3_600_000);
/// How long the leader keeps listing a sharer whose daemon it has not heard from, when
/// `[cluster] peer_liveness_ms` is absent. Daemons call every third of it (docs/API.md).
pub const DEFAULT_PEER_LIVENESS_MS: u64 = 30_000;
/// The range `peer_liveness_ms` may take: at least 3 s (a daemon calls every second then), at
/// most 10 minutes.
pub const PEER_LIVENESS_RANGE_MS: (u64, u64) = (3_000, 600_000);

/// Groups one user may own when `[limits] groups_per_user` is absent.
pub const DEFAULT_GROUPS_PER_USER: u64 = 1_000;
/// Items (file records) one user may have created when `[limits] files_per_user` is absent.
pub const DEFAULT_FILES_PER_USER: u64 = 100_000;

/// Per-user quotas (`[limits]`), checked by the leader before it proposes a write. 0 = no limit.
///
/// Each node reads its own file, so the limits are a node's setting, never part of the
/// replicated state: a change takes effect on a node when it restarts (a rolling restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Groups a user owns.
    pub groups_per_user: u64,
    /// Items a user shares: file records the user created (see docs/OPERATIONS.md, "Quotas").
    pub files_per_user: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { groups_per_user: DEFAULT_GROUPS_PER_USER, files_per_user: DEFAULT_FILES_PER_USER }
    }
}

impl Limits {
    /// Whether one more is allowed to a user who holds `held` under `limit` (0 = no limit).
    pub fn allows(limit: u64, held: u64) -> bool {
        limit == 0 || held < limit
    }
}

/// A parsed and validated cluster file.
///
/// Invariants (checked by [`ClusterConfig::parse`]): at least one node; node ids are
/// unique and ≥ 1; every `api` and `raft` address is distinct across all nodes;
/// `0 < heartbeat_ms < election_timeout_ms.0 < election_timeout_ms.1`;
/// `initial_members`, when set, is a non-empty set of listed ids.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The file this configuration came from, as given to `load`/`parse`.
    pub path: PathBuf,
    pub heartbeat_ms: u64,
    /// `(min, max)` of the randomised election timeout.
    pub election_timeout_ms: (u64, u64),
    /// Shared secret for node-to-node and admin calls; never printed by `Debug`.
    pub secret: Option<String>,
    /// Voters on first start when set; otherwise every listed node.
    pub initial_members: Option<Vec<u64>>,
    pub snapshot_logs_threshold: u64,
    /// How long the leader waits for a node being added to catch up before refusing the add.
    pub members_add_timeout_ms: u64,
    /// How long a sharer stays listed after its daemon was last heard from.
    pub peer_liveness_ms: u64,
    /// Per-user quotas (`[limits]`), defaults when the section is absent.
    pub limits: Limits,
    /// The address book, in file order.
    pub nodes: Vec<NodeConfig>,
    /// Where each node's certificate and key and the cluster CA are (mutual TLS on the Raft
    /// port, always on).
    pub tls: TlsSettings,
}

/// Where the cluster's TLS files are. Paths are resolved against the cluster file's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSettings {
    /// The file names no certificate: `tracker-node` creates the CA (`ca.pem`, `ca.key`), the
    /// cluster's ticket key (`ticket.key`) and each node's pair (`node-<id>.pem`,
    /// `node-<id>.key`) in `dir` on a node's first start.
    Generated { dir: PathBuf },
    /// `[cluster.tls] ca = ...` names the CA certificate(s); each node's `cert` and `key`
    /// default to `node-<id>.pem` and `node-<id>.key` in the CA file's folder.
    Named {
        ca: PathBuf,
        /// The line of `ca =`.
        ca_line: usize,
        /// Nodes that name their own `cert` and `key`.
        nodes: BTreeMap<u64, NamedPair>,
        /// `ticket_key = ...`: the cluster's ticket signing key and the line that names it.
        /// Required to run a node (see [`ClusterConfig::ticket_key_file`]); optional here so
        /// that `tracker-node certs` can make it for a file that does not name it yet.
        ticket_key: Option<(PathBuf, usize)>,
    },
}

/// A node's `cert` and `key` as named in its `[[node]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPair {
    pub cert: PathBuf,
    pub cert_line: usize,
    pub key: PathBuf,
    pub key_line: usize,
}

/// One TLS file of a node: where it is, and where the cluster file named it (`None` when it
/// was not named: a generated file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFile {
    pub path: PathBuf,
    /// The cluster file's line that names it, or that it defaults from.
    pub line: Option<usize>,
    /// The key that names it: `ca`, `cert`, `key` or `ticket_key`.
    pub key: &'static str,
}

/// The three files node `id` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTlsFiles {
    pub ca: TlsFile,
    pub cert: TlsFile,
    pub key: TlsFile,
    /// Whether the operator named them (never create named files).
    pub named: bool,
}

/// The file name of node `id`'s certificate in a generated or `certs` folder.
pub fn node_cert_file_name(id: u64) -> String {
    format!("node-{id}.pem")
}

/// The file name of node `id`'s private key in a generated or `certs` folder.
pub fn node_key_file_name(id: u64) -> String {
    format!("node-{id}.key")
}

/// One `[[node]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub id: u64,
    /// Where peers and operators talk to this node.
    pub api: SocketAddr,
    /// Node-to-node Raft traffic.
    pub raft: SocketAddr,
    /// Resolved: a relative `data_dir` is joined to the cluster file's folder.
    pub data_dir: PathBuf,
}

/// Why a cluster file was not accepted. `Display` is one complete sentence that starts
/// with the file (and line, where there is one), ready to print after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, a missing key or a value of the wrong type.
    /// `message` is toml's own one-line description.
    #[error("{}: {message}", at(path, *line))]
    Syntax { path: PathBuf, line: Option<usize>, message: String },
    /// Well-formed TOML whose contents break a rule of the cluster file.
    #[error("{}: {problem}", at(path, *line))]
    Invalid { path: PathBuf, line: Option<usize>, problem: Problem },
    /// `--id N` names a node that the file does not list.
    #[error("{}: node {id} is not listed (listed ids: {})", path.display(), join_ids(listed))]
    NodeNotListed { path: PathBuf, id: u64, listed: Vec<u64> },
}

impl ConfigError {
    /// The 1-based line the error points at, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } | ConfigError::Invalid { line, .. } => *line,
            ConfigError::Read { .. } | ConfigError::NodeNotListed { .. } => None,
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. }
            | ConfigError::Syntax { path, .. }
            | ConfigError::Invalid { path, .. }
            | ConfigError::NodeNotListed { path, .. } => path,
        }
    }
}

/// The rule a well-formed cluster file broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no [[node]] entries")]
    NoNodes,
    #[error("heartbeat_ms must be at least 1")]
    ZeroHeartbeat,
    #[error("election_timeout_ms must be [min, max] with 0 < min < max")]
    ElectionTimeout,
    #[error("heartbeat_ms ({heartbeat_ms}) must be less than election_timeout_ms min ({election_min_ms})")]
    HeartbeatNotBelowElection { heartbeat_ms: u64, election_min_ms: u64 },
    #[error("snapshot_logs_threshold must be at least 1")]
    ZeroSnapshotThreshold,
    #[error("members_add_timeout_ms must be from {} to {}", MEMBERS_ADD_TIMEOUT_RANGE_MS.0, MEMBERS_ADD_TIMEOUT_RANGE_MS.1)]
    MembersAddTimeoutOutOfRange,
    #[error("peer_liveness_ms must be from {} to {}", PEER_LIVENESS_RANGE_MS.0, PEER_LIVENESS_RANGE_MS.1)]
    PeerLivenessOutOfRange,
    #[error("secret must not be empty (remove the key to run without one)")]
    EmptySecret,
    #[error("node id must be at least 1")]
    ZeroId,
    #[error("duplicate node id {id} (first at line {first_line})")]
    DuplicateId { id: u64, first_line: usize },
    #[error("{key} {value:?} is not an address like \"127.0.0.1:7001\"")]
    BadAddress { key: &'static str, value: String },
    #[error("{key} must not be empty")]
    EmptyTlsPath { key: &'static str },
    #[error("node {id} names a cert but no key (name both, or neither to use node-{id}.pem and node-{id}.key beside the CA)")]
    CertWithoutKey { id: u64 },
    #[error("node {id} names a key but no cert (name both, or neither to use node-{id}.pem and node-{id}.key beside the CA)")]
    KeyWithoutCert { id: u64 },
    #[error("node {id} names a cert and key but the file has no [cluster.tls] ca = \"...\" to check them against")]
    NodeTlsWithoutCa { id: u64 },
    #[error("{key} {} cannot be read: {reason}", path.display())]
    TlsFileUnreadable { key: &'static str, path: PathBuf, reason: String },
    #[error("{key} {} is not usable: {reason}", path.display())]
    TlsFileInvalid { key: &'static str, path: PathBuf, reason: String },
    #[error(
        "[cluster.tls] names the cluster's TLS files but no ticket_key; add ticket_key = \"{}\" under [cluster.tls] \
         (make the key with: tracker-node certs --config FILE, which writes {TICKET_KEY_FILE} beside the CA; copy it, \
         mode 0600, to every node)",
        suggested.display()
    )]
    NoTicketKey { suggested: PathBuf },
    #[error("{key} {addr} has port 0; list the port the node listens on")]
    ZeroPort { key: &'static str, addr: SocketAddr },
    #[error("duplicate address {addr} (also node {other_id}'s {other_key})")]
    DuplicateAddress { addr: SocketAddr, other_id: u64, other_key: &'static str },
    #[error("data_dir must not be empty")]
    EmptyDataDir,
    #[error("[limits] {key} must be a whole number, 0 (no limit) or more; got {got}")]
    BadLimit { key: &'static str, got: String },
    #[error("initial_members must name at least one node")]
    EmptyInitialMembers,
    #[error("initial_members names node {id} more than once")]
    DuplicateInitialMember { id: u64 },
    #[error("initial_members names node {id}, which has no [[node]] entry (listed ids: {})", join_ids(listed))]
    UnknownInitialMember { id: u64, listed: Vec<u64> },
}

fn at(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

fn join_ids(ids: &[u64]) -> String {
    let parts: Vec<String> = ids.iter().map(u64::to_string).collect();
    parts.join(", ")
}

impl fmt::Debug for ClusterConfig {
    // Hand-written so that logging a config never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("path", &self.path)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("election_timeout_ms", &self.election_timeout_ms)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("initial_members", &self.initial_members)
            .field("snapshot_logs_threshold", &self.snapshot_logs_threshold)
            .field("members_add_timeout_ms", &self.members_add_timeout_ms)
            .field("peer_liveness_ms", &self.peer_liveness_ms)
            .field("limits", &self.limits)
            .field("nodes", &self.nodes)
            .field("tls", &self.tls)
            .finish()
    }
}

// The file as TOML sees it. Values are `Spanned` so that semantic errors found after
// deserialisation can still point at the line they came from.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    node: Vec<RawNode>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a [limits] table")]
struct RawLimits {
    // Read as any value so that the error names the key and says what it takes.
    groups_per_user: Option<Spanned<toml::Value>>,
    files_per_user: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    heartbeat_ms: Option<Spanned<u64>>,
    election_timeout_ms: Option<Spanned<Vec<u64>>>,
    secret: Option<Spanned<String>>,
    initial_members: Option<Spanned<Vec<u64>>>,
    snapshot_logs_threshold: Option<Spanned<u64>>,
    members_add_timeout_ms: Option<Spanned<u64>>,
    peer_liveness_ms: Option<Spanned<u64>>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: Spanned<String>,
    ticket_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Spanned<u64>,
    api: Spanned<String>,
    raft: Spanned<String>,
    data_dir: Spanned<String>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

/// Turns byte offsets into 1-based line numbers for one file's text.
struct Lines<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Lines<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn line_of_span(&self, span: Range<usize>) -> usize {
        self.line_of(span.start)
    }

    fn invalid(&self, line: Option<usize>, problem: Problem) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_path_buf(), line, problem }
    }

    fn invalid_at<T>(&self, value: &Spanned<T>, problem: Problem) -> ConfigError {
        self.invalid(Some(self.line_of_span(value.span())), problem)
    }
}

/// `initial_members`, when set: a non-empty set of listed ids.
fn check_initial_members(
    lines: &Lines,
    initial_members: Option<Spanned<Vec<u64>>>,
    listed: &[u64],
) -> Result<Option<Vec<u64>>, ConfigError> {
    Ok(match initial_members {
        None => None,
        Some(members) => {
            let ids = members.get_ref();
            if ids.is_empty() {
                return Err(lines.invalid_at(&members, Problem::EmptyInitialMembers));
            }
            let mut seen = BTreeSet::new();
            for &id in ids {
                if !listed.contains(&id) {
                    let listed = listed.to_vec();
                    return Err(lines.invalid_at(&members, Problem::UnknownInitialMember { id, listed }));
                }
                if !seen.insert(id) {
                    return Err(lines.invalid_at(&members, Problem::DuplicateInitialMember { id }));
                }
            }
            Some(members.into_inner())
        }
    })
}

/// An optional number of `[cluster]`: `default` when absent, `problem` (at its line) when
/// outside `range` (both ends included).
fn check_range(
    lines: &Lines,
    value: &Option<Spanned<u64>>,
    range: (u64, u64),
    default: u64,
    problem: Problem,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if (range.0..=range.1).contains(v.get_ref()) => Ok(*v.get_ref()),
        Some(v) => Err(lines.invalid_at(v, problem)),
    }
}

impl ClusterConfig {
    /// Reads and parses the cluster file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates cluster file `text`; `path` is where it came from, used in
    /// error messages and to resolve relative `data_dir`s. Does no I/O.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let lines = Lines { text, path };
        let raw: RawFile = toml::from_str(text).map_err(|err| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: err.span().map(|span| lines.line_of_span(span)),
            // toml's messages can span lines ("invalid table header\nexpected ..."); the
            // binaries print one line.
            message: err.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; "),
        })?;

        let (heartbeat_ms, election_timeout_ms) = check_timings(&lines, &raw.cluster)?;

        let secret = match raw.cluster.secret {
            Some(secret) if secret.get_ref().is_empty() => {
                return Err(lines.invalid_at(&secret, Problem::EmptySecret));
            }
            Some(secret) => Some(secret.into_inner()),
            None => None,
        };

        let snapshot_logs_threshold = check_range(
            &lines,
            &raw.cluster.snapshot_logs_threshold,
            (1, u64::MAX),
            DEFAULT_SNAPSHOT_LOGS_THRESHOLD,
            Problem::ZeroSnapshotThreshold,
        )?;
        let members_add_timeout_ms = check_range(
            &lines,
            &raw.cluster.members_add_timeout_ms,
            MEMBERS_ADD_TIMEOUT_RANGE_MS,
            DEFAULT_MEMBERS_ADD_TIMEOUT_MS,
            Problem::MembersAddTimeoutOutOfRange,
        )?;
        let peer_liveness_ms = check_range(
            &lines,
            &raw.cluster.peer_liveness_ms,
            PEER_LIVENESS_RANGE_MS,
            DEFAULT_PEER_LIVENESS_MS,
            Problem::PeerLivenessOutOfRange,
        )?;

        let limits = Limits {
            groups_per_user: check_limit(
                &lines,
                "groups_per_user",
                &raw.limits.groups_per_user,
                DEFAULT_GROUPS_PER_USER,
            )?,
            files_per_user: check_limit(&lines, "files_per_user", &raw.limits.files_per_user, DEFAULT_FILES_PER_USER)?,
        };
        let nodes = check_nodes(&lines, &raw.node)?;
        let listed: Vec<u64> = nodes.iter().map(|n| n.id).collect();
        let tls = check_tls(&lines, raw.cluster.tls.as_ref(), &raw.node)?;

        let initial_members = check_initial_members(&lines, raw.cluster.initial_members, &listed)?;

        Ok(ClusterConfig {
            path: path.to_path_buf(),
            heartbeat_ms,
            election_timeout_ms,
            secret,
            initial_members,
            snapshot_logs_threshold,
            members_add_timeout_ms,
            peer_liveness_ms,
            limits,
            nodes,
            tls,
        })
    }

    /// The CA, certificate and key node `id` uses (whether or not they exist yet).
    pub fn tls_files(&self, id: u64) -> NodeTlsFiles {
        match &self.tls {
            TlsSettings::Generated { dir } => NodeTlsFiles {
                ca: TlsFile { path: dir.join("ca.pem"), line: None, key: "ca" },
                cert: TlsFile { path: dir.join(node_cert_file_name(id)), line: None, key: "cert" },
                key: TlsFile { path: dir.join(node_key_file_name(id)), line: None, key: "key" },
                named: false,
            },
            TlsSettings::Named { ca, ca_line, nodes, .. } => {
                let (cert, key) = match nodes.get(&id) {
                    Some(p) => (
                        TlsFile { path: p.cert.clone(), line: Some(p.cert_line), key: "cert" },
                        TlsFile { path: p.key.clone(), line: Some(p.key_line), key: "key" },
                    ),
                    None => {
                        // Beside the CA, as `tracker-node certs` lays them out; the error
                        // for a missing one points at the `ca =` line they default from.
                        let dir = ca.parent().unwrap_or_else(|| Path::new(""));
                        (
                            TlsFile { path: dir.join(node_cert_file_name(id)), line: Some(*ca_line), key: "cert" },
                            TlsFile { path: dir.join(node_key_file_name(id)), line: Some(*ca_line), key: "key" },
                        )
                    }
                };
                NodeTlsFiles {
                    ca: TlsFile { path: ca.clone(), line: Some(*ca_line), key: "ca" },
                    cert,
                    key,
                    named: true,
                }
            }
        }
    }

    /// The cluster's ticket signing key (shared by every node): `ticket.key` in the generated
    /// folder, or `[cluster.tls] ticket_key`. A file that names its TLS files must name the
    /// ticket key too: nothing named is ever generated.
    pub fn ticket_key_file(&self) -> Result<TlsFile, ConfigError> {
        match &self.tls {
            TlsSettings::Generated { dir } => {
                Ok(TlsFile { path: dir.join(TICKET_KEY_FILE), line: None, key: "ticket_key" })
            }
            TlsSettings::Named { ticket_key: Some((path, line)), .. } => {
                Ok(TlsFile { path: path.clone(), line: Some(*line), key: "ticket_key" })
            }
            TlsSettings::Named { ca, ca_line, ticket_key: None, .. } => {
                // As the file would name it: beside the CA, relative to the file's folder.
                let base = self.path.parent().unwrap_or_else(|| Path::new(""));
                let beside = ca.parent().unwrap_or_else(|| Path::new("")).join(TICKET_KEY_FILE);
                let suggested = beside.strip_prefix(base).map(Path::to_path_buf).unwrap_or(beside);
                Err(ConfigError::Invalid {
                    path: self.path.clone(),
                    line: Some(*ca_line),
                    problem: Problem::NoTicketKey { suggested },
                })
            }
        }
    }

    /// The cluster CA's certificate file, which clients of the API pin (it is public).
    pub fn ca_file(&self) -> TlsFile {
        match &self.tls {
            TlsSettings::Generated { dir } => TlsFile { path: dir.join("ca.pem"), line: None, key: "ca" },
            TlsSettings::Named { ca, ca_line, .. } => TlsFile { path: ca.clone(), line: Some(*ca_line), key: "ca" },
        }
    }

    /// The operator's certificate and key: `operator.pem` and `operator.key` in the folder of
    /// the CA certificate (made there by `tracker-node certs`, and on first start when the file
    /// names no certificate).
    pub fn operator_files(&self) -> (TlsFile, TlsFile) {
        let ca = self.ca_file();
        let dir = ca.path.parent().unwrap_or_else(|| Path::new("")).to_path_buf();
        (
            TlsFile { path: dir.join(OPERATOR_CERT_FILE), line: ca.line, key: "operator certificate" },
            TlsFile { path: dir.join(OPERATOR_KEY_FILE), line: ca.line, key: "operator key" },
        )
    }

    /// An error about one of the TLS files (missing, unreadable, not a certificate), in the
    /// same shape as the file's other errors: file, line, problem.
    pub fn tls_error(&self, file: &TlsFile, problem: Problem) -> ConfigError {
        ConfigError::Invalid { path: self.path.clone(), line: file.line, problem }
    }

    /// The node with this id, if the file lists it.
    pub fn node(&self, id: u64) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The node with this id, or an error (for `--id N`) that names the file and the
    /// ids it does list.
    pub fn require_node(&self, id: u64) -> Result<&NodeConfig, ConfigError> {
        self.node(id).ok_or_else(|| ConfigError::NodeNotListed {
            path: self.path.clone(),
            id,
            listed: self.nodes.iter().map(|n| n.id).collect(),
        })
    }

    /// Every node's api address, in file order.
    pub fn api_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.api).collect()
    }

    /// The voters a brand-new cluster starts with: `initial_members` when set, otherwise
    /// every listed node. Sorted ascending, no duplicates.
    pub fn voters_on_first_start(&self) -> Vec<u64> {
        let ids: BTreeSet<u64> = match &self.initial_members {
            Some(members) => members.iter().copied().collect(),
            None => self.nodes.iter().map(|n| n.id).collect(),
        };
        ids.into_iter().collect()
    }
}

/// Returns `(heartbeat_ms, election_timeout_ms)`, defaults applied, or the first rule broken.
fn check_timings(lines: &Lines<'_>, cluster: &RawCluster) -> Result<(u64, (u64, u64)), ConfigError> {
    let heartbeat_ms = match &cluster.heartbeat_ms {
        Some(h) if *h.get_ref() == 0 => return Err(lines.invalid_at(h, Problem::ZeroHeartbeat)),
        Some(h) => *h.get_ref(),
        None => DEFAULT_HEARTBEAT_MS,
    };
    let election_timeout_ms = match &cluster.election_timeout_ms {
        Some(e) => match e.get_ref().as_slice() {
            &[min, max] if 0 < min && min < max => (min, max),
            _ => return Err(lines.invalid_at(e, Problem::ElectionTimeout)),
        },
        None => DEFAULT_ELECTION_TIMEOUT_MS,
    };
    if heartbeat_ms >= election_timeout_ms.0 {
        // Point at whichever of the two the user wrote; heartbeat first, as it is the
        // one usually meant to be small.
        let line = cluster
            .heartbeat_ms
            .as_ref()
            .map(|h| h.span())
            .or_else(|| cluster.election_timeout_ms.as_ref().map(|e| e.span()))
            .map(|span| lines.line_of_span(span));
        return Err(lines.invalid(
            line,
            Problem::HeartbeatNotBelowElection { heartbeat_ms, election_min_ms: election_timeout_ms.0 },
        ));
    }
    Ok((heartbeat_ms, election_timeout_ms))
}

/// One `[limits]` value: a non-negative integer (0 = no limit), `default` when absent.
fn check_limit(
    lines: &Lines<'_>,
    key: &'static str,
    value: &Option<Spanned<toml::Value>>,
    default: u64,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => match v.get_ref() {
            toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
            other => Err(lines.invalid_at(v, Problem::BadLimit { key, got: other.to_string() })),
        },
    }
}

/// Resolves `[cluster.tls]` and the nodes' `cert`/`key` against the file's folder.
fn check_tls(lines: &Lines<'_>, tls: Option<&RawTls>, nodes: &[RawNode]) -> Result<TlsSettings, ConfigError> {
    let base = lines.path.parent().unwrap_or_else(|| Path::new(""));
    let path_of = |key: &'static str, v: &Spanned<String>| -> Result<PathBuf, ConfigError> {
        if v.get_ref().is_empty() {
            return Err(lines.invalid_at(v, Problem::EmptyTlsPath { key }));
        }
        Ok(base.join(v.get_ref()))
    };
    let mut named = BTreeMap::new();
    for n in nodes {
        let id = *n.id.get_ref();
        match (&n.cert, &n.key) {
            (None, None) => continue,
            (Some(c), None) => return Err(lines.invalid_at(c, Problem::CertWithoutKey { id })),
            (None, Some(k)) => return Err(lines.invalid_at(k, Problem::KeyWithoutCert { id })),
            (Some(c), Some(k)) => {
                if tls.is_none() {
                    return Err(lines.invalid_at(c, Problem::NodeTlsWithoutCa { id }));
                }
                let pair = NamedPair {
                    cert: path_of("cert", c)?,
                    cert_line: lines.line_of_span(c.span()),
                    key: path_of("key", k)?,
                    key_line: lines.line_of_span(k.span()),
                };
                named.insert(id, pair);
            }
        }
    }
    Ok(match tls {
        None => TlsSettings::Generated { dir: base.join(GENERATED_TLS_DIR) },
        Some(t) => {
            let ticket_key = match &t.ticket_key {
                Some(k) => Some((path_of("ticket_key", k)?, lines.line_of_span(k.span()))),
                None => None,
            };
            TlsSettings::Named {
                ca: path_of("ca", &t.ca)?,
                ca_line: lines.line_of_span(t.ca.span()),
                nodes: named,
                ticket_key,
            }
        }
    })
}

/// Validates the `[[node]]` entries in file order and resolves their data dirs.
fn check_nodes(lines: &Lines<'_>, raw: &[RawNode]) -> Result<Vec<NodeConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(lines.invalid(None, Problem::NoNodes));
    }
    let base = lines.path.parent().unwrap_or_else(|| Path::new(""));
    // id -> line of its first `id =`; address -> (node id, "api" | "raft").
    let mut id_lines: HashMap<u64, usize> = HashMap::new();
    let mut addrs: HashMap<SocketAddr, (u64, &'static str)> = HashMap::new();
    let mut nodes = Vec::with_capacity(raw.len());

    for node in raw {
        let id = *node.id.get_ref();
        let id_line = lines.line_of_span(node.id.span());
        if id == 0 {
            return Err(lines.invalid(Some(id_line), Problem::ZeroId));
        }
        if let Some(&first_line) = id_lines.get(&id) {
            return Err(lines.invalid(Some(id_line), Problem::DuplicateId { id, first_line }));
        }
        id_lines.insert(id, id_line);

        let api = parse_addr(lines, "api", &node.api)?;
        let raft = parse_addr(lines, "raft", &node.raft)?;
        for (key, addr, spanned) in [("api", api, &node.api), ("raft", raft, &node.raft)] {
            if let Some(&(other_id, other_key)) = addrs.get(&addr) {
                return Err(lines.invalid_at(spanned, Problem::DuplicateAddress { addr, other_id, other_key }));
            }
            addrs.insert(addr, (id, key));
        }

        if node.data_dir.get_ref().is_empty() {
            return Err(lines.invalid_at(&node.data_dir, Problem::EmptyDataDir));
        }
        // `join` keeps an absolute data_dir as it is.
        let data_dir = base.join(node.data_dir.get_ref());

        nodes.push(NodeConfig { id, api, raft, data_dir });
    }
    Ok(nodes)
}

fn parse_addr(lines: &Lines<'_>, key: &'static str, value: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
    let addr: SocketAddr = value
        .get_ref()
        .parse()
        .map_err(|_| lines.invalid_at(value, Problem::BadAddress { key, value: value.get_ref().clone() }))?;
    // The file is an address book other processes dial; port 0 cannot be dialled.
    if addr.port() == 0 {
        return Err(lines.invalid_at(value, Problem::ZeroPort { key, addr }));
    }
    Ok(addr)
}

/// A valid cluster.toml for nodes on 127.0.0.1, one `(id, api_port, raft_port)` per node,
/// with default timings and `data_dir = "<data_root>/node-<id>"`. For tests that bind
/// ports at run time and then write a cluster file for them.
pub fn local_cluster_toml(ports: &[(u64, u16, u16)], data_root: &str) -> String {
    let mut out = format!(
        "[cluster]\nheartbeat_ms = {}\nelection_timeout_ms = [{}, {}]\n",
        DEFAULT_HEARTBEAT_MS, DEFAULT_ELECTION_TIMEOUT_MS.0, DEFAULT_ELECTION_TIMEOUT_MS.1
    );
    for &(id, api_port, raft_port) in ports {
        let data_dir = format!("{data_root}/node-{id}");
        // `toml::Value`'s Display writes a correctly quoted and escaped TOML string.
        let data_dir = toml::Value::String(data_dir);
        out.push_str(&format!(
            "\n[[node]]\nid = {id}\napi = \"127.0.0.1:{api_port}\"\nraft = \"127.0.0.1:{raft_port}\"\ndata_dir = {data_dir}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from docs/CONTRACT.md, verbatim.
    const CONTRACT_EXAMPLE: &str = r#"[cluster]
heartbeat_ms = 50                 # Raft heartbeat
election_timeout_ms = [150, 300]  # randomised election timeout range
# secret = "..."                  # optional; when set, node-to-node and admin calls must present it

[limits]                          # per user, checked before a write is proposed; 0 = no limit
groups_per_user = 1000            # groups a user owns (defaults: the project's, documented)
files_per_user = 100000           # items (files, folders) a user shares

[[node]]
id = 1
api = "127.0.0.1:7001"            # where peers and operators talk to this node
raft = "127.0.0.1:7101"           # node-to-node Raft traffic
data_dir = "data/node-1"          # relative paths are relative to this file's folder

[[node]]
id = 2
api = "127.0.0.1:7002"
raft = "127.0.0.1:7102"
data_dir = "data/node-2"

[[node]]
id = 3
api = "127.0.0.1:7003"
raft = "127.0.0.1:7103"
data_dir = "data/node-3"
"#;

    fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(text, Path::new("/etc/p2p/cluster.toml"))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cluster_contract_example_parses() {
        let c = parse(CONTRACT_EXAMPLE).unwrap();
        assert_eq!(c.path, Path::new("/etc/p2p/cluster.toml"));
        assert_eq!(c.heartbeat_ms, 50);
        assert_eq!(c.election_timeout_ms, (150, 300));
        assert_eq!(c.secret, None);
        assert_eq!(c.initial_members, None);
        assert_eq!(c.snapshot_logs_threshold, DEFAULT_SNAPSHOT_LOGS_THRESHOLD);
        assert_eq!(c.limits, Limits { groups_per_user: 1000, files_per_user: 100_000 });
        assert_eq!(c.limits, Limits::default(), "the contract's example shows the defaults");
        assert_eq!(
            c.nodes,
            vec![
                NodeConfig {
                    id: 1,
                    api: addr("127.0.0.1:7001"),
                    raft: addr("127.0.0.1:7101"),
                    data_dir: PathBuf::from("/etc/p2p/data/node-1"),
                },
                NodeConfig {
                    id: 2,
                    api: addr("127.0.0.1:7002"),
                    raft: addr("127.0.0.1:7102"),
                    data_dir: PathBuf::from("/etc/p2p/data/node-2"),
                },
                NodeConfig {
                    id: 3,
                    api: addr("127.0.0.1:7003"),
                    raft: addr("127.0.0.1:7103"),
                    data_dir: PathBuf::from("/etc/p2p/data/node-3"),
                },
            ]
        );
        assert_eq!(c.api_addrs(), vec![addr("127.0.0.1:7001"), addr("127.0.0.1:7002"), addr("127.0.0.1:7003")]);
        assert_eq!(c.voters_on_first_start(), vec![1, 2, 3]);
        assert_eq!(c.node(2).unwrap().raft, addr("127.0.0.1:7102"));
        assert!(c.node(4).is_none());
        assert_eq!(c.require_node(3).unwrap().id, 3);
    }

    #[test]
    fn cluster_defaults_and_optional_keys() {
        let node = "[[node]]\nid = 7\napi = \"127.0.0.1:1\"\nraft = \"[::1]:2\"\ndata_dir = \"d\"\n";
        // No [cluster] table at all.
        let c = parse(node).unwrap();
        assert_eq!(c.heartbeat_ms, DEFAULT_HEARTBEAT_MS);
        assert_eq!(c.election_timeout_ms, DEFAULT_ELECTION_TIMEOUT_MS);
        assert_eq!(c.snapshot_logs_threshold, DEFAULT_SNAPSHOT_LOGS_THRESHOLD);
        assert_eq!(c.nodes[0].raft, addr("[::1]:2"));
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.members_add_timeout_ms, DEFAULT_MEMBERS_ADD_TIMEOUT_MS);

        // members_add_timeout_ms: taken within its range, refused with its line outside it.
        let c = parse(&format!("[cluster]\nmembers_add_timeout_ms = 5000\n{node}")).unwrap();
        assert_eq!(c.members_add_timeout_ms, 5000);
        for bad in [0, 999, 3_600_001] {
            let e = parse(&format!("[cluster]\nmembers_add_timeout_ms = {bad}\n{node}")).unwrap_err().to_string();
            assert!(e.ends_with("cluster.toml:2: members_add_timeout_ms must be from 1000 to 3600000"), "{bad}: {e}");
        }

        // peer_liveness_ms: 30 s by default, taken within its range, refused outside it.
        assert_eq!(parse(node).unwrap().peer_liveness_ms, DEFAULT_PEER_LIVENESS_MS);
        let c = parse(&format!("[cluster]\npeer_liveness_ms = 6000\n{node}")).unwrap();
        assert_eq!(c.peer_liveness_ms, 6000);
        for bad in [0, 2_999, 600_001] {
            let e = parse(&format!("[cluster]\npeer_liveness_ms = {bad}\n{node}")).unwrap_err().to_string();
            assert!(e.ends_with("cluster.toml:2: peer_liveness_ms must be from 3000 to 600000"), "{bad}: {e}");
        }

        // [limits]: one key alone keeps the other's default; 0 is accepted (no limit).
        let c = parse(&format!("[limits]\ngroups_per_user = 3\n{node}")).unwrap();
        assert_eq!(c.limits, Limits { groups_per_user: 3, files_per_user: DEFAULT_FILES_PER_USER });
        let c = parse(&format!("[limits]\ngroups_per_user = 0\nfiles_per_user = 0\n{node}")).unwrap();
        assert_eq!(c.limits, Limits { groups_per_user: 0, files_per_user: 0 });

        let text = "[cluster]\nsecret = \"s3cret\"\nsnapshot_logs_threshold = 10\ninitial_members = [3, 1]\n\
             [[node]]\nid = 1\napi = \"127.0.0.1:1\"\nraft = \"127.0.0.1:2\"\ndata_dir = \"a\"\n\
             [[node]]\nid = 2\napi = \"127.0.0.1:3\"\nraft = \"127.0.0.1:4\"\ndata_dir = \"b\"\n\
             [[node]]\nid = 3\napi = \"127.0.0.1:5\"\nraft = \"127.0.0.1:6\"\ndata_dir = \"c\"\n";
        let c = parse(text).unwrap();
        assert_eq!(c.secret.as_deref(), Some("s3cret"));
        assert_eq!(c.snapshot_logs_threshold, 10);
        assert_eq!(c.initial_members, Some(vec![3, 1]));
        assert_eq!(c.voters_on_first_start(), vec![1, 3]);
        assert!(!format!("{c:?}").contains("s3cret"), "Debug must not print the secret");
    }

    #[test]
    fn cluster_data_dir_resolution() {
        let text = |dir: &str| {
            format!("[[node]]\nid = 1\napi = \"127.0.0.1:1\"\nraft = \"127.0.0.1:2\"\ndata_dir = \"{dir}\"\n")
        };
        let cases: &[(&str, &str, &str)] = &[
            // (cluster file path, data_dir as written, resolved)
            ("/etc/p2p/cluster.toml", "data/node-1", "/etc/p2p/data/node-1"),
            ("/etc/p2p/cluster.toml", "../shared/n1", "/etc/p2p/../shared/n1"),
            ("/etc/p2p/cluster.toml", "/var/lib/n1", "/var/lib/n1"),
            ("conf/cluster.toml", "data/n1", "conf/data/n1"),
            ("cluster.toml", "data/n1", "data/n1"),
        ];
        for &(path, dir, want) in cases {
            let c = ClusterConfig::parse(&text(dir), Path::new(path)).unwrap();
            assert_eq!(c.nodes[0].data_dir, PathBuf::from(want), "{path} + {dir}");
        }
    }

    /// Each case: the file text, the line the error must point at (None: no line), and a
    /// fragment the message must contain. The message must also start with the file
    /// name and line.
    #[test]
    fn cluster_errors_name_file_line_and_problem() {
        const N1: &str = "[[node]]\nid = 1\napi = \"127.0.0.1:7001\"\nraft = \"127.0.0.1:7101\"\ndata_dir = \"d1\"\n";
        const N2: &str = "[[node]]\nid = 2\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"d2\"\n";
        let with_nodes = |cluster: &str| format!("[cluster]\n{cluster}\n{N1}{N2}");
        let cases: Vec<(&str, String, Option<usize>, &str)> = vec![
            (
                "duplicate id",
                // The contract example with node 3 renamed to 2: the third `id =` is line 23.
                CONTRACT_EXAMPLE.replace("id = 3", "id = 2"),
                Some(23),
                "duplicate node id 2 (first at line 17)",
            ),
            (
                "duplicate api address",
                CONTRACT_EXAMPLE.replace("127.0.0.1:7002", "127.0.0.1:7001"),
                Some(18),
                "duplicate address 127.0.0.1:7001 (also node 1's api)",
            ),
            (
                "raft address equal to another node's api",
                CONTRACT_EXAMPLE.replace("127.0.0.1:7103", "127.0.0.1:7002"),
                Some(25),
                "duplicate address 127.0.0.1:7002 (also node 2's api)",
            ),
            (
                "api equal to own raft",
                format!("{N1}[[node]]\nid = 2\napi = \"127.0.0.1:7009\"\nraft = \"127.0.0.1:7009\"\ndata_dir = \"x\"\n"),
                Some(9),
                "duplicate address 127.0.0.1:7009 (also node 2's api)",
            ),
            (
                "election timeout min >= max",
                with_nodes("heartbeat_ms = 10\nelection_timeout_ms = [300, 300]"),
                Some(3),
                "election_timeout_ms must be [min, max] with 0 < min < max",
            ),
            (
                "election timeout wrong length",
                with_nodes("election_timeout_ms = [150]"),
                Some(2),
                "election_timeout_ms must be [min, max] with 0 < min < max",
            ),
            (
                "election timeout min 0",
                with_nodes("heartbeat_ms = 0\nelection_timeout_ms = [0, 10]"),
                Some(2),
                "heartbeat_ms must be at least 1",
            ),
            (
                "election timeout zero min",
                with_nodes("election_timeout_ms = [0, 10]"),
                Some(2),
                "election_timeout_ms must be [min, max] with 0 < min < max",
            ),
            (
                "heartbeat not below election min",
                with_nodes("\n\nheartbeat_ms = 200\nelection_timeout_ms = [150, 300]"),
                Some(4),
                "heartbeat_ms (200) must be less than election_timeout_ms min (150)",
            ),
            (
                "default heartbeat not below explicit election min",
                with_nodes("election_timeout_ms = [40, 300]"),
                Some(2),
                "heartbeat_ms (50) must be less than election_timeout_ms min (40)",
            ),
            ("no nodes", "[cluster]\nheartbeat_ms = 50\n".to_string(), None, "no [[node]] entries"),
            ("empty file", String::new(), None, "no [[node]] entries"),
            (
                "unknown key in [cluster]",
                with_nodes("heartbeat_ms = 50\nheartbeat = 50"),
                Some(3),
                "unknown field `heartbeat`",
            ),
            (
                "unknown key in [[node]]",
                format!("{N1}[[node]]\nid = 2\nport = 3\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"d2\"\n"),
                Some(8),
                "unknown field `port`",
            ),
            (
                "unknown top-level table",
                format!("{N1}\n[nodes]\nid = 3\n"),
                Some(7),
                "unknown field `nodes`",
            ),
            (
                "missing key in [[node]]",
                format!("{N1}[[node]]\nid = 2\napi = \"127.0.0.1:7002\"\ndata_dir = \"d2\"\n"),
                Some(6),
                "missing field `raft`",
            ),
            (
                "malformed toml",
                format!("{N1}[[node]\nid = 2\n"),
                Some(6),
                "",
            ),
            (
                "duplicate key",
                "[[node]]\nid = 1\nid = 2\napi = \"127.0.0.1:7001\"\nraft = \"127.0.0.1:7101\"\ndata_dir = \"d1\"\n".to_string(),
                Some(3),
                "duplicate key",
            ),
            (
                "wrong type",
                with_nodes("heartbeat_ms = \"fast\""),
                Some(2),
                "invalid type",
            ),
            (
                "negative id",
                format!("{N1}[[node]]\nid = -2\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"d2\"\n"),
                Some(7),
                "",
            ),
            (
                "initial_members names an unlisted id",
                with_nodes("initial_members = [1, 4]"),
                Some(2),
                "initial_members names node 4, which has no [[node]] entry (listed ids: 1, 2)",
            ),
            (
                "initial_members empty",
                with_nodes("initial_members = []"),
                Some(2),
                "initial_members must name at least one node",
            ),
            (
                "initial_members repeats an id",
                with_nodes("initial_members = [1, 1]"),
                Some(2),
                "initial_members names node 1 more than once",
            ),
            (
                "id 0",
                format!("{N1}[[node]]\nid = 0\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"d2\"\n"),
                Some(7),
                "node id must be at least 1",
            ),
            (
                "api not an address",
                format!("{N1}[[node]]\nid = 2\napi = \"localhost:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"d2\"\n"),
                Some(8),
                "api \"localhost:7002\" is not an address",
            ),
            (
                "raft without port",
                format!("{N1}[[node]]\nid = 2\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1\"\ndata_dir = \"d2\"\n"),
                Some(9),
                "raft \"127.0.0.1\" is not an address",
            ),
            (
                "port 0",
                format!("{N1}[[node]]\nid = 2\napi = \"127.0.0.1:0\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"d2\"\n"),
                Some(8),
                "api 127.0.0.1:0 has port 0",
            ),
            (
                "empty data_dir",
                format!("{N1}[[node]]\nid = 2\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"\"\n"),
                Some(10),
                "data_dir must not be empty",
            ),
            (
                "empty secret",
                with_nodes("secret = \"\""),
                Some(2),
                "secret must not be empty",
            ),
            (
                "zero snapshot threshold",
                with_nodes("snapshot_logs_threshold = 0"),
                Some(2),
                "snapshot_logs_threshold must be at least 1",
            ),
            (
                "tls: cert without key",
                format!("[cluster.tls]\nca = \"ca.pem\"\n{N1}[[node]]\nid = 2\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"d2\"\ncert = \"n2.pem\"\n"),
                Some(13),
                "node 2 names a cert but no key",
            ),
            (
                "tls: key without cert",
                format!("[cluster.tls]\nca = \"ca.pem\"\n{N1}[[node]]\nid = 2\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"d2\"\nkey = \"n2.key\"\n"),
                Some(13),
                "node 2 names a key but no cert",
            ),
            (
                "tls: node files without a CA",
                format!("{N1}[[node]]\nid = 2\napi = \"127.0.0.1:7002\"\nraft = \"127.0.0.1:7102\"\ndata_dir = \"d2\"\ncert = \"n2.pem\"\nkey = \"n2.key\"\n"),
                Some(11),
                "node 2 names a cert and key but the file has no [cluster.tls] ca",
            ),
            (
                "tls: empty ca",
                format!("[cluster.tls]\nca = \"\"\n{N1}"),
                Some(2),
                "ca must not be empty",
            ),
            (
                "tls: empty key",
                format!("[cluster.tls]\nca = \"ca.pem\"\n{N1}cert = \"a\"\nkey = \"\"\n"),
                Some(9),
                "key must not be empty",
            ),
            (
                "tls: empty ticket_key",
                format!("[cluster.tls]\nca = \"ca.pem\"\nticket_key = \"\"\n{N1}"),
                Some(3),
                "ticket_key must not be empty",
            ),
            (
                "tls: unknown key",
                format!("[cluster.tls]\nca = \"ca.pem\"\nca_cert = \"x\"\n{N1}"),
                Some(3),
                "unknown field `ca_cert`",
            ),
            (
                "limits: unknown key",
                format!("[limits]\ngroups_per_user = 5\ngroups_per_users = 6\n{N1}"),
                Some(3),
                "unknown field `groups_per_users`",
            ),
            (
                "limits: negative",
                format!("[cluster]\n\n[limits]\nfiles_per_user = -1\n{N1}"),
                Some(4),
                "[limits] files_per_user must be a whole number, 0 (no limit) or more; got -1",
            ),
            (
                "limits: not a number",
                format!("[limits]\ngroups_per_user = \"many\"\n{N1}"),
                Some(2),
                "[limits] groups_per_user must be a whole number, 0 (no limit) or more; got \"many\"",
            ),
            (
                "limits: a fraction",
                format!("[limits]\n\nfiles_per_user = 2.5\n{N1}"),
                Some(3),
                "files_per_user must be a whole number, 0 (no limit) or more; got 2.5",
            ),
            (
                "limits: not a table",
                format!("limits = 5\n{N1}"),
                Some(1),
                "expected a [limits] table",
            ),
            (
                "tls: table without ca",
                format!("[cluster.tls]\n{N1}"),
                Some(1),
                "missing field `ca`",
            ),
            (
                "inline-table nodes still get lines",
                "node = [\n  { id = 1, api = \"127.0.0.1:1\", raft = \"127.0.0.1:2\", data_dir = \"a\" },\n  { id = 1, api = \"127.0.0.1:3\", raft = \"127.0.0.1:4\", data_dir = \"b\" },\n]\n".to_string(),
                Some(3),
                "duplicate node id 1 (first at line 2)",
            ),
        ];

        // Collect every failing case before failing, so one run shows them all.
        let mut failures = Vec::new();
        for (name, text, line, fragment) in cases {
            let err = match parse(&text) {
                Ok(c) => {
                    failures.push(format!("{name}: accepted: {c:?}"));
                    continue;
                }
                Err(e) => e,
            };
            let msg = err.to_string();
            let prefix = match line {
                Some(l) => format!("/etc/p2p/cluster.toml:{l}: "),
                None => "/etc/p2p/cluster.toml: ".to_string(),
            };
            if err.line() != line || !msg.starts_with(&prefix) {
                failures.push(format!("{name}: want line {line:?}, got {msg:?}"));
            }
            if !msg.contains(fragment) {
                failures.push(format!("{name}: {msg:?} should contain {fragment:?}"));
            }
            if msg.contains('\n') {
                failures.push(format!("{name}: message must be one line: {msg:?}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn cluster_tls_generated_when_nothing_is_named() {
        let c = parse(CONTRACT_EXAMPLE).unwrap();
        assert_eq!(c.tls, TlsSettings::Generated { dir: PathBuf::from("/etc/p2p/tls") });
        let f = c.tls_files(2);
        assert!(!f.named);
        assert_eq!(f.ca.path, PathBuf::from("/etc/p2p/tls/ca.pem"));
        assert_eq!(f.cert.path, PathBuf::from("/etc/p2p/tls/node-2.pem"));
        assert_eq!(f.key.path, PathBuf::from("/etc/p2p/tls/node-2.key"));
        assert_eq!(f.key.line, None);
        assert_eq!(
            c.ticket_key_file().unwrap(),
            TlsFile { path: PathBuf::from("/etc/p2p/tls/ticket.key"), line: None, key: "ticket_key" }
        );
    }

    #[test]
    fn cluster_ticket_key_is_named_beside_the_tls_files_or_the_file_says_how_to_add_it() {
        let named = CONTRACT_EXAMPLE.replace(
            "# secret = \"...\"                  # optional; when set, node-to-node and admin calls must present it\n",
            "\n[cluster.tls]\nca = \"pki/ca.pem\"\nticket_key = \"pki/ticket.key\"\n",
        );
        let c = parse(&named).unwrap();
        assert_eq!(
            c.ticket_key_file().unwrap(),
            TlsFile { path: PathBuf::from("/etc/p2p/pki/ticket.key"), line: Some(7), key: "ticket_key" }
        );
        // Named TLS files without a ticket key: the file parses (so `tracker-node certs` can
        // make the key), and running a node is refused with the line to add.
        let without = named.replace("ticket_key = \"pki/ticket.key\"\n", "");
        let c = parse(&without).unwrap();
        let err = c.ticket_key_file().unwrap_err();
        assert_eq!(err.line(), Some(6));
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/p2p/cluster.toml:6: [cluster.tls] names"), "{msg}");
        assert!(msg.contains("add ticket_key = \"pki/ticket.key\" under [cluster.tls]"), "{msg}");
        assert!(msg.contains("tracker-node certs"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn cluster_tls_named_files_resolve_and_default_beside_the_ca() {
        let text = CONTRACT_EXAMPLE.replace(
            "# secret = \"...\"                  # optional; when set, node-to-node and admin calls must present it\n",
            "\n[cluster.tls]\nca = \"pki/ca.pem\"\n",
        );
        let text = text.replace(
            "data_dir = \"data/node-1\"          # relative paths are relative to this file's folder\n",
            "data_dir = \"data/node-1\"\ncert = \"/srv/n1.pem\"\nkey = \"keys/n1.key\"\n",
        );
        let c = parse(&text).unwrap();
        let f1 = c.tls_files(1);
        assert!(f1.named);
        assert_eq!(f1.ca, TlsFile { path: PathBuf::from("/etc/p2p/pki/ca.pem"), line: Some(6), key: "ca" });
        assert_eq!(f1.cert, TlsFile { path: PathBuf::from("/srv/n1.pem"), line: Some(17), key: "cert" });
        assert_eq!(f1.key, TlsFile { path: PathBuf::from("/etc/p2p/keys/n1.key"), line: Some(18), key: "key" });
        // Node 2 names nothing: its pair is beside the CA, and errors point at `ca =`.
        let f2 = c.tls_files(2);
        assert_eq!(f2.cert.path, PathBuf::from("/etc/p2p/pki/node-2.pem"));
        assert_eq!(f2.key, TlsFile { path: PathBuf::from("/etc/p2p/pki/node-2.key"), line: Some(6), key: "key" });
        let err = c.tls_error(
            &f2.key,
            Problem::TlsFileUnreadable { key: "key", path: f2.key.path.clone(), reason: "gone".into() },
        );
        assert_eq!(err.to_string(), "/etc/p2p/cluster.toml:6: key /etc/p2p/pki/node-2.key cannot be read: gone");
    }

    #[test]
    fn cluster_require_node_names_listed_ids() {
        let c = parse(CONTRACT_EXAMPLE).unwrap();
        let err = c.require_node(9).unwrap_err();
        assert_eq!(err.to_string(), "/etc/p2p/cluster.toml: node 9 is not listed (listed ids: 1, 2, 3)");
        assert!(matches!(err, ConfigError::NodeNotListed { id: 9, .. }));
    }

    #[test]
    fn cluster_load_reads_file_and_reports_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, CONTRACT_EXAMPLE).unwrap();
        let c = ClusterConfig::load(&path).unwrap();
        assert_eq!(c.path, path);
        assert_eq!(c.nodes[0].data_dir, dir.path().join("data/node-1"));

        let missing = dir.path().join("nope.toml");
        let err = ClusterConfig::load(&missing).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("cannot read {}: ", missing.display())), "{msg}");
        assert!(matches!(err, ConfigError::Read { .. }));
        assert_eq!(err.path(), missing);
    }

    #[test]
    fn cluster_local_cluster_toml_round_trips() {
        let text = local_cluster_toml(&[(1, 40001, 40101), (2, 40002, 40102)], "/tmp/x \"y\"");
        let c = parse(&text).unwrap();
        assert_eq!(c.heartbeat_ms, DEFAULT_HEARTBEAT_MS);
        assert_eq!(c.election_timeout_ms, DEFAULT_ELECTION_TIMEOUT_MS);
        assert_eq!(c.api_addrs(), vec![addr("127.0.0.1:40001"), addr("127.0.0.1:40002")]);
        assert_eq!(c.nodes[1].raft, addr("127.0.0.1:40102"));
        assert_eq!(c.nodes[1].data_dir, PathBuf::from("/tmp/x \"y\"/node-2"));
        assert_eq!(c.voters_on_first_start(), vec![1, 2]);
    }

    proptest::proptest! {
        /// Whatever distinct run-time ports a test picks, the generated file parses
        /// back to exactly those nodes.
        #[test]
        fn cluster_local_cluster_toml_any_ports(
            ports in proptest::collection::btree_set(1u16.., 2..12usize),
        ) {
            let ports: Vec<u16> = ports.into_iter().collect();
            let nodes: Vec<(u64, u16, u16)> = ports
                .chunks_exact(2)
                .enumerate()
                .map(|(i, p)| (i as u64 + 1, p[0], p[1]))
                .collect();
            let c = parse(&local_cluster_toml(&nodes, "data")).unwrap();
            let got: Vec<(u64, u16, u16)> =
                c.nodes.iter().map(|n| (n.id, n.api.port(), n.raft.port())).collect();
            proptest::prop_assert_eq!(got, nodes);
        }
    }
}
