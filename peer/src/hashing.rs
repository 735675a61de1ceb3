//! Hashing files in 512 KiB pieces: SHA-1 per piece and for the whole file, on every core.
//! The whole-file hash is one sequential pass; the piece hashes are split between the other
//! threads; both read with positional reads into reused buffers. Also the piece list's own
//! digest (`piece_list_sha1`), which is all the tracker keeps of the piece hashes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::api::FileMetaBody;
use sha1::{Digest, Sha1};

pub use proto::piece::{piece_count, MAX_FILE_SIZE_BYTES, MAX_PIECES, PIECE_LEN_BYTES};

/// One piece's SHA-1, raw.
pub type PieceHash = [u8; 20];

/// Byte range of piece `index` in a file of `size` bytes.
pub fn piece_range(size: u64, index: u64) -> (u64, usize) {
    let off = index * PIECE_LEN_BYTES;
    (off, (size - off).min(PIECE_LEN_BYTES) as usize)
}

pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// SHA-1 of the piece hashes' raw digests concatenated in piece order: the file's
/// `piece_list_sha1` (like BitTorrent's info hash, over the piece list alone).
pub fn piece_list_sha1(hashes: &[PieceHash]) -> PieceHash {
    let mut h = Sha1::new();
    for p in hashes {
        h.update(p);
    }
    h.finalize().into()
}

/// Decodes 40 hex characters (either case) into a digest.
pub fn parse_sha1_hex(s: &str) -> Option<PieceHash> {
    let mut out = [0u8; 20];
    (s.len() == 40 && hex::decode_to_slice(s, &mut out).is_ok()).then_some(out)
}

/// Refuses sizes over the peer's bound, in a sentence a user can act on.
pub fn check_size(what: &str, size: u64) -> Result<(), String> {
    if size > MAX_FILE_SIZE_BYTES {
        return Err(format!(
            "{what} is {size} bytes; the largest file a group can share is 1 TiB ({MAX_FILE_SIZE_BYTES} bytes, {MAX_PIECES} pieces of 512 KiB)"
        ));
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    f.read_exact_at(buf, offset)
}

/// A hashed file: the metadata the tracker stores and the piece list this peer keeps.
#[derive(Clone, Debug)]
pub struct Hashed {
    pub meta: FileMetaBody,
    pub pieces: Vec<PieceHash>,
}

fn threads() -> usize {
    std::thread::available_parallelism().map(|x| x.get()).unwrap_or(2).max(2)
}

/// Hashes pieces of `file` (of `size` bytes) into `out` (one slot per piece) on `threads`
/// threads, each reading a contiguous run so its reads stay sequential.
fn hash_pieces_into(file: &File, size: u64, out: &mut [PieceHash], threads: usize) -> std::io::Result<()> {
    let n = out.len() as u64;
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        let mut first = 0u64;
        for chunk in out.chunks_mut(n.div_ceil(threads as u64).max(1) as usize) {
            let start = first;
            first += chunk.len() as u64;
            handles.push(s.spawn(move || -> std::io::Result<()> {
                let mut buf = vec![0u8; PIECE_LEN_BYTES as usize];
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let (off, len) = piece_range(size, start + k as u64);
                    file.read_exact_at(&mut buf[..len], off)?;
                    *slot = Sha1::digest(&buf[..len]).into();
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join().map_err(|_| std::io::Error::other("hash thread panicked"))??;
        }
        Ok(())
    })
}

/// Hashes `path` into its metadata and piece list. `progress` counts bytes done.
pub fn hash_file(path: &Path, name: &str, progress: &AtomicU64) -> std::io::Result<Hashed> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    check_size(&path.display().to_string(), size)
        .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m))?;
    let n = piece_count(size);
    let mut pieces = vec![[0u8; 20]; n as usize];
    let whole = std::thread::scope(|s| -> std::io::Result<String> {
        let whole = s.spawn(|| whole_sha1(&file, size, progress));
        hash_pieces_into(&file, size, &mut pieces, threads() - 1)?;
        whole.join().map_err(|_| std::io::Error::other("hash thread panicked"))?
    })?;
    let meta = FileMetaBody {
        name: name.to_string(),
        size,
        piece_len: PIECE_LEN_BYTES,
        piece_list_sha1: hex::encode(piece_list_sha1(&pieces)),
        sha1: whole,
    };
    Ok(Hashed { meta, pieces })
}

