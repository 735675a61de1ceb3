//! The comparison anchor of `bench scale`: a 3-member etcd cluster on 127.0.0.1 (ports chosen at
//! run time, data in a temp dir), loaded with as many keys as the tracker has files, through
//! etcd's v3 JSON gateway; then each member's memory and disk. Only the PIDs started here are
//! killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{free_port, http_get_json};

use crate::load::{drive, Live, Phase, Progress};
use crate::sys::{base64, disk_use, hex40, mem, mib, poll, Disk, Mem};

/// etcd 3.4's default `--snapshot-count`; the members run with their defaults.
const ETCD_34_SNAPSHOT_COUNT: u64 = 100_000;

pub struct Member {
    pub name: String,
    pub pid: u32,
    pub mem: Option<Mem>,
    pub disk: Disk,
    pub keys: Option<u64>,
}

pub struct EtcdRun {
    pub version: String,
    pub binary: String,
    pub snapshot_count: u64,
    pub value_bytes: usize,
    pub load: Phase,
    pub members: Vec<Member>,
}

impl EtcdRun {
    pub fn json(&self) -> Value {
        json!({
            "version": self.version, "binary": self.binary, "snapshot_count": self.snapshot_count,
            "value_bytes": self.value_bytes, "load": self.load.json(),
            "members": self.members.iter().map(|m| json!({
                "name": m.name, "pid": m.pid, "rss_bytes": m.mem.map(|x| x.rss), "hwm_bytes": m.mem.map(|x| x.hwm),
                "data_dir_apparent_bytes": m.disk.apparent, "data_dir_allocated_bytes": m.disk.allocated, "keys": m.keys,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The etcd processes this run started; SIGKILLed by PID on drop.
struct Members {
    _dir: tempfile::TempDir,
    children: Vec<(String, Child, PathBuf, String)>,
}

impl Drop for Members {
    fn drop(&mut self) {
        for (_, c, _, _) in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn find_etcd() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow::anyhow!("etcd is not installed: `apt-get install etcd-server` (Debian's is 3.4.x), set ETCD_BIN, or pass --skip-etcd"))
}

fn start(bin: &Path, wait: Duration) -> anyhow::Result<Members> {
    let dir = tempfile::tempdir()?;
    let ports: Vec<(String, u16, u16)> = (1..=3).map(|i| (format!("m{i}"), free_port(), free_port())).collect();
    let initial = ports.iter().map(|(n, _, p)| format!("{n}=http://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let mut m = Members { _dir: dir, children: Vec::new() };
    for (name, client, peer) in &ports {
        let data = m._dir.path().join(name);
        let log = std::fs::File::create(m._dir.path().join(format!("{name}.log")))?;
        let child = Command::new(bin)
            .args(["--name", name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "bench-scale",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        m.children.push((name.clone(), child, data, format!("127.0.0.1:{client}")));
    }
    let addrs: Vec<String> = m.children.iter().map(|c| c.3.clone()).collect();
    poll("every etcd member to report healthy", wait, || {
        addrs.iter().all(|a| http_get_json(a, "/health").is_some_and(|v| v["health"] == "true")).then_some(())
    })?;
    Ok(m)
}

fn key(i: u64, groups: u64) -> String {
    format!("/files/g{:05}/f{i:06}.bin", i % groups)
}

/// A value of `len` bytes, like a file's metadata entry.
fn value(i: u64, len: usize) -> String {
    let mut v = format!("{{\"size\":1073741824,\"piece_len\":524288,\"sha1\":\"{}\",\"piece_list_sha1\":\"{}\",\"peer\":\"127.0.0.1:20001\",\"pad\":\"", hex40(i << 1), hex40(i << 1 | 1));
    while v.len() + 2 < len {
        v.push_str(&hex40(i ^ v.len() as u64));
    }
    v.truncate(len.saturating_sub(2));
    v.push_str("\"}");
    v.truncate(len);
    v
}

pub fn run(
    keys: u64,
    value_bytes: usize,
    clients: usize,
    groups: u64,
    wait: Duration,
    load_timeout: Duration,
) -> anyhow::Result<EtcdRun> {
    let bin = find_etcd()?;
    let out = Command::new(&bin).arg("--version").output()?;
    let version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("etcd ?").trim().to_string();
    eprintln!("etcd: {version} at {}", bin.display());
    let members = start(&bin, wait)?;
    let addrs: Arc<Vec<String>> = Arc::new(members.children.iter().map(|c| c.3.clone()).collect());
    let pids: Vec<(String, u32)> = members.children.iter().map(|c| (c.0.clone(), c.1.id())).collect();

    let rt = testkit::runtime();
    let http = reqwest::Client::builder().no_proxy().tcp_nodelay(true).timeout(Duration::from_secs(10)).build()?;
    let live = Arc::new(Live::default());
    let progress = {
        let pids = pids.clone();
        Progress::start(live.clone(), move || {
            let rss: Vec<String> = pids
                .iter()
                .map(|(n, p)| format!("{n} {}", mem(*p).map(|m| mib(m.rss)).unwrap_or("-".into())))
                .collect();
            format!("RSS {}", rss.join(", "))
        })
    };
    let deadline = Instant::now() + load_timeout;
    let load = rt.block_on(drive(&live, "etcd puts", keys, clients, deadline, {
        let (http, addrs) = (http.clone(), addrs.clone());
        move |w, i| {
            let url = format!("http://{}/v3/kv/put", addrs[w % addrs.len()]);
            let body =
                json!({"key": base64(key(i, groups).as_bytes()), "value": base64(value(i, value_bytes).as_bytes())});
            let http = http.clone();
            async move {
                let mut last = String::new();
                for _ in 0..3 {
                    match http.post(&url).json(&body).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            return Ok(());
                        }
                        Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(("put_failed".to_string(), last))
            }
        }
    }));
    drop(progress);
    eprintln!(
        "etcd: {} puts in {:.1} s ({:.0}/s), {} failed",
        load.acked,
        load.wall.as_secs_f64(),
        load.rate(),
        load.failed
    );

    // Every member holds every acknowledged key (a serializable count, answered locally).
    let count = |addr: &str| -> Option<u64> {
        let body = json!({"key": base64(b"/files/"), "range_end": base64(b"/files0"), "count_only": true, "serializable": true});
        let v: Value = rt
            .block_on(async { http.post(format!("http://{addr}/v3/kv/range")).json(&body).send().await?.json().await })
            .ok()?;
        match &v["count"] {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => Some(0),
        }
    };
    let want = load.acked;
    let _ = poll("every etcd member to hold every key", wait, || {
        addrs.iter().all(|a| count(a).is_some_and(|c| c >= want)).then_some(())
    });
    let out = members
        .children
        .iter()
        .map(|(name, child, data, addr)| Member {
            name: name.clone(),
            pid: child.id(),
            mem: mem(child.id()),
            disk: disk_use(data),
            keys: count(addr),
        })
        .collect();
    drop(members);
    Ok(EtcdRun {
        version,
        binary: bin.display().to_string(),
        snapshot_count: ETCD_34_SNAPSHOT_COUNT,
        value_bytes,
        load,
        members: out,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_have_the_asked_length() {
        for len in [50, 300, 1000] {
            assert_eq!(super::value(42, len).len(), len);
        }
    }
}
