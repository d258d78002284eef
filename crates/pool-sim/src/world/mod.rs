//! The simulated world around the pools under test: virtual clock, backend
//! sessions, the I/O queue of backend signals, clients, processes, the
//! dynamic-pool registry, and the ground truth the checkers compare the pools
//! with.
//!
//! The world is a pure function of the transitions it is given: it owns no
//! RNG. Drivers (the seeded generator, a scenario file, the healed liveness
//! autopilot) choose the transitions.
//!
//! Topologies: by default one process with one pool. With `processes > 1`,
//! several processes (each with its own pool and clients) share one backend
//! and its role connection limit, and a process can be orphaned (postgres-mcp,
//! seed 004). With `keys > 0`, the world is a pooler with a dynamic-pool
//! registry: clients log in to a key and pools are made on first login and
//! collected by GC (pg_doorman, seed 002).

mod snapshot;
mod topology;

pub use snapshot::{Canonical, HashScratch};

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;

use pool_core::{
    Command, Config, ConnId, ConnState, Input, Key, Mutation, PoolId, RejectReason, RequestId,
    Setting, Time, Watchdog,
};
use serde::{Deserialize, Serialize};

use crate::contract::{Heard, PoolContract, tally};
use crate::invariant::{Invariant, Violation};
use crate::pool::SimPool;
use crate::trace::{Event, Keep, Target, Trace, WorldEvent};
use crate::transition::{Step, Transition};

/// The world's own options (the pools' are a `pool_core::Config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorldConfig {
    /// Clients; transitions name them modulo this.
    pub clients: u32,
    /// The server refuses a connect while this many sessions are open, over
    /// every pool (Postgres' per-role CONNECTION LIMIT, SQLSTATE 53300);
    /// 0: no limit.
    pub role_conn_limit: u32,
    /// How late past a deadline the pool itself knows (a waiter's, the
    /// connect timeout, the close deadline, the idle timeout, the max
    /// lifetime) it may act before it counts as late: a timer that fires on
    /// time is never late, so this only forgives rounding.
    pub slack_ms: u64,
    /// How long a pool may take to converge after what it waited for has
    /// happened: the borrowers of a shrink are all back, the healed server
    /// accepts connects again (for the floor, on top of the backoff), an
    /// orphaned process's watchdog interval has passed.
    pub liveness_bound_ms: u64,
    /// In the liveness phase: how long a connect takes.
    pub heal_connect_latency_ms: u64,
    /// In the liveness phase: how long a client holds a connection.
    pub heal_hold_ms: u64,
    /// In the liveness phase: the deadline of each probe acquire.
    pub probe_timeout_ms: u64,
    /// Processes, each with its own pool, sharing the backend. Client `i`
    /// runs in process `i % processes`.
    pub processes: u32,
    /// How often a process's orphan watchdog checks (postgres-mcp's fix).
    pub watchdog_interval_ms: u64,
    /// Registry keys. With `keys > 0` the world is one pooler process with a
    /// dynamic-pool registry: clients `login` to a key; pools are made on a
    /// key's first login and collected by `gc`. Needs `processes = 1`.
    pub keys: u32,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            clients: 4,
            role_conn_limit: 0,
            slack_ms: 1,
            liveness_bound_ms: 1_000,
            heal_connect_latency_ms: 5,
            heal_hold_ms: 10,
            probe_timeout_ms: 1_000,
            processes: 1,
            watchdog_interval_ms: 2_000,
            keys: 0,
        }
    }
}

impl WorldConfig {
    /// Why this config cannot run, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.processes == 0 {
            return Some("`processes` must be at least 1".to_owned());
        }
        if self.keys > 0 && self.processes != 1 {
            return Some(format!(
                "`keys` = {} makes the world one pooler process, so `processes` must be 1, not {}",
                self.keys, self.processes
            ));
        }
        None
    }
}

/// A backend signal for a pool, waiting in the I/O queue until delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal {
    pub kind: SignalKind,
    /// The pool (its index in the world) the connection belongs to.
    pub pool: u32,
    pub conn: ConnId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalKind {
    Connected,
    ConnectFailed,
    Closed,
    /// The answer to the ping of a connection granted with `validate`:
    /// alive, or dead.
    Validated {
        ok: bool,
    },
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            SignalKind::Connected => "Connected",
            SignalKind::ConnectFailed => "ConnectFailed",
            SignalKind::Closed => "Closed",
            SignalKind::Validated { ok: true } => "Valid",
            SignalKind::Validated { ok: false } => "Invalid",
        };
        write!(f, "{kind}({})", Qualified(self.pool, self.conn))
    }
}

/// A connection named with its pool: `c3` in pool 0, `c3@P1` elsewhere.
#[derive(Clone, Copy, Debug)]
pub struct Qualified(pub u32, pub ConnId);

impl fmt::Display for Qualified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => write!(f, "{}", self.1),
            pool => write!(f, "{}@P{pool}", self.1),
        }
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
    /// When the pool asked for it (`Open`): its connect timeout runs from here.
    pub opened_at: Time,
    /// When the pool was told it connected: its max lifetime runs from here.
    pub connected_at: Option<Time>,
    /// When it last entered the pool (connected, or returned healthy): its
    /// idle timeout runs from here.
    pub pooled_since: Time,
    /// Last time a client used it (for the server's idle-session timeout).
    pub last_active: Time,
}

/// A request waiting on a pool.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    pub client: u32,
    /// The setting it asked for.
    pub setting: Option<Setting>,
    /// The deadline the pool must answer it by: its own, else the pool's
    /// acquire timeout; `None`, never (it waits until it is served).
    pub deadline: Option<Time>,
    /// When the pool owes it an answer: its deadline, or, for a request
    /// back from a validation that found its connection dead after the
    /// deadline passed, that moment (the pool answers it at once).
    pub answer_by: Option<Time>,
}

