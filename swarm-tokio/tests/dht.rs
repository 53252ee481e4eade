//! Discovery through the Mainline DHT, with a local bootstrap node, in an isolated namespace.

mod support;

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use swarm_tokio::{SwarmBuilder, SwarmEvent};

fn builder(id: u8, bootstrap: Vec<SocketAddr>) -> SwarmBuilder {
    let mut builder = SwarmBuilder::new()
        .id(vec![id; 32])
        .mdns(false)
        .dht(bootstrap);
    // Rounds every half second instead of every 10-15 minutes, so a late joiner is found.
    builder.config_mut().dht_interval = Some(Duration::from_millis(500));
    builder
}

#[test]
fn peers_find_each_other_through_a_local_dht_bootstrap_node() {
    if !support::isolated("peers_find_each_other_through_a_local_dht_bootstrap_node") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let node = builder(9, Vec::new()).build().unwrap();
        let node_port = node.listen(0).await.unwrap();
        let bootstrap = vec![SocketAddr::from(([127, 0, 0, 1], node_port))];

        let mut a = builder(1, bootstrap.clone()).build().unwrap();
        a.listen(0).await.unwrap();
        a.join("dht-topic", true);
        let mut c = builder(3, bootstrap).build().unwrap();
        c.listen(0).await.unwrap();
        c.join("dht-topic", true);

        let found = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                tokio::select! {
                    Some(SwarmEvent::Connection(conn)) = a.next() => break conn.remote_id().to_vec(),
                    Some(SwarmEvent::Connection(conn)) = c.next() => break conn.remote_id().to_vec(),
                    else => {}
                }
            }
        })
        .await
        .expect("a and c find each other through the DHT");
        assert!(found == vec![1; 32] || found == vec![3; 32]);
    });
}
