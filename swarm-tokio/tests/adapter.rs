//! The tokio adapter over real loopback sockets.

use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use swarm_tokio::{Connection, Event, HandshakeError, Swarm, SwarmBuilder, SwarmEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn start(id: &[u8]) -> (Swarm, u16) {
    let swarm = SwarmBuilder::new()
        .mdns(false)
        .id(id.to_vec())
        .build()
        .unwrap();
    let port = swarm.listen(0).await.unwrap();
    (swarm, port)
}

/// The next event matching `pick`, skipping others.
async fn next_matching<T>(swarm: &mut Swarm, mut pick: impl FnMut(SwarmEvent) -> Option<T>) -> T {
    timeout(WAIT, async {
        loop {
            let event = swarm.next().await.expect("event stream ended");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

async fn next_connection(swarm: &mut Swarm) -> Connection {
    next_matching(swarm, |e| match e {
        SwarmEvent::Connection(c) => Some(c),
        _ => None,
    })
    .await
}

async fn next_event(swarm: &mut Swarm, name: &str) -> Event {
    next_matching(swarm, |e| match e {
        SwarmEvent::Event { event, .. } if event.name() == name => Some(event),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn peers_connect_and_exchange_data_both_ways() {
    let (mut a, port_a) = start(b"aaaa").await;
    let (mut b, _) = start(b"bbbb").await;
    b.add_peer(Some("topic"), local(port_a));
    let mut conn_b = next_connection(&mut b).await;
    let mut conn_a = next_connection(&mut a).await;
    assert_eq!(conn_b.remote_id(), b"aaaa");
    assert_eq!(conn_a.remote_id(), b"bbbb");
    assert!(conn_b.info().initiator && !conn_a.info().initiator);
    assert_eq!(conn_b.info().topic.as_deref(), Some(&b"topic"[..]));
    conn_a.write_all(b"ping").await.unwrap();
    conn_b.write_all(b"pong").await.unwrap();
    let mut buf = [0u8; 4];
    conn_b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    conn_a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    assert_eq!((a.connected(), b.connected()), (1, 1));
}

#[tokio::test]
async fn crossed_dials_keep_the_same_single_connection_at_both_ends() {
    for round in 0..6u8 {
        // Alternate which side has the smaller id.
        let (id_a, id_b) = if round % 2 == 0 {
            ([1, round], [2, round])
        } else {
            ([2, round], [1, round])
        };
        let (mut a, port_a) = start(&id_a).await;
        let (mut b, port_b) = start(&id_b).await;
        a.add_peer(Some("t"), local(port_b));
        b.add_peer(Some("t"), local(port_a));
        let conn_a = next_connection(&mut a).await;
        let conn_b = next_connection(&mut b).await;
        // Let any crossing connection finish its handshake and the rule run.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!((a.connected(), b.connected()), (1, 1), "round {round}");
        assert_eq!(
            conn_a.local_addr().unwrap().port(),
            conn_b.peer_addr().unwrap().port()
        );
        assert_eq!(
            conn_b.local_addr().unwrap().port(),
            conn_a.peer_addr().unwrap().port()
        );
        let smaller_is_a = id_a < id_b;
        assert_eq!(
            conn_a.info().initiator,
            smaller_is_a,
            "the smaller id's dial survives"
        );
        a.close().await;
        b.close().await;
    }
}

#[tokio::test]
async fn silent_peer_hits_the_handshake_timeout() {
    let mut builder = SwarmBuilder::new().mdns(false);
    builder.config_mut().handshake_timeout = Duration::from_millis(200);
    let mut swarm = builder.build().unwrap();
    let port = swarm.listen(0).await.unwrap();
    let mut raw = TcpStream::connect(local(port)).await.unwrap();
    next_event(&mut swarm, "handshake-timeout").await;
    next_event(&mut swarm, "connection-closed").await;
    let mut received = Vec::new();
    let n = timeout(WAIT, raw.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        received[0], 0x20,
        "our handshake was sent at once, then the close"
    );
    assert_eq!(n, 33);
}

#[tokio::test]
async fn hostile_lengths_close_the_connection_without_harm() {
    let (mut swarm, port) = start(b"victim").await;
    let cases: [(&[u8], HandshakeError); 3] = [
        (&[0x00, 1, 2, 3], HandshakeError::ZeroLength),
        (
            &[0x80, 0x80, 0x80, 0x80, 0x08],
            HandshakeError::IdTooLong {
                len: 1 << 31,
                max: 256,
            },
        ),
        (
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            HandshakeError::VarintTooLong,
        ),
    ];
    for (bytes, expected) in cases {
        let mut raw = TcpStream::connect(local(port)).await.unwrap();
        raw.write_all(bytes).await.unwrap();
        let error = next_matching(&mut swarm, |e| match e {
            SwarmEvent::Event {
                event: Event::HandshakeFailed { error, .. },
                ..
            } => Some(error),
            _ => None,
        })
        .await;
        assert_eq!(error, expected);
        let mut sink = Vec::new();
        timeout(WAIT, raw.read_to_end(&mut sink))
            .await
            .unwrap()
            .ok();
    }
    // Still serving legitimate peers.
    let (other, _) = start(b"friend").await;
    other.add_peer(None::<&str>, local(port));
    assert_eq!(next_connection(&mut swarm).await.remote_id(), b"friend");
}

#[tokio::test]
async fn application_data_sent_with_the_handshake_is_delivered_first() {
    let (mut swarm, port) = start(b"me").await;
    let mut raw = TcpStream::connect(local(port)).await.unwrap();
    raw.write_all(b"\x03youhello").await.unwrap();
    let mut conn = next_connection(&mut swarm).await;
    assert_eq!(conn.remote_id(), b"you");
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
}

#[tokio::test]
async fn listening_on_a_port_in_use_is_an_error() {
    let (_a, port) = start(b"a").await;
    let b = SwarmBuilder::new().mdns(false).build().unwrap();
    assert!(matches!(
        b.listen(port).await,
        Err(swarm_tokio::Error::Bind(_))
    ));
}

#[tokio::test]
async fn close_ends_connections_and_the_event_stream() {
    let (mut a, port_a) = start(b"a").await;
    let (mut b, _) = start(b"b").await;
    b.add_peer(None::<&str>, local(port_a));
    let mut conn_b = next_connection(&mut b).await;
    let _conn_a = next_connection(&mut a).await;
    a.close().await;
    let mut sink = Vec::new();
    timeout(WAIT, conn_b.read_to_end(&mut sink))
        .await
        .unwrap()
        .unwrap();
    assert!(timeout(WAIT, a.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn whitelist_refuses_other_hosts_inbound() {
    let mut swarm = SwarmBuilder::new()
        .mdns(false)
        .whitelist(["10.9.9.9".parse().unwrap()])
        .build()
        .unwrap();
    let port = swarm.listen(0).await.unwrap();
    let mut raw = TcpStream::connect(local(port)).await.unwrap();
    let event = next_event(&mut swarm, "peer-rejected").await;
    assert!(matches!(
        event,
        Event::PeerRejected {
            reason: swarm_tokio::RejectReason::Whitelist,
            ..
        }
    ));
    let mut sink = Vec::new();
    let n = timeout(WAIT, raw.read_to_end(&mut sink))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing is sent to a refused peer");
}

#[tokio::test]
async fn external_handshake_reports_the_id_the_application_found() {
    async fn line_handshake(
        mut stream: TcpStream,
        me: &'static str,
    ) -> std::io::Result<(TcpStream, Vec<u8>, Option<Vec<u8>>)> {
        stream.write_all(format!("{me}\n").as_bytes()).await?;
        let mut id = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            stream.read_exact(&mut byte).await?;
            if byte[0] == b'\n' {
                break;
            }
            id.push(byte[0]);
        }
        Ok((stream, id, Some(b"key".to_vec())))
    }
    let build = |me: &'static str| {
        SwarmBuilder::new()
            .mdns(false)
            .id(me.as_bytes().to_vec())
            .external_handshake(move |stream, _info| line_handshake(stream, me))
            .build()
            .unwrap()
    };
    let mut a = build("alice");
    let mut b = build("bob");
    let port_a = a.listen(0).await.unwrap();
    b.listen(0).await.unwrap();
    b.add_peer(None::<&str>, local(port_a));
    assert_eq!(next_connection(&mut b).await.remote_id(), b"alice");
    assert_eq!(next_connection(&mut a).await.remote_id(), b"bob");
}
