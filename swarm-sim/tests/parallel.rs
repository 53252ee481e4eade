//! A simulation split by segment across threads (`swarm_sim::parallel`): the same seed and
//! partition count give the same run, the partitions together find what one simulation
//! finds, and pipes between partitions are dropped once their ends close.

use bytes::Bytes;
use core::time::Duration;
use swarm_core::Instant;
use swarm_sim::{Action, Partition, SegmentConfig, Sim, SimConfig};

const SEGMENTS: usize = 4;
const PER_SEGMENT: usize = 6;
const NODES: usize = SEGMENTS * PER_SEGMENT;

/// Four segments of six nodes: mDNS within a segment, the DHT (bootstrapped from node 0,
/// rounds every 20 s) across them; every node joins one topic within the first 10 s.
fn network(seed: u64, max_connections: usize, partition: Option<Partition>) -> Sim {
    let mut cfg = SimConfig::new(seed);
    cfg.partition = partition;
    let mut sim = Sim::new(cfg);
    let boot = std::net::SocketAddr::from((swarm_sim::node::host_ip(0), 7000));
    let mut template = Sim::node_config()
        .with_mdns()
        .with_max_connections(max_connections)
        .with_dht(vec![boot]);
    template.dht_interval = Some(Duration::from_secs(20));
    for s in 0..SEGMENTS {
        let segment = if s == 0 {
            0
        } else {
            sim.add_segment(SegmentConfig::default())
        };
        for _ in 0..PER_SEGMENT {
            sim.add_node_on(segment, template.clone());
        }
    }
    let mut rng = swarm_sim::rng::SimRng::new(seed);
    for host in 0..NODES {
        let at = Instant::from_micros(rng.range(0, 10_000_000));
        let topic = Bytes::from_static(b"parallel");
        let announce = true;
        let join = Action::Join {
            host,
            topic,
            announce,
        };
        sim.schedule(at, join);
    }
    sim
}

/// What one partition shows at the end.
#[derive(Debug, PartialEq)]
struct Seen {
    trace_hash: u64,
    steps: u64,
    /// `connected()` of each core this partition runs.
    connected: Vec<usize>,
    live_pipes: usize,
    open_ends: usize,
}

fn seen(sim: &Sim) -> Seen {
    let cores = (0..sim.hosts()).filter_map(|h| sim.core(h));
    Seen {
        trace_hash: sim.trace().hash(),
        steps: sim.steps(),
        connected: cores.map(|c| c.connected()).collect(),
        live_pipes: sim.live_pipes(),
        open_ends: sim.open_ends(),
    }
}

fn partitioned(seed: u64, max_connections: usize, count: usize) -> Vec<Seen> {
    on_threads(seed, max_connections, count, count)
}

fn on_threads(seed: u64, max_connections: usize, count: usize, threads: usize) -> Vec<Seen> {
    let end = [Instant::ZERO + Duration::from_secs(90)];
    let mut out = Vec::new();
    swarm_sim::parallel::run(
        count,
        threads,
        |p| network(seed, max_connections, Some(p)),
        &end,
        seen,
        |_, all| out = all,
    )
    .unwrap_or_else(|v| panic!("{v}"));
    out
}

/// Unlimited connections: every node ends connected to every other, across partitions as
/// within one simulation.
#[test]
fn partitions_together_reach_the_full_mesh_one_simulation_reaches() {
    for seed in 0..3 {
        let mut one = network(seed, 0, None);
        one.run_until(Instant::ZERO + Duration::from_secs(90))
            .unwrap_or_else(|v| panic!("{v}"));
        assert_eq!(seen(&one).connected, vec![NODES - 1; NODES], "seed {seed}");
        for count in [2, 3] {
            let parts = partitioned(seed, 0, count);
            let connected: Vec<usize> = parts.iter().flat_map(|s| s.connected.clone()).collect();
            assert_eq!(
                connected,
                vec![NODES - 1; NODES],
                "seed {seed}, {count} partitions"
            );
        }
    }
}

/// Same seed and partition count, same run: each partition's trace hash and step count.
#[test]
fn a_partitioned_run_is_deterministic() {
    for seed in 0..3 {
        let a = partitioned(seed, 3, 2);
        let b = partitioned(seed, 3, 2);
        assert_eq!(a, b, "seed {seed}");
        assert_ne!(a, partitioned(seed + 100, 3, 2));
    }
}

/// The run depends on the partition count, not on how many threads share the partitions.
#[test]
fn a_partitioned_run_is_the_same_on_any_number_of_threads() {
    for seed in 0..3 {
        let on_one = on_threads(seed, 3, 4, 1);
        assert_eq!(on_one, on_threads(seed, 3, 4, 2), "seed {seed}");
        assert_eq!(on_one, on_threads(seed, 3, 4, 4), "seed {seed}");
    }
}

/// With a limit of 3, most dials are refused or lose to the duplicate rule: every pipe left
/// in a partition still has an end open there (none leak once both ends closed).
#[test]
fn pipes_between_partitions_are_dropped_once_their_ends_close() {
    for seed in 0..3 {
        for part in partitioned(seed, 3, 2) {
            assert!(part.live_pipes <= part.open_ends, "seed {seed}: {part:?}");
            assert!(
                part.connected.iter().all(|c| *c <= 3),
                "seed {seed}: {part:?}"
            );
        }
    }
}
