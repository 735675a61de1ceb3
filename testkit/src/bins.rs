//! The workspace binaries the tests run as processes (`tracker-node`, `peer`, and `chaos`'s
//! relay), current with the workspace's sources: one build step per test run.
//!
//! `cargo test -p peer` builds only what `peer`'s tests link, not `tracker-node`, so without a
//! check a test would run whatever `tracker-node` an earlier build left in target/. So the first
//! call of [`workspace_bin`] in a test process checks the binaries the tests run, and when one
//! is stale builds every stale one in a single `cargo build`:
//!
//! - A binary is stale when a file it was built from is newer than it: the files listed in its
//!   dep-info (`target/<profile>/<name>.d`, which cargo writes beside it: every source file of
//!   every workspace crate it links), the `Cargo.toml` of each of those crates, the workspace's
//!   `Cargo.toml` and `Cargo.lock`. Only changes made before the test run began count (see
//!   [`stale_reason`]).
//! - The check and the build happen under an exclusive `flock` on
//!   `target/<profile>/.testkit-build.lock`: test binaries run at the same time (two `cargo
//!   test` commands) wait for the one that builds, then find the binaries current, instead of
//!   building them again at once. Within one process the check is made once.
//! - cargo does not relink a binary whose inputs changed in a way that does not matter to it (a
//!   `Cargo.lock` change in another crate's dependencies): the binary keeps its old time, so a
//!   stamp file records when a build last found it current, and inputs are compared with the
//!   later of the two.
//!
//! This cannot deadlock with the `cargo test` that runs the test: cargo releases its build lock
//! once the test binaries are built, before it runs them. Another cargo building at the same
//! time makes the nested build wait for it, as any cargo command would. Without the workspace's
//! sources (a bench binary copied elsewhere), there is nothing to check and nothing is built.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The binaries the tests start as processes; checked, and built when stale, together.
const TEST_BINS: [&str; 2] = ["tracker-node", "peer"];

/// Binaries already checked by this process.
static CHECKED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// A binary of the workspace: `$TRACKER_NODE_BIN` / `$PEER_BIN` when set (used as is: the
/// caller chose it, e.g. a deliberately broken build), else next to the running executable (a
/// bench binary in target/<profile>/, or a test in target/<profile>/deps/), current with the
/// workspace's sources (see the module docs).
pub fn workspace_bin(name: &str) -> PathBuf {
    if let Some(p) = chosen_by_env(name) {
        return p;
    }
    let dir = profile_dir();
    let mut wanted = if TEST_BINS.contains(&name) { TEST_BINS.to_vec() } else { vec![name] };
    wanted.retain(|n| chosen_by_env(n).is_none());
    ensure_current(&dir, &wanted);
    let p = dir.join(name);
    assert!(p.exists(), "{} is not built (run: cargo build --release --workspace)", p.display());
    p
}

pub fn peer_bin() -> PathBuf {
    workspace_bin("peer")
}

/// Runs `tracker-node ARGS` to its end, as an operator types it: its exit status and output.
pub fn tracker_node(args: &[&str]) -> std::process::Output {
    Command::new(workspace_bin("tracker-node")).args(args).output().unwrap()
}

/// The binary named by `$<NAME>_BIN` (`tracker-node`: `$TRACKER_NODE_BIN`), if set.
fn chosen_by_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(format!("{}_BIN", name.to_uppercase().replace('-', "_"))).map(PathBuf::from)
}

/// `target/<profile>`: the running executable's directory, or its parent for a test in `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable's path");
    let mut dir = exe.parent().expect("an executable lives in a directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("deps/ lives in the profile directory");
    }
    dir.to_path_buf()
}

/// The workspace root this harness was compiled in.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit lives in the workspace").to_path_buf()
}

/// Checks the binaries `names` in `dir` that this process has not checked yet, and builds the
/// stale ones in one step, under the build lock.
fn ensure_current(dir: &Path, names: &[&str]) {
    let root = workspace_root();
    if !root.join("Cargo.lock").exists() {
        return; // no sources here to build from
    }
    let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    let todo: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !checked.contains(&dir.join(n)) && root.join(n).join("Cargo.toml").exists())
        .collect();
    if todo.is_empty() {
        return;
    }
    let _lock = BuildLock::take(dir);
    let began = run_began();
    let stale: Vec<(&str, String)> =
        todo.iter().filter_map(|n| Some((*n, stale_reason(&dir.join(n), &root, began)?))).collect();
    if !stale.is_empty() {
        build(dir, &root, &stale);
    }
    checked.extend(todo.iter().map(|n| dir.join(n)));
}

