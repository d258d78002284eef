//! The pool state machine: connections, waiters, timers, and the rules that
//! move them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::config::{Config, enabled};
use crate::error::{AcquireError, CancelError, CloseError, InputError, ReturnError};
use crate::mutation::{Active, Mutation};
use crate::protocol::{AbortReason, Command, DisconnectReason, Input, RejectReason};
use crate::stats::{Lifecycle, Stats};
use crate::types::{ConnId, RequestId, Setting, Time};

/// Where a connection is, as the pool sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ConnState {
    /// `Open` was emitted; waiting for `Connected` or `ConnectFailed`.
    Opening,
    /// Connected and in the pool, free to grant.
    Idle,
    /// Granted to a caller.
    Borrowed,
}

/// A sans-IO connection pool.
///
/// The pool is a pure state machine: it performs no IO, reads no clock, draws
/// no randomness and spawns nothing. The shell around it (an async runtime, or
/// the simulator) feeds it events and carries out its commands.
///
/// # Method groups
///
/// - Getters: [`stats`](Pool::stats), [`conn_state`](Pool::conn_state),
///   [`conns`](Pool::conns), [`config`](Pool::config).
/// - Inputs: one `handle_*` method per [`Input`] (or [`handle`](Pool::handle)
///   for all of them), and [`handle_timeout`](Pool::handle_timeout). Each
///   takes `now`; time never goes backwards (an earlier `now` is treated as
///   the latest one seen).
/// - Outputs: [`poll_command`](Pool::poll_command) and
///   [`poll_timeout`](Pool::poll_timeout).
///
/// # Drain order
///
/// After every input, drain `poll_command` until `None` and carry the
/// commands out in that order (a `Disconnect` that frees a slot precedes the
/// `Open` that reuses it). Then ask `poll_timeout`, and call `handle_timeout`
/// when that time comes, or at once if it has already passed.
#[derive(Clone, Debug)]
pub struct Pool {
    config: Config,
    capacity: usize,
    lifecycle: Lifecycle,
    close_deadline: Option<Time>,
    now: Time,
    next_conn: u64,
    /// The next waiter's arrival number.
    next_arrival: u64,
    conns: BTreeMap<ConnId, Conn>,
    /// Idle connections, least recently returned first.
    idle: VecDeque<ConnId>,
    /// Waiting acquires, oldest first.
    waiters: VecDeque<Waiter>,
    /// Connections granted with `validate`, not yet reported valid, and
    /// the request each went to (it waits again, first, if the check fails).
    validating: BTreeMap<ConnId, Waiter>,
    timers: Timers,
    /// While set, refilling `min_idle` waits (a connect just failed).
    backoff_until: Option<Time>,
    commands: VecDeque<Command>,
    counts: Counts,
    stats: Stats,
    mutation: Active,
}

#[derive(Clone, Debug)]
struct Conn {
    state: ConnState,
    setting: Option<Setting>,
    /// Armed while opening (connect timeout), idle (idle timeout) and from
    /// connect to retirement (lifetime); kept here so the timer can be found.
    connect_deadline: Option<Time>,
    idle_deadline: Option<Time>,
    lifetime_deadline: Option<Time>,
    /// The lifetime passed while borrowed: retire on return.
    expired: bool,
    /// The transport reported it closed while borrowed: drop on return.
    broken: bool,
    /// When it last became idle (validation is due after `validate_idle_ms`).
    idle_since: Time,
}

impl Conn {
    fn opening(setting: Option<Setting>, connect_deadline: Option<Time>) -> Conn {
        Conn {
            state: ConnState::Opening,
            setting,
            connect_deadline,
            idle_deadline: None,
            lifetime_deadline: None,
            expired: false,
            broken: false,
            idle_since: Time::ZERO,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    /// Arrival order: a waiter sent back (its connection failed its
    /// validation) takes its place again by it.
    arrival: u64,
    request: RequestId,
    setting: Option<Setting>,
    deadline: Option<Time>,
}

#[derive(Clone, Debug, Default)]
struct Counts {
    opening: usize,
    idle: usize,
    borrowed: usize,
}

/// What a timer is for. Timers are kept in one ordered table keyed by
/// (deadline, timer), so the next deadline is the table's first entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Close,
    Backoff,
    Waiter(RequestId),
    Connect(ConnId),
    Idle(ConnId),
    Lifetime(ConnId),
}

#[derive(Clone, Debug, Default)]
struct Timers(BTreeSet<(Time, Timer)>);

impl Timers {
    fn arm(&mut self, at: Option<Time>, timer: Timer) {
        if let Some(at) = at {
            self.0.insert((at, timer));
        }
    }

    fn disarm(&mut self, at: Option<Time>, timer: Timer) {
        if let Some(at) = at {
            self.0.remove(&(at, timer));
        }
    }

    fn next(&self) -> Option<Time> {
        self.0.first().map(|&(at, _)| at)
    }

    /// How many timers are due at `now`.
    fn due(&self, now: Time) -> usize {
        self.0.iter().take_while(|&&(at, _)| at <= now).count()
    }

    fn pop_due(&mut self, now: Time) -> Option<Timer> {
        match self.0.first() {
            Some(&(at, _)) if at <= now => self.0.pop_first().map(|(_, timer)| timer),
            _ => None,
        }
    }
}

impl Pool {
    /// A pool with `config`, made at `now`. If `min_idle` is set, its first
    /// `Open`s are already queued: drain [`poll_command`](Pool::poll_command).
    pub fn new(now: Time, config: Config) -> Pool {
        let capacity = config.max_size;
        let mut pool = Pool {
            config,
            capacity,
            lifecycle: Lifecycle::Open,
            close_deadline: None,
            now,
            next_conn: 0,
            next_arrival: 0,
            conns: BTreeMap::new(),
            idle: VecDeque::new(),
            waiters: VecDeque::new(),
            validating: BTreeMap::new(),
            timers: Timers::default(),
            backoff_until: None,
            commands: VecDeque::new(),
            counts: Counts::default(),
            stats: Stats::default(),
            mutation: Active::default(),
        };
        pool.serve();
        pool
    }

