//! The fake PostgreSQL host: accepts TCP connections (turmoil's in a simulation, tokio's on real loopback), speaks enough of v3 for tokio-postgres, and injects the seed reports' faults.
//!
//! A [`Server`] is a cheap, cloneable handle. Run it as a turmoil host
//! (`sim.host("db", move || server.clone().run())`), or on a real socket
//! with [`Server::serve`] and a `tokio::net::TcpListener` (one
//! implementation, generic over the [`Listener`]), and keep a clone to
//! observe it ([`Server::stats`], [`Server::connections`]) and to act on it
//! ([`Server::terminate_all`], [`Server::set_plan`]) from a client host or
//! from the test between `sim.step()`s.
//!
//! What it does per connection:
//! 1. reads the startup packet (answering SSLRequest/GSSENCRequest with `N`);
//! 2. asks the caller's fault plan for a [`ConnectFault`] (the plan sees a
//!    [`ConnectInfo`]; the caller backs it with its own seeded RNG);
//! 3. applies the role connection limit: a role already at
//!    `role_conn_limit` sessions gets FATAL 53300, whatever the plan said;
//! 4. for a normal session: the handshake in one write, then simple queries
//!    until Terminate, EOF, idle-session kill (FATAL 57P05) or
//!    [`Server::terminate_all`] (FATAL 57P01).
//!
//! Determinism: no randomness, no wall clock (only tokio time, which turmoil
//! drives), BTreeMaps for everything iterated; process ids are the accept
//! sequence number.
//!
//! Counting: a connection is a *session* (counted per role and against the
//! role limit) from the moment it is admitted with [`ConnectFault::Normal`]
//! until the server decides to close it (before the closing write, so a
//! client that sees the FATAL never sees its old session still counted).
//! Hung, refused and ReadyThenFin connections are never sessions; they show
//! in `connections_open` while the server holds their socket.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::pgwire::{
    self, Backend, Column, Frontend, INT4_OID, Severity, TEXT_OID, TxStatus, VOID_OID, WireError,
    sqlstate,
};

/// Message of FATAL 57P01.
pub const ADMIN_SHUTDOWN_MESSAGE: &str = "terminating connection due to administrator command";
/// Message of the WARNING 57P01 PostgreSQL's immediate shutdown sends.
pub const IMMEDIATE_SHUTDOWN_MESSAGE: &str =
    "terminating connection due to immediate shutdown command";
/// Message of FATAL 57P05.
pub const IDLE_SESSION_MESSAGE: &str = "terminating connection due to idle-session timeout";

/// Server settings. `Default` gives port 5432, no role limit, no idle kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind (`0.0.0.0` by default; use `::` in an IPv6 sim).
    pub bind_ip: IpAddr,
    /// TCP port to listen on.
    pub port: u16,
    /// Sessions allowed per role (the startup `user`); 0 means no limit.
    pub role_conn_limit: usize,
    /// Kill a session that stays idle (outside a transaction) this long.
    /// `None` disables it (PostgreSQL's `idle_session_timeout = 0`).
    pub idle_session_timeout: Option<Duration>,
    /// After its closing write and FIN, the server keeps reading (and
    /// discarding) for up to this long, until the client's FIN, before it
    /// drops the socket. Without it, turmoil sends a RST when unread client
    /// bytes are pending, and a RST may overtake (and discard) the FATAL.
    pub linger: Duration,
    /// The `server_version` ParameterStatus.
    pub server_version: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 5432,
            role_conn_limit: 0,
            idle_session_timeout: None,
            linger: Duration::from_secs(1),
            server_version: "16.0 (pool-netsim)".to_owned(),
        }
    }
}

/// What the fault plan sees for each new connection, after its startup packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// Accept sequence number (1, 2, ...); also the BackendKeyData process id.
    pub conn_id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The startup `user`.
    pub role: String,
    /// The startup `database`, if sent.
    pub database: Option<String>,
    /// The startup `application_name`, if sent.
    pub application_name: Option<String>,
    /// Sessions this role has open right now (before this one).
    pub role_sessions: usize,
}

/// How the server treats a new connection. Chosen by the caller's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnectFault {
    /// A normal session.
    Normal,
    /// Read the startup packet, then never answer (until the client leaves
    /// or [`Server::terminate_all`]).
    Hang,
    /// Complete the handshake and, in the same write as ReadyForQuery, send
    /// FATAL 57P01; then FIN (Bun's FIN-in-one-tick race).
    ReadyThenFin,
    /// Refuse as if the role were at its connection limit: AuthenticationOk
    /// then FATAL 53300 in one write, then FIN. The role limit produces this
    /// too, whatever the plan says.
    RefuseRole,
}

impl ConnectFault {
    /// The fault counter this connect fault bumps (`None` for `Normal`).
    pub fn kind(self) -> Option<FaultKind> {
        match self {
            ConnectFault::Normal => None,
            ConnectFault::Hang => Some(FaultKind::Hang),
            ConnectFault::ReadyThenFin => Some(FaultKind::ReadyThenFin),
            ConnectFault::RefuseRole => Some(FaultKind::RefuseRole),
        }
    }
}

