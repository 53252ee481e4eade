//! Engine and wire tests on a simulated clock: no sockets, no sleeps.

use super::engine::MAX_SENDER_TOKENS;
use super::topic::{dns_name, KeyHash};
use super::txt;
use super::wire::{self, RData, Section, Writer, TYPE_A, TYPE_SRV, TYPE_TXT};
use super::*;
use crate::time::Instant;
use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

pub(super) const UBUNTU: &str = "30b411f5ef231e34acc17e0065a8fed2d72116fd.dns-discovery.local";

pub(super) fn engine(i: u8) -> MdnsDiscovery {
    MdnsDiscovery::new(MdnsConfig::new([i; 32], u64::from(i)))
}

pub(super) fn addr(i: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, i), port))
}

pub(super) fn query_bytes(name: &str, qtype: u16) -> Vec<u8> {
    let mut w = Writer::default();
    w.start(0, 1, 0);
    w.question(name.as_bytes(), qtype, 1);
    w.finish().to_vec()
}

pub(super) fn drain_transmits(m: &mut MdnsDiscovery) -> Vec<(SocketAddr, bytes::Bytes)> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

pub(super) fn drain_events(m: &mut MdnsDiscovery) -> Vec<MdnsEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

#[test]
fn query_golden_bytes() {
    let mut m = engine(1);
    assert!(m.join(&b"ubuntu-14.04"[..], false, 0));
    assert_eq!(m.poll_timeout(), Some(Instant::ZERO));
    m.handle_timeout(Instant::ZERO);
    let out = drain_transmits(&mut m);
    assert_eq!(out.len(), 1);
    let (to, q) = &out[0];
    assert_eq!(*to, SocketAddr::V4(MDNS_GROUP));
    let mut expected = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 40];
    expected.extend_from_slice(b"30b411f5ef231e34acc17e0065a8fed2d72116fd");
    expected.push(13);
    expected.extend_from_slice(b"dns-discovery");
    expected.push(5);
    expected.extend_from_slice(b"local");
    expected.extend_from_slice(&[0, 0, 16, 0, 1]);
    assert_eq!(q.len(), 78);
    assert_eq!(&q[..], &expected[..]);
    assert_eq!(
        drain_events(&mut m),
        [MdnsEvent::FirstRound {
            topic: "ubuntu-14.04".into()
        }]
    );
}

#[test]
fn response_golden_bytes() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    let q = query_bytes(UBUNTU, TYPE_TXT);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &q);
    let out = drain_transmits(&mut m);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].0,
        SocketAddr::from((Ipv4Addr::new(224, 0, 0, 251), 5353))
    );
    let token = txt::token(&[1; 32], Ipv4Addr::new(10, 0, 0, 2));
    let mut expected = vec![0, 0, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0];
    expected.extend_from_slice(&q[12..]); // the question, echoed
    expected.extend_from_slice(&q[12..q.len() - 4]); // the answer's name
    expected.extend_from_slice(&[0, 16, 0, 1, 0, 0, 0, 0, 0, 66, 50]);
    expected.extend_from_slice(format!("token={token}").as_bytes());
    expected.push(14);
    expected.extend_from_slice(b"peers=AAAAABtZ");
    assert_eq!(&out[0].1[..], &expected[..]);
    // simple-dns reads it the same way.
    let p = simple_dns::Packet::parse(&out[0].1).unwrap();
    assert_eq!(p.answers.len(), 1);
    assert_eq!(p.answers[0].ttl, 0);
}

#[test]
fn answers_go_to_the_queriers_port_and_upper_case_gets_nothing() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    m.handle_datagram(
        Instant::ZERO,
        addr(2, 40000),
        &query_bytes(UBUNTU, TYPE_TXT),
    );
    let out = drain_transmits(&mut m);
    assert_eq!(out[0].0.port(), 40000);
    let upper = UBUNTU.to_uppercase();
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query_bytes(&upper, TYPE_TXT));
    assert!(drain_transmits(&mut m).is_empty());
}

#[test]
fn lookup_only_joins_do_not_answer() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], false, 7001);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query_bytes(UBUNTU, TYPE_TXT));
    assert!(drain_transmits(&mut m).is_empty());
}

#[test]
fn srv_and_a_answers() {
    let mut cfg = MdnsConfig::new([1; 32], 1);
    cfg.local_ip = Some(Ipv4Addr::new(10, 0, 0, 1));
    let mut m = MdnsDiscovery::new(cfg);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query_bytes(UBUNTU, TYPE_SRV));
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query_bytes(UBUNTU, TYPE_A));
    let out = drain_transmits(&mut m);
    assert_eq!(out.len(), 2);
    let srv = wire::decode(&out[0].1).unwrap();
    assert_eq!(
        srv.records[0].data,
        RData::Srv {
            port: 7001,
            target: wire::Name::new(b"0.0.0.0").unwrap()
        }
    );
    let a = wire::decode(&out[1].1).unwrap();
    assert_eq!(a.records[0].data, RData::A(Ipv4Addr::new(10, 0, 0, 1)));
    // An SRV answer from someone else is a peer: 0.0.0.0 is the sender.
    let mut other = engine(3);
    other.join(&b"ubuntu-14.04"[..], false, 0);
    other.handle_datagram(Instant::ZERO, addr(1, 5353), &out[0].1);
    assert_eq!(
        drain_events(&mut other),
        [MdnsEvent::Peer {
            topic: "ubuntu-14.04".into(),
            addr: addr(1, 7001)
        }]
    );
}

#[test]
fn bare_domain_probe_gets_host_and_port() {
    let mut m = engine(1);
    m.handle_datagram(
        Instant::ZERO,
        addr(2, 1234),
        &query_bytes("dns-discovery.local", TYPE_TXT),
    );
    let out = drain_transmits(&mut m);
    let msg = wire::decode(&out[0].1).unwrap();
    let RData::Txt(data) = msg.records[0].data else {
        panic!("not TXT")
    };
    let strings: Vec<&[u8]> = wire::txt_strings(data).collect();
    assert_eq!(strings[1], b"host=10.0.0.2");
    assert_eq!(strings[2], b"port=1234");
}

