//! The UDP sockets, inside an isolated network namespace.

use swarm_conformance::support;

use std::time::Duration;
use swarm_io::udp::{ipv4_interfaces, mdns_socket, MDNS_GROUP};

#[test]
fn mdns_sockets_share_the_port_and_hear_multicast_from_this_host() {
    if !support::isolated("mdns_sockets_share_the_port_and_hear_multicast_from_this_host") {
        return;
    }
    let interfaces = ipv4_interfaces();
    assert!(
        interfaces.contains(&std::net::Ipv4Addr::LOCALHOST),
        "{interfaces:?}"
    );
    let first = mdns_socket(&interfaces).expect("first mDNS socket");
    let second = mdns_socket(&interfaces).expect("a second socket on 5353, as next to Node");
    first.send_to(b"query", MDNS_GROUP).unwrap();
    for socket in [&first, &second] {
        socket.set_nonblocking(false).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = socket.recv_from(&mut buf).expect("multicast loops back");
        assert_eq!(&buf[..n], b"query");
        assert_eq!(from.port(), 5353);
    }
}
