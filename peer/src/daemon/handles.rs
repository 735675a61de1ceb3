//! The daemon's handles for its two servers (the piece server and the control server), in a
//! file of their own below both, so that neither imports the module that starts it.

use std::sync::Arc;

use super::channel::Channel;
use super::download::Downloads;
use super::shares::ShareTable;
use super::standing::Standing;
use super::tickets::ClusterKey;
use crate::piece_lists::PieceListStore;

/// The daemon's typed handles, each with one owner, for the two servers (the piece server,
/// the control server) that need several of them. Everything below takes only what it needs:
/// the downloads their `download::Downloads`, the keepalive loop the standing and the shares.
pub struct Daemon {
    /// Where this daemon stands with the tracker (session, announce, liveness).
    pub standing: Arc<Standing>,
    /// TLS with this HOME's key, both ways.
    pub channel: Arc<Channel>,
    /// The cluster's ticket key, pinned in HOME.
    pub cluster_key: ClusterKey,
    pub shares: Arc<ShareTable>,
    /// The downloads: their table, and what their tasks need.
    pub downloads: Downloads,
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
    /// Close served connections that ask for nothing after this long instead of
    /// `serve::NO_REQUEST_TIMEOUT_MS`.
    pub no_request_timeout_ms: Option<u64>,
}

/// How a faulty sharer's piece list is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BadPieceList {
    /// The right length, one hash per frame altered.
    Corrupt,
    /// One hash short: the list claims one piece fewer than the file has.
    Short,
}
