//! The swarm's adapter, written once for every async runtime: the driver that wires the
//! sans-IO [`swarm_core::Swarm`] to real TCP and UDP sockets and timers, the builder, the
//! handles and the application's [`Connection`]. A runtime lends only readiness, a timer and
//! a spawner ([`Runtime`]); swarm-tokio and swarm-smol are those few lines each.
//!
//! One driver future owns the core and every socket until its handshake completes; after
//! that the socket is the application's [`Connection`].

mod batch;
mod connection;
mod driver;
mod net;
mod runtime;
mod stream_bridge;
pub mod udp;

pub use connection::Connection;
pub use driver::HandshakeResult;
pub use runtime::{Driver, Io, Runtime, Socket, Timer};
pub use swarm_core::{
    BanReason, ConnId, ConnInfo, Event, HandshakeError, PeerInfo, RejectReason, Stats, Transport,
};

use bytes::Bytes;
use driver::{Channels, Command};
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
use tokio::sync::{mpsc, oneshot};

/// Something that happened in the swarm.
#[non_exhaustive]
pub enum SwarmEvent<R: Runtime> {
    /// A connection completed its handshake and is kept: Node's `connection`.
    Connection(Connection<R>),
    /// Any other event, with our port if the event concerns a connection.
    Event {
        event: Event,
        local_port: Option<u16>,
    },
}

impl<R: Runtime> std::fmt::Debug for SwarmEvent<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwarmEvent::Connection(c) => f.debug_tuple("Connection").field(c).finish(),
            SwarmEvent::Event { event, local_port } => f
                .debug_struct("Event")
                .field("event", event)
                .field("local_port", local_port)
                .finish(),
        }
    }
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

type BoxedHandshake<R> =
    Pin<Box<dyn Future<Output = HandshakeResult<<R as Runtime>::HandshakeStream>> + Send>>;
pub(crate) type ExternalHandshake<R> =
    Arc<dyn Fn(<R as Runtime>::HandshakeStream, ConnInfo) -> BoxedHandshake<R> + Send + Sync>;

/// Options of a swarm, with discovery-swarm's defaults.
pub struct SwarmBuilder<R: Runtime> {
    config: Config,
    options: AdapterOptions<R>,
}

/// What the adapter needs beyond the core's configuration.
pub(crate) struct AdapterOptions<R: Runtime> {
    pub external: Option<ExternalHandshake<R>>,
    pub mdns_interfaces: Option<Vec<std::net::Ipv4Addr>>,
}

impl<R: Runtime> Default for AdapterOptions<R> {
    fn default() -> Self {
        AdapterOptions {
            external: None,
            mdns_interfaces: None,
        }
    }
}

impl<R: Runtime> Default for SwarmBuilder<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Runtime> SwarmBuilder<R> {
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
        F: Fn(R::HandshakeStream, ConnInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandshakeResult<R::HandshakeStream>> + Send + 'static,
    {
        self.config.handshake = HandshakeMode::External;
        self.options.external = Some(Arc::new(move |stream, info| {
            Box::pin(handshake(stream, info)) as BoxedHandshake<R>
        }));
        self
    }

    /// Direct access to every core option.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Starts the swarm, its driver running in the background on the runtime's executor.
    pub fn build(self) -> Result<Swarm<R>, Error> {
        let (swarm, driver) = self.build_driver()?;
        R::spawn(driver);
        Ok(swarm)
    }

    /// The swarm and its driver, a future to run on any executor the runtime's reactor
    /// serves; nothing happens until it is polled, and it ends when the swarm is closed.
    pub fn build_driver(mut self) -> Result<(Swarm<R>, Driver), Error> {
        // This adapter never dials uTP itself: the core runs it over the swarm's UDP socket.
        self.config.utp_in_core = self.config.utp;
        let core = swarm_core::Swarm::new(self.config).map_err(Error::Config)?;
        let id = core.id().clone();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let channels = Channels {
            commands: command_rx,
            reports: report_rx,
            report_tx,
            events: event_tx,
        };
        let driver = driver::Driver::<R>::new(core, channels, counters.clone(), self.options);
        let swarm = Swarm {
            handle: SwarmHandle {
                commands,
                counters,
                id,
            },
            events,
        };
        Ok((swarm, Driver(Box::pin(driver.run()))))
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
pub struct Swarm<R: Runtime> {
    handle: SwarmHandle,
    events: mpsc::UnboundedReceiver<SwarmEvent<R>>,
}

impl<R: Runtime> std::fmt::Debug for Swarm<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("handle", &self.handle)
            .finish()
    }
}

impl<R: Runtime> Swarm<R> {
    /// Starts building a swarm.
    pub fn builder() -> SwarmBuilder<R> {
        SwarmBuilder::new()
    }

    /// A clonable handle for commands from other tasks.
    pub fn handle(&self) -> SwarmHandle {
        self.handle.clone()
    }
}

impl<R: Runtime> Deref for Swarm<R> {
    type Target = SwarmHandle;
    fn deref(&self) -> &SwarmHandle {
        &self.handle
    }
}

impl<R: Runtime> Stream for Swarm<R> {
    type Item = SwarmEvent<R>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SwarmEvent<R>>> {
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
