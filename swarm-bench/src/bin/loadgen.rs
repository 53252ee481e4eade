//! Handshake load generator for discovery-swarm style servers (loopback only).
//!
//! Phase 1 (rate): `--concurrency` clients each loop `connect -> send 0x20 + 32 random bytes
//! -> read and parse the server's complete handshake (varint + id) -> close`. Only
//! handshakes that complete inside the measured window (after `--warmup` seconds, lasting
//! `--seconds`) are counted; their latency is connect start -> server handshake fully read.
//! With `--server-pid`, the server's utime+stime (from /proc/PID/stat) is sampled exactly at
//! the window boundaries.
//!
//! Phase 2 (hold): after a settle pause the server's VmRSS is sampled, `--hold` connections
//! are opened and handshaken (at most `--concurrency` in flight) and kept open; after another
//! settle pause VmRSS is sampled again and the connections still open are counted. `held N`
//! is printed on stderr; with `--hold-wait-stdin` the loadgen then waits for a line on stdin
//! before closing them (for external sampling).
//!
//! The baseline VmRSS sample is preceded by `--hold-warmup` uncounted handshakes (closed
//! right away). Results are one JSON object on stdout.

use clap::Parser;
use serde_json::{json, Value};
use std::io::{self, BufRead};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use swarm_bench::{
    complete_handshake, procfs, SplitMix64, HANDSHAKE_BUF_LEN, HANDSHAKE_LEN, ID_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

#[derive(Parser, Debug, Clone)]
#[command(about = "Handshake load generator (loopback only)")]
struct Args {
    /// Server address; must be a loopback address
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Server TCP port
    #[arg(long)]
    port: u16,
    /// Concurrent clients (and in-flight handshakes while opening held connections)
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured window of the rate phase, in seconds (0 = skip the rate phase)
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Uncounted warm-up before the first phase, in seconds
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Connections to open, handshake and hold (0 = skip the hold phase)
    #[arg(long, default_value_t = 5000)]
    hold: usize,
    /// Handshakes (opened and closed, uncounted) right before the hold phase's baseline
    /// RSS sample, so one-time costs (lazy init, JIT) are not charged to held connections
    #[arg(long, default_value_t = 500)]
    hold_warmup: usize,
    /// PID of the server process: sample its CPU time and VmRSS
    #[arg(long)]
    server_pid: Option<u32>,
    /// Load generator runtime threads (1 = current-thread runtime)
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pause before each VmRSS sample, in milliseconds
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Per-handshake timeout (connect + write + read), in milliseconds
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// After `held N`, wait for a line on stdin before closing the held connections
    #[arg(long)]
    hold_wait_stdin: bool,
}

/// Connects, sends `hs`, and reads the server's complete handshake. Returns the open stream
/// and the server's id length.
async fn handshake_once(
    addr: SocketAddr,
    hs: &[u8; HANDSHAKE_LEN],
) -> io::Result<(TcpStream, usize)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(hs).await?;
    let mut buf = [0u8; HANDSHAKE_BUF_LEN];
    let mut filled = 0;
    loop {
        // `filled < HANDSHAKE_BUF_LEN` here: a full buffer always holds a complete handshake.
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed before completing its handshake",
            ));
        }
        filled += n;
        if let Some((id_len, _)) = complete_handshake(&buf[..filled])? {
            return Ok((s, id_len));
        }
    }
}

