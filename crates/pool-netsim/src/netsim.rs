//! A netsim run: the fake Postgres host and client processes, each running a
//! pool-tokio pool over tokio-postgres, in one turmoil simulation driven by a
//! seed. The seed draws the options (as pool-sim's swarm does) and every
//! fault: protocol faults per connect (ReadyForQuery + 57P01 + FIN in one
//! write, a handshake that hangs, the role limit), server idle-session kills,
//! terminate-all, network partitions, crashed processes. Then the faults
//! heal and each pool must converge.
//!
//! The invariants keep pool-sim's names, observed from the clients (gets,
//! probes, close, the pool's own consistency check) and from the server
//! (sessions per role: each process connects as its own role).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::Config;
use pool_sim::Invariant;
use pool_sim::swarm::Rng;
use pool_tokio::Pool;
use serde::Serialize;
use tokio::time::{Instant, sleep, timeout};

use crate::manager::PgManager;
use crate::server::{ConnectFault, Server, ServerConfig};

/// Slack on every bound, in sim time.
pub const BOUND: Duration = Duration::from_secs(2);
/// The deadline of every get in the workload.
pub const GET_TIMEOUT: Duration = Duration::from_secs(3);
/// How long close may take (then it reports what leaked).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A query's deadline (a statement timeout): turmoil drops the messages of a
/// partition for good, so a query sent into one would wait forever.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// `SELECT 1`, within the query deadline.
async fn select_one(conn: &crate::manager::PgConn) -> bool {
    matches!(
        timeout(QUERY_TIMEOUT, conn.client.simple_query("SELECT 1")).await,
        Ok(Ok(_))
    )
}

/// Every option of a netsim run, drawn from its seed.
#[derive(Clone, Debug, Serialize)]
pub struct NetOptions {
    pub processes: u32,
    /// Clients per process; the first `listeners` are LISTEN-style.
    pub clients: u32,
    pub listeners: u32,
    pub pool: Config,
    pub role_conn_limit: u32,
    /// 0: off; else the server kills sessions idle this long.
    pub idle_session_timeout_ms: u64,
    pub ready_then_fin_pct: u8,
    pub hang_pct: u8,
    /// 0: off; else mean interval between terminate-all events.
    pub terminate_every_ms: u64,
    /// 0: off; else mean interval between partitions of a process from db.
    pub partition_every_ms: u64,
    /// 0: off; else mean interval between crashes (and restarts) of the db
    /// host: every session is gone without a word to the clients.
    pub crash_every_ms: u64,
    /// How long the faults last before they heal.
    pub faults_ms: u64,
}

impl NetOptions {
    pub fn draw(rng: &mut Rng) -> NetOptions {
        let max_size = rng.range(1, 4) as usize;
        let processes = rng.range(1, 3) as u32;
        let partition_every_ms = if rng.chance(60) {
            0
        } else {
            rng.pick(&[3_000, 8_000])
        };
        // turmoil drops a partition's messages for good, so a session cut off
        // mid-close stays open at the server until its idle kill: partitions
        // come with one.
        let idle_session_timeout_ms = if partition_every_ms == 0 && rng.chance(50) {
            0
        } else {
            rng.pick(&[2_000, 5_000])
        };
        NetOptions {
            processes,
            clients: rng.range(1, 4) as u32,
            listeners: if rng.chance(50) { 0 } else { 1 },
            pool: Config {
                max_size,
                min_idle: rng.below(2) as usize,
                idle_timeout_ms: rng.pick(&[0, 1_000, 10_000]),
                max_lifetime_ms: rng.pick(&[0, 4_000, 60_000]),
                acquire_timeout_ms: GET_TIMEOUT.as_millis() as u64,
                connect_timeout_ms: 1_000,
                // Some backoff: every connect takes an ephemeral port, and a
                // storm of them runs a turmoil host out.
                reconnect_backoff_ms: rng.pick(&[100, 500]),
            },
            role_conn_limit: if rng.chance(70) {
                0
            } else {
                rng.range(1, max_size as u64 + 1) as u32
            },
            idle_session_timeout_ms,
            ready_then_fin_pct: if rng.chance(50) {
                0
            } else {
                rng.range(5, 40) as u8
            },
            hang_pct: if rng.chance(50) {
                0
            } else {
                rng.range(2, 20) as u8
            },
            terminate_every_ms: if rng.chance(50) {
                0
            } else {
                rng.pick(&[2_000, 6_000])
            },
            partition_every_ms,
            crash_every_ms: if rng.chance(70) {
                0
            } else {
                rng.pick(&[5_000, 10_000])
            },
            faults_ms: rng.pick(&[5_000, 15_000]),
        }
    }
}

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
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct NetReport {
    pub seed: u64,
    pub options: NetOptions,
    pub outcome: NetOutcome,
    /// Faults fired, by name: the server's and the network's.
    pub faults: BTreeMap<String, u64>,
    pub gets_ok: u64,
    pub gets_failed: u64,
    pub queries_ok: u64,
    pub sim_ms: u64,
    /// Sim steps (turmoil's ticks) the run took.
    pub steps: u64,
    /// Connections the server accepted.
    pub accepted: u64,
}