#[test]
fn compressed_names_parse() {
    // A response built by simple-dns with compression: the answer name is a pointer.
    use simple_dns::{rdata, Name, Packet, PacketFlag, ResourceRecord, CLASS};
    let mut p = Packet::new_reply(0);
    p.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    let name = Name::new_unchecked(UBUNTU);
    let mut t = rdata::TXT::new();
    t.add_string("token=x").unwrap();
    t.add_string("peers=AQIDBBtZ").unwrap();
    p.answers.push(ResourceRecord::new(
        name.clone(),
        CLASS::IN,
        0,
        rdata::RData::TXT(t.clone()),
    ));
    p.answers.push(ResourceRecord::new(
        name,
        CLASS::IN,
        0,
        rdata::RData::TXT(t),
    ));
    let bytes = p.build_bytes_vec_compressed().unwrap();
    let msg = wire::decode(&bytes).unwrap();
    assert_eq!(msg.records.len(), 2);
    assert_eq!(msg.records[1].name, UBUNTU.as_bytes());
    let mut m = engine(9);
    m.join(&b"ubuntu-14.04"[..], false, 0);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &bytes);
    assert_eq!(
        drain_events(&mut m),
        [MdnsEvent::Peer {
            topic: "ubuntu-14.04".into(),
            addr: SocketAddr::from((Ipv4Addr::new(1, 2, 3, 4), 7001))
        }]
    );
}

#[test]
fn header_counts_do_not_size_the_decoder_beyond_the_bytes_present() {
    // One question, but the header claims 65,535 of everything.
    let mut p = vec![
        0, 0, 0x84, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    p.extend_from_slice(&[1, b'a', 0, 0, 16, 0, 1]);
    assert!(wire::decode(&p).is_err(), "the second question is missing");
    let mut p = vec![0, 0, 0x84, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    p.extend_from_slice(&[1, b'a', 0, 0, 16, 0, 1]);
    let err = wire::decode(&p);
    assert!(err.is_err(), "the records are missing");
    // What does decode is sized by what it holds.
    let mut p = vec![0, 0, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&[1, b'a', 0, 0, 16, 0, 1]);
    let msg = wire::decode(&p).unwrap();
    assert_eq!(msg.questions.capacity(), 1);
    assert_eq!(msg.records.capacity(), 0);
}

#[test]
fn pointer_loops_and_forward_pointers_are_rejected() {
    let mut p = vec![0, 0, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1]); // points at itself
    assert!(wire::decode(&p).is_err());
    let mut p = vec![0, 0, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&[0xc0, 40, 0, 16, 0, 1]); // points forward
    assert!(wire::decode(&p).is_err());
}

#[test]
fn class_zero_question_echo_does_not_lose_the_answer() {
    // What Node echoes for a QU question (PROTOCOLS.md 3.2): simple-dns rejects the packet.
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query_bytes(UBUNTU, TYPE_TXT));
    let mut resp = drain_transmits(&mut m).remove(0).1.to_vec();
    let class_at = 12 + (UBUNTU.len() + 2) + 2;
    resp[class_at..class_at + 2].copy_from_slice(&[0, 0]);
    assert!(simple_dns::Packet::parse(&resp).is_err());
    let mut other = engine(3);
    other.join(&b"ubuntu-14.04"[..], false, 0);
    other.handle_datagram(Instant::ZERO, addr(1, 5353), &resp);
    assert_eq!(drain_events(&mut other).len(), 1);
}

#[test]
fn more_than_31_peers_split_into_records_node_can_read() {
    let entries: Vec<SocketAddrV4> = (0..100u16)
        .map(|i| SocketAddrV4::new(Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8), 1000 + i))
        .collect();
    let mut w = Writer::default();
    let n = txt::answer_count(entries.len());
    assert_eq!(n, 4);
    w.start(wire::FLAGS_RESPONSE, 0, n as u16);
    txt::write_peer_answers(&mut w, UBUNTU.as_bytes(), "tok", &entries);
    let bytes = w.finish();
    let msg = wire::decode(&bytes).unwrap();
    assert_eq!(msg.records.len(), 4);
    let mut all = Vec::new();
    for r in &msg.records {
        let RData::Txt(data) = r.data else { panic!() };
        // Node reads one key/value object per record: exactly one token and one peers.
        let keys: Vec<&[u8]> = wire::txt_strings(data)
            .map(|s| txt::key_value(s).0)
            .collect();
        assert_eq!(keys, [&b"token"[..], &b"peers"[..]]);
        for s in wire::txt_strings(data) {
            assert!(s.len() <= 255);
            let (k, v) = txt::key_value(s);
            if k == b"peers" {
                txt::decode_peers(v, Ipv4Addr::UNSPECIFIED, &mut all, 1000);
            }
        }
    }
    assert_eq!(all, entries);
    assert_eq!(simple_dns::Packet::parse(&bytes).unwrap().answers.len(), 4);
}

/// An in-memory multicast segment: every datagram to the group reaches every member, the
/// sender included, from the sender's address.
pub(super) struct Segment {
    pub(super) nodes: Vec<MdnsDiscovery>,
    pub(super) found: Vec<HashSet<SocketAddr>>,
    first_rounds: Vec<usize>,
    pub(super) peer_events: Vec<usize>,
    pub(super) now: Instant,
    /// Datagrams sent so far.
    pub(super) sent: usize,
    /// Per-receiver loss, in percent, drawn from a seeded RNG.
    loss: u64,
    rng: rand_xoshiro::Xoshiro256PlusPlus,
}

impl Segment {
    pub(super) fn new(n: u8, interval: Option<Duration>) -> Self {
        let nodes = (1..=n)
            .map(|i| {
                let mut cfg = MdnsConfig::new([i; 32], u64::from(i));
                cfg.interval = interval;
                MdnsDiscovery::new(cfg)
            })
            .collect();
        Segment {
            nodes,
            found: vec![HashSet::new(); n as usize],
            first_rounds: vec![0; n as usize],
            peer_events: vec![0; n as usize],
            now: Instant::ZERO,
            sent: 0,
            loss: 0,
            rng: rand_core::SeedableRng::seed_from_u64(u64::from(n)),
        }
    }

