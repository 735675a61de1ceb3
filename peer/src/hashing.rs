//! Hashing files in 512 KiB pieces: SHA-1 per piece and for the whole file, on every core.
//! The whole-file hash is one sequential pass; the piece hashes are split between the other
//! threads; both read with positional reads into reused buffers.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::api::FileMetaBody;
use sha1::{Digest, Sha1};

pub const PIECE_LEN_BYTES: u64 = 512 * 1024;
/// Same bound as the tracker's: 131072 pieces of 512 KiB.
pub const MAX_FILE_SIZE_BYTES: u64 = 131_072 * PIECE_LEN_BYTES;

pub fn piece_count(size: u64) -> u64 {
    size.div_ceil(PIECE_LEN_BYTES)
}

/// Byte range of piece `index` in a file of `size` bytes.
pub fn piece_range(size: u64, index: u64) -> (u64, usize) {
    let off = index * PIECE_LEN_BYTES;
    (off, (size - off).min(PIECE_LEN_BYTES) as usize)
}

pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    f.read_exact_at(buf, offset)
}

/// Hashes `path` into the metadata the tracker stores. `progress` counts bytes done.
pub fn hash_file(path: &Path, name: &str, progress: &AtomicU64) -> std::io::Result<FileMetaBody> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > MAX_FILE_SIZE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is {size} bytes; the largest file a group can share is 64 GiB", path.display()),
        ));
    }
    let n = piece_count(size);
    let threads = std::thread::available_parallelism().map(|x| x.get()).unwrap_or(2).max(2);
    let piece_threads = (threads - 1).max(1) as u64;
    let mut piece_sha1 = vec![String::new(); n as usize];
    let whole = std::thread::scope(|s| -> std::io::Result<String> {
        let whole = s.spawn(|| -> std::io::Result<String> {
            let mut h = Sha1::new();
            let mut buf = vec![0u8; 4 * PIECE_LEN_BYTES as usize];
            let mut off = 0u64;
            while off < size {
                let len = ((size - off) as usize).min(buf.len());
                file.read_exact_at(&mut buf[..len], off)?;
                h.update(&buf[..len]);
                off += len as u64;
                progress.store(off, Ordering::Relaxed);
            }
            Ok(hex::encode(h.finalize()))
        });
        // Contiguous runs per thread keep each thread's reads sequential.
        let chunks: Vec<&mut [String]> = piece_sha1.chunks_mut(n.div_ceil(piece_threads).max(1) as usize).collect();
        let mut handles = Vec::new();
        let mut first = 0u64;
        for chunk in chunks {
            let start = first;
            first += chunk.len() as u64;
            let file = &file;
            handles.push(s.spawn(move || -> std::io::Result<()> {
                let mut buf = vec![0u8; PIECE_LEN_BYTES as usize];
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let (off, len) = piece_range(size, start + k as u64);
                    file.read_exact_at(&mut buf[..len], off)?;
                    *slot = sha1_hex(&buf[..len]);
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join().map_err(|_| std::io::Error::other("hash thread panicked"))??;
        }
        whole.join().map_err(|_| std::io::Error::other("hash thread panicked"))?
    })?;
    Ok(FileMetaBody { name: name.to_string(), size, piece_len: PIECE_LEN_BYTES, piece_sha1, sha1: whole })
}

/// SHA-1 of a whole file, one sequential pass.
pub fn file_sha1(path: &Path) -> std::io::Result<String> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 4 * PIECE_LEN_BYTES as usize];
    let mut off = 0u64;
    while off < size {
        let len = ((size - off) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..len], off)?;
        h.update(&buf[..len]);
        off += len as u64;
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_and_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..(PIECE_LEN_BYTES as usize * 2 + 123)).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let progress = AtomicU64::new(0);
        let m = hash_file(&p, "f", &progress).unwrap();
        assert_eq!(m.size, data.len() as u64);
        assert_eq!(m.piece_sha1.len(), 3);
        assert_eq!(m.piece_sha1[0], sha1_hex(&data[..PIECE_LEN_BYTES as usize]));
        assert_eq!(m.piece_sha1[2], sha1_hex(&data[2 * PIECE_LEN_BYTES as usize..]));
        assert_eq!(m.sha1, sha1_hex(&data));
        assert_eq!(file_sha1(&p).unwrap(), m.sha1);
        assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
    }

    #[test]
    fn empty_file_has_no_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e");
        std::fs::write(&p, b"").unwrap();
        let m = hash_file(&p, "e", &AtomicU64::new(0)).unwrap();
        assert_eq!(m.piece_sha1.len(), 0);
        assert_eq!(m.sha1, sha1_hex(b""));
    }
}
