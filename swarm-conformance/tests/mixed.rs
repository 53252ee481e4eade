//! Two swarm-smol swarms, one driven by smol's executor and one by async-std's, find each
//! other by multicast DNS and exchange data both ways.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::time::Duration;
use swarm_conformance::{connection_pair, support};
use swarm_smol::SwarmBuilder;

#[test]
fn a_smol_swarm_and_an_async_std_swarm_find_each_other_and_exchange_data() {
    if !support::isolated("a_smol_swarm_and_an_async_std_swarm_find_each_other_and_exchange_data") {
        return;
    }
    let (mut on_smol, smol_driver) = SwarmBuilder::new().id(vec![1; 32]).build_driver().unwrap();
    let (mut on_async_std, async_std_driver) =
        SwarmBuilder::new().id(vec![2; 32]).build_driver().unwrap();
    let smol_task = smol::spawn(smol_driver);
    let async_std_task = async_std::task::spawn(async_std_driver);
    async_std::task::block_on(async {
        on_smol.listen(0).await.unwrap();
        on_async_std.listen(0).await.unwrap();
        on_smol.join("mixed-runtimes", true);
        on_async_std.join("mixed-runtimes", true);
        let limit = Duration::from_secs(10);
        let (mut smol_conn, mut async_std_conn) =
            connection_pair(&mut on_smol, &mut on_async_std, limit).await;
        assert_eq!(smol_conn.remote_id(), [2; 32]);
        assert_eq!(async_std_conn.remote_id(), [1; 32]);
        smol_conn.write_all(b"from smol").await.unwrap();
        async_std_conn.write_all(b"from async-std").await.unwrap();
        let mut got = [0u8; 9];
        async_std_conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"from smol");
        let mut got = [0u8; 14];
        smol_conn.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"from async-std");
        on_smol.close().await;
        on_async_std.close().await;
    });
    // Both drivers end once their swarms are closed.
    smol::block_on(smol_task);
    async_std::task::block_on(async_std_task);
}
