//! The driver: owns the core, the listener and every socket until its handshake is done, and
//! loops over socket readiness, commands and the core's next deadline. No protocol logic, and
//! nothing tied to one runtime: readiness and timers come from [`Runtime`].

mod datagrams;
mod events;
mod tcp;

use crate::batch::{Batcher, Received};
use crate::runtime::{Io, Runtime, Timer};
use crate::stream_bridge::Bridge;
use crate::{Counters, ExternalHandshake, SwarmEvent};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use hashbrown::HashMap;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use swarm_core::{CloseCause, ConnId, Input, Instant, Output, Swarm, UdpSocket};
use tokio::sync::{mpsc, oneshot};

/// Largest datagram read (libutp accepts up to 64 KiB, mDNS packets can be large too).
const DATAGRAM_MAX: usize = 64 * 1024;

/// Most inputs taken in one wake-up, so a flood cannot starve commands and timers.
const BATCH: usize = 64;

/// A command on the core alone (join, add_peer, ...), run at the driver's current time.
pub(crate) type CoreCommand = Box<dyn FnOnce(&mut Swarm, Instant) + Send>;

pub(crate) enum Command {
    Core(CoreCommand),
    Listen {
        port: u16,
        reply: oneshot::Sender<io::Result<u16>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// What an application's handshake returns: the socket, the remote id and an optional
/// discovery key.
pub type HandshakeResult<S> = io::Result<(S, Vec<u8>, Option<Vec<u8>>)>;

pub(crate) enum Report {
    Closed {
        conn: ConnId,
        cause: CloseCause,
    },
    /// The application read, wrote, shut down or dropped a uTP connection.
    Stream(ConnId),
}

type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// A dial's socket once connected; `None` when the core cancelled it.
type Dialled<R> = (ConnId, Option<io::Result<<R as Runtime>::Io<TcpStream>>>);
/// An application handshake's result; `None` when the core cancelled it.
type Handshaken<R> = (
    ConnId,
    Option<HandshakeResult<<R as Runtime>::HandshakeStream>>,
);

/// A UDP socket: received from through the reactor, sent on with a plain non-blocking
/// `sendto`, which only refuses when the kernel's buffer is really full.
struct Udp<R: Runtime> {
    io: R::Io<std::net::UdpSocket>,
    /// Segmented sends and coalesced receives (the swarm socket, which carries uTP).
    batch: Option<Batcher>,
}

impl<R: Runtime> Udp<R> {
    fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Udp {
            io: R::register(socket)?,
            batch: None,
        })
    }

    fn batched(socket: std::net::UdpSocket) -> io::Result<Self> {
        let mut udp = Self::new(socket)?;
        match Batcher::new(udp.io.get_ref()) {
            Ok(batch) => udp.batch = Some(batch),
            Err(e) => tracing::debug!(error = %e, "UDP batching unavailable"),
        }
        Ok(udp)
    }
}

/// A socket the driver holds while its handshake runs, with handshake bytes not yet written.
struct Handshaking<R: Runtime> {
    stream: R::Io<TcpStream>,
    unsent: Bytes,
}

