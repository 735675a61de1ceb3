//! Snapshot files: written and read as a stream of JSON lines, fsynced and renamed into place.
//!
//! Format (version 1): a header line `{"format":1,"meta":<SnapshotMeta>}`, one line per
//! `state::Record`, and a trailer line `{"end":<record count>}`. A file without its trailer
//! is a torn write and is refused.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::state::{Record, TrackerState};
use crate::SnapshotMeta;

pub(crate) const CURRENT: &str = "current.snap";
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    meta: SnapshotMeta,
}

#[derive(Serialize, Deserialize)]
struct Trailer {
    end: u64,
}

/// Writes `state` to a new temporary file in `dir`, fsynced; returns its path.
pub(crate) fn write_tmp(dir: &Path, meta: &SnapshotMeta, state: &TrackerState) -> Result<PathBuf, StoreError> {
    let path = dir.join(format!("build-{}.tmp", sanitize(&meta.snapshot_id)));
    let ctx = |what: &str| format!("{what} snapshot file {}", path.display());
    let file = super::private_file_options().open(&path).map_err(|e| StoreError::io(ctx("cannot create"), e))?;
    let mut w = BufWriter::with_capacity(256 * 1024, WriteBehind::new(file));
    let line = |w: &mut BufWriter<WriteBehind>, value: &dyn erased::Ser| -> Result<(), StoreError> {
        value.write_json(w).map_err(|e| StoreError::io(ctx("cannot write"), e))?;
        w.write_all(b"\n").map_err(|e| StoreError::io(ctx("cannot write"), e))
    };
    line(&mut w, &Header { format: FORMAT_VERSION, meta: meta.clone() })?;
    let mut count = 0u64;
    for record in state.records() {
        line(&mut w, &record)?;
        count += 1;
    }
    line(&mut w, &Trailer { end: count })?;
    let file = w.into_inner().map_err(|e| StoreError::io(ctx("cannot write"), e.into_error()))?.file;
    file.sync_all().map_err(|e| StoreError::io(ctx("cannot fsync"), e))?;
    Ok(path)
}

/// Bytes of a snapshot file written between two pushes to the disk (see [`WriteBehind`]).
const WRITE_BEHIND_BYTES: u64 = 1 << 20;

/// A file written out to the disk as it grows, [`WRITE_BEHIND_BYTES`] at a time, waiting for each
/// part, the way RocksDB's `bytes_per_sync` does. Without it a snapshot (tens of MB at scale)
/// reached the disk in one burst at its final fsync; the Raft log's fsyncs queued behind that
/// burst, and openraft, which waits for each log flush before it does anything else, fell
/// silent for long enough that followers campaigned (three nodes snapshotting in the same
/// second on one disk). This way the writer, a background thread, waits for the disk instead.
struct WriteBehind {
    file: File,
    written: u64,
    pushed: u64,
}

impl WriteBehind {
    fn new(file: File) -> Self {
        WriteBehind { file, written: 0, pushed: 0 }
    }

    fn push(&mut self) {
        let len = self.written - self.pushed;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let flags =
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            // SAFETY: sync_file_range(2) on a descriptor this struct owns; it reads no memory.
            // Only a hint for the page cache's write-back: the final fsync is what makes the
            // file durable, so a failure here changes nothing and is ignored.
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), self.pushed as libc::off64_t, len as libc::off64_t, flags);
            }
        }
        self.pushed += len;
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.pushed >= WRITE_BEHIND_BYTES {
            self.push();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Reads a whole snapshot file back into a state, streaming.
pub(crate) fn read_file(path: &Path) -> Result<(SnapshotMeta, TrackerState), StoreError> {
    let what = format!("snapshot {}", path.display());
    let file = File::open(path).map_err(|e| StoreError::io(format!("cannot open {what}"), e))?;
    let mut lines = BufReader::with_capacity(256 * 1024, file).lines();
    let mut next = || -> Result<String, StoreError> {
        match lines.next() {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(StoreError::io(format!("cannot read {what}"), e)),
            None => Err(StoreError::corrupt(&what, "file ends before its trailer (torn write?)")),
        }
    };
    let header: Header =
        serde_json::from_str(&next()?).map_err(|e| StoreError::corrupt(&what, format!("bad header: {e}")))?;
    if header.format != FORMAT_VERSION {
        return Err(StoreError::corrupt(&what, format!("unknown format {}", header.format)));
    }
    let mut state = TrackerState::default();
    let mut count = 0u64;
    loop {
        let l = next()?;
        if let Ok(Trailer { end }) = serde_json::from_str::<Trailer>(&l) {
            if end != count {
                return Err(StoreError::corrupt(&what, format!("trailer says {end} records, found {count}")));
            }
            break;
        }
        let record: Record =
            serde_json::from_str(&l).map_err(|e| StoreError::corrupt(&what, format!("bad record {count}: {e}")))?;
        state.load_record(record).map_err(|e| StoreError::corrupt(&what, e))?;
        count += 1;
    }
    Ok((header.meta, state))
}

/// Reads only the header of a snapshot file.
pub(crate) fn read_meta(path: &Path) -> Result<SnapshotMeta, StoreError> {
    let what = format!("snapshot {}", path.display());
    let file = File::open(path).map_err(|e| StoreError::io(format!("cannot open {what}"), e))?;
    let mut first = String::new();
    BufReader::new(file).read_line(&mut first).map_err(|e| StoreError::io(format!("cannot read {what}"), e))?;
    let header: Header =
        serde_json::from_str(&first).map_err(|e| StoreError::corrupt(&what, format!("bad header: {e}")))?;
    Ok(header.meta)
}

/// Moves a finished temporary file into place as the current snapshot, durably.
pub(crate) fn promote(dir: &Path, tmp: &Path) -> Result<(), StoreError> {
    let dst = dir.join(CURRENT);
    fs::rename(tmp, &dst)
        .map_err(|e| StoreError::io(format!("cannot rename {} to {}", tmp.display(), dst.display()), e))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("cannot fsync directory {}", dir.display()), e))
}

/// Deletes half-written files left by a crash.
pub(crate) fn remove_tmp_files(dir: &Path) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io(format!("cannot list {}", dir.display()), e))?;
    for entry in entries.flatten() {
        if entry.path().extension().is_some_and(|x| x == "tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// Lets `write_tmp` write different serializable types through one closure.
mod erased {
    use std::io::Write;

    pub trait Ser {
        fn write_json(&self, w: &mut dyn Write) -> std::io::Result<()>;
    }

    impl<T: serde::Serialize> Ser for T {
        fn write_json(&self, w: &mut dyn Write) -> std::io::Result<()> {
            serde_json::to_writer(w, self).map_err(std::io::Error::other)
        }
    }
}