    /// Delivers everything queued until the segment is quiet; returns datagrams sent.
    pub(super) fn settle(&mut self) -> usize {
        let mut sent = 0;
        loop {
            let mut queue = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                while let Some((to, data)) = n.poll_transmit() {
                    assert!(to.ip().is_multicast(), "everything here is multicast");
                    queue.push((addr(i as u8 + 1, 5353), data));
                }
            }
            if queue.is_empty() {
                break;
            }
            sent += queue.len();
            self.sent += queue.len();
            for (from, data) in queue {
                for n in self.nodes.iter_mut() {
                    if rand_core::RngCore::next_u64(&mut self.rng) % 100 < self.loss {
                        continue;
                    }
                    n.handle_datagram(self.now, from, &data);
                }
                // As a driver does: drain events after each datagram.
                self.collect();
            }
        }
        sent
    }

    fn collect(&mut self) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            for e in std::iter::from_fn(|| n.poll_event()) {
                match e {
                    MdnsEvent::Peer { addr, .. } => {
                        self.peer_events[i] += 1;
                        self.found[i].insert(addr);
                    }
                    MdnsEvent::FirstRound { .. } => self.first_rounds[i] += 1,
                }
            }
        }
    }

    pub(super) fn advance_to(&mut self, t: Instant) {
        while let Some(next) = self.nodes.iter().filter_map(|n| n.poll_timeout()).min() {
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            for n in self.nodes.iter_mut() {
                n.handle_timeout(now);
            }
            self.collect();
            self.settle();
        }
        self.now = self.now.max(t);
    }
}

#[test]
fn engines_on_one_segment_find_each_other() {
    for n in [2u8, 3, 10, 50] {
        let mut seg = Segment::new(n, None);
        for (i, node) in seg.nodes.iter_mut().enumerate() {
            node.join(&b"shared"[..], true, 7000 + i as u16 + 1);
        }
        seg.advance_to(Instant::ZERO);
        for i in 0..n as usize {
            let expected: HashSet<SocketAddr> = (0..n as usize)
                .filter(|&j| j != i)
                .map(|j| addr(j as u8 + 1, 7000 + j as u16 + 1))
                .collect();
            assert_eq!(seg.found[i], expected, "node {i} of {n}");
            assert_eq!(seg.first_rounds[i], 1);
            assert!(seg.nodes[i].stats().echoes_suppressed > 0);
            // Each peer reported once per round, not once per querier.
            assert_eq!(seg.peer_events[i], n as usize - 1);
        }
        // The next rounds, spread over [60 s, 70 s), report everyone again, each peer at
        // most 3 times (a 5 s repeat window over a 10 s spread).
        seg.advance_to(Instant::ZERO + Duration::from_secs(70));
        for i in 0..n as usize {
            let events = seg.peer_events[i] - (n as usize - 1);
            let peers = n as usize - 1;
            assert!(
                events >= peers && events <= 3 * peers,
                "node {i} of {n}: {events}"
            );
        }
    }
}

#[test]
fn a_late_joiner_is_found_by_its_own_self_answer() {
    let mut seg = Segment::new(3, None);
    seg.nodes[0].join(&b"t"[..], true, 7001);
    seg.nodes[1].join(&b"t"[..], false, 0);
    seg.advance_to(Instant::ZERO);
    assert!(seg.found[1].contains(&addr(1, 7001)));
    seg.now = Instant::ZERO + Duration::from_secs(5);
    seg.nodes[2].join(&b"t"[..], true, 7003);
    let now = seg.now;
    seg.advance_to(now);
    assert!(seg.found[0].contains(&addr(3, 7003)));
    assert!(seg.found[1].contains(&addr(3, 7003)));
    assert!(seg.found[2].contains(&addr(1, 7001)));
    // Lookup-only node 2 is found by nobody; nobody finds itself.
    for (i, f) in seg.found.iter().enumerate() {
        assert!(!f.contains(&addr(2, 7002)));
        assert!(!f.iter().any(|a| a.ip() == addr(i as u8 + 1, 0).ip()));
    }
}

#[test]
fn rounds_repeat_with_jitter_and_leave_stops_them() {
    let mut m = engine(1);
    m.join(&b"a"[..], false, 0); // lookup-only: Node never stops these
    m.handle_timeout(Instant::ZERO);
    assert!(m.poll_transmit().is_some());
    let mut last = Instant::ZERO;
    let mut gaps = HashSet::new();
    for _ in 0..20 {
        let next = m.poll_timeout().unwrap();
        let gap = next - last;
        assert!(gap >= Duration::from_secs(60) && gap < Duration::from_secs(70));
        gaps.insert(gap);
        m.handle_timeout(Instant::from_micros(next.as_micros() - 1_000)); // early: a no-op
        assert!(m.poll_transmit().is_none());
        m.handle_timeout(next);
        assert!(m.poll_transmit().is_some());
        last = next;
    }
    assert!(gaps.len() > 10, "jittered");
    assert_eq!(drain_events(&mut m).len(), 1, "one first-round event");
    assert!(m.leave(b"a"));
    assert!(!m.leave(b"a"));
    assert_eq!(m.poll_timeout(), None);
    m.handle_timeout(last + Duration::from_secs(3600));
    assert!(m.poll_transmit().is_none());
    // And nothing is answered or discovered for it any more.
    m.handle_datagram(
        last,
        addr(2, 5353),
        &query_bytes(&dns_name(&KeyHash::Sha1.key(b"a").unwrap()), TYPE_TXT),
    );
    assert!(m.poll_transmit().is_none());
}

