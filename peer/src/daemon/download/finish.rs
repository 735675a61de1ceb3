//! The blocking and tracker work at either end of a download's swarm, called by its task
//! (`actor.rs`) only: re-verifying a `.part` before the swarm (re)starts, and, once every piece
//! is verified, placing the file and sharing it. Finishing happens here and nowhere else.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::record::DownloadRecord;
use crate::control::DownloadFailure;
use crate::daemon::disk;
use crate::daemon::shares::Share;
use crate::daemon::standing::Standing;
use crate::hashing::{piece_count, PieceHash};
use crate::piece_lists::PieceListStore;

/// A `.part` reopened and re-verified: the file, the stored list (if any), the pieces there.
pub struct Reverified {
    pub file: File,
    pub list: Option<Vec<PieceHash>>,
    pub have: Vec<bool>,
}

/// Reopens the `.part` of `record` and re-hashes each piece against the stored piece list, so
/// that the swarm continues from the pieces that are really there (a restart, a resume).
pub fn reverify(record: &DownloadRecord, store: &PieceListStore) -> Result<Reverified, String> {
    let meta = &record.meta;
    let file =
        disk::open_part(&record.part_path(), meta.size).map_err(|e| format!("cannot reopen the .part file: {e}"))?;
    let n = piece_count(meta.size);
    // The list was stored before any piece was written against it; without it, nothing in the
    // .part can be trusted, and the swarm fetches the list again.
    let list = match store.load(&meta.piece_list_sha1, n) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(name = %meta.name, "cannot read the stored piece list: {e}");
            None
        }
    };
    let mut buf = Vec::new();
    let have = match &list {
        Some(l) => (0..n).map(|i| disk::piece_matches(&file, meta.size, i, &l[i as usize], &mut buf)).collect(),
        None => vec![false; n as usize],
    };
    Ok(Reverified { file, list, have })
}

/// Moves the finished `.part` onto `dest`: never replacing anything there unless the download
/// was forced, and only if the `.part` path still names the file this download wrote.
///
/// The whole file is not read again for its SHA-1: every piece was checked against its hash in
/// a piece list whose SHA-1 is the tracker's `piece_list_sha1` before it was written, so the
/// bytes are those the uploader hashed, on the same assumption (SHA-1's second-preimage
/// resistance) a whole-file check would rest on; BitTorrent's v1 has no other check either. The
/// pass cost ~0.6 s per GiB (docs/BENCH.md). A resumed download re-verifies every piece of its
/// `.part` against the same list.
pub fn place(part: Option<Arc<File>>, record: &DownloadRecord) -> Result<(), DownloadFailure> {
    let part_path = record.part_path();
    let dest = PathBuf::from(&record.dest);
    let f = match part {
        Some(f) => f,
        None => Arc::new(
            disk::open_existing(&part_path)
                .map_err(|e| DownloadFailure::other(format!("cannot read {}: {e}", part_path.display())))?,
        ),
    };
    // No fsync here: like other download managers we leave write-back to the kernel; a crash
    // before it is caught when the resumed download re-verifies the `.part` piece by piece.
    if !disk::is_same_file(&part_path, &f).unwrap_or(false) {
        return Err(DownloadFailure::other(format!(
            "{} was replaced during the download; not moving it into place",
            part_path.display()
        )));
    }
    drop(f);
    disk::place(&part_path, &dest, record.force).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            DownloadFailure::dest_exists(format!(
                "{}; the finished file stays in {}",
                disk::dest_exists_message(&dest),
                part_path.display()
            ))
        } else {
            DownloadFailure::other(format!("cannot move {} to {}: {e}", part_path.display(), dest.display()))
        }
    })
}

/// The share a finished (or already present) download becomes.
pub fn share_of(record: &DownloadRecord) -> Share {
    Share {
        group: record.group.clone(),
        name: record.name.clone(),
        path: record.dest.clone(),
        size: record.meta.size,
        sha1: record.meta.sha1.clone(),
        piece_list_sha1: Some(record.meta.piece_list_sha1.clone()),
    }
}

/// Tells the tracker this peer shares the file of `record` (logged in, else nothing).
pub async fn register_sharer(st: &Standing, record: &DownloadRecord) {
    if let Some(c) = st.session_client() {
        if let Err(e) = st.register_sharer(&c, &record.group, record.meta.clone()).await {
            tracing::warn!("cannot register as a sharer of {}: {e}", record.name);
        }
    }
}
