//! dns-discovery over unicast DNS servers (PROTOCOLS.md 3.3, 3.4), sans-IO: the client a swarm
//! uses ([`DnsClient`], with whoami) and the server engine behind `discovery-swarm dns-server`
//! ([`DnsServer`]). Both reuse the mDNS codec (`mdns::wire`, `mdns::txt`).
//!
//! Where this departs from Node's dns-discovery 6.2.3 on purpose:
//! - query ids never have the shape of a uTP header (PROTOCOLS.md 1.11), so a Node peer with
//!   uTP on never swallows our queries or pushes;
//! - responses are matched by id *and* the address the query went to;
//! - the client accepts SRV pushes only from its configured servers and answers nothing else;
//! - the server lists peers only to a query that carries a valid token (so a spoofed source
//!   gets back no more than it sent, plus a token), at most 31 (what fits one TXT string; Node
//!   lists up to 100 and corrupts the record beyond 31), does not answer A/SRV questions, and
//!   rate-limits per source;
//! - `announce=N` with N > 65535 is a malformed TXT, not a stored peer;
//! - stores evict as Node's intends (the oldest peer of the least recently used name) and keep
//!   their counts right where Node's LRU drops names silently.

mod client;
mod server;
mod store;
mod whoami;

pub use client::{DnsClient, DnsClientConfig, DnsClientStats, DnsEvent, ServerAddr};
pub use server::{DnsServer, DnsServerConfig, DnsServerStats, RequestError};
pub use store::{Store, StoreConfig};
pub use whoami::WhoamiResult;

use crate::mdns::txt;
use crate::time::Instant;
use core::fmt;
use core::str::FromStr;
use core::time::Duration;
use rand_core::RngCore;

/// The domain names live under.
pub use crate::mdns::topic::DOMAIN;

/// `host` alone means these ports (Node's `parseAddr`).
pub const DEFAULT_PORT: u16 = 5300;
pub const DEFAULT_SECONDARY_PORT: u16 = 53;
/// Server secrets rotate, and client tokens age, on this tick.
pub const TOKEN_TICK: Duration = Duration::from_secs(5 * 60);

/// RD, what dns-socket sets on queries.
pub(crate) const FLAGS_QUERY: u16 = 0x0100;
/// QR only, what dns-socket sets on responses.
pub(crate) const FLAGS_RESPONSE: u16 = 0x8000;

/// dns-socket's retransmissions (a 250 ms tick, so each may come up to 250 ms early):
/// the default resends at 0.5, 1.5, 3.5 and 7.5 s and gives up at 7.75 s; `setRetries(2)`
/// (whoami probes, pushes) resends at 0.5 and 1.5 s and gives up at 1.75 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schedule {
    Default,
    Short,
}

impl Schedule {
    fn resends(self) -> &'static [u64] {
        match self {
            Schedule::Default => &[500, 1500, 3500, 7500],
            Schedule::Short => &[500, 1500],
        }
    }

    fn give_up(self) -> u64 {
        match self {
            Schedule::Default => 7750,
            Schedule::Short => 1750,
        }
    }

    /// When the query sent at `sent` needs attention after `resent` resends: `(at, true)` for
    /// a resend, `(at, false)` for giving up.
    pub(crate) fn next(self, sent: Instant, resent: usize) -> (Instant, bool) {
        match self.resends().get(resent) {
            Some(&ms) => (sent + Duration::from_millis(ms), true),
            None => (sent + Duration::from_millis(self.give_up()), false),
        }
    }
}

/// Whether a DNS message with this id would be claimed by libutp on a shared socket: byte 0
/// (id high) has version nibble 1 and type < 5, byte 1 (id low) < 3 (PROTOCOLS.md 1.11).
pub fn is_utp_shaped(id: u16) -> bool {
    let [hi, lo] = id.to_be_bytes();
    hi & 0x0f == 1 && hi >> 4 < 5 && lo < 3
}

/// A random nonzero query id that never looks like uTP.
pub(crate) fn query_id(rng: &mut impl RngCore) -> u16 {
    loop {
        let id = rng.next_u32() as u16;
        if id != 0 && !is_utp_shaped(id) {
            return id;
        }
    }
}

/// The dns-discovery TXT keys, as Node's `decodeTxt` reads them: one object, the last string
/// with a key wins; a string without `=` means `true`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TxtData<'a> {
    pub token: Option<&'a [u8]>,
    pub peers: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
    pub port: Option<&'a [u8]>,
    pub announce: Option<&'a [u8]>,
    pub unannounce: Option<&'a [u8]>,
    /// Node tests `data.subscribe` for truth: present without `=`, or a non-empty value.
    pub subscribe: bool,
}

