//! The simulated world around a pool: virtual clock, backend sessions, the
//! I/O queue of backend signals, clients, and the ground truth the checkers
//! compare the pool with.
//!
//! The world is a pure function of the transitions it is given: it owns no
//! RNG. Drivers (the seeded generator, a scenario file, the healed liveness
//! autopilot) choose the transitions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use pool_core::{
    Command, Config, ConnId, ConnState, Input, RejectReason, RequestId, Setting, Time,
};
use serde::{Deserialize, Serialize};

use crate::invariant::{Invariant, Violation};

mod check;
use crate::pool::SimPool;
use crate::trace::{Event, Keep, Target, Trace};
use crate::transition::{Step, Transition};
use check::tally;

/// The world's own options (the pool's are a `pool_core::Config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorldConfig {
    /// Clients that acquire connections; transitions name them modulo this.
    pub clients: u32,
    /// The server refuses a connect while this many sessions are open
    /// (Postgres' per-role CONNECTION LIMIT, SQLSTATE 53300); 0: no limit.
    pub role_conn_limit: u32,
    /// Slack on every liveness deadline: how late, past its own deadline,
    /// a pool may be before it counts as stalled.
    pub liveness_bound_ms: u64,
    /// In the liveness phase: how long a connect takes.
    pub heal_connect_latency_ms: u64,
    /// In the liveness phase: how long a client holds a connection.
    pub heal_hold_ms: u64,
    /// In the liveness phase: the deadline of each probe acquire.
    pub probe_timeout_ms: u64,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            clients: 4,
            role_conn_limit: 0,
            liveness_bound_ms: 1_000,
            heal_connect_latency_ms: 5,
            heal_hold_ms: 10,
            probe_timeout_ms: 1_000,
        }
    }
}

/// A backend signal for the pool, waiting in the I/O queue until delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal {
    pub kind: SignalKind,
    pub conn: ConnId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalKind {
    Connected,
    ConnectFailed,
    Closed,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            SignalKind::Connected => "Connected",
            SignalKind::ConnectFailed => "ConnectFailed",
            SignalKind::Closed => "Closed",
        };
        write!(f, "{kind}({})", self.conn)
    }
}

/// A queued signal and its arrival number (drivers plan deliveries by it).
#[derive(Clone, Copy, Debug)]
pub struct Queued {
    pub seq: u64,
    pub signal: Signal,
}

/// The server side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Session {
    Connecting,
    Open,
    Closed,
}

/// Where a connection is by the protocol between pool and world: what the
/// pool has been told and has said. A correct pool's own view matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// `Open` was emitted; `Connected` or a failure not yet delivered.
    Opening,
    /// In the pool, free to grant: connected, or returned healthy.
    Pooled,
    /// Granted to a client.
    Borrowed { client: u32 },
    /// Detached by a client; no longer the pool's.
    Detached { client: u32 },
    /// Returned tainted while its session is open: the pool must disconnect it.
    Condemned,
}

/// Ground truth for one connection. Connections leave the table once the
/// pool is rid of them by the protocol (disconnected, aborted, or told they
/// closed) and their session is closed.
#[derive(Clone, Debug)]
pub struct ConnTruth {
    pub view: View,
    pub session: Session,
    /// The setting the server session actually carries.
    pub setting: Option<Setting>,
    /// For a borrowed connection: the pool was told its session closed.
    pub closure_known: bool,
    pub opened_at: Time,
    /// Last time a client used it (for the server's idle-session timeout).
    pub last_active: Time,
}

/// What a client is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    Idle,
    Waiting {
        request: RequestId,
    },
    Holding {
        conn: ConnId,
        since: Time,
    },
    /// Holds a connection it detached (LISTEN), outside the pool.
    Listening {
        conn: ConnId,
    },
}

#[derive(Clone, Debug)]
pub struct Client {
    pub state: ClientState,
    /// Its current acquire is a liveness probe.
    pub probe: bool,
}

