//! The piece list between a real piece server and a real downloader's connection, in one
//! process over loopback TCP and without a tracker: honest, corrupt and short lists, a sharer
//! that lost its stored list, a partial sharer that has none yet, and out-of-range requests.

use std::path::Path;
use std::sync::Arc;

use proto::piece::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracker_client::{RetryPolicy, TrackerClient};

use std::sync::atomic::AtomicU64;

use super::actor::{self, Begin};
use super::conn;
use super::engine::{ConnEnd, Sharer};
use super::*;
use crate::daemon::channel::Channel;
use crate::daemon::shares::{Share, ShareTable};
use crate::daemon::standing::Standing;
use crate::daemon::wire::{self, FrameReader};
use crate::daemon::{serve, tickets, BadPieceList, Daemon, Faults};
use crate::hashing::{hash_file, MAX_FILE_SIZE_BYTES};
use crate::home::{Home, Session};
use crate::identity::PeerIdentity;
use crate::piece_lists::PieceListStore;
use proto::ticket::{Ticket, TicketSigner};

/// The cluster's ticket key in these tests: every daemon here pins its public half.
fn signer() -> &'static TicketSigner {
    static S: std::sync::OnceLock<TicketSigner> = std::sync::OnceLock::new();
    S.get_or_init(|| TicketSigner::from_pkcs8(&TicketSigner::generate_pkcs8()).unwrap())
}

fn daemon(dir: &Path, faults: Faults) -> Arc<Daemon> {
    let home = Home { dir: dir.to_path_buf() };
    home.save_session(&Session { user: "u".into(), token: "t".into(), expires_at_ms: u64::MAX }).unwrap();
    std::fs::write(dir.join(tickets::PIN_FILE), hex::encode(signer().public_key())).unwrap();
    let identity = PeerIdentity::ephemeral();
    let standing = Arc::new(Standing {
        home: home.clone(),
        // Never called here: nothing in these tests reaches the tracker.
        tracker: TrackerClient::new(vec!["127.0.0.1:9".into()], RetryPolicy::default()),
        peer_addr: "127.0.0.1:9".into(),
        peer_key_hex: identity.public_hex(),
        announce: Default::default(),
    });
    let (channel, shares) = (Arc::new(Channel::new(&identity).unwrap()), Arc::new(ShareTable::load(&home).unwrap()));
    let downloads = Downloads {
        table: Arc::new(DownloadTable::load(&home).unwrap()),
        standing: standing.clone(),
        shares: shares.clone(),
        channel: channel.clone(),
        piece_lists: PieceListStore::new(&home),
        shutdown: CancellationToken::new(),
    };
    Arc::new(Daemon {
        standing,
        channel,
        cluster_key: tickets::ClusterKey::load(dir),
        shares,
        downloads,
        piece_lists: PieceListStore::new(&home),
        list_rebuild: tokio::sync::Mutex::new(()),
        faults,
    })
}

/// The key `d` proves on its piece connections.
fn key_of(d: &Daemon) -> [u8; 32] {
    proto::ticket::peer_key_from_hex(&d.standing.peer_key_hex).unwrap()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed).collect()
}

async fn serve(d: &Arc<Daemon>) -> Sharer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve::run(d.clone(), listener, d.downloads.shutdown.child_token()));
    Sharer { addr, key: key_of(d) }
}

/// A ticket for `d`'s download `h`, as the tracker would sign it.
fn ticket(d: &Daemon, h: &DownloadHandle) -> Vec<u8> {
    let (group, sha1) = h.with_record(|r| (r.group.clone(), r.meta.sha1.clone()));
    signer().sign(&Ticket {
        group,
        file_sha1: conn::sha1_bytes(&sha1),
        user: "u".into(),
        peer_key: key_of(d),
        expires_at_ms: tickets::now_ms() + 60_000,
    })
}

