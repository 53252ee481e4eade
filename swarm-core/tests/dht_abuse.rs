//! Abuse rules of issue 4 not covered by `dht_responder.rs`: routing-table poisoning from
//! thousands of addresses, error replies that must never be answered, and reply sizes.

use std::net::SocketAddr;
use std::time::Duration;
use swarm_core::dht::krpc::{self, Body, Query};
use swarm_core::dht::routing::K;
use swarm_core::dht::{DhtConfig, DhtNode, NodeId};
use swarm_core::Instant;

const T0: Instant = Instant::ZERO;

fn query(t: &[u8], from_id: NodeId, q: &Query<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    krpc::emit_query(&mut out, t, &from_id, q);
    out
}

fn drain(node: &mut DhtNode) -> Vec<(SocketAddr, bytes::Bytes)> {
    std::iter::from_fn(|| node.poll_transmit()).collect()
}

#[test]
fn poisoning_with_thousands_of_fake_ids_keeps_memory_and_replies_bounded() {
    let mut n = DhtNode::new(DhtConfig::new(11), T0);
    let own = n.id();
    let mut max_reply = 0;
    let mut max_query = 0;
    for i in 0..20_000u32 {
        // Ids crafted close to ours (the bucket an attacker wants to own), each from its
        // own address so the per-IP limits do not apply.
        let mut fake = own;
        fake.0[19] ^= (i as u8) | 1;
        fake.0[18] ^= (i >> 8) as u8;
        fake.0[17] ^= (i >> 16) as u8;
        let from = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881));
        let now = T0 + Duration::from_millis(u64::from(i));
        let q = query(b"aa", fake, &Query::FindNode { target: own });
        max_query = max_query.max(q.len());
        n.handle_datagram(now, from, &q);
        for (_, reply) in drain(&mut n) {
            max_reply = max_reply.max(reply.len());
        }
    }
    // Bounded: at most 160 buckets of K, and one reply per query no larger than K nodes.
    assert!(n.table().len() <= 160 * K, "{}", n.table().len());
    assert!(n.table().bucket_count() <= 160);
    assert!(max_reply <= 2 + 8 + 26 * K + 64, "{max_reply} bytes");
    assert!(max_reply < 4 * max_query, "{max_reply} vs {max_query}");
    // Nobody answered our ping-before-evict probes, so no fake contact is good.
    assert!(n.table().iter().all(
        |c| c.state(T0 + Duration::from_secs(20)) != swarm_core::dht::routing::NodeState::Good
    ));
}

#[test]
fn error_replies_and_unsolicited_responses_are_never_answered() {
    let mut n = DhtNode::new(DhtConfig::new(12), T0);
    let from = SocketAddr::from(([10, 7, 0, 1], 6881));
    let mut err = Vec::new();
    krpc::emit_error(&mut err, b"zz", 201, b"Generic Error");
    n.handle_datagram(T0, from, &err);
    let mut resp = Vec::new();
    krpc::emit_response(&mut resp, b"zz", &NodeId([3; 20]), Some(&[]), None, &[]);
    n.handle_datagram(T0, from, &resp);
    // No error-for-error loop, no reply to a response, nobody learned.
    assert!(drain(&mut n).is_empty());
    assert!(n.table().is_empty());
    // A query still gets its single reply, echoing `t`; the new contact also gets one
    // verification ping (rate-limited), nothing else.
    n.handle_datagram(T0, from, &query(b"q1", NodeId([4; 20]), &Query::Ping));
    let out = drain(&mut n);
    assert!(out.iter().all(|(to, _)| *to == from));
    let bodies: Vec<_> = out.iter().map(|(_, d)| krpc::parse(d).unwrap()).collect();
    let replies: Vec<_> = bodies
        .iter()
        .filter(|m| matches!(m.body, Body::Response(_)))
        .collect();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].t, b"q1");
    assert!(bodies.len() <= 2);
    assert!(bodies.iter().all(|m| matches!(
        m.body,
        Body::Response(_)
            | Body::Query {
                query: Query::Ping,
                ..
            }
    )));
}

#[test]
fn nodes_that_only_queried_us_are_pinged_once_and_at_a_bounded_rate() {
    let mut n = DhtNode::new(DhtConfig::new(13), T0);
    let mut pings = 0;
    // 1,000 new nodes in one second, each from its own address.
    for i in 0..1000u32 {
        let from = SocketAddr::from(([10, 9, (i / 250) as u8, (i % 250) as u8 + 1], 6881));
        let now = T0 + Duration::from_millis(u64::from(i));
        // Ids spread over the buckets, so most are taken into the table.
        let mut random = [0x5a; 20];
        random[16..].copy_from_slice(&i.to_be_bytes());
        let id = n.table().random_id_in((i % 120) as usize, random);
        n.handle_datagram(now, from, &query(b"q1", id, &Query::Ping));
        // Pings to the sender itself (ping-before-evict probes go to older contacts).
        pings += drain(&mut n)
            .iter()
            .filter(|(to, _)| *to == from)
            .filter(|(_, d)| {
                matches!(
                    krpc::parse(d).map(|m| m.body),
                    Ok(Body::Query {
                        query: Query::Ping,
                        ..
                    })
                )
            })
            .count();
    }
    // Far more were added than pinged: a burst of 20, then 10 a second.
    assert!(n.table().len() > 100, "{}", n.table().len());
    assert!((20..=31).contains(&pings), "{pings} verification pings");
}

/// The node tells a port sharer what was KRPC: any bencoded dictionary (answered or not,
/// however malformed), and nothing else, which it leaves untouched.
#[test]
fn only_bencoded_dictionaries_are_taken_as_krpc() {
    let mut n = DhtNode::new(DhtConfig::new(13), T0);
    let from = SocketAddr::from(([10, 7, 0, 2], 6881));
    let ping = query(b"aa", NodeId([3; 20]), &Query::Ping);
    assert!(n.handle_datagram(T0, from, &ping));
    assert!(
        drain(&mut n).iter().any(|(to, _)| *to == from),
        "a ping is answered"
    );
    // Dictionaries that are not valid KRPC: an unknown type, a query without arguments.
    assert!(n.handle_datagram(T0, from, b"d1:t2:aa1:y1:xe"));
    assert!(n.handle_datagram(T0, from, b"d1:q4:ping1:t2:aa1:y1:qe"));
    // Not dictionaries: a list, a truncated dictionary, a DNS header starting with `d`,
    // a uTP packet.
    for other in [
        &b"l1:ae"[..],
        b"d1:t2:aa",
        &[0x64, 0x31, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0],
        &[
            0x41, 0x00, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 0, 0,
        ],
    ] {
        assert!(!n.handle_datagram(T0, from, other), "{other:?}");
    }
    // The query without arguments got a protocol error; nothing else was sent.
    let sent = drain(&mut n);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(matches!(
        krpc::parse(&sent[0].1).map(|m| m.body),
        Ok(Body::Error { .. })
    ));
}