/// Something that happened which a driver may want to plan around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The pool asked for a connect.
    Opened(ConnId),
    /// A backend signal was queued.
    Queued(u64),
    /// A client is waiting on `request`.
    Waiting {
        client: u32,
        request: RequestId,
    },
    Granted {
        client: u32,
    },
    /// A client has nothing (again): after release, rejection, cancel...
    ClientIdle {
        client: u32,
    },
    /// The server killed a client's detached (LISTEN) connection.
    ListenerLost {
        client: u32,
    },
}

/// Which phase the run is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Faults on, driven by a generator or a scenario.
    Safety,
    /// Faults healed at `since`: the pool must converge.
    Liveness { since: Time },
}

/// Close as the world saw it.
#[derive(Clone, Copy, Debug)]
pub struct CloseTruth {
    pub issued_at: Time,
    pub deadline: Option<Time>,
    pub completed_at: Option<Time>,
    /// Since when nothing has been held while close is still incomplete.
    idle_since: Option<Time>,
}

/// A shrink in progress, for `capacity-stalled`.
#[derive(Debug)]
struct ShrinkWatch {
    /// Connections borrowed when held first exceeded capacity, not yet back.
    outstanding: BTreeSet<ConnId>,
    /// When the last of them came back.
    all_back_at: Option<Time>,
}

/// Counts of the ground truth, taken at a check.
#[derive(Clone, Copy, Debug, Default)]
pub struct Census {
    pub opening: usize,
    pub pooled: usize,
    pub borrowed: usize,
    /// Server sessions (connecting or open) of the pool, detached excluded.
    pub sessions: usize,
    /// All open sessions at the server, detached included (the role limit).
    pub open_sessions: usize,
}

impl Census {
    pub fn held(&self) -> usize {
        self.opening + self.pooled + self.borrowed
    }
}

/// How many checks ran, per invariant, and other run counters.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub checks: [u64; Invariant::ALL.len()],
    pub steps: u64,
    pub skipped: u64,
    pub timeouts: u64,
    pub inputs: u64,
    pub commands: u64,
    /// Faults fired, by name, for the summary.
    pub faults: BTreeMap<&'static str, u64>,
}

/// The world. `P` is the pool under test.
#[derive(Debug)]
pub struct World<P> {
    pool: P,
    pool_config: Config,
    config: WorldConfig,
    now: Time,
    phase: Phase,
    capacity: usize,
    close: Option<CloseTruth>,
    conns: BTreeMap<ConnId, ConnTruth>,
    /// Settings of connections that left the table during the current
    /// input, so a reopen can be checked against the connection it replaces.
    retired: Vec<(ConnId, Option<Setting>)>,
    inbox: Vec<Queued>,
    /// Signals queued by the step being applied, traced after it.
    queued_by_step: Vec<Signal>,
    next_signal: u64,
    clients: Vec<Client>,
    /// Waiting requests: their client and the setting they asked for.
    waiting: BTreeMap<RequestId, (u32, Option<Setting>)>,
    /// Waiting requests by effective deadline, for `waiter-stalled`.
    deadlines: BTreeSet<(Time, RequestId)>,
    next_request: u64,
    shrink: Option<ShrinkWatch>,
    notices: Vec<Notice>,
    trace: Trace,
    counters: Counters,
    violation: Option<Violation>,
    scratch: Vec<(ConnId, ConnState)>,
}

impl<P: SimPool> World<P> {
    /// A world around `pool`, which was built from `pool_config`.
    pub fn new(pool: P, pool_config: Config, config: WorldConfig, keep: Keep) -> World<P> {
        let clients = (0..config.clients)
            .map(|_| Client {
                state: ClientState::Idle,
                probe: false,
            })
            .collect();
        let mut world = World {
            capacity: pool_config.max_size,
            pool,
            pool_config,
            config,
            now: Time::ZERO,
            phase: Phase::Safety,
            close: None,
            conns: BTreeMap::new(),
            retired: Vec::new(),
            inbox: Vec::new(),
            queued_by_step: Vec::new(),
            next_signal: 0,
            clients,
            waiting: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            next_request: 0,
            shrink: None,
            notices: Vec::new(),
            trace: Trace::new(keep),
            counters: Counters::default(),
            violation: None,
            scratch: Vec::new(),
        };
        // A pool may act on creation (filling min_idle).
        world.settle();
        world
    }

