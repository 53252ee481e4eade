//! LAN scenarios: nodes on multicast segments join one topic and find each other by
//! multicast DNS alone (no `add_peer`), through the core's real dns-discovery engine.

use super::{ensure, sim_config, Params};
use crate::invariants::Violation;
use crate::network::{HostId, SegmentConfig};
use crate::rng::{derive, SimRng};
use crate::sim::{Action, Sim};
use bytes::Bytes;
use core::time::Duration;
use std::collections::BTreeSet;
use swarm_core::{BanReason, Event, Instant};

/// The topic every node joins.
pub const TOPIC: &[u8] = b"swarm-sim lan";
/// Nodes join at random instants in `[0, JOIN_WINDOW)`.
pub const JOIN_WINDOW: Duration = Duration::from_secs(2);
/// Full mesh within this long after the first join, without loss (a round trip of query
/// and answers, then a TCP connect and handshake, well inside the first round).
pub const BOUND: Duration = Duration::from_secs(5);
/// With 20% loss: a pair may need a second round (rounds are 60-70 s apart).
pub const BOUND_LOSSY: Duration = Duration::from_secs(75);
/// After convergence the mesh must survive this long unchanged: two more rounds for every
/// node, so rediscovering connected peers is exercised.
pub const HOLD: Duration = Duration::from_secs(140);
/// How often convergence is checked.
const TICK: Duration = Duration::from_millis(50);

pub fn lan(p: &Params) -> Result<Sim, Violation> {
    let n = p.nodes.unwrap_or(50);
    run(p, "lan", &[(n, SegmentConfig::default())], BOUND)
}

pub fn lan_lossy(p: &Params) -> Result<Sim, Violation> {
    let n = p.nodes.unwrap_or(50);
    let lossy = SegmentConfig {
        loss: 0.2,
        duplicate: 0.02,
    };
    run(p, "lan-lossy", &[(n, lossy)], BOUND_LOSSY)
}

pub fn lan_split(p: &Params) -> Result<Sim, Violation> {
    let n = p.nodes.unwrap_or(40);
    let seg = SegmentConfig::default();
    run(p, "lan-split", &[(n / 2, seg), (n - n / 2, seg)], BOUND)
}

/// Builds the segments (`(nodes, odds)` each), lets every node join [`TOPIC`], and checks:
/// every pair on a segment is connected within `bound` and no pair across segments ever
/// is; the mesh holds for [`HOLD`] with no new `connection`; after everyone leaves the
/// topic the network goes quiet with exactly one connection per pair, the same at both
/// ends; no node ever learns an address from another segment or dials itself.
/// (Without loss, the hold must also see no `connection` event at all.)
fn run(
    p: &Params,
    name: &str,
    segments: &[(usize, SegmentConfig)],
    bound: Duration,
) -> Result<Sim, Violation> {
    let mut sim = Sim::new(sim_config(name, p));
    let lossy = segments.iter().any(|(_, s)| s.loss > 0.0);
    let mut rng = SimRng::new(derive(p.seed, &[200]));
    let mut groups: Vec<Vec<HostId>> = Vec::new();
    for (i, (count, odds)) in segments.iter().enumerate() {
        let seg = if i == 0 {
            sim.set_segment(0, *odds);
            0
        } else {
            sim.add_segment(*odds)
        };
        let config = Sim::node_config().with_mdns();
        groups.push(
            (0..*count)
                .map(|_| sim.add_node_on(seg, config.clone()))
                .collect(),
        );
    }
    let topic = Bytes::from_static(TOPIC);
    let window = JOIN_WINDOW.as_micros() as u64;
    for &host in groups.iter().flatten() {
        let at = Instant::from_micros(rng.range(0, window));
        let (topic, announce) = (topic.clone(), true);
        sim.schedule(
            at,
            Action::Join {
                host,
                topic,
                announce,
            },
        );
    }
    let want: BTreeSet<(HostId, HostId)> = groups
        .iter()
        .flat_map(|g| {
            g.iter()
                .enumerate()
                .flat_map(move |(i, a)| g[i + 1..].iter().map(move |b| (*a, *b)))
        })
        .collect();
    let converged = await_mesh(&mut sim, &want, bound)?;
    sim.mark("converged", converged);
    let opened = connections(&sim);
    sim.run_for(HOLD)?;
    ensure(&sim, sim.connected_pairs() == want, || {
        "the mesh changed after convergence".into()
    })?;
    // Without loss both ends of every pair dialled each other in the first round, so the
    // rediscovered peer is known by id and never redialled. With loss, a node that only
    // holds an inbound connection from a peer does redial it when it first hears of it,
    // and Node's duplicate rule may swap the connection (the pair stays connected).
    let later = connections(&sim) - opened;
    ensure(&sim, later == 0 || lossy, || {
        format!("{later} connection events after convergence")
    })?;
    for &host in groups.iter().flatten() {
        let topic = topic.clone();
        sim.schedule(sim.now(), Action::Leave { host, topic });
    }
    sim.run_to_quiescence(super::QUIET)?;
    ensure(&sim, sim.connected_pairs() == want, || {
        "the mesh changed after leaving the topic".into()
    })?;
    ensure(&sim, sim.links().len() == want.len(), || {
        format!("{} connections for {} pairs", sim.links().len(), want.len())
    })?;
    check_locality(&sim)?;
    Ok(sim)
}

/// Runs until every pair in `want` (and no other) is connected and no node is dialling or
/// handshaking; returns when the last of those connections was made.
fn await_mesh(
    sim: &mut Sim,
    want: &BTreeSet<(HostId, HostId)>,
    bound: Duration,
) -> Result<Instant, Violation> {
    let deadline = Instant::ZERO + bound;
    loop {
        let pairs = sim.connected_pairs();
        let stray = pairs.difference(want).next().copied();
        if let Some((a, b)) = stray {
            return Err(sim.violation(format!("n{a} and n{b} connected across segments")));
        }
        let busy = (0..sim.hosts()).any(|h| sim.core(h).is_some_and(|c| c.connecting() > 0));
        if pairs == *want && !busy {
            let last = sim
                .log()
                .iter()
                .rev()
                .find(|e| e.event.name() == "connection");
            return Ok(last.map_or(sim.now(), |e| e.at));
        }
        if sim.now() >= deadline {
            let missing = want.difference(&pairs).count();
            return Err(sim.violation(format!(
                "no full mesh within {bound:?}: {missing} of {} pairs missing",
                want.len()
            )));
        }
        sim.run_for(TICK)?;
    }
}

fn connections(sim: &Sim) -> usize {
    let is_conn = |e: &&crate::sim::LogEntry| matches!(e.event, Event::Connection { .. });
    sim.log().iter().filter(is_conn).count()
}

/// No node heard of a host on another segment, nor discovered and banned itself.
fn check_locality(sim: &Sim) -> Result<(), Violation> {
    for e in sim.log() {
        match &e.event {
            Event::Peer(p) => {
                let other = (0..sim.hosts()).find(|o| sim.addr(*o).ip() == p.addr.ip());
                let crosses = other.map_or(true, |o| sim.segment(o) != sim.segment(e.host));
                ensure(sim, !crosses, || {
                    format!("n{} learned {} from another segment", e.host, p.addr)
                })?;
            }
            Event::PeerBanned { reason, .. } => {
                ensure(sim, *reason != BanReason::DetectedSelf, || {
                    format!("n{} discovered itself", e.host)
                })?;
            }
            _ => {}
        }
    }
    Ok(())
}
