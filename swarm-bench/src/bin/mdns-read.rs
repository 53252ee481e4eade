//! The mDNS engine reading a busy LAN's answers, no sockets: what one simulated node does
//! for nearly every step of `swarm-sim-scale`. A LAN of `SENDERS` announcers of one topic;
//! each query round makes every one of them answer the group, so a listener reads each
//! sender's answer about once per `ROUND_GAP`. Prints one JSON object: nanoseconds per answer
//! read, and how many answers were first reports (the rest fall in the repeat window).
//!
//!   mdns-read [SENDERS] [SECONDS]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant as Wall};
use swarm_core::mdns::{MdnsConfig, MdnsDiscovery, MdnsEvent};
use swarm_core::Instant;

const TOPIC: &[u8] = b"scale";
/// A round per node every ~65 s on a LAN of 50: a round every 1.3 s.
const ROUND_GAP: Duration = Duration::from_millis(1300);

fn engine(i: u32) -> MdnsDiscovery {
    let mut secret = [0u8; 32];
    secret[..4].copy_from_slice(&i.to_be_bytes());
    let mut e = MdnsDiscovery::new(MdnsConfig::new(secret, u64::from(i)));
    e.join(TOPIC.to_vec(), true, 9000 + i as u16);
    e
}

fn ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)
}

fn main() {
    let arg = swarm_bench::positional_arg;
    let (senders, seconds) = (arg(1, 49) as u32, arg(2, 3));
    // The listener's query, as every node sends them.
    let mut listener = engine(0);
    listener.handle_timeout(Instant::ZERO);
    let (_, query) = listener.poll_transmit().expect("a join queries at once");
    let querier = SocketAddr::from((ip(0), 5353));
    // Each sender's answer to it: the packets the listener reads.
    let answers: Vec<(SocketAddr, Vec<u8>)> = (1..=senders)
        .map(|i| {
            let mut e = engine(i);
            e.handle_datagram(Instant::ZERO, querier, &query);
            let (_, answer) = e.poll_transmit().expect("an announcer answers");
            (SocketAddr::from((ip(i), 5353)), answer.to_vec())
        })
        .collect();
    let step = ROUND_GAP / senders;
    let mut now = Instant::from_micros(1);
    let (mut read, mut reported) = (0u64, 0u64);
    let started = Wall::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        for (from, answer) in &answers {
            listener.handle_datagram(now, *from, answer);
            while let Some(event) = listener.poll_event() {
                reported += u64::from(matches!(event, MdnsEvent::Peer { .. }));
            }
            now = now + step;
        }
        read += answers.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "senders": senders,
        "answer_bytes": answers.first().map_or(0, |(_, a)| a.len()),
        "answers_read": read,
        "ns_per_answer": (secs * 1e9 / read as f64 * 10.0).round() / 10.0,
        "first_reports_percent": (reported as f64 * 1000.0 / read as f64).round() / 10.0,
    });
    println!("{out}");
}