/// One connection of `d`'s download `h` to `sharer`, with a valid ticket, driven by the
/// download's task.
async fn go(d: &Arc<Daemon>, h: &DownloadHandle, sharer: &Sharer) -> ConnEnd {
    let (_keep, rx) = tokio::sync::watch::channel(Arc::new(ticket(d, h)));
    h.connect(sharer.clone(), rx).await
}

/// The download's verified piece list, as its task serves it.
async fn list_of(h: &DownloadHandle) -> Option<Arc<Vec<PieceHash>>> {
    h.serve().await.expect("downloading").list.borrow().clone()
}

/// A daemon sharing `bytes` in group "g" as `peer upload` leaves it: file hashed, list stored.
async fn sharer(dir: &Path, bytes: &[u8], faults: Faults) -> (Arc<Daemon>, Sharer, FileMetaBody) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("file.bin");
    std::fs::write(&path, bytes).unwrap();
    let h = hash_file(&path, "file.bin", &AtomicU64::new(0)).unwrap();
    let d = daemon(dir, faults);
    d.piece_lists.save(&h.meta.piece_list_sha1, &h.pieces).unwrap();
    d.shares.add(Share {
        group: "g".into(),
        name: "file.bin".into(),
        path: path.to_string_lossy().into_owned(),
        size: h.meta.size,
        sha1: h.meta.sha1.clone(),
        piece_list_sha1: Some(h.meta.piece_list_sha1.clone()),
    });
    let addr = serve(&d).await;
    (d, addr, h.meta)
}

/// A download of `meta` into `dir` with its `.part` open, as `start` leaves it, but with no
/// swarm: the tests drive its connections one at a time.
fn downloader(dir: &Path, meta: &FileMetaBody) -> (Arc<Daemon>, DownloadHandle) {
    std::fs::create_dir_all(dir).unwrap();
    let d = daemon(dir, Faults::default());
    let record = DownloadRecord {
        group: "g".into(),
        name: meta.name.clone(),
        dest: dir.join("out.bin").to_string_lossy().into_owned(),
        meta: meta.clone(),
        state: crate::control::DownloadState::Downloading,
        error: None,
        force: false,
        bytes_done: 0,
        paused_by_logout: false,
    };
    let part = disk::open_part(&record.part_path(), meta.size).unwrap();
    let have = actor::all_pieces(meta.size, false);
    let h = actor::spawn(&d.downloads, record, have, Some(part), Begin::Idle);
    d.downloads.table.insert(h.clone());
    (d, h)
}

fn part_bytes(h: &DownloadHandle) -> Vec<u8> {
    std::fs::read(h.with_record(|r| r.part_path())).unwrap()
}