#[derive(Default)]
struct Stats {
    /// Latencies (µs) of handshakes completed inside the measured window.
    lat_us: Vec<u32>,
    /// Completed handshakes over the whole run (incl. warm-up and hold).
    completed: u64,
    errors: u64,
    timeouts: u64,
    /// Server handshakes whose id length differed from 32.
    odd_ids: u64,
    first_error: Option<String>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.lat_us.extend(o.lat_us);
        self.completed += o.completed;
        self.errors += o.errors;
        self.timeouts += o.timeouts;
        self.odd_ids += o.odd_ids;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

/// One client of the rate loop: handshakes back to back until `end`.
async fn rate_client(
    addr: SocketAddr,
    salt: u64,
    window_start: Instant,
    end: Instant,
    limit: Duration,
) -> Stats {
    let mut st = Stats::default();
    let mut rng = SplitMix64::from_entropy(salt);
    let mut hs = [0u8; HANDSHAKE_LEN];
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        rng.fill_handshake(&mut hs);
        let r = timeout(limit, handshake_once(addr, &hs)).await;
        let t1 = Instant::now();
        match r {
            Ok(Ok((stream, id_len))) => {
                drop(stream);
                st.completed += 1;
                if id_len != ID_LEN {
                    st.odd_ids += 1;
                }
                if t1 >= window_start && t1 <= end {
                    let us = (t1 - t0).as_micros().min(u32::MAX as u128) as u32;
                    st.lat_us.push(us);
                }
            }
            Ok(Err(e)) => {
                st.error(e.to_string());
                // Avoid a hot error loop (e.g. EADDRNOTAVAIL, ECONNREFUSED).
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => st.timeouts += 1,
        }
    }
    st
}

/// Runs the rate loop with `--concurrency` clients from now until `end`; handshakes completing in
/// `[window_start, end]` are timed. Samples server CPU at the window boundaries.
async fn rate_loop(
    args: &Args,
    addr: SocketAddr,
    window_start: Instant,
    end: Instant,
) -> (Stats, Option<(u64, u64)>, Duration) {
    let limit = Duration::from_millis(args.timeout_ms);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|i| tokio::spawn(rate_client(addr, i as u64 + 1, window_start, end, limit)))
        .collect();
    let mut cpu = None;
    let mut window = end.saturating_duration_since(window_start);
    if let Some(pid) = args.server_pid {
        tokio::time::sleep_until(window_start).await;
        let a = procfs::cpu_us(pid);
        let ta = Instant::now();
        tokio::time::sleep_until(end).await;
        let b = procfs::cpu_us(pid);
        window = ta.elapsed();
        if let (Ok(a), Ok(b)) = (a, b) {
            cpu = Some((a, b));
        }
    }
    let mut st = Stats::default();
    for t in tasks {
        st.merge(t.await.expect("rate client panicked"));
    }
    (st, cpu, window)
}

fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

struct Held {
    streams: Vec<TcpStream>,
    st: Stats,
}

async fn hold_client(addr: SocketAddr, salt: u64, remaining: Arc<AtomicUsize>, keep: bool) -> Held {
    let mut h = Held {
        streams: Vec::new(),
        st: Stats::default(),
    };
    let mut rng = SplitMix64::from_entropy(salt);
    let mut hs = [0u8; HANDSHAKE_LEN];
    let limit = Duration::from_secs(10);
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
        .is_ok()
    {
        rng.fill_handshake(&mut hs);
        match timeout(limit, handshake_once(addr, &hs)).await {
            Ok(Ok((s, id_len))) => {
                h.st.completed += 1;
                if id_len != ID_LEN {
                    h.st.odd_ids += 1;
                }
                if keep {
                    h.streams.push(s);
                }
            }
            Ok(Err(e)) => h.st.error(e.to_string()),
            Err(_) => h.st.timeouts += 1,
        }
    }
    h
}

/// Performs `count` handshakes with at most `--concurrency` in flight; keeps the
/// connections open if `keep`, else closes each right away.
async fn open_connections(
    args: &Args,
    addr: SocketAddr,
    count: usize,
    keep: bool,
) -> (Vec<TcpStream>, Stats) {
    let remaining = Arc::new(AtomicUsize::new(count));
    let tasks: Vec<_> = (0..args.concurrency.min(count))
        .map(|i| tokio::spawn(hold_client(addr, 1000 + i as u64, remaining.clone(), keep)))
        .collect();
    let mut streams = Vec::with_capacity(if keep { count } else { 0 });
    let mut st = Stats::default();
    for t in tasks {
        let h = t.await.expect("hold client panicked");
        streams.extend(h.streams);
        st.merge(h.st);
    }
    (streams, st)
}

