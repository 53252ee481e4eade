//! Property tests through the public API (the modules hold more: handshake chunking vs a
//! one-shot decode, bencode and uTP header round trips, TXT round trips, parsers fed
//! arbitrary bytes). Here: every KRPC query kind, compact node infos, whole mDNS packets,
//! handshakes followed by payload under arbitrary chunking, and the duplicate rule against a
//! literal model of Node's code.

use core::cmp::Ordering;
use quickcheck::{quickcheck, Arbitrary, Gen, TestResult};
use std::net::{Ipv4Addr, SocketAddrV4};
use swarm_core::dedup::{compare_ids, new_replaces_old, Side};
use swarm_core::dht::krpc::{self, Body, Query, MAX_T_LEN};
use swarm_core::dht::NodeId;
use swarm_core::handshake::{encode_handshake, HandshakeDecoder, Progress};
use swarm_core::mdns::wire::{self, RData, Writer, CLASS_IN, FLAGS_RESPONSE, TYPE_A, TYPE_SRV};
use swarm_core::Transport;

#[derive(Clone, Debug)]
struct Id(NodeId);

impl Arbitrary for Id {
    fn arbitrary(g: &mut Gen) -> Self {
        let mut id = [0u8; 20];
        for b in &mut id {
            *b = u8::arbitrary(g);
        }
        Id(NodeId(id))
    }
}

/// A transaction id of 1..=MAX_T_LEN bytes.
fn tid(t: Vec<u8>) -> Vec<u8> {
    let mut t: Vec<u8> = t.into_iter().take(MAX_T_LEN).collect();
    if t.is_empty() {
        t.push(0);
    }
    t
}

/// Node's rule (discovery-swarm 6.1.0 `onhandshake`), transcribed with hex strings: `true`
/// when the new connection survives and the old one is dropped.
fn node_rule(
    old: Side,
    new: Side,
    remote: &[u8],
    local: &[u8],
    key: Option<&[u8]>,
    keep: bool,
) -> bool {
    let hex = |id: &[u8]| {
        let mut s: String = id.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(k) = key {
            s.push('@');
            s.extend(k.iter().map(|b| format!("{b:02x}")));
        }
        s
    };
    let (remote_hex, id_hex) = (hex(remote), hex(local));
    if keep {
        return false;
    }
    let (utp, tcp) = (Transport::Utp, Transport::Tcp);
    if !(old.transport == utp && new.transport == tcp) {
        let peer = new.initiator;
        if (peer && remote_hex < id_hex)
            || (!peer && remote_hex > id_hex)
            || (new.transport == utp && old.transport == tcp)
        {
            return false;
        }
    }
    true
}

fn side(utp: bool, initiator: bool) -> Side {
    let transport = if utp { Transport::Utp } else { Transport::Tcp };
    Side {
        transport,
        initiator,
    }
}

