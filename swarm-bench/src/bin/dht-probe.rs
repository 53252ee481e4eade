//! One fresh `DhtNode` on a real UDP socket joins a running DHT and looks topics up one at a
//! time, counting what each lookup costs: queries sent, replies received, wall time, and
//! whether it found every announcer. bench/dht-lookup runs it beside bench/dht-probe-node.js
//! (the same for Node's bittorrent-dht) against the same network. Prints one JSON object.
//!
//!   dht-probe --bootstrap 127.0.0.1:7400 --topics a,b,c --expect 5

use clap::Parser;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant as Wall};
use swarm_core::dht::{DhtConfig, DhtEvent, DhtNode, LookupId, NodeId};
use swarm_core::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bootstrap: SocketAddr,
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Announcers per topic: a lookup that finds them all succeeded.
    #[arg(long)]
    expect: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

struct Probe {
    node: DhtNode,
    socket: UdpSocket,
    epoch: Wall,
    sent: u64,
    received: u64,
    buf: Vec<u8>,
}

impl Probe {
    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    fn flush(&mut self) {
        while let Some((to, data)) = self.node.poll_transmit() {
            if self.socket.send_to(&data, to).is_ok() {
                self.sent += 1;
            }
        }
    }

    /// Runs until `done` sees the event it waits for; returns the events seen.
    fn run_until(&mut self, mut done: impl FnMut(&DhtEvent) -> bool) -> Vec<DhtEvent> {
        let mut events = Vec::new();
        let give_up = Wall::now() + Duration::from_secs(60);
        loop {
            self.flush();
            while let Some(e) = self.node.poll_event() {
                let finished = done(&e);
                events.push(e);
                if finished {
                    return events;
                }
            }
            if Wall::now() > give_up {
                return events;
            }
            let now = self.now();
            let wait = self
                .node
                .poll_timeout()
                .map_or(Duration::from_millis(100), |t| {
                    Duration::from_micros(t.as_micros().saturating_sub(now.as_micros()))
                })
                .clamp(Duration::from_micros(100), Duration::from_millis(100));
            self.socket.set_read_timeout(Some(wait)).ok();
            match self.socket.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    self.received += 1;
                    let now = self.now();
                    let data = self.buf[..len].to_vec();
                    self.node.handle_datagram(now, from, &data);
                }
                Err(_) => {
                    let now = self.now();
                    if self.node.poll_timeout().is_some_and(|t| t <= now) {
                        self.node.handle_timeout(now);
                    }
                }
            }
        }
    }
}

fn done_with(lookup: LookupId) -> impl FnMut(&DhtEvent) -> bool {
    move |e| matches!(e, DhtEvent::LookupDone { lookup: l, .. } if *l == lookup)
}

fn main() {
    let args = Args::parse();
    let mut config = DhtConfig::new(args.seed);
    config.bootstrap = vec![args.bootstrap];
    let epoch = Wall::now();
    let mut probe = Probe {
        node: DhtNode::new(config, Instant::ZERO),
        socket: UdpSocket::bind("127.0.0.1:0").expect("bind"),
        epoch,
        sent: 0,
        received: 0,
        buf: vec![0; 65536],
    };
    let now = probe.now();
    let boot = probe.node.bootstrap(now);
    probe.run_until(done_with(boot));
    let bootstrap_queries = probe.sent;

    let mut lookups = Vec::new();
    for topic in &args.topics {
        let info_hash = NodeId::sha1(topic.as_bytes());
        let (sent, received) = (probe.sent, probe.received);
        let started = Wall::now();
        let now = probe.now();
        let lookup = probe.node.get_peers(now, info_hash);
        let events = probe.run_until(done_with(lookup));
        let found = events
            .iter()
            .filter(|e| matches!(e, DhtEvent::Peer { lookup: l, .. } if *l == lookup))
            .count();
        lookups.push(serde_json::json!({
            "topic": topic,
            "queries": probe.sent - sent,
            "replies": probe.received - received,
            "found": found,
            "ms": (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
        }));
    }
    let n = lookups.len().max(1) as f64;
    let mean = |key: &str| lookups.iter().filter_map(|l| l[key].as_f64()).sum::<f64>() / n;
    let complete = lookups
        .iter()
        .filter(|l| l["found"].as_u64().unwrap_or(0) as usize >= args.expect)
        .count();
    println!(
        "{}",
        serde_json::json!({
            "bootstrap_queries": bootstrap_queries,
            "contacts": probe.node.table().len(),
            "queries_per_lookup": mean("queries"),
            "replies_per_lookup": mean("replies"),
            "ms_per_lookup": mean("ms"),
            "complete": complete,
            "lookups": lookups,
        })
    );
}
