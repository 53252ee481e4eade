//! `swarm-sim`: run simulation scenarios by seed, sweep seeds, check determinism.

use clap::Parser;
use std::process::ExitCode;
use swarm_sim::scenarios::{self, Params, Report};
use swarm_sim::{Violation, SCENARIOS};

/// See swarm-sim's Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulator for the swarm core")]
struct Args {
    /// Run seed (the first seed of a sweep).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sweep this many consecutive seeds starting at --seed.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Number of nodes, for scenarios that take it.
    #[arg(long)]
    nodes: Option<usize>,
    /// Scenario name, or `all` (default: the randomised VOPR run).
    #[arg(long, default_value = "vopr")]
    scenario: String,
    /// Run each seed twice and compare the trace hashes.
    #[arg(long)]
    check_determinism: bool,
    /// Also require connected + connecting <= max_connections on every node.
    #[arg(long)]
    strict_total: bool,
    /// VOPR: turn the DHT on in half the runs (rounds every 20 s).
    #[arg(long)]
    vopr_dht: bool,
    /// VOPR: in half the runs the uTP nodes run uTP themselves, as datagrams over the
    /// simulated network (instead of pipes).
    #[arg(long)]
    vopr_utp: bool,
    /// Print the event trace; optionally only lines about some nodes and topics, e.g.
    /// `--trace node=3,topic=vopr-t0` (node=N repeats; topic matches the topic's name or
    /// hex prefix).
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "FILTER")]
    trace: Option<String>,
    /// Stop a sweep after this many seconds of wall time (the seeds run so far are
    /// reported).
    #[arg(long, value_name = "SECONDS")]
    budget: Option<f64>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn run_one(name: &str, params: &Params, determinism: bool) -> Result<Report, Violation> {
    let report = scenarios::run(name, params)?;
    if determinism {
        let again = scenarios::run(name, params)?;
        if again.trace_hash != report.trace_hash || again.trace_len != report.trace_len {
            let cfg = scenarios::sim_config(name, params);
            return Err(Violation {
                seed: params.seed,
                at: report.end,
                message: format!(
                    "nondeterministic: trace hash {:016x} ({} lines) then {:016x} ({} lines)",
                    report.trace_hash, report.trace_len, again.trace_hash, again.trace_len
                ),
                replay: format!("{} --check-determinism", cfg.replay),
                trace: Vec::new(),
            });
        }
    }
    Ok(report)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for (name, _, what) in SCENARIOS {
            println!("{name:16} {what}");
        }
        return ExitCode::SUCCESS;
    }
    let names: Vec<&str> = if args.scenario == "all" {
        SCENARIOS.iter().map(|(n, _, _)| *n).collect()
    } else if scenarios::find(&args.scenario).is_some() {
        vec![args.scenario.as_str()]
    } else {
        eprintln!("unknown scenario {:?}; try --list", args.scenario);
        return ExitCode::FAILURE;
    };
    let filter = match args.trace.as_deref().map(TraceFilter::parse).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("bad --trace filter: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let budget = args.budget.map(std::time::Duration::from_secs_f64);
    for name in &names {
        let mut ran = 0u64;
        let (mut links, mut connections, mut steps, mut peak) = (0, 0, 0, 0);
        for seed in args.seed..args.seed.saturating_add(args.seeds) {
            if budget.is_some_and(|b| started.elapsed() >= b) {
                break;
            }
            ran += 1;
            let params = Params {
                seed,
                nodes: args.nodes,
                keep_trace: filter.is_some(),
                strict_total: args.strict_total,
                dht: args.vopr_dht,
                utp: args.vopr_utp,
            };
            match run_one(name, &params, args.check_determinism) {
                Ok(report) => {
                    if let Some(filter) = &filter {
                        for line in report.lines.iter().flatten() {
                            if filter.keeps(line) {
                                println!("{line}");
                            }
                        }
                    }
                    if args.seeds == 1 {
                        for (mark, at) in &report.marks {
                            println!(
                                "{name} seed={seed} {mark} at {}s",
                                at.as_micros() as f64 / 1e6
                            );
                        }
                        for (name_of, n) in &report.counts {
                            println!("{name} seed={seed} {name_of} {n}");
                        }
                        if report.datagrams.sent > 0 {
                            println!("{name} seed={seed} datagrams {:?}", report.datagrams);
                        }
                        println!(
                            "{name} seed={seed} ok: end={}s steps={} connection-events={} \
                             links={} peak(connected+connecting)={} trace={} lines hash={:016x}",
                            report.end.as_micros() as f64 / 1e6,
                            report.steps,
                            report.connections,
                            report.links,
                            report.peak_total,
                            report.trace_len,
                            report.trace_hash
                        );
                    }
                    links += report.links;
                    connections += report.connections;
                    steps += report.steps;
                    peak = peak.max(report.peak_total);
                }
                Err(v) => {
                    for line in &v.trace {
                        if filter.as_ref().is_some_and(|f| f.keeps(line)) {
                            println!("{line}");
                        }
                    }
                    eprintln!("FAILED {name} seed={seed}\n{v}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if args.seeds > 1 {
            println!(
                "{name}: {ran} seeds from {} ok ({steps} steps, {connections} connection events, \
                 {links} links at the end, peak connected+connecting {peak})",
                args.seed
            );
        }
    }
    eprintln!("wall time {:.2?}", started.elapsed());
    ExitCode::SUCCESS
}

/// Which trace lines `--trace` prints.
struct TraceFilter {
    /// `n3`-style names; empty = every node.
    nodes: Vec<String>,
    /// Strings a line must contain one of (`topic=<hex>` forms); empty = any.
    topics: Vec<String>,
}

impl TraceFilter {
    fn parse(spec: &str) -> Result<Self, String> {
        let mut f = TraceFilter {
            nodes: Vec::new(),
            topics: Vec::new(),
        };
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("node", n)) => {
                    let n: usize = n.parse().map_err(|_| format!("node {n:?}"))?;
                    f.nodes.push(format!("n{n}"));
                }
                Some(("topic", t)) => {
                    // Trace lines show a topic as the hex of its first 4 bytes.
                    let hex: String = t.bytes().take(4).map(|b| format!("{b:02x}")).collect();
                    f.topics.push(format!("topic={hex}"));
                    f.topics.push(format!("topic={t}"));
                }
                _ => return Err(format!("{part:?}: want node=N or topic=NAME")),
            }
        }
        Ok(f)
    }

    /// A line is `time who what`: kept if `who` (or, for the simulator's lines, a word of
    /// `what`) is a chosen node, and it names a chosen topic.
    fn keeps(&self, line: &str) -> bool {
        let mut words = line.split_whitespace().skip(1);
        let who = words.next().unwrap_or("");
        let node_ok = self.nodes.is_empty()
            || self.nodes.iter().any(|n| {
                who == n
                    || (who == "sim"
                        && line
                            .split(|c: char| !c.is_ascii_alphanumeric())
                            .any(|w| w == n))
            });
        let topic_ok = self.topics.is_empty() || self.topics.iter().any(|t| line.contains(t));
        node_ok && topic_ok
    }
}