    // ----- read access for drivers, checkers and reports -----

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn pool(&self) -> &P {
        &self.pool
    }

    pub fn pool_config(&self) -> &Config {
        &self.pool_config
    }

    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn close(&self) -> Option<CloseTruth> {
        self.close
    }

    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    pub fn conns(&self) -> &BTreeMap<ConnId, ConnTruth> {
        &self.conns
    }

    pub fn inbox(&self) -> &[Queued] {
        &self.inbox
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn into_trace(self) -> Trace {
        self.trace
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Connect attempts in flight at the server, by connection id.
    pub fn attempts(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.sessions_in(Session::Connecting)
    }

    /// Open server sessions (detached included), by connection id.
    pub fn open_sessions(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.sessions_in(Session::Open)
    }

    fn sessions_in(&self, session: Session) -> impl Iterator<Item = ConnId> + '_ {
        self.conns
            .iter()
            .filter(move |(_, c)| c.session == session)
            .map(|(&id, _)| id)
    }

    /// The ground-truth counts now.
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for c in self.conns.values() {
            tally(&mut census, c);
        }
        census
    }

    /// The pool's next timer.
    pub fn pool_timeout(&self) -> Option<Time> {
        self.pool.poll_timeout()
    }

    // ----- driving -----

    /// Apply one step: advance the clock (firing the pool's timers), then the
    /// transition. Does nothing once an invariant has broken.
    pub fn apply(&mut self, step: &Step) -> Target {
        if self.violation.is_some() {
            return Target::Skipped("run already failed");
        }
        self.advance_to(step.at);
        if self.violation.is_some() {
            return Target::Skipped("run already failed");
        }
        self.counters.steps += 1;
        let index = self.counters.steps;
        let (target, input) = self.resolve(&step.transition);
        if let Target::Skipped(_) = target {
            self.counters.skipped += 1;
        }
        self.trace.push(
            self.now,
            Event::Step {
                index,
                transition: step.transition.clone(),
                target,
            },
        );
        for signal in self.queued_by_step.drain(..) {
            self.trace.push(self.now, Event::Signal(signal));
        }
        if let Some(input) = input {
            self.send(input);
        } else {
            self.check_state();
        }
        target
    }

    /// Move the clock to `at`, firing the pool's timers on the way, each at
    /// its own time.
    pub fn advance_to(&mut self, at: Time) {
        while self.violation.is_none() {
            match self.pool.poll_timeout() {
                Some(due) if due <= at => {
                    self.now = self.now.max(due);
                    self.fire_timers();
                }
                _ => break,
            }
        }
        if at > self.now {
            self.now = at;
            self.check_state();
        }
    }

    /// Enter the liveness phase: faults are healed from now on.
    pub fn heal(&mut self) {
        self.phase = Phase::Liveness { since: self.now };
        self.trace
            .push(self.now, Event::Phase("liveness phase: faults healed"));
    }

    /// Mark `client`'s next acquire as a liveness probe.
    pub fn mark_probe(&mut self, client: u32) {
        if let Some(c) = self.clients.get_mut(client as usize) {
            c.probe = true;
        }
    }

