//! `cargo xtask conformance`: the fake server held against a throwaway real PostgreSQL, fault by fault, with the same client scripts (raw protocol reads and tokio-postgres) against both; any difference a pool could observe fails.
//!
//! What is compared, per fault and script: the backend messages in the
//! order the client read them and where the stream ended (FIN, reset, or
//! still open), the ErrorResponse's severity, SQLSTATE and message, the
//! names of the ParameterStatus messages of the handshake, and what
//! tokio-postgres reports (connect, the connection's end, the next query).
//! Not compared, because no pool can rely on them: how TCP split the bytes
//! into reads (shown), parameter values such as `server_version`, process
//! ids, and the ErrorResponse fields that locate the server's source (F, L,
//! R), which the fake does not send.
//!
//! Timing: each script waits for the server's side to be in the state it
//! needs (a backend idle in `pg_stat_activity`, a handshake read), never
//! for a fixed time; every wait is bounded, and the whole run too.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use pool_netsim::loopback::LoopbackHost;
use pool_netsim::{CloseReason, ConnectFault, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout};

use crate::pgcluster::PgCluster;

/// Hold the fake PostgreSQL server against a real one: start a throwaway
/// PostgreSQL 15 cluster on loopback (initdb in a temporary directory as
/// the `postgres` user, a free port; stopped and removed at the end, also
/// on failure), run the same client scripts against it and against the
/// fake server on real TCP for every fault the fake models, print the
/// table, and fail (exit 1) on any difference a pool could observe.
#[derive(clap::Args)]
pub struct Args {
    /// Print every script's reads, also where real and fake agree.
    #[arg(long)]
    verbose: bool,
}

/// How long a script waits for the server to act (a FATAL, a FIN).
const WAIT: Duration = Duration::from_secs(5);
/// The whole run, both servers, every fault.
const OVERALL: Duration = Duration::from_secs(100);
/// The idle_session_timeout both servers get for the 57P05 fault.
const IDLE_TIMEOUT: Duration = Duration::from_millis(500);

/// ParameterStatus values that differ between any two servers (version,
/// time zone of the machine): their names are compared, not their values.
const UNCOMPARED_VALUES: &[&str] = &["server_version", "TimeZone"];

/// Roles the scripts use (created on the real cluster; the fake takes any).
const ROLE: &str = "conf_user";
const ROLE_IDLE: &str = "conf_idle";
const ROLE_LIMITED: &str = "conf_limited";

pub fn run(args: Args) -> i32 {
    #[allow(clippy::disallowed_methods)] // wall time, reported only
    let started = std::time::Instant::now();
    let Some(cluster) = PgCluster::start_for("conformance") else {
        return 1;
    };
    let Some(runtime) = crate::tokio_runtime(None) else {
        return 1;
    };
    let code = runtime.block_on(async {
        tokio::select! {
            code = timeout(OVERALL, compare_all(&cluster, args.verbose)) => code.unwrap_or_else(|_| {
                eprintln!("error: the conformance run took longer than {OVERALL:?}; stopped");
                1
            }),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted; stopping the throwaway cluster");
                130
            }
        }
    });
    drop(runtime);
    drop(cluster);
    println!(
        "conformance: done in {:.1}s (cluster stopped and removed)",
        started.elapsed().as_secs_f64()
    );
    code
}

/// The faults the fake server claims to model, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Terminate,
    TerminateMidQuery,
    IdleSession,
    RoleLimit,
    TerminateAll,
    Restart,
    Crash,
    ReadyThenFin,
}