/// True if the connection is still open (no EOF/error pending).
fn is_open(s: &TcpStream) -> bool {
    let mut b = [0u8; 64];
    match s.try_read(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

fn rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| procfs::rss_kib(p).ok())
}

async fn run(args: Args) -> Result<Value, String> {
    if !args.host.is_loopback() {
        return Err(format!("refusing non-loopback address {}", args.host));
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be > 0".into());
    }
    let addr = SocketAddr::new(args.host, args.port);
    let mut out = serde_json::Map::new();
    out.insert("concurrency".into(), json!(args.concurrency));
    let mut total = Stats::default();
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));

    if args.seconds > 0.0 {
        let start = Instant::now();
        let window_start = start + warmup;
        let end = window_start + Duration::from_secs_f64(args.seconds);
        let (mut st, cpu, window) = rate_loop(&args, addr, window_start, end).await;
        let secs = window.as_secs_f64();
        let n = st.lat_us.len() as u64;
        st.lat_us.sort_unstable();
        let mean = if n > 0 {
            st.lat_us.iter().map(|&v| v as u64).sum::<u64>() as f64 / n as f64
        } else {
            0.0
        };
        out.insert("handshakes".into(), json!(n));
        out.insert("window_s".into(), json!(secs));
        out.insert("rate".into(), json!(n as f64 / secs));
        out.insert("p50_us".into(), json!(percentile(&st.lat_us, 0.50)));
        out.insert("p90_us".into(), json!(percentile(&st.lat_us, 0.90)));
        out.insert("p99_us".into(), json!(percentile(&st.lat_us, 0.99)));
        out.insert("max_us".into(), json!(st.lat_us.last()));
        out.insert("mean_us".into(), json!(mean));
        if let Some((a, b)) = cpu {
            let used = b.saturating_sub(a);
            out.insert("server_cpu_s".into(), json!(used as f64 / 1e6));
            out.insert("server_cpu_util".into(), json!(used as f64 / 1e6 / secs));
            out.insert(
                "cpu_us_per_handshake".into(),
                json!(if n > 0 {
                    Some(used as f64 / n as f64)
                } else {
                    None
                }),
            );
        }
        st.lat_us = Vec::new();
        total.merge(st);
    }

    if args.hold > 0 {
        if args.hold_warmup > 0 {
            let (_, st) = open_connections(&args, addr, args.hold_warmup, false).await;
            total.merge(st);
        }
        tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
        let rss_before = rss(args.server_pid);
        let t0 = Instant::now();
        let (streams, hst) = open_connections(&args, addr, args.hold, true).await;
        let open_s = t0.elapsed().as_secs_f64();
        eprintln!("held {}", streams.len());
        tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
        let rss_after = rss(args.server_pid);
        let alive = streams.iter().filter(|s| is_open(s)).count();
        out.insert("hold_target".into(), json!(args.hold));
        out.insert("held".into(), json!(streams.len()));
        out.insert("held_alive".into(), json!(alive));
        out.insert("hold_open_s".into(), json!(open_s));
        out.insert("hold_errors".into(), json!(hst.errors + hst.timeouts));
        if let (Some(a), Some(b)) = (rss_before, rss_after) {
            out.insert("rss_before_kib".into(), json!(a));
            out.insert("rss_after_kib".into(), json!(b));
            out.insert(
                "rss_kib_per_conn".into(),
                json!(if alive > 0 {
                    Some((b as f64 - a as f64) / alive as f64)
                } else {
                    None
                }),
            );
        }
        if args.hold_wait_stdin {
            let _ = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                io::stdin().lock().read_line(&mut line)
            })
            .await;
        }
        drop(streams);
        total.merge(hst);
    }

    out.insert("completed_total".into(), json!(total.completed));
    out.insert("errors".into(), json!(total.errors));
    out.insert("timeouts".into(), json!(total.timeouts));
    out.insert("odd_id_len".into(), json!(total.odd_ids));
    out.insert("first_error".into(), json!(total.first_error));
    Ok(Value::Object(out))
}

fn main() {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    }
}
