//! One `DhtNode` as a responder, driven by hand-made datagrams, including hostile ones.

use bytes::Bytes;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;
use swarm_core::dht::krpc::{self, Body, Message, Query};
use swarm_core::dht::routing::K;
use swarm_core::dht::{DhtConfig, DhtEvent, DhtNode, NodeId};
use swarm_core::Instant;

const T0: Instant = Instant::ZERO;

fn node() -> DhtNode {
    DhtNode::new(DhtConfig::new(7), T0)
}

fn peer(i: u32) -> SocketAddr {
    SocketAddr::from(([10, 2, (i >> 8) as u8, i as u8], 6881))
}

fn id(i: u32) -> NodeId {
    NodeId::sha1(&i.to_be_bytes())
}

fn query(t: &[u8], from_id: NodeId, q: &Query<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    krpc::emit_query(&mut out, t, &from_id, q);
    out
}

fn transmits(node: &mut DhtNode) -> Vec<(SocketAddr, Bytes)> {
    std::iter::from_fn(|| node.poll_transmit()).collect()
}

/// Sends `data` from `from` and returns the single reply, if any. Our own queries (pings
/// probing questionable contacts before eviction, or verifying the sender as a new contact)
/// are dropped.
fn ask(node: &mut DhtNode, now: Instant, from: SocketAddr, data: &[u8]) -> Option<Bytes> {
    node.handle_datagram(now, from, data);
    let mut out: Vec<Bytes> = transmits(node)
        .into_iter()
        .filter(|(to, b)| *to == from && !matches!(body(b).body, Body::Query { .. }))
        .map(|(_, b)| b)
        .collect();
    assert!(out.len() <= 1, "one reply at most: {out:?}");
    out.pop()
}

fn body(reply: &[u8]) -> Message<'_> {
    krpc::parse(reply).expect("our replies parse")
}

#[test]
fn ping_echoes_t_and_id() {
    let mut n = node();
    let reply = ask(
        &mut n,
        T0,
        peer(1),
        &query(b"\x01\x02\x03", id(1), &Query::Ping),
    )
    .unwrap();
    let msg = body(&reply);
    assert_eq!(msg.t, b"\x01\x02\x03");
    let Body::Response(r) = msg.body else {
        panic!()
    };
    assert_eq!(r.id, n.id());
    assert!(r.nodes.is_empty() && r.token.is_none());
    // The querier joined the routing table.
    assert_eq!(n.table().len(), 1);
}

#[test]
fn find_node_returns_the_k_closest_only() {
    let mut n = node();
    for i in 0..100 {
        ask(&mut n, T0, peer(i), &query(b"aa", id(i), &Query::Ping));
    }
    assert!(n.table().len() > K);
    let target = id(1000);
    let reply = ask(
        &mut n,
        T0,
        peer(500),
        &query(b"bb", id(500), &Query::FindNode { target }),
    )
    .unwrap();
    let Body::Response(r) = body(&reply).body else {
        panic!()
    };
    let got: Vec<NodeId> = krpc::compact_nodes(r.nodes).map(|(id, _)| id).collect();
    assert_eq!(got.len(), K);
    let mut all: Vec<NodeId> = n.table().iter().map(|c| c.id).collect();
    all.sort_by_key(|i| i.distance(&target));
    assert_eq!(got, all[..K]);
    // No amplification: the reply is a few hundred bytes.
    assert!(reply.len() < 300, "{} bytes", reply.len());
}

