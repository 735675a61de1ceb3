//! `tracker-node up`: every listed node on this machine as a child process; prints each
//! node's id and api address; on Ctrl-C or SIGTERM stops them all with SIGTERM (then
//! SIGKILL after a grace period) and waits for them.

use std::path::Path;
use std::time::Duration;

use proto::cluster::ClusterConfig;
use tokio::process::{Child, Command};

/// How long a node gets to stop cleanly after SIGTERM.
const STOP_GRACE_MS: u64 = 5000;

pub async fn run(cfg: &ClusterConfig, config_path: &Path) -> anyhow::Result<i32> {
    let exe = std::env::current_exe()?;
    let mut children: Vec<(u64, Child)> = Vec::new();
    for n in &cfg.nodes {
        let child = Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(config_path)
            .arg("--id")
            .arg(n.id.to_string())
            .kill_on_drop(true)
            .spawn()?;
        println!("node {} api {} (pid {})", n.id, n.api, child.id().unwrap_or(0));
        children.push((n.id, child));
    }
    println!("cluster of {} nodes running; Ctrl-C stops it", children.len());
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut failed = false;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (id, c) in children.iter_mut() {
                    if let Ok(Some(st)) = c.try_wait() {
                        eprintln!("node {id} exited ({st})");
                        failed = true;
                    }
                }
                children.retain_mut(|(_, c)| matches!(c.try_wait(), Ok(None)));
                if children.is_empty() {
                    break;
                }
            }
        }
    }
    for (_, c) in &children {
        if let Some(pid) = c.id() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
    for (id, mut c) in children {
        match tokio::time::timeout(Duration::from_millis(STOP_GRACE_MS), c.wait()).await {
            Ok(_) => println!("node {id} stopped"),
            Err(_) => {
                eprintln!("node {id} did not stop in {} ms; killing it", STOP_GRACE_MS);
                let _ = c.kill().await;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
