//! The machine's floor for the download benchmark (`scripts/bench-download.sh`): what moving
//! one byte from a sharer's file into a downloader's file costs on this machine at the least,
//! and from that the time under which no client can finish each of the benchmark's shapes.
//!
//! Every byte of a download goes through the same steps, whatever the client: the sharer reads
//! it from its file (the page cache here) and, on this project's channel, encrypts it; loopback
//! TCP carries it (the copy into the socket, the kernel's protocol work, the copy out); the
//! downloader decrypts it, checks its SHA-1 and writes it into its file. Plain BitTorrent (rqbit,
//! aria2c) skips the two AES-GCM passes. Each step is timed alone, in a tight loop on one core,
//! in the thread's CPU time, with data in cache where the real step has it in cache. The sum is
//! a lower bound: a real client adds its messages, event loop, allocation and scheduling.
//!
//! The floor of a shape is its total work over the machine's cores: 1 -> 1 and 4 -> 1 move the
//! file once, 1 -> 3 moves it three times (whoever serves the copies).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use sha1::{Digest, Sha1};

use crate::sys;

/// The project's piece size: the benchmark's downloads move 512 KiB per message and per write.
const PIECE_BYTES: usize = proto::piece::PIECE_LEN_BYTES as usize;
/// TLS 1.3 records carry at most 16 KiB of plaintext each.
const RECORD_BYTES: usize = 16 * 1024;
const GIB: f64 = (1u64 << 30) as f64;

#[derive(ClapArgs)]
pub struct Args {
    /// Bytes moved by each step, in MiB (the benchmark's file size)
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Times each step is measured; the median is kept
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Where the write and read steps make their file (use the benchmark's folder; default: the
    /// temporary folder)
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Core-seconds per GiB of each step, medians of the repetitions.
struct Costs {
    read: f64,
    aes: f64,
    tcp: f64,
    sha1: f64,
    write: f64,
}

impl Costs {
    /// One file's worth of bytes moved once, per GiB: the steps every client does.
    fn plain(&self) -> f64 {
        self.read + self.tcp + self.sha1 + self.write
    }

    /// The same on this project's channel: AES-GCM once each way.
    fn encrypted(&self) -> f64 {
        self.plain() + 2.0 * self.aes
    }
}

/// The benchmark's shapes and how many times each moves the file.
const SHAPES: [(&str, u32); 3] = [("1to1", 1), ("1to3", 3), ("4to1", 1)];

/// Floor of a shape in milliseconds: its work in core-seconds over the cores.
fn floor_ms(per_gib: f64, size_bytes: u64, transfers: u32, cores: usize) -> f64 {
    per_gib * size_bytes as f64 / GIB * f64::from(transfers) / cores as f64 * 1000.0
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.size_mib > 0 && args.reps > 0, "--size-mib and --reps must be at least 1");
    let size = args.size_mib << 20;
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let reps = args.reps;
    let per_gib = |seconds: f64| seconds * GIB / size as f64;
    let mut sha1 = Vec::new();
    let mut aes = Vec::new();
    let mut tcp = Vec::new();
    let mut write = Vec::new();
    let mut read = Vec::new();
    for rep in 0..reps {
        eprintln!("floor: repetition {} of {reps}", rep + 1);
        sha1.push(per_gib(sha1_seconds(size)));
        aes.push(per_gib(aes_seconds(size)?));
        tcp.push(per_gib(tcp_seconds(size)?));
        let (w, r) = file_seconds(&dir, size)?;
        write.push(per_gib(w));
        read.push(per_gib(r));
    }
    for v in [&mut read, &mut aes, &mut tcp, &mut sha1, &mut write] {
        v.sort_by(f64::total_cmp);
    }
    let median = |v: &[f64]| sys::percentile(v, 0.5);
    // Every repetition is shown: the write step swings from one to the next on a machine that
    // hands freed memory back to its host (a page touched for the first time costs a fault there).
    let each = |v: &[f64]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(", ");
    let spread = [each(&read), each(&aes), each(&tcp), each(&sha1), each(&write)];
    let c =
        Costs { read: median(&read), aes: median(&aes), tcp: median(&tcp), sha1: median(&sha1), write: median(&write) };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("## The machine's floor for a download of {} MiB ({})", args.size_mib, sys::today_utc());
    println!();
    println!("{}. Each step alone on one core, median of {reps}, in the thread's CPU time.", sys::machine());
    println!();
    println!("| step | core-seconds per GiB | GB/s on one core | each repetition, core-s per GiB |");
    println!("|---|---|---|---|");
    let rate = |s: f64| GIB / s / 1e9;
    let rows = [
        ("read from the page cache (pread, 512 KiB)", c.read),
        ("AES-128-GCM, one way (16 KiB records; the channel does it twice)", c.aes),
        ("loopback TCP, send and receive", c.tcp),
        ("SHA-1", c.sha1),
        ("write into a new file (pwrite, 512 KiB)", c.write),
    ];
    for ((name, s), each) in rows.into_iter().zip(spread) {
        println!("| {name} | {s:.3} | {:.2} | {each} |", rate(s));
    }
    println!("| **one transfer, encrypted (this project)** | {:.3} | | |", c.encrypted());
    println!("| **one transfer, plain (BitTorrent)** | {:.3} | | |", c.plain());
    println!();
    println!("Floor of each shape: the file moved once (1 -> 1, 4 -> 1) or three times (1 -> 3), over {cores} cores.");
    println!();
    println!("| shape | floor, encrypted | floor, plain |");
    println!("|---|---|---|");
    for (shape, transfers) in SHAPES {
        println!(
            "| {} | {:.0} ms | {:.0} ms |",
            shape.replace("to", " -> "),
            floor_ms(c.encrypted(), size, transfers, cores),
            floor_ms(c.plain(), size, transfers, cores)
        );
    }
    Ok(())
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn pieces(size: u64) -> impl Iterator<Item = (u64, usize)> {
    (0..size.div_ceil(PIECE_BYTES as u64)).map(move |i| {
        let off = i * PIECE_BYTES as u64;
        (off, (size - off).min(PIECE_BYTES as u64) as usize)
    })
}

/// A piece's worth of bytes that are not all alike.
fn piece_buffer() -> Vec<u8> {
    (0..PIECE_BYTES).map(|i| (sys::mix(i as u64) >> 32) as u8).collect()
}

fn sha1_seconds(size: u64) -> f64 {
    let buf = piece_buffer();
    let t0 = thread_cpu_seconds();
    let mut acc = 0u8;
    for (_, len) in pieces(size) {
        acc ^= Sha1::digest(&buf[..len])[0];
    }
    std::hint::black_box(acc);
    thread_cpu_seconds() - t0
}

fn aes_seconds(size: u64) -> anyhow::Result<f64> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7u8; 16]).map_err(|_| anyhow::anyhow!("AES key"))?);
    let mut buf = piece_buffer();
    let mut seq = 0u64;
    let t0 = thread_cpu_seconds();
    for (_, len) in pieces(size) {
        for record in buf[..len].chunks_mut(RECORD_BYTES) {
            seq += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&seq.to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), record)
                .map_err(|_| anyhow::anyhow!("AES-GCM seal"))?;
            let _ = std::hint::black_box(tag);
        }
    }
    Ok(thread_cpu_seconds() - t0)
}

