//! The driver task: owns the core, the listener and every socket until its handshake is done,
//! and loops over socket readiness, commands and the core's next deadline. No protocol logic.

use crate::batch::Batcher;
use crate::connection::Connection;
use crate::stream_bridge::{Bridge, INBOUND_CAP};
use crate::{Counters, ExternalHandshake, SwarmEvent};
use bytes::{Buf, Bytes};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use hashbrown::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use swarm_core::{CloseCause, ConnId, Event, Input, Instant, Output, Swarm, Transport, UdpSocket};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

/// Largest datagram read (libutp accepts up to 64 KiB, mDNS packets can be large too).
const DATAGRAM_MAX: usize = 64 * 1024;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

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

pub(crate) type HandshakeResult = io::Result<(TcpStream, Vec<u8>, Option<Vec<u8>>)>;

pub(crate) enum Report {
    Closed {
        conn: ConnId,
        cause: CloseCause,
    },
    Handshaken {
        conn: ConnId,
        result: HandshakeResult,
    },
    /// The application read, wrote, shut down or dropped a uTP connection.
    Stream(ConnId),
}

type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Most inputs taken in one wake-up, so a flood cannot starve commands and timers.
const BATCH: usize = 64;

/// A UDP socket: received from through tokio, sent on through a plain non-blocking clone.
/// tokio's `try_send_to` refuses (`WouldBlock`) until the reactor has seen the socket
/// writable, which dropped the first datagrams after binding; a plain `sendto` only refuses
/// when the kernel's buffer is really full.
struct Udp {
    recv: tokio::net::UdpSocket,
    send: std::net::UdpSocket,
    /// Segmented sends and coalesced receives (the swarm socket, which carries uTP).
    batch: Option<Batcher>,
}

impl Udp {
    fn new(socket: std::net::UdpSocket) -> io::Result<Udp> {
        socket.set_nonblocking(true)?;
        let send = socket.try_clone()?;
        let recv = tokio::net::UdpSocket::from_std(socket)?;
        Ok(Udp {
            recv,
            send,
            batch: None,
        })
    }

    fn batched(socket: std::net::UdpSocket) -> io::Result<Udp> {
        let mut udp = Udp::new(socket)?;
        match Batcher::new(&udp.send) {
            Ok(batch) => udp.batch = Some(batch),
            Err(e) => tracing::debug!(error = %e, "UDP batching unavailable"),
        }
        Ok(udp)
    }
}

/// A socket the driver holds while its handshake runs, with handshake bytes not yet written.
struct Handshaking {
    stream: TcpStream,
    unsent: Bytes,
}

