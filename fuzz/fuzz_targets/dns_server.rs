//! Arbitrary datagrams, and well-formed requests with arbitrary TXT strings and valid or
//! invalid tokens, into the dns-discovery server engine: no panic, the store stays within its
//! limit, and no response is much larger than its request (no amplification).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use swarm_core::dnsd::{DnsServer, DnsServerConfig};
use swarm_core::mdns::wire;
use swarm_core::Instant;

const LIMIT: usize = 64;

#[derive(Arbitrary, Debug)]
enum Op {
    Datagram {
        host: u8,
        port: u16,
        data: Vec<u8>,
    },
    Request {
        host: u8,
        port: u16,
        id: u8,
        probe: bool,
        token: bool,
        strings: Vec<Vec<u8>>,
    },
    Advance {
        secs: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Case {
    seed: u64,
    ops: Vec<Op>,
}

fuzz_target!(|case: Case| {
    let mut config = DnsServerConfig::from_seed(case.seed);
    config.store.limit = LIMIT;
    config.push.limit = LIMIT;
    config.store.ttl_secs = 600;
    config.burst = 32;
    config.per_sec = 8;
    let mut now = Instant::ZERO;
    let mut server = DnsServer::new(config, now);
    for op in case.ops.into_iter().take(512) {
        let request_len = match op {
            Op::Datagram { host, port, data } => {
                let from = SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), port));
                let _ = server.handle_datagram(now, from, &data);
                data.len()
            }
            Op::Request {
                host,
                port,
                id,
                probe,
                token,
                strings,
            } => {
                let ip = Ipv4Addr::new(10, 0, 0, host);
                let name = format!("{id:040x}.dns-discovery.local");
                let t = format!("token={}", server.token_for(ip));
                let mut all: Vec<&[u8]> = Vec::new();
                if token {
                    all.push(t.as_bytes());
                }
                all.extend(strings.iter().take(8).map(|s| &s[..s.len().min(255)]));
                let mut w = wire::Writer::default();
                w.start_message(0x1234, 0x0100, [1, 0, 1]);
                if probe {
                    w.question(b"dns-discovery.local", 16, 1);
                } else {
                    w.question(name.as_bytes(), 16, 1);
                }
                w.txt(name.as_bytes(), &all);
                let data = w.finish();
                let from = SocketAddr::from((ip, port));
                let _ = server.handle_datagram(now, from, &data);
                data.len()
            }
            Op::Advance { secs } => {
                now = now + Duration::from_secs(u64::from(secs));
                server.handle_timeout(now);
                0
            }
        };
        assert!(server.stored_peers() <= LIMIT);
        assert!(server.subscribers() <= LIMIT);
        let mut pushes = 0;
        while let Some((_, data)) = server.poll_transmit() {
            let msg = wire::decode(&data).expect("we must decode what we send");
            if msg.is_response() {
                // Echoed questions plus one TXT answer (token, host/port or <= 31 peers).
                assert!(
                    data.len() <= request_len + 4 * 400,
                    "{} vs {request_len}",
                    data.len()
                );
            } else {
                pushes += 1;
                assert!(data.len() < 128);
            }
        }
        // One announce pushes to at most 16 subscribers per record (<= 64 records).
        assert!(pushes <= 16 * 64 + 64);
    }
});
