//! Scale benchmark: N nodes (default 10,000) on mDNS segments of 50, all public, with the
//! Mainline DHT bootstrapped from the first few nodes, join one topic (spread over the first
//! minute) and run for a while of simulated time (default 10 min). Prints simulated
//! node-seconds per wall second, datagram and connection counts, and the simulator's own
//! time per delivered datagram (wall time outside the cores divided by deliveries).
//!
//! `cargo run -p swarm-sim --release --bin swarm-sim-scale -- --nodes 10000 --minutes 10`
//! (wrap in `/usr/bin/time -v` for the peak memory; `--no-huge-pages` to run on 4 KiB pages).

use bytes::Bytes;
use clap::Parser;
use core::time::Duration;
use swarm_core::Instant;
use swarm_sim::{Action, SegmentConfig, Sim, SimConfig};

#[derive(Parser, Debug)]
#[command(about = "Scale benchmark of the simulator running the real core")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Nodes per LAN segment.
    #[arg(long, default_value_t = 50)]
    segment: usize,
    /// Simulated minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// DHT bootstrap nodes (the first hosts); 0 = no DHT.
    #[arg(long, default_value_t = 3)]
    bootstrap: usize,
    /// Joins are spread over this many seconds.
    #[arg(long, default_value_t = 60)]
    join_window: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Each node's `max_connections` (0 = unlimited: one topic then means a full mesh of
    /// N²/2 connections, which no real deployment of 10,000 nodes runs).
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// Also time the cores (to report the simulator's own overhead per datagram).
    #[arg(long)]
    measure: bool,
    /// Leave glibc's heap on 4 KiB pages (see `reexec_with_huge_pages`).
    #[arg(long)]
    no_huge_pages: bool,
}

/// glibc backs its heap with transparent huge pages only when asked, and reads that tunable
/// when the process starts, so the benchmark re-executes itself once with it set. Ten
/// thousand nodes are ~3 GB of small per-node tables touched in no useful order; on 4 KiB
/// pages the TLB misses cost a fifth of the run (measured: 158 s against 130 s for 10,000
/// nodes x 2 min). Other allocators and libcs ignore the variable.
#[cfg(target_os = "linux")]
fn reexec_with_huge_pages() {
    use std::os::unix::process::CommandExt;
    const TUNABLE: &str = "glibc.malloc.hugetlb=1";
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains("glibc.malloc.hugetlb") {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let value = if current.is_empty() {
        TUNABLE.to_string()
    } else {
        format!("{current}:{TUNABLE}")
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", value)
        .exec();
    eprintln!("could not re-execute with huge pages ({err}); running on 4 KiB pages");
}

#[cfg(not(target_os = "linux"))]
fn reexec_with_huge_pages() {}

fn main() {
    let args = Args::parse();
    if !args.no_huge_pages {
        reexec_with_huge_pages();
    }
    let mut cfg = SimConfig::new(args.seed);
    cfg.measure_core = args.measure;
    cfg.app_data = false;
    cfg.keep_log = false;
    // Segments as a real TCP stack sends them: a 33-byte handshake is one packet (the
    // default cuts writes into random chunks of up to 16 bytes to test the decoders).
    cfg.net.max_chunk = 1460;
    cfg.net.random_chunks = false;
    cfg.trace_events = false;
    let mut sim = Sim::new(cfg);
    let bootstrap: Vec<_> = (0..args.bootstrap.min(args.nodes))
        .map(|i| {
            std::net::SocketAddr::from((swarm_sim::node::host_ip(i), swarm_sim::node::LISTEN_PORT))
        })
        .collect();
    let mut template = Sim::node_config()
        .with_mdns()
        .with_max_connections(args.max_connections);
    if args.bootstrap > 0 {
        template = template.with_dht(bootstrap);
    }
    let built = std::time::Instant::now();
    let mut segment = 0;
    for i in 0..args.nodes {
        if i > 0 && i % args.segment.max(1) == 0 {
            segment = sim.add_segment(SegmentConfig::default());
        }
        sim.add_node_on(segment, template.clone());
    }
    let mut rng = swarm_sim::rng::SimRng::new(args.seed);
    let topic = Bytes::from_static(b"swarm-sim scale");
    for host in 0..args.nodes {
        let at = Instant::from_micros(rng.range(0, args.join_window * 1_000_000));
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
    let build_time = built.elapsed();
    let simulated = Duration::from_secs_f64(args.minutes * 60.0);
    let started = std::time::Instant::now();
    let mut next_report = Duration::from_secs(60);
    while sim.now() < Instant::ZERO + simulated {
        let step = next_report.min(simulated);
        if let Err(v) = sim.run_until(Instant::ZERO + step) {
            eprintln!("{v}");
            std::process::exit(1);
        }
        let d = sim.datagrams();
        let k = sim.step_kinds();
        eprintln!(
            "t={:>4}s wall={:>7.2?} steps={} (pipe packets {}, timers {}, datagrams {}) \
             datagrams delivered={} links={}",
            step.as_secs(),
            started.elapsed(),
            sim.steps(),
            k.packets,
            k.timers,
            k.datagrams,
            d.delivered,
            sim.links().len()
        );
        next_report += Duration::from_secs(60);
    }
    let wall = started.elapsed();
    let d = sim.datagrams();
    let links = sim.links().len();
    let node_seconds = args.nodes as f64 * simulated.as_secs_f64();
    println!(
        "nodes={} segments of {} max_connections={} dht_bootstrap={} simulated={}s wall={:.2?} \
         (build {:.2?})",
        args.nodes,
        args.segment,
        args.max_connections,
        args.bootstrap,
        simulated.as_secs(),
        wall,
        build_time
    );
    println!(
        "node-seconds per wall second: {:.0}; steps={} ({:.0}/s); datagrams sent={} delivered={} \
         lost={} unroutable={}; links at the end={links}",
        node_seconds / wall.as_secs_f64(),
        sim.steps(),
        sim.steps() as f64 / wall.as_secs_f64(),
        d.sent,
        d.delivered,
        d.lost,
        d.unroutable
    );
    let mut c = swarm_core::Stats::default();
    let mut known_peers = 0;
    for h in 0..sim.hosts() {
        let Some(core) = sim.core(h) else {
            continue;
        };
        known_peers += core.known_peers();
        let s = core.stats();
        c.dials_attempted += s.dials_attempted;
        c.dials_failed += s.dials_failed;
        c.inbound_accepted += s.inbound_accepted;
        c.inbound_refused += s.inbound_refused;
        c.outbound_opened += s.outbound_opened;
        c.redundant += s.redundant;
        c.handshakes_failed += s.handshakes_failed;
        c.rejected += s.rejected;
        c.dropped += s.dropped;
    }
    println!(
        "all cores: dials {} (failed {}), inbound accepted {} (refused {}), outbound \
         connections {}, redundant {}, handshakes failed {}, candidates rejected {}, peers \
         dropped after retries {}; known peers {known_peers}",
        c.dials_attempted,
        c.dials_failed,
        c.inbound_accepted,
        c.inbound_refused,
        c.outbound_opened,
        c.redundant,
        c.handshakes_failed,
        c.rejected,
        c.dropped
    );
    if args.measure {
        let core = sim.core_time();
        let outside = wall.saturating_sub(core);
        println!(
            "time in cores {core:.2?}, outside {outside:.2?}: simulator overhead {:.0} ns per \
             step, {:.0} ns per delivered datagram (all simulator time / deliveries)",
            outside.as_nanos() as f64 / sim.steps().max(1) as f64,
            outside.as_nanos() as f64 / d.delivered.max(1) as f64
        );
    }
}
