//! A deterministic, single-threaded discrete-event simulator running the real `swarm-core`.
//!
//! Every node is a [`swarm_core::Swarm`] on a simulated host with its own address. The
//! network is a table of TCP-like pipes (connect latency, refusal, blackholes, ordered
//! delivery with per-link latency and jitter, random chunking, resets). Time is a virtual
//! clock advanced by an event queue ordered by (time, sequence number); all randomness comes
//! from the run seed, so a seed replays the same run exactly. No real I/O, threads or clocks.
//!
//! Hosts sit on LAN segments (multicast domains for mDNS); between segments runs a routed
//! internet ([`internet`]): WAN latency, jitter, loss, duplication, reordering, uplink
//! bandwidth, partitions (one-way or both ways) and NAT (endpoint-independent or
//! symmetric). Every unicast datagram a core transmits (DHT today; uTP and unicast DNS when
//! they use the swarm socket) is routed through it. Hosts crash and restart (state lost, id
//! kept if configured) and their clocks step forward.
//!
//! The `vopr` scenario draws the whole world and a fault plan from the seed, runs a safety
//! phase with faults, then requires liveness within a stated bound ([`scenarios::vopr`]).
//!
//! Invariants are checked after every step (see [`invariants`]) and at quiescence
//! ([`Sim::check_quiescence`]). A violation carries the seed and the command that replays it.
//!
//! ```
//! use swarm_sim::{Sim, SimConfig};
//! use core::time::Duration;
//!
//! let mut sim = Sim::new(SimConfig::new(7));
//! let a = sim.add_node(Sim::node_config());
//! let b = sim.add_node(Sim::node_config());
//! sim.add_peer(a, b).unwrap();
//! sim.run_to_quiescence(Duration::from_secs(60)).unwrap();
//! assert_eq!(sim.links().len(), 1);
//! ```

pub mod dhtnet;
pub mod internet;
pub mod invariants;
pub mod network;
pub mod node;
pub mod parallel;
pub mod queue;
pub mod rng;
pub mod scenarios;
mod sim;
pub mod trace;

pub use internet::{NatConfig, NatKind, WanConfig};
pub use invariants::Violation;
pub use network::{DatagramStats, HostId, NetConfig, PipeId, SegmentConfig, SegmentId};
pub use node::HostState;
pub use scenarios::{Report, SCENARIOS};
pub use sim::{
    nat_public_ip, Action, Link, LogEntry, Partition, Remote, Sim, SimConfig, StepKinds,
};
