//! Named scenarios, shared by the binary and the tests. Each builds a simulation from a seed,
//! runs it (invariants are checked throughout) and then checks what the scenario must
//! achieve, so a core that does nothing cannot pass.

use crate::invariants::Violation;
use crate::network::{DatagramStats, HostId};
use crate::node::HostState;
use crate::rng::{derive, SimRng};
use crate::sim::{Action, Sim, SimConfig};
use crate::trace::fmt_time;
use core::time::Duration;
use swarm_core::config::{CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, RECONNECT_WAIT};
use swarm_core::{Event, Instant};

/// Inputs of a scenario run.
#[derive(Clone, Debug)]
pub struct Params {
    pub seed: u64,
    /// Number of nodes, for scenarios where it varies (`None`: the scenario's default).
    pub nodes: Option<usize>,
    pub keep_trace: bool,
    /// Also require `connected + connecting <= max_connections` ([`SimConfig::strict_total`]).
    pub strict_total: bool,
    /// VOPR: turn the DHT on in some runs.
    pub dht: bool,
    /// VOPR: in some runs the cores run uTP themselves, as datagrams.
    pub utp: bool,
}

impl Params {
    pub fn new(seed: u64) -> Self {
        Params {
            seed,
            nodes: None,
            keep_trace: false,
            strict_total: false,
            dht: false,
            utp: false,
        }
    }
}

pub mod dns;
pub mod lan;
pub mod utp;
pub mod vopr;

type Scenario = fn(&Params) -> Result<Sim, Violation>;

/// Every scenario: name, function, what it shows.
pub const SCENARIOS: &[(&str, Scenario, &str)] = &[
    (
        "crossed",
        crossed,
        "two nodes dial each other at t=0: one connection, same at both ends",
    ),
    (
        "dead-refused",
        dead_refused,
        "a refusing host is retried 1 s, 1 s, 5 s, 15 s, then dropped",
    ),
    (
        "dead-blackhole",
        dead_blackhole,
        "a blackholed host: 3 s timeouts on the same schedule",
    ),
    (
        "mute",
        mute,
        "a host that accepts and never sends: handshake-timeout at 5 s",
    ),
    (
        "mesh",
        mesh,
        "N nodes (default 20) add each other with max_connections 3",
    ),
    (
        "rejoin",
        rejoin,
        "a crashed peer is dropped, restarts fresh and is reconnected",
    ),
    (
        "reset",
        reset,
        "a reset connection is redialled by its dialer after 1 s",
    ),
    (
        "chaos",
        chaos,
        "N nodes (default 8) under resets and crashes, then healed: all connect",
    ),
    (
        "chaos-max",
        chaos_max,
        "chaos with max_connections 1..=4 per node: limits hold",
    ),
    (
        "vopr",
        vopr::vopr,
        "the seed draws the world and a fault plan; safety with faults, then liveness",
    ),
    (
        "lan",
        lan::lan,
        "N nodes (default 50) on one LAN join a topic: full mesh by mDNS alone",
    ),
    (
        "lan-lossy",
        lan::lan_lossy,
        "lan with 20% datagram loss (and 2% duplication): still a full mesh",
    ),
    (
        "lan-split",
        lan::lan_split,
        "N nodes (default 40) on two LANs: each meshes, none across (mDNS stays local)",
    ),
    (
        "utp",
        utp::utp_lossy,
        "N nodes (default 6), uTP run by the cores as datagrams over a lossy, reordering internet: every payload intact",
    ),
    (
        "dns-server",
        dns::dns_server,
        "N nodes (default 1,000) on segments of 50 find every peer of their topic via one dns-discovery server",
    ),
    (
        "dns-nat",
        dns::dns_nat,
        "nodes behind endpoint-independent NATs: whoami learns the public address, all find all",
    ),
    (
        "dns-nat-symmetric",
        dns::dns_nat_symmetric,
        "dns-nat behind symmetric NATs: discovery works, whoami cannot confirm a port",
    ),
    (
        "dns-restart",
        dns::dns_restart,
        "the server restarts with its state lost; nodes announce again and still meet",
    ),
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<Scenario> {
    SCENARIOS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, f, _)| *f)
}