/// What a client is doing; connections are in the client's pool.
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
    /// The pool it uses: its process's, or its last login's. `None` before
    /// its first login.
    pub pool: Option<u32>,
    /// Its process was orphaned (its parent killed): it starts nothing new.
    pub orphaned: bool,
    /// Its latest acquire, and how it ended (scenario files assert on it).
    pub last: Option<LastRequest>,
}

/// A client's latest acquire and its answer so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastRequest {
    pub request: RequestId,
    pub reply: Reply,
    /// When it was made, then when it was answered.
    pub at: Time,
}

/// How an acquire ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Waiting,
    Granted(ConnId),
    Rejected(RejectReason),
    Cancelled,
}

/// Something that happened which a driver may want to plan around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A pool asked for a connect.
    Opened {
        pool: u32,
        conn: ConnId,
    },
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
    /// A process was orphaned (`slot` is its place among the processes).
    Orphaned {
        slot: u32,
    },
}

/// Which phase the run is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Faults on, driven by a generator or a scenario.
    Safety,
    /// Faults healed at `since`: the pools must converge.
    Liveness { since: Time },
}

/// Close as the world saw it.
#[derive(Clone, Copy, Debug)]
pub struct CloseTruth {
    pub issued_at: Time,
    pub deadline: Option<Time>,
    pub completed_at: Option<Time>,
}

/// A shrink in progress, for `capacity-stalled`.
#[derive(Clone, Debug)]
pub(crate) struct ShrinkWatch {
    /// Connections borrowed when held first exceeded capacity, not yet back.
    pub(crate) outstanding: BTreeSet<ConnId>,
    /// When the last of them came back.
    pub(crate) all_back_at: Option<Time>,
}

/// Who owns a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A process (index into the world's processes).
    Process(u32),
    /// The registry, for `key`.
    Registry { key: Key, id: PoolId },
}

/// Whether a pool is still in service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Serving,
    /// Dropped by the registry (collected or abandoned) and closed: only
    /// returns of what it lent still reach it.
    Dropped,
    /// Its process exited: everything it held is gone, nothing reaches it.
    Exited,
}

/// A pool under test and the ground truth about it.
#[derive(Debug)]
pub struct PoolSlot<P> {
    pub pool: P,
    pub owner: Owner,
    pub service: Service,
    pub capacity: usize,
    pub close: Option<CloseTruth>,
    pub conns: BTreeMap<ConnId, ConnTruth>,
    /// Waiting requests, oldest first (request ids are issued in order).
    pub(crate) waiting: BTreeMap<RequestId, Waiting>,
    /// Connections granted with `validate` whose ping is in flight, and the
    /// request each is for (it waits again if the ping finds it dead).
    pub(crate) validating: BTreeMap<ConnId, (RequestId, Waiting)>,
    pub(crate) shrink: Option<ShrinkWatch>,
    /// Settings of this pool's connections that left the table since its
    /// last drain, so a reopen can be checked against the connection it
    /// replaces. Per pool, because every pool numbers its connections from
    /// c0: a list shared by the world let one pool's reopen find another
    /// pool's connection of the same id. A connection forgotten outside a
    /// drain (unlisten, a killed listener) waits here for the pool's next
    /// drain; ids are never reused within a pool, so it cannot be mistaken.
    pub(crate) retired: Vec<(ConnId, Option<Setting>)>,
    /// The ground-truth counts as of this pool's last check. Between steps
    /// that is now for a pool in service: every change to its truth marks it
    /// for the check that ends the step (`World::open_session_count` relies
    /// on it). Mid-step it may be behind: use `census()` there. An exited
    /// pool is no longer checked; its process's exit zeroes this with its
    /// connections.
    pub(crate) counted: Census,
    /// What the contract keeps about this pool: the world's own counts, the
    /// current drain, and the earliest thing it owes.
    pub(crate) contract: PoolContract,
}

impl<P: SimPool> PoolSlot<P> {
    fn new(pool: P, owner: Owner, capacity: usize) -> PoolSlot<P> {
        PoolSlot {
            pool,
            owner,
            service: Service::Serving,
            capacity,
            close: None,
            conns: BTreeMap::new(),
            waiting: BTreeMap::new(),
            validating: BTreeMap::new(),
            shrink: None,
            retired: Vec::new(),
            counted: Census::default(),
            contract: PoolContract::default(),
        }
    }

    /// The ground-truth counts of this pool now, counted afresh (mid-step,
    /// where `counted` may be behind).
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for c in self.conns.values() {
            tally(&mut census, c);
        }
        census
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Whether a request is waiting on this pool.
    pub fn is_waiting(&self, request: RequestId) -> bool {
        self.waiting.contains_key(&request)
    }
}

/// A process: a pool, its clients, and (once orphaned) its watchdog's work.
#[derive(Clone, Debug)]
pub struct Process {
    /// Its place: clients `i` with `i % processes == slot` run in it.
    pub slot: u32,
    pub pool: u32,
    pub orphaned_at: Option<Time>,
    pub exited_at: Option<Time>,
    watchdog: Watchdog,
}

/// Counts of the ground truth of one pool, taken at a check.
#[derive(Clone, Copy, Debug, Default)]
pub struct Census {
    pub opening: usize,
    pub pooled: usize,
    pub borrowed: usize,
    /// Server sessions (connecting or open) of the pool, detached excluded.
    pub sessions: usize,
    /// Open sessions at the server, detached included (the role limit).
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
    /// A scenario's assertions checked (each key of an `assert` table).
    pub assertions: u64,
    /// Faults fired, by name, for the summary.
    pub faults: BTreeMap<&'static str, u64>,
}

