//! Prefetching the state of the datagrams queued next.
//!
//! At 10,000 nodes each delivery finds its host's state evicted since the host's previous
//! one (10,000 other hosts ran in between), and reading it is a chain of cache misses, each
//! waiting for the one before. The queue knows the next deliveries already, so their state
//! is requested a few steps early, where the misses overlap the work in between. Hints
//! only: what runs, and in what order, is unchanged.
//!
//! Two stages, so that no prefetch waits on a miss itself:
//! - `FAR` events ahead, the lines of the host's own record (which holds its core), found
//!   by offsets from the record's address alone: reading anything in the record to find
//!   them would stall on the very miss being avoided;
//! - `NEAR` events ahead, with the record now in cache, what its pointers lead to (the
//!   core's tables), as
//!   [`Swarm::datagram_table_hints`](swarm_core::Swarm::datagram_table_hints) names.

use super::{Ev, Sim};
use crate::network::HostId;
use crate::node::Host;
use std::net::SocketAddr;
use swarm_core::UdpSocket;

/// Far enough for DRAM to answer during the steps in between, near enough that the lines
/// are still in L1/L2 when used.
const FAR: usize = 6;
const NEAR: usize = 2;

/// Offsets into a `Host` of the lines a datagram's handling reads, by receiving socket
/// (mDNS, or the swarm/DNS socket). The same for every host: they are field offsets.
#[derive(Default)]
pub(crate) struct HostLines {
    by_socket: [Option<Vec<usize>>; 2],
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
            let base = self.host_base(host);
            match &self.host_lines.by_socket[socket_index(socket)] {
                Some(offsets) => offsets.iter().for_each(|&o| prefetch(base.wrapping_add(o))),
                None => self.learn_host_lines(host, socket),
            }
        }
        if let Some(&Ev::Datagram {
            host, socket, from, ..
        }) = self.queue.ahead(NEAR)
        {
            self.prefetch_pointed(host, socket, from);
        }
    }

    fn host_base(&self, h: HostId) -> *const u8 {
        field_at(&self.hosts[h])
    }

    /// The hinted lines of the host's record, as offsets (once per socket kind, from the
    /// first host that has a core; a field outside the record, were there one, is left out).
    fn learn_host_lines(&mut self, h: HostId, socket: UdpSocket) {
        let base = self.host_base(h) as usize;
        let record = base..base + core::mem::size_of::<Host>();
        let host = &self.hosts[h];
        let Some(node) = &host.node else {
            return;
        };
        let mut offsets = vec![field_at(&host.dns), field_at(&host.state)];
        offsets.extend([field_at(&node.check), field_at(&node.held)]);
        node.core.datagram_hints(socket, |p| offsets.push(p));
        let mut offsets: Vec<usize> = offsets
            .into_iter()
            .map(|p| p as usize)
            .filter(|p| record.contains(p))
            .map(|p| (p - base) & !63)
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        self.host_lines.by_socket[socket_index(socket)] = Some(offsets);
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
