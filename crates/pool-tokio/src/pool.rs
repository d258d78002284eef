//! The async pool: a tokio shell that carries out the core's commands
//! (connect, close), runs its timers, and hands connections to `get`s.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pool_core::{Config, ConnId, RejectReason, RequestId, Setting, Stats, Time};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use std::sync::{Arc, Mutex, Weak};

use crate::shared::{Shared, Slot, SlotState, Work};
use crate::sync::lock;

/// A future that resolves when a connection's transport has closed (the
/// server closed it, a FIN, an error): how the pool hears of a dead idle
/// connection without using it.
pub type Closed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Makes and prepares connections for the pool.
pub trait Manager: Send + Sync + 'static {
    type Conn: Send + 'static;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Connect, with `setting` applied. Returns the connection and a future
    /// that resolves when its transport closes.
    fn connect(
        &self,
        setting: Option<Setting>,
    ) -> impl Future<Output = Result<(Self::Conn, Closed), Self::Error>> + Send;

    /// Apply `setting` to a pooled connection (`None`: reset it to clean).
    fn apply_setting(
        &self,
        conn: &mut Self::Conn,
        setting: Option<Setting>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A cheap check before a connection is handed out; an unhealthy one is
    /// tainted and the `get` goes on waiting.
    fn is_healthy(&self, _conn: &Self::Conn) -> bool {
        true
    }

    /// A real check (a ping), made when the pool asks for one: before a
    /// connection idle for `validate_idle_ms` is handed out. A dead one is
    /// closed and the `get` waits on, first in line. The default trusts
    /// the connection.
    fn is_valid(&self, _conn: &mut Self::Conn) -> impl Future<Output = bool> + Send {
        async { true }
    }
}

/// Why a `get` got no connection.
#[derive(Debug, thiserror::Error)]
pub enum GetError<E: std::error::Error + 'static> {
    #[error("no connection before the deadline")]
    Timeout,
    #[error("a connect failed while this get was the oldest waiter")]
    ConnectFailed,
    #[error("the pool is closing or closed")]
    Closed,
    #[error("applying the connection's setting failed: {0}")]
    Setting(#[source] E),
}

/// What `close` found: connections still borrowed at its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseReport {
    pub leaked: usize,
}

/// Builds a [`Pool`]; the options mirror `pool_core::Config`.
pub struct Builder<M> {
    manager: M,
    config: Config,
    close_timeout: Duration,
    #[cfg(feature = "mutations")]
    mutation: Option<pool_core::Mutation>,
}

impl<M: Manager> Builder<M> {
    pub fn max_size(mut self, n: usize) -> Self {
        self.config.max_size = n;
        self
    }
    pub fn min_idle(mut self, n: usize) -> Self {
        self.config.min_idle = n;
        self
    }
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout_ms = millis(d);
        self
    }
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.config.max_lifetime_ms = millis(d);
        self
    }
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.config.acquire_timeout_ms = millis(d);
        self
    }
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout_ms = millis(d);
        self
    }
    pub fn reconnect_backoff(mut self, d: Duration) -> Self {
        self.config.reconnect_backoff_ms = millis(d);
        self
    }
    /// Connections idle this long are validated (`Manager::is_valid`)
    /// before they are handed out (default 1 s, as pgx pings).
    pub fn validate_idle(mut self, d: Duration) -> Self {
        self.config.validate_idle_ms = millis(d);
        self
    }
    /// How long `close` waits for borrowed connections (default 10 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }
    /// The whole core config at once.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Run the core with a seed report's bug put back (to show a harness
    /// catching it). Only with the `mutations` feature.
    #[cfg(feature = "mutations")]
    pub fn mutation(mut self, mutation: pool_core::Mutation) -> Self {
        self.mutation = Some(mutation);
        self
    }

    /// Build the pool; must be called inside a tokio runtime (it spawns the
    /// task that runs the pool's timers).
    pub fn build(self) -> Pool<M> {
        let epoch = Instant::now();
        let acquire_timeout = (self.config.acquire_timeout_ms > 0)
            .then(|| Duration::from_millis(self.config.acquire_timeout_ms));
        let (shared, work) = Shared::new(Time::ZERO, self.config);
        #[cfg(feature = "mutations")]
        shared.set_mutation(self.mutation);
        let timers = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            shared,
            manager: self.manager,
            epoch,
            acquire_timeout,
            close_timeout: self.close_timeout,
            timers: timers.clone(),
            connects: Mutex::new(Default::default()),
            watchers: Mutex::new(Default::default()),
        });
        inner.run(work);
        tokio::spawn(drive(Arc::downgrade(&inner), timers));
        Pool { inner }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// An async connection pool over the sans-IO core. Cheap to clone.
