//! The files of a download on disk, and positional piece I/O on them.
//!
//! Pieces: reads for serving, verified writes for downloading; no lock on the file, since
//! distinct pieces are distinct byte ranges.
//!
//! Placement: a download writes only where it was told to, and only into files it created.
//! The `.part` file is created with O_CREAT | O_EXCL | O_NOFOLLOW (a resumed download reopens
//! it with O_NOFOLLOW and checks, on the open descriptor, that it is a regular file of ours with
//! one link), so a symlink or a hard link planted at `DEST/NAME.part` is never written through.
//! The finished file is renamed onto its final name with RENAME_NOREPLACE unless `--force` asked
//! for a replacement; rename(2) replaces a directory entry, so even then a symlink at the
//! destination is replaced, not followed. The decisions (`dest_plan`, `stale_part`,
//! `check_part`) are plain functions over `Found`, tested without touching files.

use std::fs::{File, Metadata, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use sha1::{Digest, Sha1};

use crate::hashing::{piece_count, piece_range, PieceHash, PIECE_LEN_BYTES};

/// What sits at a path, as lstat(2) (or fstat(2) on an open descriptor) sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Nothing,
    Regular {
        size: u64,
        uid: u32,
        links: u64,
    },
    Symlink,
    Dir,
    /// A FIFO, socket or device.
    Other,
}

impl Found {
    pub fn of(meta: &Metadata) -> Found {
        let t = meta.file_type();
        if t.is_symlink() {
            Found::Symlink
        } else if t.is_dir() {
            Found::Dir
        } else if t.is_file() {
            Found::Regular { size: meta.len(), uid: meta.uid(), links: meta.nlink() }
        } else {
            Found::Other
        }
    }

    /// What `path` itself is, without following a symlink there.
    pub fn at(path: &Path) -> std::io::Result<Found> {
        match std::fs::symlink_metadata(path) {
            Ok(m) => Ok(Found::of(&m)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Found::Nothing),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Found::Nothing => "nothing",
            Found::Regular { .. } => "a regular file",
            Found::Symlink => "a symbolic link",
            Found::Dir => "a directory",
            Found::Other => "not a regular file",
        }
    }
}

/// The uid this process acts as (what owns the files it creates).
pub fn my_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// What a download does about its destination, decided before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestPlan {
    /// Nothing is there: download.
    Download,
    /// A regular file of the expected size: hash it. The same content means the download is
    /// already done; other content is refused, or replaced with `--force`.
    Compare,
    /// Something else is there and `--force` asked to replace it (at the end, atomically).
    Replace,
    /// Something is there and nothing may replace it: `dest_exists`.
    Refuse,
    /// A directory: never replaced, `--force` or not.
    IsDir,
}

pub fn dest_plan(found: Found, size: u64, force: bool) -> DestPlan {
    match found {
        Found::Nothing => DestPlan::Download,
        Found::Dir => DestPlan::IsDir,
        Found::Regular { size: s, .. } if s == size => DestPlan::Compare,
        _ if force => DestPlan::Replace,
        _ => DestPlan::Refuse,
    }
}

/// The sentence of `dest_exists` (the `dest_exists` refusal, docs/CONTRACT.md "Error codes").
pub fn dest_exists_message(dest: &Path) -> String {
    format!("{} already exists (use --force to replace it)", dest.display())
}

/// A fresh download found something at its `.part` path: Ok when it is a leftover of ours that
/// may be deleted and created again (a regular file of our uid with no other link), else why not.
pub fn stale_part(found: Found, uid: u32, part: &Path) -> Result<(), String> {
    match found {
        Found::Nothing => Ok(()),
        Found::Regular { uid: owner, links: 1, .. } if owner == uid => Ok(()),
        Found::Regular { uid: owner, .. } if owner != uid => {
            Err(format!("{} belongs to another user (uid {owner}); remove it or download elsewhere", part.display()))
        }
        Found::Regular { links, .. } => Err(format!(
            "{} has {links} hard links; a download writes only into a file of its own (remove it and try again)",
            part.display()
        )),
        other => Err(format!(
            "{} is {}; it is not followed or replaced (remove it and try again)",
            part.display(),
            other.describe()
        )),
    }
}

