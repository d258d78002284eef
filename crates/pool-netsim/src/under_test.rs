//! The one adapter shape for "a pool under test" in the network simulation: get within the pool's own timeout, return by drop, and the optional taint, detach, resize and close, each reported unsupported where a pool lacks it.
//!
//! An adapter is a thin translation: it builds the pool with its options
//! (drawn from the seed), connects through [`Sockets::dial`] so every
//! connection's socket is watched, and says which socket a handed-out
//! connection uses. Everything the checkers conclude comes from the server
//! and the sockets; the pool's own gauges are only compared with them.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use pool_sim::swarm::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use crate::socket::Sockets;

/// What a pool can do beyond get and return. The workload skips what is
/// unsupported (a taint becomes a plain return, a detach a hold until the
/// session ends, a close dropping every handle) and the summary says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub taint: bool,
    pub detach: bool,
    pub resize: bool,
    pub close: bool,
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "unsupported" };
        write!(
            f,
            "taint {}, detach {}, resize {}, close {}",
            yes_no(self.taint),
            yes_no(self.detach),
            yes_no(self.resize),
            yes_no(self.close)
        )
    }
}

/// The gauges a pool reports of itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gauges {
    /// Connections the pool counts as open (idle + borrowed; connects in
    /// flight excluded where the pool tells them apart).
    pub open: usize,
}

/// What every pool is built with; the rest of its options are its own.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The pool's role at the server (one per process).
    pub role: String,
    pub max_size: usize,
    pub min_idle: usize,
    /// How long a get may wait (the pool's own get, wait or connection
    /// timeout).
    pub get_timeout: Duration,
    pub sockets: Sockets,
}

/// A pool under test. Cheap to clone (every client holds a clone); dropping
/// every clone and every connection is the close of a pool that has none.
pub trait PoolUnderTest: Clone + Send + Sync + 'static {
    /// A handed-out connection: it goes back to the pool when dropped.
    type Conn: Send + Sync + 'static;
    /// The pool's own options, drawn from the seed and printed.
    type Options: Clone + Default + fmt::Debug + Serialize + Send + Sync + 'static;

    const KIND: PoolKind;
    const CAPABILITIES: Capabilities;

    /// Build the pool, inside its process host.
    fn build(setup: &Setup, options: &Self::Options) -> Self;

    /// The longest a get may take by the pool's own documented rules (its
    /// timeouts added up): past it plus the harness's bound, a get is
    /// `waiter-stalled`.
    fn get_bound(&self) -> Duration;

    /// A connection, or the pool's error as text.
    fn get(&self) -> impl Future<Output = Result<Self::Conn, String>> + Send;

    fn client(conn: &Self::Conn) -> &Client;

    /// The socket a handed-out connection uses (its local address).
    fn socket(&self, conn: &Self::Conn) -> Option<SocketAddr>;

    /// Return it broken. Unsupported: the connection is returned as is.
    fn taint(&self, conn: Self::Conn) {
        drop(conn);
    }

    /// Take it out of the pool for good; the value closes the connection
    /// when dropped. Unsupported: the connection comes back.
    fn detach(&self, conn: Self::Conn) -> Result<Box<dyn Send>, Self::Conn> {
        Err(conn)
    }

    /// Set the pool's maximum size; `false` if unsupported.
    fn resize(&self, _max_size: usize) -> bool {
        false
    }

    /// Close the pool and wait as long as the pool waits; what it reports
    /// leaked, if it reports it. `None` if the pool has no close.
    fn close(&self) -> impl Future<Output = Option<CloseOutcome>> + Send {
        async { None }
    }

    fn gauges(&self) -> Gauges;

    /// The pool's own consistency check, if it has one (an extra: the
    /// invariants never rest on it alone).
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// What a pool's close said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseOutcome {
    /// Connections still borrowed at the close's deadline, if the pool
    /// reports it.
    pub leaked: Option<usize>,
}

/// The pools the network simulation can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolKind {
    PoolTokio,
    Bb8,
    Deadpool,
}

