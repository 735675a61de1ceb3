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

fn main() {
    // As tracker-node does: two malloc arenas.
    unsafe {
        mallopt(-8, 2); // M_ARENA_MAX
    }
    let mut args = std::env::args().skip(1);
    let files: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let groups: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let with_ids = args.next().as_deref() != Some("noids");
    let users = 32u64;
    let mut state = TrackerState::default();
    let mut now_ms = 1_700_000_000_000u64;
    let mut seq = 0u64;
    let mut since_snapshot = 0u64;
    let mut snapshots = 0u32;
    let mut build_ms = Vec::new();
    let mut pending: Option<std::thread::JoinHandle<u64>> = None;
    let mut apply = |state: &mut TrackerState, command: Command, now_ms: u64| {
        seq += 1;
        let r = state.apply(&Request {
            request_id: with_ids.then(|| format!("{:08x}-0000-4000-8000-{seq:012x}", seq)),
            now_ms,
            command,
        });
        assert!(matches!(r, raft_store::Response::Ok(_)), "{r:?}");
    };
    let token = |u: u64| format!("{:064x}", u + 1);
    let user = |u: u64| format!("user{u:03}");
    for u in 0..users {
        apply(
            &mut state,
            Command::Register { user: user(u), password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${:0>86}", u) },
            now_ms,
        );
        apply(
            &mut state,
            Command::Login { user: user(u), token_hash: token(u), expires_at_ms: now_ms + 86_400_000 },
            now_ms,
        );
    }
    let started = Instant::now();
    let mut writes = 0u64;
    let mut maybe_snapshot =
        |state: &TrackerState, since: &mut u64, pending: &mut Option<std::thread::JoinHandle<u64>>| {
            if *since * 4 < state.record_count().max(5000) {
                return;
            }
            if let Some(h) = pending.take() {
                build_ms.push(h.join().expect("snapshot thread"));
                unsafe {
                    malloc_trim(0);
                }
            }
            *since = 0;
            snapshots += 1;
            let copy = state.clone();
            *pending = Some(std::thread::spawn(move || {
                let t = Instant::now();
                let mut w = std::io::BufWriter::new(std::io::sink());
                for r in copy.records() {
                    serde_json::to_writer(&mut w, &r).expect("serialize");
                    w.write_all(b"\n").expect("write");
                }
                drop(copy);
                t.elapsed().as_millis() as u64
            }));
        };
    for g in 0..groups {
        now_ms += 1;
        apply(&mut state, Command::CreateGroup { token_hash: token(g % users), group: format!("g{g:05}") }, now_ms);
        since_snapshot += 1;
        writes += 1;
        maybe_snapshot(&state, &mut since_snapshot, &mut pending);
    }
    for i in 0..files {
        // ~1800 uploads/s, as in the bench: the request-id table keeps them all (10 min).
        if i % 2 == 0 {
            now_ms += 1;
        }
        let g = i % groups;
        let meta = FileMeta {
            name: format!("f{i:06}.bin"),
            size: 1 << 30,
            piece_len: PIECE_LEN_BYTES,
            piece_list_sha1: digest(i, 1),
            sha1: digest(i, 2),
        };
        apply(
            &mut state,
            Command::UploadFile {
                token_hash: token(g % users),
                group: format!("g{g:05}"),
                file: meta,
                peer_addr: format!("127.0.0.1:{}", 40000 + g % users),
                peer_key: format!("{:064x}", 0xabc + g % users),
            },
            now_ms,
        );
        since_snapshot += 1;
        writes += 1;
        maybe_snapshot(&state, &mut since_snapshot, &mut pending);
    }
    if let Some(h) = pending.take() {
        build_ms.push(h.join().expect("snapshot thread"));
    }
    let elapsed = started.elapsed();
    println!(
        "{writes} writes in {:.2} s ({:.0}/s), {snapshots} snapshots, builds {:?} ms; counts {:?}, records {}",
        elapsed.as_secs_f64(),
        writes as f64 / elapsed.as_secs_f64(),
        build_ms,
        state.counts(),
        state.record_count()
    );
    report("after the load");
    unsafe {
        malloc_trim(0);
    }
    report("after malloc_trim");
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
