//! dns-discovery server scenarios: swarm nodes with mDNS and the DHT off find each other only
//! through unicast dns-discovery servers (the real server engine on a simulated host), across
//! segments, behind NAT, and through a server restart.

use super::{ensure, sim_config, Params};
use crate::invariants::Violation;
use crate::network::{HostId, SegmentConfig};
use crate::rng::{derive, SimRng};
use crate::sim::{Action, Sim};
use crate::{NatConfig, NatKind};
use bytes::Bytes;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use swarm_core::dnsd::ServerAddr;
use swarm_core::{Config, Event, Instant, RejectReason};

/// The server's port (the `dns-server` default).
pub const SERVER_PORT: u16 = 5300;
/// Hosts per segment.
const SEGMENT: usize = 50;
/// Peers per topic: at most what one lookup answer lists (31), so a round can show a node
/// every other announcer of its topic.
const PER_TOPIC: usize = 25;
/// Nodes join at random instants in this window.
const JOIN_WINDOW: Duration = Duration::from_secs(10);
/// Everyone has found everyone of their topic this long after the last join: a lookup at
/// join plus pushes to subscribers, and one more 60-70 s round for the earliest joiners.
const BOUND: Duration = Duration::from_secs(80);

fn topic(t: usize) -> Bytes {
    Bytes::from(format!("swarm-sim dns {t}"))
}

fn client(servers: &[SocketAddr], max_connections: usize) -> Config {
    let mut config = Sim::node_config();
    config.dns_servers = servers.iter().map(|a| ServerAddr::new(*a)).collect();
    config.max_connections = max_connections;
    config
}

fn server_addr(sim: &Sim, h: HostId) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(sim.host_ip(h)), SERVER_PORT)
}

/// For each host, the addresses it learnt (discovered, or rejected as already known) for
/// `topic_of[host]`; and whether any address came for another topic.
fn discovered(sim: &Sim, topic_of: &BTreeMap<HostId, Bytes>) -> BTreeMap<HostId, BTreeSet<IpAddr>> {
    let mut out: BTreeMap<HostId, BTreeSet<IpAddr>> = BTreeMap::new();
    for e in sim.log() {
        let (addr, topic) = match &e.event {
            Event::Peer(p) => (p.addr, p.topic.as_ref()),
            Event::PeerRejected {
                addr,
                topic,
                reason: RejectReason::Duplicate,
            } => (*addr, topic.as_ref()),
            _ => continue,
        };
        if topic == topic_of.get(&e.host) {
            out.entry(e.host).or_default().insert(addr.ip());
        }
    }
    out
}

/// N nodes (default 1,000) on public segments of 50, one server; topics of 25 nodes.
pub fn dns_server(p: &Params) -> Result<Sim, Violation> {
    let n = p.nodes.unwrap_or(1000);
    let mut sim = Sim::new(sim_config("dns-server", p));
    let server = sim.add_dns_server(0, SERVER_PORT);
    let servers = [server_addr(&sim, server)];
    let mut rng = SimRng::new(derive(p.seed, &[300]));
    let mut topic_of = BTreeMap::new();
    let mut members: BTreeMap<Bytes, Vec<HostId>> = BTreeMap::new();
    let mut segment = 0;
    for i in 0..n {
        if i % SEGMENT == 0 {
            segment = sim.add_segment(SegmentConfig::default());
        }
        let h = sim.add_node_on(segment, client(&servers, 3));
        let t = topic(i / PER_TOPIC);
        let at = Instant::from_micros(rng.range(0, JOIN_WINDOW.as_micros() as u64));
        sim.schedule(
            at,
            Action::Join {
                host: h,
                topic: t.clone(),
                announce: true,
            },
        );
        topic_of.insert(h, t.clone());
        members.entry(t).or_default().push(h);
    }
    sim.run_until(Instant::ZERO + JOIN_WINDOW + BOUND)?;
    let found = discovered(&sim, &topic_of);
    let mut missing = 0;
    for (t, hosts) in &members {
        for &h in hosts {
            let want: BTreeSet<IpAddr> = hosts
                .iter()
                .filter(|&&o| o != h)
                .map(|&o| IpAddr::V4(sim.host_ip(o)))
                .collect();
            let got = found.get(&h).cloned().unwrap_or_default();
            ensure(&sim, got.is_subset(&want), || {
                format!("n{h} learnt addresses outside topic {t:?}")
            })?;
            missing += want.difference(&got).count();
        }
    }
    sim.mark_count("pairs not found", missing);
    ensure(&sim, missing == 0, || {
        format!("{missing} (node, announcer) pairs of the same topic never found")
    })?;
    let stats = sim.dns_server(server).map(|s| s.stats());
    sim.note(format!("server: {stats:?}"));
    sim.mark_count(
        "server stored peers",
        sim.dns_server(server).map_or(0, |s| s.stored_peers()),
    );
    Ok(sim)
}

