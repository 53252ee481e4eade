//! LAN scenarios: nodes find each other by multicast DNS alone (the core's real
//! dns-discovery engine) over simulated multicast segments. Every invariant is checked
//! after every step; see `swarm_sim::scenarios::lan` for what each scenario asserts.

use core::time::Duration;
use swarm_core::{Event, Instant};
use swarm_sim::scenarios::lan::{BOUND, BOUND_LOSSY, TOPIC};
use swarm_sim::scenarios::{self, Params};
use swarm_sim::{SegmentConfig, Sim, SimConfig};

fn run(name: &str, seed: u64) -> Sim {
    let f = scenarios::find(name).expect("scenario");
    f(&Params::new(seed)).unwrap_or_else(|v| panic!("{v}"))
}

fn converged(sim: &Sim) -> Instant {
    let mark = sim.marks().iter().find(|(m, _)| *m == "converged");
    mark.expect("converged mark").1
}

/// Scenario (a): 50 nodes on one segment join one topic: a full mesh (1225 pairs, one
/// connection each, the same at both ends) within 5 s, unchanged through two more rounds.
#[test]
fn lan_50_nodes_reach_full_mesh() {
    for seed in 0..3 {
        let sim = run("lan", seed);
        assert_eq!(sim.links().len(), 50 * 49 / 2, "seed {seed}");
        assert!(converged(&sim) <= Instant::ZERO + BOUND, "seed {seed}");
        let d = sim.datagrams();
        assert_eq!((d.lost, d.duplicated, d.unroutable), (0, 0, 0));
        // Every step is counted once, by kind; with no loss every arrival is a delivery.
        let k = sim.step_kinds();
        assert_eq!(k.packets + k.timers + k.datagrams + k.actions, sim.steps());
        assert_eq!(k.datagrams, d.delivered, "seed {seed}");
        assert!(k.packets >= 4 * 1225 && k.timers > 0, "seed {seed}: {k:?}");
    }
}

/// Scenario (b): the same with 20% datagram loss (and 2% duplication): still a full mesh,
/// within 75 s (a pair may have to wait for the next round, 60-70 s later).
#[test]
fn lan_50_nodes_reach_full_mesh_despite_loss() {
    for seed in 0..3 {
        let sim = run("lan-lossy", seed);
        assert_eq!(sim.links().len(), 50 * 49 / 2, "seed {seed}");
        assert!(
            converged(&sim) <= Instant::ZERO + BOUND_LOSSY,
            "seed {seed}"
        );
        let d = sim.datagrams();
        let lost = d.lost as f64 / (d.delivered + d.lost) as f64;
        assert!((0.15..0.25).contains(&lost), "seed {seed}: loss {lost}");
        assert!(d.duplicated > 0);
    }
}

/// Scenario (c): two segments of 20: each meshes, nothing connects across, and no node
/// ever hears of a host on the other segment.
#[test]
fn lan_two_segments_mesh_separately() {
    for seed in 0..5 {
        let sim = run("lan-split", seed);
        assert_eq!(sim.links().len(), 2 * (20 * 19 / 2), "seed {seed}");
        for (a, b) in sim.connected_pairs() {
            assert_eq!(sim.segment(a), sim.segment(b), "seed {seed}");
        }
    }
}

/// Same seed, same trace; another seed, another trace.
#[test]
fn lan_is_deterministic() {
    for name in ["lan-lossy", "lan-split"] {
        let mut p = Params::new(4);
        p.nodes = Some(12);
        p.keep_trace = true;
        let a = scenarios::run(name, &p).unwrap_or_else(|v| panic!("{v}"));
        let b = scenarios::run(name, &p).unwrap_or_else(|v| panic!("{v}"));
        assert_eq!(a.lines, b.lines, "{name}");
        assert_eq!(a.datagrams, b.datagrams, "{name}");
        p.seed = 5;
        let c = scenarios::run(name, &p).unwrap_or_else(|v| panic!("{v}"));
        assert_ne!(
            a.trace_hash, c.trace_hash,
            "{name}: the seed changes nothing"
        );
    }
}

/// A small seed sweep over every LAN scenario with fewer nodes.
#[test]
fn lan_seed_sweep() {
    for name in ["lan", "lan-lossy", "lan-split"] {
        for seed in 10..30 {
            let mut p = Params::new(seed);
            p.nodes = Some(10);
            scenarios::run(name, &p).unwrap_or_else(|v| panic!("{v}"));
        }
    }
}

fn joined_pair(loss: f64, split: bool) -> Sim {
    let mut sim = Sim::new(SimConfig::new(1));
    let other = if split {
        sim.add_segment(SegmentConfig::default())
    } else {
        0
    };
    sim.set_segment(
        0,
        SegmentConfig {
            loss,
            duplicate: 0.0,
        },
    );
    let a = sim.add_node_on(0, Sim::node_config().with_mdns());
    let b = sim.add_node_on(other, Sim::node_config().with_mdns());
    for h in [a, b] {
        sim.with_core(h, |core, now| core.join(now, TOPIC, true))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(200)).unwrap();
    sim
}

/// Prefetching is a hint: a LAN of 30 with it on from the first host runs exactly as with
/// it off (the same trace, step for step).
#[test]
fn prefetching_changes_nothing() {
    let run = |min_hosts: usize| {
        let mut cfg = SimConfig::new(7);
        cfg.prefetch_min_hosts = min_hosts;
        let mut sim = Sim::new(cfg);
        let hosts: Vec<_> = (0..30)
            .map(|_| sim.add_node_on(0, Sim::node_config().with_mdns()))
            .collect();
        for h in hosts {
            sim.with_core(h, |core, now| core.join(now, TOPIC, true))
                .unwrap();
        }
        sim.run_for(Duration::from_secs(130)).unwrap();
        (sim.trace().hash(), sim.steps(), sim.links().len())
    };
    let (with, without) = (run(0), run(usize::MAX));
    assert_eq!(with, without);
    assert_eq!(with.2, 30 * 29 / 2);
}

/// Multicast loopback: a lone round's query reaches its sender (and nobody else's segment).
#[test]
fn multicast_stays_on_its_segment() {
    let sim = joined_pair(0.0, true);
    assert!(sim.connected_pairs().is_empty());
    let d = sim.datagrams();
    // Each query comes back to its sender, and each node answers its own query (the
    // echo is then recognised by its token).
    assert!(d.sent >= 8 && d.delivered == d.sent, "{d:?}");
    assert!(sim.log().iter().all(|e| !matches!(e.event, Event::Peer(_))));
}

/// Total loss between hosts: they never meet, though each hears itself.
#[test]
fn total_loss_isolates() {
    let sim = joined_pair(1.0, false);
    assert!(sim.connected_pairs().is_empty());
    let d = sim.datagrams();
    assert!(d.lost > 0 && d.delivered == d.sent, "{d:?}");
    let lossless = joined_pair(0.0, false);
    assert_eq!(lossless.connected_pairs().len(), 1);
}
