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
//!
//! Where this departs from Node (dns-discovery 6.2.3 over multicast-dns 7.2.5) on purpose:
//! - echoes of our own answers are recognised by every token we handed out in the last
//!   15 min, not only by the token for our own address, so a LAN host does not discover
//!   itself through its answers to others (SRV answers carry no token and still can);
//! - `leave` stops lookup-only joins too;
//! - more than 31 entries are split over several TXT records instead of corrupting one;
//! - only the answered questions are echoed in a response, always with class IN (Node
//!   echoes every question, and class 0 for a QU question);
//! - answers are rate-limited per querier and in all; a peer seen again within 5 s is not
//!   reported again; at most 128 peers are taken from one datagram and 1024 events queue;
//! - peers with port 0, SRV targets that are not valid IPv4 addresses, IPv6 senders and
//!   queries from port 0 are ignored;
//! - A questions are answered only when [`MdnsConfig::local_ip`] is set;
//! - a query lists the peers heard within a round interval as known answers, in one NULL
//!   record that Node ignores, and an announcer listed in a query does not answer it
//!   (RFC 6762 7.1; Node answers every query to the whole group, so a LAN of n announcers
//!   carried n answers to n hosts a round where it now carries about one answer a query:
//!   see `known`).

mod engine;
mod handed;
mod known;
pub(crate) mod limit;
mod recent;
pub mod topic;
pub mod txt;
pub mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_known;

pub use engine::{MdnsConfig, MdnsDiscovery, MdnsEvent, MdnsStats, MDNS_GROUP};
pub use topic::KeyHash;