    /// Put one of the seed reports' bugs back (`None`: the reference pool).
    /// Only with the `mutations` feature.
    #[cfg(feature = "mutations")]
    pub fn set_mutation(&mut self, mutation: Option<Mutation>) {
        self.mutation.set(mutation);
    }

    // ----- getters -----

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Gauges and counters; cheap.
    pub fn stats(&self) -> Stats {
        Stats {
            lifecycle: self.lifecycle,
            capacity: self.capacity,
            held: self.held(),
            opening: self.counts.opening,
            idle: self.counts.idle,
            borrowed: self.counts.borrowed,
            waiters: self.waiters.len(),
            ..self.stats.clone()
        }
    }

    /// The latest time the pool has seen.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Where `conn` is, or `None` if the pool does not hold it.
    pub fn conn_state(&self, conn: ConnId) -> Option<ConnState> {
        self.conns.get(&conn).map(|c| c.state)
    }

    /// Every connection the pool holds, by id.
    pub fn conns(&self) -> impl Iterator<Item = (ConnId, ConnState)> + '_ {
        self.conns.iter().map(|(&id, c)| (id, c.state))
    }

    /// Write the pool's state to `sink` for a canonical hash (an explorer's
    /// visited set). The config is left out (it is the same in every state
    /// of one exploration), and so are the id counters and the stats'
    /// counters: they only grow, so no two states of different histories
    /// would meet, and the simulator holds the counters to its own counts
    /// at every step (a pool whose counters drift is caught there). The
    /// gauges and `counts` are left out too: they follow from `conns`.
    pub fn hash_state(&self, sink: &mut dyn crate::StateSink) {
        sink.word(self.capacity as u64);
        sink.word(self.lifecycle as u64);
        sink.opt_time(self.close_deadline);
        sink.word(self.conns.len() as u64);
        for (&id, conn) in &self.conns {
            sink.conn(id);
            sink.word(conn.state as u64);
            sink.word(conn.setting.map_or(u64::MAX, |s| u64::from(s.0)));
            sink.opt_time(conn.connect_deadline);
            sink.opt_time(conn.idle_deadline);
            sink.opt_time(conn.lifetime_deadline);
            sink.word(u64::from(conn.expired) | u64::from(conn.broken) << 1);
            // Only read when an idle connection is granted: outside the
            // idle set it is a stale value, and would keep apart states
            // that act alike.
            if conn.state == ConnState::Idle {
                sink.time(conn.idle_since);
            }
        }
        sink.word(self.idle.len() as u64);
        for &id in &self.idle {
            sink.conn(id);
        }
        // Arrival numbers only order the waiters: hash each one's rank.
        let mut arrivals: Vec<u64> = self
            .waiters
            .iter()
            .chain(self.validating.values())
            .map(|w| w.arrival)
            .collect();
        arrivals.sort_unstable();
        let waiter = |sink: &mut dyn crate::StateSink, w: &Waiter| {
            sink.request(w.request);
            sink.word(arrivals.binary_search(&w.arrival).unwrap_or(usize::MAX) as u64);
            sink.word(w.setting.map_or(u64::MAX, |s| u64::from(s.0)));
            sink.opt_time(w.deadline);
        };
        sink.word(self.waiters.len() as u64);
        for w in &self.waiters {
            waiter(sink, w);
        }
        sink.word(self.validating.len() as u64);
        for (&id, w) in &self.validating {
            sink.conn(id);
            waiter(sink, w);
        }
        sink.word(self.timers.0.len() as u64);
        for &(at, timer) in &self.timers.0 {
            sink.time(at);
            match timer {
                Timer::Close => sink.word(0),
                Timer::Backoff => sink.word(1),
                Timer::Waiter(r) => {
                    sink.word(2);
                    sink.request(r);
                }
                Timer::Connect(c) => {
                    sink.word(3);
                    sink.conn(c);
                }
                Timer::Idle(c) => {
                    sink.word(4);
                    sink.conn(c);
                }
                Timer::Lifetime(c) => {
                    sink.word(5);
                    sink.conn(c);
                }
            }
        }
        sink.opt_time(self.backoff_until);
        // Between steps the command queue is drained; a command left over
        // still makes the state different.
        sink.word(self.commands.len() as u64);
        sink.word(self.mutation.state_word());
    }

