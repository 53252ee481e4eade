//! `discovery-swarm dns-server` and `join --dns-server`: two peers with mDNS off find each
//! other only through the server; the server stops cleanly on SIGTERM with a final count.
//! Runs inside an isolated network namespace.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_discovery-swarm");

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the binary; stdout and stderr lines arrive on one channel.
fn spawn(args: &[&str]) -> Proc {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    Proc { child, lines }
}

impl Proc {
    fn wait_for(&self, needle: &str) -> String {
        // Generous: the machine is shared and the first round includes a probe.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line containing {needle:?} in time"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

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
    let line = server.wait_for("\"listening\"");
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
    a.wait_for("\"event\":\"connection\"");
    b.wait_for("\"event\":\"connection\"");

    // SIGTERM: a clean stop with the final count.
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let last = server.wait_for("dns-server stopping (");
    assert!(last.contains("2 stored peers"), "{last}");
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
