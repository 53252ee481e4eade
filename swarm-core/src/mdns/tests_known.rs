//! Known-answer suppression (`known`): what a query lists, who stays silent, and that Node's
//! queries and decoders are unaffected.

use super::tests::{addr, drain_events, drain_transmits, engine, query_bytes, Segment, UBUNTU};
use super::wire::{self, RData, Section, Writer, TYPE_NULL, TYPE_TXT};
use super::*;
use crate::time::Instant;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("every address here is IPv4"),
    }
}

/// A query for `name` whose answer section lists `known`.
fn query_listing(name: &str, known: &[SocketAddr]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for a in known {
        let a = v4(*a);
        rdata.extend_from_slice(&a.ip().octets());
        rdata.extend_from_slice(&a.port().to_be_bytes());
    }
    let mut w = Writer::default();
    w.start(0, 1, 1);
    w.question(name.as_bytes(), TYPE_TXT, 1);
    w.null(name.as_bytes(), &rdata);
    w.finish().to_vec()
}

/// The addresses a query lists as known.
fn listed(query: &[u8]) -> Vec<SocketAddr> {
    let msg = wire::decode(query).unwrap();
    let mut out = Vec::new();
    for r in &msg.records {
        if let RData::Null(data) = r.data {
            assert_eq!((r.section, r.rtype, r.ttl), (Section::Answer, TYPE_NULL, 0));
            for e in data.chunks_exact(6) {
                let ip = Ipv4Addr::new(e[0], e[1], e[2], e[3]);
                out.push(SocketAddr::from((ip, u16::from_be_bytes([e[4], e[5]]))));
            }
        }
    }
    out.sort();
    out
}

/// `n` hosts on one LAN announcing `topic` (host `i` on port 7001 + `i`), after their first
/// round.
fn announcing(n: u8, topic: &[u8]) -> Segment {
    let mut seg = Segment::new(n, None);
    for (i, node) in seg.nodes.iter_mut().enumerate() {
        node.join(topic.to_vec(), true, 7000 + i as u16 + 1);
    }
    seg.advance_to(Instant::ZERO);
    seg
}

/// Runs the round of node `i` alone and returns its query.
fn next_query(seg: &mut Segment, i: usize) -> Vec<u8> {
    let at = seg.nodes[i].poll_timeout().unwrap();
    seg.now = seg.now.max(at);
    seg.nodes[i].handle_timeout(seg.now);
    let out = drain_transmits(&mut seg.nodes[i]);
    assert_eq!(out.len(), 1);
    out[0].1.to_vec()
}

#[test]
fn a_query_lists_the_peers_heard_within_a_round_and_they_stay_silent() {
    let n = 10u8;
    let mut seg = announcing(n, b"shared");
    // The first round: n queries listing nobody, each answered by every announcer.
    assert_eq!(seg.sent, n as usize + n as usize * n as usize);
    let query = next_query(&mut seg, 0);
    let others: Vec<SocketAddr> = (2..=n).map(|j| addr(j, 7000 + u16::from(j))).collect();
    assert_eq!(listed(&query), others, "everyone but itself");
    // Delivered to the segment: only the querier's own answer goes out.
    let sent = seg.sent;
    for node in seg.nodes.iter_mut() {
        node.handle_datagram(seg.now, addr(1, 5353), &query);
    }
    let answers: usize = seg.nodes.iter_mut().map(|m| drain_transmits(m).len()).sum();
    assert_eq!(answers, 1, "the self-answer alone");
    assert_eq!(seg.sent, sent);
    let suppressed: u64 = seg.nodes.iter().map(|m| m.stats().answers_suppressed).sum();
    assert_eq!(suppressed, u64::from(n) - 1);
}

#[test]
fn a_busy_lan_sends_two_datagrams_a_host_a_round_and_still_reports_everyone() {
    let n = 50u8;
    let mut seg = announcing(n, b"shared");
    let first = seg.sent;
    // Ten more rounds of every host (60-70 s apart, as Node draws them).
    seg.advance_to(Instant::ZERO + Duration::from_secs(10 * 70));
    let rounds = seg.sent - first;
    // A query and its self-answer per host and round, where Node's protocol sends n + 1.
    let queries: u64 = seg.nodes.iter().map(|m| m.stats().queries_sent).sum();
    let later = (queries - u64::from(n)) as usize;
    assert!(later >= 10 * n as usize, "{later} rounds");
    assert!(
        rounds <= 2 * later + 2 * n as usize,
        "{rounds} datagrams for {later} queries"
    );
    // Everyone still hears everyone at least once a round interval.
    for i in 0..n as usize {
        assert_eq!(seg.found[i].len(), n as usize - 1);
        assert!(seg.peer_events[i] >= 10 * (n as usize - 1), "node {i}");
    }
}