/// Nodes behind NATs (one segment of 4 behind each, plus 4 public nodes) and two servers, one
/// topic: whoami learns every NATed node's public address, everyone finds everyone, and every
/// NATed-public pair connects (the NATed end dials out); NATed pairs cannot (no hole punching,
/// as in Node), and a node never dials its own public address.
pub fn dns_nat(p: &Params) -> Result<Sim, Violation> {
    nat_run(p, "dns-nat", NatKind::EndpointIndependent)
}

/// `dns-nat` behind symmetric NATs: each server sees another public port, so whoami cannot
/// confirm a port; discovery and NATed-public connections still work.
pub fn dns_nat_symmetric(p: &Params) -> Result<Sim, Violation> {
    nat_run(p, "dns-nat-symmetric", NatKind::Symmetric)
}

fn nat_run(p: &Params, name: &str, kind: NatKind) -> Result<Sim, Violation> {
    let mut sim = Sim::new(sim_config(name, p));
    let s1 = sim.add_dns_server(0, SERVER_PORT);
    let s2 = sim.add_dns_server(0, SERVER_PORT);
    let servers = [server_addr(&sim, s1), server_addr(&sim, s2)];
    let t = topic(0);
    let public_seg = sim.add_segment(SegmentConfig::default());
    let mut public = Vec::new();
    for _ in 0..4 {
        public.push(sim.add_node_on(public_seg, client(&servers, 0)));
    }
    let mut natted: Vec<(HostId, usize)> = Vec::new();
    for _ in 0..3 {
        let seg = sim.add_segment(SegmentConfig::default());
        sim.add_nat(
            seg,
            NatConfig {
                kind,
                refuse_inbound: false,
            },
        );
        for _ in 0..4 {
            natted.push((sim.add_node_on(seg, client(&servers, 0)), seg));
        }
    }
    let all: Vec<HostId> = public
        .iter()
        .copied()
        .chain(natted.iter().map(|(h, _)| *h))
        .collect();
    for (i, &host) in all.iter().enumerate() {
        let at = Instant::from_micros(i as u64 * 100_000);
        let (topic, announce) = (t.clone(), true);
        sim.schedule(
            at,
            Action::Join {
                host,
                topic,
                announce,
            },
        );
    }
    sim.run_for(Duration::from_secs(150))?;

    // whoami: with endpoint-independent NATs both servers see the same public port.
    let mut confirmed = 0;
    for &(h, seg) in &natted {
        let nat_ip = sim.nat_ip(seg);
        let public_addr = sim.core(h).and_then(|c| c.public_addr());
        if let (Some(ip), Some(me)) = (nat_ip, public_addr) {
            ensure(&sim, IpAddr::V4(*me.ip()) == ip, || {
                format!("n{h}: whoami says {me}, its NAT is {ip}")
            })?;
            confirmed += usize::from(me.port() != 0);
        }
    }
    sim.mark_count("whoami ports confirmed", confirmed);
    if kind == NatKind::EndpointIndependent {
        ensure(&sim, confirmed == natted.len(), || {
            format!(
                "whoami confirmed {confirmed} of {} NATed nodes",
                natted.len()
            )
        })?;
    }
    // Discovery: every node learns every other node's reachable address (NATed ones by their
    // NAT's public address).
    let reachable_of: BTreeMap<HostId, IpAddr> = all
        .iter()
        .map(|&h| {
            let nat = natted.iter().find(|(n, _)| *n == h);
            let ip = nat.and_then(|(_, seg)| sim.nat_ip(*seg));
            (h, ip.unwrap_or(IpAddr::V4(sim.host_ip(h))))
        })
        .collect();
    let reachable = |h: HostId| reachable_of[&h];
    let topic_of: BTreeMap<HostId, Bytes> = all.iter().map(|h| (*h, t.clone())).collect();
    let found = discovered(&sim, &topic_of);
    for &h in &all {
        let got = found.get(&h).cloned().unwrap_or_default();
        let own = reachable(h);
        let want: BTreeSet<IpAddr> = all
            .iter()
            .map(|&o| reachable(o))
            .filter(|ip| *ip != own)
            .collect();
        ensure(&sim, want.is_subset(&got), || {
            format!("n{h} found {got:?}, wants {want:?}")
        })?;
    }
    // Connections: every NATed node reaches every public one; NATed pairs on different NATs
    // stay apart.
    let pairs = sim.connected_pairs();
    let linked = |a: HostId, b: HostId| pairs.contains(&(a.min(b), a.max(b)));
    for &(n, _) in &natted {
        for &pb in &public {
            ensure(&sim, linked(n, pb), || {
                format!("NATed n{n} and public n{pb} not connected")
            })?;
        }
    }
    let apart = natted
        .iter()
        .flat_map(|a| natted.iter().map(move |b| (a, b)))
        .filter(|(a, b)| a.1 != b.1 && a.0 < b.0 && !linked(a.0, b.0))
        .count();
    sim.mark_count("NATed pairs kept apart", apart);
    // Nobody dialled its own public address.
    for e in sim.log() {
        if let Event::Connecting(peer) = &e.event {
            ensure(
                &sim,
                peer.addr.ip() != reachable(e.host) || public.contains(&e.host),
                || format!("n{} dialled its own public address {}", e.host, peer.addr),
            )?;
        }
    }
    Ok(sim)
}

