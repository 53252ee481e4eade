//! Arbitrary datagrams, answers to the client's own queries with arbitrary TXT strings, and
//! pushes with arbitrary SRV records into the dns-discovery client: no panic, bounded output,
//! no peer on port 0, and query ids never shaped like uTP.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use swarm_core::dnsd::{is_utp_shaped, DnsClient, DnsClientConfig, DnsEvent, ServerAddr};
use swarm_core::mdns::wire;
use swarm_core::Instant;

const TOPICS: [&[u8]; 3] = [b"ubuntu-14.04", b"a", b"b"];

#[derive(Arbitrary, Debug)]
enum Op {
    Datagram {
        server: bool,
        data: Vec<u8>,
    },
    /// Answers the last query sent, with these TXT strings.
    Answer {
        strings: Vec<Vec<u8>>,
    },
    Push {
        topic: u8,
        port: u16,
        target: Vec<u8>,
    },
    Advance {
        millis: u32,
    },
    Join {
        topic: u8,
        announce: bool,
        port: u16,
    },
    Leave {
        topic: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Case {
    seed: u64,
    implied: bool,
    ops: Vec<Op>,
}

fuzz_target!(|case: Case| {
    let servers: Vec<ServerAddr> = (1..=2u8)
        .map(|i| ServerAddr {
            addr: SocketAddr::from((Ipv4Addr::new(9, 9, 9, i), 5300)),
            secondary: Some(53),
        })
        .collect();
    let mut config = DnsClientConfig::new(servers, case.seed);
    config.implied_port = case.implied;
    let mut c = DnsClient::new(config);
    let mut now = Instant::ZERO;
    c.start(now);
    let mut last: Option<(SocketAddr, Bytes)> = None;
    for op in case.ops.into_iter().take(256) {
        match op {
            Op::Datagram { server, data } => {
                let from = if server {
                    SocketAddr::from((Ipv4Addr::new(9, 9, 9, 1), 5300))
                } else {
                    SocketAddr::from((Ipv4Addr::new(6, 6, 6, 6), 5300))
                };
                c.handle_datagram(now, from, &data);
            }
            Op::Answer { strings } => {
                if let Some((to, query)) = last.take() {
                    if let Ok(q) = wire::decode(&query) {
                        let strings: Vec<&[u8]> = strings
                            .iter()
                            .take(8)
                            .map(|s| &s[..s.len().min(255)])
                            .collect();
                        let mut w = wire::Writer::default();
                        w.start_message(q.id, 0x8000, [0, 1, 0]);
                        let name = q
                            .questions
                            .first()
                            .map(|q| q.name.clone())
                            .unwrap_or_default();
                        w.txt(&name, &strings);
                        c.handle_datagram(now, to, &w.finish());
                    }
                }
            }
            Op::Push {
                topic,
                port,
                target,
            } => {
                let key = swarm_core::mdns::KeyHash::Sha1
                    .key(TOPICS[topic as usize % 3])
                    .unwrap();
                let name = swarm_core::mdns::topic::dns_name(&key);
                let mut w = wire::Writer::default();
                w.start_message(0x2233, 0x0100, [0, 0, 1]);
                let ip = std::str::from_utf8(&target)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                w.srv(name.as_bytes(), port, ip);
                let from = SocketAddr::from((Ipv4Addr::new(9, 9, 9, 2), 5300));
                c.handle_datagram(now, from, &w.finish());
            }
            Op::Advance { millis } => {
                now = now + Duration::from_millis(u64::from(millis));
                c.handle_timeout(now);
            }
            Op::Join {
                topic,
                announce,
                port,
            } => {
                c.join(
                    now,
                    Bytes::from_static(TOPICS[topic as usize % 3]),
                    announce,
                    port,
                );
            }
            Op::Leave { topic } => {
                c.leave(TOPICS[topic as usize % 3]);
            }
        }
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        let mut sent = 0;
        while let Some((to, data)) = c.poll_transmit() {
            let msg = wire::decode(&data).expect("we must decode what we send");
            if !msg.is_response() {
                assert!(msg.id != 0 && !is_utp_shaped(msg.id));
            }
            assert!(to.ip().octets_v4_prefix_is_9());
            sent += 1;
            last = Some((to, data));
        }
        assert!(sent <= 1024);
        while let Some(e) = c.poll_event() {
            if let DnsEvent::Peer { addr, .. } = e {
                assert_ne!(addr.port(), 0);
            }
        }
    }
});

trait NinePrefix {
    fn octets_v4_prefix_is_9(&self) -> bool;
}

impl NinePrefix for std::net::IpAddr {
    /// Everything the client sends goes to a configured server.
    fn octets_v4_prefix_is_9(&self) -> bool {
        matches!(self, std::net::IpAddr::V4(v4) if v4.octets()[..3] == [9, 9, 9])
    }
}
