//! `tracker-node up`: every listed node on this machine as a child process; prints each
//! node's id and api address; passes on each node's output line by line, prefixed `node N | `;
//! starts again a node that dies (at most [`MAX_RESTARTS`] times a minute, as systemd's
//! `Restart=on-failure`); on Ctrl-C or SIGTERM stops them all with SIGTERM (then SIGKILL after
//! a grace period) and waits for them.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use proto::cluster::ClusterConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long a node gets to stop cleanly after SIGTERM.
const STOP_GRACE_MS: u64 = 5000;
/// How often `up` looks at its children.
const CHECK_EVERY_MS: u64 = 200;
/// At most this many restarts of one node within [`RESTART_WINDOW`]; then it stays down.
pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// A node's output line longer than this is passed on in pieces of this size.
const MAX_LINE_BYTES: u64 = 64 * 1024;
/// How long the last lines of a node that exited may take to be passed on.
const DRAIN_MS: u64 = 1000;

/// Whether a node that exited with `status` is started again: after a crash, a kill or a
/// failure, yes; not after a clean stop (exit 0: it was stopped on purpose, SIGTERM or Ctrl-C)
/// nor after exit 2 (its cluster file or flags are wrong: it would be refused again). systemd's
/// `Restart=on-failure` with `RestartPreventExitStatus=2`, as docs/systemd's unit.
pub fn restarts_after(status: ExitStatus) -> bool {
    !matches!(status.code(), Some(0) | Some(2))
}

/// The restarts of one node within the last [`RESTART_WINDOW`].
#[derive(Debug, Default)]
pub struct RestartBudget {
    times: VecDeque<Instant>,
}

impl RestartBudget {
    /// Takes a restart at `now`, unless [`MAX_RESTARTS`] were taken in the window before it;
    /// returns how many the window then holds.
    pub fn take(&mut self, now: Instant) -> Option<usize> {
        while self.times.front().is_some_and(|t| now.duration_since(*t) >= RESTART_WINDOW) {
            self.times.pop_front();
        }
        if self.times.len() >= MAX_RESTARTS {
            return None;
        }
        self.times.push_back(now);
        Some(self.times.len())
    }
}

/// One listed node: its process while it runs, the tasks passing on its output, its restarts.
struct Node {
    id: u64,
    api: String,
    child: Option<Child>,
    relays: Vec<JoinHandle<()>>,
    budget: RestartBudget,
}

impl Node {
    /// Waits (bounded) until the output of the process that ended has been passed on.
    async fn drain(&mut self) {
        for relay in self.relays.drain(..) {
            let _ = tokio::time::timeout(Duration::from_millis(DRAIN_MS), relay).await;
        }
    }
}

/// Passes on `from` line by line, each prefixed, one write per line so that the lines of
/// several nodes never mix.
async fn relay(from: impl AsyncRead + Unpin, prefix: String, to_stderr: bool) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        line.extend_from_slice(prefix.as_bytes());
        match (&mut reader).take(MAX_LINE_BYTES).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        let _ = if to_stderr {
            std::io::stderr().lock().write_all(&line)
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(&line).and_then(|_| out.flush())
        };
    }
}

