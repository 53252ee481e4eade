//! Prefetching the state of the datagrams queued next.
//!
//! At 10,000 nodes each delivery finds its host's state evicted since the host's previous
//! one (10,000 other hosts ran in between), and reading it is a chain of cache misses, each
//! waiting for the one before. The queue knows the next deliveries already, so their state
//! is requested a few steps early, where the misses overlap the work in between. Hints
//! only: what runs, and in what order, is unchanged.
//!
//! Three stages, so that no prefetch waits on a miss itself:
//! - `FAR` events ahead, the lines of the host's record, found by offsets from the record's
//!   address alone: reading anything in the record to find them would stall on the very
//!   miss being avoided;
//! - `MID` events ahead, with the record now in cache, the lines of its node (the boxed
//!   core and the simulator's per-node state), by offsets from the box's address;
//! - `NEAR` events ahead, with the node now in cache, what the core's pointers lead to
//!   (its tables), as
//!   [`Swarm::datagram_table_hints`](swarm_core::Swarm::datagram_table_hints) names.

use super::{Ev, Sim};
use crate::network::HostId;
use crate::node::{Host, Node};
use std::net::SocketAddr;
use swarm_core::UdpSocket;

/// Far enough for DRAM to answer during the steps in between, near enough that the lines
/// are still in L1/L2 when used. The node's lines go out six events ahead, as when the node
/// sat in the host's record (fetched at 6): at 4, steady minutes at 10,000 nodes were 8%
/// slower; at 8/6 they are within 2% of the unboxed layout (ABBA, 5 min).
const FAR: usize = 8;
const MID: usize = 6;
const NEAR: usize = 2;

/// Offsets of the lines a datagram's handling reads into a `Host` and into its `Node`, by
/// receiving socket (mDNS, or the swarm/DNS socket). The same for every host: they are
/// field offsets.
#[derive(Default)]
pub(crate) struct HostLines {
    by_socket: [Option<Lines>; 2],
}

struct Lines {
    host: Vec<usize>,
    node: Vec<usize>,
}

fn socket_index(socket: UdpSocket) -> usize {
    usize::from(socket != UdpSocket::Mdns)
}

impl Sim {
    /// Requests the lines the events `FAR` and `NEAR` places on will read (datagrams only:
    /// on a busy network nearly every event is one).
    pub(super) fn prefetch_ahead(&mut self) {
        if self.hosts.len() < self.cfg.prefetch_min_hosts {
            return;
        }
        if let Some(&Ev::Datagram {
            host,
            socket,
            ref data,
            ..
        }) = self.queue.ahead(FAR)
        {
            prefetch(data.as_ptr());
            let base = field_at(&self.hosts[host]);
            match &self.host_lines.by_socket[socket_index(socket)] {
                Some(lines) => lines
                    .host
                    .iter()
                    .for_each(|&o| prefetch(base.wrapping_add(o))),
                None => self.learn_host_lines(host, socket),
            }
        }
        if let Some(&Ev::Datagram { host, socket, .. }) = self.queue.ahead(MID) {
            let lines = &self.host_lines.by_socket[socket_index(socket)];
            if let (Some(lines), Some(node)) = (lines, &self.hosts[host].node) {
                let base = field_at::<Node>(node);
                lines
                    .node
                    .iter()
                    .for_each(|&o| prefetch(base.wrapping_add(o)));
            }
        }
        if let Some(&Ev::Datagram {
            host, socket, from, ..
        }) = self.queue.ahead(NEAR)
        {
            self.prefetch_pointed(host, socket, SocketAddr::V4(from));
        }
    }

    /// The hinted lines of the host's record and of its node, as offsets (once per socket
    /// kind, from the first host that has a core; a field outside its record, were there
    /// one, is left out).
    fn learn_host_lines(&mut self, h: HostId, socket: UdpSocket) {
        let host = &self.hosts[h];
        let Some(node) = &host.node else {
            return;
        };
        // What a delivery reads of the record shares its first line (see `Host`).
        let in_host = [field_at(&host.node)];
        let mut in_node = vec![field_at(&node.check), field_at(&node.held)];
        node.core.datagram_hints(socket, |p| in_node.push(p));
        let lines = Lines {
            host: field_offsets(field_at(host), core::mem::size_of::<Host>(), in_host),
            node: field_offsets(
                field_at::<Node>(node),
                core::mem::size_of::<Node>(),
                in_node,
            ),
        };
        self.host_lines.by_socket[socket_index(socket)] = Some(lines);
    }

    /// What the host's core reaches through its pointers (its tables).
    fn prefetch_pointed(&self, h: HostId, socket: UdpSocket, from: SocketAddr) {
        if let Some(node) = &self.hosts[h].node {
            node.core.datagram_table_hints(socket, from, prefetch);
        }
    }
}

fn field_at<T>(field: &T) -> *const u8 {
    (field as *const T).cast()
}

/// The offsets of `fields` within the record of `size` bytes at `base`: a field's own
/// offset rather than its line's, as a node is not line-aligned (a field that shares a
/// line with another in one node may not in the next), so a few lines are asked twice.
fn field_offsets(
    base: *const u8,
    size: usize,
    fields: impl IntoIterator<Item = *const u8>,
) -> Vec<usize> {
    let base = base as usize;
    let record = base..base + size;
    let mut offsets: Vec<usize> = fields
        .into_iter()
        .map(|p| p as usize)
        .filter(|p| record.contains(p))
        .map(|p| p - base)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

/// Asks for the line holding `p` to be brought into the cache; never reads through `p`.
#[allow(unsafe_code)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it does not dereference `p` and cannot fault, whatever
    // `p` points at. (`unsafe` only for toolchains before the intrinsic became safe.)
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch(p.cast::<i8>(), core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