impl Counters {
    /// One more check of `invariant`.
    pub(crate) fn count(&mut self, invariant: Invariant) {
        self.checks[invariant.index()] += 1;
    }
}

/// Makes a pool, at a time, for a new process or registry key.
pub type MakePool<P> = Box<dyn FnMut(Time, &Config) -> P>;

/// The world. `P` is the type of the pools under test.
pub struct World<P> {
    /// Shared, so a snapshot of the world makes its new pools the same way
    /// (exploration assumes the factory is a function of its arguments).
    make: Rc<RefCell<MakePool<P>>>,
    pub(crate) pool_config: Config,
    pub(crate) config: WorldConfig,
    #[cfg_attr(not(feature = "mutations"), allow(dead_code))]
    pub(crate) mutation: Option<Mutation>,
    pub(crate) now: Time,
    pub(crate) phase: Phase,
    pub(crate) pools: Vec<PoolSlot<P>>,
    pub(crate) processes: Vec<Process>,
    /// The process each slot runs now, by slot.
    pub(crate) current: Vec<usize>,
    registry: Option<topology::RegistryTruth>,
    /// Work deferred until the pool being drained is done.
    deferred: Vec<topology::Deferred>,
    /// Pools whose truth or state changed since the last check.
    pub(crate) dirty: Vec<u32>,
    pub(crate) inbox: Vec<Queued>,
    /// Signals queued by the step being applied, traced after it.
    pub(crate) queued_by_step: Vec<Signal>,
    pub(crate) next_signal: u64,
    pub(crate) clients: Vec<Client>,
    pub(crate) next_request: u64,
    pub(crate) notices: Vec<Notice>,
    /// The role limit refused a connect in the liveness phase: the server,
    /// not the pool, is full, so a failed probe is not starvation.
    pub(crate) server_full_since_heal: bool,
    pub(crate) trace: Trace,
    pub(crate) counters: Counters,
    pub(crate) violation: Option<Violation>,
    /// Every command since it was last taken, when a scenario asserts on
    /// them (`None`: not kept, the usual case).
    pub(crate) command_log: Option<Vec<(u32, Command)>>,
    pub(crate) scratch: Vec<(ConnId, ConnState)>,
}

impl<P> fmt::Debug for World<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("now", &self.now)
            .field("pools", &self.pools.len())
            .field("violation", &self.violation)
            .finish_non_exhaustive()
    }
}

impl<P: SimPool> World<P> {
    /// A world whose pools are made by `make` from `pool_config`. `mutation`
    /// is applied to the registry and the watchdogs (pools get theirs from
    /// `make`). The config must be valid (`WorldConfig::problem`).
    pub fn new(
        make: MakePool<P>,
        pool_config: Config,
        config: WorldConfig,
        mutation: Option<Mutation>,
        keep: Keep,
    ) -> World<P> {
        assert!(config.problem().is_none(), "{:?}", config.problem());
        let processes = config.processes;
        let clients = (0..config.clients)
            .map(|_| Client {
                state: ClientState::Idle,
                probe: false,
                pool: None,
                orphaned: false,
                last: None,
            })
            .collect();
        let registry = (config.keys > 0).then(|| topology::RegistryTruth::new(mutation));
        let mut world = World {
            make: Rc::new(RefCell::new(make)),
            pool_config,
            config,
            mutation,
            now: Time::ZERO,
            phase: Phase::Safety,
            pools: Vec::new(),
            processes: Vec::new(),
            current: Vec::new(),
            registry,
            deferred: Vec::new(),
            dirty: Vec::new(),
            inbox: Vec::new(),
            queued_by_step: Vec::new(),
            next_signal: 0,
            clients,
            next_request: 0,
            notices: Vec::new(),
            server_full_since_heal: false,
            trace: Trace::new(keep),
            counters: Counters::default(),
            violation: None,
            command_log: None,
            scratch: Vec::new(),
        };
        if world.registry.is_none() {
            for slot in 0..processes {
                world.start_process(slot);
            }
        }
        world
    }

    // ----- read access for drivers, checkers and reports -----

