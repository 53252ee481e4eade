//! uTP connections through the tokio adapter: the core runs uTP over the swarm's UDP port,
//! and the application gets the same `Connection` type as for TCP.

mod support;

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use swarm_tokio::{Connection, Swarm, SwarmBuilder, SwarmEvent, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn start(id: &[u8], tcp: bool, utp: bool) -> (Swarm, u16) {
    let swarm = SwarmBuilder::new()
        .mdns(false)
        .tcp(tcp)
        .utp(utp)
        .id(id.to_vec())
        .build()
        .unwrap();
    let port = swarm.listen(0).await.unwrap();
    (swarm, port)
}

async fn next_connection(swarm: &mut Swarm) -> Connection {
    timeout(WAIT, async {
        loop {
            match swarm.next().await.expect("event stream ended") {
                SwarmEvent::Connection(c) => return c,
                _ => continue,
            }
        }
    })
    .await
    .expect("timed out waiting for a connection")
}

/// Keeps a swarm's driver fed with event polls (its events would otherwise pile up).
fn drain_events(mut swarm: Swarm) -> tokio::task::JoinHandle<Swarm> {
    tokio::spawn(async move {
        while timeout(Duration::from_millis(50), swarm.next())
            .await
            .is_ok()
        {}
        swarm
    })
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[0] ^ seed)
        .collect()
}

async fn pair(tcp: bool) -> (Swarm, Swarm, Connection, Connection) {
    let (mut a, port_a) = start(b"utp-a", tcp, true).await;
    let (mut b, _) = start(b"utp-b", tcp, true).await;
    b.add_peer(Some("topic"), local(port_a));
    let conn_b = next_connection(&mut b).await;
    let conn_a = next_connection(&mut a).await;
    (a, b, conn_a, conn_b)
}

#[tokio::test]
async fn utp_only_swarms_connect_and_move_16_mib_each_way_intact() {
    if !support::isolated("utp_only_swarms_connect_and_move_16_mib_each_way_intact") {
        return;
    }
    let (a, b, conn_a, conn_b) = pair(false).await;
    assert_eq!(conn_a.info().transport, Transport::Utp);
    assert_eq!(conn_b.info().transport, Transport::Utp);
    assert_eq!(conn_b.remote_id(), b"utp-a");
    let (_a, _b) = (drain_events(a), drain_events(b));
    const LEN: usize = 16 << 20;
    let (to_b, to_a) = (pattern(LEN, 1), pattern(LEN, 2));
    let (expect_b, expect_a) = (to_b.clone(), to_a.clone());
    let (mut read_a, mut write_a) = tokio::io::split(conn_a);
    let (mut read_b, mut write_b) = tokio::io::split(conn_b);
    let send_a = tokio::spawn(async move {
        write_a.write_all(&to_b).await.unwrap();
        write_a.shutdown().await.unwrap();
        write_a
    });
    let send_b = tokio::spawn(async move {
        write_b.write_all(&to_a).await.unwrap();
        write_b.shutdown().await.unwrap();
        write_b
    });
    let recv_b = tokio::spawn(async move {
        let mut got = Vec::new();
        read_b.read_to_end(&mut got).await.unwrap();
        got
    });
    let recv_a = tokio::spawn(async move {
        let mut got = Vec::new();
        read_a.read_to_end(&mut got).await.unwrap();
        got
    });
    let within = Duration::from_secs(60);
    let got_b = timeout(within, recv_b).await.expect("b reads all").unwrap();
    let got_a = timeout(within, recv_a).await.expect("a reads all").unwrap();
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
    send_a.await.unwrap();
    send_b.await.unwrap();
}

#[tokio::test]
async fn utp_half_close_ends_one_direction_only() {
    if !support::isolated("utp_half_close_ends_one_direction_only") {
        return;
    }
    let (a, b, mut conn_a, mut conn_b) = pair(false).await;
    let (_a, _b) = (drain_events(a), drain_events(b));
    conn_a.write_all(b"last words").await.unwrap();
    conn_a.shutdown().await.unwrap();
    let mut got = Vec::new();
    timeout(WAIT, conn_b.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"last words");
    // The other direction still works after the FIN.
    conn_b.write_all(b"reply").await.unwrap();
    let mut buf = [0u8; 5];
    timeout(WAIT, conn_a.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"reply");
    assert!(
        conn_a.write_all(b"more").await.is_err(),
        "writing after shutdown fails"
    );
}

#[tokio::test]
async fn a_reader_that_stops_reading_stops_the_writer() {
    if !support::isolated("a_reader_that_stops_reading_stops_the_writer") {
        return;
    }
    let (a, b, mut conn_a, mut conn_b) = pair(false).await;
    let (_a, _b) = (drain_events(a), drain_events(b));
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    // Nobody reads conn_b: writes must start pending after the bounded buffers fill.
    loop {
        match timeout(Duration::from_millis(500), conn_a.write(&chunk)).await {
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break,
        }
        assert!(written < 64 << 20, "64 MiB accepted without a reader");
    }
    assert!(written > 0);
    // Reading resumes the flow and every byte arrives.
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < written {
        let n = timeout(WAIT, conn_b.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0 && buf[..n].iter().all(|&x| x == 7));
        got += n;
    }
    assert_eq!(got, written);
    eprintln!("writer held at {} KiB with no reader", written / 1024);
}

#[tokio::test]
async fn with_both_transports_tcp_wins_on_loopback() {
    if !support::isolated("with_both_transports_tcp_wins_on_loopback") {
        return;
    }
    let (a, b, mut conn_a, mut conn_b) = pair(true).await;
    assert_eq!(conn_a.info().transport, Transport::Tcp);
    assert_eq!(conn_b.info().transport, Transport::Tcp);
    let (_a, _b) = (drain_events(a), drain_events(b));
    conn_b.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    timeout(WAIT, conn_a.read_exact(&mut one))
        .await
        .unwrap()
        .unwrap();
}
