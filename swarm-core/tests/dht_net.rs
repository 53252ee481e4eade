//! Many `DhtNode`s on a simulated network: a deterministic in-memory datagram queue and a
//! virtual clock, no sockets and no sleeping.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;
use swarm_core::dht::{DhtConfig, DhtEvent, DhtNode, NodeId};
use swarm_core::Instant;

/// (delivery time, sequence, from, to, datagram)
type InFlight = (Instant, u64, usize, SocketAddr, Vec<u8>);

struct Net {
    nodes: Vec<DhtNode>,
    addrs: Vec<SocketAddr>,
    index: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<InFlight>>,
    now: Instant,
    seq: u64,
    events: Vec<(usize, DhtEvent)>,
    sent: usize,
    /// Drop one datagram in n (0: none).
    drop_every: u64,
}

fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8 + 1], 6881))
}

impl Net {
    fn new(n: usize, drop_every: u64) -> Net {
        let addrs: Vec<SocketAddr> = (0..n).map(node_addr).collect();
        let nodes = (0..n)
            .map(|i| {
                let mut config = DhtConfig::new(1000 + i as u64);
                if i > 0 {
                    config.bootstrap = vec![addrs[0]];
                }
                DhtNode::new(config, Instant::ZERO)
            })
            .collect();
        Net {
            index: addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect(),
            nodes,
            addrs,
            queue: BinaryHeap::new(),
            now: Instant::ZERO,
            seq: 0,
            events: Vec::new(),
            sent: 0,
            drop_every,
        }
    }

    fn flush(&mut self, i: usize) {
        while let Some((to, data)) = self.nodes[i].poll_transmit() {
            self.seq += 1;
            self.sent += 1;
            // Loss decided by a hash of the sequence number: deterministic, not periodic.
            let h = self.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
            if self.drop_every != 0 && h % self.drop_every == 0 {
                continue;
            }
            // 5-25 ms latency, varying per datagram but fixed by the sequence number.
            let at = self.now + Duration::from_millis(5 + self.seq * 7 % 21);
            self.queue
                .push(Reverse((at, self.seq, i, to, data.to_vec())));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events.push((i, e));
        }
    }

    /// Runs the network until `until` (virtual time).
    fn run_until(&mut self, until: Instant) {
        loop {
            let next_timer = self
                .nodes
                .iter()
                .filter_map(DhtNode::poll_timeout)
                .min()
                .unwrap_or(until);
            let next_packet = self.queue.peek().map(|Reverse(p)| p.0);
            let next = next_packet.map_or(next_timer, |p| p.min(next_timer));
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            if next_packet == Some(next) {
                let Reverse((_, _, from, to, data)) = self.queue.pop().unwrap();
                if let Some(&j) = self.index.get(&to) {
                    self.nodes[j].handle_datagram(self.now, self.addrs[from], &data);
                    self.flush(j);
                }
            } else {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                        self.nodes[i].handle_timeout(self.now);
                        self.flush(i);
                    }
                }
            }
        }
    }

    fn later(&self, ms: u64) -> Instant {
        self.now + Duration::from_millis(ms)
    }
}