impl Fault {
    const ALL: [Fault; 8] = [
        Fault::Terminate,
        Fault::TerminateMidQuery,
        Fault::IdleSession,
        Fault::RoleLimit,
        Fault::TerminateAll,
        Fault::Restart,
        Fault::Crash,
        Fault::ReadyThenFin,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Terminate => "pg_terminate_backend",
            Fault::TerminateMidQuery => "terminate during a query",
            Fault::IdleSession => "idle_session_timeout",
            Fault::RoleLimit => "role CONNECTION LIMIT",
            Fault::TerminateAll => "terminate every backend",
            Fault::Restart => "server restart",
            Fault::Crash => "crash (immediate stop)",
            Fault::ReadyThenFin => "ReadyForQuery, FATAL, FIN",
        }
    }

    fn real_action(self) -> &'static str {
        match self {
            Fault::Terminate => "pg_terminate_backend(pid) on an idle session",
            Fault::TerminateMidQuery => {
                "pg_terminate_backend(pid) once pg_stat_activity shows SELECT pg_sleep(5) active"
            }
            Fault::IdleSession => "ALTER ROLE .. SET idle_session_timeout = 500ms; wait idle",
            Fault::RoleLimit => "CREATE ROLE .. CONNECTION LIMIT 1; a second connect",
            Fault::TerminateAll => {
                "pg_terminate_backend of every client backend (3 raw, 2 tokio-postgres)"
            }
            Fault::Restart => "pg_ctl stop -m fast; connect while down; pg_ctl start",
            Fault::Crash => "pg_ctl stop -m immediate; connect while down; pg_ctl start",
            Fault::ReadyThenFin => {
                "the client does not read; pg_terminate_backend once the backend is idle after its handshake; then the client reads"
            }
        }
    }

    fn fake_action(self) -> &'static str {
        match self {
            Fault::Terminate => "Server::terminate_backend(pid)",
            Fault::TerminateMidQuery => {
                "Server::terminate_backend(pid) once the server counted the query"
            }
            Fault::IdleSession => "ServerConfig::idle_session_timeout = 500ms",
            Fault::RoleLimit => "ServerConfig::role_conn_limit = 1",
            Fault::TerminateAll => "Server::terminate_all()",
            Fault::Restart => "LoopbackHost::stop() then restart()",
            Fault::Crash => "LoopbackHost::crash() (Server::shutdown_immediate) then restart()",
            Fault::ReadyThenFin => "ConnectFault::ReadyThenFin (seed 001: one write, then FIN)",
        }
    }

    /// The fake server this fault runs against.
    fn fake_server(self) -> Server {
        let config = ServerConfig {
            idle_session_timeout: (self == Fault::IdleSession).then_some(IDLE_TIMEOUT),
            role_conn_limit: usize::from(self == Fault::RoleLimit),
            ..ServerConfig::default()
        };
        Server::with_plan(config, |info| {
            if info
                .application_name
                .as_deref()
                .is_some_and(|a| a.starts_with("conf-rtf"))
            {
                ConnectFault::ReadyThenFin
            } else {
                ConnectFault::Normal
            }
        })
    }
}

// --- what a client saw -------------------------------------------------

/// One thing a raw client read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Auth(i32),
    /// ParameterStatus: name and value.
    Param(String, String),
    KeyData,
    Ready(u8),
    Error {
        severity: String,
        code: String,
        message: String,
    },
    Notice {
        severity: String,
        code: String,
        message: String,
    },
    Other(u8),
    Fin,
    Reset(String),
    /// Nothing more arrived within [`WAIT`].
    StillOpen,
}

impl Seen {
    fn label(&self) -> String {
        match self {
            Seen::Auth(0) => "AuthenticationOk".to_owned(),
            Seen::Auth(n) => format!("Authentication({n})"),
            Seen::Param(..) => "ParameterStatus".to_owned(),
            Seen::KeyData => "BackendKeyData".to_owned(),
            Seen::Ready(s) => format!("ReadyForQuery({})", char::from(*s)),
            Seen::Error { severity, code, .. } => format!("ErrorResponse({severity} {code})"),
            Seen::Notice { severity, code, .. } => format!("NoticeResponse({severity} {code})"),
            Seen::Other(b'T') => "RowDescription".to_owned(),
            Seen::Other(b'D') => "DataRow".to_owned(),
            Seen::Other(b'C') => "CommandComplete".to_owned(),
            Seen::Other(tag) => format!("'{}'", char::from(*tag)),
            Seen::Fin => "FIN".to_owned(),
            Seen::Reset(why) => format!("RESET({why})"),
            Seen::StillOpen => format!("(open after {}s)", WAIT.as_secs()),
        }
    }
}

/// A raw protocol client: sends the startup packet and records every read.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    /// The messages of each read, in order; the FIN is a read of its own.
    reads: Vec<Vec<Seen>>,
    ended: bool,
    pid: Option<i32>,
}

