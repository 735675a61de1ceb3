//! Local safety of the peer, with real processes: a download writes only into files it created
//! (no symlink followed at `DEST/NAME.part` or at `DEST/NAME`, nothing replaced without
//! `--force`, `dest_exists` otherwise), HOME is 0700 and the control socket 0600 whatever the
//! umask, the daemon serves only its own uid, and `--listen 127.0.0.1:0` announces the port it
//! got.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::*;

const MIB: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Alice (owner, sharing `data.bin`, serving with `delay_ms` per piece) and Bob (member) in
/// "team"; the file's path and SHA-1.
fn shared(cluster: &Cluster, size: usize, delay_ms: u64) -> (Peer, Peer, PathBuf, String) {
    let (alice, bob) = slow_team(cluster, "team", delay_ms);
    let (path, sha1) = alice.upload_random(cluster.dir.path(), "data.bin", size, 7, "team");
    (alice, bob, path, sha1)
}

/// A fresh destination folder.
fn dest_dir(cluster: &Cluster, name: &str) -> PathBuf {
    let d = cluster.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A file outside every destination that a download must never write.
fn victim(cluster: &Cluster) -> PathBuf {
    let v = cluster.dir.path().join("victim.txt");
    std::fs::write(&v, b"the victim's own bytes").unwrap();
    v
}

fn assert_victim_untouched(v: &Path) {
    assert_eq!(std::fs::read(v).unwrap(), b"the victim's own bytes", "{} was written through", v.display());
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

fn is_regular(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
}

/// One request on the control socket, bypassing the CLI (the daemon is the authority).
fn control(home: &Path, req: Value) -> Value {
    let mut s = std::os::unix::net::UnixStream::connect(home.join("daemon.sock")).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    writeln!(s, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
}

/// The daemon asked on its control socket, not through the CLI, to download team's data.bin to
/// `dest`: its answer.
fn download_by_control(p: &Peer, dest: &Path) -> Value {
    control(&p.home, json!({"op": "download", "group": "team", "name": "data.bin", "dest": dest.to_str().unwrap()}))
}

/// A `dest_exists` refusal, as the CONTRACT words it.
fn assert_dest_exists(r: &Run, path: &Path) {
    let want = format!("{} already exists (use --force to replace it)", path.display());
    assert_eq!(r.refused("dest_exists"), want);
    assert_eq!(r.stderr.trim_end(), format!("error: {want}"), "one error line on stderr");
}

#[test]
fn a_symlink_at_the_part_path_is_not_followed() {
    let cluster = Cluster::start(1);
    let (_alice, bob, _, sha1) = shared(&cluster, 2 * MIB + 3, 0);
    let v = victim(&cluster);
    let d = dest_dir(&cluster, "dl");
    let part = d.join("data.bin.part");
    std::os::unix::fs::symlink(&v, &part).unwrap();

    let msg = bob.run(&["download", "team", "data.bin", d.to_str().unwrap()]).refused("download_failed");
    assert!(msg.contains("data.bin.part") && msg.contains("symbolic link"), "a clear message: {msg}");
    assert_victim_untouched(&v);
    assert!(is_symlink(&part), "the link itself is left alone");
    assert!(!d.join("data.bin").exists());

    // A dangling link: following it would create its target.
    let d2 = dest_dir(&cluster, "dl2");
    let target = cluster.dir.path().join("created-through-the-link");
    std::os::unix::fs::symlink(&target, d2.join("data.bin.part")).unwrap();
    let r = bob.run(&["download", "team", "data.bin", d2.to_str().unwrap()]);
    assert_eq!(r.error_code(), "download_failed", "{}", r.stdout);
    assert!(!target.exists(), "nothing created through a dangling link");

    // The same download with the link gone succeeds (the failed records do not get in the way).
    std::fs::remove_file(&part).unwrap();
    bob.ok(&["download", "team", "data.bin", d.to_str().unwrap()]);
    assert_eq!(file_sha1(&d.join("data.bin")), sha1);
    assert!(!part.exists());
    assert_victim_untouched(&v);
}

#[test]
fn a_resumed_download_does_not_follow_a_symlink_put_at_its_part() {
    let cluster = Cluster::start(1);
    // 16 pieces at 150 ms from one sharer: the download is still running when its daemon dies.
    let (_alice, mut bob, _, _) = shared(&cluster, 8 * MIB, 150);
    let v = victim(&cluster);
    let d = dest_dir(&cluster, "dl");
    bob.ok(&["download", "team", "data.bin", d.to_str().unwrap(), "--detach"]);
    wait_until("a piece to arrive", TIMEOUT, || {
        bob.downloads().iter().any(|r| r["bytes_done"].as_u64().unwrap_or(0) > 0 && r["state"] == "downloading")
    });
    bob.kill_daemon();
    let part = d.join("data.bin.part");
    std::fs::remove_file(&part).unwrap();
    std::os::unix::fs::symlink(&v, &part).unwrap();
    bob.start_daemon();
    let row = bob.wait_download("data.bin", TIMEOUT);
    assert_eq!(row["state"], "failed", "{row}");
    assert!(row["error"].as_str().unwrap().contains("symbolic link"), "{row}");
    assert_victim_untouched(&v);
    assert!(is_symlink(&part));
    assert!(!d.join("data.bin").exists());
}

#[test]
fn a_symlink_at_the_destination_is_not_written_through() {
    let cluster = Cluster::start(1);
    let (_alice, bob, _, sha1) = shared(&cluster, MIB + 17, 0);
    let v = victim(&cluster);
    let d = dest_dir(&cluster, "dl");
    let dest = d.join("data.bin");
    std::os::unix::fs::symlink(&v, &dest).unwrap();

    // Without --force: dest_exists, from the CLI and from the daemon alike.
    let r = bob.run(&["download", "team", "data.bin", d.to_str().unwrap()]);
    assert_dest_exists(&r, &dest);
    let r = download_by_control(&bob, &dest);
    assert_eq!(r["result"], "error", "{r}");
    assert_eq!(r["code"], "dest_exists", "{r}");
    // DEST given as the link's own path: the same.
    let r = bob.run(&["download", "team", "data.bin", dest.to_str().unwrap()]);
    assert_dest_exists(&r, &dest);
    assert!(is_symlink(&dest));
    assert!(!d.join("data.bin.part").exists(), "nothing written before the refusal");
    assert_victim_untouched(&v);

    // With --force: the link is replaced by the file; its target is untouched.
    let ok = bob.ok(&["download", "team", "data.bin", d.to_str().unwrap(), "--force"]);
    assert_eq!(ok["dest"], dest.to_str().unwrap());
    assert!(is_regular(&dest), "the link itself was replaced");
    assert_eq!(file_sha1(&dest), sha1);
    assert_victim_untouched(&v);
}

#[test]
fn an_existing_different_file_is_refused_with_dest_exists() {
    let cluster = Cluster::start(1);
    let size = MIB + 5;
    let (_alice, bob, _, _) = shared(&cluster, size, 0);
    let d = dest_dir(&cluster, "dl");
    let dest = d.join("data.bin");
    // Another size, then the same size with other bytes (the SHA-1 decides), then DEST as a
    // file path.
    for (content, dest_arg) in [
        (b"mine, not the download".to_vec(), d.clone()),
        (vec![0x5a; size], d.clone()),
        (vec![0x5a; size], dest.clone()),
    ] {
        std::fs::write(&dest, &content).unwrap();
        let r = bob.run(&["download", "team", "data.bin", dest_arg.to_str().unwrap()]);
        assert_dest_exists(&r, &dest);
        assert_eq!(std::fs::read(&dest).unwrap(), content, "the file is unchanged");
        assert!(!d.join("data.bin.part").exists(), "nothing written before the refusal");
        // The daemon refuses on its own too.
        let r = download_by_control(&bob, &dest);
        assert_eq!(r["code"], "dest_exists", "{r}");
        assert_eq!(std::fs::read(&dest).unwrap(), content);
    }
    assert!(bob.downloads().is_empty(), "a refusal records no download: {:?}", bob.downloads());
}

#[test]
fn force_replaces_it() {
    let cluster = Cluster::start(1);
    let (_alice, bob, _, sha1) = shared(&cluster, 2 * MIB + 99, 0);
    let d = dest_dir(&cluster, "dl");
    let dest = d.join("data.bin");
    std::fs::write(&dest, b"an older, different file").unwrap();
    let r = bob.ok(&["download", "team", "data.bin", d.to_str().unwrap(), "--force"]);
    assert_eq!(r["ok"], true);
    assert_eq!(file_sha1(&dest), sha1);
    assert!(!d.join("data.bin.part").exists());
    // --force is in the help, with its sentence.
    let help = bob.run(&["download", "--help"]);
    assert!(help.stdout.contains("--force") && help.stdout.contains("Replace an existing file"), "{}", help.stdout);
}

#[test]
fn an_identical_existing_file_is_accepted() {
    let cluster = Cluster::start(1);
    let (alice, bob, path, sha1) = shared(&cluster, 3 * MIB + 1, 0);
    let d = dest_dir(&cluster, "dl");
    let dest = d.join("data.bin");
    std::fs::copy(&path, &dest).unwrap();
    let inode = std::fs::metadata(&dest).unwrap().ino();

    let r = bob.ok(&["download", "team", "data.bin", d.to_str().unwrap()]);
    assert_eq!(r["already_present"], true, "{r}");
    assert_eq!(r["dest"], dest.to_str().unwrap());
    assert_eq!(std::fs::metadata(&dest).unwrap().ino(), inode, "the file was left in place");
    assert_eq!(file_sha1(&dest), sha1);
    let rows = bob.downloads();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "complete");
    assert_eq!(rows[0]["bytes_done"], rows[0]["size"]);

    // Shared as after a download: with Alice gone, Carol gets the file from Bob.
    assert_eq!(bob.ok(&["list-files", "team"])[0]["sharers"], 2);
    alice.ok(&["stop-share", "team", "data.bin"]);
    let carol = Peer::member(&cluster, "carol", "team", &alice, &[]);
    let cd = dest_dir(&cluster, "carol-dl");
    carol.ok(&["download", "team", "data.bin", cd.to_str().unwrap()]);
    assert_eq!(file_sha1(&cd.join("data.bin")), sha1);
}

#[test]
fn a_file_that_appears_at_the_destination_meanwhile_is_not_replaced() {
    let cluster = Cluster::start(1);
    // 16 pieces at 150 ms from one sharer: time to put a file in the way.
    let (_alice, bob, _, sha1) = shared(&cluster, 8 * MIB, 150);
    let d = dest_dir(&cluster, "dl");
    let dest = d.join("data.bin");
    let r = std::thread::scope(|s| {
        let cli = s.spawn(|| bob.run(&["download", "team", "data.bin", d.to_str().unwrap()]));
        wait_until("the download to be under way", TIMEOUT, || {
            d.join("data.bin.part").exists()
                && bob.downloads().iter().any(|r| r["state"] == "downloading" && r["bytes_done"].as_u64() > Some(0))
        });
        std::fs::write(&dest, b"written by the user meanwhile").unwrap();
        cli.join().unwrap()
    });
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.error_code(), "dest_exists", "{}", r.stdout);
    assert_eq!(std::fs::read(&dest).unwrap(), b"written by the user meanwhile");
    // The verified file is kept beside it.
    assert_eq!(file_sha1(&d.join("data.bin.part")), sha1);
}

/// A daemon started with umask 0 (and killed when dropped).
struct UmaskDaemon(Child);

impl UmaskDaemon {
    fn start(home: &Path, config: &Path, log: &Path) -> UmaskDaemon {
        let log = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(peer_bin());
        cmd.arg("daemon")
            .env("PEER_HOME", home)
            .env("PEER_CLUSTER", config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        umask_0(&mut cmd);
        let child = UmaskDaemon(cmd.spawn().unwrap());
        let sock = home.join("daemon.sock");
        wait_until("the daemon's socket", TIMEOUT, || std::os::unix::net::UnixStream::connect(&sock).is_ok());
        child
    }
}

impl Drop for UmaskDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn umask_0(cmd: &mut Command) {
    // SAFETY: umask(2) is async-signal-safe and cannot fail.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn home_is_0700_and_the_socket_0600_even_under_umask_0() {
    let cluster = Cluster::start(1);
    let base = cluster.dir.path().join("umask0");
    let home = base.join("nested/home");
    let log = cluster.dir.path().join("umask0-daemon.log");
    {
        let _daemon = UmaskDaemon::start(&home, &cluster.config, &log);
        assert_eq!(mode(&home), 0o700, "HOME");
        assert_eq!(mode(&base.join("nested")), 0o700, "a parent the peer created");
        let sock = home.join("daemon.sock");
        assert!(std::fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
        assert_eq!(mode(&sock), 0o600, "the control socket");
        // The CLI under umask 0 too: the session (a secret) and the piece lists.
        let cli = |args: &[&str], stdin: &str| {
            let mut cmd = Command::new(peer_bin());
            cmd.arg("--json").args(args).env("PEER_HOME", &home).env("PEER_CLUSTER", &cluster.config);
            umask_0(&mut cmd);
            let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "peer {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        cli(&["register", "umasked", "--password-stdin"], "pw-umasked\n");
        cli(&["login", "umasked", "--password-stdin"], "pw-umasked\n");
        assert_eq!(mode(&home.join("session.json")), 0o600, "session.json");
        cli(&["create-group", "g"], "");
        let (file, _) = random_file(cluster.dir.path(), "small.bin", 1000, 3);
        cli(&["upload", file.to_str().unwrap(), "g"], "");
        assert_eq!(mode(&home.join("piece-lists")), 0o700, "piece-lists/");
        for name in ["daemon.json", "shares.json", "piece-lists", "daemon.sock"] {
            assert_eq!(mode(&home.join(name)) & 0o022, 0, "{name} is writable by others");
        }
    }

    // An existing HOME open to others is made 0700, with a warning.
    let open_home = cluster.dir.path().join("open-home");
    std::fs::create_dir(&open_home).unwrap();
    std::fs::set_permissions(&open_home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log2 = cluster.dir.path().join("open-home-daemon.log");
    {
        let _daemon = UmaskDaemon::start(&open_home, &cluster.config, &log2);
        assert_eq!(mode(&open_home), 0o700);
        assert_eq!(mode(&open_home.join("daemon.sock")), 0o600);
    }
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(text.contains("was open to other users (mode 777); made it 0700"), "{text}");

    // A HOME owned by another uid is refused.
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = cluster.dir.path().join("their-home");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let out = Command::new(peer_bin())
            .arg("daemon")
            .env("PEER_HOME", &theirs)
            .env("PEER_CLUSTER", &cluster.config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("belongs to uid 65534"), "{err}");
        assert!(!theirs.join("daemon.sock").exists());
    }
}

#[test]
fn another_uid_is_refused_at_the_control_socket() {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching to another uid needs root, and this test runs as uid {}", unsafe {
            libc::geteuid()
        });
        return;
    }
    const NOBODY: u32 = 65534;
    let cluster = Cluster::start(1);
    // A place the other user can traverse (the cluster's temporary folder is 0700).
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut p = Peer::new(&cluster, "owner");
    p.home = base.path().join("home");
    p.start_daemon();
    p.ok(&["show-downloads"]);
    let as_nobody = || {
        let out = Command::new(peer_bin())
            .args(["--json", "--home", p.home.to_str().unwrap(), "show-downloads"])
            .env_remove("PEER_HOME")
            .current_dir("/")
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{stdout} {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(v["error"]["code"], "not_allowed", "{v}");
        v["error"]["message"].as_str().unwrap().to_string()
    };
    // As HOME is (0700): the other user cannot even reach the socket.
    assert_eq!(mode(&p.home), 0o700);
    let msg = as_nobody();
    assert!(msg.contains("serves its own user only"), "{msg}");

    // Only the uid check left in the way: HOME traversable, the socket open to all.
    std::fs::set_permissions(&p.home, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(p.home.join("daemon.sock"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let msg = as_nobody();
    assert!(msg.contains("serves uid 0 only") && msg.contains("you are uid 65534"), "{msg}");
    wait_until("the refusal in the daemon's log", TIMEOUT, || {
        p.daemon_log().contains("refused a control connection from uid 65534")
    });
    // The owner is still served.
    p.ok(&["show-downloads"]);
}

#[test]
fn the_daemon_listens_on_port_0_and_records_the_bound_address() {
    let cluster = Cluster::start(1);
    let mut alice = Peer::new(&cluster, "alice");
    alice.daemon_args = vec!["--listen".into(), "127.0.0.1:0".into()];
    alice.start_daemon();
    // daemon.json is written once the daemon is set up, which may be just after its socket appears.
    let mut info = Value::Null;
    wait_until("daemon.json", TIMEOUT, || {
        info = std::fs::read(alice.home.join("daemon.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        !info.is_null()
    });
    let addr: std::net::SocketAddr = info["peer_addr"].as_str().unwrap().parse().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0, "the bound port, not 0: {info}");
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("the recorded address is served");
    let pong = control(&alice.home, json!({"op": "ping"}));
    assert_eq!(pong["peer_addr"], addr.to_string().as_str(), "{pong}");
    assert!(alice.daemon_log().contains(&addr.to_string()), "the log names the address");

    // The announced address is the one other peers reach: Bob downloads from it.
    alice.register_and_login("alice");
    alice.ok(&["create-group", "team"]);
    let bob = Peer::member(&cluster, "bob", "team", &alice, &[]);
    let (_, sha1) = alice.upload_random(cluster.dir.path(), "f.bin", MIB + 1, 9, "team");
    let d = dest_dir(&cluster, "dl");
    bob.ok(&["download", "team", "f.bin", d.to_str().unwrap()]);
    assert_eq!(file_sha1(&d.join("f.bin")), sha1);
    assert!(!PathBuf::from(&d).join("f.bin.part").exists());
}
