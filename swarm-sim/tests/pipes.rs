//! The TCP model's pipes: how writes become packets.

use core::time::Duration;
use swarm_sim::{Sim, SimConfig};

/// Pipe packets a TCP-only pair exchanges to connect (no application data).
fn packets_to_connect(random_chunks: bool, seed: u64) -> u64 {
    let mut cfg = SimConfig::new(seed);
    cfg.app_data = false;
    cfg.net.max_chunk = 1460;
    cfg.net.random_chunks = random_chunks;
    let mut sim = Sim::new(cfg);
    let mut template = Sim::node_config();
    template.utp = false;
    let a = sim.add_node(template.clone());
    let b = sim.add_node(template);
    sim.add_peer(a, b).unwrap_or_else(|v| panic!("{v}"));
    sim.run_to_quiescence(Duration::from_secs(30))
        .unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(sim.links().len(), 1, "seed {seed}");
    sim.step_kinds().packets
}

/// As a TCP stack sends it, a 33-byte handshake is one segment: the SYN, its accept and one
/// handshake packet each way. Random chunks cut the same handshakes into several packets.
#[test]
fn whole_segments_carry_each_handshake_in_one_packet() {
    for seed in 0..5 {
        assert_eq!(packets_to_connect(false, seed), 4, "seed {seed}");
        assert!(packets_to_connect(true, seed) > 4, "seed {seed}");
    }
}
