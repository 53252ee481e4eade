//! `discovery-swarm dht-node`: a standalone Mainline DHT node that answers queries and stores
//! announces, usable as the bootstrap node of a private network. The loop is the sans-IO one:
//! datagram in, datagrams out, sleep until the node's next deadline.

use rand_core::{OsRng, TryRngCore};
use std::process::ExitCode;
use swarm_core::dht::{DhtConfig, DhtNode, DhtState};
use swarm_core::Instant;
use tokio::net::UdpSocket;

pub async fn run(args: crate::DhtNodeArgs) -> ExitCode {
    let crate::DhtNodeArgs {
        port,
        dht_bootstrap: bootstrap,
        dht_state: state_file,
        rate,
        burst,
    } = args;
    let socket = match UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("discovery-swarm: cannot bind UDP port {port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(bound) = socket.local_addr() else {
        return ExitCode::FAILURE;
    };
    let mut seed = [0u8; 8];
    if OsRng.try_fill_bytes(&mut seed).is_err() {
        eprintln!("discovery-swarm: no OS randomness for the node id");
        return ExitCode::FAILURE;
    }
    let mut config = DhtConfig::new(u64::from_le_bytes(seed));
    config.bootstrap = bootstrap;
    if rate == 0 {
        config.queries_per_sec = u32::MAX / 2;
        config.query_burst = u32::MAX / 2;
    } else {
        config.queries_per_sec = rate;
        config.query_burst = burst;
    }
    if let Some(state) = state_file.as_deref().and_then(crate::dht_state::load) {
        config.id = state.id;
        config.contacts = state.contacts;
    }
    let has_bootstrap = !config.bootstrap.is_empty() || !config.contacts.is_empty();
    let epoch = tokio::time::Instant::now();
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut node = DhtNode::new(config, now());
    if has_bootstrap {
        node.bootstrap(now());
    }
    // Before `listening` is reported, so a SIGTERM right after it stops us cleanly.
    let mut terminate = crate::signal_terminate();
    println!("{{\"event\":\"listening\",\"port\":{}}}", bound.port());
    let mut buf = vec![0u8; 64 * 1024];
    let save = |node: &DhtNode| {
        if let Some(path) = state_file.as_deref() {
            let state = DhtState {
                id: node.id(),
                contacts: node.contacts(now()),
            };
            crate::dht_state::save(path, &state);
        }
    };
    let mut next_save = tokio::time::Instant::now() + crate::dht_state::SAVE_EVERY;
    // Created once: a signal listener or timer made per datagram costs more than the answer.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let sleep = tokio::time::sleep_until(next_save);
    tokio::pin!(sleep);
    loop {
        if tokio::time::Instant::now() >= next_save {
            save(&node);
            next_save += crate::dht_state::SAVE_EVERY;
        }
        while let Some((to, data)) = node.poll_transmit() {
            if let Err(e) = send(&socket, &data, to).await {
                tracing::debug!(%to, error = %e, "datagram dropped");
            }
        }
        while node.poll_event().is_some() {}
        let wake = node
            .poll_timeout()
            .map(|t| epoch + std::time::Duration::from_micros(t.as_micros()))
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(60))
            .min(next_save);
        sleep.as_mut().reset(wake);
        tokio::select! {
            ready = socket.readable() => match ready {
                // Everything already queued, up to a batch, before sending the answers.
                Ok(()) => for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        // A DHT-only port: whatever was not KRPC is dropped.
                        Ok((len, from)) => {
                            node.handle_datagram(now(), from, &buf[..len]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "receive failed");
                            break;
                        }
                    }
                },
                Err(e) => tracing::debug!(error = %e, "socket failed"),
            },
            () = &mut sleep => node.handle_timeout(now()),
            _ = &mut ctrl_c => break,
            _ = terminate.recv() => break,
        }
    }
    save(&node);
    eprintln!(
        "discovery-swarm: dht-node stopping ({} contacts, {} stored peers)",
        node.table().len(),
        node.stored_peers()
    );
    ExitCode::SUCCESS
}

/// Datagrams taken per wake-up before the replies go out.
const RECV_BATCH: usize = 64;

/// Sends at once when the socket has room, without a trip through the reactor.
async fn send(socket: &UdpSocket, data: &[u8], to: std::net::SocketAddr) -> std::io::Result<usize> {
    match socket.try_send_to(data, to) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket.send_to(data, to).await,
        result => result,
    }
}
