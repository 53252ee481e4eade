//! Configuration of the swarm core, with discovery-swarm 6.1.0's defaults.

use crate::handshake::DEFAULT_MAX_ID_LEN;
use bytes::Bytes;
use core::fmt;
use core::time::Duration;
use std::net::IpAddr;

/// discovery-swarm's `CONNECTION_TIMEOUT`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3000);
/// discovery-swarm's `HANDSHAKE_TIMEOUT`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(5000);
/// discovery-swarm's `RECONNECT_WAIT`: the wait before each retry; after the last, the peer drops.
pub const RECONNECT_WAIT: [Duration; 4] = [
    Duration::from_millis(1000),
    Duration::from_millis(1000),
    Duration::from_millis(5000),
    Duration::from_millis(15000),
];
/// How long a connected uTP attempt waits for a TCP attempt of the same dial to win.
pub const UTP_GRACE: Duration = Duration::from_millis(500);

/// Who performs the handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HandshakeMode {
    /// The built-in `varint(len) || id` exchange.
    #[default]
    Builtin,
    /// The application runs its own protocol over the raw connection and reports the remote
    /// id with [`Swarm::complete_handshake`](crate::Swarm::complete_handshake) (Node's
    /// `stream` option). The core sends nothing.
    External,
}

/// Options of a swarm. Build with [`Config::new`] and the `with_*` methods.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our peer id, sent in the handshake (1..=`max_id_len` bytes).
    pub id: Bytes,
    /// Cap on pending dials + handshaking + established connections; 0 = unlimited. At the
    /// cap, an inbound connection takes the place of our newest dial not yet connected (that
    /// dial ends with `connect-failed` and is queued again), or is refused if there is none.
    pub max_connections: usize,
    /// If non-empty, only these hosts are dialled or accepted.
    pub whitelist: Vec<IpAddr>,
    /// On a duplicate, keep the connection we already have (per side "first wins").
    pub keep_existing_connections: bool,
    /// Dial over TCP.
    pub tcp: bool,
    /// Dial over uTP.
    pub utp: bool,
    /// With `utp`: the core runs uTP itself over [`crate::UdpSocket::Swarm`] (dials,
    /// accepts, streams; the driver only moves datagrams). When false, a uTP dial is an
    /// `Output::Dial` for a driver that models uTP connections itself (the simulator).
    pub utp_in_core: bool,
    /// Time a dial may take before it is abandoned.
    pub connect_timeout: Duration,
    /// Time a connection may take to complete its handshake.
    pub handshake_timeout: Duration,
    /// Waits before each retry of a failed dial; when they run out the peer is dropped.
    pub retry_schedule: Vec<Duration>,
    /// Relative jitter applied to each retry wait, in `[0, 1)`; 0 (the default) = exact.
    pub retry_jitter: f64,
    /// Longest remote id accepted in the handshake.
    pub max_id_len: usize,
    /// Cap on remembered candidate peers (queued, waiting or idle); new ones beyond it are
    /// rejected with reason `full`.
    pub max_peers: usize,
    /// Who performs the handshake.
    pub handshake: HandshakeMode,
    /// The Mainline DHT, if on. Its bootstrap list is the caller's: nothing here defaults to
    /// a public node.
    pub dht: Option<crate::dht::DhtConfig>,
    /// A fixed interval between DHT rounds per topic instead of Node's jittered 10-15 min.
    pub dht_interval: Option<Duration>,
    /// Multicast DNS discovery (dns-discovery on the LAN), if on.
    pub mdns: Option<crate::mdns::MdnsConfig>,
    /// Unicast dns-discovery servers (resolved); none by default, as discovery-swarm.
    pub dns_servers: Vec<crate::dnsd::ServerAddr>,
    /// How a topic becomes its discovery key (discovery-channel's `hash` option): SHA-1 (the
    /// default), the raw topic bytes, or a caller's function; truncated to 20 bytes. Used by
    /// mDNS (the DNS name) and the DHT (the info-hash, zero-padded).
    pub topic_hash: crate::mdns::KeyHash,
    /// How long a completed dial to a peer found by mDNS waits for that peer's crossing dial
    /// when the peer's would win, so the pair is reported once (0 = never wait).
    pub crossing_grace: Duration,
    /// Seed of the core's random number generator.
    pub seed: u64,
}

