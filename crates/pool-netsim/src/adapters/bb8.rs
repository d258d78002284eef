//! bb8 0.9 under test, unmodified: a `ManageConnection` that connects with tokio-postgres `connect_raw` over a watched turmoil socket and checks as bb8-postgres does.
//!
//! bb8 reads the wall clock (`std::time::Instant`) for `retry_connection`,
//! `idle_timeout` and `max_lifetime`; under turmoil, where a simulated
//! second passes in microseconds of wall time, those would fire at random
//! or never. They are off: bb8's reaper, its lifetime retirement and its
//! connect retries are not tested here.
//!
//! One departure from bb8-postgres: a dropped connection aborts its
//! tokio-postgres task (as deadpool-postgres does) instead of leaving it to
//! finish. Under turmoil a request lost in a partition is never answered,
//! so a detached task would keep its socket, and the session, for good.

use std::net::SocketAddr;
use std::time::Duration;

use bb8::{ManageConnection, PooledConnection, QueueStrategy};
use pool_sim::swarm::Rng;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::socket::Sockets;
use crate::under_test::{
    AbortOnDrop, Capabilities, Gauges, PoolKind, PoolUnderTest, Setup, connect_pg,
};

/// bb8's own options, drawn from the seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Run `is_valid` (an empty query) before each hand-out.
    pub test_on_check_out: bool,
    /// bb8's timeout for a whole `get`; replaces the shared get timeout.
    pub connection_timeout_ms: u64,
    /// LIFO instead of FIFO.
    pub lifo: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            test_on_check_out: true,
            connection_timeout_ms: 3_000,
            lifo: false,
        }
    }
}

pub fn draw(rng: &mut Rng) -> Options {
    Options {
        test_on_check_out: rng.chance(70),
        connection_timeout_ms: rng.pick(&[1_000, 3_000]),
        lifo: rng.chance(30),
    }
}

/// bb8-postgres's manager, over turmoil: the same `is_valid` (an empty
/// simple query) and `has_broken` (the client is closed).
#[derive(Clone, Debug)]
pub struct TurmoilPg {
    role: String,
    sockets: Sockets,
}

/// A connection and its socket's address (a bb8-postgres connection is the
/// bare client; the address is what the checkers need).
#[derive(Debug)]
pub struct Bb8Conn {
    pub client: Client,
    pub local_addr: Option<SocketAddr>,
    _task: AbortOnDrop,
}

impl ManageConnection for TurmoilPg {
    type Connection = Bb8Conn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Bb8Conn, tokio_postgres::Error> {
        let connected = connect_pg(&self.sockets, &self.role).await?;
        Ok(Bb8Conn {
            client: connected.client,
            local_addr: connected.local_addr,
            _task: AbortOnDrop(connected.task),
        })
    }

    async fn is_valid(&self, conn: &mut Bb8Conn) -> Result<(), tokio_postgres::Error> {
        conn.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, conn: &mut Bb8Conn) -> bool {
        conn.client.is_closed()
    }
}

#[derive(Clone, Debug)]
pub struct Bb8 {
    pool: bb8::Pool<TurmoilPg>,
    connection_timeout: Duration,
}

impl PoolUnderTest for Bb8 {
    type Conn = PooledConnection<'static, TurmoilPg>;
    type Options = Options;

    const KIND: PoolKind = PoolKind::Bb8;
    // bb8 has no taint (a broken connection is dropped on return when
    // `has_broken` says so), no detach (`dedicated_connection` bypasses the
    // pool instead), no resize and no close.
    const CAPABILITIES: Capabilities = Capabilities {
        taint: false,
        detach: false,
        resize: false,
        close: false,
    };

    fn build(setup: &Setup, options: &Options) -> Bb8 {
        let manager = TurmoilPg {
            role: setup.role.clone(),
            sockets: setup.sockets.clone(),
        };
        let connection_timeout = Duration::from_millis(options.connection_timeout_ms);
        let pool = bb8::Pool::builder()
            .max_size(setup.max_size as u32)
            .min_idle((setup.min_idle > 0).then_some(setup.min_idle as u32))
            .test_on_check_out(options.test_on_check_out)
            .connection_timeout(connection_timeout)
            .queue_strategy(if options.lifo {
                QueueStrategy::Lifo
            } else {
                QueueStrategy::Fifo
            })
            // Wall-clock timers: off under turmoil (see the module doc).
            .retry_connection(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .build_unchecked(manager);
        Bb8 {
            pool,
            connection_timeout,
        }
    }

    fn get_bound(&self) -> Duration {
        self.connection_timeout
    }

    async fn get(&self) -> Result<Self::Conn, String> {
        self.pool.get_owned().await.map_err(|e| e.to_string())
    }

    fn client(conn: &Self::Conn) -> &Client {
        &conn.client
    }

    fn socket(&self, conn: &Self::Conn) -> Option<SocketAddr> {
        conn.local_addr
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            open: self.pool.state().connections as usize,
        }
    }
}
