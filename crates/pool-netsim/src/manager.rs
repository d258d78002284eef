//! A pool-tokio manager for tokio-postgres over turmoil TCP: the real client
//! library, against the fake server, inside the simulation.

use std::future::Future;
use std::net::SocketAddr;

use pool_tokio::{Closed, Manager, Setting};
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::socket::Sockets;
use crate::under_test::{AbortOnDrop, connect_pg};

/// A connection: the tokio-postgres client, its socket's address, and a way
/// to learn that its connection task ended (the server closed it, a FIN, an
/// error).
#[derive(Debug)]
pub struct PgConn {
    pub client: Client,
    pub local_addr: Option<SocketAddr>,
    ended: watch::Receiver<bool>,
    _task: AbortOnDrop,
}

impl PgConn {
    /// Resolves when the connection has ended (for a detached LISTEN conn,
    /// which the pool no longer watches).
    pub async fn ended(&mut self) {
        let _ = self.ended.wait_for(|ended| *ended).await;
    }
}

/// Connects to the fake server as `role` (the server counts sessions per
/// role, so one role per pool shows each pool's footprint), through
/// `sockets`.
#[derive(Clone, Debug)]
pub struct PgManager {
    pub role: String,
    pub sockets: Sockets,
}

impl PgManager {
    /// A manager with a socket table of its own.
    pub fn new(role: impl Into<String>) -> PgManager {
        PgManager::with_sockets(role, Sockets::default())
    }

    pub fn with_sockets(role: impl Into<String>, sockets: Sockets) -> PgManager {
        PgManager {
            role: role.into(),
            sockets,
        }
    }
}

impl Manager for PgManager {
    type Conn = PgConn;
    type Error = tokio_postgres::Error;

    fn connect(
        &self,
        setting: Option<Setting>,
    ) -> impl Future<Output = Result<(PgConn, Closed), tokio_postgres::Error>> + Send {
        let (sockets, role) = (self.sockets.clone(), self.role.clone());
        async move {
            let connected = connect_pg(&sockets, &role).await?;
            let mut watched = connected.ended.clone();
            let closed: Closed = Box::pin(async move {
                let _ = watched.wait_for(|ended| *ended).await;
            });
            let mut conn = PgConn {
                client: connected.client,
                local_addr: connected.local_addr,
                ended: connected.ended,
                _task: AbortOnDrop(connected.task),
            };
            if setting.is_some() {
                apply(&mut conn, setting).await?;
            }
            Ok((conn, closed))
        }
    }

    fn apply_setting(
        &self,
        conn: &mut PgConn,
        setting: Option<Setting>,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send {
        apply(conn, setting)
    }

    fn is_healthy(&self, conn: &PgConn) -> bool {
        !conn.client.is_closed()
    }

    /// A ping (`SELECT 1`), bounded: a partition must not hold the get.
    fn is_valid(&self, conn: &mut PgConn) -> impl Future<Output = bool> + Send {
        let client = &conn.client;
        async move {
            let ping = client.simple_query("SELECT 1");
            matches!(
                tokio::time::timeout(VALIDATE_TIMEOUT, ping).await,
                Ok(Ok(_))
            )
        }
    }
}

/// How long a validation ping may take before the connection counts as dead.
const VALIDATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A setting is a session variable; `None` resets it.
async fn apply(conn: &mut PgConn, setting: Option<Setting>) -> Result<(), tokio_postgres::Error> {
    let sql = match setting {
        Some(s) => format!("SET app.setting = '{}'", s.0),
        None => "RESET app.setting".to_owned(),
    };
    conn.client.batch_execute(&sql).await
}
