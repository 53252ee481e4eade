//! `discovery-swarm`: join topics and report (or pipe) every connection.

mod dht_node;
mod dht_state;
mod dns_server;
mod output;
mod pipe;

use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;
use swarm_io::{Runtime, Swarm, SwarmBuilder, SwarmEvent};

#[derive(Parser)]
#[command(
    name = "discovery-swarm",
    version,
    about = "A network swarm that finds peers by topic and keeps one connection to each"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The runtime adapter that drives the swarm of `join`: tokio (swarm-tokio) or smol
    /// (swarm-smol, its driver on a thread of its own). Output and piping run on tokio.
    #[arg(long, global = true, value_enum, default_value = "tokio")]
    runtime: RuntimeChoice,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RuntimeChoice {
    Tokio,
    Smol,
}

#[derive(Subcommand)]
enum Command {
    /// Join topics and connect to every peer found for them.
    Join(JoinArgs),
    /// Run a standalone Mainline DHT node (for example the bootstrap node of a private
    /// network): it answers queries and stores announces.
    DhtNode(DhtNodeArgs),
    /// Run a dns-discovery server (Node's `dns-discovery listen`): peers announce and look
    /// topics up through it with `--dns-server`.
    DnsServer(dns_server::DnsServerArgs),
}

#[derive(Args)]
pub(crate) struct DhtNodeArgs {
    /// UDP port to listen on (0 = any).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Other nodes to join through (comma-separated HOST:PORT); none = start a new network.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...", value_parser = parse_peer)]
    dht_bootstrap: Vec<SocketAddr>,
    /// Keep the node's id and contacts in FILE (read at start, written every 5 minutes and
    /// on exit).
    #[arg(long, value_name = "FILE")]
    dht_state: Option<std::path::PathBuf>,
    /// Queries per second answered per source IP (0 = no limit, for a private network or a
    /// benchmark).
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Queries a source IP may send in a burst above the rate.
    #[arg(long, default_value_t = 50)]
    burst: u32,
}

#[derive(Args)]
struct JoinArgs {
    /// Topics to join (their UTF-8 bytes are the channel, as in Node's `join(string)`).
    #[arg(required = true)]
    topics: Vec<String>,
    /// TCP port to listen on (0 = any).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Peer id in hex (default: 32 random bytes).
    #[arg(long, value_parser = parse_id)]
    id: Option<HexId>,
    /// Dial this peer for the first topic (repeatable).
    #[arg(long = "peer", value_name = "HOST:PORT", value_parser = parse_peer)]
    peers: Vec<SocketAddr>,
    /// Cap on dialling + handshaking + connected peers (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    max_connections: usize,
    /// Only connect with these hosts (comma-separated IPs).
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    whitelist: Vec<IpAddr>,
    /// Look the topics up without announcing them.
    #[arg(long)]
    no_announce: bool,
    /// Bootstrap the Mainline DHT from these nodes (comma-separated HOST:PORT) instead of the
    /// public routers (router.bittorrent.com, router.utorrent.com, dht.transmissionbt.com).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...", value_parser = parse_bootstrap)]
    dht_bootstrap: Vec<String>,
    /// Keep the DHT's id and contacts in FILE: read at start (the first lookups then need no
    /// bootstrap node), written every 5 minutes and on exit.
    #[arg(long, value_name = "FILE")]
    dht_state: Option<std::path::PathBuf>,
    /// Seconds between a topic's DHT lookups and announces (Node's `dht.interval`; default a
    /// random 10 to 15 minutes).
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    dht_interval: Option<Duration>,
    /// Turn the DHT off even if bootstrap nodes are given.
    #[arg(long)]
    no_dht: bool,
    /// Turn multicast DNS (LAN discovery) off.
    #[arg(long)]
    no_mdns: bool,
    /// Neither dial nor accept TCP (uTP only).
    #[arg(long, conflicts_with = "no_utp")]
    no_tcp: bool,
    /// Neither dial nor accept uTP (TCP only; the DHT and dns-discovery then use their own
    /// UDP sockets).
    #[arg(long)]
    no_utp: bool,
    /// Find peers through this dns-discovery server: HOST (ports 5300, then 53), HOST:PORT or
    /// HOST:PORT,SECONDARY (repeatable).
    #[arg(long = "dns-server", value_name = "HOST[:PORT]", value_parser = parse_dns_server)]
    dns_servers: Vec<swarm_core::dnsd::ServerAddr>,
    /// Join the mDNS group only on the interfaces with these IPv4 addresses (default: all).
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    mdns_interface: Vec<std::net::Ipv4Addr>,
    /// On a duplicate, keep the existing connection.
    #[arg(long)]
    keep_existing: bool,
    /// One JSON object per event.
    #[arg(long)]
    json: bool,
    /// Write stdin to every connection and every connection's data to stdout (events go to
    /// stderr).
    #[arg(long)]
    pipe: bool,
}

#[derive(Clone)]
struct HexId(Vec<u8>);

fn parse_id(text: &str) -> Result<HexId, String> {
    let id = hex::decode(text).map_err(|e| format!("not a hex id: {e}"))?;
    if id.is_empty() || id.len() > swarm_core::handshake::DEFAULT_MAX_ID_LEN {
        return Err(format!("the id must be 1 to 256 bytes, got {}", id.len()));
    }
    Ok(HexId(id))
}

fn parse_peer(text: &str) -> Result<SocketAddr, String> {
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| format!("expected HOST:PORT ({e})"))?;
    let addr = addrs
        .next()
        .ok_or_else(|| format!("{text} resolves to nothing"))?;
    if addr.port() == 0 {
        return Err("port 0 cannot be dialled".into());
    }
    Ok(addr)
}