pub struct Pool<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner<M: Manager> {
    shared: Shared<M::Conn>,
    manager: M,
    /// The core's time is milliseconds since this instant (tokio's clock:
    /// paused in tests, simulated under turmoil).
    epoch: Instant,
    /// The config's acquire timeout (`None`: disabled), for `get`s that
    /// give none of their own.
    acquire_timeout: Option<Duration>,
    close_timeout: Duration,
    /// Wakes the timer task when the core's next deadline may have moved
    /// (and when the pool is dropped).
    timers: Arc<Notify>,
    /// Connects in flight, to abort.
    connects: Mutex<std::collections::BTreeMap<ConnId, JoinHandle<()>>>,
    /// The close watchers of connections whose transport the pool still
    /// owns (idle or borrowed). A watcher reports `Closed` only while it is
    /// registered here: when the pool closes a transport itself, or hands
    /// it over for good (detach), it unregisters the watcher first, so its
    /// own close never comes back to the core as a stale event.
    watchers: Mutex<std::collections::BTreeMap<ConnId, JoinHandle<()>>>,
}

impl<M: Manager> Pool<M> {
    pub fn builder(manager: M) -> Builder<M> {
        Builder {
            manager,
            config: Config::default(),
            close_timeout: Duration::from_secs(10),
            #[cfg(feature = "mutations")]
            mutation: None,
        }
    }

    /// A connection, with no setting, within the pool's acquire timeout.
    pub async fn get(&self) -> Result<PooledConn<M>, GetError<M::Error>> {
        self.get_with(None, None).await
    }

    /// A connection carrying `setting`, within `timeout` (the pool's acquire
    /// timeout when `None`). Cancel safe: dropping the future at any point
    /// loses no connection and no slot.
    pub async fn get_with(
        &self,
        setting: Option<Setting>,
        timeout: Option<Duration>,
    ) -> Result<PooledConn<M>, GetError<M::Error>> {
        let inner = &self.inner;
        // One deadline for the whole get: a retry past an unhealthy
        // connection waits only for what is left of it.
        // One clock read for both: it is a good part of a get's cost.
        let now = inner.now();
        let deadline = timeout
            .or(inner.acquire_timeout)
            .map(|t| now.plus_ms(millis(t)));
        let mut waiter = Waiter::new(inner.clone(), now, setting, deadline);
        loop {
            let (conn, transport, validate, apply) = (&mut waiter).await?;
            let mut conn = PooledConn {
                inner: inner.clone(),
                conn,
                transport: Some(transport),
                applying: false,
            };
            if validate {
                // If this future is dropped mid-check, the guard taints it.
                conn.applying = true;
                let alive = inner.manager.is_valid(&mut conn).await;
                conn.applying = false;
                if !alive {
                    // Closed by the pool itself: not a close to report.
                    inner.stop_watching(conn.conn);
                    let transport = conn.transport.take().expect("present until dropped");
                    let work = inner.shared.invalid(
                        inner.now(),
                        conn.conn,
                        transport,
                        waiter.request,
                        &waiter.slot,
                    );
                    waiter.done = false;
                    inner.run(work);
                    continue;
                }
                let work = inner.shared.valid(inner.now(), conn.conn);
                inner.run(work);
            }
            if let Some(setting) = apply {
                // If this future is dropped mid-apply, the guard taints it.
                conn.applying = true;
                let result = inner.manager.apply_setting(&mut conn, setting).await;
                conn.applying = false;
                if let Err(e) = result {
                    conn.taint();
                    return Err(GetError::Setting(e));
                }
            }
            if inner.manager.is_healthy(&conn) {
                return Ok(conn);
            }
            conn.taint();
            waiter = Waiter::new(inner.clone(), inner.now(), setting, deadline);
        }
    }

    /// Grow or shrink the pool.
    pub fn set_capacity(&self, capacity: usize) {
        let work = self.inner.shared.set_capacity(self.inner.now(), capacity);
        self.inner.run(work);
    }

