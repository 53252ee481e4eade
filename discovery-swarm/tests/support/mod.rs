//! Test support: isolation for tests that multicast or could reach a network.

pub use swarm_conformance::support::isolated;
