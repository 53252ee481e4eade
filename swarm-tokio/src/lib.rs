//! tokio adapter for the discovery-swarm compatible swarm.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use swarm_tokio::{SwarmBuilder, SwarmEvent};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn run() -> Result<(), swarm_tokio::Error> {
//! let mut swarm = SwarmBuilder::new().max_connections(16).build()?;
//! swarm.listen(0).await?;
//! swarm.join("ubuntu-14.04", true);
//! swarm.add_peer(Some("ubuntu-14.04"), "127.0.0.1:7001".parse().unwrap());
//! while let Some(event) = swarm.next().await {
//!     if let SwarmEvent::Connection(mut conn) = event {
//!         conn.write_all(b"hello\n").await.ok();
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! One driver task owns the [`swarm_core::Swarm`] state machine and every socket until its
//! handshake completes; after that the socket is the application's [`Connection`].

mod batch;
mod connection;
mod driver;
mod stream_bridge;
pub mod udp;

pub use connection::Connection;
pub use swarm_core::{
    BanReason, ConnId, ConnInfo, Event, HandshakeError, PeerInfo, RejectReason, Stats, Transport,
};

use bytes::Bytes;
use driver::{Command, Driver, HandshakeResult};
use futures_core::Stream;
use rand_core::{OsRng, TryRngCore};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use swarm_core::{Config, ConfigError, HandshakeMode};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Something that happened in the swarm.
#[derive(Debug)]
#[non_exhaustive]
pub enum SwarmEvent {
    /// A connection completed its handshake and is kept: Node's `connection`.
    Connection(Connection),
    /// Any other event, with our port if the event concerns a connection.
    Event {
        event: Event,
        local_port: Option<u16>,
    },
}

/// Errors of the swarm's API.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The options are inconsistent.
    Config(ConfigError),
    /// Binding the listener failed (for example, the port is in use).
    Bind(std::io::Error),
    /// The swarm was closed.
    Closed,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Config(e) => write!(f, "invalid swarm options: {e}"),
            Error::Bind(e) => write!(f, "cannot listen: {e}"),
            Error::Closed => f.write_str("the swarm is closed"),
        }
    }
}

impl std::error::Error for Error {}

type BoxedHandshake = Pin<Box<dyn Future<Output = HandshakeResult> + Send>>;
pub(crate) type ExternalHandshake =
    Arc<dyn Fn(TcpStream, ConnInfo) -> BoxedHandshake + Send + Sync>;

/// Options of a swarm, with discovery-swarm's defaults.
pub struct SwarmBuilder {
    config: Config,
    options: AdapterOptions,
}

/// What the adapter needs beyond the core's configuration.
#[derive(Default)]
pub(crate) struct AdapterOptions {
    pub external: Option<ExternalHandshake>,
    pub mdns_interfaces: Option<Vec<std::net::Ipv4Addr>>,
}

impl Default for SwarmBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SwarmBuilder {
    /// Defaults: a random 32-byte id, no connection limit, no whitelist, TCP, mDNS.
    pub fn new() -> Self {
        let mut id = [0u8; 32];
        let mut seed = [0u8; 8];
        // Without OS randomness there is no safe id to invent; fail loudly.
        OsRng
            .try_fill_bytes(&mut id)
            .expect("OS random number generator");
        OsRng
            .try_fill_bytes(&mut seed)
            .expect("OS random number generator");
        SwarmBuilder {
            config: Config::new(id.to_vec(), u64::from_le_bytes(seed)).with_mdns(),
            options: AdapterOptions::default(),
        }
    }

    /// Our peer id (1..=256 bytes).
    pub fn id(mut self, id: impl Into<Bytes>) -> Self {
        self.config.id = id.into();
        self
    }

    /// Cap on dials + handshaking + established connections; 0 = unlimited.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }

    /// Only these hosts are dialled or accepted (empty = everyone).
    pub fn whitelist(mut self, hosts: impl IntoIterator<Item = IpAddr>) -> Self {
        self.config = self.config.with_whitelist(hosts);
        self
    }

    /// On a duplicate, keep the connection we already have.
    pub fn keep_existing_connections(mut self, keep: bool) -> Self {
        self.config.keep_existing_connections = keep;
        self
    }

    /// Dial and accept TCP (on by default).
    pub fn tcp(mut self, on: bool) -> Self {
        self.config.tcp = on;
        self
    }

    /// Dial and accept uTP on the swarm's UDP port (the TCP port's number), which the DHT
    /// and dns-discovery servers then share. Off by default in the library; a dial then races
    /// both transports as Node does, and a uTP connection is the same [`Connection`] type.
    pub fn utp(mut self, on: bool) -> Self {
        self.config.utp = on;
        self
    }

    /// Waits before each retry of a failed dial (default 1 s, 1 s, 5 s, 15 s).
    pub fn retry_schedule(mut self, schedule: Vec<Duration>) -> Self {
        self.config.retry_schedule = schedule;
        self
    }