/// A `.part` file opened for resuming (fstat of the open descriptor): ours, regular, one link.
pub fn check_part(found: Found, uid: u32, part: &Path) -> Result<(), String> {
    match found {
        Found::Regular { uid: owner, links: 1, .. } if owner == uid => Ok(()),
        other => stale_part(other, uid, part).and(Err(format!("{} is not this download's file", part.display()))),
    }
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidInput, msg)
}

fn size_part(f: &File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if f.metadata()?.len() != size {
        f.set_len(size)?;
    }
    // Reserve the blocks up front (where the filesystem can), so piece writes do not
    // allocate as they go; a sparse file from set_len works too, only slower.
    if size > 0 {
        // SAFETY: fallocate(2) on a file descriptor we own, mode 0 within the file's size.
        let _ = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
    }
    Ok(())
}

/// Creates a fresh download's `.part` file: exclusively and never through a symlink. A leftover
/// `.part` of ours (an earlier failed download to the same place) is deleted first; anything
/// else there (a symlink, another user's file, a hard link) is refused and left untouched.
pub fn create_part(path: &Path, size: u64) -> std::io::Result<File> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let f = match open() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            stale_part(Found::at(path)?, my_uid(), path).map_err(invalid)?;
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // Whatever appeared since is refused by O_EXCL again.
            open()?
        }
        r => r?,
    };
    size_part(&f, size)?;
    Ok(f)
}

/// Reopens a download's own `.part` file after a restart (created again if it is gone):
/// O_NOFOLLOW, and on the open descriptor a regular file of ours with one link.
pub fn open_part(path: &Path, size: u64) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| nofollow_error(e, path))?;
    check_part(Found::of(&f.metadata()?), my_uid(), path).map_err(invalid)?;
    size_part(&f, size)?;
    Ok(f)
}

/// ELOOP from O_NOFOLLOW, said in words.
fn nofollow_error(e: std::io::Error, path: &Path) -> std::io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        invalid(format!("{} is a symbolic link; it is not followed (remove it and try again)", path.display()))
    } else {
        e
    }
}

/// Opens an existing destination for reading, without following a symlink and without blocking
/// on a FIFO; only a regular file is returned.
pub fn open_existing(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| nofollow_error(e, path))?;
    if !f.metadata()?.is_file() {
        return Err(invalid(format!("{} is not a regular file", path.display())));
    }
    Ok(f)
}

/// The whole-file SHA-1 (hex) and the piece hashes of the first `size` bytes of an open file,
/// in one sequential pass.
pub fn hash_open(f: &File, size: u64) -> std::io::Result<(String, Vec<PieceHash>)> {
    let mut whole = Sha1::new();
    let mut pieces = Vec::with_capacity(piece_count(size) as usize);
    let mut buf = vec![0u8; PIECE_LEN_BYTES as usize];
    for i in 0..piece_count(size) {
        let (off, len) = piece_range(size, i);
        f.read_exact_at(&mut buf[..len], off)?;
        whole.update(&buf[..len]);
        pieces.push(Sha1::digest(&buf[..len]).into());
    }
    Ok((hex::encode(whole.finalize()), pieces))
}

/// Whether `path` (not followed) is the very file `f` is open on.
pub fn is_same_file(path: &Path, f: &File) -> std::io::Result<bool> {
    let (a, b) = (std::fs::symlink_metadata(path)?, f.metadata()?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

fn cstring(p: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| invalid(format!("{} contains NUL", p.display())))
}

/// Moves the finished `from` onto `to`. Without `replace`, nothing at `to` (a file, a symlink,
/// anything) is ever replaced: `AlreadyExists` instead. With `replace`, whatever entry is at `to`
/// is replaced atomically; a symlink there is replaced itself, its target untouched.
pub fn place(from: &Path, to: &Path, replace: bool) -> std::io::Result<()> {
    if replace {
        return std::fs::rename(from, to);
    }
    let (a, b) = (cstring(from)?, cstring(to)?);
    // SAFETY: renameat2(2) with two NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE as libc::c_uint,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // No renameat2 in this kernel, or no RENAME_NOREPLACE on this filesystem.
        Some(libc::ENOSYS) | Some(libc::EINVAL) => link_then_unlink(from, to),
        _ => Err(e),
    }
}