/// Summary of a finished run.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub end: Instant,
    pub steps: u64,
    pub trace_hash: u64,
    pub trace_len: u64,
    /// `connection` events over the run, all nodes.
    pub connections: u64,
    /// Connections established at both ends at the end.
    pub links: usize,
    /// Highest `connected + connecting` any node reached.
    pub peak_total: usize,
    /// Instants the scenario measured.
    pub marks: Vec<(&'static str, Instant)>,
    /// Figures the scenario measured.
    pub counts: Vec<(&'static str, usize)>,
    pub datagrams: DatagramStats,
    pub lines: Option<Vec<String>>,
}

impl Report {
    pub fn of(sim: &Sim) -> Self {
        let checks = (0..sim.hosts()).filter_map(|h| sim.check(h));
        let (mut connections, mut peak_total) = (0, 0);
        for c in checks {
            peak_total = peak_total.max(c.peak_total);
        }
        for e in sim.log() {
            connections += u64::from(matches!(e.event, Event::Connection { .. }));
        }
        Report {
            seed: sim.seed(),
            end: sim.now(),
            steps: sim.steps(),
            trace_hash: sim.trace().hash(),
            trace_len: sim.trace().len(),
            connections,
            links: sim.links().len(),
            peak_total,
            marks: sim.marks().to_vec(),
            counts: sim.counts().to_vec(),
            datagrams: sim.datagrams(),
            lines: sim.trace().lines().map(<[String]>::to_vec),
        }
    }
}

/// Runs the named scenario.
pub fn run(name: &str, params: &Params) -> Result<Report, Violation> {
    let f = find(name).unwrap_or_else(|| panic!("unknown scenario {name}"));
    f(params).map(|sim| Report::of(&sim))
}

/// The simulation config with the replay command for this scenario.
pub fn sim_config(name: &str, p: &Params) -> SimConfig {
    let mut cfg = SimConfig::new(p.seed);
    cfg.keep_trace = p.keep_trace;
    cfg.strict_total = p.strict_total;
    let nodes = p.nodes.map(|n| format!(" --nodes {n}")).unwrap_or_default();
    let flags: String = [
        (p.strict_total, " --strict-total"),
        (p.dht, " --vopr-dht"),
        (p.utp, " --vopr-utp"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, flag)| *flag)
    .collect();
    cfg.replay = format!(
        "cargo run -p swarm-sim --release -- --seed {} --scenario {name}{nodes}{flags} --trace",
        p.seed
    );
    cfg
}

/// Fails the run with `message` unless `ok`.
pub fn ensure(sim: &Sim, ok: bool, message: impl FnOnce() -> String) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(sim.violation(message()))
    }
}

/// Times of `h`'s events named `name`.
pub fn times(sim: &Sim, h: HostId, name: &str) -> Vec<Instant> {
    sim.events(h)
        .filter(|(_, e)| e.name() == name)
        .map(|(t, _)| t)
        .collect()
}

const QUIET: Duration = Duration::from_secs(600);

fn crossed(p: &Params) -> Result<Sim, Violation> {
    let mut sim = Sim::new(sim_config("crossed", p));
    let a = sim.add_node(Sim::node_config());
    let b = sim.add_node(Sim::node_config());
    sim.add_peer(a, b)?;
    sim.add_peer(b, a)?;
    sim.run_to_quiescence(QUIET)?;
    let links = sim.links();
    ensure(&sim, links.len() == 1, || {
        format!("{} connections, want 1", links.len())
    })?;
    for h in [a, b] {
        let n = sim.core(h).map_or(0, |c| c.connected());
        ensure(&sim, n == 1, || format!("n{h} has {n} connections, want 1"))?;
    }
    Ok(sim)
}

