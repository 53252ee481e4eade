//! dns-discovery servers in the simulator: the real server engine on a simulated host and
//! swarm nodes (mDNS and the DHT off) that find each other only through it. See
//! `swarm_sim::scenarios::dns` for what each scenario asserts; `--nodes 1000` runs the full
//! size in release (`cargo run -p swarm-sim --release -- --scenario dns-server`).

use swarm_sim::scenarios::{self, Params};
use swarm_sim::Sim;

fn run(name: &str, seed: u64, nodes: Option<usize>) -> Sim {
    let f = scenarios::find(name).expect("scenario");
    let mut params = Params::new(seed);
    params.nodes = nodes;
    f(&params).unwrap_or_else(|v| panic!("{v}"))
}

fn count(sim: &Sim, name: &str) -> usize {
    let found = sim.counts().iter().find(|(n, _)| *n == name);
    found
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn two_hundred_nodes_across_segments_find_their_topic_through_one_server() {
    let sim = run("dns-server", 3, Some(200));
    assert_eq!(count(&sim, "pairs not found"), 0);
    assert_eq!(count(&sim, "server stored peers"), 200);
    // Four segments of 50 and the server's: every datagram crossed the routed internet.
    assert_eq!(sim.datagrams().unroutable, 0);
}

#[test]
fn behind_endpoint_independent_nat_whoami_learns_the_public_port() {
    for seed in 0..5 {
        let sim = run("dns-nat", seed, None);
        assert_eq!(count(&sim, "whoami ports confirmed"), 12, "seed {seed}");
        // Two NATed peers cannot reach each other (no hole punching, as in Node).
        assert_eq!(count(&sim, "NATed pairs kept apart"), 48, "seed {seed}");
    }
}

#[test]
fn behind_symmetric_nat_whoami_cannot_confirm_a_port_but_discovery_works() {
    for seed in 0..5 {
        let sim = run("dns-nat-symmetric", seed, None);
        assert_eq!(count(&sim, "whoami ports confirmed"), 0, "seed {seed}");
    }
}

#[test]
fn a_restarted_server_is_refilled_by_the_clients_next_rounds() {
    for seed in 0..5 {
        let sim = run("dns-restart", seed, None);
        assert_eq!(count(&sim, "stored after restart"), 15, "seed {seed}");
    }
}

#[test]
fn same_seed_same_trace() {
    let hash = |seed| {
        let f = scenarios::find("dns-server").expect("scenario");
        let mut params = Params::new(seed);
        params.nodes = Some(100);
        params.keep_trace = true;
        scenarios::Report::of(&f(&params).unwrap()).trace_hash
    };
    assert_eq!(hash(9), hash(9));
    assert_ne!(hash(9), hash(10));
}
