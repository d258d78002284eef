//! bb8 0.9.1, plain tokio (no turmoil, no Postgres): a connect that never completes holds its slot for good, so one waiter starves with capacity free, and the pool outlives its last handle. Write-up: docs/findings/bb8-hung-connect-holds-its-slot.md.
//!
//! `a_get_after_a_hung_connect_is_served` and
//! `dropping_the_pool_closes_its_idle_connections` state what a pool owes
//! its users; they fail on bb8 0.9.1 and are ignored here (run them with
//! `cargo test -p pool-netsim --test finding_bb8_hung_connect -- --ignored`).
//! The other two check that the finding still reproduces, so CI notices when
//! a bb8 release fixes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bb8::{ManageConnection, Pool, RunError};

/// Connects at once, except connect number `hang_at`, which never
/// completes (a server that accepts and never answers the startup).
struct HangsOnce {
    connects: AtomicUsize,
    hang_at: usize,
    dropped: Arc<AtomicUsize>,
}

struct Conn {
    dropped: Arc<AtomicUsize>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl ManageConnection for HangsOnce {
    type Connection = Conn;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<Conn, std::io::Error> {
        if self.connects.fetch_add(1, Ordering::SeqCst) == self.hang_at {
            std::future::pending::<()>().await;
        }
        Ok(Conn {
            dropped: self.dropped.clone(),
        })
    }

    async fn is_valid(&self, _conn: &mut Conn) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut Conn) -> bool {
        false
    }
}

async fn pool(hang_at: usize) -> (Pool<HangsOnce>, Arc<AtomicUsize>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    let manager = HangsOnce {
        connects: AtomicUsize::new(0),
        hang_at,
        dropped: dropped.clone(),
    };
    let pool = Pool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_secs(1))
        .build(manager)
        .await
        .expect("no connections are made up front");
    (pool, dropped)
}

/// A get whose connect hangs times out (fair); the next get, alone, with a
/// free slot and a manager that now connects at once: served or not?
async fn next_get_after_a_hung_connect() -> Result<(), RunError<std::io::Error>> {
    let (pool, _) = pool(0).await;
    assert!(matches!(pool.get().await, Err(RunError::TimedOut)));
    pool.get().await.map(drop)
}

/// One idle connection, one connect hung in the background; every handle
/// dropped. How many connections were closed?
async fn closed_after_every_handle_dropped() -> usize {
    let (pool, dropped) = pool(1).await;
    let idle = pool.get().await.expect("connect 0 succeeds");
    // Connect 1 hangs; the get gives up at its timeout.
    assert!(matches!(pool.get().await, Err(RunError::TimedOut)));
    drop(idle);
    drop(pool);
    tokio::time::sleep(Duration::from_secs(60)).await;
    dropped.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
#[ignore = "fails on bb8 0.9.1: the finding (docs/findings/bb8-hung-connect-holds-its-slot.md)"]
async fn a_get_after_a_hung_connect_is_served() {
    next_get_after_a_hung_connect()
        .await
        .expect("a free slot and a healthy manager, yet the get timed out");
}

#[tokio::test(start_paused = true)]
#[ignore = "fails on bb8 0.9.1: the finding (docs/findings/bb8-hung-connect-holds-its-slot.md)"]
async fn dropping_the_pool_closes_its_idle_connections() {
    assert_eq!(closed_after_every_handle_dropped().await, 1);
}

#[tokio::test(start_paused = true)]
async fn bb8_0_9_still_starves_a_get_after_a_hung_connect() {
    assert!(matches!(
        next_get_after_a_hung_connect().await,
        Err(RunError::TimedOut)
    ));
}

#[tokio::test(start_paused = true)]
async fn bb8_0_9_still_keeps_a_dropped_pools_idle_connection_open() {
    assert_eq!(closed_after_every_handle_dropped().await, 0);
}