#[test]
fn fixed_interval() {
    let mut cfg = MdnsConfig::new([1; 32], 1);
    cfg.interval = Some(Duration::from_secs(5));
    let mut m = MdnsDiscovery::new(cfg);
    m.join(&b"a"[..], true, 1);
    m.handle_timeout(Instant::ZERO);
    assert_eq!(
        m.poll_timeout(),
        Some(Instant::ZERO + Duration::from_secs(5))
    );
}

#[test]
fn echo_of_our_answer_to_another_host_is_suppressed() {
    // Node only recognises echoes from its own IP; we remember the tokens we handed out.
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query_bytes(UBUNTU, TYPE_TXT));
    let (_, resp) = drain_transmits(&mut m).remove(0);
    // The answer comes back over the LAN from our own (different) address.
    m.handle_datagram(Instant::ZERO, addr(1, 5353), &resp);
    assert!(drain_events(&mut m).is_empty());
    assert_eq!(m.stats().echoes_suppressed, 1);
}

#[test]
fn sender_token_cache_is_bounded_and_echoes_survive_its_emptying() {
    // Node's check: an answer from host X carrying the token we would give X is our own.
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    let echo = |ip: Ipv4Addr| {
        let token = format!("token={}", txt::token(&[1; 32], ip));
        let peers = txt::peers_string(&[SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9)]);
        response_with(UBUNTU, &[token.as_bytes(), peers.as_bytes()])
    };
    let first = Ipv4Addr::new(10, 1, 0, 1);
    // We answered `first` once (handing out the token we give it), long enough ago that the
    // token is no longer remembered: only Node's check still knows it.
    let query = query_bytes(UBUNTU, TYPE_TXT);
    m.handle_datagram(Instant::ZERO, SocketAddr::from((first, 5353)), &query);
    assert_eq!(drain_transmits(&mut m).len(), 1);
    let later = Instant::ZERO + Duration::from_secs(16 * 60);
    m.handle_datagram(later, SocketAddr::from((first, 5353)), &echo(first));
    assert_eq!(m.stats().echoes_suppressed, 1);
    // Many senders, each with a token that is not ours: reported, and the cache stays
    // within its bound.
    let others = 3 * MAX_SENDER_TOKENS as u32;
    let mut reported = 0;
    for i in 0..others {
        let ip = Ipv4Addr::from(0x0b00_0000 + i);
        let not_ours = response_with(
            UBUNTU,
            &[
                b"token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                b"peers=AAAAAAAJ",
            ],
        );
        m.handle_datagram(later, SocketAddr::from((ip, 5353)), &not_ours);
        assert!(m.cached_sender_tokens() <= MAX_SENDER_TOKENS);
        reported += drain_events(&mut m).len();
    }
    m.handle_datagram(later, SocketAddr::from((first, 5353)), &echo(first));
    assert_eq!(m.stats().echoes_suppressed, 2);
    assert!(drain_events(&mut m).is_empty());
    assert_eq!(reported, others as usize);
}

#[test]
fn query_floods_are_rate_limited() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    let q = query_bytes(UBUNTU, TYPE_TXT);
    for _ in 0..1000 {
        m.handle_datagram(Instant::ZERO, addr(2, 5353), &q);
    }
    assert_eq!(drain_transmits(&mut m).len(), 32);
    // Spoofed sources hit the global cap.
    for i in 0..5000u32 {
        let from = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 5353));
        m.handle_datagram(Instant::ZERO, from, &q);
    }
    assert!(drain_transmits(&mut m).len() <= 512);
    assert!(m.stats().rate_limited > 0);
    // Later, legitimate queries are answered again.
    m.handle_datagram(Instant::ZERO + Duration::from_secs(10), addr(3, 5353), &q);
    assert_eq!(drain_transmits(&mut m).len(), 1);
}

/// A response for `name` with TXT strings given raw.
pub(super) fn response_with(name: &str, strings: &[&[u8]]) -> Vec<u8> {
    let mut w = Writer::default();
    w.start(wire::FLAGS_RESPONSE, 0, 1);
    w.txt(name.as_bytes(), strings);
    w.finish().to_vec()
}

#[test]
fn bogus_input_is_ignored_without_panics() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    let now = Instant::ZERO;
    let from = addr(2, 5353);
    let good = response_with(UBUNTU, &[b"token=zz", b"peers=AQIDBBtZ"]);
    // Every truncation of a good packet.
    for cut in 0..good.len() {
        m.handle_datagram(now, from, &good[..cut]);
    }
    // Non-hex and unknown names, odd-length peers, bad base64, IPv6 senders.
    m.handle_datagram(
        now,
        from,
        &response_with("zz-not-hex.dns-discovery.local", &[b"peers=AQIDBBtZ"]),
    );
    m.handle_datagram(now, from, &response_with(UBUNTU, &[b"peers=AQIDBBt"]));
    m.handle_datagram(now, from, &response_with(UBUNTU, &[b"peers=!!!!"]));
    m.handle_datagram(now, "[fe80::1]:5353".parse().unwrap(), &good);
    // Header claiming 65535 of everything.
    m.handle_datagram(
        now,
        from,
        &[0, 0, 0x84, 0, 255, 255, 255, 255, 255, 255, 255, 255],
    );
    assert!(drain_events(&mut m).is_empty());
    assert!(drain_transmits(&mut m).is_empty());
    // The legitimate one still works.
    m.handle_datagram(now, from, &good);
    assert_eq!(drain_events(&mut m).len(), 1);
}

#[test]
fn ten_thousand_bogus_peers_are_capped() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], false, 0);
    // 10,000 entries spread over as many 31-entry strings and records as a datagram holds,
    // then repeated across datagrams.
    let entries: Vec<SocketAddrV4> = (0..10_000u32)
        .map(|i| SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + i), 1 + (i % 60000) as u16))
        .collect();
    let mut w = Writer::default();
    let n = txt::answer_count(entries.len());
    w.start(wire::FLAGS_RESPONSE, 0, n as u16);
    txt::write_peer_answers(&mut w, UBUNTU.as_bytes(), "tok", &entries);
    let big = w.finish();
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &big);
    let events = drain_events(&mut m);
    assert!(
        !events.is_empty() && events.len() <= 128,
        "{}",
        events.len()
    );
    for _ in 0..100 {
        m.handle_datagram(Instant::ZERO, addr(2, 5353), &big);
    }
    assert!(drain_events(&mut m).len() <= 1024);
    assert!(m.stats().dropped > 0);
}

