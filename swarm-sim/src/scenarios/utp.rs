//! uTP as datagrams: the cores run uTP themselves (`utp_in_core`, TCP off) over the routed
//! internet with loss, duplication, reordering and delay spikes; every connection carries a
//! payload each way, checked byte by byte.

use super::{ensure, sim_config, Params};
use crate::invariants::Violation;
use crate::network::{HostId, SegmentConfig};
use crate::sim::Sim;
use crate::WanConfig;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use swarm_core::{ConnId, Event};

/// Bytes each end writes on every connection.
pub const PAYLOAD: u64 = 256 * 1024;
/// Every transfer is complete within this long (at 5% loss uTP halves its window often).
pub const BOUND: Duration = Duration::from_secs(300);

fn utp_node() -> swarm_core::Config {
    let mut config = Sim::node_config();
    config.tcp = false;
    config.utp = true;
    config.utp_in_core = true;
    config
}

/// N nodes (default 6) on two segments, every pair added both ways, uTP only, over a lossy
/// internet: 5% loss, 2% duplication, 5% of datagrams held back up to 300 ms (reordered),
/// and 0-60 ms jitter.
pub fn utp_lossy(p: &Params) -> Result<Sim, Violation> {
    let n = p.nodes.unwrap_or(6);
    let mut cfg = sim_config("utp", p);
    cfg.utp_payload = PAYLOAD;
    let mut sim = Sim::new(cfg);
    sim.set_wan(WanConfig {
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(300),
        jitter: Duration::from_millis(60),
        ..WanConfig::default()
    });
    let segments = [
        sim.add_segment(SegmentConfig::default()),
        sim.add_segment(SegmentConfig::default()),
    ];
    let nodes: Vec<HostId> = (0..n)
        .map(|i| sim.add_node_on(segments[i % 2], utp_node()))
        .collect();
    for (i, &a) in nodes.iter().enumerate() {
        for &b in &nodes[i + 1..] {
            sim.add_peer(a, b)?;
            sim.add_peer(b, a)?;
        }
    }
    let pairs = n * (n - 1) / 2;
    let deadline = sim.now() + BOUND;
    // Pairs whose established connection carried the whole payload both ways, as each end
    // sees it (uTP in the core has no pipe: the remote comes from the `connection` event).
    let done_pairs = |sim: &Sim| -> BTreeSet<(IpAddr, IpAddr)> {
        let mut remote: BTreeMap<(HostId, ConnId), IpAddr> = BTreeMap::new();
        for e in sim.log() {
            if let Event::Connection { conn, info, .. } = &e.event {
                remote.insert((e.host, *conn), info.addr.ip());
            }
        }
        let mut ends = BTreeMap::new();
        for &h in &nodes {
            let (Some(apps), Some(check)) = (sim.utp_apps(h), sim.check(h)) else {
                continue;
            };
            for conn in check.established() {
                let full = apps
                    .get(conn)
                    .is_some_and(|a| a.read == PAYLOAD && a.written == PAYLOAD);
                if let (true, Some(ip)) = (full, remote.get(&(h, *conn))) {
                    let me = IpAddr::V4(sim.host_ip(h));
                    *ends.entry((me.min(*ip), me.max(*ip))).or_insert(0) += 1;
                }
            }
        }
        // Both ends saw it complete.
        ends.into_iter()
            .filter(|(_, c)| *c >= 2)
            .map(|(p, _)| p)
            .collect()
    };
    while done_pairs(&sim).len() < pairs && sim.now() < deadline {
        let next = sim.now() + Duration::from_millis(500);
        sim.run_until(next)?;
    }
    let done = done_pairs(&sim).len();
    ensure(&sim, done == pairs, || {
        format!(
            "after {} s: {done} of {pairs} pairs moved their payloads",
            BOUND.as_secs()
        )
    })?;
    let delivered: u64 = nodes
        .iter()
        .filter_map(|&h| sim.utp_apps(h))
        .flat_map(|apps| apps.values().map(|a| a.read))
        .sum();
    sim.mark_count("uTP bytes delivered", delivered as usize);
    sim.mark("complete", sim.now());
    let d = sim.datagrams();
    sim.mark_count("datagrams lost", d.lost as usize);
    Ok(sim)
}
