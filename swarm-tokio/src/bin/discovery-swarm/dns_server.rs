//! `discovery-swarm dns-server`: a dns-discovery server (Node's `dns-discovery listen`) on one
//! or more UDP ports. The loop is the sans-IO one: datagrams in, the engine's datagrams out on
//! the same socket, sleep until its next deadline. Logs with `tracing`, reports counts every
//! `--stats-interval` seconds, and stops on SIGINT/SIGTERM with a final count.

use clap::Args;
use rand_core::{OsRng, TryRngCore};
use std::io;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;
use swarm_core::dnsd::{DnsServer, DnsServerConfig, DnsServerStats};
use swarm_core::Instant;
use tokio::net::UdpSocket;

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
        match UdpSocket::bind((args.host, port)).await {
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
    let epoch = tokio::time::Instant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut server = DnsServer::new(config, now());
    let ports: Vec<u16> = sockets
        .iter()
        .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
        .collect();
    println!(
        "{{\"event\":\"listening\",\"ports\":[{}]}}",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    tracing::info!(?ports, "dns-discovery server listening");
    let mut buf = vec![0u8; 64 * 1024];
    let mut terminate = crate::signal_terminate();
    let report_every = (args.stats_interval > 0).then(|| Duration::from_secs(args.stats_interval));
    let mut next_report = report_every.map(|d| tokio::time::Instant::now() + d);
    loop {
        let wake = server
            .poll_timeout()
            .map(|t| epoch + Duration::from_micros(t.as_micros()))
            .into_iter()
            .chain(next_report)
            .min()
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(60));
        tokio::select! {
            ready = readable(&sockets) => match ready {
                Ok(i) => serve(&mut server, &sockets[i], &mut buf, now),
                Err(e) => tracing::debug!(error = %e, "socket not readable"),
            },
            () = tokio::time::sleep_until(wake) => {
                server.handle_timeout(now());
                flush(&mut server, &sockets[0]);
                if next_report.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    report(&server, "dns-server counts");
                    next_report = report_every.map(|d| tokio::time::Instant::now() + d);
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
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

/// Takes every datagram waiting on the socket, answering each at once from the same socket.
fn serve(server: &mut DnsServer, socket: &UdpSocket, buf: &mut [u8], now: impl Fn() -> Instant) {
    // Bounded, so one busy socket cannot starve the timers and signals.
    for _ in 0..256 {
        match socket.try_recv_from(buf) {
            Ok((len, from)) => {
                if let Err(e) = server.handle_datagram(now(), from, &buf[..len]) {
                    tracing::trace!(%from, error = %e, "request not fully served");
                }
                flush(server, socket);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::debug!(error = %e, "receive failed");
                return;
            }
        }
    }
}

fn flush(server: &mut DnsServer, socket: &UdpSocket) {
    while let Some((to, data)) = server.poll_transmit() {
        if let Err(e) = socket.try_send_to(&data, to) {
            tracing::debug!(%to, error = %e, "datagram dropped");
        }
    }
}

/// The index of a socket with a datagram waiting.
async fn readable(sockets: &[UdpSocket]) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        for (i, socket) in sockets.iter().enumerate() {
            if let std::task::Poll::Ready(result) = socket.poll_recv_ready(cx) {
                return std::task::Poll::Ready(result.map(|()| i));
            }
        }
        std::task::Poll::Pending
    })
    .await
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
