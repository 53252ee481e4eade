//! The run's trace: one text line per core event (and per simulator action), with its
//! virtual time, and a stable FNV-1a hash of all lines for determinism checks.

use core::fmt::Write;
use swarm_core::{ConnInfo, Event, Instant, PeerInfo};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `hash`.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Trace lines and their running hash.
pub struct Trace {
    hash: u64,
    count: u64,
    lines: Option<Vec<String>>,
}

impl Trace {
    /// A trace that keeps its lines only if `keep` (the hash is always kept).
    pub fn new(keep: bool) -> Self {
        Trace {
            hash: FNV_OFFSET,
            count: 0,
            lines: keep.then(Vec::new),
        }
    }

    /// Appends one line (`at` and `who` are prefixed).
    pub fn record(&mut self, at: Instant, who: &str, what: &str) {
        let line = format!("{} {who} {what}", fmt_time(at));
        self.hash = fnv1a(self.hash, line.as_bytes());
        self.hash = fnv1a(self.hash, b"\n");
        self.count += 1;
        if let Some(lines) = &mut self.lines {
            lines.push(line);
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Number of lines recorded.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The lines, if they were kept.
    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }
}

/// `seconds.micros`, fixed width.
pub fn fmt_time(at: Instant) -> String {
    let us = at.as_micros();
    format!("{:>5}.{:06}", us / 1_000_000, us % 1_000_000)
}

fn hex_prefix(out: &mut String, bytes: &[u8]) {
    for b in bytes.iter().take(4) {
        let _ = write!(out, "{b:02x}");
    }
}

fn peer(out: &mut String, p: &PeerInfo) {
    let _ = write!(out, " {}", p.addr);
    if let Some(t) = &p.topic {
        out.push_str(" topic=");
        hex_prefix(out, t);
    }
    let _ = write!(out, " retries={}", p.retries);
}

fn conn(out: &mut String, c: swarm_core::ConnId, info: &ConnInfo) {
    let dir = if info.initiator { "out" } else { "in" };
    let _ = write!(
        out,
        " c{} {} {dir} {}",
        c.0,
        info.transport.as_str(),
        info.addr
    );
    if let Some(id) = &info.id {
        out.push_str(" id=");
        hex_prefix(out, id);
    }
}

/// One event as a trace line (without time and node).
pub fn describe(event: &Event) -> String {
    let mut out = String::from(event.name());
    match event {
        Event::Listening { port } => {
            let _ = write!(out, " port={port}");
        }
        Event::Peer(p) | Event::Drop(p) | Event::Connecting(p) => peer(&mut out, p),
        Event::PeerRejected {
            addr,
            topic,
            reason,
        } => {
            let _ = write!(out, " {addr} reason={}", reason.as_str());
            if let Some(t) = topic {
                out.push_str(" topic=");
                hex_prefix(&mut out, t);
            }
        }
        Event::PeerBanned { peer: p, reason } => {
            peer(&mut out, p);
            let _ = write!(out, " reason={}", reason.as_str());
        }
        Event::ConnectFailed { peer: p, timed_out } => {
            peer(&mut out, p);
            let _ = write!(out, " timed_out={timed_out}");
        }
        Event::Handshaking { conn: c, info }
        | Event::HandshakeTimeout { conn: c, info }
        | Event::ConnectionClosed { conn: c, info }
        | Event::RedundantConnection { conn: c, info } => conn(&mut out, *c, info),
        Event::HandshakeFailed {
            conn: c,
            info,
            error,
        } => {
            conn(&mut out, *c, info);
            let _ = write!(out, " error=\"{error}\"");
        }
        Event::Connection {
            conn: c,
            info,
            early_data,
        } => {
            conn(&mut out, *c, info);
            let _ = write!(out, " early={}", early_data.len());
        }
        _ => out.push_str(" (unformatted)"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn time_is_fixed_width() {
        assert_eq!(fmt_time(Instant::from_micros(3_000_042)), "    3.000042");
    }
}
