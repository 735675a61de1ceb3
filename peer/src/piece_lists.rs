//! The piece lists this HOME keeps: `HOME/piece-lists/<piece_list_sha1>.bin`, each a file's
//! piece SHA-1s as raw 20-byte digests in piece order. The tracker keeps only the list's digest;
//! the list itself lives with the peers that share the file, which serve it over the piece
//! protocol. Keyed by content, so an upload and a download of the same file share one list.
//!
//! Written by `peer upload` (the CLI hashes the file) and by a download once it has verified
//! the list a sharer sent; read by the daemon's piece server and by a resumed download.
//! Files are replaced atomically (temporary file, fsync, rename), so a reader sees a whole list
//! or none.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::hashing::{parse_sha1_hex, piece_list_sha1, PieceHash};
use crate::home::Home;

#[derive(Clone, Debug)]
pub struct PieceListStore {
    dir: PathBuf,
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

impl PieceListStore {
    pub fn new(home: &Home) -> Self {
        PieceListStore { dir: home.dir.join("piece-lists") }
    }

    /// The list file for `key` (40 hex characters; anything else never names a path).
    fn path(&self, key: &str) -> std::io::Result<PathBuf> {
        let digest = parse_sha1_hex(key).ok_or_else(|| invalid(format!("{key:?} is not a SHA-1")))?;
        Ok(self.dir.join(format!("{}.bin", hex::encode(digest))))
    }

    /// Stores `hashes` under `key`, which must be their `piece_list_sha1`.
    pub fn save(&self, key: &str, hashes: &[PieceHash]) -> std::io::Result<()> {
        let path = self.path(key)?;
        if parse_sha1_hex(key) != Some(piece_list_sha1(hashes)) {
            return Err(invalid(format!("the piece list does not hash to {key}")));
        }
        crate::home::create_private_dir(&self.dir)?;
        // The CLI and the daemon may store the same list at once: each writes its own temporary.
        let tmp = self.dir.join(format!(".{}.{}.tmp", std::process::id(), uuid::Uuid::new_v4().simple()));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            let mut bytes = Vec::with_capacity(20 * hashes.len().min(1 << 16));
            for chunk in hashes.chunks(1 << 16) {
                bytes.clear();
                chunk.iter().for_each(|h| bytes.extend_from_slice(h));
                f.write_all(&bytes)?;
            }
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            // The rename itself reaches the disk with the directory.
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The whole list stored under `key`, if it is there, holds `num_pieces` hashes and hashes
    /// to `key`; `Ok(None)` otherwise.
    pub fn load(&self, key: &str, num_pieces: u64) -> std::io::Result<Option<Vec<PieceHash>>> {
        let want = parse_sha1_hex(key).ok_or_else(|| invalid(format!("{key:?} is not a SHA-1")))?;
        let Some(f) = self.open(key, num_pieces)? else { return Ok(None) };
        let mut hashes = vec![[0u8; 20]; num_pieces as usize];
        let mut buf = vec![0u8; 20 * (1 << 16)];
        for (k, chunk) in hashes.chunks_mut(1 << 16).enumerate() {
            let bytes = &mut buf[..20 * chunk.len()];
            f.read_exact_at(bytes, 20 * (k as u64) * (1 << 16))?;
            for (slot, h) in chunk.iter_mut().zip(bytes.chunks_exact(20)) {
                slot.copy_from_slice(h);
            }
        }
        Ok((piece_list_sha1(&hashes) == want).then_some(hashes))
    }

    /// Hashes `start..start + count` of the list stored under `key`, if a list of `num_pieces`
    /// hashes is stored there. Not re-hashed: the downloader checks the whole list it receives.
    pub fn read_range(
        &self,
        key: &str,
        num_pieces: u64,
        start: u64,
        count: u64,
    ) -> std::io::Result<Option<Vec<PieceHash>>> {
        if start + count > num_pieces {
            return Err(invalid(format!(
                "hashes {start}..{} are past the end of a list of {num_pieces}",
                start + count
            )));
        }
        let Some(f) = self.open(key, num_pieces)? else { return Ok(None) };
        let mut bytes = vec![0u8; 20 * count as usize];
        f.read_exact_at(&mut bytes, 20 * start)?;
        Ok(Some(bytes.chunks_exact(20).map(|h| h.try_into().expect("20 bytes")).collect()))
    }

    /// The list file for `key` if it exists with the length of `num_pieces` hashes.
    fn open(&self, key: &str, num_pieces: u64) -> std::io::Result<Option<File>> {
        let f = match File::open(self.path(key)?) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok((f.metadata()?.len() == 20 * num_pieces).then_some(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> Vec<PieceHash> {
        (0..n).map(|i| [(i % 251) as u8; 20]).collect()
    }

    fn store() -> (tempfile::TempDir, PieceListStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = PieceListStore::new(&Home { dir: dir.path().to_path_buf() });
        (dir, s)
    }

    #[test]
    fn save_load_and_ranges() {
        let (_dir, s) = store();
        let l = list(70_000);
        let key = hex::encode(piece_list_sha1(&l));
        assert_eq!(s.load(&key, 70_000).unwrap(), None, "nothing stored yet");
        s.save(&key, &l).unwrap();
        assert_eq!(s.load(&key, 70_000).unwrap().unwrap(), l);
        assert_eq!(s.load(&key.to_uppercase(), 70_000).unwrap().unwrap(), l, "keys are case-insensitive hex");
        assert_eq!(s.load(&key, 69_999).unwrap(), None, "a list of another length is not this one");
        assert_eq!(s.read_range(&key, 70_000, 65_530, 10).unwrap().unwrap(), l[65_530..65_540]);
        assert!(s.read_range(&key, 70_000, 69_999, 2).is_err());
        // Only the final file is left behind.
        let names: Vec<_> = std::fs::read_dir(&s.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(format!("{key}.bin"))]);
    }

    #[test]
    fn a_list_is_stored_only_under_its_own_digest() {
        let (_dir, s) = store();
        let l = list(3);
        let other = hex::encode(piece_list_sha1(&list(4)));
        assert!(s.save(&other, &l).is_err());
        assert!(s.save("../../etc/passwd", &l).is_err());
        assert!(s.load("../x", 3).is_err());
    }

    #[test]
    fn a_damaged_list_is_not_loaded() {
        let (_dir, s) = store();
        let l = list(5);
        let key = hex::encode(piece_list_sha1(&l));
        s.save(&key, &l).unwrap();
        let path = s.path(&key).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[7] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(s.load(&key, 5).unwrap(), None);
    }

    #[test]
    fn the_empty_list() {
        let (_dir, s) = store();
        let key = hex::encode(piece_list_sha1(&[]));
        s.save(&key, &[]).unwrap();
        assert_eq!(s.load(&key, 0).unwrap(), Some(vec![]));
    }
}
