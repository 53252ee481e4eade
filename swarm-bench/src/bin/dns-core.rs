//! The dns-discovery server engine alone, no sockets: requests answered per second on one
//! core (decode, answer, apply, encode), with the same requests as bench/dns-core-node.js.
//! Prints one JSON object.
//!
//!   dns-core [PEERS] [PER_NAME] [SECONDS]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant as Wall};
use swarm_core::dnsd::{DnsServer, DnsServerConfig};
use swarm_core::mdns::wire::Writer;
use swarm_core::Instant;

fn request(w: &mut Writer, name: &str, token: &str, port: u16, subscribe: bool) -> Vec<u8> {
    let t = format!("token={token}");
    let a = format!("announce={port}");
    let mut strings: Vec<&[u8]> = Vec::new();
    if subscribe {
        strings.push(b"subscribe=true");
    }
    strings.push(t.as_bytes());
    strings.push(a.as_bytes());
    w.start_message(0x1234, 0x0100, [1, 0, 1]);
    w.question(name.as_bytes(), 16, 1);
    w.txt(name.as_bytes(), &strings);
    w.finish().to_vec()
}

fn main() {
    let arg = swarm_bench::positional_arg;
    let (peers, per_name, seconds) = (arg(1, 100_000) as usize, arg(2, 20) as usize, arg(3, 5));
    let names = peers.div_ceil(per_name);
    let name = |i: usize| format!("{i:040x}.dns-discovery.local");
    let port_of = |i: usize| (1000 + i / names) as u16;
    let mut config = DnsServerConfig::from_seed(1);
    config.per_sec = 0;
    config.store.limit = 10_000_000;
    let now = Instant::ZERO;
    let mut server = DnsServer::new(config, now);
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 4000));
    let token = server.token_for(Ipv4Addr::LOCALHOST);
    let mut w = Writer::default();
    let mut reply_bytes = 0usize;
    for i in 0..peers {
        let q = request(&mut w, &name(i % names), &token, port_of(i), false);
        server.handle_datagram(now, from, &q).expect("served");
        while let Some((_, data)) = server.poll_transmit() {
            reply_bytes += data.len();
        }
    }
    let set: Vec<Vec<u8>> = (0..4096usize)
        .map(|k| {
            let i = (k * 7919) % peers;
            request(&mut w, &name(i % names), &token, port_of(i), true)
        })
        .collect();
    let started = Wall::now();
    let mut done = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        for k in 0..256 {
            let _ = server.handle_datagram(now, from, &set[(done + k) % set.len()]);
            while let Some((_, data)) = server.poll_transmit() {
                reply_bytes += data.len();
            }
        }
        done += 256;
    }
    let secs = started.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "requests_per_sec": (done as f64 / secs).round(),
        "mean_reply_bytes": reply_bytes / (done + peers),
        "stored_peers": server.stored_peers(),
    });
    println!("{out}");
}
