//! A DHT of many of our `DhtNode`s in one process, each on its own loopback address and real
//! UDP socket (127.2.x.y), for measuring lookups by outside probes (ours and Node's) on a
//! network far bigger than one Node process can host. Prints JSON lines: `listening` when
//! node 0 (everybody's bootstrap) is up, `ready` once the announcers have announced.
//!
//!   dht-net --nodes 10000 --port 20000 --topics a,b --announcers 5

use clap::Parser;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;
use swarm_core::dht::{DhtConfig, DhtEvent, DhtNode, NodeId};
use swarm_core::Instant;
use tokio::net::UdpSocket;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    #[arg(long, default_value_t = 20_000)]
    port: u16,
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Nodes announcing every topic (spread over the network).
    #[arg(long, default_value_t = 5)]
    announcers: usize,
    /// Microseconds between two nodes joining.
    #[arg(long, default_value_t = 500)]
    join_every_us: u64,
}

fn addr(i: usize, port: u16) -> SocketAddr {
    SocketAddr::from((
        Ipv4Addr::new(127, 2, (i / 250) as u8, (i % 250) as u8 + 1),
        port,
    ))
}

async fn run_node(
    i: usize,
    args: Rc<Args>,
    epoch: tokio::time::Instant,
    announce_at: Option<tokio::time::Instant>,
    refresh_at: tokio::time::Instant,
) {
    let socket = match UdpSocket::bind(addr(i, args.port)).await {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("dht-net: node {i}: {e}");
            return;
        }
    };
    let now = || Instant::from_micros(epoch.elapsed().as_micros() as u64);
    let mut config = DhtConfig::new(0xd47 + i as u64);
    // The probes come from one address and Node's asks thousands of nodes per lookup: a
    // lookup benchmark, not a flood test.
    config.queries_per_sec = 100_000;
    config.query_burst = 100_000;
    if i > 0 {
        config.bootstrap = vec![addr(0, args.port)];
    }
    let mut node = DhtNode::new(config, now());
    if std::env::var_os("DHT_NET_DEBUG").is_some() {
        eprintln!("id {i} {}", hex(&node.id().0));
    }
    if i == 0 {
        println!("{{\"event\":\"listening\",\"port\":{}}}", args.port);
    } else {
        node.bootstrap(now());
    }
    let hashes: Vec<NodeId> = args
        .topics
        .iter()
        .map(|t| NodeId::sha1(t.as_bytes()))
        .collect();
    let mut announce_at = announce_at;
    let mut refresh_at = Some(refresh_at);
    let mut pending_announces = 0usize;
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some((to, data)) = node.poll_transmit() {
            let _ = socket.send_to(&data, to).await;
        }
        while let Some(event) = node.poll_event() {
            if let DhtEvent::AnnounceDone {
                acked, info_hash, ..
            } = event
            {
                if std::env::var_os("DHT_NET_DEBUG").is_some() {
                    eprintln!("node {i} announce {info_hash:?} acked {acked}");
                }
                pending_announces -= 1;
                if pending_announces == 0 {
                    println!("{{\"event\":\"announced\",\"node\":{i}}}");
                }
            }
        }
        let mut wake = node
            .poll_timeout()
            .map(|t| epoch + Duration::from_micros(t.as_micros()))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(60));
        for at in [announce_at, refresh_at].into_iter().flatten() {
            wake = wake.min(at);
        }
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                if let Ok((len, from)) = received {
                    let stored = node.stored_peers();
                    node.handle_datagram(now(), from, &buf[..len]);
                    if node.stored_peers() != stored && std::env::var_os("DHT_NET_DEBUG").is_some() {
                        eprintln!("stored {i} {} {}", node.stored_peers(), hex(&node.id().0));
                    }
                }
            }
            () = tokio::time::sleep_until(wake) => {
                if refresh_at.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    refresh_at = None;
                    node.bootstrap(now());
                }

                if announce_at.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    announce_at = None;
                    for h in &hashes {
                        node.announce(now(), *h, 30_000 + i as u16, false);
                        pending_announces += 1;
                    }
                }
                node.handle_timeout(now());
            }
        }
    }
}

fn main() {
    let args = Rc::new(Args::parse());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let epoch = tokio::time::Instant::now();
        let join = Duration::from_micros(args.join_every_us);
        let all_joined = epoch + join * args.nodes as u32;
        let stride = (args.nodes / args.announcers.max(1)).max(1);
        for i in 0..args.nodes {
            // Every node looks itself up once more after all have joined (what bucket refresh
            // does over the first minutes of a real node's life: early joiners learn of late
            // ones), then the announcers announce into that settled network.
            let refresh_at = all_joined + join * i as u32;
            let announce_at = (i % stride == stride / 2 && i / stride < args.announcers)
                .then(|| all_joined + join * args.nodes as u32 + Duration::from_secs(2));
            tokio::task::spawn_local(run_node(i, args.clone(), epoch, announce_at, refresh_at));
            tokio::time::sleep_until(epoch + join * (i as u32 + 1)).await;
        }
        std::future::pending::<()>().await;
    });
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