fn dead_refused(p: &Params) -> Result<Sim, Violation> {
    dead(p, "dead-refused", HostState::Refusing)
}

fn dead_blackhole(p: &Params) -> Result<Sim, Violation> {
    dead(p, "dead-blackhole", HostState::Blackholed)
}

/// Bounds of a connect round trip (SYN there, answer back).
fn rtt_bounds(sim_cfg: &SimConfig) -> (Duration, Duration) {
    let (lo, hi) = sim_cfg.net.latency;
    (lo * 2, (hi + sim_cfg.net.jitter) * 2)
}

/// `h` dialled a dead peer on the retry schedule and then dropped it, each failure taking
/// `fail_after` (exact) or a round trip, counting events from `since`.
fn check_retry_schedule(
    sim: &Sim,
    h: HostId,
    since: Instant,
    fail_after: Option<Duration>,
    rtt: (Duration, Duration),
) -> Result<(), Violation> {
    let after = |v: Vec<Instant>| v.into_iter().filter(|t| *t >= since).collect::<Vec<_>>();
    let connecting = after(times(sim, h, "connecting"));
    let failed = after(times(sim, h, "connect-failed"));
    let dropped = after(times(sim, h, "drop"));
    let tries = RECONNECT_WAIT.len() + 1;
    ensure(
        sim,
        connecting.len() == tries && failed.len() == tries,
        || {
            format!(
                "{} dials / {} failures, want {tries}",
                connecting.len(),
                failed.len()
            )
        },
    )?;
    for i in 0..tries {
        let took = failed[i] - connecting[i];
        let ok = match fail_after {
            Some(d) => took == d,
            None => took >= rtt.0 && took <= rtt.1,
        };
        ensure(sim, ok, || format!("dial {i} failed after {took:?}"))?;
        if i + 1 < tries {
            let wait = connecting[i + 1] - failed[i];
            ensure(sim, wait == RECONNECT_WAIT[i], || {
                format!("retry {i} waited {wait:?}, want {:?}", RECONNECT_WAIT[i])
            })?;
        }
    }
    ensure(sim, dropped == [failed[tries - 1]], || {
        format!("drop at {dropped:?}, want one at the last failure")
    })
}

fn dead(p: &Params, name: &str, state: HostState) -> Result<Sim, Violation> {
    let cfg = sim_config(name, p);
    let rtt = rtt_bounds(&cfg);
    let mut sim = Sim::new(cfg);
    let a = sim.add_node(Sim::node_config());
    let b = sim.add_host(state);
    sim.add_peer(a, b)?;
    sim.run_to_quiescence(QUIET)?;
    let timeout = (state == HostState::Blackholed).then_some(CONNECT_TIMEOUT);
    check_retry_schedule(&sim, a, Instant::ZERO, timeout, rtt)?;
    let timed_out = sim
        .events(a)
        .filter_map(|(_, e)| match e {
            Event::ConnectFailed { timed_out, .. } => Some(*timed_out),
            _ => None,
        })
        .all(|t| t == timeout.is_some());
    ensure(&sim, timed_out, || {
        "connect-failed with the wrong timed_out flag".into()
    })?;
    ensure(
        &sim,
        sim.core(a).is_some_and(|c| c.known_peers() == 0),
        || "the dropped peer is still remembered".into(),
    )?;
    Ok(sim)
}

