//! `peer shell` on a terminal: a real process on a pseudo-terminal, typed at like a person
//! (TAB, up-arrow, Ctrl-C, Ctrl-D), against a real tracker cluster and peer daemon.

use testkit::*;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `peer shell` whose stdin, stdout and stderr are a pseudo-terminal it has as its
/// controlling terminal; what it prints is collected by a thread.
pub(crate) struct Tty {
    child: Child,
    master: std::fs::File,
    output: Arc<Mutex<Vec<u8>>>,
    /// Where `expect` starts looking: what came before has been seen.
    seen: usize,
    /// Says when the reading thread has read everything (the terminal closed).
    read_all: std::sync::mpsc::Receiver<()>,
}

impl Tty {
    fn spawn(p: &Peer) -> Tty {
        Tty::spawn_args(p, &["shell"])
    }

    /// `peer ARGS` on the pseudo-terminal.
    fn spawn_args(p: &Peer, args: &[&str]) -> Tty {
        Tty::spawn_in(p, None, 120, args)
    }

    /// `peer ARGS` on a pseudo-terminal `cols` wide, in folder `cwd` when given.
    pub(crate) fn spawn_in(p: &Peer, cwd: Option<&std::path::Path>, cols: u16, args: &[&str]) -> Tty {
        let (mut master, mut slave) = (-1, -1);
        let ws = libc::winsize { ws_row: 40, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty fills the two fds; the name and termios pointers may be null.
        let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both fds were just opened and are owned here.
        let (master, slave) = unsafe { (std::fs::File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = p.command();
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        cmd.args(args)
            .env("TERM", "xterm")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a new session whose
        // controlling terminal is the pty (so that Ctrl-C there is a SIGINT to the shell).
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), output.clone());
        let (done, read_all) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the shell has exited and closed the slave.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let _ = done.send(());
        });
        Tty { child, master, output, seen: 0, read_all }
    }

    /// Everything printed so far, escape sequences removed.
    fn text(&self) -> String {
        strip_escapes(&self.raw_text())
    }

    /// Everything printed so far, escape sequences included.
    pub(crate) fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    pub(crate) fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Waits until `what` is printed after what was already seen; it is then seen too.
    fn expect(&mut self, what: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if let Some(i) = text[self.seen.min(text.len())..].find(what) {
                let upto = self.seen + i + what.len();
                let got = text[self.seen..upto].to_string();
                self.seen = upto;
                return got;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!(
                    "waited 20 s for {what:?}; after what was seen the shell printed:\n{}",
                    &text[self.seen.min(text.len())..]
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `line` and Enter; waits for `answer`, then for the next `prompt`.
    fn run_line(&mut self, line: &str, answer: &str, prompt: &str) {
        self.send(line);
        self.enter(answer, prompt);
    }

    /// Presses Enter; waits for `answer`, then for the next `prompt`.
    fn enter(&mut self, answer: &str, prompt: &str) {
        self.send(ENTER);
        self.expect(answer);
        self.expect(prompt);
    }

    /// Types `partial` and TAB; waits for the line TAB made of it, `completed`.
    fn complete(&mut self, partial: &str, completed: &str) {
        self.send(&format!("{partial}{TAB}"));
        self.expect(completed);
    }

    /// Waits for the shell to exit, and for everything it printed to be read; its exit code.
    fn wait_exit(&mut self) -> i32 {
        self.wait_exit_within(Duration::from_secs(10))
    }

    /// As `wait_exit`, waiting at most `timeout` for the exit.
    pub(crate) fn wait_exit_within(&mut self, timeout: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                let all_read = self.read_all.recv_timeout(Duration::from_secs(10));
                assert!(all_read.is_ok(), "the terminal stayed open after the shell exited: {}", self.text());
                return s.code().unwrap_or(-1);
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("the shell did not exit; it printed:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The text of terminal output: CSI sequences (`ESC [ ... letter`) and other escapes removed,
/// carriage returns dropped.
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() || c == '~' {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

const ENTER: &str = "\r";
const TAB: &str = "\t";
const UP: &str = "\x1b[A";
const CTRL_C: &str = "\x03";
const CTRL_D: &str = "\x04";

#[test]
fn the_shell_on_a_terminal_edits_completes_and_remembers() {
    let cluster = Cluster::start(1);
    let alice = Peer::owner(&cluster, "alice", "dev_team", &[]);
    alice.upload_random(cluster.dir.path(), "notes.bin", 100_000, 7, "dev_team");

    let mut sh = Tty::spawn(&alice);
    // The prompt names the user.
    sh.expect("alice@peer> ");

    // TAB completes a command name; Enter runs it.
    sh.complete("list_gr", "list_groups ");
    sh.enter("dev_team  owner alice", "\nalice@peer> ");

    // TAB completes a group name (from the tracker) and a file name of that group.
    sh.complete("list_files dev", "list_files dev_team ");
    sh.enter("notes.bin", "\nalice@peer> ");
    sh.complete("download_file dev_team no", "download_file dev_team notes.bin ");

    // Ctrl-C drops the half-typed line; the shell goes on with a new prompt.
    sh.send(CTRL_C);
    sh.expect("\nalice@peer> ");
    sh.run_line("help", "commands:", "\nalice@peer> ");

    // A typo: "did you mean".
    sh.run_line(
        "dwnload x y z",
        "error: unknown command \"dwnload\"; did you mean \"download_file\"?",
        "\nalice@peer> ",
    );

    // Up-arrow recalls the previous line; Enter runs it again.
    sh.send(UP);
    sh.expect("dwnload x y z");
    sh.enter("did you mean \"download_file\"?", "\nalice@peer> ");

    // A password given on the line, and one asked for without echo.
    sh.run_line("login alice alice-password", "logged in as alice", "\nalice@peer> ");
    sh.send(&format!("login alice{ENTER}"));
    sh.expect("Password: ");
    sh.send(&format!("alice-password{ENTER}"));
    let answer = sh.expect("logged in as alice");
    assert!(!answer.contains("alice-password"), "the password was echoed: {answer:?}");
    sh.expect("\nalice@peer> ");
    // Ctrl-C at the password prompt cancels the login, not the shell.
    sh.send(&format!("login alice{ENTER}"));
    sh.expect("Password: ");
    sh.send(CTRL_C);
    sh.expect("\nalice@peer> ");

    // Logged out: the prompt says so, and hints use the shell's words.
    sh.run_line("logout", "logged out alice", "\npeer> ");
    sh.run_line("list_groups", "error: not logged in (run: login USER)", "\npeer> ");

    // Ctrl-D leaves, with exit status 0.
    sh.send(CTRL_D);
    assert_eq!(sh.wait_exit(), 0, "{}", sh.text());

    // The history: in HOME, 0600, with the lines typed, and without the password.
    let file = alice.home.join("shell_history");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "shell_history mode {mode:o}");
    let history = std::fs::read_to_string(&file).unwrap();
    assert!(!history.contains("alice-password"), "a password went into the history:\n{history}");
    for line in ["list_groups", "list_files dev_team", "help", "dwnload x y z", "login alice", "logout"] {
        assert!(history.lines().any(|l| l == line), "{line:?} not in the history:\n{history}");
    }
    assert!(!history.lines().any(|l| l.starts_with("download_file")), "a dropped line was kept:\n{history}");

    // A new shell finds the history: up-arrow brings back the last line.
    let mut sh = Tty::spawn(&alice);
    sh.expect("peer> ");
    sh.send(UP);
    sh.expect("list_groups");
    sh.send(CTRL_C);
    sh.expect("\npeer> ");
    sh.send(&format!("quit{ENTER}"));
    assert_eq!(sh.wait_exit(), 0, "{}", sh.text());
}

#[test]
fn a_frozen_tracker_holds_neither_the_prompt_nor_the_shell() {
    let mut cluster = Cluster::start(1);
    let alice = Peer::new(&cluster, "alice");
    alice.register_and_login("alice");
    alice.ok(&["create-group", "dev_team"]);
    let mut sh = Tty::spawn(&alice);
    sh.expect("alice@peer> ");
    // A frozen node takes connections and never answers.
    cluster.signal(1, libc::SIGSTOP);
    let start = Instant::now();
    sh.send(&format!("list_files d{TAB}"));
    sh.send(CTRL_C);
    // A new prompt on a line of its own (the line being edited is redrawn with its prompt).
    sh.expect("\nalice@peer> ");
    let took = start.elapsed();
    eprintln!("TAB with the tracker frozen: the prompt came back after {took:?}");
    assert!(took < Duration::from_secs(5), "TAB with the tracker frozen held the prompt for {took:?}");
    // Ctrl-C while a command waits for the tracker stops the waiting, not the shell.
    sh.send(&format!("list_groups{ENTER}"));
    std::thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    sh.send(CTRL_C);
    sh.expect("error: interrupted: stopped waiting for the command");
    sh.expect("\nalice@peer> ");
    assert!(start.elapsed() < Duration::from_secs(3), "Ctrl-C took {:?}", start.elapsed());
    cluster.signal(1, libc::SIGCONT);
    sh.send(&format!("list_groups{ENTER}"));
    sh.expect("dev_team  owner alice");
    sh.send(&format!("quit{ENTER}"));
    assert_eq!(sh.wait_exit(), 0, "{}", sh.text());
}

/// Another user logging in to a HOME starts their own shares and downloads: the previous user's
/// are put aside (refused while the daemon serves them) and come back when they log in again.
#[test]
fn a_login_as_another_user_starts_their_own_state() {
    let cluster = Cluster::start(1);
    let mut home = Peer::new(&cluster, "shared");
    home.start_daemon();
    for user in ["carol", "alice"] {
        let r = home.run_with_stdin(&["register", user, "--password-stdin"], &format!("{user}-password\n"));
        assert_eq!(r.code, 0, "register {user}: {}", r.stderr);
    }
    let login =
        |p: &Peer, user: &str| p.run_with_stdin(&["login", user, "--password-stdin"], &format!("{user}-password\n"));
    assert_eq!(login(&home, "carol").code, 0);
    home.ok(&["create-group", "carols"]);
    home.upload_random(cluster.dir.path(), "carol.bin", 50_000, 9, "carols");
    let names = |p: &Peer| -> Vec<String> {
        p.ok(&["list-shares"]).as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&home), vec!["carol.bin"]);

    // Carol logs out; the daemon still holds her shares: alice may not take them over.
    home.ok(&["logout"]);
    let r = login(&home, "alice");
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.error_code(), "home_in_use", "{}", r.stderr);
    assert!(home.token().is_none(), "a refused login opens no session");

    // With the daemon stopped, alice logs in to a state of her own.
    home.signal_daemon(libc::SIGTERM, Duration::from_secs(10));
    let r = login(&home, "alice");
    assert_eq!(r.code, 0, "{}", r.stderr);
    home.start_daemon();
    assert!(names(&home).is_empty(), "alice inherited carol's shares: {:?}", names(&home));
    assert!(home.downloads().is_empty());

    // Carol comes back (the daemon stopped first): her shares are there again.
    let r = login(&home, "carol");
    assert_eq!(r.error_code(), "home_in_use", "carol's own state waits aside: {}", r.stderr);
    home.signal_daemon(libc::SIGTERM, Duration::from_secs(10));
    let r = login(&home, "carol");
    assert_eq!(r.code, 0, "{}", r.stderr);
    home.start_daemon();
    assert_eq!(names(&home), vec!["carol.bin"]);
}

/// The contract's password prompt: `peer register` and `peer login` on a terminal without
/// `--password-stdin` ask for the password, without echo, and the password reaches neither the
/// terminal nor argv.
#[test]
fn the_cli_asks_for_a_password_on_a_terminal_without_echo() {
    let cluster = Cluster::start(1);
    let carol = Peer::new(&cluster, "carol");
    let password = "typed-not-shown-7741";
    for args in [&["register", "carol"][..], &["login", "carol"][..]] {
        let mut t = Tty::spawn_args(&carol, args);
        t.expect("Password: ");
        t.send(&format!("{password}\r"));
        assert_eq!(t.wait_exit(), 0, "{args:?}: {}", t.text());
        let printed = t.text();
        assert!(!printed.contains(password), "{args:?} echoed the password: {printed}");
        assert!(
            printed.contains(if args[0] == "register" { "registered carol" } else { "logged in as carol" }),
            "{printed}"
        );
    }
    // The session the typed password opened is a real one: a call that needs it goes through.
    assert!(carol.ok(&["list-groups"]).as_array().is_some_and(|g| g.is_empty()));
    assert!(carol.token().is_some(), "the login saved a session in HOME");
}
