//! A pool-tokio manager for tokio-postgres over turmoil TCP: the real client
//! library, against the fake server, inside the simulation.

use std::future::Future;

use pool_tokio::{Closed, Manager, Setting};
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};
use turmoil::net::TcpStream;

/// A connection: the tokio-postgres client, and a way to learn that its
/// connection task ended (the server closed it, a FIN, an error).
#[derive(Debug)]
pub struct PgConn {
    pub client: Client,
    ended: watch::Receiver<bool>,
}

impl PgConn {
    /// Resolves when the connection has ended (for a detached LISTEN conn,
    /// which the pool no longer watches).
    pub async fn ended(&mut self) {
        let _ = self.ended.wait_for(|ended| *ended).await;
    }
}

/// Connects to host `db` as `role` (the server counts sessions per role, so
/// one role per pool shows each pool's footprint).
#[derive(Clone, Debug)]
pub struct PgManager {
    pub role: String,
    pub host: String,
    pub port: u16,
}

impl PgManager {
    pub fn new(role: impl Into<String>) -> PgManager {
        PgManager {
            role: role.into(),
            host: "db".to_owned(),
            port: 5432,
        }
    }
}

impl Manager for PgManager {
    type Conn = PgConn;
    type Error = PgError;

    fn connect(
        &self,
        setting: Option<Setting>,
    ) -> impl Future<Output = Result<(PgConn, Closed), PgError>> + Send {
        let (host, port, role) = (self.host.clone(), self.port, self.role.clone());
        async move {
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            let mut config = tokio_postgres::Config::new();
            config.user(&role).dbname("app").application_name(&role);
            let (client, connection) = config.connect_raw(stream, NoTls).await?;
            let (tx, rx) = watch::channel(false);
            let mut watched = rx.clone();
            // The connection task: when it ends, every watcher hears it.
            tokio::spawn(async move {
                let _ = connection.await;
                let _ = tx.send(true);
            });
            let closed: Closed = Box::pin(async move {
                let _ = watched.wait_for(|ended| *ended).await;
            });
            let mut conn = PgConn { client, ended: rx };
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
    ) -> impl Future<Output = Result<(), PgError>> + Send {
        apply(conn, setting)
    }

    fn is_healthy(&self, conn: &PgConn) -> bool {
        !conn.client.is_closed()
    }
}

/// A setting is a session variable; `None` resets it.
async fn apply(conn: &mut PgConn, setting: Option<Setting>) -> Result<(), PgError> {
    let sql = match setting {
        Some(s) => format!("SET app.setting = '{}'", s.0),
        None => "RESET app.setting".to_owned(),
    };
    Ok(conn.client.batch_execute(&sql).await?)
}

/// A connect or setting failure: at TCP, or from Postgres.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("tcp: {0}")]
    Tcp(#[from] std::io::Error),
    #[error("postgres: {0}")]
    Pg(#[from] tokio_postgres::Error),
}