fn mute(p: &Params) -> Result<Sim, Violation> {
    let cfg = sim_config("mute", p);
    let rtt = rtt_bounds(&cfg);
    let mut sim = Sim::new(cfg);
    let a = sim.add_node(Sim::node_config());
    let m = sim.add_host(HostState::Mute);
    sim.add_peer(a, m)?;
    sim.run_to_quiescence(QUIET)?;
    let connecting = times(&sim, a, "connecting");
    let handshaking = times(&sim, a, "handshaking");
    let timeouts = times(&sim, a, "handshake-timeout");
    let closed = times(&sim, a, "connection-closed");
    ensure(
        &sim,
        connecting.len() == 1 && handshaking.len() == 1,
        || {
            format!(
                "{} dials, {} handshakes, want 1 each",
                connecting.len(),
                handshaking.len()
            )
        },
    )?;
    let connect = handshaking[0] - connecting[0];
    ensure(&sim, connect >= rtt.0 && connect <= rtt.1, || {
        format!("connected after {connect:?}")
    })?;
    let want = [handshaking[0] + HANDSHAKE_TIMEOUT];
    ensure(&sim, timeouts == want && closed == want, || {
        format!("handshake-timeout at {timeouts:?}, closed at {closed:?}, want {want:?}")
    })?;
    ensure(&sim, times(&sim, a, "connection").is_empty(), || {
        "connection to a mute host".into()
    })?;
    Ok(sim)
}

fn mesh(p: &Params) -> Result<Sim, Violation> {
    const MAX: usize = 3;
    let n = p.nodes.unwrap_or(20);
    let mut sim = Sim::new(sim_config("mesh", p));
    let mut rng = SimRng::new(derive(p.seed, &[100]));
    let hosts: Vec<HostId> = (0..n)
        .map(|_| sim.add_node(Sim::node_config().with_max_connections(MAX)))
        .collect();
    for &a in &hosts {
        for &b in hosts.iter().filter(|b| **b != a) {
            let at = Instant::from_micros(rng.range(0, 2_000_000));
            sim.schedule(at, Action::AddPeer { from: a, to: b });
        }
    }
    sim.run_to_quiescence(QUIET)?;
    let links = sim.links().len();
    // A maximal matching-like bound: with max 3, at least n/2 links must form.
    ensure(&sim, links >= n / 2, || {
        format!("only {links} connections among {n} nodes")
    })?;
    for &h in &hosts {
        let c = sim.core(h).map_or(0, |c| c.connected());
        ensure(&sim, c <= MAX, || format!("n{h} holds {c} connections"))?;
    }
    Ok(sim)
}

/// Runs until `a` and `b` are connected (or fails after `limit`).
fn await_link(sim: &mut Sim, a: HostId, b: HostId, limit: Duration) -> Result<(), Violation> {
    let deadline = sim.now() + limit;
    while sim.now() < deadline {
        if sim.connected_pairs().contains(&(a.min(b), a.max(b))) {
            return Ok(());
        }
        if !sim.step()? {
            break;
        }
    }
    Err(sim.violation(format!("n{a} and n{b} did not connect within {limit:?}")))
}

fn rejoin(p: &Params) -> Result<Sim, Violation> {
    let cfg = sim_config("rejoin", p);
    let rtt = rtt_bounds(&cfg);
    let mut sim = Sim::new(cfg);
    let a = sim.add_node(Sim::node_config());
    let b = sim.add_node(Sim::node_config());
    sim.add_peer(a, b)?;
    await_link(&mut sim, a, b, Duration::from_secs(10))?;
    let old_id = sim.core(b).map(|c| c.id().clone());
    sim.run_for(Duration::from_secs(1))?;
    sim.crash(b, HostState::Refusing);
    sim.run_to_quiescence(QUIET)?;
    // A saw the connection close, redialled 1 s later, then went through the schedule.
    let closed = times(&sim, a, "connection-closed");
    let Some(&lost) = closed.last() else {
        return Err(sim.violation(format!("n{a} never saw its connection close")));
    };
    let after = |name| -> Vec<Instant> {
        times(&sim, a, name)
            .into_iter()
            .filter(|t| *t > lost)
            .collect()
    };
    let (dials, failed) = (after("connecting"), after("connect-failed"));
    let tries = RECONNECT_WAIT.len();
    ensure(&sim, dials.len() == tries && failed.len() == tries, || {
        format!(
            "{} redials / {} failures, want {tries}",
            dials.len(),
            failed.len()
        )
    })?;
    // The first redial 1 s after the loss, then a fresh schedule (the handshake reset it).
    ensure(&sim, dials[0] == lost + RECONNECT_WAIT[0], || {
        format!(
            "first redial at {}, want 1 s after {}",
            fmt_time(dials[0]),
            fmt_time(lost)
        )
    })?;
    for i in 0..tries {
        let took = failed[i] - dials[i];
        ensure(&sim, took >= rtt.0 && took <= rtt.1, || {
            format!("refusal took {took:?}")
        })?;
        if i + 1 < tries {
            let wait = dials[i + 1] - failed[i];
            ensure(&sim, wait == RECONNECT_WAIT[i + 1], || {
                format!("retry {i} waited {wait:?}")
            })?;
        }
    }
    let dropped = after("drop");
    ensure(&sim, dropped == [failed[tries - 1]], || {
        "no drop after the last redial".into()
    })?;
    // B comes back with fresh state and a new id; A learns it again.
    sim.restart(b);
    ensure(&sim, sim.core(b).map(|c| c.id().clone()) != old_id, || {
        "same id after restart".into()
    })?;
    sim.add_peer(a, b)?;
    await_link(&mut sim, a, b, Duration::from_secs(10))?;
    sim.run_to_quiescence(QUIET)?;
    ensure(&sim, sim.links().len() == 1, || {
        "not reconnected after restart".into()
    })?;
    Ok(sim)
}