    /// The end of the run: the last liveness checks (the idle footprint).
    pub fn finish(&mut self) {
        if self.violation.is_some() {
            return;
        }
        self.check_state();
        if self.violation.is_some() || !matches!(self.phase, Phase::Liveness { .. }) {
            return;
        }
        // Faults are healed and capacity is free, yet requests still wait.
        self.count(Invariant::Starved);
        let census = self.census();
        let limit = self.config.role_conn_limit as usize;
        let detached = self
            .conns
            .values()
            .filter(|c| matches!(c.view, View::Detached { .. }) && c.session == Session::Open)
            .count();
        let room = limit == 0 || detached < limit;
        if let Some((&request, _)) = self.waiting.first_key_value()
            && self.close.is_none()
            && census.borrowed < self.capacity
            && room
        {
            let detail = format!(
                "{request} still waits at the end of the liveness phase with {} of capacity {} borrowed",
                census.borrowed, self.capacity
            );
            return self.violate(Invariant::Starved, detail);
        }
        self.count(Invariant::Footprint);
        let closed = self.close.is_some_and(|c| c.completed_at.is_some());
        let drains = closed || self.pool_config.idle_timeout_ms > 0;
        let floor = if closed {
            0
        } else {
            self.pool_config.min_idle.min(self.capacity)
        };
        if drains && census.sessions > floor {
            self.violate(
                Invariant::Footprint,
                format!(
                    "the pool still has {} server sessions after the liveness phase; its floor is {floor}",
                    census.sessions
                ),
            );
        }
    }

    // ----- transitions -----

    /// What a transition applies to, and the pool input it makes (if any).
    /// Signals it queues go to `queued_by_step` for the trace.
    fn resolve(&mut self, transition: &Transition) -> (Target, Option<Input>) {
        match *transition {
            Transition::Acquire {
                client,
                setting,
                timeout_ms,
            } => self.acquire(client, setting.map(Setting), timeout_ms),
            Transition::Cancel { client } => self.cancel(client),
            Transition::Release { client } => self.give_back(client, Return::Release),
            Transition::Taint { client } => self.give_back(client, Return::Taint),
            Transition::Detach { client } => self.give_back(client, Return::Detach),
            Transition::Unlisten { client } => self.unlisten(client),
            Transition::ConnectOk { attempt } => self.answer_connect(attempt, Answer::Ok),
            Transition::ConnectFail { attempt } => self.answer_connect(attempt, Answer::Fail),
            Transition::ReadyThenFin { attempt } => {
                self.answer_connect(attempt, Answer::ReadyThenFin)
            }
            Transition::Kill { session } => match nth(|| self.open_sessions(), session) {
                Some(conn) => {
                    self.fault("kill");
                    self.kill(conn);
                    (Target::Conn(conn), None)
                }
                None => (Target::Skipped("no open session"), None),
            },
            Transition::KillAll => {
                let open: Vec<ConnId> = self.open_sessions().collect();
                if open.is_empty() {
                    return (Target::Skipped("no open session"), None);
                }
                self.fault("kill-all");
                for conn in open {
                    self.kill(conn);
                }
                (Target::World, None)
            }
            Transition::Deliver { signal } => {
                if self.inbox.is_empty() {
                    return (Target::Skipped("no signal queued"), None);
                }
                let queued = self.inbox.remove(signal as usize % self.inbox.len());
                let input = self.deliver(queued.signal);
                (Target::Signal(queued.signal), Some(input))
            }
            Transition::SetCapacity { capacity } => {
                if self.close.is_some() {
                    return (Target::Skipped("pool is closing"), None);
                }
                self.capacity = capacity as usize;
                let capacity = capacity as usize;
                (Target::World, Some(Input::SetCapacity { capacity }))
            }
            Transition::Close { timeout_ms } => {
                if self.close.is_some() {
                    return (Target::Skipped("pool is already closing"), None);
                }
                let deadline = timeout_ms.map(|ms| self.now.plus_ms(u64::from(ms)));
                self.close = Some(CloseTruth {
                    issued_at: self.now,
                    deadline,
                    completed_at: None,
                    idle_since: None,
                });
                self.shrink = None;
                (Target::World, Some(Input::Close { deadline }))
            }
            Transition::Wait => (Target::World, None),
        }
    }

    fn client_index(&self, client: u32) -> Option<u32> {
        let n = self.clients.len() as u32;
        (n > 0).then(|| client % n)
    }