impl Raw {
    async fn connect(addr: SocketAddr, user: &str, app: &str) -> Result<Raw, String> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let mut body = BytesMut::new();
        body.put_i32(pool_netsim::pgwire::PROTOCOL_V3);
        for (k, v) in [
            ("user", user),
            ("database", "postgres"),
            ("application_name", app),
        ] {
            body.put_slice(k.as_bytes());
            body.put_u8(0);
            body.put_slice(v.as_bytes());
            body.put_u8(0);
        }
        body.put_u8(0);
        let mut packet = BytesMut::new();
        packet.put_i32(body.len() as i32 + 4);
        packet.put_slice(&body);
        stream
            .write_all(&packet)
            .await
            .map_err(|e| format!("send startup to {addr}: {e}"))?;
        Ok(Raw {
            stream,
            buf: BytesMut::new(),
            reads: Vec::new(),
            ended: false,
            pid: None,
        })
    }

    /// One read (or the end of the stream, or [`Seen::StillOpen`] at `deadline`).
    async fn read_once(&mut self, deadline: Instant) {
        let mut chunk = [0u8; 16 * 1024];
        let seen = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => {
                self.ended = true;
                vec![Seen::StillOpen]
            }
            Ok(Ok(0)) => {
                self.ended = true;
                vec![Seen::Fin]
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.decode()
            }
            Ok(Err(e)) => {
                self.ended = true;
                vec![Seen::Reset(format!("{:?}", e.kind()))]
            }
        };
        self.reads.push(seen);
    }

    fn decode(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while self.buf.len() >= 5 {
            let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
            let total = 1 + len.max(4) as usize;
            if self.buf.len() < total {
                break;
            }
            let mut msg = self.buf.split_to(total);
            let tag = msg[0];
            msg.advance(5);
            out.push(match tag {
                b'R' if msg.len() >= 4 => Seen::Auth(msg.get_i32()),
                b'S' => {
                    let name = cstr(&mut msg);
                    Seen::Param(name, cstr(&mut msg))
                }
                b'K' => {
                    if msg.len() >= 4 {
                        self.pid = Some(msg.get_i32());
                    }
                    Seen::KeyData
                }
                b'Z' if !msg.is_empty() => Seen::Ready(msg[0]),
                b'E' | b'N' => {
                    let (mut severity, mut code, mut message) =
                        (String::new(), String::new(), String::new());
                    while !msg.is_empty() && msg[0] != 0 {
                        let field = msg.get_u8();
                        let value = cstr(&mut msg);
                        match field {
                            b'V' => severity = value,
                            b'S' if severity.is_empty() => severity = value,
                            b'C' => code = value,
                            b'M' => message = value,
                            _ => {}
                        }
                    }
                    if tag == b'E' {
                        Seen::Error {
                            severity,
                            code,
                            message,
                        }
                    } else {
                        Seen::Notice {
                            severity,
                            code,
                            message,
                        }
                    }
                }
                other => Seen::Other(other),
            });
        }
        out
    }

    fn seen(&self) -> impl Iterator<Item = &Seen> {
        self.reads.iter().flatten()
    }

    /// Reads until the handshake's ReadyForQuery (or the stream ends).
    async fn until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        while !self.ended && !self.seen().any(|s| matches!(s, Seen::Ready(_))) {
            self.read_once(deadline).await;
        }
        if self.seen().any(|s| matches!(s, Seen::Ready(_))) {
            Ok(())
        } else {
            Err(format!("no ReadyForQuery: {}", self.render()))
        }
    }

    /// Reads until the stream ends, or [`WAIT`] passes with it open.
    async fn until_end(&mut self) {
        let deadline = Instant::now() + WAIT;
        while !self.ended {
            self.read_once(deadline).await;
        }
    }

    /// Sends a simple Query.
    async fn query(&mut self, sql: &str) -> Result<(), String> {
        let mut msg = BytesMut::new();
        msg.put_u8(b'Q');
        msg.put_i32(4 + sql.len() as i32 + 1);
        msg.put_slice(sql.as_bytes());
        msg.put_u8(0);
        self.stream
            .write_all(&msg)
            .await
            .map_err(|e| format!("send query: {e}"))
    }

    async fn terminate(mut self) {
        let _ = self.stream.write_all(b"X\0\0\0\x04").await;
    }

    /// The messages, reads separated by ` | `, runs of ParameterStatus counted.
    fn render(&self) -> String {
        self.reads
            .iter()
            .filter(|r| !r.is_empty())
            .map(|read| collapse(read.iter()).join(", "))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// What is compared: the messages in order (reads joined), the
    /// ErrorResponse texts, and the ParameterStatus names.
    fn shape(&self) -> String {
        let mut shape = collapse(self.seen()).join(", ");
        for s in self.seen() {
            if let Seen::Error { message, .. } | Seen::Notice { message, .. } = s {
                shape.push_str(&format!(" / \"{message}\""));
            }
        }
        shape
    }

    /// The handshake's parameters, with the values a pool may act on
    /// (`default_transaction_read_only` and `in_hot_standby` decide
    /// `target_session_attrs`, `standard_conforming_strings` how to quote);
    /// the values that name the server, its clock or its build are left out.
    fn params(&self) -> BTreeSet<String> {
        self.seen()
            .filter_map(|s| match s {
                Seen::Param(name, _) if UNCOMPARED_VALUES.contains(&name.as_str()) => {
                    Some(name.clone())
                }
                Seen::Param(name, value) => Some(format!("{name}={value}")),
                _ => None,
            })
            .collect()
    }
}

