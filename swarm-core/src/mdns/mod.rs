//! LAN discovery: dns-discovery over multicast DNS (PROTOCOLS.md 2, 3.1, 3.2), sans-IO.

pub mod topic;
pub mod txt;
pub mod wire;

pub use topic::KeyHash;
