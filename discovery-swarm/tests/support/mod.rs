//! Test support: isolation for tests that multicast or could reach a network.

use std::process::Command;

/// Unless already inside an isolated network namespace, runs the test `name` again inside a
/// fresh one (scripts/isolate: loopback only, multicast routed over it), asserts it passed
/// there, and returns false: the caller then returns at once. Inside, returns true. So
/// `cargo test` never multicasts on a real network, whoever runs it.
pub fn isolated(name: &str) -> bool {
    if std::env::var("SWARM_NETNS").as_deref() == Ok("1") {
        return true;
    }
    let isolate = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/isolate");
    let test_binary = std::env::current_exe().expect("test binary path");
    let status = Command::new(isolate)
        .arg(test_binary)
        .args([name, "--exact", "--nocapture"])
        .status()
        .expect("scripts/isolate runs");
    assert!(
        status.success(),
        "{name} failed inside the isolated namespace"
    );
    false
}