/// Who has a live connection's socket, and so how the driver ends it.
enum Owner {
    /// The driver itself (in `held`), or nobody any more.
    Driver,
    /// A dial or readiness future; dropping this sender cancels it.
    Future(#[allow(dead_code)] oneshot::Sender<()>),
    /// The application's handshake task.
    External(AbortHandle),
    /// The application; this duplicate of the socket lets the driver shut it down.
    Application(std::net::TcpStream),
}

impl Owner {
    fn end(self) {
        match self {
            Owner::Driver | Owner::Future(_) => {}
            Owner::External(task) => task.abort(),
            Owner::Application(socket) => {
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
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

pub(crate) struct Driver {
    core: Swarm,
    epoch: tokio::time::Instant,
    listener: Option<TcpListener>,
    commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedReceiver<Report>,
    report_tx: mpsc::UnboundedSender<Report>,
    events: mpsc::UnboundedSender<SwarmEvent>,
    counters: Arc<Counters>,
    external: Option<ExternalHandshake>,
    /// Interfaces to join the mDNS group on (`None`: every IPv4 interface).
    mdns_interfaces: Option<Vec<std::net::Ipv4Addr>>,
    live: HashMap<ConnId, Live>,
    /// Sockets in the driver's hands during this iteration, or parked while the core defers.
    held: HashMap<ConnId, Handshaking>,
    dials: FuturesUnordered<Task<(ConnId, Option<io::Result<TcpStream>>)>>,
    readiness: FuturesUnordered<Task<(ConnId, Handshaking, bool)>>,
    read_buf: Vec<u8>,
    accept_paused_until: Option<tokio::time::Instant>,
    /// The multicast DNS socket, when mDNS is on.
    mdns: Option<Udp>,
    /// The swarm's own UDP port, when uTP or the DHT is on.
    swarm_udp: Option<Udp>,
    /// The unicast DNS client's own socket (uTP off, PROTOCOLS.md 1.11).
    dns_udp: Option<Udp>,
    datagram_buf: Vec<u8>,
    /// uTP connections the application holds: their bytes pass through these.
    utp_streams: HashMap<ConnId, Arc<Bridge>>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        core: Swarm,
        commands: mpsc::UnboundedReceiver<Command>,
        reports: mpsc::UnboundedReceiver<Report>,
        report_tx: mpsc::UnboundedSender<Report>,
        events: mpsc::UnboundedSender<SwarmEvent>,
        counters: Arc<Counters>,
        options: crate::AdapterOptions,
    ) -> Self {
        Driver {
            core,
            epoch: tokio::time::Instant::now(),
            listener: None,
            commands,
            reports,
            report_tx,
            events,
            counters,
            external: options.external,
            mdns_interfaces: options.mdns_interfaces,
            live: HashMap::new(),
            held: HashMap::new(),
            dials: FuturesUnordered::new(),
            readiness: FuturesUnordered::new(),
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
        let sleep = tokio::time::sleep(std::time::Duration::from_secs(3600));
        tokio::pin!(sleep);
        loop {
            let deadline = self
                .core
                .poll_timeout()
                .map(|t| self.epoch + std::time::Duration::from_micros(t.as_micros()));
            let wake = match (deadline, self.accept_paused_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(at) = wake {
                sleep.as_mut().reset(at);
            }
            let accepting = self.listener.is_some() && self.accept_paused_until.is_none();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Close { reply }) => {
                        self.shutdown();
                        let _ = reply.send(());
                        return;
                    }
                    Some(command) => self.on_command(command).await,
                    None => {
                        self.shutdown();
                        return;
                    }
                },
                Some(report) = self.reports.recv() => self.on_report(report),
                accepted = accept(self.listener.as_ref()), if accepting => self.on_accept(accepted),
                (socket, received) = recv(
                    [
                        (UdpSocket::Mdns, self.mdns.as_ref()),
                        (UdpSocket::Swarm, self.swarm_udp.as_ref()),
                        (UdpSocket::Dns, self.dns_udp.as_ref()),
                    ],
                    &mut self.datagram_buf,
                ) => match received {
                    Some(received) => self.on_datagram(socket, received),
                    None => {
                        self.take_batch();
                    }
                },
                Some((conn, result)) = self.dials.next() => self.on_dialled(conn, result),
                Some((conn, hs, cancelled)) = self.readiness.next() => self.on_ready(conn, hs, cancelled),
                () = &mut sleep, if wake.is_some() => {
                    if self.accept_paused_until.is_some_and(|t| t <= tokio::time::Instant::now()) {
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
                    .and_then(|l| l.accept().now_or_never());
                if let Some(accepted) = accepted {
                    self.on_accept(accepted);
                    progressed = true;
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

    /// Datagrams already queued on the UDP sockets: one uTP ack then covers many of them,
    /// and the outputs go out as one batch.
    fn take_datagrams(&mut self) -> bool {
        let mut taken = false;
        for socket in [UdpSocket::Swarm, UdpSocket::Mdns, UdpSocket::Dns] {
            let udp = match socket {
                UdpSocket::Mdns => self.mdns.as_ref(),
                UdpSocket::Swarm => self.swarm_udp.as_ref(),
                UdpSocket::Dns => self.dns_udp.as_ref(),
            };
            let Some(udp) = udp else { continue };
            if udp.batch.is_some() {
                taken |= self.take_batch();
                continue;
            }
            match udp.recv.try_recv_from(&mut self.datagram_buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                received => {
                    self.on_datagram(socket, received);
                    taken = true;
                }
            }
        }
        taken
    }

    async fn on_command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Core(run) => run(&mut self.core, now),
            Command::Listen { port, reply } => {
                let config = self.core.config();
                let dns = !config.dns_servers.is_empty();
                let with_udp = config.dht.is_some() || config.utp;
                let result = bind(port, with_udp).await.map(|(listener, udp, port)| {
                    self.listener = Some(listener);
                    self.swarm_udp = udp;
                    port
                });
                if let Ok(port) = result {
                    if self.core.config().mdns.is_some() {
                        self.open_mdns();
                    }
                    if dns && !self.core.config().utp {
                        self.dns_udp = open_dns_socket();
                    }
                    self.core.handle_input(now, Input::Listening { port });
                }
                let _ = reply.send(result);
            }
            Command::Close { .. } => unreachable!("handled by the loop"),
        }
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
            Report::Handshaken { conn, result } => {
                if let Some(live) = self.live.get_mut(&conn) {
                    live.owner = Owner::Driver;
                }
                match result {
                    Ok((stream, id, key)) => {
                        let hs = Handshaking {
                            stream,
                            unsent: Bytes::new(),
                        };
                        self.held.insert(conn, hs);
                        if let Err(e) = self.core.complete_handshake(now, conn, &id, key.as_deref())
                        {
                            tracing::debug!(?conn, error = %e, "external handshake rejected");
                            self.held.remove(&conn);
                            let _ = self.core.disconnect(now, conn);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(?conn, error = %e, "external handshake failed");
                        self.remote_closed(now, conn);
                    }
                }
            }
            Report::Stream(conn) => self.pump_stream(conn),
        }
    }

    fn on_accept(&mut self, accepted: io::Result<(TcpStream, SocketAddr)>) {
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                let pause = std::time::Duration::from_millis(100);
                self.accept_paused_until = Some(tokio::time::Instant::now() + pause);
                return;
            }
        };
        let now = self.now();
        if let Ok(conn) = self.core.accept(now, remote, Transport::Tcp) {
            // An accepted socket's local port is the listener's: no getsockname per connection.
            let port = self.core.port().unwrap_or_default();
            self.live.insert(conn, Live::new(port, Owner::Driver));
            let hs = Handshaking {
                stream,
                unsent: Bytes::new(),
            };
            self.held.insert(conn, hs);
        }
    }

    fn on_dialled(&mut self, conn: ConnId, result: Option<io::Result<TcpStream>>) {
        let now = self.now();
        match result {
            None => {} // cancelled by the core
            Some(Ok(stream)) => {
                let port = stream.local_addr().map_or(0, |a| a.port());
                self.live.insert(conn, Live::new(port, Owner::Driver));
                let hs = Handshaking {
                    stream,
                    unsent: Bytes::new(),
                };
                self.held.insert(conn, hs);
                self.core.handle_input(now, Input::Connected { conn });
            }
            Some(Err(e)) => {
                tracing::debug!(?conn, error = %e, "dial failed");
                self.live.remove(&conn);
                self.core.handle_input(now, Input::DialFailed { conn });
            }
        }
    }

    fn on_ready(&mut self, conn: ConnId, mut hs: Handshaking, cancelled: bool) {
        if cancelled {
            return;
        }
        let now = self.now();
        if let Some(live) = self.live.get_mut(&conn) {
            live.owner = Owner::Driver;
        }
        if let Err(e) = write_unsent(&mut hs) {
            tracing::debug!(?conn, error = %e, "handshake write failed");
            self.remote_closed(now, conn);
            return;
        }
        while self.core.wants_read(conn) {
            match hs.stream.try_read(&mut self.read_buf) {
                Ok(0) => {
                    self.remote_closed(now, conn);
                    return;
                }
                Ok(n) => {
                    let data = &self.read_buf[..n];
                    self.core.handle_input(now, Input::Received { conn, data });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.remote_closed(now, conn);
                    return;
                }
            }
        }
        self.held.insert(conn, hs);
    }

    /// mDNS is best effort, as in Node: without the socket the swarm runs on without it.
    fn open_mdns(&mut self) {
        let interfaces = self
            .mdns_interfaces
            .clone()
            .unwrap_or_else(crate::udp::ipv4_interfaces);
        match crate::udp::mdns_socket(&interfaces).and_then(Udp::new) {
            Ok(udp) => self.mdns = Some(udp),
            Err(e) => tracing::warn!(error = %e, "multicast DNS is off: cannot open its socket"),
        }
    }

    fn on_datagram(&mut self, socket: UdpSocket, received: io::Result<(usize, SocketAddr)>) {
        match received {
            Ok((len, from)) => {
                let now = self.now();
                let data = &self.datagram_buf[..len];
                self.core
                    .handle_input(now, Input::Datagram { socket, from, data });
            }
            // ICMP errors surface here on Linux; UDP users expect loss, so only log.
            Err(e) => tracing::debug!(?socket, error = %e, "datagram receive failed"),
        }
    }

    fn transmit(&mut self, socket: UdpSocket, to: SocketAddr, data: bytes::Bytes) {
        let udp = match socket {
            UdpSocket::Mdns => self.mdns.as_mut(),
            UdpSocket::Swarm => self.swarm_udp.as_mut(),
            UdpSocket::Dns => self.dns_udp.as_mut(),
        };
        let Some(udp) = udp else { return };
        if let Some(batch) = udp.batch.as_mut() {
            batch.queue(to, data);
        } else if let Err(e) = udp.send.send_to(&data, to) {
            tracing::debug!(?socket, %to, error = %e, "datagram dropped");
        }
    }

    /// Sends the datagrams the batched socket holds (after each round of outputs).
    fn flush_batch(&mut self) {
        if let Some(udp) = self.swarm_udp.as_mut() {
            if let Some(batch) = udp.batch.as_mut() {
                batch.flush(&udp.send);
            }
        }
    }

    /// Receives what the batched swarm socket holds (a bounded number of receives, each
    /// possibly many coalesced datagrams) and feeds every datagram to the core.
    fn take_batch(&mut self) -> bool {
        let mut taken = false;
        for _ in 0..BATCH {
            let now = Instant::from_micros(self.epoch.elapsed().as_micros() as u64);
            let Some(udp) = self.swarm_udp.as_mut() else {
                return taken;
            };
            let Some(batch) = udp.batch.as_mut() else {
                return taken;
            };
            let send = &udp.send;
            let received = udp
                .recv
                .try_io(tokio::io::Interest::READABLE, || batch.recv(send));
            match received {
                Ok(r) => {
                    taken = true;
                    let socket = UdpSocket::Swarm;
                    let from = r.from;
                    for data in batch.received(&r) {
                        self.core
                            .handle_input(now, Input::Datagram { socket, from, data });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return taken,
                // ICMP errors surface here on Linux; UDP users expect loss, so only log.
                Err(e) => {
                    tracing::debug!(error = %e, "datagram receive failed");
                    return taken;
                }
            }
        }
        taken
    }

    /// The network ended a connection (end of stream, reset, I/O error).
    fn remote_closed(&mut self, now: Instant, conn: ConnId) {
        let cause = CloseCause::Remote;
        self.core.handle_input(now, Input::Closed { conn, cause });
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
                        let _ = write_unsent(hs);
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
        // Sockets still handshaking (or flushing) go back to a readiness future; the rest
        // stay parked while the core defers them.
        let core = &self.core;
        let rearm = self
            .held
            .extract_if(|conn, hs| core.wants_read(*conn) || hs.unsent.has_remaining());
        for (conn, hs) in rearm {
            let (cancel, cancelled) = oneshot::channel();
            if let Some(live) = self.live.get_mut(&conn) {
                live.owner = Owner::Future(cancel);
            }
            let reading = core.wants_read(conn);
            self.readiness
                .push(Box::pin(wait_ready(conn, hs, reading, cancelled)));
        }
        let counters = &self.counters;
        counters.connected.store(self.core.connected(), Relaxed);
        counters.connecting.store(self.core.connecting(), Relaxed);
        counters.queued.store(self.core.queued(), Relaxed);
    }

    fn dial(&mut self, conn: ConnId, addr: SocketAddr, transport: Transport) {
        if transport != Transport::Tcp {
            // uTP is not wired up in this adapter yet.
            let now = self.now();
            self.core.handle_input(now, Input::DialFailed { conn });
            return;
        }
        let (cancel, cancelled) = oneshot::channel::<()>();
        self.live.insert(conn, Live::new(0, Owner::Future(cancel)));
        self.dials.push(Box::pin(async move {
            tokio::select! {
                biased;
                _ = cancelled => (conn, None),
                result = TcpStream::connect(addr) => (conn, Some(result)),
            }
        }));
    }

    fn close(&mut self, conn: ConnId) {
        self.held.remove(&conn);
        if let Some(live) = self.live.get_mut(&conn) {
            core::mem::replace(&mut live.owner, Owner::Driver).end();
        }
        // Connections that never reached the handshake get no `connection-closed` event.
        if self.live.get(&conn).is_some_and(|l| !l.reported) {
            self.live.remove(&conn);
        }
    }

    fn on_event(&mut self, event: Event) {
        let local_port = event_conn(&event)
            .and_then(|c| self.live.get(&c))
            .map(|l| l.local_port)
            .filter(|p| *p != 0);
        match event {
            Event::Connection {
                conn,
                info,
                early_data,
            } if info.transport == Transport::Utp => self.start_stream(conn, info, early_data),
            Event::Connection {
                conn,
                info,
                early_data,
            } => {
                let Some(hs) = self.held.remove(&conn) else {
                    tracing::warn!(?conn, "connection without a socket");
                    return;
                };
                if let Some(live) = self.live.get_mut(&conn) {
                    if let Ok(socket) = socket2::SockRef::from(&hs.stream).try_clone() {
                        live.owner = Owner::Application(socket.into());
                    }
                }
                let connection = Connection::new(
                    hs.stream,
                    early_data,
                    hs.unsent,
                    info,
                    conn,
                    self.report_tx.clone(),
                );
                let _ = self.events.send(SwarmEvent::Connection(connection));
            }
            event => {
                match &event {
                    Event::Handshaking { conn, info } => {
                        if let Some(live) = self.live.get_mut(conn) {
                            live.reported = true;
                        }
                        self.start_external(*conn, info.clone());
                    }
                    Event::ConnectionClosed { conn, .. } => {
                        self.live.remove(conn);
                    }
                    _ => {}
                }
                let _ = self.events.send(SwarmEvent::Event { event, local_port });
            }
        }
    }

    /// Hands a uTP connection to the application: its bytes go through a bridge the driver
    /// services on the core's readiness notices and on the application's pokes.
    fn start_stream(&mut self, conn: ConnId, info: swarm_core::ConnInfo, early_data: Bytes) {
        let reports = self.report_tx.clone();
        let bridge = Bridge::new(Box::new(move || {
            let _ = reports.send(Report::Stream(conn));
        }));
        let port = self.core.port().unwrap_or_default();
        let local = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port));
        let connection = Connection::utp(
            bridge.clone(),
            local,
            early_data,
            info,
            conn,
            self.report_tx.clone(),
        );
        self.utp_streams.insert(conn, bridge);
        self.pump_stream(conn);
        let _ = self.events.send(SwarmEvent::Connection(connection));
    }

    /// Moves bytes between a uTP connection's bridge and the core, as far as both allow.
    fn pump_stream(&mut self, conn: ConnId) {
        use swarm_core::StreamError;
        let Some(bridge) = self.utp_streams.get(&conn).cloned() else {
            return;
        };
        let now = self.now();
        let mut state = bridge.lock();
        Bridge::clear_poke(&mut state);
        while !state.outbound.is_empty() && !state.closed {
            match self.core.stream_write(now, conn, &state.outbound) {
                Ok(n) => state.outbound.advance(n),
                Err(StreamError::WouldBlock) => break,
                Err(_) => state.closed = true,
            }
        }
        if state.closed {
            state.outbound.clear();
        }
        if state.shutdown && !state.dropped && state.outbound.is_empty() && !state.closed {
            // Idempotent in the core: the FIN is queued once.
            let _ = self.core.stream_shutdown(now, conn);
        }
        while !state.dropped && !state.eof && !state.closed && state.inbound.len() < INBOUND_CAP {
            let room = (INBOUND_CAP - state.inbound.len()).min(self.datagram_buf.len());
            match self
                .core
                .stream_read(now, conn, &mut self.datagram_buf[..room])
            {
                Ok(0) => state.eof = true,
                Ok(n) => state.inbound.extend_from_slice(&self.datagram_buf[..n]),
                Err(StreamError::WouldBlock) => break,
                Err(_) => state.closed = true,
            }
        }
        Bridge::wake(&mut state);
        let released = state.dropped && (state.outbound.is_empty() || state.closed);
        drop(state);
        if released {
            // The FIN follows what the core still has queued.
            self.utp_streams.remove(&conn);
            let _ = self.core.disconnect(now, conn);
        }
    }

    fn start_external(&mut self, conn: ConnId, info: swarm_core::ConnInfo) {
        let Some(handshake) = self.external.clone() else {
            return;
        };
        let Some(hs) = self.held.remove(&conn) else {
            return;
        };
        let reports = self.report_tx.clone();
        let task = tokio::spawn(async move {
            let result = handshake(hs.stream, info).await;
            let _ = reports.send(Report::Handshaken { conn, result });
        });
        if let Some(live) = self.live.get_mut(&conn) {
            live.owner = Owner::External(task.abort_handle());
        }
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
    }
}

fn event_conn(event: &Event) -> Option<ConnId> {
    match event {
        Event::Handshaking { conn, .. }
        | Event::HandshakeTimeout { conn, .. }
        | Event::HandshakeFailed { conn, .. }
        | Event::Connection { conn, .. }
        | Event::RedundantConnection { conn, .. }
        | Event::ConnectionClosed { conn, .. } => Some(*conn),
        _ => None,
    }
}

/// The next datagram on any of the open UDP sockets; `None` when a batched socket is
/// readable (the driver then takes what it holds with `take_batch`).
async fn recv(
    sockets: [(UdpSocket, Option<&Udp>); 3],
    buf: &mut [u8],
) -> (UdpSocket, Option<io::Result<(usize, SocketAddr)>>) {
    std::future::poll_fn(|cx| {
        for (kind, udp) in &sockets {
            let Some(udp) = udp else { continue };
            let socket = &udp.recv;
            if udp.batch.is_some() {
                if let std::task::Poll::Ready(ready) = socket.poll_recv_ready(cx) {
                    return std::task::Poll::Ready(match ready {
                        Ok(()) => (*kind, None),
                        Err(e) => (*kind, Some(Err(e))),
                    });
                }
                continue;
            }
            let mut read = tokio::io::ReadBuf::new(buf);
            if let std::task::Poll::Ready(result) = socket.poll_recv_from(cx, &mut read) {
                let received = result.map(|from| (read.filled().len(), from));
                return std::task::Poll::Ready((*kind, Some(received)));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// The unicast DNS client's socket: IPv4 (dns-discovery is), any port. Best effort, as mDNS.
fn open_dns_socket() -> Option<Udp> {
    let bound = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).and_then(Udp::new);
    match bound {
        Ok(udp) => Some(udp),
        Err(e) => {
            tracing::warn!(error = %e, "dns-discovery servers are off: cannot open a UDP socket");
            None
        }
    }
}

/// Binds dual-stack like Node (`::`), falling back to IPv4 where IPv6 is unavailable.
type Bound = (TcpListener, Option<Udp>, u16);

/// Binds TCP, and with `with_udp` UDP on the same port number, as Node does: when the UDP
/// port is taken and any port would do, both are tried again on a fresh port.
async fn bind(port: u16, with_udp: bool) -> io::Result<Bound> {
    const ATTEMPTS: usize = 16;
    for _ in 0..ATTEMPTS {
        let listener = bind_tcp(port).await?;
        let bound = listener.local_addr()?.port();
        if !with_udp {
            return Ok((listener, None, bound));
        }
        match std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, bound)) {
            Ok(udp) => {
                widen_buffers(&udp);
                return Ok((listener, Some(Udp::batched(udp)?), bound));
            }
            Err(e) if port != 0 => return Err(e),
            Err(_) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both TCP and UDP",
    ))
}

/// Kernel buffers for the swarm's UDP socket. One uTP connection keeps up to its 1 MiB window
/// in flight; the default receive buffer (about 200 KiB, ~90 full datagrams) overflows on
/// the first burst, and each loss costs a retransmission round. The kernel caps the request
/// at `net.core.rmem_max`/`wmem_max`; best effort.
fn widen_buffers(udp: &std::net::UdpSocket) {
    const UDP_BUFFER: usize = 4 << 20;
    let socket = socket2::SockRef::from(udp);
    if let Err(e) = socket.set_recv_buffer_size(UDP_BUFFER) {
        tracing::debug!(error = %e, "cannot widen the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(UDP_BUFFER) {
        tracing::debug!(error = %e, "cannot widen the UDP send buffer");
    }
}

/// Dual-stack like Node (`::`), falling back to IPv4 where IPv6 is unavailable.
async fn bind_tcp(port: u16) -> io::Result<TcpListener> {
    match TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, port)).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(e),
        Err(_) => TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await,
    }
}

fn write_unsent(hs: &mut Handshaking) -> io::Result<()> {
    while hs.unsent.has_remaining() {
        match hs.stream.try_write(&hs.unsent) {
            Ok(n) => hs.unsent.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn wait_ready(
    conn: ConnId,
    hs: Handshaking,
    reading: bool,
    mut cancelled: oneshot::Receiver<()>,
) -> (ConnId, Handshaking, bool) {
    let mut interest = if reading {
        Interest::READABLE
    } else {
        Interest::WRITABLE
    };
    if reading && hs.unsent.has_remaining() {
        interest = interest.add(Interest::WRITABLE);
    }
    let was_cancelled = tokio::select! {
        biased;
        _ = &mut cancelled => true,
        _ = hs.stream.ready(interest) => false,
    };
    (conn, hs, was_cancelled)
}
