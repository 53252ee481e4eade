//! LAN discovery through multicast DNS, in an isolated namespace.

mod support;

use futures_util::StreamExt;
use std::time::Duration;
use swarm_tokio::{SwarmBuilder, SwarmEvent};

#[test]
fn peers_on_one_lan_find_each_other_by_mdns_alone() {
    if !support::isolated("peers_on_one_lan_find_each_other_by_mdns_alone") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut a = SwarmBuilder::new().id(vec![1; 32]).build().unwrap();
        a.listen(0).await.unwrap();
        a.join("lan-topic", true);
        let mut b = SwarmBuilder::new().id(vec![2; 32]).build().unwrap();
        b.listen(0).await.unwrap();
        b.join("lan-topic", true);
        let (mut a_found, mut b_found) = (None, None);
        tokio::time::timeout(Duration::from_secs(10), async {
            while a_found.is_none() || b_found.is_none() {
                tokio::select! {
                    Some(SwarmEvent::Connection(conn)) = a.next() => a_found = Some(conn),
                    Some(SwarmEvent::Connection(conn)) = b.next() => b_found = Some(conn),
                    else => {}
                }
            }
        })
        .await
        .expect("both peers report a connection found through mDNS");
        let (a_conn, b_conn) = (a_found.unwrap(), b_found.unwrap());
        assert_eq!(a_conn.remote_id(), [2; 32]);
        assert_eq!(b_conn.remote_id(), [1; 32]);
        // Exactly one connection between them, and no spurious second one.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!((a.connected(), b.connected()), (1, 1));
    });
}

#[test]
fn chosen_interfaces_are_used_and_an_unusable_one_only_turns_mdns_off() {
    if !support::isolated("chosen_interfaces_are_used_and_an_unusable_one_only_turns_mdns_off") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let loopback = [std::net::Ipv4Addr::LOCALHOST];
        let mut a = SwarmBuilder::new()
            .mdns_interfaces(loopback)
            .build()
            .unwrap();
        a.listen(0).await.unwrap();
        a.join("iface-topic", true);
        let b = SwarmBuilder::new()
            .mdns_interfaces(loopback)
            .build()
            .unwrap();
        b.listen(0).await.unwrap();
        b.join("iface-topic", true);
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(SwarmEvent::Connection(conn)) = a.next().await {
                    break conn;
                }
            }
        })
        .await
        .expect("found on the chosen interface");
        assert_eq!(found.remote_id(), b.id().as_ref());

        // No such interface here: the swarm listens and works, without mDNS.
        let c = SwarmBuilder::new()
            .mdns_interfaces([std::net::Ipv4Addr::new(10, 9, 9, 9)])
            .build()
            .unwrap();
        c.listen(0).await.unwrap();
        c.join("iface-topic", true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(c.connected(), 0, "not discovered without an mDNS socket");
    });
}