/// Starts node `id` and the tasks that pass on its output.
fn spawn(exe: &Path, config_path: &Path, id: u64) -> std::io::Result<(Child, Vec<JoinHandle<()>>)> {
    let mut child = Command::new(exe)
        .arg("run")
        .arg("--config")
        .arg(config_path)
        .arg("--id")
        .arg(id.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let prefix = format!("node {id} | ");
    let mut relays = Vec::new();
    if let Some(out) = child.stdout.take() {
        relays.push(tokio::spawn(relay(out, prefix.clone(), false)));
    }
    if let Some(err) = child.stderr.take() {
        relays.push(tokio::spawn(relay(err, prefix, true)));
    }
    Ok((child, relays))
}

pub async fn run(cfg: &ClusterConfig, config_path: &Path) -> anyhow::Result<i32> {
    let exe = std::env::current_exe()?;
    let mut nodes: Vec<Node> = Vec::new();
    for n in &cfg.nodes {
        let (child, relays) = spawn(&exe, config_path, n.id)?;
        println!("node {} api {} (pid {})", n.id, n.api, child.id().unwrap_or(0));
        nodes.push(Node { id: n.id, api: n.api.to_string(), child: Some(child), relays, budget: Default::default() });
    }
    println!("cluster of {} nodes running; Ctrl-C stops it", nodes.len());
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut failed = false;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(CHECK_EVERY_MS)) => {
                for n in nodes.iter_mut() {
                    let Some(c) = n.child.as_mut() else { continue };
                    let Ok(Some(st)) = c.try_wait() else { continue };
                    n.child = None;
                    n.drain().await;
                    failed |= !restart(&exe, config_path, n, st);
                }
                if nodes.iter().all(|n| n.child.is_none()) {
                    break;
                }
            }
        }
    }
    for n in &nodes {
        if let Some(pid) = n.child.as_ref().and_then(|c| c.id()) {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
    for n in nodes.iter_mut() {
        let Some(mut c) = n.child.take() else { continue };
        match tokio::time::timeout(Duration::from_millis(STOP_GRACE_MS), c.wait()).await {
            Ok(_) => {
                n.drain().await;
                println!("node {} stopped", n.id);
            }
            Err(_) => {
                eprintln!("node {} did not stop in {} ms; killing it", n.id, STOP_GRACE_MS);
                let _ = c.kill().await;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Node `n` exited with `st`: starts it again when it died and its budget allows, saying so on
/// stderr (and its new pid on stdout, as at the start); false when it stays down.
fn restart(exe: &Path, config_path: &Path, n: &mut Node, st: ExitStatus) -> bool {
    let id = n.id;
    if !restarts_after(st) {
        let why = if st.code() == Some(0) {
            "it was stopped"
        } else {
            "its cluster file or flags are wrong; fix them and run up again"
        };
        eprintln!("node {id} exited ({st}); not restarted: {why}");
        return false;
    }
    let Some(taken) = n.budget.take(Instant::now()) else {
        eprintln!(
            "node {id} exited ({st}) after {MAX_RESTARTS} restarts within {} s: not restarting it again",
            RESTART_WINDOW.as_secs()
        );
        return false;
    };
    match spawn(exe, config_path, id) {
        Ok((child, relays)) => {
            eprintln!(
                "node {id} exited ({st}); restarting it (restart {taken} of at most {MAX_RESTARTS} within {} s)",
                RESTART_WINDOW.as_secs()
            );
            println!("node {id} api {} (pid {})", n.api, child.id().unwrap_or(0));
            n.child = Some(child);
            n.relays = relays;
            true
        }
        Err(e) => {
            eprintln!("node {id} exited ({st}) and cannot be started again: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_node_that_died_is_restarted_one_that_was_stopped_or_refused_its_file_is_not() {
        assert!(restarts_after(ExitStatus::from_raw(9)), "killed by SIGKILL");
        assert!(restarts_after(ExitStatus::from_raw(6)), "aborted");
        assert!(restarts_after(ExitStatus::from_raw(1 << 8)), "exit 1");
        assert!(!restarts_after(ExitStatus::from_raw(0)), "exit 0: stopped on purpose");
        assert!(!restarts_after(ExitStatus::from_raw(2 << 8)), "exit 2: a bad cluster file");
    }

    #[test]
    fn at_most_five_restarts_within_a_minute() {
        let mut b = RestartBudget::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        for i in 0..MAX_RESTARTS {
            assert_eq!(b.take(t0 + s(i as u64)), Some(i + 1));
        }
        assert_eq!(b.take(t0 + s(10)), None, "the sixth within the minute");
        assert_eq!(b.take(t0 + s(59)), None);
        // A minute after the first, one restart is free again.
        assert_eq!(b.take(t0 + s(60)), Some(MAX_RESTARTS));
        assert_eq!(b.take(t0 + s(60)), None);
    }
}
