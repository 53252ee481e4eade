//! `swarm-sim`: run simulation scenarios by seed, sweep seeds, check determinism.

use clap::Parser;
use std::process::ExitCode;
use swarm_sim::scenarios::{self, Params, Report};
use swarm_sim::{Violation, SCENARIOS};

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
    /// Scenario name, or `all`.
    #[arg(long, default_value = "chaos")]
    scenario: String,
    /// Run each seed twice and compare the trace hashes.
    #[arg(long)]
    check_determinism: bool,
    /// Also require connected + connecting <= max_connections on every node.
    #[arg(long)]
    strict_total: bool,
    /// Print the event trace.
    #[arg(long)]
    trace: bool,
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
    let started = std::time::Instant::now();
    for name in &names {
        let (mut links, mut connections, mut steps, mut peak) = (0, 0, 0, 0);
        for seed in args.seed..args.seed.saturating_add(args.seeds) {
            let params = Params {
                seed,
                nodes: args.nodes,
                keep_trace: args.trace,
                strict_total: args.strict_total,
            };
            match run_one(name, &params, args.check_determinism) {
                Ok(report) => {
                    if args.trace {
                        for line in report.lines.iter().flatten() {
                            println!("{line}");
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
                        println!("{line}");
                    }
                    eprintln!("FAILED {name} seed={seed}\n{v}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if args.seeds > 1 {
            println!(
                "{name}: {} seeds from {} ok ({steps} steps, {connections} connection events, \
                 {links} links at the end, peak connected+connecting {peak})",
                args.seeds, args.seed
            );
        }
    }
    eprintln!("wall time {:.2?}", started.elapsed());
    ExitCode::SUCCESS
}