/// Who has a live connection's socket, and so how the driver ends it.
enum Owner {
    /// The driver itself (in `held`), or nobody any more.
    Driver,
    /// A dial, readiness or application-handshake future; dropping this cancels it.
    Future(#[allow(dead_code)] oneshot::Sender<()>),
    /// The application; this duplicate of the socket lets the driver shut it down.
    Application(TcpStream),
}

impl Owner {
    fn end(self) {
        if let Owner::Application(socket) = self {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A live connection: where its socket is and what the events need to know. One per held
/// connection, so kept small.
struct Live {
    /// Our port (0 until known): all the events need, and a fraction of a `SocketAddr`.
    local_port: u16,
    owner: Owner,
    /// Reached `handshaking`, so the core will report `connection-closed` for it.
    reported: bool,
}

impl Live {
    fn new(local_port: u16, owner: Owner) -> Self {
        Live {
            local_port,
            owner,
            reported: false,
        }
    }
}

/// What woke the driver.
enum Wake<R: Runtime> {
    Command(Option<Command>),
    Report(Report),
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    Datagram(UdpSocket, io::Result<(usize, SocketAddr)>),
    Batch(io::Result<Received>),
    Dialled(ConnId, Option<io::Result<R::Io<TcpStream>>>),
    Ready(ConnId, Handshaking<R>, bool),
    Handshaken(ConnId, Option<HandshakeResult<R::HandshakeStream>>),
    Timer,
}

pub(crate) struct Driver<R: Runtime> {
    core: Swarm,
    epoch: std::time::Instant,
    listener: Option<R::Io<TcpListener>>,
    commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedReceiver<Report>,
    report_tx: mpsc::UnboundedSender<Report>,
    events: mpsc::UnboundedSender<SwarmEvent<R>>,
    counters: Arc<Counters>,
    external: Option<ExternalHandshake<R>>,
    /// Interfaces to join the mDNS group on (`None`: every IPv4 interface).
    mdns_interfaces: Option<Vec<std::net::Ipv4Addr>>,
    live: HashMap<ConnId, Live>,
    /// Sockets in the driver's hands during this iteration, or parked while the core defers.
    held: HashMap<ConnId, Handshaking<R>>,
    dials: FuturesUnordered<Task<Dialled<R>>>,
    readiness: FuturesUnordered<Task<(ConnId, Handshaking<R>, bool)>>,
    /// Applications' own handshakes, run inside the driver (no executor needed).
    handshakes: FuturesUnordered<Task<Handshaken<R>>>,
    read_buf: Vec<u8>,
    accept_paused_until: Option<std::time::Instant>,
    /// The multicast DNS socket, when mDNS is on.
    mdns: Option<Udp<R>>,
    /// The swarm's own UDP port, when uTP or the DHT is on.
    swarm_udp: Option<Udp<R>>,
    /// The unicast DNS client's own socket (uTP off, PROTOCOLS.md 1.11).
    dns_udp: Option<Udp<R>>,
    datagram_buf: Vec<u8>,
    /// uTP connections the application holds: their bytes pass through these.
    utp_streams: HashMap<ConnId, Arc<Bridge>>,
}

/// The channels between a driver and its handles.
pub(crate) struct Channels<R: Runtime> {
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub reports: mpsc::UnboundedReceiver<Report>,
    pub report_tx: mpsc::UnboundedSender<Report>,
    pub events: mpsc::UnboundedSender<SwarmEvent<R>>,
}

impl<R: Runtime> Driver<R> {
    pub(crate) fn new(
        core: Swarm,
        channels: Channels<R>,
        counters: Arc<Counters>,
        options: crate::AdapterOptions<R>,
    ) -> Self {
        Driver {
            core,
            epoch: std::time::Instant::now(),
            listener: None,
            commands: channels.commands,
            reports: channels.reports,
            report_tx: channels.report_tx,
            events: channels.events,
            counters,
            external: options.external,
            mdns_interfaces: options.mdns_interfaces,
            live: HashMap::new(),
            held: HashMap::new(),
            dials: FuturesUnordered::new(),
            readiness: FuturesUnordered::new(),
            handshakes: FuturesUnordered::new(),
            read_buf: vec![0; 4096],
            accept_paused_until: None,
            mdns: None,
            swarm_udp: None,
            dns_udp: None,
            datagram_buf: vec![0; DATAGRAM_MAX],
            utp_streams: HashMap::new(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    pub(crate) async fn run(mut self) {
        let far = std::time::Instant::now() + Duration::from_secs(3600);
        let mut timer = R::timer(far);
        loop {
            let deadline = self
                .core
                .poll_timeout()
                .map(|t| self.epoch + Duration::from_micros(t.as_micros()));
            let wake_at = match (deadline, self.accept_paused_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(at) = wake_at {
                timer.reset(at);
            }
            let wake = std::future::poll_fn(|cx| self.poll_wake(cx, &mut timer, wake_at)).await;
            match wake {
                Wake::Command(Some(Command::Close { reply })) => {
                    self.shutdown();
                    let _ = reply.send(());
                    return;
                }
                Wake::Command(Some(command)) => self.on_command(command),
                Wake::Command(None) => {
                    self.shutdown();
                    return;
                }
                Wake::Report(report) => self.on_report(report),
                Wake::Accepted(accepted) => self.on_accept(accepted),
                Wake::Datagram(socket, received) => self.on_datagram(socket, received),
                Wake::Batch(received) => self.on_batch(received),
                Wake::Dialled(conn, result) => self.on_dialled(conn, result),
                Wake::Ready(conn, hs, cancelled) => self.on_ready(conn, hs, cancelled),
                Wake::Handshaken(conn, result) => self.on_handshaken(conn, result),
                Wake::Timer => {
                    let now_std = std::time::Instant::now();
                    if self.accept_paused_until.is_some_and(|t| t <= now_std) {
                        self.accept_paused_until = None;
                    }
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
            }
            self.take_ready();
            self.drain();
        }
    }

    /// The first of the driver's sources that is ready, commands first.
    fn poll_wake(
        &mut self,
        cx: &mut Context<'_>,
        timer: &mut R::Timer,
        wake_at: Option<std::time::Instant>,
    ) -> Poll<Wake<R>> {
        if let Poll::Ready(command) = self.commands.poll_recv(cx) {
            return Poll::Ready(Wake::Command(command));
        }
        if let Poll::Ready(Some(report)) = self.reports.poll_recv(cx) {
            return Poll::Ready(Wake::Report(report));
        }
        if self.accept_paused_until.is_none() {
            if let Some(listener) = &self.listener {
                if let Poll::Ready(accepted) = listener.poll_read_with(cx, crate::net::accept) {
                    return Poll::Ready(Wake::Accepted(accepted));
                }
            }
        }
        if let Poll::Ready(wake) = self.poll_datagrams(cx) {
            return Poll::Ready(wake);
        }
        if let Poll::Ready(Some((conn, result))) = self.dials.poll_next_unpin(cx) {
            return Poll::Ready(Wake::Dialled(conn, result));
        }
        if let Poll::Ready(Some((conn, hs, cancelled))) = self.readiness.poll_next_unpin(cx) {
            return Poll::Ready(Wake::Ready(conn, hs, cancelled));
        }
        if let Poll::Ready(Some((conn, result))) = self.handshakes.poll_next_unpin(cx) {
            return Poll::Ready(Wake::Handshaken(conn, result));
        }
        if wake_at.is_some() && Pin::new(timer).poll(cx).is_ready() {
            return Poll::Ready(Wake::Timer);
        }
        Poll::Pending
    }

    /// Under load many inputs are ready at once: take them in the same wake-up, so that their
    /// outputs, and the application's events, go out as one batch.
    fn take_ready(&mut self) {
        for _ in 0..BATCH {
            let mut progressed = false;
            if let Ok(report) = self.reports.try_recv() {
                self.on_report(report);
                progressed = true;
            }
            if let Some(Some((conn, hs, cancelled))) = self.readiness.next().now_or_never() {
                self.on_ready(conn, hs, cancelled);
                progressed = true;
            }
            if self.accept_paused_until.is_none() {
                let accepted = self
                    .listener
                    .as_ref()
                    .map(|l| l.try_read_with(crate::net::accept));
                match accepted {
                    Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Some(accepted) => {
                        self.on_accept(accepted);
                        progressed = true;
                    }
                    None => {}
                }
            }
            if let Some(Some((conn, result))) = self.dials.next().now_or_never() {
                self.on_dialled(conn, result);
                progressed = true;
            }
            progressed |= self.take_datagrams();
            if !progressed {
                return;
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Core(run) => run(&mut self.core, now),
            Command::Listen { port, reply } => {
                let result = self.listen(port);
                if let Ok(port) = result {
                    self.core.handle_input(now, Input::Listening { port });
                }
                let _ = reply.send(result);
            }
            Command::Close { .. } => unreachable!("handled by the loop"),
        }
    }

    fn listen(&mut self, port: u16) -> io::Result<u16> {
        let config = self.core.config();
        let dns = !config.dns_servers.is_empty();
        let with_udp = config.dht.is_some() || config.utp;
        let (listener, udp, port) = crate::net::bind::<R>(port, with_udp)?;
        self.swarm_udp = udp.map(Udp::batched).transpose()?;
        self.listener = Some(listener);
        if self.core.config().mdns.is_some() {
            self.open_mdns();
        }
        if dns && !self.core.config().utp {
            // Best effort, as mDNS.
            match crate::net::dns_socket().and_then(Udp::new) {
                Ok(udp) => self.dns_udp = Some(udp),
                Err(e) => tracing::warn!(
                    error = %e,
                    "dns-discovery servers are off: cannot open a UDP socket"
                ),
            }
        }
        Ok(port)
    }

    fn on_report(&mut self, report: Report) {
        let now = self.now();
        match report {
            Report::Closed { conn, cause } => {
                if let Some(live) = self.live.get_mut(&conn) {
                    live.owner = Owner::Driver;
                }
                self.core.handle_input(now, Input::Closed { conn, cause });
            }
            Report::Stream(conn) => self.pump_stream(conn),
        }
    }

    /// Carries out the core's outputs, then hands every socket still held back to a readiness
    /// future (or parks it while the core defers it).
    fn drain(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Dial {
                    conn,
                    addr,
                    transport,
                } => self.dial(conn, addr, transport),
                Output::Send { conn, data } => {
                    if let Some(hs) = self.held.get_mut(&conn) {
                        hs.unsent = data;
                        let _ = tcp::write_unsent(hs);
                    }
                }
                Output::Close { conn } => self.close(conn),
                Output::Transmit { socket, to, data } => self.transmit(socket, to, data),
                Output::Event(event) => self.on_event(event),
                Output::StreamReadable(conn) | Output::StreamWritable(conn) => {
                    self.pump_stream(conn)
                }
            }
        }
        self.flush_batch();
        self.rearm_held();
        self.publish_counters();
    }

    /// The counters the handles read. Also stored before each event goes out, so that an
    /// application that sees a `connection` already counts it, on any executor.
    fn publish_counters(&self) {
        let counters = &self.counters;
        counters.connected.store(self.core.connected(), Relaxed);
        counters.connecting.store(self.core.connecting(), Relaxed);
        counters.queued.store(self.core.queued(), Relaxed);
    }

    fn shutdown(&mut self) {
        self.listener = None;
        // A uTP peer learns of the end only from us: send each stream's FIN once (no one
        // will be left to retransmit it). TCP sockets close with their file descriptors.
        let now = self.now();
        for (conn, bridge) in self.utp_streams.drain() {
            let _ = self.core.disconnect(now, conn);
            let mut state = bridge.lock();
            state.closed = true;
            Bridge::wake(&mut state);
        }
        while let Some(output) = self.core.poll_output() {
            if let Output::Transmit { socket, to, data } = output {
                self.transmit(socket, to, data);
            }
        }
        self.flush_batch();
        self.held.clear();
        for (_, live) in self.live.drain() {
            live.owner.end();
        }
        self.dials.clear();
        self.readiness.clear();
        self.handshakes.clear();
    }
}

/// `work`, unless `cancelled` fires (its sender is dropped) first.
async fn cancellable<F: Future>(
    mut cancelled: oneshot::Receiver<()>,
    work: F,
) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if Pin::new(&mut cancelled).poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        work.as_mut().poll(cx).map(Some)
    })
    .await
}