fn reset(p: &Params) -> Result<Sim, Violation> {
    let mut sim = Sim::new(sim_config("reset", p));
    let a = sim.add_node(Sim::node_config());
    let b = sim.add_node(Sim::node_config());
    sim.add_peer(a, b)?;
    for round in 0..3 {
        await_link(&mut sim, a, b, Duration::from_secs(10))?;
        sim.run_for(Duration::from_secs(2))?;
        let links = sim.links();
        ensure(&sim, links.len() == 1 && links[0].dialer.0 == a, || {
            format!("round {round}: want one link dialled by n{a}, have {links:?}")
        })?;
        sim.reset_pipe(links[0].pipe);
        sim.run_to_quiescence(QUIET)?;
        let lost = *times(&sim, a, "connection-closed").last().expect("closed");
        let redial = times(&sim, a, "connecting").into_iter().find(|t| *t > lost);
        ensure(&sim, redial == Some(lost + RECONNECT_WAIT[0]), || {
            format!(
                "round {round}: redial at {redial:?}, want 1 s after {}",
                fmt_time(lost)
            )
        })?;
    }
    ensure(&sim, times(&sim, b, "connecting").is_empty(), || {
        "the acceptor redialled".into()
    })?;
    let opened = times(&sim, a, "connection").len();
    ensure(&sim, opened == 4, || {
        format!("{opened} connections over 3 resets, want 4")
    })?;
    Ok(sim)
}

fn chaos(p: &Params) -> Result<Sim, Violation> {
    chaos_run(p, "chaos", false)
}

fn chaos_max(p: &Params) -> Result<Sim, Violation> {
    chaos_run(p, "chaos-max", true)
}

/// A random network and node mix: latencies, chunking, late timers, uTP on some nodes,
/// retry jitter and, with `limit`, small `max_connections`.
fn chaos_setup(p: &Params, name: &str, limit: bool, rng: &mut SimRng) -> (Sim, Vec<HostId>) {
    let mut cfg = sim_config(name, p);
    let lo = rng.range(0, 2_000);
    cfg.net.latency = (
        Duration::from_micros(lo),
        Duration::from_micros(rng.range(lo, 150_000)),
    );
    cfg.net.jitter = Duration::from_micros(rng.range(0, 60_000));
    cfg.net.max_chunk = rng.range(1, 40) as usize;
    cfg.mapped_inbound = rng.chance(0.5);
    if rng.chance(0.5) {
        cfg.timer_slack = Duration::from_micros(rng.range(0, 50_000));
    }
    let mut sim = Sim::new(cfg);
    let n = p.nodes.unwrap_or(8);
    let hosts = (0..n)
        .map(|_| {
            let mut c = Sim::node_config();
            c.utp = rng.chance(0.3);
            c.retry_jitter = if rng.chance(0.5) { 0.25 } else { 0.0 };
            if limit {
                c.max_connections = rng.range(1, 4) as usize;
            }
            sim.add_node(c)
        })
        .collect();
    (sim, hosts)
}

