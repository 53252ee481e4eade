//! When each peer was last reported, per join: the table every received answer is checked
//! against (see `REPEAT_WINDOW` in the engine).
//!
//! An open-addressing table whose slot holds key and time together, so a lookup reads one
//! cache line. A general hash map reads a control group and then, dependent on it, the
//! entry: two misses on memory nothing else has touched since this host's previous
//! datagram, which on a 10,000-node simulation is most of what reading an answer costs.
//! Slots are hashed with the engine's seeded hasher, so a LAN host choosing its addresses
//! cannot line them up into one long probe.

use crate::time::Instant;
use core::hash::BuildHasher;
use foldhash::fast::FixedState;
use std::net::{Ipv4Addr, SocketAddrV4};

/// A slot is half a cache line and never straddles one.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    tag: u64,
    at: Instant,
    ip: u32,
    port: u16,
    used: bool,
}

impl Slot {
    fn holds(&self, tag: u64, addr: SocketAddrV4) -> bool {
        self.used && self.tag == tag && self.ip == u32::from(*addr.ip()) && self.port == addr.port()
    }
}

/// Slots of a new table; it doubles whenever it would be more than half full.
const FIRST_CAPACITY: usize = 16;

pub(super) struct RecentReports {
    slots: Box<[Slot]>,
    len: usize,
    hasher: FixedState,
}

impl RecentReports {
    pub(super) fn new(seed: u64) -> Self {
        RecentReports {
            slots: Box::default(),
            len: 0,
            hasher: FixedState::with_seed(seed),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// When `addr` was last reported for the join tagged `tag`.
    pub(super) fn get(&self, tag: u64, addr: SocketAddrV4) -> Option<Instant> {
        let i = self.find(tag, addr).ok()?;
        Some(self.slots[i].at)
    }

    /// The time `addr` was last reported for the join tagged `tag`, to update in place.
    pub(super) fn get_mut(&mut self, tag: u64, addr: SocketAddrV4) -> Option<&mut Instant> {
        let i = self.find(tag, addr).ok()?;
        Some(&mut self.slots[i].at)
    }

    /// Records that `addr` was reported at `at` for the join tagged `tag`.
    pub(super) fn set(&mut self, tag: u64, addr: SocketAddrV4, at: Instant) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.find(tag, addr) {
            Ok(i) => self.slots[i].at = at,
            Err(i) => {
                self.slots[i] = Slot {
                    tag,
                    at,
                    ip: u32::from(*addr.ip()),
                    port: addr.port(),
                    used: true,
                };
                self.len += 1;
            }
        }
    }

    /// Every entry: tag, address, time, in slot order (fixed by the seed and the history).
    pub(super) fn each(&self, mut f: impl FnMut(u64, SocketAddrV4, Instant)) {
        for s in self.slots.iter().filter(|s| s.used) {
            f(s.tag, SocketAddrV4::new(s.ip.into(), s.port), s.at);
        }
    }

    /// Keeps only the entries `keep` accepts (tag, time); rebuilds the table.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(u64, Instant) -> bool) {
        let old = core::mem::take(&mut self.slots);
        self.slots = vec![Slot::default(); old.len()].into_boxed_slice();
        self.len = 0;
        for s in old.iter().filter(|s| s.used && keep(s.tag, s.at)) {
            let addr = SocketAddrV4::new(s.ip.into(), s.port);
            self.set(s.tag, addr, s.at);
        }
    }

    /// The slot holding the key, or the empty slot where it would go. The table is never
    /// full when this is called (at most half, or empty with no slots: `Err(0)` is only
    /// used after `grow`).
    fn find(&self, tag: u64, addr: SocketAddrV4) -> Result<usize, usize> {
        if self.slots.is_empty() {
            return Err(0);
        }
        let mask = self.slots.len() - 1;
        let mut i = self.first_slot(tag, *addr.ip());
        // Double hashing: the ports of one IP share a first slot (the one `prefetch_hint`
        // names) but then part ways, so many peers behind one address form no long run.
        // The stride is odd, so in a power-of-two table it visits every slot.
        let stride = self.hasher.hash_one((addr.port(), tag)) as usize | 1;
        loop {
            let slot = &self.slots[i];
            if !slot.used {
                return Err(i);
            }
            if slot.holds(tag, addr) {
                return Ok(i);
            }
            i = i.wrapping_add(stride) & mask;
        }
    }

    fn first_slot(&self, tag: u64, ip: Ipv4Addr) -> usize {
        self.hasher.hash_one((tag, ip)) as usize & (self.slots.len() - 1)
    }