    /// Multicast DNS discovery on the LAN (on by default, as in Node): UDP 5353, the group
    /// 224.0.0.251 joined on every IPv4 interface.
    pub fn mdns(mut self, on: bool) -> Self {
        self.config = if on {
            self.config.with_mdns()
        } else {
            Config {
                mdns: None,
                ..self.config
            }
        };
        self
    }

    /// Joins the mDNS group on these interfaces only (by their IPv4 address) instead of on
    /// every IPv4 interface.
    pub fn mdns_interfaces(
        mut self,
        interfaces: impl IntoIterator<Item = std::net::Ipv4Addr>,
    ) -> Self {
        self.options.mdns_interfaces = Some(interfaces.into_iter().collect());
        self
    }

    /// Turns the Mainline DHT on (shared UDP port, the TCP port's number), bootstrapping from
    /// `bootstrap` (may be empty; add nodes later with `add_dht_bootstrap`). The library
    /// contacts nothing that was not named; [`MAINLINE_ROUTERS`] is the CLI's default.
    pub fn dht(mut self, bootstrap: Vec<SocketAddr>) -> Self {
        self.config = self.config.with_dht(bootstrap);
        self
    }

    /// Restores the DHT id and contacts saved by [`SwarmHandle::dht_state`] in an earlier run
    /// (after [`SwarmBuilder::dht`]; without the DHT it does nothing): the first lookups then
    /// start from the saved contacts and need no bootstrap node.
    pub fn dht_state(mut self, state: swarm_core::dht::DhtState) -> Self {
        if let Some(dht) = self.config.dht.as_mut() {
            dht.id = state.id;
            dht.contacts = state.contacts;
        }
        self
    }

    /// Adds a dns-discovery server (repeatable; none by default, as discovery-swarm). Resolve
    /// Node's `host[:port[,secondary]]` with [`resolve_dns_server`]. Without uTP the client
    /// gets its own UDP socket on a random port.
    pub fn dns_server(mut self, server: swarm_core::dnsd::ServerAddr) -> Self {
        self.config.dns_servers.push(server);
        self
    }

    /// Relative jitter on retry waits, in `[0, 1)`.
    pub fn retry_jitter(mut self, jitter: f64) -> Self {
        self.config.retry_jitter = jitter;
        self
    }

    /// Replaces the built-in handshake by the application's protocol (Node's `stream`
    /// option): `handshake` gets the raw socket, runs its protocol and returns the socket, the
    /// remote id and an optional discovery key that joins the ids in the duplicate rule.
    pub fn external_handshake<F, Fut>(mut self, handshake: F) -> Self
    where
        F: Fn(TcpStream, ConnInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandshakeResult> + Send + 'static,
    {
        self.config.handshake = HandshakeMode::External;
        self.options.external = Some(Arc::new(move |stream, info| {
            Box::pin(handshake(stream, info)) as BoxedHandshake
        }));
        self
    }

    /// Direct access to every core option.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Starts the swarm's driver on the current tokio runtime.
    pub fn build(mut self) -> Result<Swarm, Error> {
        // This adapter never dials uTP itself: the core runs it over the swarm's UDP socket.
        self.config.utp_in_core = self.config.utp;
        let core = swarm_core::Swarm::new(self.config).map_err(Error::Config)?;
        let id = core.id().clone();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let driver = Driver::new(
            core,
            command_rx,
            report_rx,
            report_tx,
            event_tx,
            counters.clone(),
            self.options,
        );
        tokio::spawn(driver.run());
        Ok(Swarm {
            handle: SwarmHandle {
                commands,
                counters,
                id,
            },
            events,
        })
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connected: AtomicUsize,
    pub connecting: AtomicUsize,
    pub queued: AtomicUsize,
}

/// Commands to a running swarm; cheap to clone and usable from any task.
#[derive(Clone, Debug)]
pub struct SwarmHandle {
    commands: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
    id: Bytes,
}

impl SwarmHandle {
    /// Our peer id.
    pub fn id(&self) -> &Bytes {
        &self.id
    }

    /// Listens for TCP connections on `port` (0 = any) on all addresses; returns the port.
    pub async fn listen(&self, port: u16) -> Result<u16, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Listen { port, reply })?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(Error::Bind)
    }

    /// Joins a topic (announced if `announce`). Discovery mechanisms find peers for it.
    pub fn join(&self, topic: impl AsRef<[u8]>, announce: bool) {
        let topic = Bytes::copy_from_slice(topic.as_ref());
        self.with_core(move |core, now| core.join(now, topic, announce));
    }

    /// Stops announcing and looking up a topic; connections stay.
    pub fn leave(&self, topic: impl AsRef<[u8]>) {
        let topic = Bytes::copy_from_slice(topic.as_ref());
        self.with_core(move |core, _| {
            core.leave(&topic);
        });
    }

    /// Dials a peer by hand (Node's `addPeer`).
    pub fn add_peer(&self, topic: Option<impl AsRef<[u8]>>, addr: SocketAddr) {
        let topic = topic.map(|t| Bytes::copy_from_slice(t.as_ref()));
        self.with_core(move |core, now| core.add_peer(now, topic.as_deref(), addr));
    }

