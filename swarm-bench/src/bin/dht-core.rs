//! The DHT core alone, no sockets: queries answered per second by one `DhtNode` (one core),
//! and resident memory per stored peer and per routing-table contact. Prints one JSON object.
//!
//! The per-IP rate limiter is raised for the throughput run, so the figure is the cost of
//! parsing a query and building its reply (find_node with the closest contacts, get_peers
//! with stored values and a token), not of dropping floods.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant as Wall};
use swarm_core::dht::krpc::{self, Body, Query};
use swarm_core::dht::routing::{self, RoutingTable, Seen};
use swarm_core::dht::tokens::{PeerStore, StoreLimits};
use swarm_core::dht::{DhtConfig, DhtNode, NodeId};
use swarm_core::Instant;

/// A cheap deterministic generator (SplitMix64) for ids and addresses.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn id(&mut self) -> NodeId {
        let mut id = [0u8; 20];
        for chunk in id.chunks_mut(8) {
            let bytes = self.next().to_be_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        NodeId(id)
    }
}

fn source(i: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0a00_0000 + (i % 4000) + 1);
    SocketAddr::V4(SocketAddrV4::new(ip, 6881))
}

fn query(t: u16, id: &NodeId, q: &Query<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    krpc::emit_query(&mut out, &t.to_be_bytes(), id, q);
    out
}

fn main() {
    let mut gen = Gen(7);
    let mut config = DhtConfig::new(1);
    config.queries_per_sec = u32::MAX / 2;
    config.query_burst = u32::MAX / 2;
    config.max_rate_sources = 1 << 20;
    let mut now = Instant::from_micros(1);
    let mut node = DhtNode::new(config, now);

    // Contacts: pings from 4,000 nodes (the table keeps what its buckets hold).
    for i in 0..4000u32 {
        let data = query(1, &gen.id(), &Query::Ping);
        node.handle_datagram(now, source(i), &data);
        while node.poll_transmit().is_some() {}
    }
    // Stored peers: 1,000 info-hashes with 5 announcers each (token from get_peers first).
    let hashes: Vec<NodeId> = (0..1000).map(|_| gen.id()).collect();
    for (h, info_hash) in hashes.iter().enumerate() {
        for k in 0..5u32 {
            let from = source(h as u32 * 5 + k);
            let asker = gen.id();
            let get = query(
                2,
                &asker,
                &Query::GetPeers {
                    info_hash: *info_hash,
                },
            );
            node.handle_datagram(now, from, &get);
            let mut token = None;
            while let Some((_, reply)) = node.poll_transmit() {
                if let Ok(msg) = krpc::parse(&reply) {
                    if let Body::Response(r) = msg.body {
                        token = r.token.map(<[u8]>::to_vec);
                    }
                }
            }
            let Some(token) = token else { continue };
            let announce = Query::AnnouncePeer {
                info_hash: *info_hash,
                port: Some(7000 + i64::from(k)),
                implied_port: false,
                token: &token,
            };
            node.handle_datagram(now, from, &query(3, &asker, &announce));
            while node.poll_transmit().is_some() {}
        }
    }

    // Throughput: find_node and get_peers alternately, from 4,000 sources.
    let queries: Vec<Vec<u8>> = (0..20_000u32)
        .map(|i| {
            let asker = gen.id();
            if i % 2 == 0 {
                query(i as u16, &asker, &Query::FindNode { target: gen.id() })
            } else {
                let info_hash = hashes[(i as usize / 2) % hashes.len()];
                query(i as u16, &asker, &Query::GetPeers { info_hash })
            }
        })
        .collect();
    let rounds = 50;
    let (mut answered, mut reply_bytes) = (0u64, 0u64);
    let started = Wall::now();
    for round in 0..rounds {
        now = now + Duration::from_millis(1);
        for (i, q) in queries.iter().enumerate() {
            node.handle_datagram(now, source(i as u32 + round), q);
            while let Some((_, reply)) = node.poll_transmit() {
                answered += 1;
                reply_bytes += reply.len() as u64;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = (queries.len() * rounds as usize) as u64;

    // Memory per stored peer: 200,000 peers over 10,000 info-hashes in a bare store.
    let limits = StoreLimits {
        max_total: 1_000_000,
        max_per_hash: 1_000,
        ..StoreLimits::default()
    };
    let mut store = PeerStore::new(limits, 3);
    let before = swarm_bench::procfs::rss_kib(std::process::id()).unwrap_or(0);
    let store_hashes: Vec<NodeId> = (0..10_000).map(|_| gen.id()).collect();
    let count = 200_000u32;
    for i in 0..count {
        let peer = SocketAddrV4::new(Ipv4Addr::from(gen.next() as u32), (i % 60_000) as u16 + 1);
        store.announce(now, store_hashes[(i % 10_000) as usize], peer);
    }
    let after = swarm_bench::procfs::rss_kib(std::process::id()).unwrap_or(0);

    // Memory per routing-table contact: 100 full tables (every bucket's 8 slots filled by ids
    // that share exactly its prefix with the table's own id).
    let tables_before = swarm_bench::procfs::rss_kib(std::process::id()).unwrap_or(0);
    let mut tables = Vec::new();
    let mut contacts = 0usize;
    for t in 0..100u32 {
        let own = gen.id();
        let mut table = RoutingTable::new(own, u64::from(t), 4);
        for bucket in 0..160usize {
            for _ in 0..routing::K {
                let id = table.random_id_in(bucket, gen.id().0);
                let addr = SocketAddrV4::new(Ipv4Addr::from(gen.next() as u32 | 1), 6881);
                table.heard_from(now, id, addr, Seen::Response);
            }
        }
        contacts += table.len();
        tables.push(table);
    }
    let tables_after = swarm_bench::procfs::rss_kib(std::process::id()).unwrap_or(0);

    println!(
        "{{\"queries\":{sent},\"answered\":{answered},\"seconds\":{elapsed:.3},\"queries_per_sec\":{:.0},\"mean_reply_bytes\":{:.0},\"contacts\":{},\"stored_peers\":{},\"bytes_per_stored_peer\":{:.1},\"table_contacts\":{contacts},\"bytes_per_contact\":{:.1}}}",
        sent as f64 / elapsed,
        reply_bytes as f64 / answered.max(1) as f64,
        node.table().len(),
        store.len(),
        (after.saturating_sub(before) * 1024) as f64 / f64::from(count),
        (tables_after.saturating_sub(tables_before) * 1024) as f64 / contacts.max(1) as f64,
    );
    drop(tables);
}
