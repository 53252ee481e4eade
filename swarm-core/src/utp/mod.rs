//! uTP (BEP 29), interoperable with libutp as bundled in Node's utp-native 2.5.3.
//!
//! Sans-IO like the rest of the core: [`socket::UtpSocket`] multiplexes many
//! [`conn::Conn`]s over one UDP port. PROTOCOLS.md section 5 lists the libutp behaviour this
//! follows; the tests name each rule. The driver loop, here with two sockets wired back to
//! back instead of a UDP socket:
//!
//! ```
//! use swarm_core::utp::socket::{UtpConfig, UtpEvent, UtpSocket};
//! use swarm_core::Instant;
//!
//! let (a_addr, b_addr) = ("10.0.0.1:7000".parse().unwrap(), "10.0.0.2:7000".parse().unwrap());
//! let mut a = UtpSocket::new(UtpConfig::new(1)); // seed from real entropy in a driver
//! let mut b = UtpSocket::new(UtpConfig::new(2));
//! let mut now = Instant::from_micros(1_000_000);
//! let conn = a.connect(now, b_addr);
//! a.write(conn, b"hello");
//! let mut got = Vec::new();
//! for _ in 0..10 {
//!     // 1. Apply inputs: datagrams (`handle_datagram`), or `handle_timeout(now)` once
//!     //    `poll_timeout()` has passed. 2. Drain `poll_transmit` and `poll_event`.
//!     while let Some((to, datagram)) = a.poll_transmit(now) {
//!         assert_eq!(to, b_addr);
//!         b.handle_datagram(now, a_addr, &datagram);
//!     }
//!     while let Some((_, datagram)) = b.poll_transmit(now) {
//!         a.handle_datagram(now, b_addr, &datagram);
//!     }
//!     while let Some(event) = b.poll_event() {
//!         if let UtpEvent::Readable(h) = event {
//!             let mut buf = [0u8; 64];
//!             let n = b.read(h, &mut buf);
//!             got.extend_from_slice(&buf[..n]);
//!         }
//!     }
//!     // 3. Sleep until the next datagram or `poll_timeout()`.
//!     now = now + std::time::Duration::from_millis(10);
//! }
//! assert_eq!(got, b"hello");
//! ```
//!
//! On a shared UDP port (PROTOCOLS.md 1.11) ask [`socket::UtpSocket::claims`] first; give
//! unclaimed datagrams to KRPC and DNS, and only what nobody took to `handle_datagram` (which
//! answers uTP-shaped leftovers with a rate-limited RST).

pub mod congestion;
pub mod conn;
pub mod header;
pub mod seq;
pub mod socket;