quickcheck! {
    /// The duplicate rule is Node's, for any ids, keys, transports, directions and setting.
    fn duplicate_rule_matches_node(
        sides: (bool, bool, bool, bool),
        remote: Vec<u8>,
        local: Vec<u8>,
        key: Option<Vec<u8>>,
        keep: bool
    ) -> bool {
        let (old, new) = (side(sides.0, sides.1), side(sides.2, sides.3));
        let ord = compare_ids(&remote, &local, key.as_deref());
        new_replaces_old(old, new, ord, keep)
            == node_rule(old, new, &remote, &local, key.as_deref(), keep)
    }

    /// Both ends of a crossed pair (same transport) keep the same connection.
    fn both_ends_agree(a: Vec<u8>, b: Vec<u8>, utp: bool, a_dial_first_at_a: bool, first_at_b: bool) -> TestResult {
        let ord_ab = compare_ids(&b, &a, None);
        if ord_ab == Ordering::Equal {
            return TestResult::discard();
        }
        // Connection X: dialled by A. Connection Y: dialled by B. Each end registers one
        // first; the rule picks the survivor.
        let survivor = |ord: Ordering, x_is_mine: bool, x_first: bool| {
            let (x, y) = (side(utp, x_is_mine), side(utp, !x_is_mine));
            let (old, new, new_is_x) = if x_first { (x, y, false) } else { (y, x, true) };
            let new_wins = new_replaces_old(old, new, ord, false);
            new_wins == new_is_x // true: X survives
        };
        let at_a = survivor(ord_ab, true, a_dial_first_at_a);
        let at_b = survivor(ord_ab.reverse(), false, first_at_b);
        TestResult::from_bool(at_a == at_b)
    }

    /// Every query kind parses back to what was emitted.
    fn krpc_queries_round_trip(
        t: Vec<u8>, id: Id, target: Id, kind: u8, port: Option<u16>, implied: bool, token: Vec<u8>
    ) -> bool {
        let t = tid(t);
        let token: Vec<u8> = token.into_iter().take(64).collect();
        let query = match kind % 4 {
            0 => Query::Ping,
            1 => Query::FindNode { target: target.0 },
            2 => Query::GetPeers { info_hash: target.0 },
            _ => Query::AnnouncePeer {
                info_hash: target.0,
                port: Some(i64::from(port.unwrap_or(0))),
                implied_port: implied,
                token: &token,
            },
        };
        let mut out = Vec::new();
        krpc::emit_query(&mut out, &t, &id.0, &query);
        let Ok(msg) = krpc::parse(&out) else { return false };
        msg.t == &t[..]
            && msg.body == Body::Query { id: id.0, read_only: false, query: query.clone() }
    }

    /// Compact node infos come back in order (entries with port 0 are skipped, as Node
    /// does).
    fn compact_nodes_round_trip(nodes: Vec<(Id, u32, u16)>) -> bool {
        let mut out = Vec::new();
        for (id, ip, port) in &nodes {
            krpc::push_compact_node(&mut out, &id.0, SocketAddrV4::new((*ip).into(), *port));
        }
        let nodes: Vec<_> = nodes.into_iter().filter(|n| n.2 != 0).collect();
        let back: Vec<_> = krpc::compact_nodes(&out).collect();
        back.len() == nodes.len()
            && back.iter().zip(&nodes).all(|((id, addr), (want, ip, port))| {
                *id == want.0 && *addr == SocketAddrV4::new((*ip).into(), *port)
            })
    }

    /// A whole dns-discovery answer (question, A, SRV and TXT records) decodes to what was
    /// written.
    fn mdns_answer_round_trip(label: Vec<u8>, ip: u32, port: u16, txt: Vec<Vec<u8>>) -> bool {
        let label: Vec<u8> = label.into_iter().filter(|b| *b != b'.').take(40).collect();
        let name = if label.is_empty() { b"x.local".to_vec() } else { [&label[..], b".local"].concat() };
        let ip = Ipv4Addr::from(ip);
        let strings: Vec<&[u8]> = txt.iter().take(6).map(|s| &s[..s.len().min(200)]).collect();
        let mut w = Writer::default();
        w.start(FLAGS_RESPONSE, 1, 3);
        w.question(&name, TYPE_SRV, CLASS_IN);
        w.a(&name, ip);
        w.srv(&name, port, ip);
        w.txt(&name, &strings);
        let bytes = w.finish();
        let Ok(msg) = wire::decode(&bytes) else { return false };
        let [a, srv, t] = &msg.records[..] else { return false };
        msg.is_response()
            && msg.questions.len() == 1
            && msg.questions[0].name == name
            && a.rtype == TYPE_A
            && a.data == RData::A(ip)
            && matches!(&srv.data, RData::Srv { port: p, .. } if *p == port)
            && matches!(t.data, RData::Txt(d) if wire::txt_strings(d).eq(strings.iter().copied()))
    }

    /// A handshake followed by payload, cut anywhere: the decoder yields the id and stops
    /// exactly at the payload.
    fn handshake_then_payload_any_chunking(id: Vec<u8>, payload: Vec<u8>, cuts: Vec<u8>) -> TestResult {
        if id.is_empty() || id.len() > 64 {
            return TestResult::discard();
        }
        let mut wire = encode_handshake(&id).to_vec();
        let boundary = wire.len();
        wire.extend_from_slice(&payload);
        let mut decoder = HandshakeDecoder::new(64);
        let mut offset = 0;
        let mut sizes = cuts.iter().map(|c| 1 + usize::from(*c % 9)).chain(core::iter::repeat(usize::MAX));
        loop {
            let size = sizes.next().unwrap_or(usize::MAX).min(wire.len() - offset);
            match decoder.feed(&wire[offset..offset + size]) {
                Ok(Progress::Complete { consumed }) => {
                    return TestResult::from_bool(
                        offset + consumed == boundary && decoder.take_id() == id,
                    );
                }
                Ok(Progress::NeedMore) if offset + size < wire.len() => offset += size,
                _ => return TestResult::failed(),
            }
        }
    }
}