fn cstr(buf: &mut BytesMut) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.advance((end + 1).min(buf.len()));
    s
}

fn collapse<'a>(seen: impl Iterator<Item = &'a Seen>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut params = 0;
    for s in seen {
        if matches!(s, Seen::Param(..)) {
            params += 1;
            continue;
        }
        if params > 0 {
            out.push(format!("ParameterStatus x{params}"));
            params = 0;
        }
        out.push(s.label());
    }
    if params > 0 {
        out.push(format!("ParameterStatus x{params}"));
    }
    out
}

/// A tokio-postgres client and its connection's end.
struct Tpg {
    client: tokio_postgres::Client,
    ended: Option<oneshot::Receiver<Result<(), tokio_postgres::Error>>>,
}

impl Tpg {
    async fn connect(addr: SocketAddr, user: &str, app: &str) -> Result<Tpg, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(addr.ip().to_string())
            .port(addr.port())
            .user(user)
            .dbname("postgres")
            .application_name(app)
            .connect_timeout(WAIT);
        let (client, connection) = timeout(WAIT, config.connect(tokio_postgres::NoTls))
            .await
            .map_err(|_| format!("connect: no answer within {}s", WAIT.as_secs()))?
            .map_err(|e| describe(&e))?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(connection.await);
        });
        Ok(Tpg {
            client,
            ended: Some(rx),
        })
    }

    /// How the connection task ended (waits up to [`WAIT`]).
    async fn ended(&mut self) -> String {
        let Some(rx) = self.ended.take() else {
            return "already awaited".to_owned();
        };
        match timeout(WAIT, rx).await {
            Err(_) => format!("still open after {}s", WAIT.as_secs()),
            Ok(Err(_)) => "connection task dropped".to_owned(),
            Ok(Ok(Ok(()))) => "ended without error".to_owned(),
            Ok(Ok(Err(e))) => format!("ended with {}", describe(&e)),
        }
    }

    async fn query(&self, sql: &str) -> String {
        match timeout(WAIT, self.client.simple_query(sql)).await {
            Err(_) => format!("no answer within {}s", WAIT.as_secs()),
            Ok(Ok(_)) => "ok".to_owned(),
            Ok(Err(e)) => describe(&e),
        }
    }

    async fn pid(&self) -> Result<i32, String> {
        let rows = self
            .client
            .simple_query("SELECT pg_backend_pid()")
            .await
            .map_err(|e| describe(&e))?;
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                _ => None,
            })
            .ok_or_else(|| "SELECT pg_backend_pid() returned no row".to_owned())
    }
}

/// A tokio-postgres error as a pool sees it: the server's error (severity,
/// SQLSTATE, message) or the client's own text.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} {} \"{}\"",
            db.severity(),
            db.code().code(),
            db.message()
        ),
        None => {
            let mut text = e.to_string();
            // The OS error numbers are not the server's doing.
            if let Some(source) = std::error::Error::source(e) {
                if let Some(io) = source.downcast_ref::<std::io::Error>() {
                    text = format!("{text} ({:?})", io.kind());
                }
            }
            text
        }
    }
}

// --- the two servers -----------------------------------------------------

