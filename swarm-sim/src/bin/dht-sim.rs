//! `dht-sim`: a Mainline DHT network of real `DhtNode`s on the virtual clock (see
//! `swarm_sim::dhtnet`), reporting lookup success, queries and latency per lookup.
//!
//!   cargo run -p swarm-sim --release --bin dht-sim -- --nodes 10000 --loss 0.1 --crash 0.1

use clap::Parser;
use std::time::{Duration, Instant};
use swarm_sim::dhtnet::{run, DhtNetConfig};

/// See swarm-sim's Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Share of datagrams lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Share of nodes crashing after the announces.
    #[arg(long, default_value_t = 0.0)]
    crash: f64,
    #[arg(long, default_value_t = 10)]
    topics: usize,
    #[arg(long, default_value_t = 3)]
    announcers: usize,
    #[arg(long, default_value_t = 20)]
    seekers: usize,
    /// Milliseconds between two nodes joining.
    #[arg(long, default_value_t = 20)]
    join_every_ms: u64,
    /// Run the seed twice and compare the reports (trace hash included).
    #[arg(long)]
    check_determinism: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut config = DhtNetConfig::new(args.seed, args.nodes);
    config.loss = args.loss;
    config.crash = args.crash;
    config.topics = args.topics;
    config.announcers = args.announcers;
    config.seekers = args.seekers;
    config.join_every = Duration::from_millis(args.join_every_ms);
    let started = Instant::now();
    let report = run(config.clone());
    let wall = started.elapsed().as_secs_f64();
    println!(
        "nodes {} loss {} crash {}: {}/{} lookups found a live announcer ({:.2}%), {} found all; \
         {:.1} queries/lookup; lookup {:.0} ms p50, {:.0} ms p99; first peer {:.0} ms p50; \
         {} datagrams delivered, {} lost; trace {:016x}; wall {:.1} s",
        args.nodes,
        args.loss,
        args.crash,
        report.succeeded,
        report.lookups,
        report.success_rate() * 100.0,
        report.found_all,
        report.queries_per_lookup,
        report.latency_ms_p50,
        report.latency_ms_p99,
        report.first_peer_ms_p50,
        report.delivered,
        report.lost,
        report.trace_hash,
        wall
    );
    if args.check_determinism {
        let again = run(config);
        if again != report {
            eprintln!(
                "dht-sim: seed {} is not deterministic: {again:?}",
                args.seed
            );
            return std::process::ExitCode::FAILURE;
        }
        println!("deterministic: the second run gave the same report");
    }
    std::process::ExitCode::SUCCESS
}
