//! A netsim run: the fake Postgres host and client processes, each running a pool under test over tokio-postgres, in one turmoil simulation; faults from the scenario's plan, then healed, and every pool must converge.
//!
//! The invariants keep pool-sim's names and are measured at the server
//! (sessions per role: each process connects as its own role) and at the
//! client sockets ([`Sockets`]), never from a pool's report alone:
//!
//! - `over-capacity`: a role has more live sessions (the server holds the
//!   session and the client still holds its socket) than its pool's largest
//!   size so far;
//! - `ghost-idle`: a get hands out a connection whose socket had ended (the
//!   server's close had reached the client) before the get began; one that
//!   ended while the get was under way is the allowed race, counted apart;
//! - `waiter-stalled`: a get not answered within its pool's own bound;
//! - `starved`: with the faults healed, probes (a get and a query per slot)
//!   fail;
//! - `accounting`: at quiescence the pool's gauge of open connections
//!   differs from its live sessions, a close reports a leak, or the pool's
//!   own check fails;
//! - `capacity-stalled`: at quiescence, more live sessions than the pool's
//!   current size;
//! - `close-stalled`: a close not done by its timeout;
//! - `footprint`: once a pool is closed (or every handle dropped), its role
//!   still has sessions past the server's idle kill.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pool_sim::Invariant;
use pool_sim::swarm::Rng;
use tokio::time::{Instant, sleep, timeout};

use crate::adapters::{bb8::Bb8, deadpool::Deadpool, pool_tokio::PoolTokio};
use crate::plan::{Event, GET_TIMEOUT_MS, NetScenario};
use crate::server::{ConnectFault, Phase, Server};
use crate::socket::Sockets;
use crate::under_test::{PoolKind, PoolOptions, PoolUnderTest, Setup};

/// Slack on every bound, in sim time.
pub const BOUND: Duration = Duration::from_secs(2);
/// A query's deadline (a statement timeout): turmoil drops the messages of a
/// partition for good, so a query sent into one would wait forever.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long close may take, past the pool's own close timeout.
pub const CLOSE_BOUND: Duration = Duration::from_secs(7);
/// Trace lines kept for a failure's report.
const TRACE_TAIL: usize = 12;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetOutcome {
    Pass,
    Violated {
        invariant: Invariant,
        at_ms: u64,
        detail: String,
    },
    /// turmoil itself failed (a host returned an error or panicked).
    SimError(String),
}

impl NetOutcome {
    /// The process exit code, as pool-sim's: 0 pass, 3 safety, 4 liveness,
    /// 5 when the simulation itself failed (pool-sim's code for a panic).
    pub fn exit_code(&self) -> i32 {
        match self {
            NetOutcome::Pass => 0,
            NetOutcome::Violated { invariant, .. } => invariant.kind().exit_code(),
            NetOutcome::SimError(_) => pool_sim::run::PANIC_EXIT_CODE,
        }
    }