fn chaos_run(p: &Params, name: &str, limit: bool) -> Result<Sim, Violation> {
    let mut rng = SimRng::new(derive(p.seed, &[200]));
    let (mut sim, hosts) = chaos_setup(p, name, limit, &mut rng);
    let n = hosts.len();
    let at = |rng: &mut SimRng, lo: u64, hi: u64| Instant::from_micros(rng.range(lo, hi));
    for &a in &hosts {
        for &b in hosts.iter().filter(|b| **b != a) {
            if rng.chance(0.7) {
                let t = at(&mut rng, 0, 5_000_000);
                sim.schedule(t, Action::AddPeer { from: a, to: b });
            }
        }
    }
    // Faults in the first 60 s.
    const WINDOW: u64 = 60_000_000;
    let mut banned = std::collections::BTreeSet::new();
    for _ in 0..rng.range(10, 50) {
        let t = at(&mut rng, 0, WINDOW);
        let (a, b) = (hosts[rng.index(n)], hosts[rng.index(n)]);
        match rng.range(0, 25) {
            0..=5 => sim.schedule(t, Action::ResetRandom),
            6..=7 => sim.schedule(t, Action::DisconnectRandom),
            8..=11 => {
                let then = if rng.chance(0.5) {
                    HostState::Refusing
                } else {
                    HostState::Blackholed
                };
                sim.schedule(t, Action::Crash { host: a, then });
                let back = t + Duration::from_micros(rng.range(500_000, 30_000_000));
                sim.schedule(back, Action::Restart { host: a });
            }
            12..=13 => {
                let duration = Duration::from_micros(rng.range(500_000, 20_000_000));
                sim.schedule(t, Action::Isolate { host: a, duration });
            }
            14..=15 => sim.schedule(t, Action::DisconnectAny),
            16..=17 => sim.schedule(t, Action::Poke { host: a }),
            18 => {
                banned.insert((a, b));
                sim.schedule(t, Action::RemovePeer { from: a, to: b });
            }
            // Includes a node dialling itself.
            _ => sim.schedule(t, Action::AddPeer { from: a, to: b }),
        }
    }
    // Heal: everyone up, then everyone rediscovers everyone.
    let heal = Instant::from_micros(WINDOW + 30_000_000);
    for &h in &hosts {
        sim.schedule(heal, Action::Restart { host: h });
    }
    for &a in &hosts {
        for &b in hosts.iter().filter(|b| **b != a) {
            let t = heal + Duration::from_micros(rng.range(0, 2_000_000));
            sim.schedule(t, Action::AddPeer { from: a, to: b });
        }
    }
    sim.run_to_quiescence(QUIET)?;
    let pairs = sim.connected_pairs();
    if limit {
        // Full nodes refuse inbound dials, and a dial refused after connecting is not
        // retried (as in Node), so only progress can be required.
        let opened = Report::of(&sim).connections as usize;
        ensure(&sim, !pairs.is_empty() && opened >= n / 2, || {
            format!("{} links, {opened} connections over the run", pairs.len())
        })?;
        return Ok(sim);
    }
    // Every pair connects, unless both banned each other (a ban is forgotten by a restart).
    for (i, &a) in hosts.iter().enumerate() {
        for &b in &hosts[i + 1..] {
            let both_banned = banned.contains(&(a, b)) && banned.contains(&(b, a));
            ensure(&sim, both_banned || pairs.contains(&(a, b)), || {
                format!("n{a} and n{b} are not connected after healing")
            })?;
        }
    }
    Ok(sim)
}