fn run_scenario(n: usize, drop_every: u64) -> (Net, Vec<SocketAddrV4>) {
    let mut net = Net::new(n, drop_every);
    // Nodes join one after another, each bootstrapping through node 0.
    for i in 1..n {
        let now = net.now;
        net.nodes[i].bootstrap(now);
        net.flush(i);
        let t = net.later(100);
        net.run_until(t);
    }
    let t = net.later(120_000);
    net.run_until(t);
    let bootstraps = net
        .events
        .iter()
        .filter(|(_, e)| matches!(e, DhtEvent::LookupDone { .. }))
        .count();
    assert!(bootstraps >= n - 1, "every bootstrap lookup terminates");
    for (i, node) in net.nodes.iter().enumerate() {
        assert!(!node.table().is_empty(), "node {i} knows nobody");
        assert_eq!(node.in_flight(), 0);
    }

    let info_hash = NodeId::sha1(b"a topic");
    let (announcer, seeker) = (n / 3, n - 2);
    let now = net.now;
    let announce = net.nodes[announcer].announce(now, info_hash, 7000, false);
    net.flush(announcer);
    let t = net.later(20_000);
    net.run_until(t);
    let acked = net.events.iter().find_map(|(i, e)| match e {
        DhtEvent::AnnounceDone { lookup, acked, .. } if *i == announcer && *lookup == announce => {
            Some(*acked)
        }
        _ => None,
    });
    assert!(acked.unwrap() > 0, "announce stored somewhere: {acked:?}");

    net.events.clear();
    let now = net.now;
    let sent_before = net.sent;
    let lookup = net.nodes[seeker].get_peers(now, info_hash);
    net.flush(seeker);
    let t = net.later(20_000);
    net.run_until(t);
    let mut found = Vec::new();
    let mut done = false;
    for (i, e) in &net.events {
        assert_eq!(*i, seeker);
        match e {
            DhtEvent::Peer {
                lookup: l,
                info_hash: h,
                addr,
            } if *l == lookup => {
                assert_eq!(*h, info_hash);
                found.push(*addr);
            }
            DhtEvent::LookupDone { lookup: l, .. } if *l == lookup => done = true,
            _ => {}
        }
    }
    assert!(done, "lookup terminates");
    // Queries plus replies of one lookup (refreshes do not run this early).
    let messages = net.sent - sent_before;
    eprintln!("{n} nodes: get_peers lookup took {messages} datagrams");
    assert!(messages < 120, "{messages} datagrams for one lookup");
    (net, found)
}

fn announcer_addr(n: usize) -> SocketAddrV4 {
    match node_addr(n / 3) {
        SocketAddr::V4(a) => SocketAddrV4::new(*a.ip(), 7000),
        SocketAddr::V6(_) => unreachable!(),
    }
}

#[test]
fn a_peer_announced_by_one_node_is_found_by_another() {
    let n = 150;
    let (net, found) = run_scenario(n, 0);
    assert_eq!(found, [announcer_addr(n)]);
    // Responders answer with at most K nodes, so nothing here floods: a loose bound on the
    // datagrams the whole run needed.
    assert!(net.sent < n * 200, "sent {} datagrams", net.sent);
}

#[test]
fn lookups_succeed_with_datagram_loss() {
    let n = 80;
    let (_net, found) = run_scenario(n, 10);
    assert_eq!(found, [announcer_addr(n)]);
}

#[test]
fn simulation_is_deterministic() {
    let (a, _) = run_scenario(40, 10);
    let (b, _) = run_scenario(40, 10);
    assert_eq!(a.sent, b.sent);
    assert_eq!(a.events, b.events);
}

#[test]
fn idle_buckets_are_refreshed_quietly() {
    let (mut net, _) = run_scenario(40, 0);
    net.events.clear();
    let before = net.sent;
    let t = net.later(17 * 60 * 1000);
    net.run_until(t);
    // BEP 5 refresh lookups went out, bounded, and told the application nothing.
    let refresh = net.sent - before;
    assert!(refresh > 40, "{refresh} datagrams");
    assert!(refresh < 40 * 400, "{refresh} datagrams");
    assert!(net.events.is_empty(), "{:?}", net.events);
    for node in &net.nodes {
        assert_eq!(node.in_flight(), 0);
    }
}

/// Bootstrap nodes that arrive after start (router names resolved late by the driver) are
/// asked at once, and every joined topic's lookup runs again through them.
#[test]
fn bootstrap_nodes_added_after_start_are_used_at_once() {
    use swarm_core::{Config, Input, Output, Swarm};
    let mut swarm = Swarm::new(Config::new(vec![1; 32], 7).with_dht(Vec::new())).unwrap();
    let now = Instant::from_micros(1_000_000);
    swarm.join(now, &b"topic"[..], true);
    swarm.handle_input(now, Input::Listening { port: 7000 });
    while let Some(output) = swarm.poll_output() {
        assert!(
            !matches!(output, Output::Transmit { .. }),
            "nothing to ask without a bootstrap node"
        );
    }
    let router: SocketAddr = "192.0.2.7:6881".parse().unwrap();
    swarm.add_dht_bootstrap(now, &[router]);
    let mut queries = Vec::new();
    while let Some(output) = swarm.poll_output() {
        if let Output::Transmit { to, data, .. } = output {
            assert_eq!(to, router);
            queries.push(String::from_utf8_lossy(&data).into_owned());
        }
    }
    assert!(
        queries.iter().any(|q| q.contains("find_node")),
        "{queries:?}"
    );
    assert!(
        queries.iter().any(|q| q.contains("get_peers")),
        "{queries:?}"
    );
}