/// The server a script runs against, and how it applies a fault.
enum Side<'a> {
    Real(&'a PgCluster),
    Fake(&'a LoopbackHost),
}

impl Side<'_> {
    fn addr(&self) -> SocketAddr {
        match self {
            Side::Real(c) => SocketAddr::from(([127, 0, 0, 1], c.port())),
            Side::Fake(h) => h.addr(),
        }
    }

    async fn admin(&self, sql: &str) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, String> {
        match self {
            Side::Real(cluster) => cluster.admin(sql).await,
            Side::Fake(_) => Err("the fake server has no admin session".to_owned()),
        }
    }

    async fn terminate_pid(&self, pid: i32) -> Result<(), String> {
        match self {
            Side::Real(_) => self
                .admin(&format!("SELECT pg_terminate_backend({pid})"))
                .await
                .map(drop),
            Side::Fake(h) => {
                if h.server().terminate_backend(pid as u64) {
                    Ok(())
                } else {
                    Err(format!("the fake server has no connection {pid}"))
                }
            }
        }
    }

    async fn terminate_all(&self) -> Result<(), String> {
        match self {
            Side::Real(_) => self
                .admin(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                )
                .await
                .map(drop),
            Side::Fake(h) => {
                h.server().terminate_all();
                Ok(())
            }
        }
    }

    async fn stop(&self) -> Result<(), String> {
        match self {
            Side::Real(c) => c.pg_stop("fast"),
            Side::Fake(h) => {
                h.stop().await;
                Ok(())
            }
        }
    }

    async fn crash(&self) -> Result<(), String> {
        match self {
            Side::Real(c) => c.pg_stop("immediate"),
            Side::Fake(h) => {
                h.crash().await;
                Ok(())
            }
        }
    }

    async fn start(&self) -> Result<(), String> {
        match self {
            Side::Real(c) => c.pg_start(),
            Side::Fake(h) => h.restart().await.map_err(|e| e.to_string()),
        }
    }

    /// Sessions with this application_name, as the server counts them.
    async fn count_app(&self, app: &str, state: Option<&str>) -> Result<usize, String> {
        let filter = state.map_or(String::new(), |s| format!(" AND state = '{s}'"));
        let rows = self
            .admin(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'{filter}"
            ))
            .await?;
        Ok(rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                _ => None,
            })
            .unwrap_or(0))
    }

    /// Waits until the session of `app` is running a query: on the real
    /// server, `pg_stat_activity` shows it active; the fake has no such
    /// view, so until it has counted `fake_queries` queries in all.
    async fn wait_active(&self, app: &str, fake_queries: u64) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let busy = match self {
                Side::Real(_) => self.count_app(app, Some("active")).await? > 0,
                Side::Fake(h) => h.server().stats().queries >= fake_queries,
            };
            if busy {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{app} was not running its query within {WAIT:?}"));
            }
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// Seed 001's fault without reading: on the real server, terminate the
    /// backend of `app` once it is idle after its handshake, and wait until
    /// it is gone; the fake did it in the handshake (its plan), so wait
    /// until it has closed that connection.
    async fn terminate_after_handshake(&self, app: &str) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        match self {
            Side::Real(_) => {
                while self.count_app(app, Some("idle")).await? == 0 {
                    if Instant::now() > deadline {
                        return Err(format!("no idle backend for {app} within {WAIT:?}"));
                    }
                    sleep(Duration::from_millis(10)).await;
                }
                self.admin(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
                ))
                .await?;
                while self.count_app(app, None).await? > 0 {
                    if Instant::now() > deadline {
                        return Err(format!(
                            "the backend for {app} did not exit within {WAIT:?}"
                        ));
                    }
                    sleep(Duration::from_millis(10)).await;
                }
            }
            Side::Fake(h) => {
                let closed = |h: &LoopbackHost| {
                    h.server()
                        .stats()
                        .closes
                        .get(&CloseReason::ReadyThenFin)
                        .copied()
                        .unwrap_or(0)
                };
                while closed(h) == 0 {
                    if Instant::now() > deadline {
                        return Err(format!("the fake did not close {app} within {WAIT:?}"));
                    }
                    sleep(Duration::from_millis(10)).await;
                }
            }
        }
        Ok(())
    }
}

// --- the scripts ---------------------------------------------------------

/// What one fault's scripts saw on one server.
#[derive(Default)]
struct Trace {
    /// (script, raw client)
    raw: Vec<(String, Raw)>,
    /// (script step, tokio-postgres outcome)
    tpg: Vec<(String, String)>,
}