/// What the processes tell the driver, and the driver them.
#[derive(Debug, Default)]
struct Hub {
    healed: bool,
    done: u32,
    violation: Option<(Invariant, u64, String)>,
    gets_ok: u64,
    gets_failed: u64,
    queries_ok: u64,
    epoch: Option<Instant>,
}

type SharedHub = Arc<Mutex<Hub>>;

fn violate(hub: &SharedHub, invariant: Invariant, detail: String) {
    let mut h = hub.lock().unwrap();
    if h.violation.is_none() {
        let at = h
            .epoch
            .map_or(0, |e| Instant::now().duration_since(e).as_millis() as u64);
        h.violation = Some((invariant, at, detail));
    }
}

fn healed(hub: &SharedHub) -> bool {
    hub.lock().unwrap().healed
}

/// Run seed `seed`.
pub fn run(seed: u64) -> NetReport {
    // The options first, then (from the same RNG) every fault.
    let mut rng = Rng::new(seed);
    let options = NetOptions::draw(&mut rng);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(3_600))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .build();
    let mut plan_rng = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    let (fin, hang) = (options.ready_then_fin_pct, options.hang_pct);
    let server = Server::with_plan(
        ServerConfig {
            role_conn_limit: options.role_conn_limit as usize,
            idle_session_timeout: (options.idle_session_timeout_ms > 0)
                .then(|| Duration::from_millis(options.idle_session_timeout_ms)),
            ..ServerConfig::default()
        },
        move |_| {
            let roll = plan_rng.below(100) as u8;
            if roll < fin {
                ConnectFault::ReadyThenFin
            } else if roll < fin.saturating_add(hang) {
                ConnectFault::Hang
            } else {
                ConnectFault::Normal
            }
        },
    );
    let db = server.clone();
    sim.host("db", move || db.clone().run());
    let hub: SharedHub = Arc::default();
    for p in 0..options.processes {
        let (opts, hub) = (options.clone(), hub.clone());
        sim.host(format!("proc{p}"), move || {
            process(p, seed, opts.clone(), hub.clone())
        });
    }

    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = |name: &str| *faults.entry(name.to_owned()).or_default() += 1;
    let faults_until = Duration::from_millis(options.faults_ms);
    let first = |rng: &mut Rng, every: u64| {
        (every > 0).then(|| Duration::from_millis(rng.range(1, every * 2)))
    };
    let mut next_terminate = first(&mut rng, options.terminate_every_ms);
    let mut next_partition = first(&mut rng, options.partition_every_ms);
    let mut next_crash = first(&mut rng, options.crash_every_ms);
    let mut partitioned: Vec<(String, Duration)> = Vec::new();
    let mut crashed: Vec<(String, Duration)> = Vec::new();
    let mut steps = 0u64;
    let mut finished_at: Option<Duration> = None;
    let outcome = loop {
        if let Err(e) = sim.step() {
            break NetOutcome::SimError(e.to_string());
        }
        steps += 1;
        let now = sim.elapsed();
        if let Some((invariant, at_ms, detail)) = hub.lock().unwrap().violation.clone() {
            break NetOutcome::Violated {
                invariant,
                at_ms,
                detail,
            };
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
        crashed.retain(|(host, until)| {
            if now >= *until {
                sim.bounce(host.as_str());
                false
            } else {
                true
            }
        });
        if now < faults_until {
            if next_terminate.is_some_and(|t| now >= t) {
                server.terminate_all();
                count("terminate-all");
                next_terminate =
                    Some(now + Duration::from_millis(rng.range(1, options.terminate_every_ms * 2)));
            }
            if next_partition.is_some_and(|t| now >= t) {
                let host = format!("proc{}", rng.below(u64::from(options.processes)));
                if !partitioned.iter().any(|(h, _)| *h == host) {
                    sim.partition("db", host.as_str());
                    partitioned.push((host, now + Duration::from_millis(rng.range(100, 2_000))));
                    count("partition");
                }
                next_partition =
                    Some(now + Duration::from_millis(rng.range(1, options.partition_every_ms * 2)));
            }
            if next_crash.is_some_and(|t| now >= t) {
                if crashed.is_empty() {
                    sim.crash("db");
                    crashed.push((
                        "db".to_owned(),
                        now + Duration::from_millis(rng.range(100, 1_000)),
                    ));
                    count("db-crash");
                }
                next_crash =
                    Some(now + Duration::from_millis(rng.range(1, options.crash_every_ms * 2)));
            }
        } else if !hub.lock().unwrap().healed && crashed.is_empty() {
            // Heal: every connect normal, links repaired; the processes
            // stop their workload, probe and close.
            server.set_plan(|_| ConnectFault::Normal);
            for (host, _) in partitioned.drain(..) {
                sim.repair("db", host.as_str());
            }
            hub.lock().unwrap().healed = true;
        }
        let done = hub.lock().unwrap().done;
        if done == options.processes && finished_at.is_none() {
            finished_at = Some(now);
        }
        // After every pool closed: the server's sessions drain (a crashed
        // process's through the idle kill).
        if let Some(at) = finished_at {
            let grace = Duration::from_millis(options.idle_session_timeout_ms) + BOUND;
            if now >= at + grace {
                let stats = server.stats();
                break match stats.sessions_by_role.iter().find(|(_, n)| **n > 0) {
                    Some((role, n)) => NetOutcome::Violated {
                        invariant: Invariant::Footprint,
                        at_ms: now.as_millis() as u64,
                        detail: format!(
                            "{role} still has {n} server sessions after its pool closed"
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
    let h = hub.lock().unwrap();
    NetReport {
        seed,
        options,
        outcome,
        faults,
        gets_ok: h.gets_ok,
        gets_failed: h.gets_failed,
        queries_ok: h.queries_ok,
        sim_ms: sim.elapsed().as_millis() as u64,
        steps,
        accepted: stats.accepted,
    }
}

/// One process: a pool, its clients until the faults heal, then probes and
/// close.
async fn process(p: u32, seed: u64, opts: NetOptions, hub: SharedHub) -> turmoil::Result {
    hub.lock().unwrap().epoch.get_or_insert_with(Instant::now);
    let role = format!("proc{p}");
    let pool = Pool::builder(PgManager::new(&role))
        .config(opts.pool.clone())
        .close_timeout(CLOSE_TIMEOUT)
        .build();
    let mut clients = Vec::new();
    for c in 0..opts.clients {
        let (pool, hub) = (pool.clone(), hub.clone());
        let rng = Rng::new(seed ^ (u64::from(p) << 32) ^ u64::from(c));
        let listener = c < opts.listeners;
        clients.push(tokio::spawn(async move {
            if listener {
                listen(pool, hub).await;
            } else {
                query(pool, hub, rng).await;
            }
        }));
    }
    while !healed(&hub) {
        sleep(Duration::from_millis(100)).await;
    }
    for client in clients {
        let _ = client.await;
    }
    // Faults healed: the pool settles (and the server reaps the sessions a
    // partition left half open), then the whole capacity must serve: as
    // many probes as the pool and the role limit allow.
    sleep(BOUND + Duration::from_millis(opts.idle_session_timeout_ms)).await;
    let limit = match opts.role_conn_limit {
        0 => usize::MAX,
        n => n as usize,
    };
    let probes: Vec<_> = (0..opts.pool.max_size.min(limit))
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(probe(pool))
        })
        .collect();
    for probe in probes {
        if let Ok(Err(e)) = probe.await {
            violate(
                &hub,
                Invariant::Starved,
                format!("{role}: a probe failed with faults healed: {e}"),
            );
        }
    }
    if let Err(e) = pool.check() {
        violate(&hub, Invariant::Accounting, format!("{role}: {e}"));
    }
    match timeout(CLOSE_TIMEOUT + BOUND, pool.close()).await {
        Ok(report) if report.leaked == 0 => {}
        Ok(report) => violate(
            &hub,
            Invariant::Accounting,
            format!(
                "{role}: close leaked {} with every client done",
                report.leaked
            ),
        ),
        Err(_) => violate(
            &hub,
            Invariant::CloseStalled,
            format!("{role}: close not complete {:?} after its timeout", BOUND),
        ),
    }
    hub.lock().unwrap().done += 1;
    Ok(())
}

/// A probe: a get that must succeed and a query on it. A conn the faults
/// left dead without a word (a partition's half-open session) can still be
/// pooled; its query fails and it is tainted, and the probe tries again.
async fn probe(pool: Pool<PgManager>) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..=pool.stats().capacity {
        match pool.get_with(None, Some(GET_TIMEOUT)).await {
            Ok(conn) => {
                if select_one(&conn).await {
                    sleep(Duration::from_millis(50)).await;
                    return Ok(());
                }
                conn.taint();
                last = "its query failed".to_owned();
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(last)
}

/// A client that acquires, queries, holds a little, releases (or taints a
/// broken conn), until the faults heal.
async fn query(pool: Pool<PgManager>, hub: SharedHub, mut rng: Rng) {
    while !healed(&hub) {
        sleep(Duration::from_millis(rng.range(1, 200))).await;
        let started = Instant::now();
        let got = pool.get_with(None, Some(GET_TIMEOUT)).await;
        if started.elapsed() > GET_TIMEOUT + BOUND {
            violate(
                &hub,
                Invariant::WaiterStalled,
                format!(
                    "a get took {:?}, its timeout was {GET_TIMEOUT:?}",
                    started.elapsed()
                ),
            );
        }
        let stats = pool.stats();
        if stats.held > stats.capacity {
            violate(
                &hub,
                Invariant::OverCapacity,
                format!(
                    "the pool holds {} with capacity {}",
                    stats.held, stats.capacity
                ),
            );
        }
        match got {
            Ok(conn) => {
                hub.lock().unwrap().gets_ok += 1;
                if select_one(&conn).await {
                    hub.lock().unwrap().queries_ok += 1;
                    sleep(Duration::from_millis(rng.range(1, 100))).await;
                    drop(conn);
                } else {
                    conn.taint();
                }
            }
            Err(_) => hub.lock().unwrap().gets_failed += 1,
        }
    }
}

/// A LISTEN client (Hatchet's multiplexer): acquire, detach, LISTEN, hold
/// until the server kills the session, then again; until the faults heal.
async fn listen(pool: Pool<PgManager>, hub: SharedHub) {
    while !healed(&hub) {
        let Ok(conn) = pool.get_with(None, Some(GET_TIMEOUT)).await else {
            hub.lock().unwrap().gets_failed += 1;
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        hub.lock().unwrap().gets_ok += 1;
        let mut raw = conn.detach();
        let listen = timeout(QUERY_TIMEOUT, raw.client.batch_execute("LISTEN jobs")).await;
        if !matches!(listen, Ok(Ok(()))) {
            continue;
        }
        tokio::select! {
            _ = raw.ended() => {}
            _ = async { while !healed(&hub) { sleep(Duration::from_millis(100)).await } } => {}
        }
    }
}
