//! Positional file I/O for pieces: reads for serving, verified writes for downloading.
//! No lock on the file: distinct pieces are distinct byte ranges.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha1::{Digest, Sha1};

use crate::hashing::{piece_range, PieceHash};

/// Opens (creating and sizing if needed) a download's `.part` file.
pub fn open_part(path: &Path, size: u64) -> std::io::Result<File> {
    use std::os::fd::AsRawFd;
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    if f.metadata()?.len() != size {
        f.set_len(size)?;
    }
    // Reserve the blocks up front (where the filesystem can), so piece writes do not
    // allocate as they go; a sparse file from set_len works too, only slower.
    if size > 0 {
        // SAFETY: fallocate(2) on a file descriptor we own, mode 0 within the file's size.
        let _ = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
    }
    Ok(f)
}

/// Reads piece `index` of a file of `size` bytes into `buf` (resized to the piece).
pub fn read_piece(f: &File, size: u64, index: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let (off, len) = piece_range(size, index);
    buf.resize(len, 0);
    f.read_exact_at(buf, off)
}

/// Checks `data` against the expected SHA-1 and writes it at its offset if it matches.
/// Returns false (and writes nothing) on a mismatch.
pub fn verify_and_write(f: &File, size: u64, index: u64, data: &[u8], want: &PieceHash) -> std::io::Result<bool> {
    let (off, len) = piece_range(size, index);
    if data.len() != len || Sha1::digest(data).as_slice() != want {
        return Ok(false);
    }
    f.write_all_at(data, off)?;
    Ok(true)
}

/// Whether piece `index` on disk already matches its hash (resume after a restart).
pub fn piece_matches(f: &File, size: u64, index: u64, want: &PieceHash, buf: &mut Vec<u8>) -> bool {
    if read_piece(f, size, index, buf).is_err() {
        return false;
    }
    Sha1::digest(&buf[..]).as_slice() == want
}