    fn acquire(
        &mut self,
        client: u32,
        setting: Option<Setting>,
        timeout_ms: Option<u32>,
    ) -> (Target, Option<Input>) {
        let Some(client) = self.client_index(client) else {
            return (Target::Skipped("no clients"), None);
        };
        if self.clients[client as usize].state != ClientState::Idle {
            return (Target::Skipped("client is busy"), None);
        }
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let deadline = timeout_ms.map(|ms| self.now.plus_ms(u64::from(ms)));
        // The deadline the pool must honour: its own default when unset.
        let effective = deadline.or_else(|| {
            (self.pool_config.acquire_timeout_ms > 0)
                .then(|| self.now.plus_ms(self.pool_config.acquire_timeout_ms))
        });
        if let Some(at) = effective {
            self.deadlines.insert((at, request));
        }
        self.waiting.insert(request, (client, setting));
        self.clients[client as usize].state = ClientState::Waiting { request };
        self.notices.push(Notice::Waiting { client, request });
        let target = Target::Client {
            client,
            request: Some(request),
            conn: None,
        };
        let input = Input::Acquire {
            request,
            setting,
            deadline,
        };
        (target, Some(input))
    }

    fn cancel(&mut self, client: u32) -> (Target, Option<Input>) {
        let Some(client) = self.client_index(client) else {
            return (Target::Skipped("no clients"), None);
        };
        let ClientState::Waiting { request } = self.clients[client as usize].state else {
            return (Target::Skipped("client is not waiting"), None);
        };
        self.end_wait(request);
        self.set_client_idle(client);
        let target = Target::Client {
            client,
            request: Some(request),
            conn: None,
        };
        (target, Some(Input::Cancel { request }))
    }

    fn give_back(&mut self, client: u32, how: Return) -> (Target, Option<Input>) {
        let Some(client) = self.client_index(client) else {
            return (Target::Skipped("no clients"), None);
        };
        let ClientState::Holding { conn, .. } = self.clients[client as usize].state else {
            return (Target::Skipped("client holds no connection"), None);
        };
        if let Some(watch) = &mut self.shrink {
            watch.outstanding.remove(&conn);
        }
        let truth = self
            .conns
            .get_mut(&conn)
            .expect("a held connection has truth");
        truth.last_active = self.now;
        let session_closed = truth.session == Session::Closed;
        let (view, input) = match how {
            // The pool was told it is dead: it must drop it, not pool it.
            Return::Release if truth.closure_known => (None, Input::Release { conn }),
            Return::Release => (Some(View::Pooled), Input::Release { conn }),
            Return::Taint if session_closed => (None, Input::Taint { conn }),
            Return::Taint => (Some(View::Condemned), Input::Taint { conn }),
            // Detaching a dead connection: the client notices at once.
            Return::Detach if session_closed => (None, Input::Detach { conn }),
            Return::Detach => (Some(View::Detached { client }), Input::Detach { conn }),
        };
        match view {
            Some(view) => truth.view = view,
            None => self.forget(conn),
        }
        match view {
            Some(View::Detached { .. }) => {
                self.clients[client as usize].state = ClientState::Listening { conn };
            }
            _ => self.set_client_idle(client),
        }
        let target = Target::Client {
            client,
            request: None,
            conn: Some(conn),
        };
        (target, Some(input))
    }

    fn unlisten(&mut self, client: u32) -> (Target, Option<Input>) {
        let Some(client) = self.client_index(client) else {
            return (Target::Skipped("no clients"), None);
        };
        let ClientState::Listening { conn } = self.clients[client as usize].state else {
            return (Target::Skipped("client holds no detached connection"), None);
        };
        self.forget(conn);
        self.set_client_idle(client);
        let target = Target::Client {
            client,
            request: None,
            conn: Some(conn),
        };
        (target, None)
    }

