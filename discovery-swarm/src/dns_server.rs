//! `discovery-swarm dns-server`: a dns-discovery server (Node's `dns-discovery listen`) on one
//! or more UDP ports. The loop is the sans-IO one: datagrams in, the engine's datagrams out on
//! the same socket, sleep until its next deadline. Logs with `tracing`, reports counts every
//! `--stats-interval` seconds, and stops on SIGINT/SIGTERM with a final count.

use clap::Args;
use rand_core::{OsRng, TryRngCore};
use std::io;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_core::dnsd::{DnsServer, DnsServerConfig, DnsServerStats};
use swarm_core::Instant;

#[derive(Args)]
pub struct DnsServerArgs {
    /// UDP ports to listen on (comma-separated; a port that cannot be bound, e.g. 53 without
    /// privileges, is skipped with a warning; 0 = any).
    #[arg(long, value_delimiter = ',', value_name = "PORT,...", default_values_t = [5300u16, 53])]
    port: Vec<u16>,
    /// Address to bind.
    #[arg(long, default_value_t = Ipv4Addr::UNSPECIFIED)]
    host: Ipv4Addr,
    /// Seconds an announced peer lives without being announced again (0 = until evicted, as
    /// Node's default).
    #[arg(long, default_value_t = 0)]
    ttl: u32,
    /// Peers stored in all; beyond it the oldest peer of the least recently used name goes.
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
    /// Requests per second accepted from one source IP (0 = no limit).
    #[arg(long, default_value_t = 64)]
    rate: u32,
    /// Requests a source IP may send in a burst.
    #[arg(long, default_value_t = 256)]
    burst: u32,
    /// Seconds between count reports (0 = only the final one).
    #[arg(long, default_value_t = 60)]
    stats_interval: u64,
}

pub async fn run(args: DnsServerArgs) -> ExitCode {
    let mut sockets = Vec::new();
    for &port in &args.port {
        match std::net::UdpSocket::bind((args.host, port)) {
            Ok(socket) => sockets.push(socket),
            Err(e) => tracing::warn!(port, error = %e, "cannot bind; skipping this port"),
        }
    }
    if sockets.is_empty() {
        eprintln!(
            "discovery-swarm: dns-server could not bind any of {:?}",
            args.port
        );
        return ExitCode::FAILURE;
    }
    let mut seed = [0u8; 32];
    if OsRng.try_fill_bytes(&mut seed).is_err() {
        eprintln!("discovery-swarm: no OS randomness for the token secrets");
        return ExitCode::FAILURE;
    }
    let mut config = DnsServerConfig::new(seed);
    config.store.ttl_secs = args.ttl;
    config.store.limit = args.limit.max(1);
    config.push.limit = args.limit.max(1);
    config.per_sec = args.rate;
    config.burst = args.burst;
    let epoch = std::time::Instant::now();
    let server = Arc::new(Mutex::new(DnsServer::new(config, now(epoch))));
    let ports: Vec<u16> = sockets
        .iter()
        .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
        .collect();
    // Before `listening` is reported, so a SIGTERM right after it stops us cleanly.
    let mut terminate = crate::signal_terminate();
    println!(
        "{{\"event\":\"listening\",\"ports\":[{}]}}",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    tracing::info!(?ports, "dns-discovery server listening");
    // One blocking thread per socket: a datagram costs one receive and one send system call,
    // with no readiness polling in between (tokio's cost dominated under load).
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let (server, stop) = (server.clone(), stop.clone());
            std::thread::spawn(move || serve(i == 0, socket, &server, &stop, epoch))
        })
        .collect();
    let report_every = Duration::from_secs(args.stats_interval.max(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(report_every), if args.stats_interval > 0 => {
                report(&lock(&server), "dns-server counts");
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let server = lock(&server);
    report(&server, "dns-server stopping");
    let s = server.stats();
    eprintln!(
        "discovery-swarm: dns-server stopping ({} requests, {} stored peers, {} names, {} subscribers, {} rate-limited, {} malformed)",
        s.requests,
        server.stored_peers(),
        server.stored_names(),
        server.subscribers(),
        s.rate_limited,
        s.malformed
    );
    ExitCode::SUCCESS
}

fn now(epoch: std::time::Instant) -> Instant {
    Instant::from_micros(epoch.elapsed().as_micros() as u64)
}

fn lock(server: &Mutex<DnsServer>) -> std::sync::MutexGuard<'_, DnsServer> {
    // A panic elsewhere leaves the engine usable (its state is updated per datagram).
    server
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves one socket until `stop`: each datagram is answered at once from the same socket;
/// the first socket's thread also runs the engine's timers (resent pushes go out on it).
fn serve(
    timers: bool,
    socket: std::net::UdpSocket,
    server: &Mutex<DnsServer>,
    stop: &AtomicBool,
    epoch: std::time::Instant,
) {
    // Short enough to notice `stop` and timers promptly; set once (it is a system call).
    if let Err(e) = socket.set_read_timeout(Some(Duration::from_millis(100))) {
        tracing::warn!(error = %e, "cannot set the socket timeout");
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut out: Vec<(std::net::SocketAddr, bytes::Bytes)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let received = socket.recv_from(&mut buf);
        {
            let mut server = lock(server);
            let t = now(epoch);
            match received {
                Ok((len, from)) => {
                    if let Err(e) = server.handle_datagram(t, from, &buf[..len]) {
                        tracing::trace!(%from, error = %e, "request not fully served");
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => tracing::debug!(error = %e, "receive failed"),
            }
            if timers && server.poll_timeout().is_some_and(|at| at <= t) {
                server.handle_timeout(t);
            }
            while let Some(datagram) = server.poll_transmit() {
                out.push(datagram);
            }
        }
        for (to, data) in out.drain(..) {
            if let Err(e) = socket.send_to(&data, to) {
                tracing::debug!(%to, error = %e, "datagram dropped");
            }
        }
    }
}

fn report(server: &DnsServer, message: &str) {
    let DnsServerStats {
        requests,
        responses_sent,
        probes,
        lookups,
        announces,
        unannounces,
        pushes_sent,
        pushes_failed,
        rate_limited,
        malformed,
        invalid_tokens,
        malformed_txt,
        dropped,
        ..
    } = server.stats();
    tracing::info!(
        requests,
        responses_sent,
        probes,
        lookups,
        announces,
        unannounces,
        pushes_sent,
        pushes_failed,
        rate_limited,
        malformed,
        invalid_tokens,
        malformed_txt,
        dropped,
        stored_peers = server.stored_peers(),
        names = server.stored_names(),
        subscribers = server.subscribers(),
        store_bytes = server.store_bytes(),
        "{message}"
    );
}