    /// Close: waiters are rejected, connects aborted, idle connections
    /// closed, borrowed ones closed as they come back. Completes when nothing
    /// is held, or at the close timeout, reporting what was still borrowed.
    pub async fn close(&self) -> CloseReport {
        let inner = &self.inner;
        let now = inner.now();
        let deadline = now.plus_ms(millis(inner.close_timeout));
        let work = inner.shared.close(now, Some(deadline));
        inner.run(work);
        let leaked = std::future::poll_fn(|cx| match inner.shared.poll_closed(cx.waker()) {
            Some(leaked) => Poll::Ready(leaked),
            None => Poll::Pending,
        })
        .await;
        CloseReport { leaked }
    }

    pub fn stats(&self) -> Stats {
        self.inner.shared.stats()
    }

    /// The core's and the shell's consistency checks (for tests).
    pub fn check(&self) -> Result<(), String> {
        self.inner.shared.check()
    }
}

impl<M: Manager> Inner<M> {
    fn now(&self) -> Time {
        Time::from_millis(millis(Instant::now().saturating_duration_since(self.epoch)))
    }

    fn at(&self, time: Time) -> Instant {
        self.epoch + Duration::from_millis(time.as_millis())
    }

    /// Do the IO the core asked for; wake the timer task if the core wants
    /// a timer earlier than the one it sleeps to.
    fn run(self: &Arc<Self>, work: Vec<Work<M::Conn>>) {
        for item in work {
            match item {
                Work::Open { conn, setting } => self.open(conn, setting),
                Work::Abort { conn } => {
                    if let Some(task) = lock(&self.connects).remove(&conn) {
                        task.abort();
                    }
                }
                Work::Close { conn, transport } => {
                    self.stop_watching(conn);
                    drop(transport);
                }
                Work::Rearm => self.timers.notify_one(),
            }
        }
    }

    /// Spawn the connect of `conn` (the core's connect timeout aborts it).
    fn open(self: &Arc<Self>, conn: ConnId, setting: Option<Setting>) {
        let inner = self.clone();
        let task = tokio::spawn(async move {
            let result = inner.manager.connect(setting).await;
            lock(&inner.connects).remove(&conn);
            let work = match result {
                Ok((transport, closed)) => {
                    // The transport's close reaches the pool as `Closed`,
                    // whenever it comes (even before `Connected` is handled).
                    let weak = Arc::downgrade(&inner);
                    // Registered under the lock the watcher takes to report,
                    // so a close that comes at once is not missed.
                    let mut watchers = lock(&inner.watchers);
                    let watcher = tokio::spawn(async move {
                        closed.await;
                        if let Some(inner) = weak.upgrade()
                            && lock(&inner.watchers).remove(&conn).is_some()
                        {
                            let work = inner.shared.closed(inner.now(), conn);
                            inner.run(work);
                        }
                    });
                    watchers.insert(conn, watcher);
                    drop(watchers);
                    inner.shared.connected(inner.now(), conn, transport)
                }
                Err(_) => inner.shared.connect_failed(inner.now(), conn),
            };
            inner.run(work);
        });
        lock(&self.connects).insert(conn, task);
    }

    /// The pool lets go of `conn`'s transport: its close is no news.
    fn stop_watching(&self, conn: ConnId) {
        if let Some(watcher) = lock(&self.watchers).remove(&conn) {
            watcher.abort();
        }
    }
}

impl<M: Manager> Drop for Inner<M> {
    fn drop(&mut self) {
        // Let the timer task see the pool is gone, and stop.
        self.timers.notify_one();
        for (_, task) in std::mem::take(&mut *lock(&self.connects)) {
            task.abort();
        }
        for (_, watcher) in std::mem::take(&mut *lock(&self.watchers)) {
            watcher.abort();
        }
    }
}

/// The timer task: sleep until the core's next deadline, fire it, repeat;
/// stop when the pool is gone. It holds the pool only while firing.
async fn drive<M: Manager>(pool: Weak<Inner<M>>, timers: Arc<Notify>) {
    loop {
        let notified = timers.notified();
        let deadline = {
            let Some(inner) = pool.upgrade() else {
                return;
            };
            inner.shared.next_timeout().map(|at| inner.at(at))
        };
        match deadline {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {
                        let Some(inner) = pool.upgrade() else {
                            return;
                        };
                        let work = inner.shared.timeout(inner.now());
                        inner.run(work);
                    }
                    _ = notified => {}
                }
            }
            None => notified.await,
        }
    }
}

