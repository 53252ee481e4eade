//! One conformance suite, every runtime: the adapter-level scenarios (TCP both directions, the
//! duplicate rule, the handshake timeout, hostile input, mDNS, the DHT, uTP, close) are
//! written once against [`Harness`], and each test file instantiates them for one runtime
//! with [`conformance_tests!`]. A harness only says how to block on a future, spawn a task and
//! start a swarm's driver; everything the scenarios check goes through swarm-io's API.

pub mod harness;
pub mod scenarios;
pub mod support;

use futures_lite::StreamExt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use swarm_io::{Connection, Event, Runtime, Swarm, SwarmBuilder, SwarmEvent};

/// A runtime to run the scenarios on.
pub trait Harness: Sized + 'static {
    type R: Runtime;

    /// Runs a scenario to completion on this runtime.
    fn block_on<F: Future>(work: F) -> F::Output;
    /// Runs a task in the background; its handle yields the task's output.
    fn spawn<T: Send + 'static>(
        work: impl Future<Output = T> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = T> + Send>>;
    /// Starts a swarm with its driver on this runtime's executor.
    fn start(builder: SwarmBuilder<Self::R>) -> Swarm<Self::R>;
    /// `builder` with an application handshake: each side writes its name and a newline and
    /// reads the other's, which becomes the remote id.
    fn line_handshake(builder: SwarmBuilder<Self::R>, me: &'static str) -> SwarmBuilder<Self::R>;
}

/// How long a scenario waits for any one thing.
pub const WAIT: Duration = Duration::from_secs(5);

/// Sleeps on the runtime's timer.
pub async fn sleep<R: Runtime>(duration: Duration) {
    R::timer(std::time::Instant::now() + duration).await
}

/// `work`, or `None` if it takes longer than `limit`.
pub async fn timeout<R: Runtime, T>(limit: Duration, work: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(work.await) }, async {
        sleep::<R>(limit).await;
        None
    })
    .await
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A swarm without mDNS, listening on a free port.
pub async fn start<H: Harness>(id: &[u8]) -> (Swarm<H::R>, u16) {
    let swarm = H::start(SwarmBuilder::new().mdns(false).id(id.to_vec()));
    let port = swarm.listen(0).await.unwrap();
    (swarm, port)
}

/// The next event matching `pick`, skipping others, within `limit`.
pub async fn next_matching_within<R: Runtime, T>(
    swarm: &mut Swarm<R>,
    limit: Duration,
    mut pick: impl FnMut(SwarmEvent<R>) -> Option<T>,
) -> T {
    timeout::<R, _>(limit, async {
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

pub async fn next_connection<R: Runtime>(swarm: &mut Swarm<R>) -> Connection<R> {
    next_connection_within(swarm, WAIT).await
}

pub async fn next_connection_within<R: Runtime>(
    swarm: &mut Swarm<R>,
    limit: Duration,
) -> Connection<R> {
    next_matching_within(swarm, limit, |e| match e {
        SwarmEvent::Connection(c) => Some(c),
        _ => None,
    })
    .await
}

pub async fn next_event<R: Runtime>(swarm: &mut Swarm<R>, name: &str) -> Event {
    next_matching_within(swarm, WAIT, |e| match e {
        SwarmEvent::Event { event, .. } if event.name() == name => Some(event),
        _ => None,
    })
    .await
}

/// The first connection either swarm reports, and which of them reported it (0 or 1).
pub async fn first_connection<R: Runtime>(
    a: &mut Swarm<R>,
    b: &mut Swarm<R>,
    limit: Duration,
) -> (usize, Connection<R>) {
    let race = std::future::poll_fn(|cx| {
        for (side, swarm) in [(0, &mut *a), (1, &mut *b)] {
            while let Poll::Ready(event) = swarm.poll_next(cx) {
                match event {
                    Some(SwarmEvent::Connection(c)) => return Poll::Ready((side, c)),
                    Some(_) => continue,
                    None => break,
                }
            }
        }
        Poll::Pending
    });
    timeout::<R, _>(limit, race)
        .await
        .expect("a connection within the limit")
}

/// Both ends' reports of the connection between `a` and `b`, whichever reports first.
pub async fn connection_pair<R: Runtime>(
    a: &mut Swarm<R>,
    b: &mut Swarm<R>,
    limit: Duration,
) -> (Connection<R>, Connection<R>) {
    let (side, first) = first_connection(a, b, limit).await;
    if side == 0 {
        (first, next_connection_within(b, limit).await)
    } else {
        (next_connection_within(a, limit).await, first)
    }
}

/// A raw TCP peer on a thread of its own: connects to `addr`, writes `send`, then reads until
/// the end of the stream (at most `WAIT`). Its result: what it read.
pub fn raw_peer(addr: SocketAddr, send: Vec<u8>) -> impl Future<Output = std::io::Result<Vec<u8>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let result = (|| {
            let mut stream = std::net::TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(WAIT))?;
            stream.write_all(&send)?;
            let mut received = Vec::new();
            stream.read_to_end(&mut received)?;
            Ok(received)
        })();
        let _ = tx.send(result);
    });
    async move { rx.await.expect("the raw peer's thread reports") }
}

/// Keeps a swarm's event stream polled (its events would otherwise pile up) until it has been
/// quiet for 50 ms; yields the swarm back.
pub fn drain_events<H: Harness>(
    mut swarm: Swarm<H::R>,
) -> Pin<Box<dyn Future<Output = Swarm<H::R>> + Send>> {
    H::spawn(async move {
        while timeout::<H::R, _>(Duration::from_millis(50), swarm.next())
            .await
            .is_some()
        {}
        swarm
    })
}

/// Generates one `#[test]` per scenario for `$harness`, each inside an isolated network
/// namespace (the scenarios multicast, run a DHT, or at least bind sockets).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:ty) => {
        $crate::conformance_tests!($harness;
            peers_connect_and_exchange_data_both_ways,
            crossed_dials_keep_the_same_single_connection_at_both_ends,
            silent_peer_hits_the_handshake_timeout,
            hostile_lengths_close_the_connection_without_harm,
            application_data_sent_with_the_handshake_is_delivered_first,
            listening_on_a_port_in_use_is_an_error,
            close_ends_connections_and_the_event_stream,
            whitelist_refuses_other_hosts_inbound,
            external_handshake_reports_the_id_the_application_found,
            peers_on_one_lan_find_each_other_by_mdns_alone,
            chosen_interfaces_are_used_and_an_unusable_one_only_turns_mdns_off,
            peers_find_each_other_through_a_local_dht_bootstrap_node,
            utp_only_swarms_connect_and_move_16_mib_each_way_intact,
            utp_half_close_ends_one_direction_only,
            a_reader_that_stops_reading_stops_the_writer,
            with_both_transports_tcp_wins_on_loopback,
        );
    };
    ($harness:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if !$crate::support::isolated(stringify!($name)) {
                    return;
                }
                <$harness as $crate::Harness>::block_on($crate::scenarios::$name::<$harness>());
            }
        )*
    };
}
