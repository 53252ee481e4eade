//! Scale benchmark: N nodes (default 10,000) on mDNS segments of 50, all public, with the
//! Mainline DHT bootstrapped from the first few nodes, join one topic (spread over the first
//! minute) and run for a while of simulated time (default 10 min). Prints simulated
//! node-seconds per wall second, datagram and connection counts, and the simulator's own
//! time per delivered datagram (wall time outside the cores divided by deliveries).
//!
//! `cargo run -p swarm-sim --release --bin swarm-sim-scale -- --nodes 10000 --minutes 10
//! --threads 2 --partitions 8`
//! (wrap in `/usr/bin/time -v` for the peak memory).
//!
//! The heap is mimalloc's (see swarm-sim's Cargo.toml), which backs it with transparent huge
//! pages: ten thousand nodes are ~3 GB of small per-node tables touched in no useful order,
//! and on 4 KiB pages the TLB misses cost a fifth of the run (measured on glibc: 158 s
//! against 130 s for 10,000 nodes x 2 min). `MIMALLOC_ALLOW_THP=0` runs on 4 KiB pages.

use bytes::Bytes;
use clap::Parser;
use core::time::Duration;
use swarm_core::Instant;
use swarm_sim::{Action, DatagramStats, Partition, SegmentConfig, Sim, SimConfig, StepKinds};

/// See swarm-sim's Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Threads that run the partitions (`swarm_sim::parallel`); with one partition, the
    /// simulation runs on this thread. A partitioned run is deterministic for a given seed
    /// and partition count, but not the same run as another count's.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Simulated seconds between report lines.
    #[arg(long, default_value_t = 60)]
    report_every: u64,
    /// Partitions the threads share, taken one by one in each window (default: one per
    /// thread). More than threads balance the windows' uneven work; the run depends on the
    /// partition count, not on the thread count.
    #[arg(long)]
    partitions: Option<usize>,
}

/// mimalloc's `mi_option_purge_delay`: 15 in `mi_option_e` of mimalloc.h, in v2 and v3
/// alike (retired options keep their slots, so the numbers are part of the ABI); the Rust
/// bindings do not name it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc hands memory that stayed free for a second back to the kernel, and the run then
/// faults it back in, zeroed again: the network's memory grows and shrinks as pipes, dials
/// and DHT lookups come and go. Keeping it: 32.3/33.8 s against 35.5/36.1 s for 6,000 nodes x
/// 2 min on 2 threads (ABBA), for 1% more peak memory.
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's options, an integer it reads when it next considers
    // purging; -1 (never purge) is a documented value.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// The whole network (or one partition's share of it), its joins scheduled.
fn build(args: &Args, partition: Option<Partition>) -> Sim {
    let mut cfg = SimConfig::new(args.seed);
    cfg.measure_core = args.measure;
    cfg.app_data = false;
    cfg.keep_log = false;
    // Segments as a real TCP stack sends them: a 33-byte handshake is one packet (the
    // default cuts writes into random chunks of up to 16 bytes to test the decoders).
    cfg.net.max_chunk = 1460;
    cfg.net.random_chunks = false;
    cfg.trace_events = false;
    cfg.partition = partition;
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
    sim
}

/// What a report line sums over the simulation's (or the partitions') hosts.
#[derive(Default)]
struct Snapshot {
    steps: u64,
    kinds: StepKinds,
    datagrams: DatagramStats,
    /// Sum of the cores' `connected()`: each connection counted at both ends.
    connected: usize,
    known_peers: usize,
    stats: swarm_core::Stats,
    core_time: Duration,
}

impl Snapshot {
    fn of(sim: &Sim) -> Snapshot {
        let mut s = Snapshot {
            steps: sim.steps(),
            kinds: sim.step_kinds(),
            datagrams: sim.datagrams(),
            core_time: sim.core_time(),
            ..Snapshot::default()
        };
        for core in (0..sim.hosts()).filter_map(|h| sim.core(h)) {
            s.connected += core.connected();
            s.known_peers += core.known_peers();
            add_stats(&mut s.stats, &core.stats());
        }
        s
    }

    fn sum(all: Vec<Snapshot>) -> Snapshot {
        all.into_iter().fold(Snapshot::default(), |mut a, b| {
            a.steps += b.steps;
            a.kinds.packets += b.kinds.packets;
            a.kinds.timers += b.kinds.timers;
            a.kinds.datagrams += b.kinds.datagrams;
            a.kinds.actions += b.kinds.actions;
            a.datagrams.sent += b.datagrams.sent;
            a.datagrams.delivered += b.datagrams.delivered;
            a.datagrams.lost += b.datagrams.lost;
            a.datagrams.duplicated += b.datagrams.duplicated;
            a.datagrams.unroutable += b.datagrams.unroutable;
            a.connected += b.connected;
            a.known_peers += b.known_peers;
            add_stats(&mut a.stats, &b.stats);
            a.core_time += b.core_time;
            a
        })
    }
}

