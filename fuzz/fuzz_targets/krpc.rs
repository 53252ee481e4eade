//! Arbitrary datagrams into the bencode and KRPC parsers and into a `DhtNode`, mixed with
//! well-formed replies to the node's own queries so lookups and announces make progress.
//! Checks: accepted bencode re-encodes to the same bytes, every datagram the node sends
//! parses, memory stays within its caps, and bytes read as a saved DHT state (`--dht-state`)
//! are rejected or read back exactly.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;
use swarm_core::dht::bencode::{self, Limits};
use swarm_core::dht::krpc::{self, Body};
use swarm_core::dht::routing::K;
use swarm_core::dht::{DhtConfig, DhtNode, DhtState, NodeId};
use swarm_core::Instant;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes from one of 256 addresses.
    Datagram(u8, Vec<u8>),
    /// A reply to the n-th most recent query we sent, from its address (or a wrong one).
    Reply {
        which: u8,
        wrong_addr: bool,
        id: u8,
        nodes: Vec<(u8, u8, u16)>,
        values: Vec<(u8, u16)>,
        token: Option<Vec<u8>>,
    },
    /// An error reply to the n-th most recent query.
    ErrorReply(u8, i64),
    Advance(u16),
    GetPeers(u8),
    Announce(u8, u16, bool),
    Bootstrap,
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 3, i / 16, i % 16 + 1], 6881 + u16::from(i % 3)))
}

fn id(i: u8) -> NodeId {
    NodeId::sha1(&[i])
}

fn check_bencode(data: &[u8]) {
    if let Ok(v) = bencode::parse(data, Limits::KRPC) {
        let mut out = Vec::new();
        bencode::emit(&v, &mut out);
        assert_eq!(out, data, "accepted bencode is canonical");
    }
}

fuzz_target!(|input: (u64, Vec<Op>)| {
    let (seed, ops) = input;
    let mut config = DhtConfig::new(seed);
    config.bootstrap = vec![addr(0), addr(1)];
    let mut node = DhtNode::new(config, Instant::ZERO);
    let mut now = Instant::ZERO;
    // Queries we sent: (to, t).
    let mut sent: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    for op in ops.into_iter().take(256) {
        match op {
            Op::Datagram(from, data) => {
                check_bencode(&data);
                let _ = krpc::parse(&data);
                // The same bytes as a saved state file: rejected or read back exactly.
                if let Ok(state) = DhtState::decode(&data) {
                    assert_eq!(DhtState::decode(&state.encode()), Ok(state));
                }
                node.handle_datagram(now, addr(from), &data);
            }
            Op::Reply {
                which,
                wrong_addr,
                id: rid,
                nodes,
                values,
                token,
            } => {
                if sent.is_empty() {
                    continue;
                }
                let (to, t) = sent[sent.len() - 1 - usize::from(which) % sent.len()].clone();
                let mut compact = Vec::new();
                for (nid, a, port) in nodes.into_iter().take(32) {
                    let SocketAddr::V4(v4) = addr(a) else {
                        continue;
                    };
                    krpc::push_compact_node(
                        &mut compact,
                        &id(nid),
                        SocketAddrV4::new(*v4.ip(), port),
                    );
                }
                let values: Vec<SocketAddrV4> = values
                    .into_iter()
                    .take(64)
                    .map(|(a, port)| match addr(a) {
                        SocketAddr::V4(v4) => SocketAddrV4::new(*v4.ip(), port),
                        SocketAddr::V6(_) => unreachable!(),
                    })
                    .collect();
                let mut out = Vec::new();
                krpc::emit_response(
                    &mut out,
                    &t,
                    &id(rid),
                    Some(&compact),
                    token.as_deref(),
                    &values,
                );
                let from = if wrong_addr { addr(rid) } else { to };
                node.handle_datagram(now, from, &out);
            }
            Op::ErrorReply(which, code) => {
                if sent.is_empty() {
                    continue;
                }
                let (to, t) = sent[sent.len() - 1 - usize::from(which) % sent.len()].clone();
                let mut out = Vec::new();
                krpc::emit_error(&mut out, &t, code, b"no");
                node.handle_datagram(now, to, &out);
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(ms) * 10);
                node.handle_timeout(now);
            }
            Op::GetPeers(h) => {
                node.get_peers(now, id(h));
            }
            Op::Announce(h, port, implied) => {
                node.announce(now, id(h), port, implied);
            }
            Op::Bootstrap => {
                node.bootstrap(now);
            }
        }
        while let Some((to, data)) = node.poll_transmit() {
            let msg = krpc::parse(&data).expect("the node sends valid KRPC");
            assert!(data.len() < 1500, "{} byte datagram", data.len());
            if let Body::Query { .. } = &msg.body {
                sent.push((to, msg.t.to_vec()));
            }
        }
        if sent.len() > 4096 {
            sent.drain(..2048);
        }
        while node.poll_event().is_some() {}
        assert!(node.table().len() <= 160 * K);
        assert!(
            node.in_flight() <= 64 + 160 + 64 * K,
            "{} in flight",
            node.in_flight()
        );
    }
});
