//! What the piece channel costs per byte, without the disk or the tracker: one sender streams
//! `MIB` MiB of 512 KiB piece frames to one receiver over loopback TCP, first in plain TCP, then
//! through the channel as the daemons use it (TLS 1.3, AES-128-GCM), alternating `RUNS` times,
//! and prints each run's time and the medians.
//!
//! ```sh
//! cargo run --release -p peer --example channel_throughput -- 1024 5    # MIB RUNS
//! ```

use std::time::Instant;

use peer::daemon::channel::Channel;
use peer::daemon::wire::FrameReader;
use peer::identity::PeerIdentity;
use proto::piece::Message;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PIECE_BYTES: usize = 512 * 1024;

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap());
    let (a, b) = tokio::join!(a, l.accept());
    let (a, b) = (a.unwrap(), b.unwrap().0);
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// Sends `pieces` piece frames on `w` while `r` reads and counts them; the elapsed ms.
async fn stream<W, R>(mut w: W, r: R, pieces: usize) -> u128
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
{
    let start = Instant::now();
    let data = vec![0x5au8; PIECE_BYTES];
    let sender = tokio::spawn(async move {
        let mut frame = Vec::with_capacity(PIECE_BYTES + 16);
        for i in 0..pieces {
            frame.clear();
            proto::piece::encode(&Message::Piece { piece: i as u32, data: data.clone() }, &mut frame);
            w.write_all(&frame).await.unwrap();
        }
        w.flush().await.unwrap();
        w
    });
    let mut reader = FrameReader::new(r);
    for i in 0..pieces {
        match reader.next(30_000).await.unwrap() {
            Message::Piece { piece, data } => assert!(piece as usize == i && data.len() == PIECE_BYTES),
            other => panic!("unexpected {other:?}"),
        }
    }
    let _w = sender.await.unwrap();
    start.elapsed().as_millis()
}

fn median(v: &mut [u128]) -> u128 {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).map(|s| s.parse().expect("MIB")).unwrap_or(1024);
    let runs: usize = args.get(2).map(|s| s.parse().expect("RUNS")).unwrap_or(5);
    let pieces = mib * 1024 * 1024 / PIECE_BYTES;
    let (sharer, downloader) = (PeerIdentity::ephemeral(), PeerIdentity::ephemeral());
    let (sc, dc) = (Channel::new(&sharer).unwrap(), Channel::new(&downloader).unwrap());
    let (mut plain, mut tls) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (a, b) = pair().await;
        let p = stream(a, b, pieces).await;
        let (a, b) = pair().await;
        let key = sharer.public();
        let (server, client) = tokio::join!(sc.accept(a, 5_000), dc.connect(b, &key, 5_000));
        let (server, _) = server.unwrap();
        let t = stream(server, client.unwrap(), pieces).await;
        println!("run {run}: plain TCP {p} ms, channel {t} ms");
        plain.push(p);
        tls.push(t);
    }
    let (p, t) = (median(&mut plain), median(&mut tls));
    println!(
        "{mib} MiB, medians of {runs}: plain TCP {p} ms ({:.0} MiB/s), channel {t} ms ({:.0} MiB/s), channel/plain {:.2}",
        mib as f64 * 1000.0 / p as f64,
        mib as f64 * 1000.0 / t as f64,
        t as f64 / p as f64
    );
}