    /// Check the pool's own bookkeeping: the gauges agree with the
    /// connections' states, the idle list holds exactly the idle ones, and
    /// every timer belongs to something that is waiting for it (and the
    /// reverse). A failure is a bug in the pool; fuzzers and property tests
    /// call this after every input.
    pub fn check_consistency(&self) -> Result<(), String> {
        // Allocation-free: the simulator calls this after every input.
        let mut counted = (0, 0, 0);
        // Every deadline a conn or waiter holds is in the timer table, and
        // the table holds as many: then it holds nothing else.
        let mut armed = 0;
        let mut expect = |at: Option<Time>, timer: Timer| -> Result<(), String> {
            if let Some(at) = at {
                armed += 1;
                if !self.timers.0.contains(&(at, timer)) {
                    return Err(format!("timer table: missing {timer:?} at {at}"));
                }
            }
            Ok(())
        };
        for (&id, c) in &self.conns {
            match c.state {
                ConnState::Opening => counted.0 += 1,
                ConnState::Idle => counted.1 += 1,
                ConnState::Borrowed => counted.2 += 1,
            }
            expect(c.connect_deadline, Timer::Connect(id))?;
            expect(c.idle_deadline, Timer::Idle(id))?;
            expect(c.lifetime_deadline, Timer::Lifetime(id))?;
            if c.connect_deadline.is_some() && c.state != ConnState::Opening {
                return Err(format!("{id} is {:?} with a connect deadline", c.state));
            }
            if c.idle_deadline.is_some() && c.state != ConnState::Idle {
                return Err(format!("{id} is {:?} with an idle deadline", c.state));
            }
        }
        let c = &self.counts;
        if counted != (c.opening, c.idle, c.borrowed) {
            return Err(format!(
                "gauges (opening, idle, borrowed) = {:?}, conns say {counted:?}",
                (c.opening, c.idle, c.borrowed)
            ));
        }
        // The idle list holds exactly the idle conns: as many, each idle,
        // none twice.
        if self.idle.len() != c.idle {
            return Err(format!(
                "idle list of {}, {} idle conns",
                self.idle.len(),
                c.idle
            ));
        }
        for (i, id) in self.idle.iter().enumerate() {
            if self.conns.get(id).map(|c| c.state) != Some(ConnState::Idle) {
                return Err(format!("idle list holds {id}, which is not idle"));
            }
            if self.idle.iter().skip(i + 1).any(|other| other == id) {
                return Err(format!("idle list holds {id} twice"));
            }
        }
        for (i, w) in self.waiters.iter().enumerate() {
            if self
                .waiters
                .iter()
                .skip(i + 1)
                .any(|o| o.request == w.request)
            {
                return Err(format!("{} waits twice", w.request));
            }
            expect(w.deadline, Timer::Waiter(w.request))?;
        }
        if self.lifecycle == Lifecycle::Closing {
            expect(self.close_deadline, Timer::Close)?;
        }
        expect(self.backoff_until, Timer::Backoff)?;
        if armed != self.timers.0.len() {
            return Err(format!(
                "timer table: {} armed, {armed} expected: {:?}",
                self.timers.0.len(),
                self.timers.0
            ));
        }
        if self.lifecycle != Lifecycle::Open && !self.waiters.is_empty() {
            return Err(format!("{:?} with waiters", self.lifecycle));
        }
        for (conn, w) in &self.validating {
            if self.conns.get(conn).map(|c| c.state) != Some(ConnState::Borrowed) {
                return Err(format!(
                    "{conn} is validated for {}, but not borrowed",
                    w.request
                ));
            }
            if self.waiters.iter().any(|o| o.request == w.request) {
                return Err(format!(
                    "{} waits while {conn} is validated for it",
                    w.request
                ));
            }
        }
        Ok(())
    }

    // ----- inputs -----

    /// Handle any input; the per-input methods below do the work.
    pub fn handle(&mut self, now: Time, input: Input) -> Result<(), InputError> {
        match input {
            Input::Acquire {
                request,
                setting,
                deadline,
            } => self.handle_acquire(now, request, setting, deadline)?,
            Input::Cancel { request } => self.handle_cancel(now, request)?,
            Input::Recycle { conn } => self.handle_recycle(now, conn)?,
            Input::Taint { conn } => self.handle_taint(now, conn)?,
            Input::Detach { conn } => self.handle_detach(now, conn)?,
            Input::Connected { conn } => self.handle_connected(now, conn),
            Input::ConnectFailed { conn } => self.handle_connect_failed(now, conn),
            Input::Closed { conn } => self.handle_closed(now, conn),
            Input::Validated { conn, ok } => self.handle_validated(now, conn, ok)?,
            Input::SetCapacity { capacity } => self.handle_set_capacity(now, capacity),
            Input::Close { deadline } => self.handle_close(now, deadline)?,
        }
        Ok(())
    }

    /// A caller wants a connection. Served at once when it can be (rule 2:
    /// an idle connection with the wanted setting first), else it waits in
    /// FIFO order. After `Close` it is rejected.
    pub fn handle_acquire(
        &mut self,
        now: Time,
        request: RequestId,
        setting: Option<Setting>,
        deadline: Option<Time>,
    ) -> Result<(), AcquireError> {
        // Validate before taking `now` in: a refused input changes nothing,
        // not even the pool's clock (rule 10).
        // A request whose grant is still being validated is not served yet
        // either: a failed validation puts it back in the queue.
        if self.waiters.iter().any(|w| w.request == request)
            || self.validating.values().any(|w| w.request == request)
        {
            return Err(AcquireError::DuplicateRequest(request));
        }
        self.advance(now);
        // (A flipped comparison: every acquire is rejected while open.)
        let closed = self.lifecycle != Lifecycle::Open;
        if closed != self.mutation.is(Mutation::AcquireRejectsWhileOpen) {
            self.reject(request, RejectReason::Closed);
            return Ok(());
        }
        let default_timeout = match self.config.acquire_timeout_ms {
            // pgx before a7cbe744: a zero timeout expired at once.
            0 if self.mutation.is(Mutation::ZeroAcquireTimeoutExpires) => Some(0),
            ms => enabled(ms),
        };
        let mut deadline = deadline.or_else(|| default_timeout.map(|ms| self.now.plus_ms(ms)));
        if self.mutation.is(Mutation::WaiterDeadlineLate) {
            // vitess before #20308: the waiter's timer ran past its context.
            deadline = deadline.map(|d| d.plus_ms(10));
        }
        if self.mutation.is(Mutation::QueuedWaiterUnarmed) && !self.waiters.is_empty() {
            // vitess #20308: only the head of the wait list watched its
            // context; those behind it waited on.
            deadline = None;
        }
        self.timers.arm(deadline, Timer::Waiter(request));
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.waiters.push_back(Waiter {
            arrival,
            request,
            setting,
            deadline,
        });
        if self.mutation.is(Mutation::AcquireSkipsIdle) && !self.idle.is_empty() {
            // vitess #17662: the getter looked at the idle stack before it
            // joined the wait list; a conn returned in between is never
            // offered to it.
            return Ok(());
        }
        self.serve();
        Ok(())
    }

    /// The caller gave up on a waiting request.
    pub fn handle_cancel(&mut self, now: Time, request: RequestId) -> Result<(), CancelError> {
        // Refused before `now` is taken in (rule 10).
        let waiter = self
            .remove_waiter(request)
            .ok_or(CancelError::NotWaiting(request))?;
        self.advance(now);
        self.timers.disarm(waiter.deadline, Timer::Waiter(request));
        self.stats.cancelled += 1;
        Ok(())
    }

