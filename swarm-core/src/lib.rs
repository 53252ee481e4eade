//! Sans-IO core of a [discovery-swarm] compatible swarm.
//!
//! [`Swarm`] is a plain state machine: it does no I/O, never reads a clock and draws
//! randomness only from the seed in its [`Config`]. A driver (the tokio or smol adapter, the
//! simulator, a test) owns the sockets and timers and loops:
//!
//! ```
//! use swarm_core::{Config, Input, Instant, Output, Swarm};
//!
//! let mut swarm = Swarm::new(Config::new(vec![1u8; 32], 7)).unwrap();
//! let now = Instant::from_micros(0);
//! swarm.handle_input(now, Input::Listening { port: 7001 });
//! swarm.add_peer(now, Some(b"topic"), "127.0.0.1:7002".parse().unwrap());
//! loop {
//!     // 1. Apply one input: a socket event, a command, or `handle_timeout(now)` when the
//!     //    deadline from `poll_timeout()` has passed.
//!     // 2. Drain every output.
//!     while let Some(output) = swarm.poll_output() {
//!         match output {
//!             Output::Dial { conn, addr, transport } => { /* open a connection */ }
//!             Output::Send { conn, data } => { /* write data */ }
//!             Output::Close { conn } => { /* close the socket */ }
//!             Output::Transmit { socket, to, data } => { /* send a datagram */ }
//!             Output::Event(event) => { /* tell the application */ }
//!             Output::StreamReadable(conn) | Output::StreamWritable(conn) => {
//!                 /* wake the application's reader or writer of a uTP stream */
//!             }
//!         }
//!     }
//!     // 3. Sleep until the next socket event or `swarm.poll_timeout()`.
//!     break;
//! }
//! ```
//!
//! While [`Swarm::wants_read`] is true for a connection the driver passes its bytes in as
//! [`Input::Received`]; once the core reports [`Event::Connection`], the stream belongs to the
//! application (prefixed by the event's `early_data`). uTP runs inside the core: the driver
//! only carries the datagrams of [`UdpSocket::Swarm`], and the application reads and writes a
//! uTP connection through [`Swarm::stream_read`] and friends (see the `swarm::utp` module).
//!
//! [discovery-swarm]: https://www.npmjs.com/package/discovery-swarm

#![forbid(unsafe_code)]

/// Hash maps of the core: seeded from the configuration, so iteration order (and with it
/// every decision that walks a map) is the same for the same seed, and not guessable by a
/// remote peer that does not know it.
pub(crate) type Map<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

pub(crate) fn new_map<K, V>(seed: u64) -> Map<K, V> {
    Map::with_hasher(foldhash::fast::FixedState::with_seed(seed))
}

/// Gives back most of a map's room once it holds an eighth of what it has room for: a
/// table sized by a burst (a join's dials, connections being refused) would otherwise keep
/// that size for good. The room left is twice what it holds, so it shrinks again only after
/// it has emptied by as much once more. Only for maps nothing iterates: a shrink reorders
/// them.
pub(crate) fn shrink_if_sparse<K: Eq + core::hash::Hash, V>(map: &mut Map<K, V>) {
    const MIN_ROOM: usize = 64;
    if map.capacity() > MIN_ROOM && map.len() * 8 < map.capacity() {
        map.shrink_to((map.len() * 2).max(MIN_ROOM / 4));
    }
}

/// The address of `field`, for cache hints (see [`Swarm::datagram_hints`]).
pub(crate) fn line_of<T>(field: &T) -> *const u8 {
    (field as *const T).cast()
}

/// Calls `line` with an address in each cache line from `start` up to `end` (fields of one
/// struct, `start` first): the head of a struct laid out hot-first, up to its first cold
/// field. Structs are not line-aligned, so the head's last byte is named too.
pub(crate) fn lines_between<A, B>(start: &A, end: &B, line: &mut impl FnMut(*const u8)) {
    let (from, to) = (line_of(start), line_of(end));
    let len = (to as usize).saturating_sub(from as usize);
    (0..len)
        .step_by(64)
        .for_each(|o| line(from.wrapping_add(o)));
    if len > 0 {
        line(from.wrapping_add(len - 1));
    }
}

pub mod config;
mod deadlines;
pub mod dedup;
pub mod dht;
pub mod dnsd;
pub mod event;
pub mod handshake;
pub mod mdns;
pub mod peer;
mod registry;
mod swarm;
pub mod time;
pub mod utp;

pub use config::{Config, ConfigError, HandshakeMode};
pub use event::{BanReason, ConnInfo, Event, PeerInfo, PeerSource, RejectReason, Stats, Transport};
pub use handshake::HandshakeError;
pub use swarm::{CloseCause, CommandError, ConnId, Input, Output, StreamError, Swarm, UdpSocket};
pub use time::Instant;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_map_gives_back_its_room_and_keeps_its_entries() {
        let mut map: Map<u32, u32> = new_map(1);
        for i in 0..1000 {
            map.insert(i, i);
        }
        let full = map.capacity();
        for i in 10..1000 {
            map.remove(&i);
            shrink_if_sparse(&mut map);
        }
        assert!(map.capacity() < full / 8, "{} of {full}", map.capacity());
        assert_eq!(map.len(), 10);
        assert!((0..10).all(|i| map.get(&i) == Some(&i)));
        // A small map is left alone.
        let before = map.capacity();
        shrink_if_sparse(&mut map);
        assert_eq!(map.capacity(), before);
    }
}