/// Builds the binaries `stale` (name, why) in `dir`'s profile and target directory, in one
/// `cargo build`, and stamps each as current as of the build's start.
fn build(dir: &Path, root: &Path, stale: &[(&str, String)]) {
    let why: Vec<String> = stale.iter().map(|(n, why)| format!("{n}: {why}")).collect();
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root).arg("build");
    for (name, _) in stale {
        cmd.args(["-p", name, "--bin", name]);
    }
    let Some(profile) = profile_args(dir) else {
        panic!("out of date in {} ({}); rebuild them: {cmd:?}", dir.display(), why.join("; "));
    };
    cmd.args(&profile);
    eprintln!("testkit: out of date ({}); building: {cmd:?}", why.join("; "));
    let started = SystemTime::now();
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo ({cmd:?}): {e}"));
    assert!(status.success(), "{cmd:?} failed; the tests need current binaries in {}", dir.display());
    // cargo found them current as of `started`: edits made during the build still count.
    for (name, _) in stale {
        if let Ok(f) = File::create(stamp_of(&dir.join(name))) {
            let _ = f.set_modified(started);
        }
    }
}

/// The exclusive lock on `<dir>/.testkit-build.lock`, held while binaries are checked and built,
/// released when dropped (or when the process dies). Where the file cannot be made (a read-only
/// directory, where nothing could be built anyway), there is nothing to guard and no lock.
struct BuildLock(Option<File>);

impl BuildLock {
    fn take(dir: &Path) -> BuildLock {
        let path = dir.join(".testkit-build.lock");
        let Ok(file) = File::options().create(true).truncate(false).write(true).open(&path) else {
            return BuildLock(None);
        };
        // SAFETY: flock(2) on a descriptor this function owns; it blocks until the lock is free.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "cannot lock {}: {e}", path.display());
        }
        BuildLock(Some(file))
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            // SAFETY: flock(2) on the descriptor this lock owns.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn stamp_of(bin: &Path) -> PathBuf {
    let name = bin.file_name().unwrap().to_string_lossy();
    bin.with_file_name(format!(".testkit-fresh-{name}"))
}

/// The files a binary was built from, out of its dep-info (`<bin>.d`: `target: dep dep ...`,
/// spaces in paths escaped as `\ `), with the manifests that govern them. `None` when there is
/// no dep-info to read.
pub(crate) fn inputs(bin: &Path, root: &Path) -> Option<Vec<PathBuf>> {
    let text = std::fs::read_to_string(bin.with_extension("d")).ok()?;
    let (_, deps) = text.lines().next()?.split_once(": ")?;
    let mut files = dep_info_paths(deps);
    let manifests = manifests_of(&files, root);
    files.extend(manifests);
    files.push(root.join("Cargo.toml"));
    files.push(root.join("Cargo.lock"));
    Some(files)
}

/// The paths of a dep-info line's right-hand side: separated by spaces, `\ ` a space in a path.
fn dep_info_paths(deps: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut cur = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                cur.push(' ');
                chars.next();
            }
            ' ' if !cur.is_empty() => files.push(PathBuf::from(std::mem::take(&mut cur))),
            ' ' => {}
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        files.push(PathBuf::from(cur));
    }
    files
}

/// The manifest of every workspace crate one of `files` belongs to.
fn manifests_of(files: &[PathBuf], root: &Path) -> BTreeSet<PathBuf> {
    let mut manifests = BTreeSet::new();
    for f in files {
        let crate_dir =
            f.ancestors().skip(1).take_while(|d| d.starts_with(root)).find(|d| d.join("Cargo.toml").exists());
        if let Some(d) = crate_dir {
            manifests.insert(d.join("Cargo.toml"));
        }
    }
    manifests
}

/// Why `bin` must be rebuilt, or `None` when it is current. Only changes made before
/// `run_began` count: an edit made while a test run is under way (another engineer saving a
/// file) is not this run's business, and rebuilding from a half-done edit would fail it.
pub(crate) fn stale_reason(bin: &Path, root: &Path, run_began: SystemTime) -> Option<String> {
    let Some(built) = mtime(bin) else { return Some("it does not exist".into()) };
    let checked = mtime(&stamp_of(bin)).map_or(built, |s| s.max(built));
    let Some(inputs) = inputs(bin, root) else { return Some("it has no dep-info beside it".into()) };
    inputs.into_iter().find_map(|f| match mtime(&f) {
        None => Some(format!("{} was removed", f.display())),
        Some(t) if t > checked && t <= run_began => Some(format!("{} changed after it was built", f.display())),
        Some(_) => None,
    })
}

/// When a process started, from `/proc/<pid>/stat` (clock ticks since boot) and the boot
/// time in `/proc/stat`; also its command name.
fn process_start(pid: u32) -> Option<(String, SystemTime)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    // Fields after the command: state is field 3, starttime field 22.
    let ticks: u64 = rest.split_whitespace().nth(22 - 3)?.parse().ok()?;
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let since_boot = Duration::from_millis(ticks * 1000 / hz);
    Some((comm, SystemTime::UNIX_EPOCH + Duration::from_secs(btime) + since_boot))
}