    /// A borrowed connection comes back healthy. It is retired if it broke,
    /// expired, or the pool is closing; disconnected if the pool is over
    /// capacity (rule 5); else it serves the next waiter or goes idle.
    pub fn handle_recycle(&mut self, now: Time, conn: ConnId) -> Result<(), ReturnError> {
        // Refused before `now` is taken in (rule 10).
        self.check_borrowed(conn)?;
        self.advance(now);
        // Used and returned: whatever its validation, the grant stood.
        self.validating.remove(&conn);
        let c = &self.conns[&conn];
        let (broken, expired, setting) = (
            c.broken,
            (c.expired || c.lifetime_deadline.is_some_and(|at| at <= self.now))
                // pgx before #2562: a return never looked at the lifetime.
                && !self.mutation.is(Mutation::RecycleIgnoresExpiry),
            c.setting,
        );
        let over_capacity = if self.mutation.is(Mutation::RecycleDisconnectsWhenFull) {
            // (A flipped comparison: `>=` for `>`.)
            self.held() >= self.capacity
        } else {
            self.held() > self.capacity || self.mutation.take_resize_debt()
        };
        if broken && self.mutation.is(Mutation::BrokenReturnKeepsSlot) {
            // hatchet before #4486: the dead conn's wrapper was dropped
            // without releasing it; its slot stays borrowed.
            return Ok(());
        } else if broken {
            // The transport already closed it: nothing to disconnect.
            self.forget(conn);
        } else if expired {
            self.disconnect(conn, DisconnectReason::Lifetime);
            // vitess #11256: the setting did not follow the reopen.
            let setting = match self.mutation.is(Mutation::RecycleReopenDropsSetting) {
                true => None,
                false => setting,
            };
            self.reopen(conn, setting);
        } else if self.lifecycle != Lifecycle::Open
            && !self.mutation.is(Mutation::CloseRecyclesToIdle)
        {
            self.disconnect(conn, DisconnectReason::Closing);
        } else if self.lifecycle != Lifecycle::Open {
            // sqlx before #3217's fix: a conn returned during close landed
            // in the idle set after the drain.
            self.make_idle(conn);
        } else if over_capacity
            && self.mutation.is(Mutation::HandoffWhileOverCapacity)
            && !self.waiters.is_empty()
        {
            // Vitess before #20122: tryReturnConn handed the conn to the
            // next waiter even while active > capacity.
            self.make_idle(conn);
            let conn = self.idle.pop_back().expect("just made idle");
            let waiter = self.waiters.pop_front().expect("checked non-empty");
            self.grant(waiter, conn);
        } else if over_capacity {
            self.disconnect(conn, DisconnectReason::OverCapacity);
        } else {
            self.make_idle(conn);
            if self.mutation.is(Mutation::ReleaseWakesNobody) {
                // bb8 #122: the conn went back to the idle set while the
                // waiters slept on.
                return Ok(());
            }
        }
        self.after_slot_change();
        Ok(())
    }

    /// A borrowed connection comes back broken: it is disconnected, and a
    /// waiter that needs a replacement gets one (rule 9).
    pub fn handle_taint(&mut self, now: Time, conn: ConnId) -> Result<(), ReturnError> {
        // Refused before `now` is taken in (rule 10).
        self.check_borrowed(conn)?;
        self.advance(now);
        self.stats.tainted += 1;
        if self.mutation.is(Mutation::TaintKeepsSlot) {
            // bun before #32099: closing a reserved conn bypassed release.
            return Ok(());
        }
        if self.lifecycle == Lifecycle::Closing && self.mutation.is(Mutation::TaintCompletesClose) {
            // sqlx #3217: a broken return during close ended it early.
            self.disconnect(conn, DisconnectReason::Tainted);
            self.complete_close();
            return Ok(());
        }
        if self.conns[&conn].broken {
            self.forget(conn);
        } else {
            self.disconnect(conn, DisconnectReason::Tainted);
        }
        if self.lifecycle == Lifecycle::Open && self.mutation.is(Mutation::TaintWakesNobody) {
            // bb8 #167: the broken conn's slot was freed, nobody woken.
            return Ok(());
        }
        self.after_slot_change();
        Ok(())
    }

    /// A borrowed connection leaves the pool for good; its slot is free at
    /// once and exactly once (rule 8).
    pub fn handle_detach(&mut self, now: Time, conn: ConnId) -> Result<(), ReturnError> {
        // Refused before `now` is taken in (rule 10).
        self.check_borrowed(conn)?;
        self.advance(now);
        self.stats.detached += 1;
        if self.mutation.is(Mutation::DetachKeepsSlot) {
            // Hatchet before #3701: `poolConn.Conn()` instead of `Hijack()`;
            // the wrapper is never released, so the slot stays borrowed.
            return Ok(());
        }
        self.forget(conn);
        self.after_slot_change();
        Ok(())
    }

    /// The shell validated a connection granted with `validate`. Valid: the
    /// grant stands. Dead: the connection is forgotten (its transport is
    /// gone; the shell drops it) and its request waits again, in its place
    /// by arrival and with its own deadline, for the next connection.
    pub fn handle_validated(
        &mut self,
        now: Time,
        conn: ConnId,
        ok: bool,
    ) -> Result<(), ReturnError> {
        // Refused before `now` is taken in (rule 10).
        if !self.validating.contains_key(&conn) {
            return Err(ReturnError::NotValidating { conn });
        }
        self.advance(now);
        let waiter = self.validating.remove(&conn).expect("checked above");
        if ok {
            return Ok(());
        }
        self.stats.invalidated += 1;
        self.forget(conn);
        if self.lifecycle != Lifecycle::Open {
            self.reject(waiter.request, RejectReason::Closed);
        } else {
            self.timers
                .arm(waiter.deadline, Timer::Waiter(waiter.request));
            let place = if self.mutation.is(Mutation::InvalidRequeuesAtBack) {
                // (A waiter whose connection failed its check lost its
                // place in line.)
                self.waiters.len()
            } else {
                self.waiters.partition_point(|w| w.arrival < waiter.arrival)
            };
            self.waiters.insert(place, waiter);
        }
        self.after_slot_change();
        Ok(())
    }

