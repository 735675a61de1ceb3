//! The state machine's memory at scale, without a cluster: applies the `bench scale` workload
//! (users, groups, files with request ids) to one `TrackerState` and, like a node, takes a
//! snapshot whenever a quarter of the state's records were written since the last one: a clone
//! serialised on a thread of its own while applying goes on. Prints the heap in use (a counting
//! allocator), RSS and VmHWM after the load, after a trim, and for a state rebuilt from its
//! records (what a cold restart holds).
//!
//! `cargo run --release -p raft-store --example state_memory -- [FILES] [GROUPS] [noids]`
//! (`noids`: writes without request ids, so the difference is the request-id table's share)

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use raft_store::command::{Command, FileMeta, Request, Sha1Digest, PIECE_LEN_BYTES};
use raft_store::TrackerState;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

extern "C" {
    fn malloc_trim(pad: usize) -> i32;
    fn mallopt(param: i32, value: i32) -> i32;
}

fn status(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn report(what: &str) {
    println!(
        "{what:<28} heap {:>7.1} MiB  RSS {:>7.1} MiB  VmHWM {:>7.1} MiB",
        LIVE.load(Ordering::Relaxed) as f64 / 1048576.0,
        status("VmRSS:"),
        status("VmHWM:")
    );
}

fn digest(i: u64, salt: u8) -> Sha1Digest {
    let mut d = [salt; 20];
    d[..8].copy_from_slice(&i.to_be_bytes());
    Sha1Digest(d)
}

/// The workload applied to one state, and the snapshots taken along the way as a node does.
struct Load {
    state: TrackerState,
    with_ids: bool,
    users: u64,
    now_ms: u64,
    seq: u64,
    writes: u64,
    since_snapshot: u64,
    snapshots: u32,
    build_ms: Vec<u64>,
    pending: Option<std::thread::JoinHandle<u64>>,
}

fn token(u: u64) -> String {
    format!("{:064x}", u + 1)
}

fn user(u: u64) -> String {
    format!("user{u:03}")
}

impl Load {
    fn apply(&mut self, command: Command) {
        self.seq += 1;
        let seq = self.seq;
        let r = self.state.apply(&Request {
            request_id: self.with_ids.then(|| format!("{:08x}-0000-4000-8000-{seq:012x}", seq)),
            now_ms: self.now_ms,
            command,
        });
        assert!(matches!(r, raft_store::Response::Ok(_)), "{r:?}");
    }

    /// One write of the timed load, then a snapshot if a quarter of the records are new.
    fn write(&mut self, command: Command) {
        self.apply(command);
        self.since_snapshot += 1;
        self.writes += 1;
        if self.since_snapshot * 4 >= self.state.record_count().max(5000) {
            self.snapshot();
        }
    }

    fn register_users(&mut self) {
        for u in 0..self.users {
            let password_hash = format!("$argon2id$v=19$m=19456,t=2,p=1${:0>86}", u);
            self.apply(Command::Register { user: user(u), password_hash });
            let expires_at_ms = self.now_ms + 86_400_000;
            self.apply(Command::Login { user: user(u), token_hash: token(u), expires_at_ms });
        }
    }

    fn create_groups(&mut self, groups: u64) {
        for g in 0..groups {
            self.now_ms += 1;
            self.write(Command::CreateGroup { token_hash: token(g % self.users), group: format!("g{g:05}") });
        }
    }

    fn upload_files(&mut self, files: u64, groups: u64) {
        for i in 0..files {
            // ~1800 uploads/s, as in the bench: the request-id table keeps them all (10 min).
            if i % 2 == 0 {
                self.now_ms += 1;
            }
            let g = i % groups;
            let u = g % self.users;
            let file = FileMeta {
                name: format!("f{i:06}.bin"),
                size: 1 << 30,
                piece_len: PIECE_LEN_BYTES,
                piece_list_sha1: digest(i, 1),
                sha1: digest(i, 2),
            };
            self.write(Command::UploadFile {
                token_hash: token(u),
                group: format!("g{g:05}"),
                file,
                peer_addr: format!("127.0.0.1:{}", 40000 + u),
                peer_key: format!("{:064x}", 0xabc + u),
            });
        }
    }

    /// Waits for the snapshot in flight, if any.
    fn join_snapshot(&mut self) {
        if let Some(h) = self.pending.take() {
            self.build_ms.push(h.join().expect("snapshot thread"));
            unsafe {
                malloc_trim(0);
            }
        }
    }

    /// A clone of the state serialised on a thread of its own while applying goes on.
    fn snapshot(&mut self) {
        self.join_snapshot();
        self.since_snapshot = 0;
        self.snapshots += 1;
        let copy = self.state.clone();
        self.pending = Some(std::thread::spawn(move || {
            let t = Instant::now();
            let mut w = std::io::BufWriter::new(std::io::sink());
            for r in copy.records() {
                serde_json::to_writer(&mut w, &r).expect("serialize");
                w.write_all(b"\n").expect("write");
            }
            drop(copy);
            t.elapsed().as_millis() as u64
        }));
    }
}

/// Rebuilds the state from its records, as a cold restart does, and reports its memory alone.
fn rebuild(state: TrackerState) {
    let t = Instant::now();
    let mut rebuilt = TrackerState::default();
    for r in state.records() {
        rebuilt.load_record(r).expect("load");
    }
    let load_ms = t.elapsed().as_millis();
    assert!(rebuilt == state, "rebuilt state differs");
    drop(state);
    unsafe {
        malloc_trim(0);
    }
    println!("rebuilt from records in {load_ms} ms");
    report("rebuilt state only (trimmed)");
}

fn main() {
    // As tracker-node does: two malloc arenas.
    unsafe {
        mallopt(-8, 2); // M_ARENA_MAX
    }
    let mut args = std::env::args().skip(1);
    let files: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let groups: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let with_ids = args.next().as_deref() != Some("noids");
    let mut load = Load {
        state: TrackerState::default(),
        with_ids,
        users: 32,
        now_ms: 1_700_000_000_000,
        seq: 0,
        writes: 0,
        since_snapshot: 0,
        snapshots: 0,
        build_ms: Vec::new(),
        pending: None,
    };
    load.register_users();
    let started = Instant::now();
    load.create_groups(groups);
    load.upload_files(files, groups);
    if let Some(h) = load.pending.take() {
        load.build_ms.push(h.join().expect("snapshot thread"));
    }
    let elapsed = started.elapsed();
    println!(
        "{} writes in {:.2} s ({:.0}/s), {} snapshots, builds {:?} ms; counts {:?}, records {}",
        load.writes,
        elapsed.as_secs_f64(),
        load.writes as f64 / elapsed.as_secs_f64(),
        load.snapshots,
        load.build_ms,
        load.state.counts(),
        load.state.record_count()
    );
    report("after the load");
    unsafe {
        malloc_trim(0);
    }
    report("after malloc_trim");
    rebuild(load.state);
}
