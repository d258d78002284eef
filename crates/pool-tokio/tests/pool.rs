//! The async pool against an in-memory manager, on tokio's paused clock.
#![cfg(not(loom))]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pool_tokio::{Closed, GetError, Manager, Pool, Setting};
use tokio::sync::oneshot;

/// Connections are numbers; each can be "closed by the server" on demand.
#[derive(Default)]
struct Fake {
    next: AtomicU64,
    /// The close trigger of each connection made.
    closers: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
    fail_connects: AtomicBool,
    /// Every connection fails the pre-hand-out health check.
    unhealthy: AtomicBool,
    /// Connections with ids below this answer a validation ping dead.
    dead_below: AtomicU64,
    applied: Mutex<Vec<(u64, Option<Setting>)>>,
}

#[derive(Debug)]
struct FakeConn {
    id: u64,
    /// Dropping the connection closes its transport, as a real client's
    /// does: its `Closed` future resolves.
    _transport: oneshot::Sender<()>,
}

#[derive(Debug, thiserror::Error)]
#[error("connect refused")]
struct Refused;

/// The manager: a handle on the fake backend.
#[derive(Clone, Copy)]
struct Mgr(&'static Fake);

impl Manager for Mgr {
    type Conn = FakeConn;
    type Error = Refused;

    fn connect(
        &self,
        _setting: Option<Setting>,
    ) -> impl Future<Output = Result<(FakeConn, Closed), Refused>> + Send {
        let fake: &'static Fake = self.0;
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if fake.fail_connects.load(Ordering::SeqCst) {
                return Err(Refused);
            }
            let id = fake.next.fetch_add(1, Ordering::SeqCst);
            let (server_close, by_server) = oneshot::channel::<()>();
            let (transport, dropped) = oneshot::channel::<()>();
            fake.closers.lock().unwrap().insert(id, server_close);
            let closed: Closed = Box::pin(async move {
                tokio::select! {
                    _ = by_server => {}
                    _ = dropped => {}
                }
            });
            Ok((
                FakeConn {
                    id,
                    _transport: transport,
                },
                closed,
            ))
        }
    }

    fn apply_setting(
        &self,
        conn: &mut FakeConn,
        setting: Option<Setting>,
    ) -> impl Future<Output = Result<(), Refused>> + Send {
        self.0.applied.lock().unwrap().push((conn.id, setting));
        async { Ok(()) }
    }

    fn is_healthy(&self, _conn: &FakeConn) -> bool {
        !self.0.unhealthy.load(Ordering::SeqCst)
    }

    fn is_valid(&self, conn: &mut FakeConn) -> impl Future<Output = bool> + Send {
        let alive = conn.id >= self.0.dead_below.load(Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            alive
        }
    }
}

fn fake() -> &'static Fake {
    Box::leak(Box::default())
}

fn pool(max: usize, fake: &'static Fake) -> Pool<Mgr> {
    Pool::builder(Mgr(fake))
        .max_size(max)
        .acquire_timeout(Duration::from_secs(1))
        .close_timeout(Duration::from_secs(1))
        .build()
}