#[test]
fn answers_in_queries_are_read_too() {
    // Known-answer style: a query whose answer section lists a peer.
    let mut w = Writer::default();
    w.start(0, 0, 1);
    w.txt(UBUNTU.as_bytes(), &[b"peers=AQIDBBtZ"]);
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], false, 0);
    let packet = w.finish();
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &packet);
    assert_eq!(drain_events(&mut m).len(), 1);
    let msg = wire::decode(&packet).unwrap();
    assert_eq!(msg.records[0].section, Section::Answer);
}

#[test]
fn repeats_within_five_seconds_are_reported_once() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], false, 0);
    let r = response_with(UBUNTU, &[b"peers=AQIDBBtZ"]);
    let t = Instant::ZERO;
    m.handle_datagram(t, addr(2, 5353), &r);
    m.handle_datagram(t + Duration::from_secs(4), addr(2, 5353), &r);
    assert_eq!(drain_events(&mut m).len(), 1);
    m.handle_datagram(t + Duration::from_secs(10), addr(2, 5353), &r);
    assert_eq!(drain_events(&mut m).len(), 1);
    // Leaving and rejoining reports it afresh.
    m.leave(b"ubuntu-14.04");
    m.join(&b"ubuntu-14.04"[..], false, 0);
    m.handle_datagram(t + Duration::from_secs(11), addr(2, 5353), &r);
    assert_eq!(drain_events(&mut m).len(), 1);
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Bytes produced offline by Node's own encoder (dns-packet 5.6.1 as multicast-dns 7.2.5
/// loads it), building the query and the reply exactly as dns-discovery 6.2.3 does, with
/// secret = 32 bytes of 1 and the querier at 10.0.0.2.
const NODE_QUERY: &str = "00000000000100000000000028333062343131663565663233316533346163633137653030363561386665643264373231313666640d646e732d646973636f76657279056c6f63616c0000100001";
const NODE_RESPONSE: &str = "00008400000100010000000028333062343131663565663233316533346163633137653030363561386665643264373231313666640d646e732d646973636f76657279056c6f63616c000010000128333062343131663565663233316533346163633137653030363561386665643264373231313666640d646e732d646973636f76657279056c6f63616c000010000100000000004232746f6b656e3d554b6c4536506b464d2f43356d6c4d66442b754948704672356d6d74573635336d3878617059567849546f3d0e70656572733d414141414142745a";

#[test]
fn byte_identical_to_nodes_encoder() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    m.handle_timeout(Instant::ZERO);
    let (_, query) = m.poll_transmit().unwrap();
    assert_eq!(&query[..], &unhex(NODE_QUERY)[..]);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query);
    let (_, response) = m.poll_transmit().unwrap();
    assert_eq!(&response[..], &unhex(NODE_RESPONSE)[..]);
    // And Node's response, received from another host, is a peer for a lookup.
    let mut other = engine(3);
    other.join(&b"ubuntu-14.04"[..], false, 0);
    other.handle_datagram(Instant::ZERO, addr(1, 5353), &unhex(NODE_RESPONSE));
    assert_eq!(
        drain_events(&mut other),
        [MdnsEvent::Peer {
            topic: "ubuntu-14.04".into(),
            addr: addr(1, 7001)
        }]
    );
}

#[test]
#[ignore = "prints a 100-entry split answer for checking with Node's decoder by hand"]
fn print_split_answer() {
    let entries: Vec<SocketAddrV4> = (0..100u16)
        .map(|i| SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, i as u8), 1000 + i))
        .collect();
    let mut w = Writer::default();
    w.start(wire::FLAGS_RESPONSE, 0, txt::answer_count(100) as u16);
    txt::write_peer_answers(&mut w, UBUNTU.as_bytes(), "tok", &entries);
    let hex: String = w.finish().iter().map(|b| format!("{b:02x}")).collect();
    println!("{hex}");
}

#[test]
fn same_seed_same_schedule() {
    let run = || {
        let mut m = engine(4);
        m.join(&b"a"[..], true, 1);
        m.join(&b"b"[..], false, 0);
        let mut times = Vec::new();
        for _ in 0..10 {
            let t = m.poll_timeout().unwrap();
            m.handle_timeout(t);
            times.push((t, drain_transmits(&mut m)));
        }
        times
    };
    assert_eq!(run(), run());
}

#[test]
fn twenty_percent_loss_still_converges_within_a_few_rounds() {
    let n = 30u8;
    let mut seg = Segment::new(n, None);
    seg.loss = 20;
    for (i, node) in seg.nodes.iter_mut().enumerate() {
        node.join(&b"shared"[..], true, 7000 + i as u16 + 1);
    }
    let complete = |seg: &Segment| seg.found.iter().all(|f| f.len() == n as usize - 1);
    // A pair is missed in a round only if both the query's and the answer's paths lose
    // it for every querier; with 30 queriers per round that is rare. Bound: 3 rounds.
    let mut rounds = 0;
    while !complete(&seg) {
        assert!(rounds < 3, "not converged after {rounds} rounds");
        let next = seg.now + Duration::from_secs(70);
        seg.advance_to(if rounds == 0 { Instant::ZERO } else { next });
        rounds += 1;
    }
    eprintln!("converged after {rounds} round(s)");
    for (i, f) in seg.found.iter().enumerate() {
        assert!(!f.contains(&addr(i as u8 + 1, 7000 + i as u16 + 1)));
    }
}