async fn script(fault: Fault, side: &Side<'_>) -> Result<Trace, String> {
    let addr = side.addr();
    let mut t = Trace::default();
    match fault {
        Fault::Terminate => {
            let mut raw = Raw::connect(addr, ROLE, "conf-term").await?;
            raw.until_ready().await?;
            let pid = raw.pid.ok_or("no BackendKeyData")?;
            side.terminate_pid(pid).await?;
            raw.until_end().await;
            t.raw.push(("idle session".to_owned(), raw));

            let mut tp = Tpg::connect(addr, ROLE, "conf-term-tp").await?;
            let pid = tp.pid().await?;
            side.terminate_pid(pid).await?;
            t.tpg.push(("connection".to_owned(), tp.ended().await));
            t.tpg
                .push(("next query".to_owned(), tp.query("SELECT 1").await));
        }
        Fault::TerminateMidQuery => {
            let mut raw = Raw::connect(addr, ROLE, "conf-midq").await?;
            raw.until_ready().await?;
            let pid = raw.pid.ok_or("no BackendKeyData")?;
            raw.query("SELECT pg_sleep(5)").await?;
            side.wait_active("conf-midq", 1).await?;
            side.terminate_pid(pid).await?;
            raw.until_end().await;
            t.raw.push(("session in a query".to_owned(), raw));

            let mut tp = Tpg::connect(addr, ROLE, "conf-midq-tp").await?;
            let pid = tp.pid().await?;
            // The query and the termination run side by side in this task.
            let kill = async {
                // pg_backend_pid() was this session's first query on the fake.
                side.wait_active("conf-midq-tp", 3).await?;
                side.terminate_pid(pid).await
            };
            let (query, killed) = tokio::join!(tp.query("SELECT pg_sleep(5)"), kill);
            killed?;
            t.tpg.push(("the query".to_owned(), query));
            t.tpg.push(("connection".to_owned(), tp.ended().await));
            t.tpg
                .push(("next query".to_owned(), tp.query("SELECT 1").await));
        }
        Fault::IdleSession => {
            let mut raw = Raw::connect(addr, ROLE_IDLE, "conf-idle").await?;
            raw.until_ready().await?;
            raw.until_end().await;
            t.raw.push(("idle session".to_owned(), raw));

            let mut tp = Tpg::connect(addr, ROLE_IDLE, "conf-idle-tp").await?;
            t.tpg
                .push(("first query".to_owned(), tp.query("SELECT 1").await));
            t.tpg.push(("connection".to_owned(), tp.ended().await));
            t.tpg
                .push(("next query".to_owned(), tp.query("SELECT 1").await));
        }
        Fault::RoleLimit => {
            let mut first = Raw::connect(addr, ROLE_LIMITED, "conf-limit-1").await?;
            first.until_ready().await?;
            let mut second = Raw::connect(addr, ROLE_LIMITED, "conf-limit-2").await?;
            second.until_end().await;
            let tp = match Tpg::connect(addr, ROLE_LIMITED, "conf-limit-tp").await {
                Ok(_) => "connected".to_owned(),
                Err(e) => e,
            };
            t.tpg.push(("connect at the limit".to_owned(), tp));
            first.terminate().await;
            t.raw.push(("connect at the limit".to_owned(), second));
        }
        Fault::TerminateAll => {
            let mut raws = Vec::new();
            for i in 0..3 {
                let mut raw = Raw::connect(addr, ROLE, &format!("conf-all-{i}")).await?;
                raw.until_ready().await?;
                raws.push(raw);
            }
            let mut tps = Vec::new();
            for i in 0..2 {
                let tp = Tpg::connect(addr, ROLE, &format!("conf-all-tp{i}")).await?;
                let _ = tp.query("SELECT 1").await;
                tps.push(tp);
            }
            side.terminate_all().await?;
            for (i, mut raw) in raws.into_iter().enumerate() {
                raw.until_end().await;
                t.raw.push((format!("session {}", i + 1), raw));
            }
            for (i, tp) in tps.iter_mut().enumerate() {
                t.tpg
                    .push((format!("connection {}", i + 1), tp.ended().await));
                t.tpg
                    .push((format!("next query {}", i + 1), tp.query("SELECT 1").await));
            }
        }
        Fault::Restart | Fault::Crash => {
            let mut raw = Raw::connect(addr, ROLE, "conf-restart").await?;
            raw.until_ready().await?;
            let mut tp = Tpg::connect(addr, ROLE, "conf-restart-tp").await?;
            let _ = tp.query("SELECT 1").await;
            if fault == Fault::Crash {
                side.crash().await?;
            } else {
                side.stop().await?;
            }
            raw.until_end().await;
            t.raw.push(("idle session".to_owned(), raw));
            t.tpg.push(("connection".to_owned(), tp.ended().await));
            t.tpg
                .push(("next query".to_owned(), tp.query("SELECT 1").await));
            let down = match Tpg::connect(addr, ROLE, "conf-restart-down").await {
                Ok(_) => "connected".to_owned(),
                Err(e) => e,
            };
            t.tpg.push(("connect while down".to_owned(), down));
            side.start().await?;
            let up = match Tpg::connect(addr, ROLE, "conf-restart-up").await {
                Ok(tp) => tp.query("SELECT 1").await,
                Err(e) => e,
            };
            t.tpg.push(("connect and query once up".to_owned(), up));
        }
        Fault::ReadyThenFin => {
            let mut raw = Raw::connect(addr, ROLE, "conf-rtf").await?;
            side.terminate_after_handshake("conf-rtf").await?;
            raw.until_end().await;
            t.raw
                .push(("handshake, not read until closed".to_owned(), raw));
            if matches!(side, Side::Real(_)) {
                // tokio-postgres reads eagerly: on the real server the
                // termination comes after its handshake; on the fake, in it.
                let mut tp = Tpg::connect(addr, ROLE, "conf-rtf-tp").await?;
                side.terminate_after_handshake("conf-rtf-tp").await?;
                t.tpg.push(("connect".to_owned(), "connected".to_owned()));
                t.tpg.push(("connection".to_owned(), tp.ended().await));
                t.tpg
                    .push(("next query".to_owned(), tp.query("SELECT 1").await));
            } else {
                match Tpg::connect(addr, ROLE, "conf-rtf-tp").await {
                    Ok(mut tp) => {
                        t.tpg.push(("connect".to_owned(), "connected".to_owned()));
                        t.tpg.push(("connection".to_owned(), tp.ended().await));
                        t.tpg
                            .push(("next query".to_owned(), tp.query("SELECT 1").await));
                    }
                    Err(e) => t.tpg.push(("connect".to_owned(), e)),
                }
            }
        }
    }
    Ok(t)
}