/// Both ends' CPU time for `size` bytes over one loopback TCP connection, 512 KiB per call.
fn tcp_seconds(size: u64) -> anyhow::Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<f64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; PIECE_BYTES];
        let t0 = thread_cpu_seconds();
        let mut got = 0u64;
        while got < size {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            got += n as u64;
        }
        Ok(thread_cpu_seconds() - t0)
    });
    let mut s = std::net::TcpStream::connect(addr).context("connect 127.0.0.1")?;
    let buf = piece_buffer();
    let t0 = thread_cpu_seconds();
    for (_, len) in pieces(size) {
        s.write_all(&buf[..len])?;
    }
    let sent = thread_cpu_seconds() - t0;
    let received = receiver.join().map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    Ok(sent + received)
}

/// Writes a new file of `size` bytes piece by piece and reads it back: the seconds of each
/// pass. The file has no name (O_TMPFILE), so it is gone when it is closed, whatever happens.
fn file_seconds(dir: &std::path::Path, size: u64) -> anyhow::Result<(f64, f64)> {
    let f: File = tempfile::tempfile_in(dir).with_context(|| format!("a file in {}", dir.display()))?;
    f.set_len(size)?;
    let buf = piece_buffer();
    let t0 = thread_cpu_seconds();
    for (off, len) in pieces(size) {
        f.write_all_at(&buf[..len], off)?;
    }
    let written = thread_cpu_seconds() - t0;
    let mut back = vec![0u8; PIECE_BYTES];
    let t0 = thread_cpu_seconds();
    for (off, len) in pieces(size) {
        f.read_exact_at(&mut back[..len], off)?;
    }
    Ok((written, thread_cpu_seconds() - t0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_three_moves_the_file_three_times_over_the_cores() {
        let gib = 1u64 << 30;
        assert_eq!(floor_ms(1.5, gib, 1, 2), 750.0);
        assert_eq!(floor_ms(1.5, gib, 3, 2), 2250.0);
        assert_eq!(floor_ms(1.5, gib / 2, 3, 1), 2250.0);
    }

    #[test]
    fn the_encrypted_transfer_adds_two_aes_passes_to_the_plain_one() {
        let c = Costs { read: 0.1, aes: 0.2, tcp: 0.3, sha1: 0.5, write: 0.4 };
        assert!((c.plain() - 1.3).abs() < 1e-9);
        assert!((c.encrypted() - 1.7).abs() < 1e-9);
    }

    #[test]
    fn pieces_cover_the_size_with_a_short_last_piece() {
        let size = 2 * PIECE_BYTES as u64 + 10;
        let v: Vec<_> = pieces(size).collect();
        assert_eq!(v, vec![(0, PIECE_BYTES), (PIECE_BYTES as u64, PIECE_BYTES), (2 * PIECE_BYTES as u64, 10)]);
    }

    #[test]
    fn every_step_is_measured_and_the_file_is_gone_after() {
        let dir = tempfile::tempdir().unwrap();
        let size = 4 << 20;
        assert!(sha1_seconds(size) > 0.0);
        assert!(aes_seconds(size).unwrap() > 0.0);
        assert!(tcp_seconds(size).unwrap() > 0.0);
        let (w, r) = file_seconds(dir.path(), size).unwrap();
        assert!(w > 0.0 && r > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