/// The piece hashes of the first `size` bytes of `path` (to rebuild a lost piece list).
pub fn piece_hashes(path: &Path, size: u64) -> std::io::Result<Vec<PieceHash>> {
    check_size(&path.display().to_string(), size)
        .map_err(|m| std::io::Error::new(std::io::ErrorKind::InvalidInput, m))?;
    let file = File::open(path)?;
    if file.metadata()?.len() < size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} is shorter than {size} bytes", path.display()),
        ));
    }
    let mut pieces = vec![[0u8; 20]; piece_count(size) as usize];
    hash_pieces_into(&file, size, &mut pieces, threads())?;
    Ok(pieces)
}

/// SHA-1 of a whole file, one sequential pass.
pub fn file_sha1(path: &Path) -> std::io::Result<String> {
    let file = File::open(path)?;
    whole_sha1(&file, file.metadata()?.len(), &AtomicU64::new(0))
}

/// SHA-1 (hex) of the first `size` bytes of `file`, one sequential pass in large positional
/// reads; `progress` counts the bytes read so far.
fn whole_sha1(file: &File, size: u64, progress: &AtomicU64) -> std::io::Result<String> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(data: &[u8]) -> PieceHash {
        Sha1::digest(data).into()
    }

    #[test]
    fn pieces_and_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..(PIECE_LEN_BYTES as usize * 2 + 123)).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let progress = AtomicU64::new(0);
        let h = hash_file(&p, "f", &progress).unwrap();
        assert_eq!(h.meta.size, data.len() as u64);
        assert_eq!(h.pieces.len(), 3);
        assert_eq!(h.pieces[0], digest(&data[..PIECE_LEN_BYTES as usize]));
        assert_eq!(h.pieces[2], digest(&data[2 * PIECE_LEN_BYTES as usize..]));
        assert_eq!(h.meta.sha1, sha1_hex(&data));
        assert_eq!(file_sha1(&p).unwrap(), h.meta.sha1);
        assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
        // piece_list_sha1 is the SHA-1 of the raw digests, concatenated in order.
        let concat: Vec<u8> = h.pieces.iter().flatten().copied().collect();
        assert_eq!(h.meta.piece_list_sha1, sha1_hex(&concat));
        assert_eq!(piece_hashes(&p, data.len() as u64).unwrap(), h.pieces);
    }

    #[test]
    fn empty_file_has_no_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e");
        std::fs::write(&p, b"").unwrap();
        let h = hash_file(&p, "e", &AtomicU64::new(0)).unwrap();
        assert!(h.pieces.is_empty());
        assert_eq!(h.meta.sha1, sha1_hex(b""));
        assert_eq!(h.meta.piece_list_sha1, sha1_hex(b""));
    }

    #[test]
    fn sizes_over_the_bound_are_refused() {
        assert!(check_size("f", MAX_FILE_SIZE_BYTES).is_ok());
        let e = check_size("big.iso", MAX_FILE_SIZE_BYTES + 1).unwrap_err();
        assert!(e.contains("big.iso") && e.contains("1 TiB"), "{e}");
        // A sparse file just over the bound is refused before any hashing.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge");
        let f = File::create(&p).unwrap();
        f.set_len(MAX_FILE_SIZE_BYTES + 1).unwrap();
        let e = hash_file(&p, "huge", &AtomicU64::new(0)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn sha1_hex_parsing() {
        assert_eq!(parse_sha1_hex(&"Ab".repeat(20)), Some([0xab; 20]));
        assert_eq!(parse_sha1_hex("ab"), None);
        assert_eq!(parse_sha1_hex(&"zz".repeat(20)), None);
    }
}
