//! deadpool + deadpool-postgres under test, unmodified: deadpool-postgres's own `Manager`, given a connect function over a watched turmoil socket (`Manager::from_connect`).
//!
//! A deadpool-postgres connection is a `ClientWrapper`, which does not say
//! which socket it uses. The connect function notes the address it dialled
//! in a thread-local and the `post_create` hook, which deadpool runs in the
//! same poll right after the connect returns (so on the same thread, with
//! no other connect in between, even on a multi-thread runtime), files it
//! under the wrapper's statement cache (an `Arc` that lives as long as the
//! wrapper).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{
    ClientWrapper, Connect, Hook, Manager, ManagerConfig, Object, Pool, QueueMode, RecyclingMethod,
    Runtime, Timeouts,
};
use pool_sim::swarm::Rng;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::socket::Sockets;
use crate::under_test::{
    Capabilities, CloseOutcome, Gauges, PoolKind, PoolUnderTest, Setup, connect_pg,
};

/// deadpool's own options, drawn from the seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// `fast` (is the client closed?), `verified` (and an empty query) or
    /// `clean` (and deadpool-postgres's DISCARD statements).
    pub recycling_method: String,
    /// Waiting for a free slot.
    pub wait_timeout_ms: u64,
    /// Creating a connection.
    pub create_timeout_ms: u64,
    /// Each recycle check.
    pub recycle_timeout_ms: u64,
    pub lifo: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            recycling_method: "fast".to_owned(),
            wait_timeout_ms: 3_000,
            create_timeout_ms: 3_000,
            recycle_timeout_ms: 2_000,
            lifo: false,
        }
    }
}

pub fn draw(rng: &mut Rng) -> Options {
    Options {
        recycling_method: rng.pick(&["fast", "verified", "clean"]).to_owned(),
        wait_timeout_ms: rng.pick(&[1_000, 3_000]),
        create_timeout_ms: rng.pick(&[1_000, 3_000]),
        recycle_timeout_ms: rng.pick(&[500, 2_000]),
        lifo: rng.chance(30),
    }
}

type Addresses = Arc<Mutex<BTreeMap<usize, SocketAddr>>>;

thread_local! {
    /// The address the connect that just returned on this thread dialled.
    /// (One slot shared by all threads was overwritten by a connect on
    /// another worker before the hook read it: realpg saw a handed-out
    /// connection with no socket.)
    static LAST_DIALLED: std::cell::Cell<Option<SocketAddr>> = const { std::cell::Cell::new(None) };
}

/// The connect function: dials the fake server and notes the address.
struct TurmoilConnect {
    role: String,
    sockets: Sockets,
}

impl Connect for TurmoilConnect {
    fn connect(
        &self,
        _pg_config: &tokio_postgres::Config,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>>
                + Send
                + '_,
        >,
    > {
        Box::pin(async move {
            let connected = connect_pg(&self.sockets, &self.role).await?;
            LAST_DIALLED.set(connected.local_addr);
            Ok((connected.client, connected.task))
        })
    }
}

fn key(wrapper: &ClientWrapper) -> usize {
    Arc::as_ptr(&wrapper.statement_cache) as usize
}

#[derive(Clone, Debug)]
pub struct Deadpool {
    pool: Pool,
    addresses: Addresses,
    get_bound: Duration,
}

impl PoolUnderTest for Deadpool {
    type Conn = Object;
    type Options = Options;

    const KIND: PoolKind = PoolKind::Deadpool;
    // Taint and detach are both `Object::take` (the object leaves the pool
    // and frees its slot; dropping it closes the connection); close is
    // `Pool::close`, which does not wait for borrowed objects.
    const CAPABILITIES: Capabilities = Capabilities {
        taint: true,
        detach: true,
        resize: true,
        close: true,
    };

    fn build(setup: &Setup, options: &Options) -> Deadpool {
        let connect = TurmoilConnect {
            role: setup.role.clone(),
            sockets: setup.sockets.clone(),
        };
        let recycling_method = match options.recycling_method.as_str() {
            "verified" => RecyclingMethod::Verified,
            "clean" => RecyclingMethod::Clean,
            _ => RecyclingMethod::Fast,
        };
        let mut pg_config = tokio_postgres::Config::new();
        pg_config.user(&setup.role).dbname("app");
        let manager = Manager::from_connect(pg_config, connect, ManagerConfig { recycling_method });
        let addresses: Addresses = Arc::default();
        let filed = addresses.clone();
        let ms = Duration::from_millis;
        let timeouts = Timeouts {
            wait: Some(ms(options.wait_timeout_ms)),
            create: Some(ms(options.create_timeout_ms)),
            recycle: Some(ms(options.recycle_timeout_ms)),
        };
        let pool = Pool::builder(manager)
            .max_size(setup.max_size)
            .timeouts(timeouts)
            .queue_mode(if options.lifo {
                QueueMode::Lifo
            } else {
                QueueMode::Fifo
            })
            .runtime(Runtime::Tokio1)
            .post_create(Hook::sync_fn(move |wrapper: &mut ClientWrapper, _| {
                if let Some(addr) = LAST_DIALLED.take() {
                    filed.lock().unwrap().insert(key(wrapper), addr);
                }
                Ok(())
            }))
            .build()
            .expect("a runtime and a max size are set");
        // A get: the wait for a slot, then a recycle check of each idle
        // object it pops (at most max_size), then at most one create.
        let get_bound = ms(options.wait_timeout_ms
            + options.recycle_timeout_ms * setup.max_size as u64
            + options.create_timeout_ms);
        Deadpool {
            pool,
            addresses,
            get_bound,
        }
    }

    fn get_bound(&self) -> Duration {
        self.get_bound
    }

    async fn get(&self) -> Result<Object, String> {
        self.pool.get().await.map_err(|e| e.to_string())
    }

    fn client(conn: &Object) -> &Client {
        conn
    }

    fn socket(&self, conn: &Object) -> Option<SocketAddr> {
        self.addresses.lock().unwrap().get(&key(conn)).copied()
    }

    fn taint(&self, conn: Object) {
        drop(Object::take(conn));
    }

    fn detach(&self, conn: Object) -> Result<Box<dyn Send>, Object> {
        Ok(Box::new(Object::take(conn)))
    }

    fn resize(&self, max_size: usize) -> bool {
        self.pool.resize(max_size);
        true
    }

    async fn close(&self) -> Option<CloseOutcome> {
        self.pool.close();
        Some(CloseOutcome { leaked: None })
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            open: self.pool.status().size,
        }
    }
}