    pub fn now(&self) -> Time {
        self.now
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn pool_config(&self) -> &Config {
        &self.pool_config
    }

    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    pub fn pools(&self) -> &[PoolSlot<P>] {
        &self.pools
    }

    pub fn processes(&self) -> &[Process] {
        &self.processes
    }

    /// The process a slot runs now.
    pub fn process_in(&self, slot: u32) -> Option<&Process> {
        self.current.get(slot as usize).map(|&p| &self.processes[p])
    }

    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    pub fn inbox(&self) -> &[Queued] {
        &self.inbox
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

    /// Keep every command from now on, for `take_command_log`.
    pub fn log_commands(&mut self) {
        self.command_log.get_or_insert_with(Vec::new);
    }

    /// The commands kept since the last call (empty unless `log_commands`).
    pub fn take_command_log(&mut self) -> Vec<(u32, Command)> {
        self.command_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Move the notices since the last call into `out` (cleared first).
    pub fn take_notices(&mut self, out: &mut Vec<Notice>) {
        out.clear();
        std::mem::swap(out, &mut self.notices);
    }

    /// Requests waiting, over every pool.
    pub fn waiting(&self) -> usize {
        self.pools.iter().map(|p| p.waiting.len()).sum()
    }

    /// The truth about a client's connection, if it holds or listens on one.
    pub fn client_conn(&self, client: u32) -> Option<&ConnTruth> {
        let c = self.clients.get(client as usize)?;
        let conn = match c.state {
            ClientState::Holding { conn, .. } | ClientState::Listening { conn } => conn,
            _ => return None,
        };
        self.pools.get(c.pool? as usize)?.conns.get(&conn)
    }

    /// Connect attempts in flight at the server, by pool then connection.
    pub fn attempts(&self) -> impl Iterator<Item = (u32, ConnId)> + '_ {
        self.sessions_in(Session::Connecting)
    }

    /// How many server sessions are open, over every pool, detached
    /// included: what the role limit counts. Read between steps (drivers) or
    /// at the start of one (a connect's answer), where each pool's census is
    /// as of the check that ended the last step, so no connection is walked.
    pub fn open_session_count(&self) -> usize {
        debug_assert!(
            self.dirty.is_empty() || self.violation.is_some(),
            "open_session_count read mid-step, before the check of pools {:?}",
            self.dirty
        );
        self.pools.iter().map(|p| p.counted.open_sessions).sum()
    }

    /// Open server sessions (detached included), by pool then connection.
    pub fn open_sessions(&self) -> impl Iterator<Item = (u32, ConnId)> + '_ {
        self.sessions_in(Session::Open)
    }

    fn sessions_in(&self, session: Session) -> impl Iterator<Item = (u32, ConnId)> + '_ {
        self.pools.iter().enumerate().flat_map(move |(px, slot)| {
            slot.conns
                .iter()
                .filter(move |(_, c)| c.session == session)
                .map(move |(&id, _)| (px as u32, id))
        })
    }

    /// The truth about a connection.
    pub fn conn(&self, pool: u32, conn: ConnId) -> Option<&ConnTruth> {
        self.pools.get(pool as usize)?.conns.get(&conn)
    }

    /// The earliest timer of any pool or watchdog.
    pub fn next_timer(&self) -> Option<Time> {
        let pools = self
            .pools
            .iter()
            .filter(|p| p.service != Service::Exited)
            .filter_map(|p| p.pool.poll_timeout());
        let watchdogs = self
            .processes
            .iter()
            .filter(|p| p.exited_at.is_none())
            .filter_map(|p| p.watchdog.poll_timeout());
        pools.chain(watchdogs).min()
    }

    // ----- driving -----