impl PoolKind {
    pub const ALL: [PoolKind; 3] = [PoolKind::PoolTokio, PoolKind::Bb8, PoolKind::Deadpool];

    pub fn name(self) -> &'static str {
        match self {
            PoolKind::PoolTokio => "pool-tokio",
            PoolKind::Bb8 => "bb8",
            PoolKind::Deadpool => "deadpool",
        }
    }

    /// The pool's own options for `seed`: from a stream of their own, so
    /// the options every pool shares (and the faults) are the same whatever
    /// the pool.
    pub fn draw_options(self, seed: u64) -> PoolOptions {
        let mut rng = Rng::new(seed ^ (0x5bd1_e995 * (self as u64 + 1)));
        match self {
            PoolKind::PoolTokio => {
                PoolOptions::PoolTokio(crate::adapters::pool_tokio::draw(&mut rng))
            }
            PoolKind::Bb8 => PoolOptions::Bb8(crate::adapters::bb8::draw(&mut rng)),
            PoolKind::Deadpool => PoolOptions::Deadpool(crate::adapters::deadpool::draw(&mut rng)),
        }
    }

    pub fn capabilities(self) -> Capabilities {
        use crate::under_test::PoolUnderTest as P;
        match self {
            PoolKind::PoolTokio => <crate::adapters::pool_tokio::PoolTokio as P>::CAPABILITIES,
            PoolKind::Bb8 => <crate::adapters::bb8::Bb8 as P>::CAPABILITIES,
            PoolKind::Deadpool => <crate::adapters::deadpool::Deadpool as P>::CAPABILITIES,
        }
    }
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PoolKind {
    type Err = String;
    fn from_str(s: &str) -> Result<PoolKind, String> {
        PoolKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PoolKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown pool {s:?}; one of {}", names.join(", "))
            })
    }
}

/// One pool's own options, tagged with the pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "pool", rename_all = "kebab-case")]
pub enum PoolOptions {
    PoolTokio(crate::adapters::pool_tokio::Options),
    Bb8(crate::adapters::bb8::Options),
    Deadpool(crate::adapters::deadpool::Options),
}

impl PoolOptions {
    pub fn kind(&self) -> PoolKind {
        match self {
            PoolOptions::PoolTokio(_) => PoolKind::PoolTokio,
            PoolOptions::Bb8(_) => PoolKind::Bb8,
            PoolOptions::Deadpool(_) => PoolKind::Deadpool,
        }
    }
}

/// The fake server's address in every simulation.
pub const DB_HOST: &str = "db";
pub const DB_PORT: u16 = 5432;

/// A tokio-postgres connection over a watched turmoil socket.
#[derive(Debug)]
pub struct PgConnected {
    pub client: Client,
    pub local_addr: Option<SocketAddr>,
    /// The task that drives the connection (it ends when the connection
    /// does); aborting it drops the socket.
    pub task: JoinHandle<()>,
    /// Turns true when the connection task has ended.
    pub ended: watch::Receiver<bool>,
}

/// Aborts the connection task when dropped, as deadpool-postgres's
/// `ClientWrapper` does: a dropped client then drops its socket at once.
/// Left alone, tokio-postgres's task outlives its client while a request
/// is unanswered, and under turmoil a request lost in a partition is never
/// answered (no retransmission): the session would stay open for good.
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Dial the fake server for `role` and start a session (user and
/// application name are the role, so the server counts sessions per pool).
pub async fn connect_pg(
    sockets: &Sockets,
    role: &str,
) -> Result<PgConnected, tokio_postgres::Error> {
    let stream = sockets.dial(role, DB_HOST, DB_PORT).await;
    let local_addr = stream.local_addr();
    let mut config = tokio_postgres::Config::new();
    config.user(role).dbname("app").application_name(role);
    let (client, connection) = config.connect_raw(stream, NoTls).await?;
    let (tx, ended) = watch::channel(false);
    let task = tokio::spawn(async move {
        let _ = connection.await;
        let _ = tx.send(true);
    });
    Ok(PgConnected {
        client,
        local_addr,
        task,
        ended,
    })
}
