//! The `discovery-swarm` binary: argument errors, and `--pipe` moving bytes as they arrive and
//! a bulk stream without loss. `SWARM_PIPE_MIB` sets the bulk size (default 64; CI runs 1024
//! on a release build).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_discovery-swarm");

fn exit_code(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_exit_with_code_2_and_a_clear_message() {
    let cases: [(&[&str], &str); 5] = [
        (&["join", "t", "--id", "xyz"], "not a hex id"),
        (&["join", "t", "--peer", "nowhere"], "HOST:PORT"),
        (&["join", "t", "--port", "70000"], "70000"),
        (&["join", "t", "--whitelist", "1.2.3"], "1.2.3"),
        (&["join", "t", "--frobnicate"], "--frobnicate"),
    ];
    for (args, message) in cases {
        let (code, stderr) = exit_code(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(exit_code(&["join"]).0, 2, "a topic is required");
}

struct Peer {
    child: Child,
    events: mpsc::Receiver<String>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> Peer {
    let mut child = Command::new(BIN)
        .args(["join", "pipe-test", "--json", "--pipe", "--no-dht"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr: ChildStderr = child.stderr.take().unwrap();
    let (tx, events) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Peer { child, events }
}

impl Peer {
    fn wait_for(&self, event: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.events.recv_timeout(left).expect("event in time");
            if line.contains(&format!("\"event\":\"{event}\"")) {
                return line;
            }
        }
    }
}

fn field(line: &str, name: &str) -> u64 {
    let start = line.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A deterministic byte stream, so the receiver can check every byte.
fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let n = offset + i as u64;
        *b = (n ^ (n >> 8) ^ (n >> 17)) as u8;
    }
}

#[test]
fn pipe_forwards_bytes_as_they_arrive_and_moves_a_bulk_stream_intact() {
    // The CLI multicasts (mDNS is on by default): only inside an isolated namespace.
    if !support::isolated("pipe_forwards_bytes_as_they_arrive_and_moves_a_bulk_stream_intact") {
        return;
    }
    let mib: u64 = std::env::var("SWARM_PIPE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut sender = spawn(&["--port", "0"]);
    let port = field(&sender.wait_for("listening"), "port");
    // The receiver's swarm runs on smol, the sender's on tokio: both adapters carry the bulk.
    let peer = format!("127.0.0.1:{port}");
    let mut receiver = spawn(&["--port", "0", "--peer", &peer, "--runtime", "smol"]);
    sender.wait_for("connection");
    receiver.wait_for("connection");

    let mut input = sender.child.stdin.take().unwrap();
    let mut output = receiver.child.stdout.take().unwrap();
    // A few bytes with no newline must arrive without waiting for more.
    input.write_all(b"abc").unwrap();
    input.flush().unwrap();
    let mut first = [0u8; 3];
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        output.read_exact(&mut first).unwrap();
        tx.send(first).unwrap();
        let total = mib << 20;
        let mut got = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        let mut expected = vec![0u8; 1 << 16];
        while got < total {
            let n = output.read(&mut buf).unwrap();
            assert!(n > 0, "stream ended after {got} of {total} bytes");
            pattern(got, &mut expected[..n]);
            assert!(buf[..n] == expected[..n], "corrupt bytes at offset {got}");
            got += n as u64;
        }
        got
    });
    assert_eq!(
        &rx.recv_timeout(Duration::from_secs(5))
            .expect("bytes forwarded promptly"),
        b"abc"
    );

    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    for chunk in 0..mib {
        pattern(chunk << 20, &mut buf);
        input.write_all(&buf).unwrap();
    }
    drop(input);
    let got = reader.join().unwrap();
    assert_eq!(got, mib << 20);
    eprintln!("piped {mib} MiB in {:?}", started.elapsed());
}

#[test]
fn default_dht_routers_that_do_not_resolve_leave_the_swarm_working() {
    // The default bootstraps from the public routers: inside the namespace their names cannot
    // resolve (and nothing leaves it), which must cost a warning, not the swarm.
    if !support::isolated("default_dht_routers_that_do_not_resolve_leave_the_swarm_working") {
        return;
    }
    let mut child = Command::new(BIN)
        .args(["join", "dflt", "--json", "--no-mdns", "--port", "0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Events on stdout (no --pipe), warnings on stderr: one stream of lines.
    let (tx, lines) = mpsc::channel();
    let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
    for source in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(source).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let defaulted = Peer {
        child,
        events: lines,
    };
    // Where names fail at once, the warning comes before `listening`: it counts too.
    let is_warning =
        |line: &str| line.contains("does not resolve") && line.contains("router.bittorrent.com");
    let mut warned = false;
    let mut seen = Vec::new();
    let listening = loop {
        let line = defaulted.events.recv_timeout(Duration::from_secs(10));
        let line = line.expect("listening in time");
        warned |= is_warning(&line);
        if line.contains("\"event\":\"listening\"") {
            break line;
        }
        seen.push(line);
    };
    let port = field(&listening, "port");
    let dialler = spawn(&["--no-mdns", "--peer", &format!("127.0.0.1:{port}")]);
    dialler.wait_for("connection");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut connected = false;
    while !(connected && warned) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = defaulted.events.recv_timeout(left) else {
            panic!("no connection ({connected}) or warning ({warned}) in time; saw {seen:#?}");
        };
        connected |= line.contains("\"event\":\"connection\"");
        warned |= is_warning(&line);
        seen.push(line);
    }
}