    fn answer_connect(&mut self, attempt: u32, answer: Answer) -> (Target, Option<Input>) {
        let Some(conn) = nth(|| self.attempts(), attempt) else {
            return (Target::Skipped("no connect in flight"), None);
        };
        let limit = self.config.role_conn_limit as usize;
        let refused = limit > 0 && self.open_sessions().count() >= limit;
        let now = self.now;
        let truth = self.conns.get_mut(&conn).expect("an attempt has truth");
        truth.last_active = now;
        match answer {
            _ if refused => {
                // FATAL 53300: too many connections for role.
                truth.session = Session::Closed;
                self.fault("role-limit-refusal");
                self.queue(SignalKind::ConnectFailed, conn);
            }
            Answer::Ok => {
                truth.session = Session::Open;
                self.queue(SignalKind::Connected, conn);
            }
            Answer::Fail => {
                truth.session = Session::Closed;
                self.fault("connect-error");
                self.queue(SignalKind::ConnectFailed, conn);
            }
            Answer::ReadyThenFin => {
                // ReadyForQuery, then 57P01 and FIN in the same read: the
                // deferred on_connect and the synchronous on_close both wait.
                truth.session = Session::Closed;
                self.fault("ready-then-fin");
                self.queue(SignalKind::Connected, conn);
                self.queue(SignalKind::Closed, conn);
            }
        }
        (Target::Conn(conn), None)
    }

    /// The server terminates a session.
    fn kill(&mut self, conn: ConnId) {
        let truth = self
            .conns
            .get_mut(&conn)
            .expect("an open session has truth");
        truth.session = Session::Closed;
        match truth.view {
            View::Detached { client } => {
                // The listener sees its connection drop; the pool does not.
                self.forget(conn);
                self.set_client_idle(client);
                self.notices.push(Notice::ListenerLost { client });
            }
            _ => self.queue(SignalKind::Closed, conn),
        }
    }

    fn queue(&mut self, kind: SignalKind, conn: ConnId) {
        let seq = self.next_signal;
        self.next_signal += 1;
        let signal = Signal { kind, conn };
        self.inbox.push(Queued { seq, signal });
        self.queued_by_step.push(signal);
        self.notices.push(Notice::Queued(seq));
    }

    /// Ground truth moves as the pool hears a signal; the input tells it.
    fn deliver(&mut self, signal: Signal) -> Input {
        let conn = signal.conn;
        if let Some(truth) = self.conns.get_mut(&conn) {
            match (signal.kind, truth.view) {
                (SignalKind::Connected, View::Opening) => truth.view = View::Pooled,
                (SignalKind::ConnectFailed, View::Opening) => self.forget(conn),
                (SignalKind::Closed, View::Opening | View::Pooled | View::Condemned) => {
                    self.forget(conn)
                }
                (SignalKind::Closed, View::Borrowed { .. }) => truth.closure_known = true,
                // Anything else is stale for the pool: the truth stays.
                _ => {}
            }
        }
        match signal.kind {
            SignalKind::Connected => Input::Connected { conn },
            SignalKind::ConnectFailed => Input::ConnectFailed { conn },
            SignalKind::Closed => Input::Closed { conn },
        }
    }

    /// Drop a connection from the ground truth, closing its session.
    fn forget(&mut self, conn: ConnId) {
        if let Some(truth) = self.conns.remove(&conn) {
            self.retired.push((conn, truth.setting));
        }
    }

    fn set_client_idle(&mut self, client: u32) {
        let c = &mut self.clients[client as usize];
        c.state = ClientState::Idle;
        c.probe = false;
        self.notices.push(Notice::ClientIdle { client });
    }

    fn end_wait(&mut self, request: RequestId) {
        self.waiting.remove(&request);
        self.deadlines.retain(|&(_, r)| r != request);
    }

    fn fault(&mut self, name: &'static str) {
        *self.counters.faults.entry(name).or_default() += 1;
    }

    // ----- the pool -----

    fn send(&mut self, input: Input) {
        self.counters.inputs += 1;
        self.trace.push(self.now, Event::Input(input.clone()));
        if let Err(error) = self.pool.handle(self.now, input.clone()) {
            self.violate(
                Invariant::Accounting,
                format!("the pool refused `{input}`, valid by ground truth: {error}"),
            );
            return;
        }
        self.settle();
    }