    /// Adds DHT bootstrap nodes after start, e.g. the routers [`resolve_bootstrap`] found;
    /// the swarm bootstraps through them and looks every joined topic up again.
    pub fn add_dht_bootstrap(&self, addrs: Vec<SocketAddr>) {
        self.with_core(move |core, now| core.add_dht_bootstrap(now, &addrs));
    }

    /// Bans a peer (Node's `removePeer`); existing connections stay.
    pub fn remove_peer(&self, topic: Option<impl AsRef<[u8]>>, addr: SocketAddr) {
        let topic = topic.map(|t| Bytes::copy_from_slice(t.as_ref()));
        self.with_core(move |core, _| core.remove_peer(topic.as_deref(), addr));
    }

    /// Established connections.
    pub fn connected(&self) -> usize {
        self.counters.connected.load(Relaxed)
    }

    /// Dials in flight and connections still handshaking.
    pub fn connecting(&self) -> usize {
        self.counters.connecting.load(Relaxed)
    }

    /// Candidates waiting to be dialled.
    pub fn queued(&self) -> usize {
        self.counters.queued.load(Relaxed)
    }

    /// Counters since start.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let (reply, answer) = oneshot::channel();
        self.with_core(move |core, _| {
            let _ = reply.send(core.stats());
        });
        answer.await.map_err(|_| Error::Closed)
    }

    /// The DHT's id and contacts, to save and restore with [`SwarmBuilder::dht_state`] next
    /// run; `None` without the DHT.
    pub async fn dht_state(&self) -> Result<Option<swarm_core::dht::DhtState>, Error> {
        let (reply, answer) = oneshot::channel();
        self.with_core(move |core, now| {
            let _ = reply.send(core.dht_state(now));
        });
        answer.await.map_err(|_| Error::Closed)
    }

    /// Closes the listener and every connection, and stops the driver.
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Close { reply }).is_ok() {
            let _ = answer.await;
        }
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).map_err(|_| Error::Closed)
    }

    /// Runs `f` on the core in the driver task; a closed swarm ignores it.
    fn with_core(
        &self,
        f: impl FnOnce(&mut swarm_core::Swarm, swarm_core::Instant) + Send + 'static,
    ) {
        let _ = self.send(Command::Core(Box::new(f)));
    }
}

/// A running swarm: a [`Stream`] of [`SwarmEvent`]s, and its commands through `Deref` to
/// [`SwarmHandle`]. The stream ends when the swarm is closed.
#[derive(Debug)]
pub struct Swarm {
    handle: SwarmHandle,
    events: mpsc::UnboundedReceiver<SwarmEvent>,
}

impl Swarm {
    /// Starts building a swarm.
    pub fn builder() -> SwarmBuilder {
        SwarmBuilder::new()
    }

    /// A clonable handle for commands from other tasks.
    pub fn handle(&self) -> SwarmHandle {
        self.handle.clone()
    }
}

impl Deref for Swarm {
    type Target = SwarmHandle;
    fn deref(&self) -> &SwarmHandle {
        &self.handle
    }
}

impl Stream for Swarm {
    type Item = SwarmEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SwarmEvent>> {
        self.events.poll_recv(cx)
    }
}

/// The public Mainline DHT routers Node's k-rpc bootstraps from by default: the product's
/// default for `discovery-swarm join`. Tests and private networks name their own nodes.
pub const MAINLINE_ROUTERS: [&str; 3] = [
    "router.bittorrent.com:6881",
    "router.utorrent.com:6881",
    "dht.transmissionbt.com:6881",
];

/// Resolves DHT bootstrap nodes written as `host:port`, each to its first IPv4 address (the
/// DHT socket is IPv4). A name that does not resolve is logged and skipped, as Node skips a
/// router it cannot reach: the swarm goes on with what it has.
pub async fn resolve_bootstrap(names: &[String]) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for name in names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => match addrs.into_iter().find(SocketAddr::is_ipv4) {
                Some(addr) => found.push(addr),
                None => tracing::warn!(%name, "DHT bootstrap node has no IPv4 address"),
            },
            Err(e) => tracing::warn!(%name, error = %e, "DHT bootstrap node does not resolve"),
        }
    }
    found
}

/// Resolves a dns-discovery server as Node writes it: `host` (ports 5300, then 53),
/// `host:port` or `host:port,secondary`. The host is looked up once, to its first IPv4
/// address (dns-discovery is IPv4 only). Blocking: call it before starting.
pub fn resolve_dns_server(spec: &str) -> std::io::Result<swarm_core::dnsd::ServerAddr> {
    use std::net::ToSocketAddrs;
    let parsed: swarm_core::dnsd::ServerSpec = spec
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let addr = (parsed.host.as_str(), parsed.port)
        .to_socket_addrs()?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("{} has no IPv4 address", parsed.host),
            )
        })?;
    Ok(swarm_core::dnsd::ServerAddr {
        addr,
        secondary: parsed.secondary,
    })
}
