//! uTP as datagrams in the simulator: the cores run uTP themselves over a lossy, duplicating,
//! reordering internet with delay spikes, and every payload arrives intact (checked byte by
//! byte by the simulated application; see `swarm_sim::scenarios::utp`).

use swarm_sim::scenarios::utp::PAYLOAD;
use swarm_sim::scenarios::{self, Params, Report};

fn run(seed: u64) -> Report {
    let f = scenarios::find("utp").expect("scenario");
    let mut params = Params::new(seed);
    params.keep_trace = true;
    Report::of(&f(&params).unwrap_or_else(|v| panic!("{v}")))
}

#[test]
fn every_payload_arrives_intact_through_loss_duplication_and_reordering() {
    for seed in 0..10 {
        let report = run(seed);
        let count = |name: &str| {
            report
                .counts
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c as u64)
                .unwrap()
        };
        // 6 nodes: 15 pairs, a payload each way (the scenario checks each pair; a connection
        // replaced by the duplicate rule may have carried some bytes too).
        assert!(count("uTP bytes delivered") >= 30 * PAYLOAD, "seed {seed}");
        assert!(
            count("datagrams lost") > 0,
            "seed {seed}: the internet lost nothing"
        );
        assert!(report.datagrams.duplicated > 0, "seed {seed}");
    }
}

#[test]
fn same_seed_same_trace() {
    assert_eq!(run(21).trace_hash, run(21).trace_hash);
    assert_ne!(run(21).trace_hash, run(22).trace_hash);
}