/// When this test run began: the `cargo` that runs this test (its parent), or else this
/// process. Rounded up by a second, the granularity of the boot time.
pub(crate) fn run_began() -> SystemTime {
    let me = std::process::id();
    let parent = std::fs::read_to_string(format!("/proc/{me}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()));
    let began = match parent.and_then(process_start) {
        Some((comm, t)) if comm == "cargo" => Some(t),
        _ => process_start(me).map(|(_, t)| t),
    };
    began.map_or_else(SystemTime::now, |t| t + Duration::from_secs(1))
}

/// The cargo options that build into `profile_dir` (`<target>/<profile>`), or `None` when
/// it is not laid out like that (cross builds: `<target>/<triple>/<profile>`).
fn profile_args(profile_dir: &Path) -> Option<Vec<String>> {
    let target = profile_dir.parent()?;
    if !target.join("CACHEDIR.TAG").exists() {
        return None;
    }
    let mut args = match profile_dir.file_name()?.to_str()? {
        "release" => vec!["--release".to_string()],
        "debug" => vec![],
        other => vec!["--profile".to_string(), other.to_string()],
    };
    args.push("--target-dir".into());
    args.push(target.to_string_lossy().into_owned());
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake target dir: a binary, its dep-info naming two sources of a fake crate.
    fn layout(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let root = dir.join("ws");
        let src = root.join("krate/src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(root.join("Cargo.toml"), "").unwrap();
        std::fs::write(root.join("Cargo.lock"), "").unwrap();
        std::fs::write(root.join("krate/Cargo.toml"), "").unwrap();
        let (a, b) = (src.join("main.rs"), src.join("with space.rs"));
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let bin = dir.join("target/release/krate");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::write(&bin, "").unwrap();
        let dep_info = format!("{}: {} {}\n", bin.display(), a.display(), b.display().to_string().replace(' ', "\\ "));
        std::fs::write(bin.with_extension("d"), dep_info).unwrap();
        (root, bin, b)
    }

    fn set_mtime(p: &Path, t: SystemTime) {
        File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn a_binary_is_stale_when_a_source_changed_after_it_was_built_and_before_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let (root, bin, spaced) = layout(dir.path());
        let t0 = SystemTime::now() - Duration::from_secs(100);
        let all = inputs(&bin, &root).unwrap();
        assert_eq!(
            all.len(),
            2 + 1 + 2,
            "two sources, their crate's manifest, the workspace's and Cargo.lock: {all:?}"
        );
        assert!(all.contains(&spaced), "escaped spaces are read: {all:?}");
        for f in &all {
            set_mtime(f, t0);
        }
        set_mtime(&bin, t0 + Duration::from_secs(10));
        let run = t0 + Duration::from_secs(50);
        assert_eq!(stale_reason(&bin, &root, run), None);

        set_mtime(&spaced, t0 + Duration::from_secs(20));
        let why = stale_reason(&bin, &root, run).expect("a source changed before the run");
        assert!(why.contains("with space.rs"), "{why}");
        // The same change, made after the run began, is not this run's business.
        assert_eq!(stale_reason(&bin, &root, t0 + Duration::from_secs(15)), None);
        // A build that found it current (the stamp) covers changes made before it.
        let stamp = bin.with_file_name(".testkit-fresh-krate");
        std::fs::write(&stamp, "").unwrap();
        set_mtime(&stamp, t0 + Duration::from_secs(30));
        assert_eq!(stale_reason(&bin, &root, run), None);
        // Cargo.lock counts too.
        set_mtime(&root.join("Cargo.lock"), t0 + Duration::from_secs(40));
        assert!(stale_reason(&bin, &root, run).unwrap().contains("Cargo.lock"));

        std::fs::remove_file(&spaced).unwrap();
        assert!(stale_reason(&bin, &root, run).unwrap().contains("was removed"));
        std::fs::remove_file(bin.with_extension("d")).unwrap();
        assert!(stale_reason(&bin, &root, run).unwrap().contains("dep-info"));
        std::fs::remove_file(&bin).unwrap();
        assert!(stale_reason(&bin, &root, run).unwrap().contains("does not exist"));
    }

    #[test]
    fn the_run_began_before_now() {
        let began = run_began();
        assert!(began <= SystemTime::now() + Duration::from_secs(1));
        assert!(began > SystemTime::now() - Duration::from_secs(24 * 3600), "{began:?}");
    }

    #[test]
    fn the_build_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = BuildLock::take(dir.path());
        let other = File::open(dir.path().join(".testkit-build.lock")).unwrap();
        // SAFETY: flock(2) on a descriptor this test owns.
        let try_lock = || unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_ne!(try_lock(), 0, "a second open of the lock file cannot take it while it is held");
        drop(held);
        assert_eq!(try_lock(), 0, "dropping the lock releases it");
    }
}