/// The fallback of `place` without `replace`: link(2) fails with EEXIST when anything is at
/// `to` and does not follow a symlink at `from`; then the old name goes.
pub fn link_then_unlink(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    /// Writes `dir/victim`: a file that is not the download's, which a test links to from where
    /// a download writes, places or removes (the attack these functions refuse).
    pub(crate) fn victim(dir: &Path) -> PathBuf {
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        victim
    }

    /// The victim still holds what `victim` wrote.
    #[track_caller]
    pub(crate) fn assert_untouched(victim: &Path) {
        assert_eq!(std::fs::read(victim).unwrap(), b"precious", "{} was changed through a link", victim.display());
    }

    const ME: u32 = 1000;
    fn reg(size: u64) -> Found {
        Found::Regular { size, uid: ME, links: 1 }
    }

    #[test]
    fn the_destination_decisions() {
        let table = [
            (Found::Nothing, false, DestPlan::Download),
            (Found::Nothing, true, DestPlan::Download),
            (reg(10), false, DestPlan::Compare),
            (reg(10), true, DestPlan::Compare),
            (reg(11), false, DestPlan::Refuse),
            (reg(11), true, DestPlan::Replace),
            (Found::Symlink, false, DestPlan::Refuse),
            (Found::Symlink, true, DestPlan::Replace),
            (Found::Other, false, DestPlan::Refuse),
            (Found::Other, true, DestPlan::Replace),
            (Found::Dir, false, DestPlan::IsDir),
            (Found::Dir, true, DestPlan::IsDir),
        ];
        for (found, force, want) in table {
            assert_eq!(dest_plan(found, 10, force), want, "{found:?} force={force}");
        }
    }

    #[test]
    fn only_a_leftover_of_ours_at_the_part_path_is_removed() {
        let p = Path::new("/d/f.part");
        assert!(stale_part(Found::Nothing, ME, p).is_ok());
        assert!(stale_part(reg(5), ME, p).is_ok());
        let refused = [
            (Found::Symlink, "symbolic link"),
            (Found::Dir, "directory"),
            (Found::Other, "not a regular file"),
            (Found::Regular { size: 5, uid: ME + 1, links: 1 }, "another user"),
            (Found::Regular { size: 5, uid: ME, links: 2 }, "hard links"),
        ];
        for (found, why) in refused {
            let e = stale_part(found, ME, p).unwrap_err();
            assert!(e.contains(why) && e.contains("/d/f.part"), "{found:?}: {e}");
            assert!(check_part(found, ME, p).is_err(), "{found:?}");
        }
        assert!(check_part(reg(5), ME, p).is_ok());
        assert!(check_part(Found::Nothing, ME, p).is_err());
    }

    #[test]
    fn a_symlink_at_the_part_path_is_neither_followed_nor_removed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = victim(dir.path());
        let part = dir.path().join("f.part");
        symlink(&victim, &part).unwrap();
        let e = create_part(&part, 4096).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = open_part(&part, 4096).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // A dangling link: O_CREAT would create its target; O_NOFOLLOW does not.
        let dangling = dir.path().join("g.part");
        symlink(dir.path().join("created-through-link"), &dangling).unwrap();
        assert!(create_part(&dangling, 10).is_err());
        assert!(open_part(&dangling, 10).is_err());
        assert!(!dir.path().join("created-through-link").exists());
        assert_untouched(&victim);
        assert!(std::fs::symlink_metadata(&part).unwrap().file_type().is_symlink());
        assert!(open_existing(&part).is_err(), "an existing destination is not read through a link either");
    }

    #[test]
    fn a_hard_link_at_the_part_path_is_not_written_into() {
        let dir = tempfile::tempdir().unwrap();
        let victim = victim(dir.path());
        let part = dir.path().join("f.part");
        std::fs::hard_link(&victim, &part).unwrap();
        assert!(create_part(&part, 4096).unwrap_err().to_string().contains("hard links"));
        assert!(open_part(&part, 4096).is_err());
        assert_untouched(&victim);
    }

    #[test]
    fn a_leftover_part_of_ours_is_recreated_and_a_resume_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        std::fs::write(&part, b"old bytes").unwrap();
        let f = create_part(&part, 100).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 100);
        let mut b = [1u8; 9];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b, [0u8; 9], "a new file, not the leftover's bytes");
        f.write_all_at(b"new", 0).unwrap();
        drop(f);
        let f = open_part(&part, 100).unwrap();
        let mut b = [0u8; 3];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"new", "a resume keeps what is there");
        assert!(is_same_file(&part, &f).unwrap());
    }

    #[test]
    fn without_replace_nothing_at_the_destination_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (part, dest) = (dir.path().join("f.part"), dir.path().join("f"));
        let victim = victim(dir.path());
        for fallback in [false, true] {
            let go =
                |from: &Path, to: &Path| if fallback { link_then_unlink(from, to) } else { place(from, to, false) };
            // A file there.
            std::fs::write(&part, b"new").unwrap();
            std::fs::write(&dest, b"theirs").unwrap();
            assert_eq!(go(&part, &dest).unwrap_err().kind(), ErrorKind::AlreadyExists);
            assert_eq!(std::fs::read(&dest).unwrap(), b"theirs");
            assert_eq!(std::fs::read(&part).unwrap(), b"new");
            // A symlink there (dangling or not): not followed, not replaced.
            std::fs::remove_file(&dest).unwrap();
            symlink(&victim, &dest).unwrap();
            assert_eq!(go(&part, &dest).unwrap_err().kind(), ErrorKind::AlreadyExists);
            assert!(std::fs::symlink_metadata(&dest).unwrap().file_type().is_symlink());
            assert_untouched(&victim);
            std::fs::remove_file(&dest).unwrap();
            symlink(dir.path().join("nowhere"), &dest).unwrap();
            assert_eq!(go(&part, &dest).unwrap_err().kind(), ErrorKind::AlreadyExists);
            assert!(!dir.path().join("nowhere").exists());
            // Nothing there: moved.
            std::fs::remove_file(&dest).unwrap();
            go(&part, &dest).unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"new");
            assert!(!part.exists());
            std::fs::remove_file(&dest).unwrap();
        }
    }

    #[test]
    fn replace_replaces_a_symlink_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (part, dest) = (dir.path().join("f.part"), dir.path().join("f"));
        let victim = victim(dir.path());
        std::fs::write(&part, b"new").unwrap();
        symlink(&victim, &dest).unwrap();
        place(&part, &dest, true).unwrap();
        assert!(std::fs::symlink_metadata(&dest).unwrap().file_type().is_file());
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_untouched(&victim);
        // And a regular file is replaced too.
        std::fs::write(&part, b"newer").unwrap();
        place(&part, &dest, true).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"newer");
    }

    #[test]
    fn hash_open_matches_hash_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..(PIECE_LEN_BYTES as usize + 77)).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let h = crate::hashing::hash_file(&p, "f", &std::sync::atomic::AtomicU64::new(0)).unwrap();
        let (sha1, pieces) = hash_open(&open_existing(&p).unwrap(), data.len() as u64).unwrap();
        assert_eq!(sha1, h.meta.sha1);
        assert_eq!(pieces, h.pieces);
        let (sha1, pieces) = hash_open(&open_existing(&p).unwrap(), 0).unwrap();
        assert_eq!(sha1, crate::hashing::sha1_hex(b""));
        assert!(pieces.is_empty());
    }
}