/// A configuration the core cannot run with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The id is empty or longer than `max_id_len`.
    BadIdLength { len: usize, max: usize },
    /// Neither TCP nor uTP is enabled.
    NoTransport,
    /// `retry_jitter` is outside `[0, 1)`.
    BadJitter,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadIdLength { len, max } => {
                write!(f, "peer id must be 1..={max} bytes, got {len}")
            }
            ConfigError::NoTransport => f.write_str("at least one of tcp and utp must be enabled"),
            ConfigError::BadJitter => f.write_str("retry jitter must be in [0, 1)"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Defaults of discovery-swarm 6.1.0 with the given id and RNG seed.
    pub fn new(id: impl Into<Bytes>, seed: u64) -> Self {
        Config {
            id: id.into(),
            max_connections: 0,
            whitelist: Vec::new(),
            keep_existing_connections: false,
            tcp: true,
            utp: false,
            utp_in_core: false,
            connect_timeout: CONNECT_TIMEOUT,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            retry_schedule: RECONNECT_WAIT.to_vec(),
            retry_jitter: 0.0,
            max_id_len: DEFAULT_MAX_ID_LEN,
            max_peers: 10_000,
            handshake: HandshakeMode::Builtin,
            dht: None,
            dht_interval: None,
            mdns: None,
            dns_servers: Vec::new(),
            topic_hash: crate::mdns::KeyHash::Sha1,
            crossing_grace: Duration::from_millis(500),
            seed,
        }
    }

    /// Checks that the core can run with this configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.is_empty() || self.id.len() > self.max_id_len {
            return Err(ConfigError::BadIdLength {
                len: self.id.len(),
                max: self.max_id_len,
            });
        }
        if !self.tcp && !self.utp {
            return Err(ConfigError::NoTransport);
        }
        if !(0.0..1.0).contains(&self.retry_jitter) {
            return Err(ConfigError::BadJitter);
        }
        Ok(())
    }

    /// Sets `max_connections` (0 = unlimited).
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the whitelist of hosts.
    pub fn with_whitelist(mut self, hosts: impl IntoIterator<Item = IpAddr>) -> Self {
        self.whitelist = hosts.into_iter().map(crate::peer::normalize_ip).collect();
        self
    }

    /// Keeps the existing connection on duplicates.
    pub fn with_keep_existing_connections(mut self, keep: bool) -> Self {
        self.keep_existing_connections = keep;
        self
    }

    /// Sets the retry schedule.
    pub fn with_retry_schedule(mut self, schedule: Vec<Duration>) -> Self {
        self.retry_schedule = schedule;
        self
    }

    /// Sets the relative retry jitter.
    pub fn with_retry_jitter(mut self, jitter: f64) -> Self {
        self.retry_jitter = jitter;
        self
    }

    /// Turns the Mainline DHT on, bootstrapping from `bootstrap` (never a default here).
    pub fn with_dht(mut self, bootstrap: Vec<std::net::SocketAddr>) -> Self {
        let mut dht = crate::dht::DhtConfig::new(self.seed);
        dht.bootstrap = bootstrap;
        self.dht = Some(dht);
        self
    }

    /// Turns multicast DNS discovery on. Its token secret comes from the seed, so the seed
    /// must be random outside simulations.
    pub fn with_mdns(mut self) -> Self {
        use rand_core::{RngCore, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(self.seed ^ 0x6d64_6e73);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        self.mdns = Some(crate::mdns::MdnsConfig::new(secret, self.seed));
        self
    }

    /// Uses these dns-discovery servers (resolved addresses; `dnsd::ServerSpec` parses
    /// Node's `host[:port[,secondary]]`).
    pub fn with_dns_servers(mut self, servers: Vec<crate::dnsd::ServerAddr>) -> Self {
        self.dns_servers = servers;
        self
    }

    /// Sets who performs the handshake.
    pub fn with_handshake(mut self, mode: HandshakeMode) -> Self {
        self.handshake = mode;
        self
    }
}
