//! The routed internet: NAT limits, partitions, clock steps and restarts keeping their id.

use core::time::Duration;
use swarm_core::{Event, Instant};
use swarm_sim::scenarios::times;
use swarm_sim::{Action, HostState, NatConfig, NatKind, SegmentConfig, Sim, SimConfig};

fn two_segments(nat: Option<NatConfig>) -> (Sim, usize, usize) {
    let mut cfg = SimConfig::new(11);
    cfg.keep_trace = true;
    let mut sim = Sim::new(cfg);
    let s1 = sim.add_segment(SegmentConfig::default());
    if let Some(nat) = nat {
        sim.add_nat(s1, nat);
    }
    let public = sim.add_node_on(0, Sim::node_config());
    let inside = sim.add_node_on(s1, Sim::node_config());
    (sim, public, inside)
}

fn nat(kind: NatKind, refuse_inbound: bool) -> NatConfig {
    NatConfig {
        kind,
        refuse_inbound,
    }
}

/// Behind NAT a host can dial out (the peer sees the NAT's public address) but nobody can
/// dial in: its private address leads nowhere and its public one refuses or drops.
#[test]
fn nat_allows_outbound_and_stops_unsolicited_inbound() {
    for (kind, refuse) in [
        (NatKind::Symmetric, true),
        (NatKind::EndpointIndependent, false),
    ] {
        let (mut sim, public, inside) = two_segments(Some(nat(kind, refuse)));
        sim.add_peer(inside, public).unwrap();
        sim.run_for(Duration::from_secs(5)).unwrap();
        assert_eq!(sim.connected_pairs().len(), 1);
        let nat_ip = sim.nat_ip(1).unwrap();
        let seen = sim.events(public).find_map(|(_, e)| match e {
            Event::Connection { info, .. } => Some(info.addr),
            _ => None,
        });
        assert_eq!(seen.map(|a| a.ip()), Some(nat_ip));

        let (mut sim, public, inside) = two_segments(Some(nat(kind, refuse)));
        sim.add_peer(public, inside).unwrap();
        let nat_addr = std::net::SocketAddr::new(nat_ip, 7000);
        sim.with_core(public, |core, now| core.add_peer(now, None, nat_addr))
            .unwrap();
        sim.run_to_quiescence(Duration::from_secs(120)).unwrap();
        assert!(sim.connected_pairs().is_empty());
        // Both addresses fail: the private one by timing out, the public one refused (RST)
        // or timing out as the NAT is configured.
        let failed: Vec<bool> = sim
            .events(public)
            .filter_map(|(_, e)| match e {
                Event::ConnectFailed { timed_out, .. } => Some(*timed_out),
                _ => None,
            })
            .collect();
        assert_eq!(failed.len(), 10, "{kind:?}: two peers, five attempts each");
        let refused = failed.iter().filter(|t| !**t).count();
        assert_eq!(refused, if refuse { 5 } else { 0 }, "{kind:?}");
    }
}

/// Without NAT, hosts on different segments reach each other across the internet.
#[test]
fn public_segments_connect_across_the_internet() {
    let (mut sim, a, b) = two_segments(None);
    sim.add_peer(a, b).unwrap();
    sim.run_for(Duration::from_secs(5)).unwrap();
    assert_eq!(sim.connected_pairs().len(), 1);
}

/// A partition holds a dial until it heals; then the connection completes (TCP retransmits).
/// A one-way partition loses datagrams in one direction only.
#[test]
fn partitions_delay_tcp_and_heal() {
    let (mut sim, a, b) = two_segments(None);
    let t = Instant::ZERO;
    let duration = Duration::from_secs(2);
    sim.schedule(
        t,
        Action::Partition {
            from: 0,
            to: 1,
            one_way: false,
            duration,
        },
    );
    sim.run_for(Duration::from_millis(1)).unwrap();
    sim.add_peer(a, b).unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert!(sim.connected_pairs().is_empty());
    sim.run_for(Duration::from_secs(5)).unwrap();
    assert_eq!(sim.connected_pairs().len(), 1);
}

/// A forward clock step makes a waiting retry due at once.
#[test]
fn clock_step_fires_due_timers() {
    let mut sim = Sim::new(SimConfig::new(3));
    let a = sim.add_node(Sim::node_config());
    let dead = sim.add_host(HostState::Refusing);
    sim.add_peer(a, dead).unwrap();
    sim.run_for(Duration::from_millis(500)).unwrap();
    // First failure at < 500 ms; the retry waits 1 s. Step the clock 10 s at 600 ms.
    let at = Instant::from_micros(600_000);
    let by = Duration::from_secs(10);
    sim.schedule(at, Action::ClockStep { host: a, by });
    sim.run_for(Duration::from_millis(101)).unwrap();
    let dials = times(&sim, a, "connecting");
    assert_eq!(dials.len(), 2, "{dials:?}");
    assert_eq!(dials[1], at);
}

/// With `restart_keeps_id`, a crashed node comes back with the same id and its topics.
#[test]
fn restart_keeps_id_and_topics() {
    let mut cfg = SimConfig::new(5);
    cfg.restart_keeps_id = true;
    let mut sim = Sim::new(cfg);
    let a = sim.add_node(Sim::node_config().with_mdns());
    let topic = bytes::Bytes::from_static(b"t");
    sim.schedule(
        Instant::ZERO,
        Action::Join {
            host: a,
            topic: topic.clone(),
            announce: true,
        },
    );
    sim.run_for(Duration::from_millis(10)).unwrap();
    let id = sim.core(a).unwrap().id().clone();
    sim.crash(a, HostState::Refusing);
    sim.restart(a);
    let core = sim.core(a).unwrap();
    assert_eq!(core.id(), &id);
    assert_eq!(core.topics().count(), 1);
}
