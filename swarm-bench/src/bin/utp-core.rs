//! The uTP core alone, no sockets: two `UtpSocket`s back to back in one thread, a bulk
//! transfer over a lossless simulated link with 1 ms one-way delay. Reports the core's
//! throughput (MiB per wall second on one core), CPU seconds per GiB (this thread's
//! schedstat) and datagrams per second, as one JSON object.
//!
//! `--swarm` runs the same transfer between two uTP-only `Swarm`s instead: handshake, then
//! `stream_write` / `stream_read`, so the figure includes the composition.
//!
//! Usage: utp-core [MiB] [--swarm] (default 1024). Build with --release.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant as Wall};
use swarm_core::utp::socket::{UtpConfig, UtpEvent, UtpSocket};
use swarm_core::{Config, Event, Input, Instant, Output, Swarm, UdpSocket};

/// Nanoseconds this thread has run (first field of schedstat).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    if std::env::args().any(|a| a == "--swarm") {
        swarms(mib);
    } else {
        sockets(mib);
    }
}

fn report(mode: &str, mib: usize, wall: f64, cpu: f64, datagrams: u64, sim: f64) {
    println!(
        "{{\"mode\": \"{mode}\", \"mib\": {mib}, \"wall_s\": {wall:.3}, \"mib_per_s\": {:.1}, \"cpu_s_per_gib\": {:.3}, \"datagrams_per_s\": {:.0}, \"simulated_s\": {sim:.2}}}",
        mib as f64 / wall,
        cpu / (mib as f64 / 1024.0),
        datagrams as f64 / wall,
    );
}

/// Two uTP-only swarms: connect, handshake, then the bulk transfer through the streams.
fn swarms(mib: usize) {
    let total = mib << 20;
    let addrs: [SocketAddr; 2] = [
        "10.0.0.1:7000".parse().unwrap(),
        "10.0.0.2:7000".parse().unwrap(),
    ];
    let mut nodes: Vec<Swarm> = (0..2u8)
        .map(|i| {
            let mut c = Config::new(vec![i + 1; 32], u64::from(i) + 1);
            c.tcp = false;
            c.utp = true;
            c.utp_in_core = true;
            Swarm::new(c).expect("config")
        })
        .collect();
    let delay = Duration::from_millis(1);
    let mut now = Instant::from_micros(1_000_000);
    for s in &mut nodes {
        s.handle_input(now, Input::Listening { port: 7000 });
    }
    nodes[0].add_peer(now, Some(b"bench"), addrs[1]);
    let mut wires: [VecDeque<(Instant, _)>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut conns = [None, None];
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut sent, mut got, mut sum_sent, mut sum_got) = (0usize, 0usize, 0u64, 0u64);
    let mut datagrams = 0u64;
    let start_cpu = thread_cpu_ns();
    let start = Wall::now();
    let sim_start = now;
    while got < total {
        for i in 0..2 {
            while let Some(out) = nodes[i].poll_output() {
                match out {
                    Output::Transmit {
                        socket: UdpSocket::Swarm,
                        data,
                        ..
                    } => {
                        datagrams += 1;
                        wires[1 - i].push_back((now + delay, data));
                    }
                    Output::Event(Event::Connection {
                        conn, early_data, ..
                    }) => {
                        assert!(early_data.is_empty());
                        conns[i] = Some(conn);
                    }
                    _ => {}
                }
            }
        }
        if let (Some(a), Some(b)) = (conns[0], conns[1]) {
            while sent < total {
                let want = (total - sent).min(chunk.len());
                let Ok(n) = nodes[0].stream_write(now, a, &chunk[..want]) else {
                    break;
                };
                sum_sent += chunk[..n].iter().map(|&x| u64::from(x)).sum::<u64>();
                sent += n;
            }
            while let Ok(n @ 1..) = nodes[1].stream_read(now, b, &mut buf) {
                sum_got += buf[..n].iter().map(|&x| u64::from(x)).sum::<u64>();
                got += n;
            }
        }
        let next = [
            wires[0].front().map(|x| x.0),
            wires[1].front().map(|x| x.0),
            nodes[0].poll_timeout(),
            nodes[1].poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("something scheduled");
        now = now.max(next);
        for i in 0..2 {
            while wires[i].front().is_some_and(|x| x.0 <= now) {
                let (_, d) = wires[i].pop_front().unwrap();
                let from = addrs[1 - i];
                let input = Input::Datagram {
                    socket: UdpSocket::Swarm,
                    from,
                    data: &d,
                };
                nodes[i].handle_input(now, input);
            }
            if nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                nodes[i].handle_timeout(now);
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = (thread_cpu_ns() - start_cpu) as f64 / 1e9;
    assert_eq!(sum_got, sum_sent, "stream corrupted");
    report(
        "swarm",
        mib,
        wall,
        cpu,
        datagrams,
        (now - sim_start).as_secs_f64(),
    );
}

/// Two bare sockets.
fn sockets(mib: usize) {
    let total = mib << 20;
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        "10.0.0.1:7000".parse().unwrap(),
        "10.0.0.2:7000".parse().unwrap(),
    );
    let mut a = UtpSocket::new(UtpConfig::new(1));
    let mut b = UtpSocket::new(UtpConfig::new(2));
    let delay = Duration::from_millis(1);
    let mut now = Instant::from_micros(1_000_000);
    // In-flight datagrams per direction, in arrival order (constant delay keeps them sorted).
    let mut to_b = VecDeque::new();
    let mut to_a = VecDeque::new();
    let ha = a.connect(now, b_addr);
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut sent, mut got, mut sum_sent, mut sum_got) = (0usize, 0usize, 0u64, 0u64);
    let mut hb = None;
    let mut datagrams = 0u64;
    let start_cpu = thread_cpu_ns();
    let start = Wall::now();
    let sim_start = now;
    while got < total {
        while sent < total {
            let want = (total - sent).min(chunk.len());
            let n = a.write(ha, &chunk[..want]);
            if n == 0 {
                break;
            }
            sum_sent += chunk[..n].iter().map(|&x| u64::from(x)).sum::<u64>();
            sent += n;
        }
        while let Some((_, d)) = a.poll_transmit(now) {
            datagrams += 1;
            to_b.push_back((now + delay, d));
        }
        while let Some((_, d)) = b.poll_transmit(now) {
            datagrams += 1;
            to_a.push_back((now + delay, d));
        }
        if let Some(h) = hb {
            loop {
                let n = b.read(h, &mut buf);
                if n == 0 {
                    break;
                }
                sum_got += buf[..n].iter().map(|&x| u64::from(x)).sum::<u64>();
                got += n;
            }
        }
        let next = [
            to_b.front().map(|x| x.0),
            to_a.front().map(|x| x.0),
            a.poll_timeout(),
            b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("something scheduled");
        now = now.max(next);
        while to_b.front().is_some_and(|x| x.0 <= now) {
            let (_, d) = to_b.pop_front().unwrap();
            b.handle_datagram(now, a_addr, &d);
        }
        while to_a.front().is_some_and(|x| x.0 <= now) {
            let (_, d) = to_a.pop_front().unwrap();
            a.handle_datagram(now, b_addr, &d);
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
        while let Some(e) = b.poll_event() {
            if let UtpEvent::Incoming { conn, .. } = e {
                hb = Some(conn);
            }
        }
        while a.poll_event().is_some() {}
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = (thread_cpu_ns() - start_cpu) as f64 / 1e9;
    assert_eq!(sum_got, sum_sent, "stream corrupted");
    report(
        "sockets",
        mib,
        wall,
        cpu,
        datagrams,
        (now - sim_start).as_secs_f64(),
    );
}