#[test]
fn announce_then_get_peers_round_trip() {
    let mut n = node();
    let ih = NodeId::sha1(b"topic");
    let from = peer(1);
    let reply = ask(
        &mut n,
        T0,
        from,
        &query(b"g1", id(1), &Query::GetPeers { info_hash: ih }),
    )
    .unwrap();
    let Body::Response(r) = body(&reply).body else {
        panic!()
    };
    let token = r.token.unwrap().to_vec();
    assert!(r.values.is_empty());

    let announce = |port, implied_port, token: &[u8]| {
        query(
            b"a1",
            id(1),
            &Query::AnnouncePeer {
                info_hash: ih,
                port,
                implied_port,
                token,
            },
        )
    };
    // Bad token, port 0 and an out-of-range port get error 203 and store nothing.
    for bad in [
        announce(Some(7000), false, b"nope"),
        announce(Some(0), false, &token),
        announce(Some(70000), false, &token),
        announce(None, false, &token),
    ] {
        let reply = ask(&mut n, T0, from, &bad).unwrap();
        assert!(matches!(body(&reply).body, Body::Error { code: 203, .. }));
    }
    // A token is bound to the IP it was handed to.
    let reply = ask(&mut n, T0, peer(2), &announce(Some(7000), false, &token)).unwrap();
    assert!(matches!(body(&reply).body, Body::Error { code: 203, .. }));
    assert_eq!(n.stored_peers(), 0);

    let reply = ask(&mut n, T0, from, &announce(Some(7000), false, &token)).unwrap();
    assert!(matches!(body(&reply).body, Body::Response(_)));
    // implied_port: the source port wins.
    ask(&mut n, T0, from, &announce(Some(1), true, &token)).unwrap();
    assert_eq!(n.stored_peers(), 2);

    let reply = ask(
        &mut n,
        T0,
        peer(3),
        &query(b"g2", id(3), &Query::GetPeers { info_hash: ih }),
    )
    .unwrap();
    let Body::Response(r) = body(&reply).body else {
        panic!()
    };
    let mut values = r.values.clone();
    values.sort();
    let ip = match from {
        SocketAddr::V4(a) => *a.ip(),
        _ => unreachable!(),
    };
    assert_eq!(
        values,
        [SocketAddrV4::new(ip, 6881), SocketAddrV4::new(ip, 7000)]
    );
    assert!(r.nodes.is_empty(), "values or nodes, not both");

    // Tokens expire after two rotations; peers after 30 minutes.
    let later = T0 + Duration::from_secs(601);
    n.handle_timeout(T0 + Duration::from_secs(300));
    n.handle_timeout(later);
    let reply = ask(&mut n, later, from, &announce(Some(7000), false, &token)).unwrap();
    assert!(matches!(body(&reply).body, Body::Error { code: 203, .. }));
    let expired = T0 + Duration::from_secs(31 * 60);
    n.handle_timeout(expired);
    assert_eq!(n.stored_peers(), 0);
}

#[test]
fn errors_for_bad_queries_and_silence_for_garbage() {
    let mut n = node();
    // Unknown method: 204 (BEP 5; Node stays silent).
    let wire = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q17:sample_infohashes1:t2:xy1:y1:qe";
    let reply = ask(&mut n, T0, peer(1), wire).unwrap();
    let msg = body(&reply);
    assert_eq!(msg.t, b"xy");
    assert!(matches!(msg.body, Body::Error { code: 204, .. }));
    // Missing argument: 203.
    let wire = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q9:find_node1:t2:xy1:y1:qe";
    let reply = ask(&mut n, T0, peer(1), wire).unwrap();
    assert!(matches!(body(&reply).body, Body::Error { code: 203, .. }));
    // A query without `q`, or with `a` of the wrong type: 203 too (a protocol error).
    for wire in [&b"d1:t2:xy1:y1:qe"[..], b"d1:ai1e1:q4:ping1:t2:xy1:y1:qe"] {
        let reply = ask(&mut n, T0, peer(1), wire).unwrap();
        assert!(matches!(body(&reply).body, Body::Error { code: 203, .. }));
    }
    // Garbage, oversized documents, huge `t`, stray responses: no reply.
    let mut huge_t = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t100:".to_vec();
    huge_t.extend_from_slice(&[b'x'; 100]);
    huge_t.extend_from_slice(b"1:y1:qe");
    let deep = [b"l".repeat(5000), b"e".repeat(5000)].concat();
    let long = [b"l".to_vec(), b"i1e".repeat(20_000), b"e".to_vec()].concat();
    let garbage: [&[u8]; 7] = [
        b"",
        b"not bencode",
        b"d1:t2:xy1:y1:xe",
        &huge_t,
        &deep,
        &long,
        b"d1:rd2:id20:aaaaaaaaaaaaaaaaaaaae1:t2:xy1:y1:re",
    ];
    for g in garbage {
        assert!(
            ask(&mut n, T0, peer(2), g).is_none(),
            "{:?}",
            String::from_utf8_lossy(g)
        );
    }
    assert!(n.poll_event().is_none());
    // Neither garbage nor an unsolicited response added anyone to the routing table.
    assert!(n
        .table()
        .iter()
        .all(|c| c.addr != SocketAddrV4::new([10, 2, 0, 2].into(), 6881)));
}

