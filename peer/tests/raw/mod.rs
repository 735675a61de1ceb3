//! A hand-made piece-protocol client for the tests that play a peer (or an attacker): TLS with
//! a key of its own (`peer::daemon::channel`), then raw frames from `proto::piece`.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use peer::daemon::channel::Channel;
use peer::identity::PeerIdentity;
pub use proto::piece::PROTOCOL_VERSION as VERSION;
use proto::piece::{decode, encode, Message};
use testkit::{Cluster, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where `p`'s daemon serves pieces (from its daemon.json).
pub fn peer_addr(p: &Peer) -> String {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.home.join("daemon.json")).unwrap()).unwrap();
    info["peer_addr"].as_str().unwrap().to_string()
}

/// A hand-made client playing `p`: `p`'s tracker client (the session its CLI logged in), the key
/// the tracker lists for the sharer of `name` in `group` at `sharer_addr`, and a key of the
/// client's own that `p`'s session announced (a ticket is issued only for an announced key).
pub async fn playing(
    cluster: &Cluster,
    p: &Peer,
    group: &str,
    name: &str,
    sharer_addr: &str,
) -> (tracker_client::TrackerClient, [u8; 32], PeerIdentity) {
    let api = cluster.client().with_token(Some(session_token(&p.home)));
    let key = listed_key(&api, group, name, sharer_addr).await;
    let me = PeerIdentity::ephemeral();
    api.announce("127.0.0.1:9", &me.public_hex()).await.unwrap();
    (api, key, me)
}

/// The key the tracker lists for the sharer of `name` at `addr`.
pub async fn listed_key(client: &tracker_client::TrackerClient, group: &str, name: &str, addr: &str) -> [u8; 32] {
    let det = client.file_details(group, name).await.unwrap();
    let row = det.sharers.iter().find(|s| s.peer_addr == addr).expect("the sharer is listed");
    let mut k = [0u8; 32];
    hex::decode_to_slice(&row.peer_key, &mut k).unwrap();
    k
}

pub fn sha1_of(hex_s: &str) -> [u8; 20] {
    let mut b = [0u8; 20];
    hex::decode_to_slice(hex_s, &mut b).unwrap();
    b
}

/// Reads frames until the other side closes (or 10 s pass); returns them in order.
pub async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Vec<Message> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            while let Ok(Some((m, used))) = decode(&buf) {
                buf.drain(..used);
                out.push(m);
            }
        }
    })
    .await;
    out
}

/// Opens the TLS channel to a sharer as `me`, sends `first` raw bytes, and returns every frame
/// the sharer sent before it closed.
pub async fn attempt(addr: &str, sharer_key: &[u8; 32], me: &PeerIdentity, first: &[u8]) -> Vec<Message> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = Channel::new(me).unwrap().connect(tcp, sharer_key, 5_000).await.expect("TLS with the sharer");
    tls.write_all(first).await.unwrap();
    tls.flush().await.unwrap();
    read_all(&mut tls).await
}

pub fn handshake(group: &str, sha1: [u8; 20], user: &str, ticket: Vec<u8>) -> Vec<u8> {
    handshake_v(VERSION, group, sha1, user, ticket)
}

pub fn error_of(msgs: &[Message]) -> (u16, String) {
    match msgs.last() {
        Some(Message::Error { code, message }) => (*code, message.clone()),
        other => panic!("expected an error frame last, got {other:?} (all: {msgs:?})"),
    }
}

/// A TCP connection to `to` from local address `from` (port chosen by the kernel).
pub fn connect_from(from: &str, to: SocketAddr) -> Option<std::net::TcpStream> {
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from_ne_bytes(from.parse::<std::net::Ipv4Addr>().unwrap().octets());
        if libc::bind(fd, &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32)
            != 0
        {
            libc::close(fd);
            return None;
        }
        let SocketAddr::V4(v4) = to else { return None };
        let mut ta: libc::sockaddr_in = std::mem::zeroed();
        ta.sin_family = libc::AF_INET as u16;
        ta.sin_port = v4.port().to_be();
        ta.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
        if libc::connect(fd, &ta as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32)
            != 0
        {
            libc::close(fd);
            return None;
        }
        use std::os::fd::FromRawFd;
        Some(TcpStream::from_raw_fd(fd))
    }
}

/// The session token a HOME holds.
pub fn session_token(home: &Path) -> String {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("session.json")).unwrap()).unwrap();
    s["token"].as_str().unwrap().to_string()
}

/// A handshake of any protocol version (for the version checks).
pub fn handshake_v(version: u16, group: &str, sha1: [u8; 20], user: &str, ticket: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    let m = Message::Handshake {
        protocol_version: version,
        file_sha1: sha1,
        group: group.into(),
        user: user.into(),
        peer_id: [0; 16],
        ticket,
    };
    encode(&m, &mut out);
    out
}

/// An open TLS connection to a sharer from local IP `from`, as `me`, after `first` was sent.
pub async fn open_from(
    from: &str,
    addr: &str,
    sharer_key: &[u8; 32],
    me: &PeerIdentity,
    first: &[u8],
) -> peer::daemon::channel::ClientStream {
    let std = connect_from(from, addr.parse().unwrap()).expect("connect");
    std.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(std).unwrap();
    let mut tls = Channel::new(me).unwrap().connect(tcp, sharer_key, 5_000).await.expect("TLS with the sharer");
    tls.write_all(first).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

/// The next frame on `tls` within `timeout`, or `None` if it closes or stays silent.
pub async fn next_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    pending: &mut Vec<u8>,
    timeout: Duration,
) -> Option<Message> {
    tokio::time::timeout(timeout, async {
        loop {
            if let Ok(Some((m, used))) = decode(pending) {
                pending.drain(..used);
                return Some(m);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .ok()
    .flatten()
}
