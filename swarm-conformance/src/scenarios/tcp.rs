//! TCP over real loopback sockets: both directions, the duplicate rule, the handshake timeout,
//! hostile input, early data, binding, close, the whitelist and an application handshake.

use crate::{
    local, next_connection, next_event, next_matching_within, raw_peer, start, timeout, Harness,
    WAIT,
};
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use std::time::Duration;
use swarm_io::{Event, HandshakeError, RejectReason, SwarmBuilder, SwarmEvent};

pub async fn peers_connect_and_exchange_data_both_ways<H: Harness>() {
    let (mut a, port_a) = start::<H>(b"aaaa").await;
    let (mut b, _) = start::<H>(b"bbbb").await;
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

pub async fn crossed_dials_keep_the_same_single_connection_at_both_ends<H: Harness>() {
    for round in 0..6u8 {
        // Alternate which side has the smaller id.
        let (id_a, id_b) = if round % 2 == 0 {
            ([1, round], [2, round])
        } else {
            ([2, round], [1, round])
        };
        let (mut a, port_a) = start::<H>(&id_a).await;
        let (mut b, port_b) = start::<H>(&id_b).await;
        a.add_peer(Some("t"), local(port_b));
        b.add_peer(Some("t"), local(port_a));
        let first_a = next_connection(&mut a).await;
        let first_b = next_connection(&mut b).await;
        // Let any crossing connection finish its handshake and the rule run. Either side may
        // have reported the crossing one too before the rule closed it; the survivor counts.
        let settle = Duration::from_millis(300);
        let conn_a = survivor(&mut a, first_a, settle).await;
        let conn_b = survivor(&mut b, first_b, settle).await;
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

/// The one connection of `first` and any reported within `settle` that was not closed.
async fn survivor<R: swarm_io::Runtime>(
    swarm: &mut swarm_io::Swarm<R>,
    first: swarm_io::Connection<R>,
    settle: Duration,
) -> swarm_io::Connection<R> {
    let mut open = vec![first];
    let started = std::time::Instant::now();
    while let Some(left) = settle.checked_sub(started.elapsed()) {
        match timeout::<R, _>(left, swarm.next()).await {
            Some(Some(SwarmEvent::Connection(c))) => open.push(c),
            Some(Some(SwarmEvent::Event {
                event: Event::ConnectionClosed { conn, .. },
                ..
            })) => open.retain(|c| c.id() != conn),
            Some(Some(_)) => {}
            Some(None) | None => break,
        }
    }
    assert_eq!(open.len(), 1, "one connection survives at each end");
    open.pop().unwrap()
}

pub async fn silent_peer_hits_the_handshake_timeout<H: Harness>() {
    let mut builder = SwarmBuilder::<H::R>::new().mdns(false);
    builder.config_mut().handshake_timeout = Duration::from_millis(200);
    let mut swarm = H::start(builder);
    let port = swarm.listen(0).await.unwrap();
    let raw = raw_peer(local(port), Vec::new());
    next_event(&mut swarm, "handshake-timeout").await;
    next_event(&mut swarm, "connection-closed").await;
    let received = raw.await.expect("closed by the swarm, not timed out");
    assert_eq!(
        received[0], 0x20,
        "our handshake was sent at once, then the close"
    );
    assert_eq!(received.len(), 33);
}

pub async fn hostile_lengths_close_the_connection_without_harm<H: Harness>() {
    let (mut swarm, port) = start::<H>(b"victim").await;
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
        let raw = raw_peer(local(port), bytes.to_vec());
        let error = next_matching_within(&mut swarm, WAIT, |e| match e {
            SwarmEvent::Event {
                event: Event::HandshakeFailed { error, .. },
                ..
            } => Some(error),
            _ => None,
        })
        .await;
        assert_eq!(error, expected);
        // Closed by the swarm (a reset is as good as a FIN here).
        let _ = raw.await;
    }
    // Still serving legitimate peers.
    let (other, _) = start::<H>(b"friend").await;
    other.add_peer(None::<&str>, local(port));
    assert_eq!(next_connection(&mut swarm).await.remote_id(), b"friend");
}

pub async fn application_data_sent_with_the_handshake_is_delivered_first<H: Harness>() {
    let (mut swarm, port) = start::<H>(b"me").await;
    let _raw = raw_peer(local(port), b"\x03youhello".to_vec());
    let mut conn = next_connection(&mut swarm).await;
    assert_eq!(conn.remote_id(), b"you");
    let mut buf = [0u8; 5];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
}

pub async fn listening_on_a_port_in_use_is_an_error<H: Harness>() {
    let (_a, port) = start::<H>(b"a").await;
    let b = H::start(SwarmBuilder::new().mdns(false));
    assert!(matches!(
        b.listen(port).await,
        Err(swarm_io::Error::Bind(_))
    ));
}

pub async fn close_ends_connections_and_the_event_stream<H: Harness>() {
    let (mut a, port_a) = start::<H>(b"a").await;
    let (mut b, _) = start::<H>(b"b").await;
    b.add_peer(None::<&str>, local(port_a));
    let mut conn_b = next_connection(&mut b).await;
    let _conn_a = next_connection(&mut a).await;
    a.close().await;
    let mut sink = Vec::new();
    timeout::<H::R, _>(WAIT, conn_b.read_to_end(&mut sink))
        .await
        .expect("the remote end closes")
        .unwrap();
    let ended = timeout::<H::R, _>(WAIT, a.next()).await;
    assert!(ended.expect("the stream ends").is_none());
}

pub async fn whitelist_refuses_other_hosts_inbound<H: Harness>() {
    let mut swarm = H::start(
        SwarmBuilder::new()
            .mdns(false)
            .whitelist(["10.9.9.9".parse().unwrap()]),
    );
    let port = swarm.listen(0).await.unwrap();
    let raw = raw_peer(local(port), Vec::new());
    let event = next_event(&mut swarm, "peer-rejected").await;
    assert!(matches!(
        event,
        Event::PeerRejected {
            reason: RejectReason::Whitelist,
            ..
        }
    ));
    let received = raw.await.unwrap_or_default();
    assert!(received.is_empty(), "nothing is sent to a refused peer");
}

pub async fn external_handshake_reports_the_id_the_application_found<H: Harness>() {
    let build = |me: &'static str| {
        H::start(H::line_handshake(
            SwarmBuilder::new().mdns(false).id(me.as_bytes().to_vec()),
            me,
        ))
    };
    let mut a = build("alice");
    let mut b = build("bob");
    let port_a = a.listen(0).await.unwrap();
    b.listen(0).await.unwrap();
    b.add_peer(None::<&str>, local(port_a));
    assert_eq!(next_connection(&mut b).await.remote_id(), b"alice");
    assert_eq!(next_connection(&mut a).await.remote_id(), b"bob");
}