    /// After an input: carry out the commands, check, and fire timers that
    /// are already due.
    fn settle(&mut self) {
        self.drain();
        self.check_state();
        if self.pool.poll_timeout().is_some_and(|due| due <= self.now) {
            self.fire_timers();
        }
    }

    fn fire_timers(&mut self) {
        // A pool whose timer stays due after handle_timeout would spin here.
        const MAX_ROUNDS: u32 = 10_000;
        let mut rounds = 0;
        while self.violation.is_none()
            && self.pool.poll_timeout().is_some_and(|due| due <= self.now)
        {
            rounds += 1;
            assert!(
                rounds <= MAX_ROUNDS,
                "the pool's timer stays due at {} after {MAX_ROUNDS} handle_timeout calls",
                self.now
            );
            self.counters.timeouts += 1;
            self.trace.push(self.now, Event::Timeout);
            self.pool.handle_timeout(self.now);
            self.drain();
            self.check_state();
        }
    }

    fn drain(&mut self) {
        while self.violation.is_none() {
            let Some(command) = self.pool.poll_command() else {
                break;
            };
            self.counters.commands += 1;
            self.trace.push(self.now, Event::Command(command.clone()));
            self.on_command(command);
        }
        self.retired.clear();
    }

    /// Carry out a command against the ground truth, checking what can only
    /// be checked at the moment it is issued.
    fn on_command(&mut self, command: Command) {
        match command {
            Command::Open {
                conn,
                setting,
                replaces,
            } => self.on_open(conn, setting, replaces),
            Command::Abort { conn, .. } | Command::Disconnect { conn, .. } => {
                self.count(Invariant::BusyDisconnected);
                match self.conns.get(&conn).map(|c| c.view) {
                    Some(View::Borrowed { client }) | Some(View::Detached { client }) => self
                        .violate(
                            Invariant::BusyDisconnected,
                            format!("`{command}` closes {conn}, which client {client} is using"),
                        ),
                    // Idempotent: a connection already gone stays gone.
                    Some(_) | None => self.forget(conn),
                }
            }
            Command::Grant {
                request,
                conn,
                setting,
                apply_setting,
            } => self.on_grant(request, conn, setting, apply_setting),
            Command::Reject { request, reason } => self.on_reject(request, reason),
            Command::CloseComplete { leaked } => {
                self.count(Invariant::Accounting);
                let borrowed = self.census().borrowed;
                let Some(close) = self.close.as_mut().filter(|c| c.completed_at.is_none()) else {
                    return self.violate(
                        Invariant::Accounting,
                        "close-complete without a close in progress".to_owned(),
                    );
                };
                close.completed_at = Some(self.now);
                self.count(Invariant::OpenAfterClose);
                if let Some((conn, _)) = self.conns.iter().find(|(_, c)| c.view == View::Opening) {
                    let detail = format!(
                        "close completed while {conn} is still connecting: a connect outlives Close"
                    );
                    return self.violate(Invariant::OpenAfterClose, detail);
                }
                if leaked != borrowed {
                    self.violate(
                        Invariant::Accounting,
                        format!(
                            "close-complete reports {leaked} leaked, but {borrowed} are borrowed"
                        ),
                    );
                }
            }
        }
    }

    fn on_open(&mut self, conn: ConnId, setting: Option<Setting>, replaces: Option<ConnId>) {
        self.count(Invariant::OpenAfterClose);
        if let Some(close) = self.close {
            return self.violate(
                Invariant::OpenAfterClose,
                format!("open {conn} after close began at {}", close.issued_at),
            );
        }
        self.count(Invariant::OverCapacity);
        let held = self.census().held();
        if held + 1 > self.capacity {
            return self.violate(
                Invariant::OverCapacity,
                format!(
                    "open {conn} makes {} held, capacity {}",
                    held + 1,
                    self.capacity
                ),
            );
        }
        if let Some(old) = replaces {
            self.count(Invariant::SettingLost);
            let before = self
                .retired
                .iter()
                .find(|(id, _)| *id == old)
                .map(|&(_, s)| s)
                .or_else(|| self.conns.get(&old).map(|c| c.setting));
            if let Some(before) = before
                && before != setting
            {
                return self.violate(
                    Invariant::SettingLost,
                    format!("reopen {conn} of {old} has setting {setting:?}, {old} had {before:?}"),
                );
            }
        }
        self.count(Invariant::Accounting);
        if self.conns.contains_key(&conn) {
            return self.violate(
                Invariant::Accounting,
                format!("open {conn} reuses the id of a connection still in use"),
            );
        }
        self.conns.insert(
            conn,
            ConnTruth {
                view: View::Opening,
                session: Session::Connecting,
                setting,
                closure_known: false,
                opened_at: self.now,
                last_active: self.now,
            },
        );
        self.notices.push(Notice::Opened(conn));
    }

