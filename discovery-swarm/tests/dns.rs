//! `discovery-swarm dns-server` and `join --dns-server`: two peers with mDNS off find each
//! other only through the server; the server stops cleanly on SIGTERM with a final count.
//! Runs inside an isolated network namespace.

mod support;

#[path = "support/cli_proc.rs"]
mod cli_proc;

use cli_proc::spawn;

#[test]
fn peers_find_each_other_through_our_dns_server() {
    if !support::isolated("peers_find_each_other_through_our_dns_server") {
        return;
    }
    let server = spawn(&[
        "dns-server",
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--stats-interval",
        "0",
    ]);
    let line = server.wait_for("\"listening\"", 30);
    let port: u16 = line
        .split('[')
        .nth(1)
        .and_then(|s| s.split(']').next())
        .and_then(|s| s.parse().ok())
        .expect("port in the listening line");
    let dns = format!("127.0.0.1:{port}");
    let a = spawn(&[
        "join",
        "dns-topic",
        "--json",
        "--no-mdns",
        "--no-dht",
        "--dns-server",
        &dns,
    ]);
    let b = spawn(&[
        "join",
        "dns-topic",
        "--json",
        "--no-mdns",
        "--no-dht",
        "--dns-server",
        &dns,
    ]);
    a.wait_for("\"event\":\"connection\"", 30);
    b.wait_for("\"event\":\"connection\"", 30);

    // SIGTERM: a clean stop with the final count.
    server.sigterm();
    let last = server.wait_for("dns-server stopping (", 30);
    assert!(last.contains("2 stored peers"), "{last}");
    server.exit_ok();
}