/// The server restarts (state lost) after everyone announced; nodes joining afterwards still
/// find the earlier ones once those announce again. As with Node's client, the early nodes'
/// next round (60-70 s) carries a token of the old secrets and is not stored, but its answer
/// brings a fresh token, so the round after that (120-140 s) announces them again.
pub fn dns_restart(p: &Params) -> Result<Sim, Violation> {
    let mut sim = Sim::new(sim_config("dns-restart", p));
    let server = sim.add_dns_server(0, SERVER_PORT);
    let servers = [server_addr(&sim, server)];
    let t = topic(0);
    let seg = sim.add_segment(SegmentConfig::default());
    let early: Vec<HostId> = (0..10)
        .map(|_| sim.add_node_on(seg, client(&servers, 0)))
        .collect();
    for &host in &early {
        let (topic, announce) = (t.clone(), true);
        sim.schedule(
            sim.now(),
            Action::Join {
                host,
                topic,
                announce,
            },
        );
    }
    sim.run_for(Duration::from_secs(5))?;
    sim.restart_dns_server(server);
    ensure(
        &sim,
        sim.dns_server(server)
            .is_some_and(|s| s.stored_peers() == 0),
        || "the restarted server kept its store".into(),
    )?;
    let late: Vec<HostId> = (0..5)
        .map(|_| sim.add_node_on(seg, client(&servers, 0)))
        .collect();
    for &host in &late {
        let (topic, announce) = (t.clone(), true);
        sim.schedule(
            sim.now(),
            Action::Join {
                host,
                topic,
                announce,
            },
        );
    }
    sim.run_for(Duration::from_secs(140))?;
    let all: Vec<HostId> = early.iter().chain(&late).copied().collect();
    let pairs = sim.connected_pairs();
    for &l in &late {
        for &e in &early {
            ensure(&sim, pairs.contains(&(e.min(l), e.max(l))), || {
                format!("late n{l} and early n{e} not connected after the restart")
            })?;
        }
    }
    sim.mark_count(
        "stored after restart",
        sim.dns_server(server).map_or(0, |s| s.stored_peers()),
    );
    ensure(
        &sim,
        sim.dns_server(server)
            .is_some_and(|s| s.stored_peers() == all.len()),
        || "not every node announced again to the restarted server".into(),
    )?;
    Ok(sim)
}