    fn on_grant(
        &mut self,
        request: RequestId,
        conn: ConnId,
        setting: Option<Setting>,
        apply_setting: bool,
    ) {
        self.count(Invariant::LostConnection);
        let Some(&(client, wanted)) = self.waiting.get(&request) else {
            return self.violate(
                Invariant::LostConnection,
                format!("granted {conn} to {request}, which is not waiting: nobody gets it"),
            );
        };
        self.count(Invariant::DoubleGrant);
        self.count(Invariant::GhostIdle);
        let view = self.conns.get(&conn).map(|c| c.view);
        match view {
            Some(View::Pooled) => {}
            Some(View::Borrowed { client: other }) | Some(View::Detached { client: other }) => {
                return self.violate(
                    Invariant::DoubleGrant,
                    format!("granted {conn} to {request}, but client {other} has it"),
                );
            }
            Some(View::Opening) => {
                return self.violate(
                    Invariant::GhostIdle,
                    format!("granted {conn} to {request} before it was reported connected"),
                );
            }
            Some(View::Condemned) | None => {
                return self.violate(
                    Invariant::GhostIdle,
                    format!("granted {conn} to {request}, but the pool was told it is dead"),
                );
            }
        }
        let truth = self.conns.get_mut(&conn).expect("checked above");
        if apply_setting {
            truth.setting = setting;
        }
        truth.view = View::Borrowed { client };
        truth.last_active = self.now;
        let actual = truth.setting;
        self.end_wait(request);
        let c = &mut self.clients[client as usize];
        c.state = ClientState::Holding {
            conn,
            since: self.now,
        };
        if std::mem::take(&mut c.probe) {
            self.count(Invariant::Starved);
        }
        self.notices.push(Notice::Granted { client });
        // The setting the client asked for is the one it must get.
        self.count(Invariant::SettingLost);
        if wanted != actual {
            self.violate(
                Invariant::SettingLost,
                format!("{request} wanted setting {wanted:?} but {conn} carries {actual:?}"),
            );
        }
    }

    fn on_reject(&mut self, request: RequestId, reason: RejectReason) {
        self.count(Invariant::Accounting);
        let Some(&(client, _)) = self.waiting.get(&request) else {
            return self.violate(
                Invariant::Accounting,
                format!("rejected {request}, which is not waiting"),
            );
        };
        self.end_wait(request);
        let probe = self.clients[client as usize].probe;
        self.set_client_idle(client);
        if probe {
            self.count(Invariant::Starved);
            if reason != RejectReason::Closed {
                self.violate(
                    Invariant::Starved,
                    format!(
                        "probe {request} rejected ({reason:?}) with faults healed and capacity {} free",
                        self.capacity.saturating_sub(self.census().borrowed)
                    ),
                );
            }
        }
    }
}

/// The `index`-th item (modulo the count), or `None` if there are none.
fn nth<T, I: Iterator<Item = T>>(items: impl Fn() -> I, index: u32) -> Option<T> {
    let count = items().count();
    if count == 0 {
        return None;
    }
    items().nth(index as usize % count)
}

#[derive(Clone, Copy)]
enum Return {
    Release,
    Taint,
    Detach,
}

#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Fail,
    ReadyThenFin,
}