/// One fault, both servers: the rows to print and whether they agree.
struct Compared {
    fault: Fault,
    real: Result<Trace, String>,
    fake: Result<Trace, String>,
}

impl Compared {
    /// Every difference a pool could observe, as lines.
    fn differences(&self) -> Vec<String> {
        let (real, fake) = match (&self.real, &self.fake) {
            (Ok(r), Ok(f)) => (r, f),
            (Err(e), _) => return vec![format!("the real server's script failed: {e}")],
            (_, Err(e)) => return vec![format!("the fake server's script failed: {e}")],
        };
        let mut diffs = Vec::new();
        for ((name, r), (_, f)) in real.raw.iter().zip(&fake.raw) {
            if r.shape() != f.shape() {
                diffs.push(format!(
                    "raw {name}: real {} ; fake {}",
                    r.shape(),
                    f.shape()
                ));
            }
            let (rp, fp) = (r.params(), f.params());
            if rp != fp {
                let missing: Vec<&String> = rp.difference(&fp).collect();
                let extra: Vec<&String> = fp.difference(&rp).collect();
                diffs.push(format!(
                    "raw {name}: ParameterStatus differs: the fake lacks {missing:?}, sends extra {extra:?}"
                ));
            }
        }
        if real.raw.len() != fake.raw.len() || real.tpg.len() != fake.tpg.len() {
            diffs.push("the scripts took different paths".to_owned());
        }
        for ((name, r), (_, f)) in real.tpg.iter().zip(&fake.tpg) {
            if r != f {
                diffs.push(format!("tokio-postgres {name}: real {r} ; fake {f}"));
            }
        }
        diffs
    }

    /// The first ErrorResponse (or NoticeResponse) a raw client read:
    /// (severity, code, message).
    fn error_of(trace: &Result<Trace, String>) -> Option<(String, String, String)> {
        trace.as_ref().ok()?.raw.iter().find_map(|(_, raw)| {
            raw.seen().find_map(|s| match s {
                Seen::Error {
                    severity,
                    code,
                    message,
                }
                | Seen::Notice {
                    severity,
                    code,
                    message,
                } => Some((severity.clone(), code.clone(), message.clone())),
                _ => None,
            })
        })
    }