#[test]
fn a_query_flood_from_one_ip_is_rate_limited() {
    let mut n = node();
    let mut replies = 0;
    for i in 0..1000u32 {
        let now = T0 + Duration::from_millis(u64::from(i));
        let from = SocketAddr::from(([10, 9, 9, 9], 1000 + (i % 50) as u16));
        replies +=
            usize::from(ask(&mut n, now, from, &query(b"ff", id(i), &Query::Ping)).is_some());
    }
    // One second at 20/s with a burst of 50.
    assert!((50..=80).contains(&replies), "{replies} replies");
    // Another IP is unaffected.
    assert!(ask(
        &mut n,
        T0 + Duration::from_secs(1),
        peer(1),
        &query(b"ok", id(1), &Query::Ping)
    )
    .is_some());
    // Thousands of fake ids from one IP hold at most a few routing-table slots.
    assert!(n.table().len() <= 5);
}

#[test]
fn replies_only_match_the_address_queried() {
    let mut config = DhtConfig::new(9);
    let boot = peer(1);
    config.bootstrap = vec![boot];
    let mut n = DhtNode::new(config, T0);
    let lookup = n.bootstrap(T0);
    let out = transmits(&mut n);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, boot);
    let sent = body(&out[0].1);
    let t = sent.t.to_vec();
    assert!(matches!(
        sent.body,
        Body::Query {
            query: Query::FindNode { .. },
            ..
        }
    ));
    // The right transaction id from another address is ignored.
    let mut nodes = Vec::new();
    krpc::push_compact_node(
        &mut nodes,
        &id(50),
        SocketAddrV4::new([10, 2, 0, 50].into(), 6881),
    );
    let mut reply = Vec::new();
    krpc::emit_response(&mut reply, &t, &id(1), Some(&nodes), None, &[]);
    n.handle_datagram(T0, peer(66), &reply);
    assert!(transmits(&mut n).is_empty());
    assert!(n.table().is_empty());
    // From the queried address it counts, and the lookup asks the node it learned of.
    n.handle_datagram(T0, boot, &reply);
    assert_eq!(n.table().len(), 1);
    let out = transmits(&mut n);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, SocketAddr::from(([10, 2, 0, 50], 6881)));
    // A replayed reply matches nothing any more.
    n.handle_datagram(T0, boot, &reply);
    assert!(transmits(&mut n).is_empty());
    // The second query times out after 2 s, once, without retransmission; the lookup ends.
    assert_eq!(n.poll_timeout(), Some(T0 + Duration::from_secs(2)));
    n.handle_timeout(T0 + Duration::from_millis(1999));
    assert!(n.poll_event().is_none());
    n.handle_timeout(T0 + Duration::from_secs(2));
    assert!(transmits(&mut n).is_empty());
    assert_eq!(
        n.poll_event(),
        Some(DhtEvent::LookupDone {
            lookup,
            target: n.id(),
            responded: 1
        })
    );
    assert_eq!(n.in_flight(), 0);
}

#[test]
fn announce_without_nodes_fails_cleanly() {
    let mut n = node();
    let l = n.announce(T0, NodeId::sha1(b"x"), 7000, false);
    assert!(transmits(&mut n).is_empty());
    assert_eq!(
        n.poll_event(),
        Some(DhtEvent::AnnounceDone {
            lookup: l,
            info_hash: NodeId::sha1(b"x"),
            acked: 0
        })
    );
}

#[test]
fn lookups_beyond_the_cap_fail_at_once() {
    let mut config = DhtConfig::new(3);
    config.bootstrap = vec![peer(1)];
    let mut n = DhtNode::new(config, T0);
    for i in 0..swarm_core::dht::MAX_LOOKUPS as u32 {
        n.get_peers(T0, id(i));
    }
    assert!(n.poll_event().is_none());
    let over = n.get_peers(T0, id(1_000_000));
    assert_eq!(
        n.poll_event(),
        Some(DhtEvent::LookupDone {
            lookup: over,
            target: id(1_000_000),
            responded: 0
        })
    );
    // Nobody answers: 64 queries in flight at a time, each failing after 2 s, so every
    // lookup ends after 16 rounds without the node ever exceeding its in-flight cap.
    let mut done = 0;
    for round in 1..=16 {
        assert!(n.in_flight() <= 64);
        n.handle_timeout(T0 + Duration::from_secs(2 * round));
        done += std::iter::from_fn(|| n.poll_event()).count();
    }
    assert_eq!(done, swarm_core::dht::MAX_LOOKUPS);
    // Only the quiet re-bootstrap (the table is still empty) is left.
    assert!(n.in_flight() <= 1);
}
