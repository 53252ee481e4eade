//! The swarm's shared UDP port with uTP on (PROTOCOLS.md 1.11): what goes to uTP, KRPC and
//! DNS, and what is answered or dropped.

#[path = "support_utp/mod.rs"]
mod net;

use bytes::Bytes;
use net::*;
use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::{Input, Instant, Output, Swarm, UdpSocket};

fn transmits(s: &mut Swarm) -> Vec<(SocketAddr, Bytes)> {
    std::iter::from_fn(|| s.poll_output())
        .filter_map(|o| match o {
            Output::Transmit {
                socket: UdpSocket::Swarm,
                to,
                data,
            } => Some((to, data)),
            _ => None,
        })
        .collect()
}

fn datagram(s: &mut Swarm, now: Instant, from: SocketAddr, data: &[u8]) {
    let socket = UdpSocket::Swarm;
    s.handle_input(now, Input::Datagram { socket, from, data });
}

fn utp_swarm_with_dht() -> (Swarm, Instant) {
    let c = config(0, false, true).with_dht(vec![addr(9)]);
    let mut s = Swarm::new(c).unwrap();
    let now = Instant::from_micros(1_000_000);
    s.handle_input(now, Input::Listening { port: 7000 });
    transmits(&mut s);
    (s, now)
}

#[test]
fn krpc_on_the_shared_port_reaches_the_dht_with_utp_on() {
    let (mut s, now) = utp_swarm_with_dht();
    let stranger = addr(5);
    let mut ping = b"d1:ad2:id20:".to_vec();
    ping.extend_from_slice(&[7u8; 20]);
    ping.extend_from_slice(b"e1:q4:ping1:t2:aa1:y1:qe");
    datagram(&mut s, now, stranger, &ping);
    // The reply, and the DHT's ping verifying its new contact.
    let out = transmits(&mut s);
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(out.iter().all(|(to, _)| *to == stranger));
    assert!(
        out.iter().any(|(_, d)| d.starts_with(b"d1:rd2:id20:")),
        "a KRPC reply"
    );
    assert!(
        out.iter()
            .any(|(_, d)| d.windows(6).any(|w| w == b"4:ping")),
        "a ping"
    );
}

#[test]
fn utp_shaped_leftovers_get_one_rate_limited_reset() {
    let (mut s, now) = utp_swarm_with_dht();
    let stranger = addr(5);
    // ST_DATA (type 0, version 1) for a connection id nobody uses.
    let mut data = vec![0x01, 0, 0x12, 0x34];
    data.extend_from_slice(&[0; 12]);
    data.extend_from_slice(&[0x00, 0x05, 0x00, 0x01]);
    data.extend_from_slice(b"payload");
    datagram(&mut s, now, stranger, &data);
    let out = transmits(&mut s);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1[0], 0x31, "ST_RESET");
    assert_eq!(&out[0].1[2..4], &[0x12, 0x34]);
    datagram(&mut s, now + Duration::from_secs(1), stranger, &data);
    assert!(
        transmits(&mut s).is_empty(),
        "the same packet again within 10 s: no RST"
    );
}

#[test]
fn datagrams_that_are_neither_utp_krpc_nor_dns_are_dropped_silently() {
    let (mut s, now) = utp_swarm_with_dht();
    for junk in [
        &b"d-not-bencode"[..],
        b"",
        b"\x64\x01\x02",
        &[0x41, 0x07, 0, 0],
    ] {
        datagram(&mut s, now, addr(5), junk);
    }
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn a_swarm_without_utp_ignores_syns() {
    let c = config(0, true, false);
    let mut s = Swarm::new(c).unwrap();
    let now = Instant::from_micros(1_000_000);
    s.handle_input(now, Input::Listening { port: 7000 });
    let mut syn = vec![0x41, 0, 0x45, 0x67];
    syn.extend_from_slice(&[0; 12]);
    syn.extend_from_slice(&[0x23, 0xc6, 0, 0]);
    datagram(&mut s, now, addr(5), &syn);
    assert!(transmits(&mut s).is_empty());
    assert_eq!(s.connecting(), 0);
}

#[test]
fn an_inbound_syn_is_a_handshaking_connection_at_once() {
    let (mut s, now) = utp_swarm_with_dht();
    let mut syn = vec![0x41, 0, 0x45, 0x67];
    syn.extend_from_slice(&[0; 8]);
    syn.extend_from_slice(&(1u32 << 20).to_be_bytes());
    syn.extend_from_slice(&[0x23, 0xc6, 0, 0]);
    datagram(&mut s, now, addr(5), &syn);
    assert_eq!(s.connecting(), 1);
    let out: Vec<_> = transmits(&mut s)
        .into_iter()
        .filter(|(to, _)| *to == addr(5))
        .collect();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].1[0], 0x21, "ST_STATE answers the SYN");
    assert_eq!(&out[0].1[2..4], &[0x45, 0x67]);
    // Nobody follows up: the 5 s handshake timer ends it.
    s.handle_timeout(now + Duration::from_secs(6));
    assert_eq!(s.connecting(), 0);
}

#[test]
fn a_syn_flood_holds_at_most_the_half_open_cap_and_drains() {
    let (mut s, now) = utp_swarm_with_dht();
    for i in 0..10_000u32 {
        let from = SocketAddr::from(([10, 9, (i >> 8) as u8, i as u8], 5000));
        let mut syn = vec![0x41, 0];
        syn.extend_from_slice(&(i as u16).to_be_bytes());
        syn.extend_from_slice(&[0; 12]);
        syn.extend_from_slice(&[0, 1, 0, 0]);
        datagram(&mut s, now, from, &syn);
    }
    // One small state per admitted SYN, capped; the rest dropped silently.
    assert!(s.connecting() <= 64, "{} half-open", s.connecting());
    let answers = transmits(&mut s).len();
    assert!(answers <= 64 + 8, "{answers} datagrams for 10,000 SYNs");
    // Nobody follows up: every one goes at its handshake timeout.
    s.handle_timeout(now + Duration::from_secs(11));
    assert_eq!(s.connecting(), 0);
}