#[test]
fn a_peer_not_heard_for_a_round_interval_is_listed_no_more() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], false, 0);
    let answer = super::tests::response_with(UBUNTU, &[b"peers=AQIDBBtZ"]);
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &answer);
    assert_eq!(drain_events(&mut m).len(), 1);
    m.handle_timeout(Instant::ZERO);
    let peer = SocketAddr::from(([1, 2, 3, 4], 7001));
    assert_eq!(listed(&drain_transmits(&mut m)[0].1), [peer]);
    // Heard 74 s ago: still listed (a round is at most 70 s, plus 5 s of margin).
    let late = Instant::ZERO + Duration::from_secs(74);
    m.handle_timeout(late);
    let q = drain_transmits(&mut m);
    assert_eq!(listed(&q[0].1), [peer]);
    // Not heard since: the next round lists nobody, a query of the Node form.
    let later = m.poll_timeout().unwrap();
    m.handle_timeout(later);
    let q = drain_transmits(&mut m);
    assert!(listed(&q[0].1).is_empty());
    assert_eq!(q[0].1.len(), 78);
}

#[test]
fn only_our_own_address_and_port_silence_us() {
    let mut m = engine(1);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    // Our address is learnt from the echo of our first answer.
    m.handle_datagram(Instant::ZERO, addr(2, 5353), &query_bytes(UBUNTU, TYPE_TXT));
    let (_, answer) = drain_transmits(&mut m).remove(0);
    m.handle_datagram(Instant::ZERO, addr(1, 5353), &answer);
    let t = Instant::ZERO + Duration::from_secs(10);
    for (known, silent) in [
        (vec![addr(1, 7002), addr(3, 7001)], false),
        (vec![addr(3, 7001), addr(1, 7001)], true),
        (vec![], false),
    ] {
        m.handle_datagram(t, addr(2, 5353), &query_listing(UBUNTU, &known));
        assert_eq!(drain_transmits(&mut m).is_empty(), silent, "{known:?}");
    }
    // Another topic's list does not silence this one.
    let other = "0000000000000000000000000000000000000000.dns-discovery.local";
    let mut w = Writer::default();
    w.start(0, 1, 1);
    w.question(UBUNTU.as_bytes(), TYPE_TXT, 1);
    w.null(other.as_bytes(), &[10, 0, 0, 1, 0x1b, 0x59]);
    m.handle_datagram(t, addr(2, 5353), &w.finish());
    assert_eq!(drain_transmits(&mut m).len(), 1);
    assert_eq!(m.stats().answers_suppressed, 1);
}

#[test]
fn a_configured_local_address_silences_us_before_any_echo() {
    let mut cfg = MdnsConfig::new([1; 32], 1);
    cfg.local_ip = Some(Ipv4Addr::new(10, 0, 0, 1));
    let mut m = MdnsDiscovery::new(cfg);
    m.join(&b"ubuntu-14.04"[..], true, 7001);
    m.handle_datagram(
        Instant::ZERO,
        addr(2, 5353),
        &query_listing(UBUNTU, &[addr(1, 7001)]),
    );
    assert!(drain_transmits(&mut m).is_empty());
}

#[test]
fn a_listing_query_is_still_a_well_formed_dns_message() {
    let mut seg = announcing(3, b"ubuntu-14.04");
    let query = next_query(&mut seg, 0);
    assert_eq!(listed(&query), [addr(2, 7002), addr(3, 7003)]);
    // The question is Node's, byte for byte; the list follows it as one NULL answer.
    let node_query = query_bytes(UBUNTU, TYPE_TXT);
    assert_eq!(&query[12..78], &node_query[12..]);
    assert_eq!(&query[..12], &[0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    let p = simple_dns::Packet::parse(&query).unwrap();
    assert_eq!((p.questions.len(), p.answers.len()), (1, 1));
    // A reader that takes a query's answers as announcements (as Node's dns-discovery does,
    // TXT and SRV only) finds none in it.
    let mut reader = engine(9);
    reader.join(&b"ubuntu-14.04"[..], false, 0);
    reader.handle_datagram(seg.now, addr(1, 5353), &query);
    assert!(drain_events(&mut reader).is_empty());
}

/// The bytes of node 1's second query on a LAN of three, as `interop/node/known-answers.js`
/// feeds them to Node's decoder and dns-discovery.
const LISTING_QUERY_HEX: &str = concat!(
    "000000000001000100000000",
    "28333062343131663565663233316533346163633137653030363561386665643264373231313666640d646e732d646973636f76657279056c6f63616c00",
    "00100001",
    "28333062343131663565663233316533346163633137653030363561386665643264373231313666640d646e732d646973636f76657279056c6f63616c00",
    "000a000100000000000c",
    "0a0000031b5b0a0000021b5a",
);

#[test]
fn listing_query_golden_bytes() {
    let mut seg = announcing(3, b"ubuntu-14.04");
    let query = next_query(&mut seg, 0);
    let hex: String = query.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, LISTING_QUERY_HEX);
}
