//! LAN discovery: dns-discovery over multicast DNS (PROTOCOLS.md 2, 3.1, 3.2), sans-IO.
//!
//! [`MdnsDiscovery`] owns the topic schedule (a round at join, then every 60-70 s) and the
//! mDNS side of dns-discovery: it sends the TXT queries, answers queries for the topics it
//! announces, and turns answers into [`MdnsEvent::Peer`]. The driver owns one UDP socket on
//! 5353 joined to 224.0.0.251 and loops:
//!
//! ```
//! use swarm_core::mdns::{MdnsConfig, MdnsDiscovery, MdnsEvent};
//! use swarm_core::Instant;
//!
//! let mut mdns = MdnsDiscovery::new(MdnsConfig::new([9; 32], 1));
//! mdns.join(&b"topic"[..], true, 7001);
//! let now = Instant::from_micros(0);
//! // Whenever `poll_timeout()` has passed, or a datagram arrived (`handle_datagram`):
//! mdns.handle_timeout(now);
//! while let Some((to, bytes)) = mdns.poll_transmit() { /* socket.send_to(&bytes, to) */ }
//! while let Some(event) = mdns.poll_event() { /* MdnsEvent::Peer / FirstRound */ }
//! ```

mod engine;
mod limit;
pub mod topic;
pub mod txt;
pub mod wire;

#[cfg(test)]
mod tests;

pub use engine::{MdnsConfig, MdnsDiscovery, MdnsEvent, MdnsStats, MDNS_GROUP};
pub use topic::KeyHash;