const LEN: usize = 3 * PIECE_LEN_BYTES as usize + 4321;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_list_is_verified_stored_and_used() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = data(LEN, 1);
    let (_s, addr, meta) = sharer(&tmp.path().join("s"), &bytes, Faults::default()).await;
    let (d, live) = downloader(&tmp.path().join("d"), &meta);
    assert!(matches!(go(&d, &live, &addr).await, ConnEnd::Done));
    assert_eq!(live.row().bytes_done, LEN as u64, "every piece verified");
    assert_eq!(part_bytes(&live), bytes);
    // Stored in the downloader's HOME, so a restart and the finished share need not ask again.
    let stored = d.piece_lists.load(&meta.piece_list_sha1, 4).unwrap().expect("stored");
    assert_eq!(&stored, list_of(&live).await.unwrap().as_ref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_short_list_ends_the_connection_before_any_piece() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = data(LEN, 2);
    for (i, (fault, says)) in
        [(BadPieceList::Corrupt, "piece_list_sha1"), (BadPieceList::Short, "3 hashes for a file of 4 pieces")]
            .into_iter()
            .enumerate()
    {
        let faults = Faults { bad_piece_list: Some(fault), ..Faults::default() };
        let (_s, addr, meta) = sharer(&tmp.path().join(format!("s{i}")), &bytes, faults).await;
        let (d, live) = downloader(&tmp.path().join(format!("d{i}")), &meta);
        match go(&d, &live, &addr).await {
            ConnEnd::BadPieceList(why) => assert!(why.contains(says), "{fault:?}: {why}"),
            other => panic!("{fault:?}: expected a bad list, got {other:?}"),
        }
        assert!(list_of(&live).await.is_none(), "a wrong list is never kept");
        assert_eq!(live.row().bytes_done, 0);
        assert_eq!(d.piece_lists.load(&meta.piece_list_sha1, 4).unwrap(), None, "nor stored");
        // The same download then finishes from an honest sharer.
        let (_h, honest, _) = sharer(&tmp.path().join(format!("h{i}")), &bytes, Faults::default()).await;
        assert!(matches!(go(&d, &live, &honest).await, ConnEnd::Done));
        assert_eq!(part_bytes(&live), bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharer_that_lost_its_list_rebuilds_it_from_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = data(LEN, 3);
    let (s, addr, meta) = sharer(&tmp.path().join("s"), &bytes, Faults::default()).await;
    std::fs::remove_dir_all(tmp.path().join("s").join("piece-lists")).unwrap();
    let (d, live) = downloader(&tmp.path().join("d"), &meta);
    assert!(matches!(go(&d, &live, &addr).await, ConnEnd::Done));
    assert_eq!(part_bytes(&live), bytes);
    assert!(s.piece_lists.load(&meta.piece_list_sha1, 4).unwrap().is_some(), "the sharer stored the rebuilt list");

    // A share recorded by an older version (no digest): rebuilt too, and the digest recorded.
    let mut old = s.shares.get("g", "file.bin").unwrap();
    old.piece_list_sha1 = None;
    s.shares.add(old);
    std::fs::remove_dir_all(tmp.path().join("s").join("piece-lists")).unwrap();
    let (d, live) = downloader(&tmp.path().join("d1"), &meta);
    assert!(matches!(go(&d, &live, &addr).await, ConnEnd::Done));
    assert_eq!(part_bytes(&live), bytes);
    assert_eq!(s.shares.get("g", "file.bin").unwrap().piece_list_sha1, Some(meta.piece_list_sha1.clone()));

    // A file changed since it was shared (and its list lost) is refused, not served.
    std::fs::remove_dir_all(tmp.path().join("s").join("piece-lists")).unwrap();
    std::fs::write(tmp.path().join("s").join("file.bin"), data(LEN, 4)).unwrap();
    let (d, live) = downloader(&tmp.path().join("d2"), &meta);
    match go(&d, &live, &addr).await {
        ConnEnd::Failed(e) => assert!(e.contains("changed since it was shared"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_sharer_serves_the_list_once_it_has_verified_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = data(LEN, 5);
    let (_s, seed, meta) = sharer(&tmp.path().join("s"), &bytes, Faults::default()).await;
    // Bob is downloading and has no list yet: he says so (error 5), and nobody is banned for it.
    let (bob, bob_live) = downloader(&tmp.path().join("bob"), &meta);
    let bob_addr = serve(&bob).await;
    let (carol, carol_live) = downloader(&tmp.path().join("carol"), &meta);
    match go(&carol, &carol_live, &bob_addr).await {
        ConnEnd::Failed(e) => assert!(e.contains("not verified the piece list yet"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Once Bob has it (and all pieces), Carol gets the list and the pieces from him.
    assert!(matches!(go(&bob, &bob_live, &seed).await, ConnEnd::Done));
    assert!(matches!(go(&carol, &carol_live, &bob_addr).await, ConnEnd::Done));
    assert_eq!(part_bytes(&carol_live), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_end_of_the_list_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_s, addr, meta) = sharer(&tmp.path().join("s"), &data(LEN, 6), Faults::default()).await;
    let (d, live) = downloader(&tmp.path().join("d"), &meta);
    let stream = tokio::net::TcpStream::connect(&addr.addr).await.unwrap();
    let tls = d.channel.connect(stream, &addr.key, 1000).await.unwrap();
    let (r, mut w) = tokio::io::split(tls);
    let mut reader = FrameReader::new(r);
    let hello = Message::Handshake {
        protocol_version: proto::piece::PROTOCOL_VERSION,
        file_sha1: conn::sha1_bytes(&meta.sha1),
        group: "g".into(),
        user: "u".into(),
        peer_id: [0; 16],
        ticket: ticket(&d, &live),
    };
    wire::send(&mut w, &hello, 1000).await.unwrap();
    assert!(matches!(reader.next(1000).await.unwrap(), Message::Handshake { .. }));
    assert!(matches!(reader.next(1000).await.unwrap(), Message::Bitfield { num_pieces: 4, .. }));
    wire::send(&mut w, &Message::PieceListRequest { start: 2, count: 2 }, 1000).await.unwrap();
    match reader.next(1000).await.unwrap() {
        Message::PieceList { num_pieces: 4, start: 2, hashes } => assert_eq!(hashes.len(), 2),
        other => panic!("{other:?}"),
    }
    wire::send(&mut w, &Message::PieceListRequest { start: 3, count: 2 }, 1000).await.unwrap();
    assert!(matches!(reader.next(1000).await.unwrap(), Message::Error { code: 6, .. }));
}

#[test]
fn metadata_the_peer_cannot_handle_is_refused_before_anything_is_created() {
    let ok = FileMetaBody {
        name: "f".into(),
        size: 10,
        piece_len: PIECE_LEN_BYTES,
        piece_list_sha1: "ab".repeat(20),
        sha1: "cd".repeat(20),
    };
    assert_eq!(check_meta(&ok, "f"), Ok(()));
    let at_bound = FileMetaBody { size: MAX_FILE_SIZE_BYTES, ..ok.clone() };
    assert_eq!(check_meta(&at_bound, "f"), Ok(()));
    let over = FileMetaBody { size: MAX_FILE_SIZE_BYTES + 1, ..ok.clone() };
    let e = check_meta(&over, "f").unwrap_err();
    assert!(e.contains("1 TiB"), "{e}");
    assert!(check_meta(&ok, "g").is_err(), "another name");
    assert!(check_meta(&FileMetaBody { piece_len: 1024, ..ok.clone() }, "f").is_err());
    assert!(check_meta(&FileMetaBody { piece_list_sha1: "xy".repeat(20), ..ok.clone() }, "f").is_err());
    assert!(check_meta(&FileMetaBody { sha1: "ab".into(), ..ok.clone() }, "f").is_err());
    // An empty file's list is empty, so its digest is known.
    assert!(check_meta(&FileMetaBody { size: 0, ..ok.clone() }, "f").is_err());
    let empty = FileMetaBody { size: 0, piece_list_sha1: hex::encode(piece_list_sha1(&[])), ..ok };
    assert_eq!(check_meta(&empty, "f"), Ok(()));
}

/// docs/PROTOCOL.md's "Timeouts" table, `constant -> milliseconds`, read from the document itself
/// so that a change on either side alone fails `the_timeouts_table_is_the_code`.
fn documented_timeouts() -> std::collections::BTreeMap<String, u64> {
    let doc = include_str!("../../../../docs/PROTOCOL.md");
    let start = doc.find("\n## Timeouts\n").expect("docs/PROTOCOL.md has a Timeouts section");
    let section = &doc[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut out = std::collections::BTreeMap::new();
    for line in section.lines().filter(|l| l.trim_start().starts_with('|')) {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 3, "a row of three cells: {line}");
        if cells[0] == "what" || cells[0].starts_with("---") {
            continue;
        }
        let name = cells[2].strip_prefix('`').and_then(|c| c.strip_suffix('`')).unwrap_or_else(|| panic!("{line}"));
        let (n, unit) = cells[1].split_once(' ').unwrap_or_else(|| panic!("a number and a unit: {line}"));
        let n: u64 = n.parse().unwrap_or_else(|_| panic!("{line}"));
        let ms = match unit {
            "s" => n * 1000,
            "ms" => n,
            other => panic!("unit {other:?}: {line}"),
        };
        assert!(out.insert(name.to_string(), ms).is_none(), "{name} twice");
    }
    out
}

#[test]
fn the_timeouts_table_is_the_code() {
    let code: std::collections::BTreeMap<String, u64> = [
        ("CONNECT_TIMEOUT_MS", conn::CONNECT_TIMEOUT_MS),
        ("HANDSHAKE_TIMEOUT_MS", conn::HANDSHAKE_TIMEOUT_MS),
        ("PIECE_TIMEOUT_MS", conn::PIECE_TIMEOUT_MS),
        ("WRITE_TIMEOUT_MS", conn::WRITE_TIMEOUT_MS),
        ("NO_REQUEST_TIMEOUT_MS", serve::NO_REQUEST_TIMEOUT_MS),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(documented_timeouts(), code, "docs/PROTOCOL.md's Timeouts table against the constants");
    // The values the contract promises, should both sides move together.
    assert_eq!((conn::CONNECT_TIMEOUT_MS, conn::HANDSHAKE_TIMEOUT_MS, conn::PIECE_TIMEOUT_MS), (3_000, 5_000, 15_000));
    assert_eq!((conn::WRITE_TIMEOUT_MS, serve::NO_REQUEST_TIMEOUT_MS), (10_000, 30_000));
}

/// A TCP client that connects to the piece server and never says anything is closed once the
/// server's first-byte allowance (`slots::FIRST_BYTE_TIMEOUT_MS`) has passed, not before and
/// not much later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_speaks_is_closed_after_the_first_byte_bound() {
    use tokio::io::AsyncReadExt;
    let tmp = tempfile::tempdir().unwrap();
    let d = daemon(tmp.path(), Faults::default());
    let sharer = serve(&d).await;
    let started = std::time::Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(&sharer.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let bound = std::time::Duration::from_millis(crate::daemon::slots::FIRST_BYTE_TIMEOUT_MS);
    let read = tokio::time::timeout(bound + std::time::Duration::from_secs(5), tcp.read(&mut buf)).await;
    let took = started.elapsed();
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("the server sent {n} bytes to a client that said nothing"),
        Err(_) => panic!("still open {took:?} after connecting (bound {bound:?})"),
    }
    assert!(took >= bound, "closed after {took:?}, before the {bound:?} bound");
}

/// A sharer that accepts the connection and never answers: the downloader's connection ends
/// (a failure, not a ban) once `HANDSHAKE_TIMEOUT_MS` has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharer_that_never_answers_ends_the_connection_after_the_handshake_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let (_s, real, meta) = sharer(&tmp.path().join("s"), &data(LEN, 3), Faults::default()).await;
    let (d, live) = downloader(&tmp.path().join("d"), &meta);
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            kept.push(s); // accepted, never read from or written to
        }
    });
    let bound = std::time::Duration::from_millis(conn::HANDSHAKE_TIMEOUT_MS);
    let started = std::time::Instant::now();
    let end =
        tokio::time::timeout(bound + std::time::Duration::from_secs(5), go(&d, &live, &Sharer { addr, key: real.key }))
            .await
            .unwrap_or_else(|_| panic!("the connection outlived the {bound:?} handshake bound by 5 s"));
    let took = started.elapsed();
    match &end {
        ConnEnd::Failed(why) => assert!(why.contains("timed out"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(took >= bound, "ended after {took:?}, before the {bound:?} bound");
    assert!(part_bytes(&live).iter().all(|b| *b == 0), "nothing was written");
    held.abort();
}
