//! The child processes this harness starts: run under an optional wrapper, signalled by the PID
//! it spawned (never by name), and stopped within a bound.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// `bin` as a command, run under `wrapper` when there is one (`ip netns exec NS bin`: `ip`
/// execs `bin` in place, so the child's PID is the binary's).
pub(crate) fn wrapped(wrapper: Option<&[String]>, bin: &Path) -> Command {
    match wrapper {
        Some([program, args @ ..]) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}

pub(crate) fn kill_pid(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the PID of a child this harness spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// SIGKILL, then reaps it.
pub(crate) fn kill_now(mut child: Child) {
    kill_pid(&child, libc::SIGKILL);
    let _ = child.wait();
}

/// Sends `signal` and waits up to `timeout` for the child to exit; past that, kills it. Returns
/// how it exited, or `None` when it had to be killed.
pub(crate) fn stop_within(mut child: Child, signal: i32, timeout: Duration) -> Option<ExitStatus> {
    kill_pid(&child, signal);
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > timeout {
            kill_now(child);
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