    /// A connect finished. Only a connection that is opening moves on; a late
    /// `Connected` for one the pool already let go of (Bun's deferred
    /// callback after a synchronous close, or a connect that was aborted) is
    /// stale: it is counted and changes nothing. (After `Abort` the shell
    /// owns closing whatever the connect produced.)
    pub fn handle_connected(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        match self.conns.get_mut(&conn) {
            Some(c) if c.state == ConnState::Opening => {
                self.timers.disarm(c.connect_deadline, Timer::Connect(conn));
                c.connect_deadline = None;
                let lifetime = match self.config.max_lifetime_ms {
                    // pgx before a7cbe744: a zero lifetime expired at once.
                    0 if self.mutation.is(Mutation::ZeroLifetimeExpires) => Some(0),
                    // pgx #2562: retired long before the lifetime.
                    ms if self.mutation.is(Mutation::EarlyRetirement) => enabled(ms / 2),
                    ms => enabled(ms),
                };
                c.lifetime_deadline = lifetime.map(|ms| self.now.plus_ms(ms));
                self.timers.arm(c.lifetime_deadline, Timer::Lifetime(conn));
                self.stats.connected += 1;
                self.end_backoff();
                if self.lifecycle == Lifecycle::Open {
                    self.make_idle(conn);
                } else {
                    self.disconnect(conn, DisconnectReason::Closing);
                }
                self.after_slot_change();
            }
            Some(c)
                if c.state == ConnState::Borrowed
                    && self.mutation.is(Mutation::DuplicateConnectedReadmits) =>
            {
                // (The second report of the handshake made it idle again.)
                self.make_idle(conn);
                self.after_slot_change();
            }
            Some(_) => self.stats.stale_events += 1,
            None if self.mutation.is(Mutation::AcceptStaleConnect) && conn.0 < self.next_conn => {
                // Bun before #30950: #onConnected did not check that the
                // conn was still pending and re-added it to readyConnections.
                self.conns.insert(conn, Conn::opening(None, None));
                self.counts.opening += 1;
                self.make_idle(conn);
                self.after_slot_change();
            }
            None => self.count_ignored(conn),
        }
    }

    /// A connect failed. The oldest waiter hears of it at once (rule 3) and
    /// refilling `min_idle` backs off.
    pub fn handle_connect_failed(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        match self.conn_state(conn) {
            Some(ConnState::Opening) => {
                self.forget(conn);
                self.connect_failed();
            }
            Some(_) => self.stats.stale_events += 1,
            None => self.count_ignored(conn),
        }
    }

    /// The transport or the server closed a connection. An opening one failed
    /// its handshake; an idle one is dropped (and replaced if the floor or a
    /// waiter needs it); a borrowed one is marked broken and dropped when it
    /// comes back.
    pub fn handle_closed(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        match self.conns.get_mut(&conn) {
            Some(c) => match c.state {
                ConnState::Opening if self.mutation.is(Mutation::HandshakeCloseSwallowed) => {
                    // sqlx #4396: a close during the handshake was taken for
                    // a dropped idle conn; nobody heard of the failure.
                    self.stats.connect_failures += 1;
                    self.forget(conn);
                    self.after_slot_change();
                }
                ConnState::Opening => {
                    self.forget(conn);
                    self.connect_failed();
                }
                ConnState::Idle => {
                    self.stats.closed_by_server += 1;
                    self.forget(conn);
                    self.after_slot_change();
                }
                ConnState::Borrowed if c.broken => self.stats.stale_events += 1,
                ConnState::Borrowed => {
                    self.stats.closed_by_server += 1;
                    c.broken = true;
                }
            },
            None => self.count_ignored(conn),
        }
    }

    /// Grow or shrink the pool. Growth serves waiters at once; a shrink closes
    /// idle connections and aborts connects until the pool fits, and borrowed
    /// connections are disconnected as they come back. Ignored after `Close`.
    pub fn handle_set_capacity(&mut self, now: Time, capacity: usize) {
        self.advance(now);
        if self.lifecycle != Lifecycle::Open {
            if !self.mutation.is(Mutation::SetCapacityRevivesClosed) {
                return;
            }
            // vitess #20158: SetCapacity racing Close reopened the pool.
            self.timers.disarm(self.close_deadline.take(), Timer::Close);
            self.lifecycle = Lifecycle::Open;
        }
        if capacity < self.capacity {
            // deadpool #380: a shrink's count of connections to retire,
            // never cancelled by a later grow.
            self.mutation.add_resize_debt(self.capacity - capacity);
        }
        self.capacity = capacity;
        self.serve();
    }

