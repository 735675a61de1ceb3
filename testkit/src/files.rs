//! Files the tests share and download: seeded pseudo-random contents, and their SHA-1.

use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::fuzz::Rng;

/// A file of `size` pseudo-random bytes (seeded), and its SHA-1 (hex).
pub fn random_file(dir: &Path, name: &str, size: usize, seed: u64) -> (PathBuf, String) {
    let mut rng = Rng(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    let mut data = vec![0u8; size];
    for chunk in data.chunks_mut(8) {
        let b = rng.next().to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let p = dir.join(name);
    std::fs::write(&p, &data).unwrap();
    (p, hex::encode(Sha1::digest(&data)))
}

pub fn file_sha1(p: &Path) -> String {
    hex::encode(Sha1::digest(std::fs::read(p).unwrap()))
}

/// Most entries `walk` visits: a bound on a test's folder (HOMEs and data_dirs hold a few dozen).
const MAX_WALKED: usize = 10_000;

/// Every directory and regular file below `dir` (`dir` itself left out), with its metadata;
/// symbolic links are not followed, sockets and FIFOs are left out.
pub fn walk(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                todo.push(p.clone());
            }
            if meta.is_dir() || meta.is_file() {
                out.push((p, meta));
            }
            assert!(out.len() < MAX_WALKED, "more than {MAX_WALKED} entries under {}", dir.display());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_makes_the_same_bytes_as_it_always_did() {
        let dir = tempfile::tempdir().unwrap();
        // Digests of the bytes this function wrote before it used `fuzz::Rng` (computed
        // independently): files made by older runs and figures in the docs stay comparable.
        for (name, size, seed, sha1) in [
            ("a", 1_000_003, 7, "ad41ded54cf1fe228b2b0107c9a438e1ba27f2be"),
            ("b", 1_000_003, 8, "84084fb31f3fdf42a2e76164734ef5caf6e273fd"),
            ("c", 13, 1, "2763c5ccd3c6b150c2adfbd15e906968281eaaea"),
        ] {
            let (p, sha) = random_file(dir.path(), name, size, seed);
            assert_eq!(std::fs::metadata(&p).unwrap().len(), size as u64);
            assert_eq!((sha.as_str(), file_sha1(&p).as_str()), (sha1, sha1), "{name}");
        }
    }
}
