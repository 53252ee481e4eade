//! DHT networks on the virtual clock (`swarm_sim::dhtnet`): fresh nodes find announced
//! topics, within a bounded number of queries, through datagram loss and crashed nodes.

use swarm_sim::dhtnet::{run, DhtNetConfig};

#[test]
fn a_thousand_nodes_with_loss_and_crashes_still_find_every_topic() {
    let mut config = DhtNetConfig::new(11, 1000);
    config.loss = 0.10;
    config.crash = 0.10;
    let report = run(config);
    assert_eq!(report.lookups, 200);
    assert!(report.success_rate() >= 0.99, "{report:?}");
    assert!(report.lost > 0);
    assert!(report.queries_per_lookup < 40.0, "{report:?}");
}

#[test]
fn without_faults_every_lookup_finds_every_announcer_in_few_queries() {
    let mut config = DhtNetConfig::new(12, 500);
    config.seekers = 10;
    let report = run(config);
    assert_eq!(report.found_all, report.lookups, "{report:?}");
    // alpha 4, K 8: a lookup that converges asks a few dozen nodes at most.
    assert!(report.queries_per_lookup < 30.0, "{report:?}");
    assert!(report.first_peer_ms_p50 < 1000.0, "{report:?}");
}

#[test]
fn same_seed_same_report() {
    let mut config = DhtNetConfig::new(13, 300);
    config.loss = 0.05;
    config.crash = 0.05;
    config.seekers = 5;
    let a = run(config.clone());
    let b = run(config);
    assert_eq!(a, b);
    assert_ne!(a.trace_hash, 0);
}