/// A fault that fired, as counted in [`ServerStats::faults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A connect answered with [`ConnectFault::Hang`].
    Hang,
    /// A connect answered with [`ConnectFault::ReadyThenFin`].
    ReadyThenFin,
    /// A connect refused with 53300 (by the plan or by the role limit).
    RefuseRole,
    /// A session killed by the idle-session timeout (57P05).
    IdleKill,
    /// A connection closed by [`Server::terminate_all`] (57P01).
    Terminated,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Hang => "hang",
            FaultKind::ReadyThenFin => "ready-then-fin",
            FaultKind::RefuseRole => "refuse-role",
            FaultKind::IdleKill => "idle-kill",
            FaultKind::Terminated => "terminated",
        })
    }
}

/// Why the server let go of a connection, as counted in [`ServerStats::closes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CloseReason {
    /// The client sent Terminate.
    ClientTerminate,
    /// The client closed its side (EOF) without Terminate.
    ClientEof,
    /// A read or write failed (reset by the peer, broken pipe).
    Reset,
    /// The client broke the protocol (FATAL 08P01 or 0A000 version).
    ProtocolError,
    /// The startup packet had no `user` (FATAL 28000).
    NoUser,
    /// A CancelRequest connection (closed without a reply; cancel is not implemented).
    CancelRequest,
    /// Refused with 53300.
    RefusedRole,
    /// Closed right after the handshake by [`ConnectFault::ReadyThenFin`].
    ReadyThenFin,
    /// Killed by the idle-session timeout.
    IdleKill,
    /// Killed by [`Server::terminate_all`].
    Terminated,
    /// Its task was dropped (the host crashed or the runtime went away).
    Dropped,
}

/// Where a connection is in its life, as shown by [`Server::connections`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Accepted, startup packet not yet handled.
    Startup,
    /// Held by [`ConnectFault::Hang`].
    Hanging,
    /// An admitted session (counted per role).
    Session,
    /// The server has decided to close it (closing write, FIN, linger).
    Closing,
}

/// One connection the server holds: checkers map a pool's handed-out
/// connection to its session through `peer` (the client socket's address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSnapshot {
    /// Accept sequence number (= backend process id).
    pub conn_id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Where it is.
    pub phase: Phase,
    /// The startup `user`, once read.
    pub role: Option<String>,
}

/// A snapshot of the server's counters, for checkers. Maps leave out zeros.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted since the server was created.
    pub accepted: u64,
    /// Sockets the server holds right now, in any phase.
    pub connections_open: usize,
    /// Connections held by `Hang` right now.
    pub hanging: usize,
    /// Sessions open right now (all roles).
    pub sessions_open: usize,
    /// Sessions open right now, per role.
    pub sessions_by_role: BTreeMap<String, usize>,
    /// Sessions open right now, per `application_name` (sessions without one
    /// are not listed).
    pub sessions_by_application: BTreeMap<String, usize>,
    /// The most sessions each role has had open at once.
    pub peak_sessions_by_role: BTreeMap<String, usize>,
    /// Sessions admitted (handshakes completed with `Normal`).
    pub sessions_started: u64,
    /// Simple Query messages received.
    pub queries: u64,
    /// Faults fired, per kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Connections let go, per reason.
    pub closes: BTreeMap<CloseReason, u64>,
}

impl ServerStats {
    /// Sessions `role` has open (0 if none).
    pub fn sessions_of_role(&self, role: &str) -> usize {
        self.sessions_by_role.get(role).copied().unwrap_or(0)
    }

    /// How often `kind` fired (0 if never).
    pub fn fault_count(&self, kind: FaultKind) -> u64 {
        self.faults.get(&kind).copied().unwrap_or(0)
    }
}

/// The caller's per-connection fault decision. Any
/// `FnMut(&ConnectInfo) -> ConnectFault + Send` is one.
///
/// The plan runs with the plan slot locked: it may read [`Server::stats`],
/// but must not call [`Server::set_plan`].
pub type FaultPlan = Box<dyn FnMut(&ConnectInfo) -> ConnectFault + Send>;

/// A listening socket the server accepts from. The server is one
/// implementation for both transports, so what the conformance run measures
/// on real TCP is what the simulations run.
pub trait Listener {
    /// The accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;
    /// The next connection and its peer's address.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>>;
}

impl Listener for turmoil::net::TcpListener {
    type Stream = turmoil::net::TcpStream;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> {
        turmoil::net::TcpListener::accept(self)
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> {
        tokio::net::TcpListener::accept(self)
    }
}

/// Handle to the fake PostgreSQL server. Clones share one server.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config())
            .field("stats", &self.stats())
            .finish()
    }
}

struct Shared {
    state: Mutex<State>,
    plan: Mutex<FaultPlan>,
}

struct State {
    config: ServerConfig,
    next_conn_id: u64,
    accepted: u64,
    sessions_started: u64,
    queries: u64,
    conns: BTreeMap<u64, ConnEntry>,
    peak_by_role: BTreeMap<String, usize>,
    faults: BTreeMap<FaultKind, u64>,
    closes: BTreeMap<CloseReason, u64>,
}