/// `HOST:PORT` with a port, checked now and resolved later.
fn parse_bootstrap(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
            Ok(text.to_string())
        }
        _ => Err(format!("expected HOST:PORT, got {text:?}")),
    }
}

fn parse_dns_server(text: &str) -> Result<swarm_core::dnsd::ServerAddr, String> {
    swarm_tokio::resolve_dns_server(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // The DHT node is one task on one socket: worker threads would only add wake-ups.
    let mut builder = match cli.command {
        Command::DhtNode(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("discovery-swarm: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Join(args) => match cli.runtime {
            RuntimeChoice::Tokio => runtime.block_on(join(args, swarm_tokio::SwarmBuilder::build)),
            RuntimeChoice::Smol => runtime.block_on(join(args, start_on_smol)),
        },
        Command::DhtNode(args) => runtime.block_on(dht_node::run(args)),
        Command::DnsServer(args) => runtime.block_on(dns_server::run(args)),
    }
}

/// Starts the swarm's driver on a thread of its own, driven by smol (async-io's reactor).
fn start_on_smol(
    builder: SwarmBuilder<swarm_smol::Smol>,
) -> Result<Swarm<swarm_smol::Smol>, swarm_io::Error> {
    let (swarm, driver) = builder.build_driver()?;
    std::thread::Builder::new()
        .name("swarm-smol".into())
        .spawn(move || smol::block_on(driver))
        .map_err(|_| swarm_io::Error::Closed)?;
    Ok(swarm)
}

async fn join<R: Runtime>(
    args: JoinArgs,
    start: impl FnOnce(SwarmBuilder<R>) -> Result<Swarm<R>, swarm_io::Error>,
) -> ExitCode {
    let mut builder = SwarmBuilder::<R>::new()
        .max_connections(args.max_connections)
        .whitelist(args.whitelist.iter().copied())
        .keep_existing_connections(args.keep_existing)
        .tcp(!args.no_tcp)
        .utp(!args.no_utp)
        .mdns(!args.no_mdns);
    if !args.mdns_interface.is_empty() {
        builder = builder.mdns_interfaces(args.mdns_interface.iter().copied());
    }
    // Literal addresses go in at once; names (the public routers by default) are resolved
    // in the background and added when they answer, so a slow resolver delays nothing.
    let mut bootstrap_names = Vec::new();
    if !args.no_dht {
        let nodes = if args.dht_bootstrap.is_empty() {
            swarm_tokio::MAINLINE_ROUTERS.map(String::from).to_vec()
        } else {
            args.dht_bootstrap.clone()
        };
        let (literal, names): (Vec<_>, Vec<_>) = nodes
            .into_iter()
            .partition(|n| n.parse::<SocketAddr>().is_ok());
        bootstrap_names = names;
        builder = builder.dht(literal.iter().filter_map(|n| n.parse().ok()).collect());
        builder.config_mut().dht_interval = args.dht_interval;
        if let Some(state) = args.dht_state.as_deref().and_then(dht_state::load) {
            builder = builder.dht_state(state);
        }
    }
    for server in &args.dns_servers {
        builder = builder.dns_server(*server);
    }
    if let Some(HexId(id)) = args.id {
        builder = builder.id(id);
    }
    let mut swarm = match start(builder) {
        Ok(swarm) => swarm,
        Err(e) => {
            eprintln!("discovery-swarm: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = swarm.listen(args.port).await {
        eprintln!("discovery-swarm: {e}");
        return ExitCode::FAILURE;
    }
    for topic in &args.topics {
        swarm.join(topic, !args.no_announce);
    }
    if !bootstrap_names.is_empty() {
        let handle = swarm.handle();
        tokio::spawn(async move {
            let found = swarm_tokio::resolve_bootstrap(&bootstrap_names).await;
            if !found.is_empty() {
                handle.add_dht_bootstrap(found);
            }
        });
    }
    for peer in &args.peers {
        swarm.add_peer(Some(&args.topics[0]), *peer);
    }
    let printer = output::Printer::new(args.json, args.pipe);
    let pipe = args.pipe.then(pipe::Pipe::start);
    let mut terminate = signal_terminate();
    let state_file = args.dht_state.filter(|_| !args.no_dht);
    let mut save_state = tokio::time::interval_at(
        tokio::time::Instant::now() + dht_state::SAVE_EVERY,
        dht_state::SAVE_EVERY,
    );
    loop {
        tokio::select! {
            _ = save_state.tick(), if state_file.is_some() => {
                save_dht_state(&swarm, state_file.as_deref()).await;
            }
            event = swarm.next() => match event {
                Some(SwarmEvent::Connection(conn)) => {
                    // Announce only once attached, so input written after the event reaches it.
                    let announcement = printer.connection_line(&conn);
                    match &pipe {
                        Some(pipe) => pipe.attach(conn),
                        None => pipe::drain(conn),
                    }
                    printer.write(announcement);
                }
                Some(SwarmEvent::Event { event, local_port }) => printer.event(&event, local_port),
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    save_dht_state(&swarm, state_file.as_deref()).await;
    swarm.close().await;
    ExitCode::SUCCESS
}

async fn save_dht_state<R: Runtime>(swarm: &Swarm<R>, path: Option<&std::path::Path>) {
    if let (Some(path), Ok(Some(state))) = (path, swarm.dht_state().await) {
        dht_state::save(path, &state);
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "expected seconds between 0 and 86400, got {text:?}"
        )),
    }
}

/// SIGTERM as a channel. The handler is registered before this returns, so a SIGTERM sent as
/// soon as the process reports `listening` stops it cleanly instead of killing it.
fn signal_terminate() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::spawn(async move {
            term.recv().await;
            let _ = tx.send(()).await;
        });
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}