impl<'a> TxtData<'a> {
    pub(crate) fn parse(rdata: &'a [u8]) -> Self {
        let mut d = TxtData::default();
        for s in crate::mdns::wire::txt_strings(rdata) {
            let (key, value) = txt::key_value(s);
            let has_eq = s.len() > key.len();
            match key {
                b"token" => d.token = Some(value),
                b"peers" => d.peers = Some(value),
                b"host" => d.host = Some(value),
                b"port" => d.port = Some(value),
                b"announce" => d.announce = Some(value),
                b"unannounce" => d.unannounce = Some(value),
                b"subscribe" => d.subscribe = !has_eq || !value.is_empty(),
                _ => {}
            }
        }
        d
    }
}

/// Node's `PORT` test (`^\d{1,5}$`), and a real port. `Err` for a value that is present but
/// not a port.
pub(crate) fn parse_port(value: &[u8]) -> Result<u16, ()> {
    if value.is_empty() || value.len() > 5 || !value.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    let n = value.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| ())
}

/// The id of `<id>.<a>.<b>`: every label before the last two (Node's `parseId`/`parseDomain`).
pub(crate) fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let last = name.iter().rposition(|&b| b == b'.')?;
    let dot = name[..last].iter().rposition(|&b| b == b'.');
    match dot {
        Some(i) => Some((&name[..i], &name[i + 1..])),
        None => Some((&[][..], name)),
    }
}

/// A configured server as the user wrote it: `host`, `host:port` or `host:port,secondary`
/// (Node's `parseAddr`). Resolving `host` is the driver's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub host: String,
    pub port: u16,
    /// Tried once when a probe on `port` fails; then it becomes the port.
    pub secondary: Option<u16>,
}

/// Why a server address did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseServerError(pub String);

impl fmt::Display for ParseServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not parse dns-discovery server {:?}", self.0)
    }
}

impl std::error::Error for ParseServerError {}

impl FromStr for ServerSpec {
    type Err = ParseServerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseServerError(s.to_owned());
        let Some((host, ports)) = s.split_once(':') else {
            if s.is_empty() {
                return Err(err());
            }
            return Ok(ServerSpec {
                host: s.to_owned(),
                port: DEFAULT_PORT,
                secondary: Some(DEFAULT_SECONDARY_PORT),
            });
        };
        if host.is_empty() {
            return Err(err());
        }
        let (first, second) = match ports.split_once(',') {
            Some((a, b)) => (a, Some(b)),
            None => (ports, None),
        };
        let port = parse_port(first.as_bytes()).map_err(|_| err())?;
        let secondary = match second {
            Some(p) => Some(parse_port(p.as_bytes()).map_err(|_| err())?).filter(|&p| p != 0),
            None => None,
        };
        Ok(ServerSpec {
            host: host.to_owned(),
            port,
            secondary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_specs_parse_as_node() {
        let s: ServerSpec = "example.org".parse().unwrap();
        assert_eq!((s.port, s.secondary), (5300, Some(53)));
        let s: ServerSpec = "10.0.0.1:5301".parse().unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.secondary),
            ("10.0.0.1", 5301, None)
        );
        let s: ServerSpec = "h:1,2".parse().unwrap();
        assert_eq!((s.port, s.secondary), (1, Some(2)));
        for bad in ["", "h:", ":5", "h:99999", "h:1,", "h:a", "h:1:2"] {
            assert!(bad.parse::<ServerSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_never_look_like_utp() {
        assert!(is_utp_shaped(0x4101));
        assert!(!is_utp_shaped(0x4103));
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        use rand_core::SeedableRng;
        for _ in 0..100_000 {
            let id = query_id(&mut rng);
            assert!(id != 0 && !is_utp_shaped(id));
        }
    }

    #[test]
    fn txt_keys_and_ports() {
        let raw = b"\x0asubscribe=\x07token=a\x07token=b\x0aannounce=0";
        let d = TxtData::parse(raw);
        assert!(!d.subscribe);
        assert_eq!(d.token, Some(&b"b"[..]));
        assert_eq!(parse_port(d.announce.unwrap()), Ok(0));
        assert!(TxtData::parse(b"\x09subscribe").subscribe);
        assert_eq!(parse_port(b"65536"), Err(()));
        assert_eq!(parse_port(b"+1"), Err(()));
        assert_eq!(
            split_name(b"abc.dns-discovery.local"),
            Some((&b"abc"[..], &b"dns-discovery.local"[..]))
        );
        assert_eq!(
            split_name(b"dns-discovery.local"),
            Some((&b""[..], &b"dns-discovery.local"[..]))
        );
        assert_eq!(split_name(b"local"), None);
    }
}
