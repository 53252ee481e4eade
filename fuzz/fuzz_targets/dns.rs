//! Arbitrary datagrams into the DNS decoder and into an `MdnsDiscovery` that has joined a
//! few topics: no panic, every cap holds, and each datagram yields bounded output.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use swarm_core::mdns::topic::dns_name;
use swarm_core::mdns::{txt, wire, KeyHash, MdnsConfig, MdnsDiscovery, MdnsEvent};
use swarm_core::Instant;

const TOPICS: [&[u8]; 3] = [b"ubuntu-14.04", b"a", b"b"];

#[derive(Arbitrary, Debug)]
enum Op {
    Datagram {
        host: u8,
        port: u16,
        data: Vec<u8>,
    },
    /// A well-formed packet about a joined topic with arbitrary TXT strings, so the
    /// token/peers/echo/repeat paths are reached, not only the decoder's error exits.
    Answer {
        host: u8,
        topic: u8,
        query: bool,
        qtype: u16,
        strings: Vec<Vec<u8>>,
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
    /// Decoded alone as well, to reach the decoder with no engine state in the way.
    raw: Vec<u8>,
    ops: Vec<Op>,
}

fn check_decoder(data: &[u8]) {
    // A receiver's decode takes the same packets, with the same records.
    let received = wire::decode_received(data);
    match (&received, wire::decode(data)) {
        (Ok(lean), Ok(full)) => {
            let records: Vec<_> = lean.records().map(|r| r.to_owned_names()).collect();
            assert_eq!(records, full.records);
        }
        (Err(a), Err(b)) => assert_eq!(*a, b),
        _ => panic!("decode and decode_received disagree"),
    }
    // An announcer's lone answer, read without the full decode, reads the same record.
    for topic in TOPICS {
        let key = KeyHash::Sha1.key(topic).expect("a key");
        let name = wire::WireName::new(dns_name(&key).as_bytes()).expect("a short name");
        if let Some(rdata) = wire::lone_txt_answer(data, &name) {
            let msg = received
                .as_ref()
                .expect("the full decoder accepts a lone answer");
            let records: Vec<_> = msg.records().collect();
            assert!(msg.is_response() && records.len() == 1 && records[0].name.is(&name));
            assert!(matches!(records[0].data, wire::RData::Txt(d) if d == rdata));
        }
    }
    if let Ok(msg) = wire::decode(data) {
        assert!(msg.questions.len() <= wire::MAX_QUESTIONS);
        assert!(msg.records.len() <= wire::MAX_RECORDS);
        for r in &msg.records {
            assert!(r.name.len() <= 255);
            if let wire::RData::Txt(d) = r.data {
                for s in wire::txt_strings(d) {
                    let (_, v) = txt::key_value(s);
                    let mut out = Vec::new();
                    txt::decode_peers(v, Ipv4Addr::UNSPECIFIED, &mut out, 64);
                    assert!(out.len() <= 42);
                }
            }
        }
    }
}

fuzz_target!(|case: Case| {
    check_decoder(&case.raw);
    let mut m = MdnsDiscovery::new(MdnsConfig::new([7; 32], case.seed));
    m.join(TOPICS[0], true, 7001);
    let mut now = Instant::ZERO;
    for op in case.ops.into_iter().take(256) {
        match op {
            Op::Datagram { host, port, data } => {
                check_decoder(&data);
                let from = SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), port));
                m.handle_datagram(now, from, &data);
            }
            Op::Answer {
                host,
                topic,
                query,
                qtype,
                strings,
            } => {
                let key = KeyHash::Sha1.key(TOPICS[topic as usize % 3]).unwrap();
                let name = dns_name(&key);
                let strings: Vec<&[u8]> = strings
                    .iter()
                    .take(16)
                    .map(|s| &s[..s.len().min(255)])
                    .collect();
                let mut w = wire::Writer::default();
                w.start(if query { 0 } else { wire::FLAGS_RESPONSE }, 1, 1);
                w.question(name.as_bytes(), qtype, 1);
                w.txt(name.as_bytes(), &strings);
                let data = w.finish();
                check_decoder(&data);
                let from = SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), 5353));
                m.handle_datagram(now, from, &data);
            }
            Op::Advance { millis } => {
                now = now + Duration::from_millis(u64::from(millis));
                m.handle_timeout(now);
            }
            Op::Join {
                topic,
                announce,
                port,
            } => {
                m.join(TOPICS[topic as usize % 3], announce, port);
            }
            Op::Leave { topic } => {
                m.leave(TOPICS[topic as usize % 3]);
            }
        }
        // One input yields at most one answer, one query per topic, and a capped number of
        // peers; nothing is ever announced on port 0.
        let mut sent = 0;
        while let Some((to, data)) = m.poll_transmit() {
            assert!(to.ip().is_multicast());
            assert!(data.len() < 9000);
            assert!(wire::decode(&data).is_ok(), "we must decode what we send");
            sent += 1;
        }
        assert!(sent <= 1 + TOPICS.len());
        let mut peers = 0;
        while let Some(e) = m.poll_event() {
            if let MdnsEvent::Peer { addr, .. } = e {
                assert_ne!(addr.port(), 0);
                peers += 1;
            }
        }
        assert!(peers <= 128);
    }
});
