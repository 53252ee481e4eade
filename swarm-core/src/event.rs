//! Events the core reports, one-to-one with discovery-swarm's, and its counters.

use crate::handshake::HandshakeError;
use crate::ConnId;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

/// The transport of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Utp,
}

impl Transport {
    /// `"tcp"` or `"utp"`, as in Node's `info.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Utp => "utp",
        }
    }
}

/// Where a candidate peer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerSource {
    /// `add_peer` by the application.
    Manual,
    /// Multicast or unicast dns-discovery.
    Dns,
    /// The Mainline DHT.
    Dht,
}

/// A candidate peer: an address found for a topic (Node's peer object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// The topic it was found for; `None` for a peer added without one.
    pub topic: Option<Bytes>,
    /// Failed dials so far.
    pub retries: u32,
}

/// What is known about a connection (Node's `info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub transport: Transport,
    /// Whether we dialled it.
    pub initiator: bool,
    /// The dialled address (outbound) or the transport's remote address (inbound).
    pub addr: SocketAddr,
    /// The topic of the dialled peer; `None` for inbound connections.
    pub topic: Option<Bytes>,
    /// The remote peer id, once the handshake completed. (An `Arc` rather than `Bytes`: half
    /// the size, and there is a copy per held connection.)
    pub id: Option<Arc<[u8]>>,
}

/// Why a candidate peer or an inbound connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not in the whitelist.
    Whitelist,
    /// Banned (by the application or by self-detection).
    Banned,
    /// Already queued, dialling or connected.
    Duplicate,
    /// The candidate table is full.
    Full,
    /// `max_connections` reached (inbound only).
    MaxConnections,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Whitelist => "whitelist",
            RejectReason::Banned => "banned",
            RejectReason::Duplicate => "duplicate",
            RejectReason::Full => "full",
            RejectReason::MaxConnections => "max-connections",
        }
    }
}

/// Why a peer was banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanReason {
    /// `remove_peer` by the application.
    Application,
    /// A dial reached ourselves.
    DetectedSelf,
}

impl BanReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BanReason::Application => "application",
            BanReason::DetectedSelf => "detected-self",
        }
    }
}

/// Something the application may want to know. Names follow discovery-swarm's events.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `listening`: the driver reported its listening port.
    Listening { port: u16 },
    /// `peer`: a candidate passed the checks and was queued.
    Peer(PeerInfo),
    /// `peer-rejected`.
    PeerRejected {
        addr: SocketAddr,
        topic: Option<Bytes>,
        reason: RejectReason,
    },
    /// `peer-banned`.
    PeerBanned { peer: PeerInfo, reason: BanReason },
    /// `drop`: retries exhausted; the peer is forgotten.
    Drop(PeerInfo),
    /// `connecting`: a dial attempt starts.
    Connecting(PeerInfo),
    /// `connect-failed`: every transport of a dial closed unconnected.
    ConnectFailed { peer: PeerInfo, timed_out: bool },
    /// `handshaking`: a transport connection (in or out) entered the handshake.
    Handshaking { conn: ConnId, info: ConnInfo },
    /// `handshake-timeout`.
    HandshakeTimeout { conn: ConnId, info: ConnInfo },
    /// The remote's handshake was malformed (Node has no such event: it hangs or crashes).
    HandshakeFailed {
        conn: ConnId,
        info: ConnInfo,
        error: HandshakeError,
    },
    /// `connection`: handshake done and the connection kept. `early_data` holds application
    /// bytes that arrived together with the handshake; they come before anything read later.
    Connection {
        conn: ConnId,
        info: ConnInfo,
        early_data: Bytes,
    },
    /// `redundant-connection`: `conn` is being closed as a duplicate; `info` is the newer
    /// connection's, as in Node.
    RedundantConnection { conn: ConnId, info: ConnInfo },
    /// `connection-closed`: a connection that reached `handshaking` is gone.
    ConnectionClosed { conn: ConnId, info: ConnInfo },
    /// The first discovery round of every enabled mechanism finished for `topic` (Node's
    /// `join` callback). Reported once per join, after listening.
    Joined { topic: Bytes },
}

impl Event {
    /// Node's name for this event.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Listening { .. } => "listening",
            Event::Peer(_) => "peer",
            Event::PeerRejected { .. } => "peer-rejected",
            Event::PeerBanned { .. } => "peer-banned",
            Event::Drop(_) => "drop",
            Event::Connecting(_) => "connecting",
            Event::ConnectFailed { .. } => "connect-failed",
            Event::Handshaking { .. } => "handshaking",
            Event::HandshakeTimeout { .. } => "handshake-timeout",
            Event::HandshakeFailed { .. } => "handshake-failed",
            Event::Connection { .. } => "connection",
            Event::RedundantConnection { .. } => "redundant-connection",
            Event::ConnectionClosed { .. } => "connection-closed",
            Event::Joined { .. } => "joined",
        }
    }
}

/// Monotonic counters since the swarm started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Dial attempts started (`connecting` events).
    pub dials_attempted: u64,
    /// Dial attempts that ended in `connect-failed`, yielded ones apart.
    pub dials_failed: u64,
    /// Dial attempts ended (with `connect-failed`) to admit an inbound connection at the
    /// limit.
    pub dials_yielded: u64,
    /// Inbound transport connections accepted into the handshake.
    pub inbound_accepted: u64,
    /// Inbound connections refused by the whitelist, a ban or `max_connections`.
    pub inbound_refused: u64,
    /// Outbound connections that reached `connection`.
    pub outbound_opened: u64,
    /// Inbound connections that reached `connection`.
    pub inbound_opened: u64,
    /// Outbound connections closed after reaching `connection`.
    pub outbound_closed: u64,
    /// Inbound connections closed after reaching `connection`.
    pub inbound_closed: u64,
    /// Connections closed by the duplicate rule.
    pub redundant: u64,
    /// Handshakes that failed or timed out.
    pub handshakes_failed: u64,
    /// Peers banned.
    pub banned: u64,
    /// Candidates rejected.
    pub rejected: u64,
    /// Peers dropped after exhausting retries.
    pub dropped: u64,
}