    /// The invariant's name, `pass`, or `sim-error`.
    pub fn name(&self) -> String {
        match self {
            NetOutcome::Pass => "pass".to_owned(),
            NetOutcome::Violated { invariant, .. } => invariant.to_string(),
            NetOutcome::SimError(_) => "sim-error".to_owned(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct NetReport {
    pub scenario: NetScenario,
    pub outcome: NetOutcome,
    /// Faults fired, by name: the server's and the network's.
    pub faults: BTreeMap<String, u64>,
    pub gets_ok: u64,
    pub gets_failed: u64,
    /// Gets an outer timeout dropped mid-way.
    pub gets_cancelled: u64,
    /// Connections handed out whose socket ended while their get was under
    /// way (the allowed race of a close landing after the pool's check).
    pub handed_out_closing: u64,
    pub queries_ok: u64,
    pub sim_ms: u64,
    /// Sim steps (turmoil's ticks) the run took.
    pub steps: u64,
    /// Connections the server accepted.
    pub accepted: u64,
    /// A hash of every traced event (get outcomes, faults, checks) with its
    /// sim time: equal hashes, equal runs.
    pub trace_hash: u64,
    /// The last traced events.
    pub trace_tail: Vec<String>,
}

impl NetReport {
    pub fn seed(&self) -> u64 {
        self.scenario.seed
    }
}

/// Run seed `seed` with pool `kind`.
pub fn run(seed: u64, kind: PoolKind) -> NetReport {
    run_scenario(&NetScenario::draw(seed, kind))
}

/// Run a scenario (drawn from a seed, or read from a file).
pub fn run_scenario(scenario: &NetScenario) -> NetReport {
    match &scenario.pool {
        PoolOptions::PoolTokio(o) => drive::<PoolTokio>(scenario, o),
        PoolOptions::Bb8(o) => drive::<Bb8>(scenario, o),
        PoolOptions::Deadpool(o) => drive::<Deadpool>(scenario, o),
    }
}

/// What the processes tell the driver, and the driver them.
#[derive(Debug)]
struct Hub {
    healed: bool,
    done: u32,
    violation: Option<(Invariant, u64, String)>,
    gets_ok: u64,
    gets_failed: u64,
    gets_cancelled: u64,
    handed_out_closing: u64,
    queries_ok: u64,
    /// Per process: the largest size its pool has had (over-capacity's
    /// bound), and its size now.
    largest_size: Vec<usize>,
    size: Vec<usize>,
    trace_hash: u64,
    trace_tail: Vec<String>,
}

#[derive(Clone, Debug)]
struct SharedHub(Arc<Mutex<Hub>>);

impl SharedHub {
    fn lock(&self) -> MutexGuard<'_, Hub> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn healed(&self) -> bool {
        self.lock().healed
    }

    fn violate(&self, invariant: Invariant, detail: String) {
        let at = now_ms();
        self.trace(format!("VIOLATION {invariant}: {detail}"));
        let mut h = self.lock();
        if h.violation.is_none() {
            h.violation = Some((invariant, at, detail));
        }
    }

    /// One traced event, stamped with the sim time.
    fn trace(&self, line: String) {
        let line = format!("{:>6} ms {line}", now_ms());
        let mut h = self.lock();
        h.trace_hash = fnv(h.trace_hash, line.as_bytes());
        if h.trace_tail.len() == TRACE_TAIL {
            h.trace_tail.remove(0);
        }
        h.trace_tail.push(line);
    }
}

/// Sim time in ms (0 outside a host).
fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64)
}

/// FNV-1a, continued from `hash`: stable across builds and processes.
fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn role(process: u32) -> String {
    format!("proc{process}")
}

/// Sessions of `role` that are live and its pool's: the server holds the
/// session and the client still holds its socket for the pool (a socket the
/// client dropped is closing, whether or not its FIN ever arrives; a
/// detached one is no longer the pool's).
pub fn live_sessions(server: &Server, sockets: &Sockets, role: &str) -> usize {
    server
        .connections()
        .iter()
        .filter(|c| c.phase == Phase::Session && c.role.as_deref() == Some(role))
        .filter(|c| sockets.is_pooled(c.peer))
        .count()
}

fn drive<P: PoolUnderTest>(scenario: &NetScenario, pool_options: &P::Options) -> NetReport {
    let options = &scenario.options;
    let mut sim = turmoil::Builder::new()
        .rng_seed(scenario.seed)
        .simulation_duration(Duration::from_secs(3_600))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .build();
    let planned = scenario.plan.connect_faults();
    let mut connects_seen: BTreeMap<String, u32> = BTreeMap::new();
    let server = Server::with_plan(options.server_config(), move |info| {
        let nth = connects_seen.entry(info.role.clone()).or_default();
        let process = info.role.strip_prefix("proc").and_then(|p| p.parse().ok());
        let fault = process
            .and_then(|p| planned.get(&(p, *nth)))
            .copied()
            .unwrap_or(ConnectFault::Normal);
        *nth += 1;
        fault
    });
    let db = server.clone();
    sim.host("db", move || db.clone().run());
    let hub = SharedHub(Arc::new(Mutex::new(Hub {
        healed: false,
        done: 0,
        violation: None,
        gets_ok: 0,
        gets_failed: 0,
        gets_cancelled: 0,
        handed_out_closing: 0,
        queries_ok: 0,
        largest_size: vec![options.max_size; options.processes as usize],
        size: vec![options.max_size; options.processes as usize],
        trace_hash: 0xcbf2_9ce4_8422_2325,
        trace_tail: Vec::new(),
    })));
    let sockets = Sockets::default();
    let scenario_shared = Arc::new(scenario.clone());
    for p in 0..options.processes {
        let (scenario, hub, sockets, server) = (
            scenario_shared.clone(),
            hub.clone(),
            sockets.clone(),
            server.clone(),
        );
        let pool_options = pool_options.clone();
        sim.host(role(p), move || {
            process::<P>(
                p,
                scenario.clone(),
                pool_options.clone(),
                hub.clone(),
                sockets.clone(),
                server.clone(),
            )
        });
    }

    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = |name: &str| *faults.entry(name.to_owned()).or_default() += 1;
    let faults_until = Duration::from_millis(options.faults_ms);
    let mut events = scenario.plan.events.iter().peekable();
    let mut partitioned: Vec<(String, Duration)> = Vec::new();
    let mut crashed_until: Option<Duration> = None;
    let mut steps = 0u64;
    let mut finished_at: Option<Duration> = None;
    let mut sessions_checked = u64::MAX;
    let outcome = loop {
        if let Err(e) = sim.step() {
            break NetOutcome::SimError(e.to_string());
        }
        steps += 1;
        let now = sim.elapsed();
        if let Some((invariant, at_ms, detail)) = hub.lock().violation.clone() {
            break NetOutcome::Violated {
                invariant,
                at_ms,
                detail,
            };
        }
        // over-capacity: a new session is the only way up.
        let started = server.sessions_started();
        if started != sessions_checked {
            sessions_checked = started;
            let largest = hub.lock().largest_size.clone();
            if let Some((p, live)) = (0..options.processes)
                .map(|p| (p, live_sessions(&server, &sockets, &role(p))))
                .find(|&(p, live)| live > largest[p as usize])
            {
                break NetOutcome::Violated {
                    invariant: Invariant::OverCapacity,
                    at_ms: now.as_millis() as u64,
                    detail: format!(
                        "{} has {live} live sessions; its pool's largest size so far is {}",
                        role(p),
                        largest[p as usize]
                    ),
                };
            }
        }
        // Repairs and restarts fall due in sim time.
        partitioned.retain(|(host, until)| {
            if now >= *until {
                sim.repair("db", host.as_str());
                false
            } else {
                true
            }
        });
        if crashed_until.is_some_and(|until| now >= until) {
            sim.bounce("db");
            crashed_until = None;
        }
        while let Some(e) = events.next_if(|e| Duration::from_millis(e.at_ms) <= now) {
            if now >= faults_until {
                continue;
            }
            match e.event {
                Event::TerminateAll => {
                    server.terminate_all();
                    count("terminate-all");
                }
                Event::Partition { process, for_ms } if process < options.processes => {
                    let host = role(process);
                    if !partitioned.iter().any(|(h, _)| *h == host) {
                        sim.partition("db", host.as_str());
                        partitioned.push((host, now + Duration::from_millis(for_ms)));
                        count("partition");
                    }
                }
                Event::CrashDb { for_ms } if crashed_until.is_none() => {
                    sim.crash("db");
                    crashed_until = Some(now + Duration::from_millis(for_ms));
                    count("db-crash");
                }
                // Resizes are the processes' own (see `resizer`).
                Event::Partition { .. } | Event::CrashDb { .. } | Event::Resize { .. } => {}
            }
        }
        if now >= faults_until && !hub.lock().healed && crashed_until.is_none() {
            // Heal: every connect normal, links repaired; the processes
            // stop their workload, probe, check and close.
            server.set_plan(|_| ConnectFault::Normal);
            for (host, _) in partitioned.drain(..) {
                sim.repair("db", host.as_str());
            }
            hub.lock().healed = true;
        }
        let done = hub.lock().done;
        if done == options.processes && finished_at.is_none() {
            finished_at = Some(now);
        }
        // After every pool closed: the server's sessions drain (a lost
        // FIN's through the idle kill).
        if let Some(at) = finished_at {
            let grace = Duration::from_millis(options.idle_session_timeout_ms) + BOUND;
            if now >= at + grace {
                let stats = server.stats();
                break match stats.sessions_by_role.iter().find(|(_, n)| **n > 0) {
                    Some((role, n)) => NetOutcome::Violated {
                        invariant: Invariant::Footprint,
                        at_ms: now.as_millis() as u64,
                        detail: format!(
                            "{role} still has {n} server sessions {grace:?} after its pool closed"
                        ),
                    },
                    None => NetOutcome::Pass,
                };
            }
        }
        if now > faults_until + Duration::from_secs(600) {
            break NetOutcome::Violated {
                invariant: Invariant::Starved,
                at_ms: now.as_millis() as u64,
                detail: "the processes did not finish 10 minutes after the faults healed"
                    .to_owned(),
            };
        }
    };
    let stats = server.stats();
    for (kind, n) in &stats.faults {
        *faults.entry(kind.to_string()).or_default() += n;
    }
    let h = hub.lock();
    NetReport {
        scenario: scenario.clone(),
        outcome,
        faults,
        gets_ok: h.gets_ok,
        gets_failed: h.gets_failed,
        gets_cancelled: h.gets_cancelled,
        handed_out_closing: h.handed_out_closing,
        queries_ok: h.queries_ok,
        sim_ms: sim.elapsed().as_millis() as u64,
        steps,
        accepted: stats.accepted,
        trace_hash: h.trace_hash,
        trace_tail: h.trace_tail.clone(),
    }
}

/// What every task of a process shares.
struct Process<P: PoolUnderTest> {
    index: u32,
    role: String,
    pool: P,
    hub: SharedHub,
    sockets: Sockets,
    server: Server,
    scenario: Arc<NetScenario>,
}

impl<P: PoolUnderTest> Clone for Process<P> {
    fn clone(&self) -> Self {
        Process {
            index: self.index,
            role: self.role.clone(),
            pool: self.pool.clone(),
            hub: self.hub.clone(),
            sockets: self.sockets.clone(),
            server: self.server.clone(),
            scenario: self.scenario.clone(),
        }
    }
}

/// One process: a pool, its clients until the faults heal, then probes,
/// the quiescence checks, and close (or every handle dropped).
async fn process<P: PoolUnderTest>(
    index: u32,
    scenario: Arc<NetScenario>,
    pool_options: P::Options,
    hub: SharedHub,
    sockets: Sockets,
    server: Server,
) -> turmoil::Result {
    let options = scenario.options.clone();
    let role = role(index);
    let setup = Setup {
        role: role.clone(),
        max_size: options.max_size,
        min_idle: options.min_idle,
        get_timeout: Duration::from_millis(GET_TIMEOUT_MS),
        sockets: sockets.clone(),
    };
    let pool = P::build(&setup, &pool_options);
    let me = Process {
        index,
        role: role.clone(),
        pool,
        hub: hub.clone(),
        sockets,
        server,
        scenario: scenario.clone(),
    };
    let resizes = tokio::spawn(resizer(me.clone()));
    let mut clients = Vec::new();
    for c in 0..options.clients {
        let me = me.clone();
        let rng = Rng::new(scenario.seed ^ (u64::from(index) << 32) ^ u64::from(c));
        let listener = c < options.listeners;
        clients.push(tokio::spawn(async move {
            if listener {
                listen(me).await;
            } else {
                query(me, rng).await;
            }
        }));
    }
    while !hub.healed() {
        sleep(Duration::from_millis(100)).await;
    }
    resizes.abort();
    for client in clients {
        let _ = client.await;
    }
    // Faults healed: the pool settles (and the server reaps the sessions a
    // partition left half open), then the whole size must serve: as many
    // probes as the pool and the role limit allow.
    sleep(BOUND + Duration::from_millis(options.idle_session_timeout_ms)).await;
    let size = hub.lock().size[index as usize];
    let probes = match options.role_conn_limit {
        0 => size,
        limit => size.min(limit as usize),
    };
    let probes: Vec<_> = (0..probes)
        .map(|_| tokio::spawn(probe(me.clone())))
        .collect();
    for probe in probes {
        if let Ok(Err(e)) = probe.await {
            hub.violate(
                Invariant::Starved,
                format!("{role}: a probe failed with faults healed: {e}"),
            );
        }
    }
    quiescent(&me, size).await;
    let Process { pool, .. } = me;
    if P::CAPABILITIES.close {
        match timeout(CLOSE_BOUND, pool.close()).await {
            Ok(Some(outcome)) if outcome.leaked.unwrap_or(0) > 0 => hub.violate(
                Invariant::Accounting,
                format!(
                    "{role}: close leaked {:?} with every client done",
                    outcome.leaked
                ),
            ),
            Ok(_) => {}
            Err(_) => hub.violate(
                Invariant::CloseStalled,
                format!("{role}: close not complete after {CLOSE_BOUND:?}"),
            ),
        }
    }
    // The last handle: a pool without close is closed by dropping it.
    drop(pool);
    hub.trace(format!("{role}: closed"));
    hub.lock().done += 1;
    Ok(())
}

/// Quiescence: nothing borrowed, nothing asked. The pool's own count of
/// open connections must be its live sessions, and no more than its size.
async fn quiescent<P: PoolUnderTest>(me: &Process<P>, size: usize) {
    // Let returns, refills and their handshakes land (well inside any idle
    // kill: the probes just used every connection).
    sleep(Duration::from_millis(500)).await;
    if let Err(e) = me.pool.check() {
        me.hub
            .violate(Invariant::Accounting, format!("{}: {e}", me.role));
    }
    let live = live_sessions(&me.server, &me.sockets, &me.role);
    let gauges = me.pool.gauges();
    me.hub.trace(format!(
        "{}: quiescent, {live} live sessions, pool says {} open",
        me.role, gauges.open
    ));
    if gauges.open != live {
        me.hub.violate(
            Invariant::Accounting,
            format!(
                "{}: at quiescence the pool counts {} open connections, the server and the sockets {live} live sessions",
                me.role, gauges.open
            ),
        );
    } else if live > size {
        me.hub.violate(
            Invariant::CapacityStalled,
            format!(
                "{}: at quiescence {live} live sessions, above the pool's size {size}",
                me.role
            ),
        );
    }
}

/// The process's resizes, at their times (pools without resize skip them).
async fn resizer<P: PoolUnderTest>(me: Process<P>) {
    if !P::CAPABILITIES.resize {
        return;
    }
    let resizes = me
        .scenario
        .plan
        .events
        .iter()
        .filter_map(|e| match e.event {
            Event::Resize { process, max_size } if process == me.index => Some((e.at_ms, max_size)),
            _ => None,
        });
    for (at_ms, max_size) in resizes {
        let wait = Duration::from_millis(at_ms).saturating_sub(turmoil::elapsed());
        sleep(wait).await;
        {
            let mut h = me.hub.lock();
            let i = me.index as usize;
            h.largest_size[i] = h.largest_size[i].max(max_size);
            h.size[i] = max_size;
        }
        me.pool.resize(max_size);
        me.hub.trace(format!("{}: resize to {max_size}", me.role));
    }
}

/// A get, measured: its time against the pool's bound, and what it hands
/// out against what the socket had seen.
async fn checked_get<P: PoolUnderTest>(me: &Process<P>) -> Option<P::Conn> {
    let started = Instant::now();
    let got = me.pool.get().await;
    let took = started.elapsed();
    let bound = me.pool.get_bound() + BOUND;
    if took > bound {
        me.hub.violate(
            Invariant::WaiterStalled,
            format!(
                "{}: a get took {took:?}; its pool's bound is {:?}",
                me.role,
                me.pool.get_bound()
            ),
        );
    }
    match got {
        Ok(conn) => {
            let socket = me.pool.socket(&conn);
            let life = socket.and_then(|addr| me.sockets.life(addr));
            match (socket, life.and_then(|l| l.ended_at)) {
                (None, _) => me.hub.violate(
                    Invariant::Accounting,
                    format!("{}: a handed-out connection has no known socket", me.role),
                ),
                (Some(addr), Some(ended)) if ended < started => me.hub.violate(
                    Invariant::GhostIdle,
                    format!(
                        "{}: handed out the connection on {addr}, whose socket had ended {:?} before the get began",
                        me.role,
                        started - ended
                    ),
                ),
                (Some(_), Some(_)) => me.hub.lock().handed_out_closing += 1,
                (Some(_), None) => {}
            }
            me.hub.lock().gets_ok += 1;
            me.hub
                .trace(format!("{}: get ok in {} ms", me.role, took.as_millis()));
            Some(conn)
        }
        Err(e) => {
            me.hub.lock().gets_failed += 1;
            me.hub.trace(format!(
                "{}: get failed in {} ms: {e}",
                me.role,
                took.as_millis()
            ));
            None
        }
    }
}

/// `SELECT 1`, within the query deadline.
async fn select_one<P: PoolUnderTest>(conn: &P::Conn) -> bool {
    matches!(
        timeout(QUERY_TIMEOUT, P::client(conn).simple_query("SELECT 1")).await,
        Ok(Ok(_))
    )
}

/// A probe: a get that must succeed and a query on it. A connection the
/// faults left dead without a word (a partition's half-open session) may
/// still be pooled; its query fails, it is tainted (or returned, and the
/// pool finds it broken), and the probe tries again.
async fn probe<P: PoolUnderTest>(me: Process<P>) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..=me.scenario.options.max_size + 1 {
        match me.pool.get().await {
            Ok(conn) => {
                if select_one::<P>(&conn).await {
                    sleep(Duration::from_millis(50)).await;
                    return Ok(());
                }
                me.pool.taint(conn);
                last = "its query failed".to_owned();
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// A client that gets, queries, holds a little, returns (or taints a broken
/// connection), until the faults heal. Some of its gets an outer timeout
/// drops mid-way.
async fn query<P: PoolUnderTest>(me: Process<P>, mut rng: Rng) {
    let cancel_pct = u64::from(me.scenario.options.cancel_pct);
    let long_hold_pct = u64::from(me.scenario.options.long_hold_pct);
    while !me.hub.healed() {
        sleep(Duration::from_millis(rng.range(1, 200))).await;
        let conn = if rng.below(100) < cancel_pct {
            let cut = Duration::from_millis(rng.range(1, me.pool.get_bound().as_millis() as u64));
            match timeout(cut, checked_get(&me)).await {
                Ok(conn) => conn,
                Err(_) => {
                    me.hub.lock().gets_cancelled += 1;
                    me.hub
                        .trace(format!("{}: get dropped after {cut:?}", me.role));
                    None
                }
            }
        } else {
            checked_get(&me).await
        };
        let Some(conn) = conn else {
            continue;
        };
        if select_one::<P>(&conn).await {
            me.hub.lock().queries_ok += 1;
            let hold_ms = if rng.below(100) < long_hold_pct {
                rng.range(300, 1_500)
            } else {
                rng.range(1, 100)
            };
            sleep(Duration::from_millis(hold_ms)).await;
            drop(conn);
        } else {
            me.pool.taint(conn);
        }
    }
}

/// A LISTEN client (Hatchet's multiplexer): get, LISTEN, take the connection
/// out of the pool (or, where the pool cannot, keep holding it), until the
/// server ends the session; then again, until the faults heal.
async fn listen<P: PoolUnderTest>(me: Process<P>) {
    while !me.hub.healed() {
        let Some(conn) = checked_get(&me).await else {
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let socket = me.pool.socket(&conn);
        let listening = timeout(QUERY_TIMEOUT, P::client(&conn).batch_execute("LISTEN jobs")).await;
        if !matches!(listening, Ok(Ok(()))) {
            me.pool.taint(conn);
            continue;
        }
        let held: Box<dyn Send> = match me.pool.detach(conn) {
            Ok(detached) => {
                if let Some(addr) = socket {
                    me.sockets.mark_detached(addr);
                }
                detached
            }
            Err(conn) => Box::new(conn),
        };
        while !me.hub.healed() && !socket.is_none_or(|addr| me.sockets.has_ended(addr)) {
            sleep(Duration::from_millis(100)).await;
        }
        drop(held);
    }
}