quickcheck::quickcheck! {
    /// Whatever we write, we read back the same (names of up to 4 labels, TXT strings).
    fn txt_round_trip(labels: Vec<Vec<u8>>, strings: Vec<Vec<u8>>) -> bool {
        let labels: Vec<Vec<u8>> = labels
            .into_iter()
            .take(4)
            .map(|l| l.into_iter().filter(|&b| b != b'.').take(50).collect::<Vec<u8>>())
            .filter(|l| !l.is_empty())
            .collect();
        let name = labels.join(&b'.');
        let strings: Vec<Vec<u8>> = strings.into_iter().take(8).collect();
        let refs: Vec<&[u8]> = strings.iter().map(|s| &s[..s.len().min(255)]).collect();
        let mut w = Writer::default();
        w.start(wire::FLAGS_RESPONSE, 1, 1);
        w.question(&name, TYPE_TXT, 1);
        w.txt(&name, &refs);
        let bytes = w.finish();
        let Ok(msg) = wire::decode(&bytes) else { return false };
        let RData::Txt(data) = msg.records[0].data else { return false };
        msg.questions[0].name == name
            && msg.records[0].name == name
            && wire::txt_strings(data).eq(refs.iter().copied())
    }

    /// A receiver's decode takes and refuses the same packets as the full one, with the same
    /// records; it keeps a query's questions and only checks a response's. Names run up to
    /// 5 labels of 30-63 bytes, often past the 255-byte limit, and the packet may be cut or have a
    /// byte changed.
    fn decode_received_is_decode_without_response_questions(response: bool, labels: Vec<(u8, u8)>, questions: u8, cut: Option<u16>, poke: Option<(u16, u8)>) -> bool {
        let name: Vec<u8> = labels
            .iter()
            .take(5)
            .map(|&(len, byte)| vec![b'a' + byte % 26; 30 + usize::from(len % 34)])
            .collect::<Vec<_>>()
            .join(&b'.');
        let questions = u16::from(questions % 4);
        let mut w = Writer::default();
        let flags = if response { wire::FLAGS_RESPONSE } else { 0 };
        w.start(flags, questions, 1);
        for _ in 0..questions {
            w.question(&name, TYPE_TXT, 1);
        }
        w.txt(&name, &[b"peers=AAAAABtZ"]);
        let mut bytes = w.finish().to_vec();
        if let Some((at, b)) = poke {
            let at = usize::from(at) % bytes.len();
            bytes[at] = b;
        }
        if let Some(len) = cut {
            bytes.truncate(usize::from(len) % (bytes.len() + 1));
        }
        match (wire::decode(&bytes), wire::decode_received(&bytes)) {
            (Err(a), Err(b)) => a == b,
            (Ok(full), Ok(lean)) => {
                let kept = if full.is_response() { Vec::new() } else { full.questions.clone() };
                let records: Vec<_> = lean.records().map(|r| r.to_owned_names()).collect();
                (full.id, full.flags, &full.records) == (lean.id, lean.flags, &records)
                    && lean.questions == kept
            }
            _ => false,
        }
    }

    /// A record's id read straight from the packet is Node's id of its dotted name: labels
    /// of any bytes (dots too, which Node cannot tell from separators), long ids, few labels,
    /// and a tail reached through a compression pointer.
    fn id_from_the_packet_is_the_id_of_the_dotted_name(labels: Vec<Vec<u8>>, pointed: u8) -> bool {
        // 1-30 bytes each, one in eight a dot, so that ids both fit and overflow 40 bytes.
        let labels: Vec<Vec<u8>> = labels
            .into_iter()
            .take(6)
            .map(|l| {
                let len = l.first().map_or(0, |&b| 1 + usize::from(b) % 30);
                l.iter().map(|&b| if b % 8 == 0 { b'.' } else { b'a' + b % 26 }).take(len).collect::<Vec<u8>>()
            })
            .filter(|l| !l.is_empty())
            .collect();
        // The question holds the whole name; the record's name repeats its first labels and
        // points into the question for the rest.
        let split = usize::from(pointed) % (labels.len() + 1);
        let mut bytes = vec![0, 0, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0];
        let mut label_at = Vec::new();
        for l in &labels {
            label_at.push(bytes.len());
            bytes.push(l.len() as u8);
            bytes.extend_from_slice(l);
        }
        bytes.extend_from_slice(&[0, 0, 16, 0, 1]);
        for l in &labels[..split] {
            bytes.push(l.len() as u8);
            bytes.extend_from_slice(l);
        }
        match label_at.get(split) {
            Some(&at) => bytes.extend_from_slice(&(0xc000 | at as u16).to_be_bytes()),
            None => bytes.push(0),
        }
        bytes.extend_from_slice(&[0, 16, 0, 1, 0, 0, 0, 0, 0, 0]);
        let Ok(msg) = wire::decode_received(&bytes) else {
            // Only a name past 255 bytes is refused.
            return labels.iter().map(|l| l.len() + 1).sum::<usize>() > 256;
        };
        let Some(record) = msg.records().next() else { return false };
        let dotted = record.name.to_name();
        dotted == labels.join(&b'.')
            && engine::id_of(record.name) == engine::id_label(&dotted).and_then(topic::HexId::new)
    }

    /// Arbitrary bytes never panic the decoder or an engine.
    fn arbitrary_bytes_are_harmless(data: Vec<u8>, port: u16) -> bool {
        let _ = wire::decode(&data);
        let _ = wire::decode_received(&data);
        let mut m = engine(1);
        m.join(&b"ubuntu-14.04"[..], true, 7001);
        m.handle_datagram(Instant::ZERO, addr(2, port), &data);
        m.poll_event().is_none() || data.len() > 12
    }
}