struct ConnEntry {
    peer: SocketAddr,
    phase: Phase,
    role: Option<String>,
    application_name: Option<String>,
    /// Set by `terminate_all`; the task sees it at its next wake-up.
    terminate: bool,
    /// With `terminate`: as PostgreSQL's immediate shutdown, a WARNING
    /// notice instead of the FATAL.
    immediate: bool,
    /// Wakes the connection's task to terminate (only `terminate_all`
    /// notifies it, after setting `terminate`).
    wake: Arc<Notify>,
}

impl State {
    fn role_sessions(&self, role: &str) -> usize {
        self.conns
            .values()
            .filter(|c| c.phase == Phase::Session && c.role.as_deref() == Some(role))
            .count()
    }

    fn bump_fault(&mut self, kind: FaultKind) {
        *self.faults.entry(kind).or_insert(0) += 1;
    }
}

impl Server {
    /// A server whose every connect is [`ConnectFault::Normal`].
    pub fn new(config: ServerConfig) -> Server {
        Server::with_plan(config, |_: &ConnectInfo| ConnectFault::Normal)
    }

    /// A server that asks `plan` how to treat each new connection.
    pub fn with_plan(
        config: ServerConfig,
        plan: impl FnMut(&ConnectInfo) -> ConnectFault + Send + 'static,
    ) -> Server {
        Server {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    config,
                    next_conn_id: 1,
                    accepted: 0,
                    sessions_started: 0,
                    queries: 0,
                    conns: BTreeMap::new(),
                    peak_by_role: BTreeMap::new(),
                    faults: BTreeMap::new(),
                    closes: BTreeMap::new(),
                }),
                plan: Mutex::new(Box::new(plan)),
            }),
        }
    }

    // --- getters -------------------------------------------------------

    /// The current settings.
    pub fn config(&self) -> ServerConfig {
        self.state().config.clone()
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> ServerStats {
        let st = self.state();
        let mut stats = ServerStats {
            accepted: st.accepted,
            connections_open: st.conns.len(),
            sessions_started: st.sessions_started,
            queries: st.queries,
            peak_sessions_by_role: st.peak_by_role.clone(),
            faults: st.faults.clone(),
            closes: st.closes.clone(),
            ..ServerStats::default()
        };
        for conn in st.conns.values() {
            match conn.phase {
                Phase::Hanging => stats.hanging += 1,
                Phase::Session => {
                    stats.sessions_open += 1;
                    if let Some(role) = &conn.role {
                        *stats.sessions_by_role.entry(role.clone()).or_insert(0) += 1;
                    }
                    if let Some(app) = &conn.application_name {
                        *stats
                            .sessions_by_application
                            .entry(app.clone())
                            .or_insert(0) += 1;
                    }
                }
                Phase::Startup | Phase::Closing => {}
            }
        }
        stats
    }

    /// Sessions admitted so far (cheaper than [`Server::stats`]: a checker
    /// looks again only when it moved).
    pub fn sessions_started(&self) -> u64 {
        self.state().sessions_started
    }

    /// Every connection the server holds, in accept order.
    pub fn connections(&self) -> Vec<ConnSnapshot> {
        self.state()
            .conns
            .iter()
            .map(|(&conn_id, c)| ConnSnapshot {
                conn_id,
                peer: c.peer,
                phase: c.phase,
                role: c.role.clone(),
            })
            .collect()
    }

    // --- actions -------------------------------------------------------

    /// Like `pg_terminate_backend` for every backend: each connection the
    /// server holds (sessions, hung and starting ones) gets FATAL 57P01 and
    /// is closed when its task next runs. Returns how many were signalled.
    pub fn terminate_all(&self) -> usize {
        let mut st = self.state();
        let mut signalled = 0;
        for conn in st.conns.values_mut() {
            if conn.phase != Phase::Closing && !conn.terminate {
                conn.terminate = true;
                conn.wake.notify_one();
                signalled += 1;
            }
        }
        signalled
    }

    /// Like PostgreSQL's immediate shutdown (`pg_ctl stop -m immediate`):
    /// each connection the server holds gets a NoticeResponse WARNING 57P01
    /// ("terminating connection due to immediate shutdown command") and is
    /// closed, in whatever state it is. Returns how many were signalled.
    pub fn shutdown_immediate(&self) -> usize {
        let mut st = self.state();
        let mut signalled = 0;
        for conn in st.conns.values_mut() {
            if conn.phase != Phase::Closing && !conn.terminate {
                conn.terminate = true;
                conn.immediate = true;
                conn.wake.notify_one();
                signalled += 1;
            }
        }
        signalled
    }

    /// Like `pg_terminate_backend(pid)`: the connection with this process id
    /// (its BackendKeyData, the accept number) gets FATAL 57P01 and is
    /// closed. Returns false if the server holds no such connection.
    pub fn terminate_backend(&self, pid: u64) -> bool {
        let mut st = self.state();
        match st.conns.get_mut(&pid) {
            Some(conn) if conn.phase != Phase::Closing && !conn.terminate => {
                conn.terminate = true;
                conn.wake.notify_one();
                true
            }
            _ => false,
        }
    }

    /// Replaces the fault plan (e.g. to heal faults for a liveness phase).
    pub fn set_plan(&self, plan: impl FnMut(&ConnectInfo) -> ConnectFault + Send + 'static) {
        *self.shared.plan.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(plan);
    }

    /// Binds the configured port and serves until the host is dropped.
    /// Use as a turmoil host: `sim.host("db", move || server.clone().run())`.
    pub async fn run(self) -> turmoil::Result {
        let (ip, port) = {
            let st = self.state();
            (st.config.bind_ip, st.config.port)
        };
        let listener = turmoil::net::TcpListener::bind((ip, port)).await?;
        self.serve(listener).await?;
        Ok(())
    }

    /// Serves every connection `listener` accepts, until dropped or an
    /// accept fails. The future is not `Send` (connections are polled in
    /// it, see below): on tokio, run it on a current-thread runtime.
    pub async fn serve<L: Listener>(self, listener: L) -> io::Result<()> {
        // Connections are served inside this future, kept by accept order,
        // not spawned as tasks: when the host crashes, tokio drops a
        // runtime's tasks in an order that follows its process-wide task
        // ids, each dropped socket sends a FIN whose latency turmoil draws
        // from the seeded RNG, and so a crash seed run a second time in one
        // process came out differently. Dropped with this future, the map
        // closes the sockets in accept order, the same in every run.
        let mut serving: BTreeMap<u64, Pin<Box<dyn Future<Output = ()>>>> = BTreeMap::new();
        loop {
            tokio::select! {
                biased;
                accepted = Listener::accept(&listener) => {
                    let (stream, peer) = accepted?;
                    let guard = self.register(peer);
                    serving.insert(guard.id, Box::pin(serve_connection(guard, stream)));
                }
                () = serve_all(&mut serving) => {}
            }
        }
    }

    // --- internals -----------------------------------------------------

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    fn register(&self, peer: SocketAddr) -> ConnGuard {
        let mut st = self.state();
        let id = st.next_conn_id;
        st.next_conn_id += 1;
        st.accepted += 1;
        let wake = Arc::new(Notify::new());
        st.conns.insert(
            id,
            ConnEntry {
                peer,
                phase: Phase::Startup,
                role: None,
                application_name: None,
                terminate: false,
                immediate: false,
                wake: wake.clone(),
            },
        );
        ConnGuard {
            shared: self.shared.clone(),
            id,
            peer,
            wake,
            closed: false,
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the server's counters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's membership in the server's table; removing it on drop
/// keeps the counts right even when the host crashes mid-session.
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    wake: Arc<Notify>,
    closed: bool,
}

impl ConnGuard {
    fn with_entry<R>(&self, f: impl FnOnce(&mut ConnEntry) -> R) -> Option<R> {
        self.shared.state().conns.get_mut(&self.id).map(f)
    }

    fn terminate_requested(&self) -> bool {
        self.with_entry(|c| c.terminate).unwrap_or(false)
    }

    /// What a terminated connection is told last: FATAL 57P01, or the
    /// immediate shutdown's WARNING.
    fn termination(&self) -> Backend {
        if self.with_entry(|c| c.immediate).unwrap_or(false) {
            Backend::NoticeResponse {
                severity: Severity::Warning,
                code: sqlstate::ADMIN_SHUTDOWN.to_owned(),
                message: IMMEDIATE_SHUTDOWN_MESSAGE.to_owned(),
            }
        } else {
            Backend::error(
                Severity::Fatal,
                sqlstate::ADMIN_SHUTDOWN,
                ADMIN_SHUTDOWN_MESSAGE,
            )
        }
    }

    /// Marks the connection closing and counts why (and the fault, if one).
    fn mark_closing(&mut self, reason: CloseReason) {
        let mut st = self.shared.state();
        if let Some(conn) = st.conns.get_mut(&self.id) {
            conn.phase = Phase::Closing;
        }
        *st.closes.entry(reason).or_insert(0) += 1;
        match reason {
            CloseReason::IdleKill => st.bump_fault(FaultKind::IdleKill),
            CloseReason::Terminated => st.bump_fault(FaultKind::Terminated),
            _ => {}
        }
        self.closed = true;
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut st = self.shared.state();
        st.conns.remove(&self.id);
        if !self.closed {
            *st.closes.entry(CloseReason::Dropped).or_insert(0) += 1;
        }
    }
}

/// What the reader saw next.
enum Event {
    Message(Frontend),
    Eof,
    IoError,
    Bad(WireError),
    Terminate,
    IdleTimeout,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Startup,
    Tagged,
}

struct Conn<S> {
    guard: ConnGuard,
    stream: S,
    rbuf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Waits for the next whole message, a termination, the idle deadline
    /// or the end of the stream. A pending termination wins over buffered
    /// input.
    async fn next(&mut self, framing: Framing, deadline: Option<Instant>) -> Event {
        loop {
            if self.guard.terminate_requested() {
                return Event::Terminate;
            }
            let decoded = match framing {
                Framing::Startup => pgwire::decode_startup(&mut self.rbuf),
                Framing::Tagged => pgwire::decode_message(&mut self.rbuf),
            };
            match decoded {
                Ok(Some(message)) => return Event::Message(message),
                Ok(None) => {}
                Err(e) => return Event::Bad(e),
            }
            self.rbuf.reserve(8 * 1024);
            let wake = self.guard.wake.clone();
            tokio::select! {
                biased;
                // Only `terminate_all` notifies, after setting the flag.
                _ = wake.notified() => return Event::Terminate,
                _ = sleep_until_opt(deadline) => return Event::IdleTimeout,
                read = self.stream.read_buf(&mut self.rbuf) => match read {
                    Ok(0) => return Event::Eof,
                    Ok(_) => {}
                    Err(_) => return Event::IoError,
                },
            }
        }
    }

    /// Sleeps until `until` unless terminated first (returns false then).
    async fn sleep_or_terminate(&mut self, until: Instant) -> bool {
        loop {
            if self.guard.terminate_requested() {
                return false;
            }
            let wake = self.guard.wake.clone();
            tokio::select! {
                biased;
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(until) => return true,
            }
        }
    }

    async fn write(&mut self, buf: &[u8]) -> bool {
        self.stream.write_all(buf).await.is_ok()
    }

    /// Marks the connection closing, sends `out` (if any) in one write,
    /// then FIN, lingers for the client's FIN, and drops the socket.
    async fn close(mut self, reason: CloseReason, out: BytesMut) {
        self.guard.mark_closing(reason);
        if !out.is_empty() && !self.write(&out).await {
            return;
        }
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let linger = self.guard.shared.state().config.linger;
        let drain = async {
            let mut sink = BytesMut::with_capacity(8 * 1024);
            loop {
                sink.clear();
                match self.stream.read_buf(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(linger, drain).await;
    }

    /// Closes with a single FATAL as the last write.
    async fn close_fatal(self, reason: CloseReason, code: &str, message: &str) {
        let out = pgwire::encode_all(&[Backend::error(Severity::Fatal, code, message)]);
        self.close(reason, out).await;
    }
}

/// Polls every connection in `serving`, in accept order, dropping those
/// that finished; never completes (the accept loop's other arm does).
fn serve_all(
    serving: &mut BTreeMap<u64, Pin<Box<dyn Future<Output = ()>>>>,
) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        serving.retain(|_, conn| conn.as_mut().poll(cx).is_pending());
        Poll::Pending
    })
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One connection, from accept to close.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(guard: ConnGuard, stream: S) {
    let mut conn = Conn {
        guard,
        stream,
        rbuf: BytesMut::new(),
    };

    // Startup packet (after any number of SSL/GSS requests, each refused).
    let (version, startup) = loop {
        match conn.next(Framing::Startup, None).await {
            Event::Message(startup @ Frontend::Startup { version, .. }) => {
                break (version, startup);
            }
            Event::Message(Frontend::SslRequest | Frontend::GssEncRequest) => {
                if !conn.write(b"N").await {
                    return conn.close(CloseReason::Reset, BytesMut::new()).await;
                }
            }
            Event::Message(Frontend::CancelRequest { .. }) => {
                return conn
                    .close(CloseReason::CancelRequest, BytesMut::new())
                    .await;
            }
            Event::Message(_) => {
                return conn
                    .close_fatal(
                        CloseReason::ProtocolError,
                        sqlstate::PROTOCOL_VIOLATION,
                        "invalid startup packet",
                    )
                    .await;
            }
            Event::Bad(e) => {
                return conn
                    .close_fatal(
                        CloseReason::ProtocolError,
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!("invalid startup packet: {e}"),
                    )
                    .await;
            }
            Event::Terminate => return terminate(conn).await,
            Event::Eof => return conn.close(CloseReason::ClientEof, BytesMut::new()).await,
            Event::IoError => return conn.close(CloseReason::Reset, BytesMut::new()).await,
            // No deadline is set before the startup packet.
            Event::IdleTimeout => {}
        }
    };
    if version >> 16 != 3 {
        let message = format!(
            "unsupported frontend protocol {}.{}: server supports 3.0",
            version >> 16,
            version & 0xffff
        );
        return conn
            .close_fatal(
                CloseReason::ProtocolError,
                sqlstate::FEATURE_NOT_SUPPORTED,
                &message,
            )
            .await;
    }
    let param = |name: &str| startup.param(name).map(str::to_owned);
    let Some(role) = param("user").filter(|r| !r.is_empty()) else {
        return conn
            .close_fatal(
                CloseReason::NoUser,
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
            .await;
    };
    let application_name = param("application_name");

    // Ask the plan, then admit under one lock so the role limit is exact.
    let info = {
        let mut st = conn.guard.shared.state();
        if let Some(entry) = st.conns.get_mut(&conn.guard.id) {
            entry.role = Some(role.clone());
            entry.application_name = application_name.clone();
        }
        ConnectInfo {
            conn_id: conn.guard.id,
            peer: conn.guard.peer,
            role: role.clone(),
            database: param("database"),
            application_name: application_name.clone(),
            role_sessions: st.role_sessions(&role),
        }
    };
    let planned = {
        let mut plan = conn
            .guard
            .shared
            .plan
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        plan(&info)
    };
    let fault = {
        let mut st = conn.guard.shared.state();
        let limit = st.config.role_conn_limit;
        let fault = if limit > 0 && st.role_sessions(&role) >= limit {
            ConnectFault::RefuseRole
        } else {
            planned
        };
        if let Some(kind) = fault.kind() {
            st.bump_fault(kind);
        }
        let phase = match fault {
            ConnectFault::Normal => Phase::Session,
            ConnectFault::Hang => Phase::Hanging,
            ConnectFault::ReadyThenFin | ConnectFault::RefuseRole => Phase::Closing,
        };
        if let Some(entry) = st.conns.get_mut(&conn.guard.id) {
            entry.phase = phase;
        }
        if fault == ConnectFault::Normal {
            st.sessions_started += 1;
            let open = st.role_sessions(&role);
            let peak = st.peak_by_role.entry(role.clone()).or_insert(0);
            *peak = (*peak).max(open);
        }
        fault
    };

    let handshake = || {
        let mut out = BytesMut::new();
        Backend::AuthenticationOk.encode(&mut out);
        let server_version = conn.guard.shared.state().config.server_version.clone();
        for (name, value) in [
            ("server_version", server_version.as_str()),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "off"),
            ("session_authorization", role.as_str()),
            // PostgreSQL 14+ reports these three too (`cargo xtask
            // conformance` found them missing); clients choose a server
            // for `target_session_attrs` by the first two.
            ("default_transaction_read_only", "off"),
            ("in_hot_standby", "off"),
            ("IntervalStyle", "postgres"),
            (
                "application_name",
                application_name.as_deref().unwrap_or(""),
            ),
        ] {
            Backend::ParameterStatus {
                name: name.to_owned(),
                value: value.to_owned(),
            }
            .encode(&mut out);
        }
        let id = conn.guard.id;
        Backend::BackendKeyData {
            process_id: id as i32,
            secret_key: (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as i32,
        }
        .encode(&mut out);
        Backend::ReadyForQuery(TxStatus::Idle).encode(&mut out);
        out
    };

    match fault {
        ConnectFault::Normal => {
            let out = handshake();
            if !conn.write(&out).await {
                return conn.close(CloseReason::Reset, BytesMut::new()).await;
            }
            session(conn, role).await;
        }
        ConnectFault::ReadyThenFin => {
            // One buffer, one write: ...ReadyForQuery, FATAL 57P01; then FIN.
            let mut out = handshake();
            Backend::error(
                Severity::Fatal,
                sqlstate::ADMIN_SHUTDOWN,
                ADMIN_SHUTDOWN_MESSAGE,
            )
            .encode(&mut out);
            conn.close(CloseReason::ReadyThenFin, out).await;
        }
        ConnectFault::RefuseRole => {
            // As PostgreSQL: authentication succeeds, then InitPostgres
            // finds the role at its limit.
            let out = pgwire::encode_all(&[
                Backend::AuthenticationOk,
                Backend::error(
                    Severity::Fatal,
                    sqlstate::TOO_MANY_CONNECTIONS,
                    &format!("too many connections for role \"{role}\""),
                ),
            ]);
            conn.close(CloseReason::RefusedRole, out).await;
        }
        ConnectFault::Hang => loop {
            // Read and ignore everything; never answer.
            match conn.next(Framing::Tagged, None).await {
                Event::Message(_) | Event::Bad(_) | Event::IdleTimeout => {
                    conn.rbuf.clear();
                }
                Event::Terminate => return terminate(conn).await,
                Event::Eof => return conn.close(CloseReason::ClientEof, BytesMut::new()).await,
                Event::IoError => return conn.close(CloseReason::Reset, BytesMut::new()).await,
            }
        },
    }
}

async fn terminate<S: AsyncRead + AsyncWrite + Unpin>(conn: Conn<S>) {
    let out = pgwire::encode_all(&[conn.guard.termination()]);
    conn.close(CloseReason::Terminated, out).await
}

/// An admitted session: simple queries until it ends.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(mut conn: Conn<S>, role: String) {
    let mut tx = TxStatus::Idle;
    // After an error in an extended-protocol message, skip until Sync.
    let mut skipping_to_sync = false;
    let mut last_activity = Instant::now();
    loop {
        let timeout = conn.guard.shared.state().config.idle_session_timeout;
        let deadline = match (tx, timeout) {
            (TxStatus::Idle, Some(t)) if !t.is_zero() => Some(last_activity + t),
            _ => None,
        };
        let event = conn.next(Framing::Tagged, deadline).await;
        let mut out = BytesMut::new();
        match event {
            Event::Message(Frontend::Query(sql)) => {
                conn.guard.shared.state().queries += 1;
                match run_query(&mut conn, &role, &sql, &mut tx, &mut out).await {
                    QueryEnd::Done => {
                        Backend::ReadyForQuery(tx).encode(&mut out);
                        if !conn.write(&out).await {
                            return conn.close(CloseReason::Reset, BytesMut::new()).await;
                        }
                    }
                    QueryEnd::Terminated => {
                        conn.guard.termination().encode(&mut out);
                        return conn.close(CloseReason::Terminated, out).await;
                    }
                }
            }
            Event::Message(Frontend::Sync) => {
                skipping_to_sync = false;
                Backend::ReadyForQuery(tx).encode(&mut out);
                if !conn.write(&out).await {
                    return conn.close(CloseReason::Reset, BytesMut::new()).await;
                }
            }
            Event::Message(Frontend::Terminate) => {
                return conn
                    .close(CloseReason::ClientTerminate, BytesMut::new())
                    .await;
            }
            // Flush: PostgreSQL answers nothing (it only pushes out what
            // it has buffered, and the fake writes every reply at once), in
            // or out of an extended batch. Bun.SQL 1.3.13 sends one after
            // an idle-session kill (`cargo xtask ecosystem bun --version
            // 1.3.13 --seed-000`); an error here failed its queries, which
            // no real server does.
            Event::Message(Frontend::Other { tag: b'H', .. }) => {}
            Event::Message(Frontend::Other { tag, .. }) => {
                let extended = matches!(tag, b'P' | b'B' | b'D' | b'E' | b'C');
                if !skipping_to_sync {
                    Backend::error(
                        Severity::Error,
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        &format!(
                            "message type '{}' is not supported by pool-netsim",
                            char::from(tag)
                        ),
                    )
                    .encode(&mut out);
                    if tx == TxStatus::InTransaction {
                        tx = TxStatus::Failed;
                    }
                }
                if extended {
                    skipping_to_sync = true;
                } else {
                    Backend::ReadyForQuery(tx).encode(&mut out);
                }
                if !out.is_empty() && !conn.write(&out).await {
                    return conn.close(CloseReason::Reset, BytesMut::new()).await;
                }
            }
            Event::Message(
                Frontend::Startup { .. }
                | Frontend::SslRequest
                | Frontend::GssEncRequest
                | Frontend::CancelRequest { .. },
            ) => unreachable!("tagged framing never yields startup-family messages"),
            Event::Bad(e) => {
                return conn
                    .close_fatal(
                        CloseReason::ProtocolError,
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!("invalid frontend message: {e}"),
                    )
                    .await;
            }
            Event::Terminate => return terminate(conn).await,
            Event::IdleTimeout => {
                return conn
                    .close_fatal(
                        CloseReason::IdleKill,
                        sqlstate::IDLE_SESSION_TIMEOUT,
                        IDLE_SESSION_MESSAGE,
                    )
                    .await;
            }
            Event::Eof => return conn.close(CloseReason::ClientEof, BytesMut::new()).await,
            Event::IoError => return conn.close(CloseReason::Reset, BytesMut::new()).await,
        }
        last_activity = Instant::now();
    }
}

enum QueryEnd {
    Done,
    Terminated,
}

/// Runs a simple query's statements, appending their responses (without
/// the final ReadyForQuery) to `out`. The first failing statement ends it.
async fn run_query<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    role: &str,
    sql: &str,
    tx: &mut TxStatus,
    out: &mut BytesMut,
) -> QueryEnd {
    let statements: Vec<&str> = split_statements(sql)
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if statements.is_empty() {
        Backend::EmptyQueryResponse.encode(out);
        return QueryEnd::Done;
    }
    for stmt in statements {
        let words: Vec<String> = stmt
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect();
        let first = words[0].as_str();
        let ends_tx = matches!(first, "COMMIT" | "END" | "ROLLBACK" | "ABORT");
        if *tx == TxStatus::Failed && !ends_tx {
            fail(
                out,
                tx,
                sqlstate::IN_FAILED_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            );
            return QueryEnd::Done;
        }
        let tag = match first {
            "SELECT" => {
                let items = match parse_select(stmt[6..].trim(), conn.guard.id, role) {
                    Ok(items) => items,
                    Err(msg) => {
                        fail(out, tx, sqlstate::FEATURE_NOT_SUPPORTED, &msg);
                        return QueryEnd::Done;
                    }
                };
                // As PostgreSQL: the RowDescription is sent as the executor
                // starts, before the row is computed, so a session killed in
                // pg_sleep sends it before its FATAL (conformance measured).
                Backend::RowDescription(items.iter().map(|i| i.column.clone()).collect())
                    .encode(out);
                for item in &items {
                    if let Some(d) = item.sleep {
                        if !conn.sleep_or_terminate(Instant::now() + d).await {
                            return QueryEnd::Terminated;
                        }
                    }
                }
                Backend::DataRow(items.into_iter().map(|i| i.value).collect()).encode(out);
                "SELECT 1".to_owned()
            }
            "LISTEN" | "UNLISTEN" | "NOTIFY" | "SET" | "RESET" => first.to_owned(),
            // deadpool-postgres's `Clean` recycling closes every cursor.
            "CLOSE" => "CLOSE CURSOR ALL".to_owned(),
            "DISCARD" => format!("DISCARD {}", words.get(1).map_or("", String::as_str)),
            "BEGIN" => {
                *tx = TxStatus::InTransaction;
                "BEGIN".to_owned()
            }
            "START" => {
                *tx = TxStatus::InTransaction;
                "START TRANSACTION".to_owned()
            }
            "COMMIT" | "END" => {
                let tag = if *tx == TxStatus::Failed {
                    "ROLLBACK"
                } else {
                    "COMMIT"
                };
                *tx = TxStatus::Idle;
                tag.to_owned()
            }
            "ROLLBACK" | "ABORT" => {
                *tx = TxStatus::Idle;
                "ROLLBACK".to_owned()
            }
            _ => {
                fail(
                    out,
                    tx,
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    &format!("statement not supported by pool-netsim: {stmt}"),
                );
                return QueryEnd::Done;
            }
        };
        Backend::CommandComplete(tag).encode(out);
    }
    QueryEnd::Done
}

fn fail(out: &mut BytesMut, tx: &mut TxStatus, code: &str, message: &str) {
    Backend::error(Severity::Error, code, message).encode(out);
    if *tx == TxStatus::InTransaction {
        *tx = TxStatus::Failed;
    }
}

/// Splits a simple query into statements on `;` outside quotes and parentheses.
fn split_statements(sql: &str) -> Vec<&str> {
    split_top_level(sql, b';')
}

/// Splits `s` on `sep` where it is outside single quotes and parentheses.
fn split_top_level(s: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut depth, mut quoted) = (0, 0i32, false);
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            _ if b == sep && !quoted && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

struct SelectItem {
    column: Column,
    value: Option<String>,
    sleep: Option<Duration>,
}

/// The SELECT list this server understands: integer and string literals,
/// NULL, `pg_backend_pid()`, `current_user`, `pg_sleep(seconds)`, each
/// with an optional `AS alias`. No FROM.
fn parse_select(list: &str, conn_id: u64, role: &str) -> Result<Vec<SelectItem>, String> {
    let mut items = Vec::new();
    if list.trim().is_empty() {
        return Err("empty select list".to_owned());
    }
    for raw in split_top_level(list, b',') {
        let raw = raw.trim();
        let (expr, alias) = split_alias(raw);
        let lower = expr.to_ascii_lowercase();
        let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
        let (name, type_oid, value, sleep) = if let Ok(n) = expr.parse::<i64>() {
            ("?column?", INT4_OID, Some(n.to_string()), None)
        } else if expr.len() >= 2 && expr.starts_with('\'') && expr.ends_with('\'') {
            let text = expr[1..expr.len() - 1].replace("''", "'");
            ("?column?", TEXT_OID, Some(text), None)
        } else if lower == "null" {
            ("?column?", TEXT_OID, None, None)
        } else if compact == "pg_advisory_unlock_all()" {
            // No advisory locks are ever held here.
            (
                "pg_advisory_unlock_all",
                VOID_OID,
                Some(String::new()),
                None,
            )
        } else if compact == "pg_backend_pid()" {
            ("pg_backend_pid", INT4_OID, Some(conn_id.to_string()), None)
        } else if matches!(compact.as_str(), "current_user" | "session_user" | "user") {
            ("current_user", TEXT_OID, Some(role.to_owned()), None)
        } else if let Some(arg) = compact
            .strip_prefix("pg_sleep(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let secs: f64 = arg
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("pg_sleep needs a non-negative number, got {arg}"))?;
            let sleep = Duration::from_secs_f64(secs);
            ("pg_sleep", VOID_OID, Some(String::new()), Some(sleep))
        } else {
            return Err(format!("select item not supported by pool-netsim: {expr}"));
        };
        items.push(SelectItem {
            column: Column {
                name: alias.unwrap_or(name).to_owned(),
                type_oid,
            },
            value,
            sleep,
        });
    }
    Ok(items)
}

/// `expr AS alias` -> (`expr`, Some(`alias`)); only an unquoted trailing alias.
fn split_alias(item: &str) -> (&str, Option<&str>) {
    let lower = item.to_ascii_lowercase();
    if let Some(at) = lower.rfind(" as ") {
        let alias = item[at + 4..].trim();
        if !alias.is_empty() && !alias.contains('\'') && !alias.contains(' ') {
            return (item[..at].trim(), Some(alias));
        }
    }
    (item, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_outside_quotes() {
        assert_eq!(
            split_statements("LISTEN a; SELECT 'x;y'; "),
            vec!["LISTEN a", " SELECT 'x;y'", " "]
        );
    }

    #[test]
    fn select_list() {
        let items = parse_select("1, 'it''s' AS s, pg_backend_pid(), NULL", 7, "app").unwrap();
        let got: Vec<(String, u32, Option<String>)> = items
            .into_iter()
            .map(|i| (i.column.name, i.column.type_oid, i.value))
            .collect();
        assert_eq!(
            got,
            vec![
                ("?column?".to_owned(), INT4_OID, Some("1".to_owned())),
                ("s".to_owned(), TEXT_OID, Some("it's".to_owned())),
                ("pg_backend_pid".to_owned(), INT4_OID, Some("7".to_owned())),
                ("?column?".to_owned(), TEXT_OID, None),
            ]
        );
        assert!(parse_select("now()", 1, "app").is_err());
        assert!(parse_select("", 1, "app").is_err());
        let sleep = parse_select("pg_sleep(1.5)", 1, "app").unwrap();
        assert_eq!(sleep[0].sleep, Some(Duration::from_millis(1500)));
    }
}