/// Adds the counters the report prints.
fn add_stats(total: &mut swarm_core::Stats, c: &swarm_core::Stats) {
    total.dials_attempted += c.dials_attempted;
    total.dials_failed += c.dials_failed;
    total.dials_yielded += c.dials_yielded;
    total.inbound_accepted += c.inbound_accepted;
    total.inbound_refused += c.inbound_refused;
    total.outbound_opened += c.outbound_opened;
    total.redundant += c.redundant;
    total.handshakes_failed += c.handshakes_failed;
    total.rejected += c.rejected;
    total.dropped += c.dropped;
}

fn main() {
    keep_freed_memory();
    let args = Args::parse();
    let simulated = Duration::from_secs_f64(args.minutes * 60.0);
    // A report every `report_every` simulated seconds, and at the end.
    let mut checkpoints = Vec::new();
    let mut reached = Duration::ZERO;
    let every = Duration::from_secs(args.report_every.max(1));
    while reached < simulated {
        reached = (reached + every).min(simulated);
        checkpoints.push(Instant::ZERO + reached);
    }
    let started = std::time::Instant::now();
    let mut last = Snapshot::default();
    let mut line = |at: usize, s: Snapshot| {
        eprintln!(
            "t={:>4}s wall={:>7.2?} steps={} (pipe packets {}, timers {}, datagrams {}) \
             datagrams delivered={} connections={}",
            checkpoints[at].as_micros() / 1_000_000,
            started.elapsed(),
            s.steps,
            s.kinds.packets,
            s.kinds.timers,
            s.kinds.datagrams,
            s.datagrams.delivered,
            s.connected / 2
        );
        last = s;
    };
    let partitions = args.partitions.unwrap_or(args.threads).max(1);
    if partitions <= 1 {
        let mut sim = build(&args, None);
        for (at, checkpoint) in checkpoints.iter().enumerate() {
            if let Err(v) = sim.run_until(*checkpoint) {
                eprintln!("{v}");
                std::process::exit(1);
            }
            line(at, Snapshot::of(&sim));
        }
    } else {
        let run = swarm_sim::parallel::run(
            partitions,
            args.threads,
            |p| build(&args, Some(p)),
            &checkpoints,
            Snapshot::of,
            |at, all| line(at, Snapshot::sum(all)),
        );
        match run {
            Ok(times) => {
                for (i, t) in times.iter().enumerate() {
                    eprintln!(
                        "thread {i}: running {:.2?}, waiting for the others {:.2?} \
                         ({} windows)",
                        t.running, t.waiting, t.windows
                    );
                }
            }
            Err(v) => {
                eprintln!("{v}");
                std::process::exit(1);
            }
        }
    }
    let wall = started.elapsed();
    let (s, d, c) = (&last, last.datagrams, last.stats);
    let node_seconds = args.nodes as f64 * simulated.as_secs_f64();
    println!(
        "nodes={} segments of {} max_connections={} dht_bootstrap={} threads={} simulated={}s \
         wall={:.2?} (building included)",
        args.nodes,
        args.segment,
        args.max_connections,
        args.bootstrap,
        args.threads.max(1),
        simulated.as_secs(),
        wall,
    );
    println!(
        "node-seconds per wall second: {:.0}; steps={} ({:.0}/s); datagrams sent={} delivered={} \
         lost={} unroutable={}; connections at the end={}",
        node_seconds / wall.as_secs_f64(),
        s.steps,
        s.steps as f64 / wall.as_secs_f64(),
        d.sent,
        d.delivered,
        d.lost,
        d.unroutable,
        s.connected / 2
    );
    println!(
        "all cores: dials {} (failed {}, yielded to inbound {}), inbound accepted {} (refused {}), outbound \
         connections {}, redundant {}, handshakes failed {}, candidates rejected {}, peers \
         dropped after retries {}; known peers {}",
        c.dials_attempted,
        c.dials_failed,
        c.dials_yielded,
        c.inbound_accepted,
        c.inbound_refused,
        c.outbound_opened,
        c.redundant,
        c.handshakes_failed,
        c.rejected,
        c.dropped,
        s.known_peers
    );
    if args.measure {
        // With threads, core time is summed over them: the overhead is per CPU, not wall.
        let busy = wall * args.threads.max(1) as u32;
        let outside = busy.saturating_sub(s.core_time);
        println!(
            "time in cores {:.2?}, outside {outside:.2?}: simulator overhead {:.0} ns per \
             step, {:.0} ns per delivered datagram (all simulator time / deliveries)",
            s.core_time,
            outside.as_nanos() as f64 / s.steps.max(1) as f64,
            outside.as_nanos() as f64 / d.delivered.max(1) as f64
        );
    }
}
