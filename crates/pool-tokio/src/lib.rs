//! pool-tokio: an async connection pool, a tokio shell over the sans-IO
//! `pool-core`.
//!
//! The core decides everything (who gets which connection, when to connect,
//! what to close); the shell carries it out: it connects and closes
//! transports through a [`Manager`], runs the core's timers on tokio's clock,
//! and hands connections to `get`s. Its shared state (the core behind one
//! lock, the waiter hand-off slots) is written against a small sync facade
//! that becomes loom's types under `--cfg loom`, where it is model-checked
//! (`cargo xtask loom`).
//!
//! ```ignore
//! let pool = Pool::builder(manager).max_size(10).build();
//! let conn = pool.get().await?;   // returned to the pool when dropped
//! conn.taint();                   // or: it is broken, close it
//! let raw = conn.detach();        // or: keep it for good (LISTEN)
//! let report = pool.close().await;
//! ```

pub mod shared;
mod sync;

#[cfg(not(loom))]
mod pool;

#[cfg(not(loom))]
pub use pool::{Builder, CloseReport, Closed, GetError, Manager, Pool, PooledConn};
pub use pool_core::{Config, ConnId, Setting, Stats};