/// Answers are read for every joined topic, not only the latest join (which is looked up
/// first), and for none once left.
#[test]
fn answers_for_each_joined_topic_are_read_whichever_joined_last() {
    let a_name = dns_name(&KeyHash::Sha1.key(b"a").unwrap());
    let for_ubuntu = response_with(UBUNTU, &[b"peers=AQIDBBtZ"]);
    let for_a = response_with(&a_name, &[b"peers=AQIDBBtZ"]);
    let topics = |m: &mut MdnsDiscovery| -> Vec<bytes::Bytes> {
        drain_events(m)
            .into_iter()
            .filter_map(|e| match e {
                MdnsEvent::Peer { topic, .. } => Some(topic),
                _ => None,
            })
            .collect()
    };
    let mut m = engine(9);
    m.join(&b"ubuntu-14.04"[..], false, 0);
    m.join(&b"a"[..], false, 0);
    let t = Instant::ZERO;
    m.handle_datagram(t, addr(2, 5353), &for_ubuntu);
    m.handle_datagram(t, addr(2, 5353), &for_a);
    assert_eq!(topics(&mut m), [&b"ubuntu-14.04"[..], &b"a"[..]]);
    assert!(m.leave(b"a"));
    let later = t + Duration::from_secs(10);
    m.handle_datagram(later, addr(2, 5353), &for_a);
    m.handle_datagram(later, addr(2, 5353), &for_ubuntu);
    assert_eq!(topics(&mut m), [&b"ubuntu-14.04"[..]]);
    assert!(m.leave(b"ubuntu-14.04"));
    m.join(&b"a"[..], false, 0);
    let after = t + Duration::from_secs(20);
    m.handle_datagram(after, addr(2, 5353), &for_ubuntu);
    m.handle_datagram(after, addr(2, 5353), &for_a);
    assert_eq!(topics(&mut m), [&b"a"[..]]);
}

/// Names decode up to the wire's 255 bytes (four labels of 63 and their dots), no further.
#[test]
fn names_up_to_255_bytes_decode() {
    let name_of = |labels: usize| -> Vec<u8> {
        let mut packet = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..labels {
            packet.push(63);
            packet.extend_from_slice(&[b'x'; 63]);
        }
        packet.extend_from_slice(&[0, 0, 16, 0, 1]);
        packet
    };
    for (labels, len) in [(1, 63), (2, 127), (3, 191)] {
        let p = name_of(labels);
        let msg = wire::decode(&p).unwrap();
        assert_eq!(msg.questions[0].name.len(), len);
        assert!(msg.questions[0]
            .name
            .iter()
            .all(|&b| b == b'x' || b == b'.'));
    }
    // Four labels of 63 joined by dots are 255 bytes: the longest name; a fifth is too long.
    assert_eq!(
        wire::decode(&name_of(4)).unwrap().questions[0].name.len(),
        255
    );
    assert!(wire::decode(&name_of(5)).is_err());
    assert!(wire::Name::new(&[b'x'; 255]).is_some());
    assert!(wire::Name::new(&[b'x'; 256]).is_none());
}

#[test]
fn a_token_never_handed_out_is_not_looked_up() {
    // Only we know our secret, so a token we never put in an answer is neither one we
    // remember nor the one we would give its sender: no table is read for it.
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    let peers = txt::peers_string(&[SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9)]);
    let answer = response_with(
        UBUNTU,
        &[
            b"token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            peers.as_bytes(),
        ],
    );
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &answer);
    assert_eq!(drain_events(&mut m).len(), 1);
    assert_eq!(m.cached_sender_tokens(), 0);
    // Once we answered host 2, its answers are checked against the token it got from us.
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query_bytes(UBUNTU, TYPE_TXT));
    assert_eq!(drain_transmits(&mut m).len(), 1);
    let echo = |token: String| {
        let token = format!("token={token}");
        response_with(UBUNTU, &[token.as_bytes(), peers.as_bytes()])
    };
    let t6 = Instant::ZERO + Duration::from_secs(6);
    let ours = txt::token(&[1; 32], Ipv4Addr::new(10, 0, 0, 2));
    m.handle_datagram(t6, addr(2, 5353), &echo(ours));
    assert_eq!(m.stats().echoes_suppressed, 1);
    assert!(drain_events(&mut m).is_empty());
}

#[test]
fn repeats_are_dropped_before_the_echo_check() {
    // A busy LAN repeats each peer every second or so; only answers that would report
    // something are checked for our own tokens (which costs two table lookups).
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    let (a, b) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2));
    let listing = |peer: SocketAddrV4| {
        let peers = txt::peers_string(&[peer]);
        response_with(
            UBUNTU,
            &[
                b"token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                peers.as_bytes(),
            ],
        )
    };
    let a_port = SocketAddrV4::new(a, 9);
    let from = |ip: Ipv4Addr| SocketAddr::from((ip, 5353));
    // As if we had once handed that token out: the echo check cannot rule it out at once.
    m.note_handed_out(*b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    m.handle_datagram(Instant::ZERO, from(a), &listing(a_port));
    assert_eq!(drain_events(&mut m).len(), 1);
    assert_eq!(m.cached_sender_tokens(), 1);
    // B lists A too, a second later: a repeat, and B's token is never worked out.
    let t1 = Instant::ZERO + Duration::from_secs(1);
    m.handle_datagram(t1, from(b), &listing(a_port));
    assert!(drain_events(&mut m).is_empty());
    assert_eq!(m.cached_sender_tokens(), 1);
    assert_eq!(m.stats().repeats, 1);
    // Past the repeat window the same answer reports A again, after the echo check.
    let t6 = Instant::ZERO + Duration::from_secs(6);
    m.handle_datagram(t6, from(b), &listing(a_port));
    assert_eq!(drain_events(&mut m).len(), 1);
    assert_eq!(m.cached_sender_tokens(), 2);
}

/// An announcer's answer as every engine writes it: the question echoed, one TXT record.
fn lone_answer(name: &str, strings: &[&[u8]]) -> Vec<u8> {
    let mut w = Writer::default();
    w.start(wire::FLAGS_RESPONSE, 1, 1);
    w.question(name.as_bytes(), TYPE_TXT, 1);
    w.txt(name.as_bytes(), strings);
    w.finish().to_vec()
}