    /// The order of messages after the handshake's ReadyForQuery (or all,
    /// if none), as the first raw client read them.
    fn order_of(trace: &Result<Trace, String>) -> String {
        let Some((_, raw)) = trace.as_ref().ok().and_then(|t| t.raw.first()) else {
            return "-".to_owned();
        };
        let all: Vec<&Seen> = raw.seen().collect();
        let from = all
            .iter()
            .position(|s| matches!(s, Seen::Ready(_)))
            .map_or(0, |i| i);
        let short = |s: &Seen| match s {
            Seen::Ready(_) => "Z".to_owned(),
            Seen::Auth(0) => "AuthOk".to_owned(),
            Seen::Error { severity, .. } => format!("E({severity})"),
            Seen::Notice { severity, .. } => format!("N({severity})"),
            Seen::Fin => "FIN".to_owned(),
            Seen::Other(b'T') => "T".to_owned(),
            other => other.label(),
        };
        all[from..]
            .iter()
            .map(|s| short(s))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

async fn compare_all(cluster: &PgCluster, verbose: bool) -> i32 {
    let real_side = Side::Real(cluster);
    let setup = format!(
        "CREATE ROLE {ROLE} LOGIN; \
         CREATE ROLE {ROLE_IDLE} LOGIN; \
         ALTER ROLE {ROLE_IDLE} SET idle_session_timeout = '{}ms'; \
         CREATE ROLE {ROLE_LIMITED} LOGIN CONNECTION LIMIT 1",
        IDLE_TIMEOUT.as_millis()
    );
    if let Err(e) = real_side.admin(&setup).await {
        eprintln!("error: setting up roles on the real cluster: {e}");
        return 1;
    }
    let version = real_side
        .admin("SHOW server_version")
        .await
        .ok()
        .and_then(|rows| {
            rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
        })
        .unwrap_or_else(|| "?".to_owned());
    println!(
        "conformance: real PostgreSQL {version} on 127.0.0.1:{}, the fake server on real TCP (a fresh one per fault)",
        cluster.port()
    );
    let mut results = Vec::new();
    for fault in Fault::ALL {
        let real = script(fault, &real_side).await;
        let fake = match LoopbackHost::start(fault.fake_server(), 0) {
            Ok(host) => {
                let r = script(fault, &Side::Fake(&host)).await;
                drop(host);
                r
            }
            Err(e) => Err(format!("cannot start the fake server: {e}")),
        };
        results.push(Compared { fault, real, fake });
    }

    let mut failed = 0;
    for c in &results {
        let diffs = c.differences();
        println!();
        println!(
            "== {} -- {}",
            c.fault.name(),
            if diffs.is_empty() {
                "same"
            } else {
                "DIFFERENT"
            }
        );
        println!("   real: {}", c.fault.real_action());
        println!("   fake: {}", c.fault.fake_action());
        if verbose || !diffs.is_empty() {
            for (label, trace) in [("real", &c.real), ("fake", &c.fake)] {
                match trace {
                    Ok(t) => {
                        for (name, raw) in &t.raw {
                            println!("   {label} raw {name}: {}", raw.render());
                        }
                        for (name, outcome) in &t.tpg {
                            println!("   {label} tokio-postgres {name}: {outcome}");
                        }
                    }
                    Err(e) => println!("   {label}: script failed: {e}"),
                }
            }
        } else if let Ok(t) = &c.real {
            // Agreeing: the real server's reads stand for both.
            for (name, raw) in t.raw.iter().take(1) {
                println!("   raw {name} (reads split by |): {}", raw.render());
            }
            for (name, outcome) in &t.tpg {
                println!("   tokio-postgres {name}: {outcome}");
            }
        }
        for d in &diffs {
            println!("   DIFF {d}");
        }
        if !diffs.is_empty() {
            failed += 1;
        }
    }

    println!();
    println!(
        "{:<26} {:<13} {:<13} {:<54} {:<24} verdict",
        "fault", "real", "fake", "message (real)", "after Z (real)"
    );
    for c in &results {
        let cell = |e: &Option<(String, String, String)>| {
            e.as_ref()
                .map_or("-".to_owned(), |(sev, code, _)| format!("{sev} {code}"))
        };
        let (re, fe) = (Compared::error_of(&c.real), Compared::error_of(&c.fake));
        let message = re.as_ref().map_or("-", |(_, _, m)| m.as_str());
        println!(
            "{:<26} {:<13} {:<13} {:<54} {:<24} {}",
            c.fault.name(),
            cell(&re),
            cell(&fe),
            message,
            Compared::order_of(&c.real),
            if c.differences().is_empty() {
                "same"
            } else {
                "DIFFERENT"
            }
        );
    }
    println!();
    if failed == 0 {
        println!(
            "conformance: all {} faults alike on both servers",
            results.len()
        );
        0
    } else {
        println!(
            "conformance: {failed} of {} faults differ in a way a pool could observe",
            results.len()
        );
        1
    }
}
