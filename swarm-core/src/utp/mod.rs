//! uTP (BEP 29), interoperable with libutp as bundled in Node's utp-native 2.5.3.
//!
//! Sans-IO like the rest of the core: [`socket::UtpSocket`] multiplexes many
//! [`conn::Conn`]s over one UDP port; datagrams go in with `handle_datagram(now, from, data)`,
//! come out of `poll_transmit(now)`, and `poll_timeout()` names the next deadline.
//! PROTOCOLS.md section 5 lists the libutp behaviour this follows; tests name each rule.

pub mod congestion;
pub mod conn;
pub mod header;
pub mod seq;
pub mod socket;