    /// Close the pool (rule 6): reject every waiter, abort every connect and
    /// disconnect every idle connection now; disconnect borrowed connections
    /// as they come back; complete when nothing is held or at `deadline`.
    pub fn handle_close(&mut self, now: Time, deadline: Option<Time>) -> Result<(), CloseError> {
        // Refused before `now` is taken in (rule 10).
        if self.lifecycle != Lifecycle::Open {
            return Err(CloseError::AlreadyClosing);
        }
        self.advance(now);
        self.lifecycle = Lifecycle::Closing;
        let deadline = if self.mutation.is(Mutation::CloseDeadlineUnarmed) {
            // bun #32095: a forced close waited for the handshake forever.
            None
        } else if self.mutation.is(Mutation::ZeroCloseTimeoutAsNone) {
            // bun #32038: a zero timeout read as none.
            deadline.filter(|&d| d > self.now)
        } else {
            deadline
        };
        self.close_deadline = deadline;
        self.timers.arm(deadline, Timer::Close);
        // vitess #20122: waiters were left to the waiter-to-waiter handoff.
        while !self.mutation.is(Mutation::CloseKeepsWaiters)
            && let Some(w) = self.waiters.pop_front()
        {
            self.timers.disarm(w.deadline, Timer::Waiter(w.request));
            self.reject(w.request, RejectReason::Closed);
        }
        let opening: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == ConnState::Opening)
            .map(|(&id, _)| id)
            .collect();
        // vitess #21189: Close did not cancel connects being dialled.
        if !self.mutation.is(Mutation::CloseSparesConnects) {
            for conn in opening {
                self.abort(conn, AbortReason::Closing);
            }
        }
        while let Some(conn) = self.idle.front().copied() {
            self.disconnect(conn, DisconnectReason::Closing);
        }
        self.end_backoff();
        self.maybe_complete_close();
        Ok(())
    }

    /// Fire the timers due at `now`: those due when it is called. A timer
    /// armed meanwhile for `now` or earlier waits for the next call (then
    /// `poll_timeout` says `now` again), so one call does bounded work even
    /// if firing keeps arming timers that are already due.
    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now);
        let due = self.timers.due(self.now);
        for _ in 0..due {
            match self.timers.pop_due(self.now) {
                Some(timer) => self.fire(timer),
                None => break,
            }
        }
    }

    // ----- outputs -----

    /// The next command for the shell, in decision order.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When the pool next wants `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    // ----- the rules -----

    fn advance(&mut self, now: Time) {
        self.now = self.now.max(now);
    }

    fn held(&self) -> usize {
        self.counts.opening + self.counts.idle + self.counts.borrowed
    }

    fn emit(&mut self, command: Command) {
        self.commands.push_back(command);
    }

    /// Serve waiters, keep the idle floor, and fit the capacity. Every event
    /// that frees a slot or yields a connection ends here (rule 3).
    fn serve(&mut self) {
        if self.lifecycle != Lifecycle::Open {
            return;
        }
        if self.held() > self.capacity {
            self.shrink();
            if self.held() > self.capacity {
                return; // only borrowed conns left over: they shrink on return
            }
        }
        // Strictly FIFO over waiters (rule 2): the oldest waiter takes the
        // most recently returned idle connection with its setting, else any
        // idle connection, its setting re-applied (reusing beats making a
        // waiter sleep through a connect). Matching settings across waiters
        // first would let younger waiters whose setting matches overtake an
        // older one forever (it sleeps while it could be served, rule 3).
        while !self.idle.is_empty() && !self.waiters.is_empty() {
            let next = self.next_waiter();
            let want = self.waiters[next].setting;
            let pos = self
                .idle
                .iter()
                .rposition(|id| self.conns[id].setting == want)
                .unwrap_or(self.idle.len() - 1);
            let conn = self.idle.remove(pos).expect("position is in range");
            let waiter = self.waiters.remove(next).expect("index is in range");
            self.grant(waiter, conn);
        }
        // Then connects: one per waiter not yet covered by a connect in
        // flight, and enough to keep the idle floor.
        let floor = match self.backoff_until {
            Some(_) => 0,
            // HikariCP #1111: the floor was refilled only on demand.
            None if self.mutation.is(Mutation::FloorRefillWaitsForAcquire)
                && self.waiters.is_empty() =>
            {
                0
            }
            None => self
                .config
                .min_idle
                .min(self.capacity)
                .saturating_sub(self.counts.idle),
        };
        let wanted = self.waiters.len().max(floor);
        let mut opened = 0;
        loop {
            // bb8 before f02f40f: every wakeup opened anew, blind to the
            // connects already in flight.
            let in_flight = match self.mutation.is(Mutation::OpenPerWakeup) {
                true => opened,
                false => self.counts.opening,
            };
            if in_flight >= wanted || !self.has_room() {
                break;
            }
            let setting = self.waiters.get(in_flight).and_then(|w| w.setting);
            self.open(setting, None);
            opened += 1;
        }
    }

    /// The waiter served next: the oldest (rule 2).
    fn next_waiter(&self) -> usize {
        if self.mutation.is(Mutation::NewestWaiterFirst) {
            // sqlx before `fair = true` (#622): no order among waiters.
            return self.waiters.len() - 1;
        }
        if self.mutation.is(Mutation::ServePrefersSettingMatch)
            && let Some(&newest) = self.idle.back()
        {
            // pgcat #444: a waiter whose setting matched jumped the queue.
            let setting = self.conns[&newest].setting;
            if let Some(i) = self.waiters.iter().position(|w| w.setting == setting) {
                return i;
            }
        }
        0
    }

    /// Whether one more connection fits the capacity.
    fn has_room(&self) -> bool {
        if self.mutation.is(Mutation::ZeroCapacityUnlimited) && self.capacity == 0 {
            // pg_doorman #139: a quota of 0 read as unlimited.
            return true;
        }
        if self.mutation.is(Mutation::FloorFillIgnoresCapacity) {
            // pgx #1660: the fill counted idle and connecting, not borrowed.
            return self.counts.opening + self.counts.idle < self.capacity;
        }
        self.held() < self.capacity
    }

    /// Over capacity: close idle connections (oldest first), then abort
    /// connects (newest first), until the pool fits or only borrowed
    /// connections are left.
    fn shrink(&mut self) {
        while self.held() > self.capacity {
            if let Some(conn) = self.idle.front().copied() {
                self.disconnect(conn, DisconnectReason::OverCapacity);
            } else if let Some(conn) = self.newest_opening() {
                self.abort(conn, AbortReason::OverCapacity);
            } else if self.mutation.is(Mutation::ShrinkReapsBorrowed)
                && let Some(conn) = self.any_borrowed()
            {
                // bun #30646: the reaper closed a conn in use.
                self.disconnect(conn, DisconnectReason::OverCapacity);
            } else {
                break;
            }
        }
    }

    fn any_borrowed(&self) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| c.state == ConnState::Borrowed)
            .map(|(&id, _)| id)
    }

    fn newest_opening(&self) -> Option<ConnId> {
        self.conns
            .iter()
            .rev()
            .find(|(_, c)| c.state == ConnState::Opening)
            .map(|(&id, _)| id)
    }

    /// A slot was freed or a connection became available.
    fn after_slot_change(&mut self) {
        match self.lifecycle {
            Lifecycle::Open => self.serve(),
            Lifecycle::Closing => self.maybe_complete_close(),
            Lifecycle::Closed => {}
        }
    }

    fn connect_failed(&mut self) {
        self.stats.connect_failures += 1;
        // bb8 #141: the error was logged, the waiter left to its timeout.
        if !self.mutation.is(Mutation::ConnectErrorSwallowed)
            && let Some(w) = self.waiters.pop_front()
        {
            self.timers.disarm(w.deadline, Timer::Waiter(w.request));
            self.reject(w.request, RejectReason::ConnectFailed);
        }
        // sqlx #3513: no backoff; every failure refilled the floor at once.
        if let Some(ms) = enabled(self.config.reconnect_backoff_ms)
            && self.backoff_until.is_none()
            && self.lifecycle == Lifecycle::Open
            && !self.mutation.is(Mutation::BackoffNeverStarts)
        {
            let until = self.now.plus_ms(ms);
            self.backoff_until = Some(until);
            self.timers.arm(Some(until), Timer::Backoff);
        }
        if self.lifecycle == Lifecycle::Open && self.mutation.is(Mutation::FailedConnectWakesNobody)
        {
            // puddle 1.1.3: the failed create freed its slot silently.
            return;
        }
        self.after_slot_change();
    }

    /// Replace a connection retired at its max lifetime with one that keeps
    /// its setting, when the pool is open, the idle floor needs it and no
    /// reconnect backoff runs.
    ///
    /// Only the floor is refilled: reopening every retired connection would
    /// keep an idle pool at its high-water mark forever whenever
    /// `max_lifetime_ms < idle_timeout_ms` (a fresh connection never gets old
    /// enough to idle out), which is the footprint leak of seed 004. Waiters
    /// are served by `serve`, with their own settings.
    fn reopen(&mut self, old: ConnId, setting: Option<Setting>) {
        let floor = self.config.min_idle.min(self.capacity);
        // Vitess before #20122 reopened with a context Close could not
        // cancel, so a reopen went ahead after Close began.
        let open =
            self.lifecycle == Lifecycle::Open || self.mutation.is(Mutation::ReopenIgnoresClose);
        // puddle 2.2.1: a replacement did not check the capacity.
        let room = self.held() < self.capacity || self.mutation.is(Mutation::ReopenIgnoresCapacity);
        // vitess #20122 (3): every retired conn was reopened.
        let needed = self.counts.idle + self.counts.opening < floor
            || self.mutation.is(Mutation::ReopenIgnoresFloor);
        // A reopen refills the floor: like any refill, it waits out the
        // reconnect backoff (the backoff's end refills the floor).
        // sqlx #3513: reconnects ignored the failing server.
        let backed_off =
            self.backoff_until.is_some() && !self.mutation.is(Mutation::ReopenIgnoresBackoff);
        // vitess #20122 (4): the refill, not the reopen, replaced the conn.
        let reopens = !self.mutation.is(Mutation::LifetimeRefillDropsSetting);
        if open && room && needed && !backed_off && reopens {
            // Vitess before #20122: connReopen read Setting() after replacing
            // the conn, so the reopened conn came back clean.
            let setting = if self.mutation.is(Mutation::ReopenDropsSetting) {
                None
            } else {
                setting
            };
            self.stats.reopened += 1;
            self.open(setting, Some(old));
        }
    }

    fn open(&mut self, setting: Option<Setting>, replaces: Option<ConnId>) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let timeout = match self.config.connect_timeout_ms {
            // vitess #20080: a hung dial held its slot; no timer ended it.
            _ if self.mutation.is(Mutation::ConnectTimeoutUnarmed) => None,
            // vitess #20079: the background reopen dialled without one.
            _ if replaces.is_some() && self.mutation.is(Mutation::ReopenWithoutTimeout) => None,
            // pgx before a7cbe744: a zero timeout expired at once.
            0 if self.mutation.is(Mutation::ZeroConnectTimeoutExpires) => Some(0),
            ms => enabled(ms),
        };
        let connect_deadline = timeout.map(|ms| self.now.plus_ms(ms));
        self.timers.arm(connect_deadline, Timer::Connect(conn));
        self.conns
            .insert(conn, Conn::opening(setting, connect_deadline));
        self.counts.opening += 1;
        self.stats.opened += 1;
        self.emit(Command::Open {
            conn,
            setting,
            replaces,
        });
    }

    fn grant(&mut self, waiter: Waiter, conn: ConnId) {
        self.timers
            .disarm(waiter.deadline, Timer::Waiter(waiter.request));
        let c = self.conns.get_mut(&conn).expect("granted conn is held");
        // Idle long enough that the server may have closed it unseen: the
        // shell pings it first.
        let validate = enabled(self.config.validate_idle_ms)
            .is_some_and(|ms| self.now.millis_since(c.idle_since) >= ms)
            // bb8 with test_on_check_out = false: never checked.
            && !self.mutation.is(Mutation::SkipValidation)
            // (A check skipped on one path: the setting's apply will fail on
            // a dead conn anyway, it was thought; a reset is not a check.)
            && !(c.setting != waiter.setting && self.mutation.is(Mutation::ValidationSkippedOnApply));
        debug_assert_eq!(c.state, ConnState::Idle);
        self.timers.disarm(c.idle_deadline, Timer::Idle(conn));
        c.idle_deadline = None;
        c.state = ConnState::Borrowed;
        let mut apply_setting = c.setting != waiter.setting;
        if self.mutation.is(Mutation::GrantSkipsReset) && waiter.setting.is_none() {
            // pgbouncer #418: no reset for a client that wants a clean
            // session; the last client's state leaks to it.
            apply_setting = false;
        }
        c.setting = waiter.setting;
        self.counts.idle -= 1;
        self.counts.borrowed += 1;
        self.stats.granted += 1;
        if validate {
            self.stats.validations += 1;
            self.validating.insert(conn, waiter);
        }
        self.emit(Command::Grant {
            request: waiter.request,
            conn,
            setting: waiter.setting,
            apply_setting,
            validate,
        });
    }

    fn reject(&mut self, request: RequestId, reason: RejectReason) {
        self.stats.rejected += 1;
        if reason == RejectReason::Timeout {
            self.stats.timed_out += 1;
        }
        self.emit(Command::Reject { request, reason });
    }

    /// A just connected or returned connection becomes idle.
    fn make_idle(&mut self, conn: ConnId) {
        let c = self.conns.get_mut(&conn).expect("conn is held");
        let returned = c.state == ConnState::Borrowed;
        match c.state {
            ConnState::Opening => self.counts.opening -= 1,
            ConnState::Borrowed => self.counts.borrowed -= 1,
            ConnState::Idle => return,
        }
        c.idle_since = self.now;
        c.state = ConnState::Idle;
        let timeout = match self.config.idle_timeout_ms {
            // HikariCP #1256: a returned conn was never timed out.
            _ if returned && self.mutation.is(Mutation::RecycleSkipsIdleTimer) => None,
            // bun #17178: a fresh conn was never timed out.
            _ if !returned && self.mutation.is(Mutation::ConnectSkipsIdleTimer) => None,
            // pg_doorman's idle_timeout=0: a zero timeout expired at once.
            0 if self.mutation.is(Mutation::ZeroIdleTimeoutExpires) => Some(0),
            ms => enabled(ms),
        };
        c.idle_deadline = timeout.map(|ms| self.now.plus_ms(ms));
        self.timers.arm(c.idle_deadline, Timer::Idle(conn));
        self.counts.idle += 1;
        self.idle.push_back(conn);
    }

    fn end_backoff(&mut self) {
        self.timers
            .disarm(self.backoff_until.take(), Timer::Backoff);
    }

    fn disconnect(&mut self, conn: ConnId, reason: DisconnectReason) {
        self.forget(conn);
        self.stats.disconnected += 1;
        self.emit(Command::Disconnect { conn, reason });
    }

    fn abort(&mut self, conn: ConnId, reason: AbortReason) {
        self.forget(conn);
        self.stats.aborted += 1;
        self.emit(Command::Abort { conn, reason });
    }

    /// Drop a connection from every table; its slot is free.
    fn forget(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.validating.remove(&conn);
        self.timers.disarm(c.connect_deadline, Timer::Connect(conn));
        self.timers.disarm(c.idle_deadline, Timer::Idle(conn));
        self.timers
            .disarm(c.lifetime_deadline, Timer::Lifetime(conn));
        match c.state {
            ConnState::Opening => self.counts.opening -= 1,
            ConnState::Idle => {
                self.counts.idle -= 1;
                if let Some(pos) = self.idle.iter().position(|&id| id == conn) {
                    self.idle.remove(pos);
                }
            }
            ConnState::Borrowed => self.counts.borrowed -= 1,
        }
    }

    fn maybe_complete_close(&mut self) {
        let held = match self.mutation.is(Mutation::CloseCompletesEarly) {
            // sqlx before the #3217 fix: close returned with conns still out.
            true => self.counts.opening + self.counts.idle,
            false => self.held(),
        };
        if self.lifecycle == Lifecycle::Closing && held == 0 {
            self.complete_close();
        }
    }

    fn complete_close(&mut self) {
        self.timers.disarm(self.close_deadline, Timer::Close);
        self.lifecycle = Lifecycle::Closed;
        self.emit(Command::CloseComplete {
            leaked: self.counts.borrowed,
        });
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::Close => {
                if self.lifecycle == Lifecycle::Closing {
                    self.complete_close();
                }
            }
            Timer::Backoff => {
                self.backoff_until = None;
                // psycopg_pool #1315: the end of the backoff refilled nothing.
                if !self.mutation.is(Mutation::BackoffNeverRefills) {
                    self.serve();
                }
            }
            Timer::Waiter(request) => {
                if self.remove_waiter(request).is_some() {
                    self.reject(request, RejectReason::Timeout);
                }
            }
            Timer::Connect(conn) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.connect_deadline = None;
                    self.abort(conn, AbortReason::ConnectTimeout);
                    if self.mutation.is(Mutation::ConnectTimeoutWakesNobody) {
                        // deadpool's pool_drained: the timed-out create was
                        // counted, and nobody was told or woken.
                        self.stats.connect_failures += 1;
                        return;
                    }
                    self.connect_failed();
                }
            }
            Timer::Idle(conn) => {
                let floor = self.config.min_idle.min(self.capacity);
                // psycopg_pool #370: the reaper ignored the floor.
                let above_floor =
                    self.counts.idle > floor || self.mutation.is(Mutation::IdleReapsFloor);
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.idle_deadline = None;
                // Part of the floor: it stays, with no timer. Re-arming would
                // wake the pool every period for nothing; any conn that later
                // goes idle above the floor brings its own timer.
                if above_floor {
                    self.disconnect(conn, DisconnectReason::IdleTimeout);
                }
            }
            Timer::Lifetime(conn) => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.lifetime_deadline = None;
                match c.state {
                    ConnState::Borrowed if self.mutation.is(Mutation::LifetimeReapsBorrowed) => {
                        // bun #30646: the max-lifetime reaper closed a conn
                        // in use.
                        self.disconnect(conn, DisconnectReason::Lifetime);
                        self.serve();
                    }
                    // bb8 before 8210b0e: a busy conn's lifetime was never
                    // enforced.
                    ConnState::Borrowed if self.mutation.is(Mutation::LifetimeSparesBorrowed) => {}
                    // A borrowed connection is never disconnected by a timer.
                    ConnState::Borrowed => c.expired = true,
                    ConnState::Idle if self.mutation.is(Mutation::ReopenLeavesIdle) => {
                        // vitess #18967: the idle worker retired the conn
                        // while it stayed on the idle stack for a get to pop.
                        self.stats.disconnected += 1;
                        self.emit(Command::Disconnect {
                            conn,
                            reason: DisconnectReason::Lifetime,
                        });
                    }
                    ConnState::Idle => {
                        let setting = c.setting;
                        self.disconnect(conn, DisconnectReason::Lifetime);
                        self.reopen(conn, setting);
                        self.serve();
                    }
                    ConnState::Opening => {}
                }
            }
        }
    }

    fn check_borrowed(&self, conn: ConnId) -> Result<(), ReturnError> {
        match self.conn_state(conn) {
            Some(ConnState::Borrowed) => Ok(()),
            state => Err(ReturnError::NotBorrowed { conn, state }),
        }
    }

    fn remove_waiter(&mut self, request: RequestId) -> Option<Waiter> {
        let pos = self.waiters.iter().position(|w| w.request == request)?;
        self.waiters.remove(pos)
    }

    fn count_ignored(&mut self, conn: ConnId) {
        if conn.0 < self.next_conn {
            self.stats.stale_events += 1;
        } else {
            self.stats.unknown_events += 1;
        }
    }
}