/// A waiting `get`: resolves to its grant, or gives it back if dropped.
struct Waiter<M: Manager> {
    inner: Arc<Inner<M>>,
    request: RequestId,
    slot: Arc<Slot<M::Conn>>,
    done: bool,
}

impl<M: Manager> Waiter<M> {
    fn new(
        inner: Arc<Inner<M>>,
        now: Time,
        setting: Option<Setting>,
        deadline: Option<Time>,
    ) -> Self {
        let (slot, request, work) = inner.shared.acquire(now, setting, deadline);
        inner.run(work);
        Waiter {
            inner,
            request,
            slot,
            done: false,
        }
    }
}

/// A grant: the connection, its transport, whether to validate it, and the
/// setting to apply.
type Grant<C> = (ConnId, C, bool, Option<Option<Setting>>);

impl<M: Manager> Future for Waiter<M> {
    type Output = Result<Grant<M::Conn>, GetError<M::Error>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.slot.poll(Some(cx.waker())) {
            None => Poll::Pending,
            Some(outcome) => {
                self.done = true;
                Poll::Ready(match outcome {
                    SlotState::Granted {
                        conn,
                        transport,
                        validate,
                        apply,
                    } => Ok((conn, transport, validate, apply)),
                    SlotState::Rejected(RejectReason::Timeout) => Err(GetError::Timeout),
                    SlotState::Rejected(RejectReason::ConnectFailed) => {
                        Err(GetError::ConnectFailed)
                    }
                    SlotState::Rejected(RejectReason::Closed) => Err(GetError::Closed),
                    SlotState::Waiting(_) | SlotState::Done => {
                        unreachable!("poll returns only outcomes")
                    }
                })
            }
        }
    }
}

impl<M: Manager> Drop for Waiter<M> {
    fn drop(&mut self) {
        if !self.done {
            let work = self
                .inner
                .shared
                .abandon(self.inner.now(), self.request, &self.slot);
            self.inner.run(work);
        }
    }
}

/// A borrowed connection; returned to the pool when dropped.
pub struct PooledConn<M: Manager> {
    inner: Arc<Inner<M>>,
    conn: ConnId,
    transport: Option<M::Conn>,
    /// A setting is being applied: if dropped now, the conn is tainted.
    applying: bool,
}

impl<M: Manager> PooledConn<M> {
    /// The pool's name for this connection.
    pub fn id(&self) -> ConnId {
        self.conn
    }

    /// Return it broken: the pool closes it (and opens a replacement if a
    /// waiter needs one).
    pub fn taint(mut self) {
        if let Some(transport) = self.transport.take() {
            let work = self
                .inner
                .shared
                .taint(self.inner.now(), self.conn, transport);
            self.inner.run(work);
        }
    }

    /// Take it out of the pool for good (pgx's Hijack): its slot is free at
    /// once; the caller owns and closes the connection.
    pub fn detach(mut self) -> M::Conn {
        let transport = self.transport.take().expect("present until dropped");
        // The caller owns it now; its close is none of the pool's business.
        self.inner.stop_watching(self.conn);
        let work = self.inner.shared.detach(self.inner.now(), self.conn);
        self.inner.run(work);
        transport
    }
}

impl<M: Manager> Deref for PooledConn<M> {
    type Target = M::Conn;
    fn deref(&self) -> &M::Conn {
        self.transport.as_ref().expect("present until dropped")
    }
}

impl<M: Manager> DerefMut for PooledConn<M> {
    fn deref_mut(&mut self) -> &mut M::Conn {
        self.transport.as_mut().expect("present until dropped")
    }
}

impl<M: Manager> Drop for PooledConn<M> {
    fn drop(&mut self) {
        if let Some(transport) = self.transport.take() {
            let now = self.inner.now();
            let work = if self.applying {
                self.inner.shared.taint(now, self.conn, transport)
            } else {
                self.inner.shared.release(now, self.conn, transport)
            };
            self.inner.run(work);
        }
    }
}

impl<M: Manager> fmt::Debug for PooledConn<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("conn", &self.conn)
            .finish()
    }
}
