//! The handles a download's task is given: what the downloads need of their daemon.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::table::DownloadTable;
use crate::daemon::channel::Channel;
use crate::daemon::shares::ShareTable;
use crate::daemon::standing::Standing;
use crate::piece_lists::PieceListStore;

/// What the downloads need of their daemon, one typed handle each; every download's task
/// holds a copy.
#[derive(Clone)]
pub struct Downloads {
    /// The table of the downloads' handles.
    pub table: Arc<DownloadTable>,
    /// The session and the tracker, for the sharer list, tickets and registering as a sharer.
    pub standing: Arc<Standing>,
    /// A finished download becomes a share.
    pub shares: Arc<ShareTable>,
    /// TLS with this HOME's key, for the connections to sharers.
    pub channel: Arc<Channel>,
    /// Where a verified piece list is stored, and read back at a restart.
    pub piece_lists: PieceListStore,
    /// The daemon's shutdown: every swarm stops with it.
    pub shutdown: CancellationToken,
}
