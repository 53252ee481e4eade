//! uTP through the adapter: the core runs uTP over the swarm's UDP port, and the application
//! gets the same `Connection` type as for TCP.

use crate::{drain_events, local, next_connection_within, timeout, Harness};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::time::Duration;
use swarm_io::{Connection, Swarm, SwarmBuilder, Transport};

const WAIT: Duration = Duration::from_secs(20);

async fn start<H: Harness>(id: &[u8], tcp: bool, utp: bool) -> (Swarm<H::R>, u16) {
    let swarm = H::start(
        SwarmBuilder::new()
            .mdns(false)
            .tcp(tcp)
            .utp(utp)
            .id(id.to_vec()),
    );
    let port = swarm.listen(0).await.unwrap();
    (swarm, port)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[0] ^ seed)
        .collect()
}

type Pair<R> = (Swarm<R>, Swarm<R>, Connection<R>, Connection<R>);

async fn pair<H: Harness>(tcp: bool) -> Pair<H::R> {
    let (mut a, port_a) = start::<H>(b"utp-a", tcp, true).await;
    let (mut b, _) = start::<H>(b"utp-b", tcp, true).await;
    b.add_peer(Some("topic"), local(port_a));
    let conn_b = next_connection_within(&mut b, WAIT).await;
    let conn_a = next_connection_within(&mut a, WAIT).await;
    (a, b, conn_a, conn_b)
}

pub async fn utp_only_swarms_connect_and_move_16_mib_each_way_intact<H: Harness>() {
    let (a, b, conn_a, conn_b) = pair::<H>(false).await;
    assert_eq!(conn_a.info().transport, Transport::Utp);
    assert_eq!(conn_b.info().transport, Transport::Utp);
    assert_eq!(conn_b.remote_id(), b"utp-a");
    let (_a, _b) = (drain_events::<H>(a), drain_events::<H>(b));
    const LEN: usize = 16 << 20;
    let (to_b, to_a) = (pattern(LEN, 1), pattern(LEN, 2));
    let (expect_b, expect_a) = (to_b.clone(), to_a.clone());
    let (mut read_a, mut write_a) = futures_lite::io::split(conn_a);
    let (mut read_b, mut write_b) = futures_lite::io::split(conn_b);
    let send_a = H::spawn(async move {
        write_a.write_all(&to_b).await.unwrap();
        write_a.close().await.unwrap();
        write_a
    });
    let send_b = H::spawn(async move {
        write_b.write_all(&to_a).await.unwrap();
        write_b.close().await.unwrap();
        write_b
    });
    let recv_b = H::spawn(async move {
        let mut got = Vec::new();
        read_b.read_to_end(&mut got).await.unwrap();
        got
    });
    let recv_a = H::spawn(async move {
        let mut got = Vec::new();
        read_a.read_to_end(&mut got).await.unwrap();
        got
    });
    let within = Duration::from_secs(60);
    let got_b = timeout::<H::R, _>(within, recv_b)
        .await
        .expect("b reads all");
    let got_a = timeout::<H::R, _>(within, recv_a)
        .await
        .expect("a reads all");
    assert!(
        got_b == expect_b,
        "b got {} bytes, not the 16 MiB sent",
        got_b.len()
    );
    assert!(
        got_a == expect_a,
        "a got {} bytes, not the 16 MiB sent",
        got_a.len()
    );
    send_a.await;
    send_b.await;
}

pub async fn utp_half_close_ends_one_direction_only<H: Harness>() {
    let (a, b, mut conn_a, mut conn_b) = pair::<H>(false).await;
    let (_a, _b) = (drain_events::<H>(a), drain_events::<H>(b));
    conn_a.write_all(b"last words").await.unwrap();
    conn_a.close().await.unwrap();
    let mut got = Vec::new();
    timeout::<H::R, _>(WAIT, conn_b.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"last words");
    // The other direction still works after the FIN.
    conn_b.write_all(b"reply").await.unwrap();
    let mut buf = [0u8; 5];
    timeout::<H::R, _>(WAIT, conn_a.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"reply");
    assert!(
        conn_a.write_all(b"more").await.is_err(),
        "writing after shutdown fails"
    );
}

pub async fn a_reader_that_stops_reading_stops_the_writer<H: Harness>() {
    let (a, b, mut conn_a, mut conn_b) = pair::<H>(false).await;
    let (_a, _b) = (drain_events::<H>(a), drain_events::<H>(b));
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    // Nobody reads conn_b: writes must start pending after the bounded buffers fill.
    loop {
        match timeout::<H::R, _>(Duration::from_millis(500), conn_a.write(&chunk)).await {
            Some(Ok(n)) => written += n,
            Some(Err(e)) => panic!("write failed: {e}"),
            None => break,
        }
        assert!(written < 64 << 20, "64 MiB accepted without a reader");
    }
    assert!(written > 0);
    // Reading resumes the flow and every byte arrives.
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < written {
        let n = timeout::<H::R, _>(WAIT, conn_b.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0 && buf[..n].iter().all(|&x| x == 7));
        got += n;
    }
    assert_eq!(got, written);
}

pub async fn with_both_transports_tcp_wins_on_loopback<H: Harness>() {
    let (a, b, mut conn_a, mut conn_b) = pair::<H>(true).await;
    assert_eq!(conn_a.info().transport, Transport::Tcp);
    assert_eq!(conn_b.info().transport, Transport::Tcp);
    let (_a, _b) = (drain_events::<H>(a), drain_events::<H>(b));
    conn_b.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    timeout::<H::R, _>(WAIT, conn_a.read_exact(&mut one))
        .await
        .unwrap()
        .unwrap();
}
