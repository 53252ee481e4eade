//! One connection's bulk throughput through the tokio adapter, between two processes:
//! `stream-bulk recv --transport utp|tcp --port P` waits for a connection and counts bytes
//! until end of stream, checking every byte against the sender's pattern; `stream-bulk send --transport utp|tcp --peer 127.0.0.1:P --mib N`
//! dials, writes N MiB and half-closes. The receiver prints one JSON line:
//! `{"transport":..,"bytes":..,"seconds":..,"mib_per_s":..}` (first byte to end of stream).
//! CPU per GiB comes from the caller (`/usr/bin/time` around both processes; see bench/utp).

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Instant;
use swarm_tokio::{Connection, SwarmBuilder, SwarmEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Wire {
    Tcp,
    Utp,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Role {
    Send,
    Recv,
}

#[derive(Parser, Debug)]
struct Args {
    role: Role,
    #[arg(long, value_enum)]
    transport: Wire,
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long)]
    peer: Option<SocketAddr>,
    #[arg(long, default_value_t = 1024)]
    mib: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let (tcp, utp) = match args.transport {
        Wire::Tcp => (true, false),
        Wire::Utp => (false, true),
    };
    let mut swarm = SwarmBuilder::new()
        .mdns(false)
        .tcp(tcp)
        .utp(utp)
        .build()
        .expect("swarm");
    let port = swarm.listen(args.port).await.expect("listen");
    eprintln!("listening {port}");
    if let Some(peer) = args.peer {
        swarm.add_peer(Some("bulk"), peer);
    }
    let conn = loop {
        match swarm.next().await {
            Some(SwarmEvent::Connection(conn)) => break conn,
            Some(_) => continue,
            None => panic!("swarm ended"),
        }
    };
    // The driver runs inside `swarm`'s stream: keep polling it while the transfer runs.
    let events = tokio::spawn(async move { while swarm.next().await.is_some() {} });
    match args.role {
        Role::Send => send(conn, args.mib).await,
        Role::Recv => recv(conn, args.transport).await,
    }
    events.abort();
}

/// The stream's bytes: byte `i` is `i % PERIOD` (a prime, so no chunk or packet size lines
/// up with it), so the receiver can check every byte with a compare against a table.
const PERIOD: usize = 251;

fn pattern_table(len: usize) -> Vec<u8> {
    (0..len + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

async fn send(mut conn: Connection, mib: usize) {
    const CHUNK: usize = 256 * 1024;
    let table = pattern_table(CHUNK);
    let mut offset = 0usize;
    for _ in 0..mib * 4 {
        let at = offset % PERIOD;
        conn.write_all(&table[at..at + CHUNK]).await.expect("write");
        offset += CHUNK;
    }
    conn.shutdown().await.expect("shutdown");
    // Wait for the receiver to close, so queued data is not cut off by our exit.
    let mut sink = [0u8; 1];
    let wait = std::time::Duration::from_secs(10);
    if tokio::time::timeout(wait, conn.read(&mut sink))
        .await
        .is_err()
    {
        eprintln!("the receiver never closed");
    }
}

async fn recv(mut conn: Connection, transport: Wire) {
    let mut buf = vec![0u8; 256 * 1024];
    let table = pattern_table(buf.len());
    let mut total = 0u64;
    let mut started = None;
    loop {
        let n = conn.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        started.get_or_insert_with(Instant::now);
        let at = (total % PERIOD as u64) as usize;
        assert!(
            buf[..n] == table[at..at + n],
            "corrupt stream within bytes {total}..{}",
            total + n as u64
        );
        total += n as u64;
    }
    let seconds = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let mib_per_s = total as f64 / (1 << 20) as f64 / seconds.max(1e-9);
    println!(
        "{{\"transport\":\"{transport:?}\",\"bytes\":{total},\"seconds\":{seconds:.3},\"mib_per_s\":{mib_per_s:.1}}}"
    );
    drop(conn);
    // Let the driver send our FIN before the process ends.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}