    /// Apply one step: advance the clock (firing timers), then the
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
        // Drained, not taken: the buffer is kept for the next step.
        for signal in self.queued_by_step.drain(..) {
            self.trace.push(self.now, Event::Signal(signal));
        }
        match input {
            Some((pool, input)) => self.send(pool, input),
            None => {
                self.run_deferred();
                self.check_state();
            }
        }
        target
    }

    /// Move the clock to `at`, firing every timer on the way, each at its
    /// own time.
    pub fn advance_to(&mut self, at: Time) {
        while self.violation.is_none() {
            match self.next_timer() {
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
        // What a pool owes changes with the phase (its floor, once the
        // server accepts again): every pool is checked afresh.
        self.trace
            .push(self.now, Event::Phase("liveness phase: faults healed"));
        for px in 0..self.pools.len() as u32 {
            self.touch(px);
        }
        self.check_state();
    }

    /// Mark `client`'s next acquire as a liveness probe.
    pub fn mark_probe(&mut self, client: u32) {
        if let Some(c) = self.clients.get_mut(client as usize) {
            c.probe = true;
        }
    }

    // ----- transitions -----

    /// What a transition applies to, and the pool input it makes (if any).
    fn resolve(&mut self, transition: &Transition) -> (Target, Option<(u32, Input)>) {
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
                Some((pool, conn)) => {
                    self.fault("kill");
                    self.kill(pool, conn);
                    (Target::Conn(pool, conn), None)
                }
                None => (Target::Skipped("no open session"), None),
            },
            Transition::KillAll => {
                let open: Vec<(u32, ConnId)> = self.open_sessions().collect();
                if open.is_empty() {
                    return (Target::Skipped("no open session"), None);
                }
                self.fault("kill-all");
                for (pool, conn) in open {
                    self.kill(pool, conn);
                }
                (Target::World, None)
            }
            Transition::Echo { signal } => {
                let echoable: Vec<Signal> = self
                    .inbox
                    .iter()
                    .map(|q| q.signal)
                    .filter(|s| !matches!(s.kind, SignalKind::Validated { .. }))
                    .collect();
                if echoable.is_empty() {
                    return (Target::Skipped("no signal queued to repeat"), None);
                }
                let copy = echoable[signal as usize % echoable.len()];
                self.fault("echo");
                self.queue(copy.kind, copy.pool, copy.conn);
                (Target::Signal(copy), None)
            }
            Transition::Deliver { signal } => {
                if self.inbox.is_empty() {
                    return (Target::Skipped("no signal queued"), None);
                }
                let queued = self.inbox.remove(signal as usize % self.inbox.len());
                let input = self.deliver(queued.signal);
                (Target::Signal(queued.signal), input)
            }
            Transition::SetCapacity { capacity, pool } => {
                let Some(px) = self.serving_pool(pool) else {
                    return (Target::Skipped("no pool in service"), None);
                };
                // A closing pool is told too: it must ignore it (a closed
                // pool stays closed), so its capacity stays as it was.
                let slot = &mut self.pools[px as usize];
                if !slot.closing() {
                    slot.capacity = capacity as usize;
                }
                let capacity = capacity as usize;
                (
                    Target::Pool(px),
                    Some((px, Input::SetCapacity { capacity })),
                )
            }
            Transition::Close { timeout_ms, pool } => {
                let Some(px) = self.serving_pool(pool) else {
                    return (Target::Skipped("no pool in service"), None);
                };
                if self.pools[px as usize].close.is_some() {
                    return (Target::Skipped("pool is already closing"), None);
                }
                let deadline = timeout_ms.map(|ms| self.now.plus_ms(u64::from(ms)));
                (Target::Pool(px), Some((px, self.begin_close(px, deadline))))
            }
            Transition::Login {
                client,
                key,
                timeout_ms,
            } => self.login(client, key, timeout_ms),
            Transition::Gc => self.gc(),
            Transition::Orphan { process } => self.orphan(process),
            Transition::Spawn { process } => self.spawn(process),
            Transition::Wait => (Target::World, None),
        }
    }

    /// Each index `transition` names, with what it counts and how many
    /// candidates there are now: the list `resolve` takes it modulo.
    fn indexes<'t>(
        &self,
        transition: &'t mut Transition,
    ) -> Vec<(&'static str, &'t mut u32, usize)> {
        let clients = self.clients.len();
        let serving = || {
            self.pools
                .iter()
                .filter(|p| p.service == Service::Serving)
                .count()
        };
        match transition {
            Transition::Acquire { client, .. }
            | Transition::Cancel { client }
            | Transition::Release { client }
            | Transition::Taint { client }
            | Transition::Detach { client }
            | Transition::Unlisten { client } => vec![("client", client, clients)],
            Transition::Login { client, key, .. } => vec![
                ("client", client, clients),
                ("key", key, self.config.keys as usize),
            ],
            Transition::ConnectOk { attempt }
            | Transition::ConnectFail { attempt }
            | Transition::ReadyThenFin { attempt } => {
                vec![("connect in flight", attempt, self.attempts().count())]
            }
            Transition::Kill { session } => {
                vec![("open session", session, self.open_sessions().count())]
            }
            Transition::Echo { signal } => {
                let echoable = self
                    .inbox
                    .iter()
                    .filter(|q| !matches!(q.signal.kind, SignalKind::Validated { .. }))
                    .count();
                vec![("signal that may be repeated", signal, echoable)]
            }
            Transition::Deliver { signal } => vec![("queued signal", signal, self.inbox.len())],
            Transition::SetCapacity { pool, .. } | Transition::Close { pool, .. } => {
                vec![("pool in service", pool, serving())]
            }
            Transition::Orphan { process } | Transition::Spawn { process } => {
                vec![("process", process, self.config.processes as usize)]
            }
            Transition::KillAll | Transition::Gc | Transition::Wait => Vec::new(),
        }
    }

    /// Why `transition` names an index past its candidates now, if it does.
    /// Generated transitions take indexes modulo the count (so any number
    /// is a step); a hand-written file is held to what it means.
    pub fn index_out_of_range(&self, transition: &Transition) -> Option<String> {
        let mut t = transition.clone();
        self.indexes(&mut t)
            .into_iter()
            .find(|(_, index, count)| **index as usize >= *count && *count > 0)
            .map(|(what, index, count)| {
                format!(
                    "{what} {index} is out of range: {count} now, so 0..={}",
                    count - 1
                )
            })
    }

    /// `transition` with each index taken modulo its candidates now, as
    /// `resolve` takes it: what a recording writes, so it replays strictly.
    pub fn in_range(&self, transition: &Transition) -> Transition {
        let mut t = transition.clone();
        for (_, index, count) in self.indexes(&mut t) {
            if count > 0 {
                *index %= count as u32;
            }
        }
        t
    }

    /// The `index`-th pool in service (modulo their count).
    fn serving_pool(&self, index: u32) -> Option<u32> {
        nth(
            || {
                self.pools
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.service == Service::Serving)
                    .map(|(px, _)| px as u32)
            },
            index,
        )
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
    ) -> (Target, Option<(u32, Input)>) {
        let Some(client) = self.client_index(client) else {
            return (Target::Skipped("no clients"), None);
        };
        if self.clients[client as usize].state != ClientState::Idle {
            return (Target::Skipped("client is busy"), None);
        }
        if self.client_orphaned(client) {
            return (Target::Skipped("the client's process is orphaned"), None);
        }
        let Some(px) = self.pool_of(client) else {
            return (Target::Skipped("client has no pool: log in first"), None);
        };
        if self.pools[px as usize].service != Service::Serving {
            return (Target::Skipped("client's pool is out of service"), None);
        }
        let (target, input) = self.wait_on(client, px, setting, timeout_ms);
        (target, Some((px, input)))
    }

    /// Make `client` wait on pool `px`; the acquire input to send.
    fn wait_on(
        &mut self,
        client: u32,
        px: u32,
        setting: Option<Setting>,
        timeout_ms: Option<u32>,
    ) -> (Target, Input) {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let deadline = timeout_ms.map(|ms| self.now.plus_ms(u64::from(ms)));
        // The deadline the pool must honour: its own default when unset.
        let effective = deadline.or_else(|| {
            (self.pool_config.acquire_timeout_ms > 0)
                .then(|| self.now.plus_ms(self.pool_config.acquire_timeout_ms))
        });
        self.pools[px as usize].waiting.insert(
            request,
            Waiting {
                client,
                setting,
                deadline: effective,
                answer_by: effective,
            },
        );
        let c = &mut self.clients[client as usize];
        c.state = ClientState::Waiting { request };
        c.pool = Some(px);
        c.last = Some(LastRequest {
            request,
            reply: Reply::Waiting,
            at: self.now,
        });
        self.notice(Notice::Waiting { client, request });
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
        (target, input)
    }

    fn cancel(&mut self, client: u32) -> (Target, Option<(u32, Input)>) {
        let Some(client) = self.client_index(client) else {
            return (Target::Skipped("no clients"), None);
        };
        let c = &self.clients[client as usize];
        let (ClientState::Waiting { request }, Some(px)) = (c.state, c.pool) else {
            return (Target::Skipped("client is not waiting"), None);
        };
        if !self.pools[px as usize].waiting.contains_key(&request) {
            // The shell validates the connection it was granted: the hand-off
            // is under way, and completes before the client can give up.
            return (Target::Skipped("its connection is being validated"), None);
        }
        self.answered(client, Reply::Cancelled);
        self.end_wait(px, request);
        self.set_client_idle(client);
        let target = Target::Client {
            client,
            request: Some(request),
            conn: None,
        };
        (target, Some((px, Input::Cancel { request })))
    }

    fn give_back(&mut self, client: u32, how: Return) -> (Target, Option<(u32, Input)>) {
        let Some(client) = self.client_index(client) else {
            return (Target::Skipped("no clients"), None);
        };
        let c = &self.clients[client as usize];
        let (ClientState::Holding { conn, .. }, Some(px)) = (c.state, c.pool) else {
            return (Target::Skipped("client holds no connection"), None);
        };
        let now = self.now;
        let slot = &mut self.pools[px as usize];
        if let Some(watch) = &mut slot.shrink {
            watch.outstanding.remove(&conn);
        }
        let truth = slot
            .conns
            .get_mut(&conn)
            .expect("a held connection has truth");
        truth.last_active = now;
        let session_closed = truth.session == Session::Closed;
        let (view, input) = match how {
            // The pool was told it is dead: it must drop it, not pool it.
            Return::Release if truth.closure_known => (None, Input::Recycle { conn }),
            Return::Release => (Some(View::Pooled), Input::Recycle { conn }),
            Return::Taint if session_closed => (None, Input::Taint { conn }),
            Return::Taint => (Some(View::Condemned), Input::Taint { conn }),
            // Detaching a dead connection: the client notices at once.
            Return::Detach if session_closed => (None, Input::Detach { conn }),
            Return::Detach => (Some(View::Detached { client }), Input::Detach { conn }),
        };
        match view {
            Some(view) => {
                truth.view = view;
                truth.pooled_since = now;
            }
            None => self.forget(px, conn),
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
        (target, Some((px, input)))
    }

    fn unlisten(&mut self, client: u32) -> (Target, Option<(u32, Input)>) {
        let Some(client) = self.client_index(client) else {
            return (Target::Skipped("no clients"), None);
        };
        let c = &self.clients[client as usize];
        let (ClientState::Listening { conn }, Some(px)) = (c.state, c.pool) else {
            return (Target::Skipped("client holds no detached connection"), None);
        };
        self.forget(px, conn);
        self.set_client_idle(client);
        let target = Target::Client {
            client,
            request: None,
            conn: Some(conn),
        };
        (target, None)
    }

    fn answer_connect(&mut self, attempt: u32, answer: Answer) -> (Target, Option<(u32, Input)>) {
        let Some((px, conn)) = nth(|| self.attempts(), attempt) else {
            return (Target::Skipped("no connect in flight"), None);
        };
        // Counted before this pool is marked changed: the count is the
        // census of the check that ended the last step.
        let limit = self.config.role_conn_limit as usize;
        let refused = limit > 0 && self.open_session_count() >= limit;
        self.touch(px);
        let now = self.now;
        let truth = self.pools[px as usize]
            .conns
            .get_mut(&conn)
            .expect("an attempt has truth");
        truth.last_active = now;
        match answer {
            _ if refused => {
                // FATAL 53300: too many connections for role.
                truth.session = Session::Closed;
                self.fault("role-limit-refusal");
                if matches!(self.phase, Phase::Liveness { .. }) {
                    self.server_full_since_heal = true;
                }
                self.queue(SignalKind::ConnectFailed, px, conn);
            }
            Answer::Ok => {
                truth.session = Session::Open;
                self.queue(SignalKind::Connected, px, conn);
            }
            Answer::Fail => {
                truth.session = Session::Closed;
                self.fault("connect-error");
                self.queue(SignalKind::ConnectFailed, px, conn);
            }
            Answer::ReadyThenFin => {
                // ReadyForQuery, then 57P01 and FIN in the same read: the
                // deferred on_connect and the synchronous on_close both wait.
                truth.session = Session::Closed;
                self.fault("ready-then-fin");
                self.queue(SignalKind::Connected, px, conn);
                self.queue(SignalKind::Closed, px, conn);
            }
        }
        (Target::Conn(px, conn), None)
    }

    /// The server terminates a session.
    fn kill(&mut self, px: u32, conn: ConnId) {
        self.touch(px);
        let truth = self.pools[px as usize]
            .conns
            .get_mut(&conn)
            .expect("an open session has truth");
        truth.session = Session::Closed;
        match truth.view {
            View::Detached { client } => {
                // The listener sees its connection drop; the pool does not.
                self.forget(px, conn);
                self.set_client_idle(client);
                self.notice(Notice::ListenerLost { client });
            }
            _ => self.queue(SignalKind::Closed, px, conn),
        }
    }

    fn queue(&mut self, kind: SignalKind, pool: u32, conn: ConnId) {
        let seq = self.next_signal;
        self.next_signal += 1;
        let signal = Signal { kind, pool, conn };
        self.inbox.push(Queued { seq, signal });
        self.queued_by_step.push(signal);
        self.notice(Notice::Queued(seq));
    }

    /// Ground truth moves as a pool hears a signal; the input tells it.
    /// Signals for a pool whose process exited go nowhere.
    fn deliver(&mut self, signal: Signal) -> Option<(u32, Input)> {
        let Signal { kind, pool, conn } = signal;
        let slot = &mut self.pools[pool as usize];
        if slot.service == Service::Exited {
            return None;
        }
        let now = self.now;
        if let SignalKind::Validated { ok } = kind {
            return self.validated(pool, conn, ok);
        }
        let heard = match slot.conns.get_mut(&conn) {
            Some(truth) => match (kind, truth.view) {
                (SignalKind::Connected, View::Opening) => {
                    truth.view = View::Pooled;
                    truth.connected_at = Some(now);
                    truth.pooled_since = now;
                    Heard::Connected
                }
                (SignalKind::ConnectFailed | SignalKind::Closed, View::Opening) => {
                    self.forget(pool, conn);
                    Heard::ConnectFailed
                }
                (SignalKind::Closed, View::Pooled | View::Condemned) => {
                    self.forget(pool, conn);
                    Heard::ClosedByServer
                }
                (SignalKind::Closed, View::Borrowed { .. }) if !truth.closure_known => {
                    truth.closure_known = true;
                    Heard::ClosedByServer
                }
                // Anything else is stale for the pool: the truth stays.
                _ => Heard::Stale,
            },
            // A connection the pool is rid of: stale.
            None => Heard::Stale,
        };
        let backoff_ms = self.pool_config.reconnect_backoff_ms;
        self.pools[pool as usize]
            .contract
            .note_heard(heard, now, backoff_ms);
        let input = match kind {
            SignalKind::Connected => Input::Connected { conn },
            SignalKind::ConnectFailed => Input::ConnectFailed { conn },
            SignalKind::Closed => Input::Closed { conn },
            SignalKind::Validated { .. } => unreachable!("handled above"),
        };
        Some((pool, input))
    }

    /// A ping's answer reaches the shell: alive, the client gets the
    /// connection; dead, it is gone and the request waits again.
    fn validated(&mut self, px: u32, conn: ConnId, ok: bool) -> Option<(u32, Input)> {
        self.touch(px);
        let slot = &mut self.pools[px as usize];
        let (request, waiting) = slot
            .validating
            .remove(&conn)
            .expect("one ping per validated grant, answered once");
        if ok {
            self.hand_over(px, request, conn, waiting.client);
        } else {
            if let Some(watch) = &mut slot.shrink {
                watch.outstanding.remove(&conn);
            }
            let now = self.now;
            let waiting = Waiting {
                answer_by: waiting.deadline.map(|d| d.max(now)),
                ..waiting
            };
            slot.waiting.insert(request, waiting);
            self.forget(px, conn);
        }
        Some((px, Input::Validated { conn, ok }))
    }

    /// Tell the driver. Only the safety phase's generator plans around
    /// notices; the healer does not, and a long healed stretch must not
    /// pile them up.
    fn notice(&mut self, notice: Notice) {
        if self.phase == Phase::Safety {
            self.notices.push(notice);
        }
    }

    /// Pool `px` changed: check it at the next check.
    fn touch(&mut self, px: u32) {
        if !self.dirty.contains(&px) {
            self.dirty.push(px);
        }
    }

    /// Drop a connection from the ground truth, closing its session.
    fn forget(&mut self, px: u32, conn: ConnId) {
        self.touch(px);
        let slot = &mut self.pools[px as usize];
        if let Some(truth) = slot.conns.remove(&conn) {
            slot.retired.push((conn, truth.setting));
        }
    }

    /// `client`'s latest acquire is answered, now.
    fn answered(&mut self, client: u32, reply: Reply) {
        let now = self.now;
        if let Some(last) = &mut self.clients[client as usize].last {
            last.reply = reply;
            last.at = now;
        }
    }

    fn set_client_idle(&mut self, client: u32) {
        let c = &mut self.clients[client as usize];
        c.state = ClientState::Idle;
        c.probe = false;
        self.notice(Notice::ClientIdle { client });
    }

    fn end_wait(&mut self, px: u32, request: RequestId) {
        self.pools[px as usize].waiting.remove(&request);
    }

    /// Start closing pool `px`; the input that tells it.
    fn begin_close(&mut self, px: u32, deadline: Option<Time>) -> Input {
        let slot = &mut self.pools[px as usize];
        slot.close = Some(CloseTruth {
            issued_at: self.now,
            deadline,
            completed_at: None,
        });
        slot.shrink = None;
        Input::Close { deadline }
    }

    fn fault(&mut self, name: &'static str) {
        *self.counters.faults.entry(name).or_default() += 1;
    }

    fn world_event(&mut self, event: WorldEvent) {
        self.trace.push(self.now, Event::World(event));
    }

    // ----- the pools -----

    fn send(&mut self, px: u32, input: Input) {
        self.counters.inputs += 1;
        self.pools[px as usize].contract.note_input(&input);
        self.trace.push(self.now, Event::Input(px, input.clone()));
        let slot = &mut self.pools[px as usize];
        if let Err(error) = slot.pool.handle(self.now, input.clone()) {
            self.violate(
                Invariant::Accounting,
                format!("P{px} refused `{input}`, valid by ground truth: {error}"),
            );
            return;
        }
        self.settle(px);
    }

    /// After an input: carry out the commands, check, and fire timers that
    /// are already due.
    fn settle(&mut self, px: u32) {
        self.touch(px);
        self.drain(px);
        self.run_deferred();
        self.check_state();
        // fire_timers looks for a due timer itself; asking next_timer first
        // scanned every pool and watchdog twice.
        self.fire_timers();
    }

    /// Fire every timer due now, pools and watchdogs alike.
    fn fire_timers(&mut self) {
        // A pool whose timer stays due after handle_timeout would spin here.
        const MAX_ROUNDS: u32 = 10_000;
        let mut rounds = 0;
        while self.violation.is_none() {
            let now = self.now;
            let due_pool = self.pools.iter().position(|p| {
                p.service != Service::Exited && p.pool.poll_timeout().is_some_and(|d| d <= now)
            });
            let due_watchdog = self.processes.iter().position(|p| {
                p.exited_at.is_none() && p.watchdog.poll_timeout().is_some_and(|d| d <= now)
            });
            if due_pool.is_none() && due_watchdog.is_none() {
                break;
            }
            rounds += 1;
            assert!(
                rounds <= MAX_ROUNDS,
                "a timer stays due at {now} after {MAX_ROUNDS} handle_timeout calls"
            );
            self.counters.timeouts += 1;
            if let Some(px) = due_pool {
                self.trace.push(now, Event::Timeout(px as u32));
                self.touch(px as u32);
                self.pools[px].pool.handle_timeout(now);
                self.drain(px as u32);
                self.run_deferred();
            } else if let Some(process) = due_watchdog {
                self.watchdog_check(process);
            }
            self.check_state();
        }
    }

    fn drain(&mut self, px: u32) {
        while self.violation.is_none() {
            let Some(command) = self.pools[px as usize].pool.poll_command() else {
                break;
            };
            self.counters.commands += 1;
            self.trace
                .push(self.now, Event::Command(px, command.clone()));
            if let Some(log) = &mut self.command_log {
                log.push((px, command.clone()));
            }
            // The contract judges the command against the state before it;
            // then the ground truth moves.
            self.check_command(px, &command);
            if self.violation.is_some() {
                break;
            }
            self.on_command(px, command);
        }
        self.check_drain(px);
        self.pools[px as usize].retired.clear();
    }

    /// Carry out a command against the ground truth (the contract has
    /// already judged it).
    fn on_command(&mut self, px: u32, command: Command) {
        let (now, backoff_ms) = (self.now, self.pool_config.reconnect_backoff_ms);
        self.pools[px as usize]
            .contract
            .note_command(&command, now, backoff_ms);
        match command {
            Command::Open { conn, setting, .. } => {
                let now = self.now;
                self.pools[px as usize].conns.insert(
                    conn,
                    ConnTruth {
                        view: View::Opening,
                        session: Session::Connecting,
                        setting,
                        closure_known: false,
                        opened_at: now,
                        connected_at: None,
                        pooled_since: now,
                        last_active: now,
                    },
                );
                self.notice(Notice::Opened { pool: px, conn });
            }
            // Idempotent: a connection already gone stays gone.
            Command::Abort { conn, .. } | Command::Disconnect { conn, .. } => self.forget(px, conn),
            Command::Grant {
                request,
                conn,
                setting,
                apply_setting,
                validate,
            } => {
                // The shell pings a connection it must validate before the
                // client sees it: the answer (alive or dead, as the server
                // has it now) comes back as a signal; until then the
                // connection is the request's, and the client still waits.
                if validate {
                    self.begin_validation(px, request, conn, setting, apply_setting);
                } else {
                    self.on_grant(px, request, conn, setting, apply_setting);
                }
            }
            Command::Reject { request, reason } => self.on_reject(px, request, reason),
            Command::CloseComplete { .. } => {
                let now = self.now;
                if let Some(close) = &mut self.pools[px as usize].close {
                    close.completed_at = Some(now);
                }
                self.closed(px);
            }
        }
    }

    fn on_grant(
        &mut self,
        px: u32,
        request: RequestId,
        conn: ConnId,
        setting: Option<Setting>,
        apply_setting: bool,
    ) {
        let now = self.now;
        let slot = &mut self.pools[px as usize];
        let client = slot.waiting[&request].client;
        let truth = slot
            .conns
            .get_mut(&conn)
            .expect("the contract checked it is pooled");
        if apply_setting {
            truth.setting = setting;
        }
        truth.view = View::Borrowed { client };
        truth.last_active = now;
        self.end_wait(px, request);
        self.hand_over(px, request, conn, client);
    }

    /// The client gets its connection.
    fn hand_over(&mut self, px: u32, request: RequestId, conn: ConnId, client: u32) {
        let now = self.now;
        self.answered(client, Reply::Granted(conn));
        let c = &mut self.clients[client as usize];
        c.state = ClientState::Holding { conn, since: now };
        c.probe = false;
        self.notice(Notice::Granted { client });
        self.first_connect_landed(px, request, true);
    }

    /// A grant with `validate`: the request leaves the wait list for the
    /// ping's duration, the connection is its (borrowed), and the ping's
    /// answer is queued.
    fn begin_validation(
        &mut self,
        px: u32,
        request: RequestId,
        conn: ConnId,
        setting: Option<Setting>,
        apply_setting: bool,
    ) {
        let now = self.now;
        let slot = &mut self.pools[px as usize];
        let waiting = slot
            .waiting
            .remove(&request)
            .expect("the contract checked it waits");
        let truth = slot
            .conns
            .get_mut(&conn)
            .expect("the contract checked it is pooled");
        if apply_setting {
            truth.setting = setting;
        }
        truth.view = View::Borrowed {
            client: waiting.client,
        };
        truth.last_active = now;
        let alive = truth.session == Session::Open;
        slot.validating.insert(conn, (request, waiting));
        self.queue(SignalKind::Validated { ok: alive }, px, conn);
    }

    fn on_reject(&mut self, px: u32, request: RequestId, reason: RejectReason) {
        let client = self.pools[px as usize].waiting[&request].client;
        self.answered(client, Reply::Rejected(reason));
        self.end_wait(px, request);
        self.set_client_idle(client);
        self.first_connect_landed(px, request, false);
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