    /// The address of the slot a lookup of a peer at `ip` for `tag` reads first (the only
    /// one, unless that address has several ports): for prefetching.
    pub(super) fn prefetch_hint(&self, tag: u64, ip: Ipv4Addr) -> Option<*const u8> {
        if self.slots.is_empty() {
            return None;
        }
        Some(crate::line_of(&self.slots[self.first_slot(tag, ip)]))
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(FIRST_CAPACITY);
        let old = core::mem::replace(
            &mut self.slots,
            vec![Slot::default(); capacity].into_boxed_slice(),
        );
        self.len = 0;
        for s in old.iter().filter(|s| s.used) {
            let i = self
                .find(s.tag, SocketAddrV4::new(s.ip.into(), s.port))
                .unwrap_or_else(|empty| empty);
            self.slots[i] = *s;
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;
    use std::collections::HashMap;

    fn addr(ip: u8, port: u8) -> SocketAddrV4 {
        SocketAddrV4::new([10, 0, 0, ip % 8].into(), u16::from(port % 8))
    }

    quickcheck! {
        /// Any sequence of sets, lookups and retains agrees with a plain map.
        fn agrees_with_a_hash_map(ops: Vec<(u8, u8, u8, u8, u16)>) -> bool {
            let mut table = RecentReports::new(7);
            let mut model: HashMap<(u64, SocketAddrV4), Instant> = HashMap::new();
            for (op, tag, ip, port, at) in ops {
                let (tag, a, at) = (u64::from(tag % 3), addr(ip, port), Instant::from_micros(at.into()));
                match op % 8 {
                    0 => {
                        let cut = at;
                        table.retain(|_, t| t >= cut);
                        model.retain(|_, t| *t >= cut);
                    }
                    1 => {
                        table.retain(|t, _| t != tag);
                        model.retain(|(t, _), _| *t != tag);
                    }
                    2..=3 => {
                        table.set(tag, a, at);
                        model.insert((tag, a), at);
                    }
                    4 => {
                        if let Some(t) = table.get_mut(tag, a) {
                            *t = at;
                        }
                        if let Some(t) = model.get_mut(&(tag, a)) {
                            *t = at;
                        }
                    }
                    _ => {}
                }
                if table.get(tag, a) != model.get(&(tag, a)).copied() || table.len() != model.len() {
                    return false;
                }
            }
            model.iter().all(|(&(tag, a), &at)| table.get(tag, a) == Some(at))
        }
    }

    #[test]
    fn the_hint_names_the_slot_of_an_address_with_one_port() {
        let mut table = RecentReports::new(3);
        let ips: Vec<Ipv4Addr> = (0..200u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
            .collect();
        for (i, ip) in ips.iter().enumerate() {
            table.set(
                5,
                SocketAddrV4::new(*ip, 8000 + i as u16),
                Instant::from_micros(1),
            );
        }
        for (i, ip) in ips.iter().enumerate() {
            let slot = table.find(5, SocketAddrV4::new(*ip, 8000 + i as u16));
            let slot = slot.map(|i| crate::line_of(&table.slots[i]));
            // Another entry may hold the first slot; then the hint is that slot's, no less.
            let first = table.prefetch_hint(5, *ip);
            assert!(first.is_some());
            if table.slots[table.first_slot(5, *ip)].ip == u32::from(*ip) {
                assert_eq!(slot.ok(), first);
            }
        }
        assert_eq!(RecentReports::new(3).prefetch_hint(5, ips[0]), None);
    }

    #[test]
    fn many_ports_behind_one_address_are_each_found() {
        let mut table = RecentReports::new(9);
        let ip = Ipv4Addr::new(127, 0, 0, 1);
        for port in 1..=3000u16 {
            table.set(
                1,
                SocketAddrV4::new(ip, port),
                Instant::from_micros(port.into()),
            );
        }
        for port in 1..=3000u16 {
            let at = table.get(1, SocketAddrV4::new(ip, port));
            assert_eq!(at, Some(Instant::from_micros(port.into())));
        }
        assert_eq!(table.get(2, SocketAddrV4::new(ip, 1)), None);
    }

    #[test]
    fn a_slot_fits_in_half_a_cache_line() {
        assert_eq!(core::mem::size_of::<Slot>(), 32);
        assert_eq!(core::mem::align_of::<Slot>(), 32);
    }

    #[test]
    fn grows_to_hold_thousands_and_finds_each() {
        let mut table = RecentReports::new(1);
        let key = |i: u32| SocketAddrV4::new(i.into(), (i % 65_000) as u16);
        for i in 0..5000u32 {
            table.set(u64::from(i % 2), key(i), Instant::from_micros(i.into()));
        }
        assert_eq!(table.len(), 5000);
        assert!(table.slots.len() >= 10_000);
        for i in 0..5000u32 {
            assert_eq!(
                table.get(u64::from(i % 2), key(i)),
                Some(Instant::from_micros(i.into()))
            );
            assert_eq!(table.get(u64::from(i % 2) + 1, key(i)), None);
        }
    }
}