/// Let spawned tasks and timers run until nothing is left to do now.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(start_paused = true)]
async fn get_release_and_reuse() {
    let fake = fake();
    let pool = pool(2, fake);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 0);
    let s = pool.stats();
    assert_eq!((s.borrowed, s.idle, s.opened), (1, 0, 1));
    drop(conn);
    let again = pool.get().await.unwrap();
    assert_eq!(again.id, 0, "the idle connection is reused");
    assert_eq!(pool.stats().opened, 1);
    pool.check().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_serves_waiters_in_order_when_conns_come_back() {
    let fake = fake();
    let pool = pool(1, fake);
    let held = pool.get().await.unwrap();
    let served = std::sync::Arc::new(Mutex::new(Vec::new()));
    let waiter = |name: &'static str| {
        let (pool, served) = (pool.clone(), served.clone());
        tokio::spawn(async move {
            let conn = pool.get().await.unwrap();
            served.lock().unwrap().push(name);
            // Hold it a while, so the next waiter is served by this release.
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(conn);
        })
    };
    let first = waiter("first");
    settle().await;
    let second = waiter("second");
    settle().await;
    assert_eq!(pool.stats().waiters, 2);
    drop(held);
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(*served.lock().unwrap(), ["first", "second"]);
    assert_eq!(pool.stats().opened, 1, "both were served by the one conn");
    pool.check().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_get_times_out_on_a_full_pool() {
    let fake = fake();
    let pool = pool(1, fake);
    let _held = pool.get().await.unwrap();
    let err = pool
        .get_with(None, Some(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(matches!(err, GetError::Timeout), "{err}");
    assert_eq!(pool.stats().timed_out, 1);
}

/// The classic bug: the grant lands in the slot of a `get` that is dropped
/// before it looks. The connection must come back, not be lost.
#[tokio::test(start_paused = true)]
async fn a_get_dropped_after_its_grant_loses_nothing() {
    let fake = fake();
    let pool = pool(1, fake);
    let held = pool.get().await.unwrap();
    let mut get = Box::pin(pool.get());
    // Poll once: the get registers and waits.
    assert!(futures_poll_once(get.as_mut()).await.is_none());
    // The release grants the conn to the waiting get (into its slot)...
    drop(held);
    assert_eq!(pool.stats().borrowed, 1);
    // ...which is dropped without looking.
    drop(get);
    let s = pool.stats();
    assert_eq!((s.borrowed, s.idle, s.held), (0, 1, 1), "{s:?}");
    pool.check().unwrap();
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 0);
}

async fn futures_poll_once<F: Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn detach_frees_the_slot_at_once() {
    let fake = fake();
    let pool = pool(1, fake);
    let conn = pool.get().await.unwrap();
    let raw = conn.detach();
    assert_eq!(raw.id, 0);
    let s = pool.stats();
    assert_eq!((s.held, s.detached), (0, 1));
    let next = pool.get().await.unwrap();
    assert_eq!(next.id, 1, "a new connection fills the freed slot");
}

#[tokio::test(start_paused = true)]
async fn a_server_close_of_an_idle_conn_drops_it() {
    let fake = fake();
    let pool = pool(2, fake);
    drop(pool.get().await.unwrap());
    assert_eq!(pool.stats().idle, 1);
    let tx = fake.closers.lock().unwrap().remove(&0).unwrap();
    tx.send(()).unwrap();
    settle().await;
    let s = pool.stats();
    assert_eq!((s.idle, s.held, s.closed_by_server), (0, 0, 1));
    pool.check().unwrap();
}

#[tokio::test(start_paused = true)]
async fn taint_closes_and_a_connect_error_reaches_the_waiter() {
    let fake = fake();
    let pool = pool(1, fake);
    let conn = pool.get().await.unwrap();
    fake.fail_connects.store(true, Ordering::SeqCst);
    conn.taint();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, GetError::ConnectFailed), "{err}");
    let s = pool.stats();
    assert_eq!((s.tainted, s.connect_failures, s.held), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_setting_is_applied_when_the_idle_conn_carries_another() {
    let fake = fake();
    let pool = pool(1, fake);
    drop(pool.get_with(Some(Setting(1)), None).await.unwrap());
    let conn = pool.get_with(Some(Setting(2)), None).await.unwrap();
    assert_eq!(conn.id, 0);
    assert_eq!(*fake.applied.lock().unwrap(), vec![(0, Some(Setting(2)))]);
}

#[tokio::test(start_paused = true)]
async fn close_rejects_waiters_and_reports_what_was_leaked() {
    let fake = fake();
    let pool = pool(1, fake);
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { pool.get().await.map(|c| c.id) }
    });
    settle().await;
    let report = pool.close().await;
    assert_eq!(report.leaked, 1, "the held conn was never returned");
    assert!(matches!(waiter.await.unwrap(), Err(GetError::Closed)));
    drop(held);
    let s = pool.stats();
    assert_eq!((s.held, s.lifecycle), (0, pool_core::Lifecycle::Closed));
    assert!(matches!(pool.get().await, Err(GetError::Closed)));
}

#[tokio::test(start_paused = true)]
async fn close_completes_as_soon_as_the_last_conn_returns() {
    let fake = fake();
    let pool = pool(2, fake);
    let held = pool.get().await.unwrap();
    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close().await }
    });
    settle().await;
    let start = tokio::time::Instant::now();
    drop(held);
    let report = closing.await.unwrap();
    assert_eq!(report.leaked, 0);
    // Not at the 1 s close timeout: at once (the paused clock did not move).
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// The pool closing a connection itself (taint, close, or the caller
/// closing a detached one) is not reported back to it as a server close:
/// such a report would be for a connection it already forgot, a stale event.
#[tokio::test(start_paused = true)]
async fn the_pools_own_closes_are_not_reported_back_as_stale_events() {
    let fake = fake();
    let pool = pool(2, fake);
    pool.get().await.unwrap().taint();
    drop(pool.get().await.unwrap().detach());
    drop(pool.get().await.unwrap());
    settle().await;
    let report = pool.close().await;
    settle().await;
    let s = pool.stats();
    assert_eq!((report.leaked, s.tainted, s.detached), (0, 1, 1));
    assert_eq!(s.stale_events, 0, "{s:?}");
}

/// Retries past unhealthy connections share one deadline: a get with a
/// 100 ms timeout gives up at 100 ms, however many it tainted on the way.
#[tokio::test(start_paused = true)]
async fn a_get_keeps_its_deadline_across_unhealthy_conns() {
    let fake = fake();
    fake.unhealthy.store(true, Ordering::SeqCst);
    let pool = pool(1, fake);
    let start = tokio::time::Instant::now();
    let err = pool
        .get_with(None, Some(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(matches!(err, GetError::Timeout), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert!(pool.stats().tainted > 1, "it retried: {:?}", pool.stats());
}

/// A connection idle past `validate_idle` is pinged before it is handed
/// out; a dead one is closed and the get is served by a fresh connection,
/// without failing and within its deadline.
#[tokio::test(start_paused = true)]
async fn a_connection_that_fails_its_validation_is_replaced_for_the_same_get() {
    let fake = fake();
    let pool = Pool::builder(Mgr(fake))
        .max_size(1)
        .acquire_timeout(Duration::from_secs(1))
        .validate_idle(Duration::from_millis(100))
        .build();
    drop(pool.get().await.unwrap()); // c0, now idle
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The server killed c0 unseen: its ping answers dead.
    fake.dead_below.store(1, Ordering::SeqCst);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 1, "a fresh connection, not the dead one");
    let s = pool.stats();
    assert_eq!((s.validations, s.invalidated, s.opened), (1, 1, 2), "{s:?}");
    drop(conn);
    settle().await;
    pool.check().unwrap();
    assert_eq!(pool.stats().stale_events, 0);
}
