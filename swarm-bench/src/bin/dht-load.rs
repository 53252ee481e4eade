//! Load generator for a DHT node on loopback (our `discovery-swarm dht-node` or Node's
//! bittorrent-dht): queries answered per second through the real socket path, and the
//! server's CPU per query. Prints one JSON object.
//!
//!   dht-load --server 127.0.0.1:6881 --pid PID [--seconds 5] [--window 128] [--threads 2]
//!
//! The mix is what a DHT node receives most: `ping`, `find_node` and `get_peers` in equal
//! parts, each from a random node id, each for a random target. Every thread keeps `window`
//! queries in flight on its own connected socket.

use clap::Parser;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use swarm_core::dht::krpc::{self, Query};
use swarm_core::dht::NodeId;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    server: SocketAddr,
    /// The server's process id, for its CPU time.
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 128)]
    window: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// SplitMix64, for ids.
fn random_id(state: &mut u64) -> NodeId {
    let mut id = [0u8; 20];
    for chunk in id.chunks_mut(8) {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let bytes = (z ^ (z >> 31)).to_be_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    NodeId(id)
}

fn queries(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut state = seed;
    (0..n)
        .map(|i| {
            let asker = random_id(&mut state);
            let target = random_id(&mut state);
            let query = match i % 3 {
                0 => Query::Ping,
                1 => Query::FindNode { target },
                _ => Query::GetPeers { info_hash: target },
            };
            let mut out = Vec::new();
            krpc::emit_query(&mut out, &(i as u16).to_be_bytes(), &asker, &query);
            out
        })
        .collect()
}

/// Keeps `window` queries in flight until `until`; returns (sent, answered, reply bytes).
fn blast(socket: &UdpSocket, set: &[Vec<u8>], window: usize, until: Instant) -> (u64, u64, u64) {
    let mut buf = vec![0u8; 65536];
    let (mut sent, mut answered, mut bytes) = (0u64, 0u64, 0u64);
    let mut in_flight = 0usize;
    let mut next = set.iter().cycle();
    loop {
        let running = Instant::now() < until;
        while running && in_flight < window {
            let query = next.next().expect("a non-empty set");
            if socket.send(query).is_ok() {
                sent += 1;
                in_flight += 1;
            }
        }
        if !running && in_flight == 0 {
            return (sent, answered, bytes);
        }
        match socket.recv(&mut buf) {
            Ok(len) => {
                answered += 1;
                bytes += len as u64;
                in_flight = in_flight.saturating_sub(1);
            }
            // Lost or dropped by a saturated server: refill the window (or stop after the end).
            Err(_) if running => in_flight = 0,
            Err(_) => return (sent, answered, bytes),
        }
    }
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let cpu_before = swarm_bench::procfs::cpu_us(args.pid).unwrap_or(0) as f64 / 1e6;
    let totals: Vec<(u64, u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads.max(1))
            .map(|t| {
                let (server, window) = (args.server, args.window);
                scope.spawn(move || {
                    let set = queries(t as u64 + 1, 3 * 4096);
                    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                    socket.connect(server).expect("connect");
                    socket
                        .set_read_timeout(Some(Duration::from_millis(200)))
                        .expect("timeout");
                    blast(&socket, &set, window, until)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load thread"))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu = swarm_bench::procfs::cpu_us(args.pid).unwrap_or(0) as f64 / 1e6 - cpu_before;
    let sent: u64 = totals.iter().map(|t| t.0).sum();
    let answered: u64 = totals.iter().map(|t| t.1).sum();
    let bytes: u64 = totals.iter().map(|t| t.2).sum();
    let out = serde_json::json!({
        "queries_per_sec": (answered as f64 / secs).round(),
        "server_cpu_secs": cpu,
        "queries_per_cpu_sec": (answered as f64 / cpu.max(0.01)).round(),
        "mean_reply_bytes": (bytes as f64 / answered.max(1) as f64).round(),
        "sent": sent,
        "answered": answered,
    });
    println!("{out}");
}
