//! Load generator for a dns-discovery server on loopback (ours or Node's): fills the store
//! with announces, reports the server's resident memory per stored peer, then measures how
//! many requests per second it answers. Prints one JSON object.
//!
//!   dns-load --server 127.0.0.1:5300 --pid PID [--peers 100000] [--per-name 20]
//!            [--seconds 5] [--window 64] [--gc-signal]
//!
//! Requests are what a client sends every round: a TXT question for `<id>.dns-discovery.local`
//! with `subscribe`, a valid token and `announce=<port>` (refreshing a stored peer), so each
//! answer lists the name's other peers. `--gc-signal` sends SIGUSR2 to the server before
//! reading its memory (the Node bench server collects garbage on it).

use clap::Parser;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use swarm_core::dnsd::is_utp_shaped;
use swarm_core::mdns::wire::{self, RData, Writer};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    server: SocketAddr,
    /// The server's process id, for its resident memory.
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 100_000)]
    peers: usize,
    #[arg(long, default_value_t = 20)]
    per_name: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[arg(long)]
    gc_signal: bool,
    /// Load threads, each with its own socket and window (the throughput phase).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn name(i: usize) -> String {
    format!("{i:040x}.dns-discovery.local")
}

fn request(w: &mut Writer, name: &str, token: &str, port: u16, subscribe: bool) -> Vec<u8> {
    let t = format!("token={token}");
    let a = format!("announce={port}");
    let mut strings: Vec<&[u8]> = Vec::new();
    if subscribe {
        strings.push(b"subscribe=true");
    }
    strings.push(t.as_bytes());
    strings.push(a.as_bytes());
    w.start_message(0, 0x0100, [1, 0, 1]);
    w.question(name.as_bytes(), 16, 1);
    w.txt(name.as_bytes(), &strings);
    w.finish().to_vec()
}

/// Ids cycle over every non-uTP-shaped 16-bit value.
struct Ids(u16);

impl Ids {
    fn next(&mut self) -> u16 {
        loop {
            self.0 = self.0.wrapping_add(1);
            if self.0 != 0 && !is_utp_shaped(self.0) {
                return self.0;
            }
        }
    }
}

/// Sends `packets` (each once, ids rewritten) keeping `window` in flight on a socket
/// connected to the server (no per-datagram route lookup); returns answers.
fn blast(
    socket: &UdpSocket,
    packets: &mut dyn Iterator<Item = Vec<u8>>,
    window: usize,
    until: Option<Instant>,
) -> (u64, u64) {
    let mut ids = Ids(0);
    let mut buf = vec![0u8; 65536];
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut in_flight = 0usize;
    let mut done = false;
    loop {
        while in_flight < window && !done {
            if until.is_some_and(|u| Instant::now() >= u) {
                done = true;
                break;
            }
            match packets.next() {
                Some(mut p) => {
                    let id = ids.next();
                    p[..2].copy_from_slice(&id.to_be_bytes());
                    if socket.send(&p).is_ok() {
                        sent += 1;
                        in_flight += 1;
                    }
                }
                None => done = true,
            }
        }
        if in_flight == 0 {
            return (sent, answered);
        }
        match socket.recv(&mut buf) {
            Ok(_) => {
                answered += 1;
                in_flight = in_flight.saturating_sub(1);
            }
            // Lost (or the server is saturated): refill the window.
            Err(_) => in_flight = 0,
        }
    }
}

fn main() {
    let args = Args::parse();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut w = Writer::default();

    // Probe for our token.
    w.start_message(0x2345, 0x0100, [1, 0, 0]);
    w.question(b"dns-discovery.local", 16, 1);
    let mut token = None;
    let mut buf = vec![0u8; 65536];
    for _ in 0..50 {
        socket.send_to(&w.finish(), args.server).unwrap();
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            if let Ok(msg) = wire::decode(&buf[..len]) {
                for r in &msg.records {
                    if let RData::Txt(raw) = r.data {
                        for s in wire::txt_strings(raw) {
                            if let Some(t) = s.strip_prefix(b"token=") {
                                token = Some(String::from_utf8_lossy(t).into_owned());
                            }
                        }
                    }
                }
            }
            if token.is_some() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let token = token.expect("the server answered the probe with a token");

    let names = args.peers.div_ceil(args.per_name);
    let port_of = |i: usize| (1000 + i / names) as u16;
    if args.gc_signal {
        let _ = std::process::Command::new("kill")
            .args(["-USR2", &args.pid.to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(500));
    }
    let before = swarm_bench::procfs::rss_kib(args.pid).unwrap_or(0);
    let fill_started = Instant::now();
    let mut fill =
        (0..args.peers).map(|i| request(&mut w, &name(i % names), &token, port_of(i), false));
    socket.connect(args.server).expect("connect");
    let (fill_sent, fill_answered) = blast(&socket, &mut fill, args.window, None);
    let fill_secs = fill_started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    if args.gc_signal {
        let _ = std::process::Command::new("kill")
            .args(["-USR2", &args.pid.to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(1000));
    }
    let after = swarm_bench::procfs::rss_kib(args.pid).unwrap_or(0);

    // Throughput: refresh announces of stored peers, round-robin over a prebuilt set.
    let mut w2 = Writer::default();
    let set: Vec<Vec<u8>> = (0..4096usize)
        .map(|k| {
            let i = (k * 7919) % args.peers;
            request(&mut w2, &name(i % names), &token, port_of(i), true)
        })
        .collect();
    let started = Instant::now();
    let cpu_before = swarm_bench::procfs::cpu_us(args.pid).unwrap_or(0) as f64 / 1e6;
    let until = started + Duration::from_secs(args.seconds);
    let totals: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads.max(1))
            .map(|t| {
                let set = &set;
                let server = args.server;
                let window = args.window;
                scope.spawn(move || {
                    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                    socket.connect(server).expect("connect");
                    socket
                        .set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let mut cycle = set.iter().skip(t * 997).cloned().cycle();
                    blast(&socket, &mut cycle, window, Some(until))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu = swarm_bench::procfs::cpu_us(args.pid).unwrap_or(0) as f64 / 1e6 - cpu_before;
    let sent: u64 = totals.iter().map(|t| t.0).sum();
    let answered: u64 = totals.iter().map(|t| t.1).sum();
    let out = serde_json::json!({
        "requests_per_sec": (answered as f64 / secs).round(),
        "server_cpu_secs": cpu,
        "requests_per_cpu_sec": (answered as f64 / cpu.max(0.01)).round(),
        "sent": sent,
        "answered": answered,
        "fill_sent": fill_sent,
        "fill_answered": fill_answered,
        "fill_requests_per_sec": (fill_answered as f64 / fill_secs).round(),
        "peers": args.peers,
        "names": names,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_peer": ((after.saturating_sub(before)) as f64 * 1024.0 / args.peers as f64).round(),
    });
    println!("{out}");
}
