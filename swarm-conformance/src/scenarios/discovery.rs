//! Discovery over the adapter's real UDP sockets: multicast DNS on the (namespace's) LAN and
//! the Mainline DHT through a local bootstrap node.

use crate::{connection_pair, first_connection, next_connection_within, sleep, Harness};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use swarm_io::SwarmBuilder;

pub async fn peers_on_one_lan_find_each_other_by_mdns_alone<H: Harness>() {
    let mut a = H::start(SwarmBuilder::new().id(vec![1; 32]));
    a.listen(0).await.unwrap();
    a.join("lan-topic", true);
    let mut b = H::start(SwarmBuilder::new().id(vec![2; 32]));
    b.listen(0).await.unwrap();
    b.join("lan-topic", true);
    let limit = Duration::from_secs(10);
    let (a_conn, b_conn) = connection_pair(&mut a, &mut b, limit).await;
    assert_eq!(a_conn.remote_id(), [2; 32]);
    assert_eq!(b_conn.remote_id(), [1; 32]);
    // Exactly one connection between them, and no spurious second one.
    sleep::<H::R>(Duration::from_millis(500)).await;
    assert_eq!((a.connected(), b.connected()), (1, 1));
}

pub async fn chosen_interfaces_are_used_and_an_unusable_one_only_turns_mdns_off<H: Harness>() {
    let loopback = [Ipv4Addr::LOCALHOST];
    let mut a = H::start(SwarmBuilder::new().mdns_interfaces(loopback));
    a.listen(0).await.unwrap();
    a.join("iface-topic", true);
    let b = H::start(SwarmBuilder::new().mdns_interfaces(loopback));
    b.listen(0).await.unwrap();
    b.join("iface-topic", true);
    let found = next_connection_within(&mut a, Duration::from_secs(10)).await;
    assert_eq!(found.remote_id(), b.id().as_ref());

    // No such interface here: the swarm listens and works, without mDNS.
    let c = H::start(SwarmBuilder::new().mdns_interfaces([Ipv4Addr::new(10, 9, 9, 9)]));
    c.listen(0).await.unwrap();
    c.join("iface-topic", true);
    sleep::<H::R>(Duration::from_millis(300)).await;
    assert_eq!(c.connected(), 0, "not discovered without an mDNS socket");
}

fn dht_builder<H: Harness>(id: u8, bootstrap: Vec<SocketAddr>) -> SwarmBuilder<H::R> {
    let mut builder = SwarmBuilder::new()
        .id(vec![id; 32])
        .mdns(false)
        .dht(bootstrap);
    // Rounds every half second instead of every 10-15 minutes, so a late joiner is found.
    builder.config_mut().dht_interval = Some(Duration::from_millis(500));
    builder
}

pub async fn peers_find_each_other_through_a_local_dht_bootstrap_node<H: Harness>() {
    let node = H::start(dht_builder::<H>(9, Vec::new()));
    let node_port = node.listen(0).await.unwrap();
    let bootstrap = vec![SocketAddr::from(([127, 0, 0, 1], node_port))];

    let mut a = H::start(dht_builder::<H>(1, bootstrap.clone()));
    a.listen(0).await.unwrap();
    a.join("dht-topic", true);
    let mut c = H::start(dht_builder::<H>(3, bootstrap));
    c.listen(0).await.unwrap();
    c.join("dht-topic", true);

    let (side, conn) = first_connection(&mut a, &mut c, Duration::from_secs(20)).await;
    let expected = if side == 0 { vec![3; 32] } else { vec![1; 32] };
    assert_eq!(conn.remote_id(), expected);
}