#[test]
fn an_announcers_answer_is_read_without_decoding_it_in_full() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query_bytes(UBUNTU, TYPE_TXT));
    let (_, answer) = drain_transmits(&mut m).pop().expect("an answer");
    let name = wire::WireName::new(UBUNTU.as_bytes()).unwrap();
    let rdata = wire::lone_txt_answer(&answer, &name).expect("the shortcut's shape");
    let msg = wire::decode_received(&answer).unwrap();
    let records: Vec<_> = msg.records().collect();
    assert_eq!(records.len(), 1);
    assert!(matches!(records[0].data, RData::Txt(d) if d == rdata));
    // Another name, or a second record, is left to the full decoder.
    let other = wire::WireName::new(b"ab.dns-discovery.local").unwrap();
    assert!(wire::lone_txt_answer(&answer, &other).is_none());
    let mut two = answer.to_vec();
    two[7] = 2;
    assert!(wire::lone_txt_answer(&two, &name).is_none());
}

/// One answer a LAN might carry: sender, peers listed (ip selector, port), which token,
/// whether the sender queried first (so that we handed it a token), a byte poked, a cut.
type LanAnswer = (
    u8,
    Vec<(u8, u16)>,
    u8,
    bool,
    Option<(u16, u8)>,
    Option<u16>,
    u8,
);

quickcheck::quickcheck! {
    fn the_shortcut_accepts_only_what_the_full_decoder_reads_so(poke: Vec<(u16, u8)>, cut: Option<u16>) -> bool {
        let name = wire::WireName::new(UBUNTU.as_bytes()).unwrap();
        let mut packet = lone_answer(UBUNTU, &[b"token=x", b"peers=AAAAABtZ"]);
        for (at, byte) in poke.into_iter().take(3) {
            // Half the pokes land in the header or the question's first labels.
            let at = usize::from(at);
            let at = if at % 2 == 0 { at / 2 % 32 } else { at % packet.len() };
            packet[at] = byte;
        }
        if let Some(cut) = cut {
            packet.truncate(usize::from(cut) % (packet.len() + 1));
        }
        let Some(rdata) = wire::lone_txt_answer(&packet, &name) else {
            return true;
        };
        let Ok(msg) = wire::decode_received(&packet) else {
            return false;
        };
        let records: Vec<_> = msg.records().collect();
        msg.is_response()
            && records.len() == 1
            && records[0].section == Section::Answer
            && records[0].rtype == TYPE_TXT
            && records[0].name.is(&name)
            && matches!(records[0].data, RData::Txt(d) if d == rdata)
    }

    fn the_shortcut_reads_answers_as_the_full_decoder(answers: Vec<LanAnswer>) -> bool {
        let mut shortcut = engine(1);
        let mut full = engine(1);
        full.decode_in_full();
        for m in [&mut shortcut, &mut full] {
            m.join(&b"ubuntu-14.04"[..], true, 7001);
        }
        let mut now = Instant::ZERO;
        for (sender, peers, token, queried, poke, cut, gap) in answers.into_iter().take(60) {
            now = now + Duration::from_millis(u64::from(gap) * 40);
            let from = addr(2 + sender % 4, 5353);
            let ip = Ipv4Addr::new(10, 0, 0, 2 + sender % 4);
            if queried {
                let q = query_bytes(UBUNTU, TYPE_TXT);
                shortcut.handle_datagram(now, from, &q);
                full.handle_datagram(now, from, &q);
                if drain_transmits(&mut shortcut) != drain_transmits(&mut full) {
                    return false;
                }
            }
            let listed: Vec<SocketAddrV4> = peers
                .iter()
                .take(4)
                .map(|&(i, port)| {
                    let ip = if i % 3 == 0 { Ipv4Addr::UNSPECIFIED } else { Ipv4Addr::new(10, 0, 0, 2 + i % 4) };
                    SocketAddrV4::new(ip, if port % 5 == 0 { 0 } else { 7000 + port % 3 })
                })
                .collect();
            let token = match token % 3 {
                0 => txt::token(&[1; 32], ip), // ours for that sender: an echo if we answered it
                1 => txt::token(&[9; 32], ip), // a stranger's
                _ => String::from("short"),
            };
            let t = format!("token={token}");
            let p = txt::peers_string(&listed);
            let mut packet = lone_answer(UBUNTU, &[t.as_bytes(), p.as_bytes()]);
            if let Some((at, byte)) = poke {
                let len = packet.len();
                packet[usize::from(at) % len] = byte;
            }
            if let Some(cut) = cut {
                packet.truncate(usize::from(cut) % (packet.len() + 1));
            }
            shortcut.handle_datagram(now, from, &packet);
            full.handle_datagram(now, from, &packet);
            if drain_events(&mut shortcut) != drain_events(&mut full)
                || shortcut.stats() != full.stats()
                || drain_transmits(&mut shortcut) != drain_transmits(&mut full)
            {
                return false;
            }
        }
        true
    }
}

#[test]
fn a_record_listing_more_peers_than_a_string_holds_reports_them_all_in_order() {
    // Two `peers` strings in one TXT record (Node never sends this; a record is read whole).
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], false, 0);
    let peer = |i: u16| SocketAddrV4::new(Ipv4Addr::new(10, 9, (i >> 8) as u8, i as u8), 7000 + i);
    let listed: Vec<SocketAddrV4> = (1..=62).map(peer).collect();
    let (a, b) = (
        txt::peers_string(&listed[..31]),
        txt::peers_string(&listed[31..]),
    );
    let answer = lone_answer(UBUNTU, &[b"token=x", a.as_bytes(), b.as_bytes()]);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &answer);
    let reported: Vec<SocketAddr> = drain_events(&mut m)
        .into_iter()
        .map(|e| match e {
            MdnsEvent::Peer { addr, .. } => addr,
            other => panic!("{other:?}"),
        })
        .collect();
    let want: Vec<SocketAddr> = listed.iter().map(|p| SocketAddr::V4(*p)).collect();
    assert_eq!(reported, want);
    // The same answer a second later: every one of them a repeat.
    m.handle_datagram(Instant::from_micros(1_000_000), addr(2, 5353), &answer);
    assert!(drain_events(&mut m).is_empty());
    assert_eq!(m.stats().repeats, 62);
}
