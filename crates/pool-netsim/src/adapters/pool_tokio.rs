//! pool-tokio under test: our own pool, through the same adapter as the others.

use std::net::SocketAddr;
use std::time::Duration;

use pool_sim::swarm::Rng;
use pool_tokio::{Builder, Config, Pool, PooledConn};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::manager::PgManager;
use crate::under_test::{Capabilities, CloseOutcome, Gauges, PoolKind, PoolUnderTest, Setup};

/// How long `close` waits for borrowed connections before it reports them.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// pool-tokio's own options (zero disables a timer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    pub idle_timeout_ms: u64,
    pub max_lifetime_ms: u64,
    pub connect_timeout_ms: u64,
    pub reconnect_backoff_ms: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            idle_timeout_ms: 10_000,
            max_lifetime_ms: 0,
            connect_timeout_ms: 1_000,
            reconnect_backoff_ms: 100,
        }
    }
}

pub fn draw(rng: &mut Rng) -> Options {
    Options {
        idle_timeout_ms: rng.pick(&[0, 1_000, 10_000]),
        max_lifetime_ms: rng.pick(&[0, 4_000, 60_000]),
        connect_timeout_ms: 1_000,
        reconnect_backoff_ms: rng.pick(&[100, 500]),
    }
}

#[derive(Clone, Debug)]
pub struct PoolTokio {
    pool: Pool<PgManager>,
    get_timeout: Duration,
}

impl PoolTokio {
    /// The pool's builder, configured (a test may add a mutation).
    pub fn builder(setup: &Setup, options: &Options) -> Builder<PgManager> {
        let manager = PgManager::with_sockets(&setup.role, setup.sockets.clone());
        Pool::builder(manager)
            .config(Config {
                max_size: setup.max_size,
                min_idle: setup.min_idle,
                idle_timeout_ms: options.idle_timeout_ms,
                max_lifetime_ms: options.max_lifetime_ms,
                acquire_timeout_ms: setup.get_timeout.as_millis() as u64,
                connect_timeout_ms: options.connect_timeout_ms,
                reconnect_backoff_ms: options.reconnect_backoff_ms,
                // As pgx: a connection idle over a second is pinged first.
                validate_idle_ms: Config::default().validate_idle_ms,
            })
            .close_timeout(CLOSE_TIMEOUT)
    }

    /// The adapter over a pool built from `builder`.
    pub fn from_builder(builder: Builder<PgManager>, setup: &Setup) -> PoolTokio {
        PoolTokio {
            pool: builder.build(),
            get_timeout: setup.get_timeout,
        }
    }
}

impl PoolUnderTest for PoolTokio {
    type Conn = PooledConn<PgManager>;
    type Options = Options;

    const KIND: PoolKind = PoolKind::PoolTokio;
    const CAPABILITIES: Capabilities = Capabilities {
        taint: true,
        detach: true,
        resize: true,
        close: true,
    };

    fn build(setup: &Setup, options: &Options) -> PoolTokio {
        PoolTokio::from_builder(PoolTokio::builder(setup, options), setup)
    }

    fn get_bound(&self) -> Duration {
        self.get_timeout
    }

    async fn get(&self) -> Result<Self::Conn, String> {
        self.pool.get().await.map_err(|e| e.to_string())
    }

    fn client(conn: &Self::Conn) -> &Client {
        &conn.client
    }

    fn socket(&self, conn: &Self::Conn) -> Option<SocketAddr> {
        conn.local_addr
    }

    fn taint(&self, conn: Self::Conn) {
        conn.taint();
    }

    fn detach(&self, conn: Self::Conn) -> Result<Box<dyn Send>, Self::Conn> {
        Ok(Box::new(conn.detach()))
    }

    fn resize(&self, max_size: usize) -> bool {
        self.pool.set_capacity(max_size);
        true
    }

    async fn close(&self) -> Option<CloseOutcome> {
        let report = self.pool.close().await;
        Some(CloseOutcome {
            leaked: Some(report.leaked),
        })
    }

    fn gauges(&self) -> Gauges {
        let stats = self.pool.stats();
        Gauges {
            open: stats.idle + stats.borrowed,
        }
    }

    fn check(&self) -> Result<(), String> {
        self.pool.check()
    }
}