/// A node restarted with the contacts it saved (and its id) finds an announced topic with no
/// bootstrap node at all, and the saved list leads with contacts that answered it.
#[test]
fn a_restarted_node_finds_the_network_through_its_saved_contacts() {
    let n = 60;
    let (mut net, _) = run_scenario(n, 0);
    let seeker = n - 2;
    let now = net.now;
    let saved = net.nodes[seeker].contacts(now);
    assert!(saved.len() >= 8, "{} contacts saved", saved.len());
    assert!(saved.iter().all(|(id, _)| *id != net.nodes[seeker].id()));
    let answered = |c: &(NodeId, SocketAddrV4)| {
        net.nodes[seeker]
            .table()
            .get(&c.0)
            .is_some_and(|c| c.state(now) == swarm_core::dht::routing::NodeState::Good)
    };
    let good = saved.iter().take_while(|c| answered(c)).count();
    assert!(good > 0 && saved[good..].iter().all(|c| !answered(c)));

    // Restart: same id and address, the saved contacts, an empty bootstrap list.
    let mut config = DhtConfig::new(9_999);
    config.id = net.nodes[seeker].id();
    config.contacts = saved.clone();
    net.nodes[seeker] = DhtNode::new(config, now);
    // The same id gives the same bucket layout, so every saved contact fits back in.
    assert_eq!(net.nodes[seeker].table().len(), saved.len());

    net.events.clear();
    let info_hash = NodeId::sha1(b"a topic");
    let lookup = net.nodes[seeker].get_peers(now, info_hash);
    net.flush(seeker);
    let t = net.later(20_000);
    net.run_until(t);
    let found: Vec<_> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            DhtEvent::Peer {
                lookup: l, addr, ..
            } if *i == seeker && *l == lookup => Some(*addr),
            _ => None,
        })
        .collect();
    assert_eq!(found, [announcer_addr(n)]);
}

/// Nodes that joined by querying others must be handed out too, or lookups stop converging:
/// in a young network most contacts have only ever queried us, and replies made of the few
/// verified ones (all near the responder's own id) lead away from the target. Every node
/// verifies newcomers with one ping, so announces land on the true closest nodes.
#[test]
fn announces_in_a_young_network_reach_the_true_closest_nodes() {
    let n = 400;
    let mut net = Net::new(n, 0);
    for i in 1..n {
        let now = net.now;
        net.nodes[i].bootstrap(now);
        net.flush(i);
        let t = net.later(10);
        net.run_until(t);
    }
    let t = net.later(10_000);
    net.run_until(t);
    let ids: Vec<NodeId> = net.nodes.iter().map(DhtNode::id).collect();
    let mut converged = 0;
    let topics = 10u32;
    for topic in 0..topics {
        let info_hash = NodeId::sha1(&topic.to_be_bytes());
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| ids[i].distance(&info_hash));
        let stored: Vec<usize> = net.nodes.iter().map(DhtNode::stored_peers).collect();
        let announcer = (topic as usize * 37 + 11) % n;
        let now = net.now;
        net.nodes[announcer].announce(now, info_hash, 7000, false);
        net.flush(announcer);
        let t = net.later(20_000);
        net.run_until(t);
        let holders = (0..n).filter(|&i| net.nodes[i].stored_peers() > stored[i]);
        let in_closest = holders.filter(|h| order[..8].contains(h)).count();
        converged += usize::from(in_closest >= 6);
    }
    assert!(
        converged >= topics as usize - 1,
        "{converged}/{topics} announces converged"
    );
}
