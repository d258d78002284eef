//! A network simulation as data: the options every pool shares, the pool's own options, and the fault plan (each connect's fault, each server-side event with its time), drawn from a seed, written to a file, replayed and shrunk.
//!
//! The seed draws the shared options and the plan from one stream, and each
//! pool's own options from a stream of their own, so every pool meets the
//! same workload and the same faults. The seed is kept in the scenario: it
//! seeds turmoil's network and each client's think times; everything the
//! shrinker may take away is explicit.

use std::collections::BTreeMap;
use std::path::Path;

use pool_sim::swarm::Rng;
use serde::{Deserialize, Serialize};

use crate::server::ConnectFault;
use crate::under_test::{PoolKind, PoolOptions};

/// The get timeout of pools that take one per get (pool-tokio).
pub const GET_TIMEOUT_MS: u64 = 3_000;
/// Connects planned per process; later ones (a storm) are normal.
pub const PLANNED_CONNECTS: u32 = 200;

/// The options every pool of a run shares, drawn from the seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetOptions {
    /// Processes, each with one pool (its own role) and its clients.
    pub processes: u32,
    /// Clients per process; the first `listeners` are LISTEN-style.
    pub clients: u32,
    pub listeners: u32,
    pub max_size: usize,
    pub min_idle: usize,
    /// Share of a query client's gets that an outer timeout drops mid-way.
    pub cancel_pct: u8,
    /// Share of a query client's holds that are long (a slow transaction:
    /// 300 to 1,500 ms instead of up to 100 ms).
    pub long_hold_pct: u8,
    /// 0: no limit; else the server refuses a role's sessions beyond it.
    pub role_conn_limit: u32,
    /// 0: off; else the server kills sessions idle this long.
    pub idle_session_timeout_ms: u64,
    /// How long the faults last before they heal.
    pub faults_ms: u64,
}

/// A connect the plan answers with a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedConnect {
    pub process: u32,
    /// Which of the process's connects (from 0), as the server counts them.
    pub nth: u32,
    pub fault: PlannedFault,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlannedFault {
    /// ReadyForQuery, FATAL 57P01 and FIN in one write (Bun).
    ReadyThenFin,
    /// A handshake that never completes.
    Hang,
}

impl PlannedFault {
    pub fn connect_fault(self) -> ConnectFault {
        match self {
            PlannedFault::ReadyThenFin => ConnectFault::ReadyThenFin,
            PlannedFault::Hang => ConnectFault::Hang,
        }
    }
}

/// A server-side or network event, or a resize of a process's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum Event {
    /// pg_terminate_backend on every connection (57P01).
    TerminateAll,
    /// Cut `process` off from the db host for `for_ms` (turmoil drops what
    /// is sent meanwhile, for good).
    Partition { process: u32, for_ms: u64 },
    /// The db host crashes, every session gone, and restarts `for_ms` later.
    CrashDb { for_ms: u64 },
    /// Set `process`'s pool to `max_size` (pools without resize skip it).
    Resize { process: u32, max_size: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedEvent {
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Every fault of a run, as data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlannedFaults {
    /// Connects answered with a fault (all others are normal).
    pub connects: Vec<PlannedConnect>,
    /// Events, by time.
    pub events: Vec<TimedEvent>,
}

impl PlannedFaults {
    /// Each process's planned connect faults, by connect number.
    pub fn connect_faults(&self) -> BTreeMap<(u32, u32), ConnectFault> {
        self.connects
            .iter()
            .map(|c| ((c.process, c.nth), c.fault.connect_fault()))
            .collect()
    }

    /// How many faults: what the shrinker minimises.
    pub fn len(&self) -> usize {
        self.connects.len() + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a run is expected to do (scenario files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    Pass,
    /// The named invariant fires.
    Fail(String),
}

/// One network simulation, complete: replays without the seed's draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetScenario {
    /// What it shows (scenario files).
    #[serde(default)]
    pub about: String,
    /// Seeds turmoil's network and the clients' think times.
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    pub options: NetOptions,
    pub pool: PoolOptions,
    pub plan: PlannedFaults,
}

impl NetScenario {
    /// Everything `seed` draws, for pool `kind`.
    pub fn draw(seed: u64, kind: PoolKind) -> NetScenario {
        let mut rng = Rng::new(seed);
        let options = NetOptions::draw(&mut rng);
        let plan = PlannedFaults::draw(&mut rng, &options);
        NetScenario {
            about: String::new(),
            seed,
            expect: None,
            options,
            pool: kind.draw_options(seed),
            plan,
        }
    }

    pub fn kind(&self) -> PoolKind {
        self.pool.kind()
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a scenario serializes")
    }

    pub fn load(path: &Path) -> Result<NetScenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl NetOptions {
    /// The server's side of these options: the role limit and the idle kill.
    pub fn server_config(&self) -> crate::server::ServerConfig {
        crate::server::ServerConfig {
            role_conn_limit: self.role_conn_limit as usize,
            idle_session_timeout: (self.idle_session_timeout_ms > 0)
                .then(|| std::time::Duration::from_millis(self.idle_session_timeout_ms)),
            ..crate::server::ServerConfig::default()
        }
    }

    pub fn draw(rng: &mut Rng) -> NetOptions {
        let max_size = rng.range(1, 4) as usize;
        NetOptions {
            processes: rng.range(1, 3) as u32,
            clients: rng.range(1, 5) as u32,
            listeners: if rng.chance(50) { 0 } else { 1 },
            max_size,
            min_idle: rng.below(2) as usize,
            cancel_pct: if rng.chance(50) {
                0
            } else {
                rng.range(5, 30) as u8
            },
            long_hold_pct: if rng.chance(50) {
                0
            } else {
                rng.range(5, 40) as u8
            },
            role_conn_limit: if rng.chance(70) {
                0
            } else {
                rng.range(1, max_size as u64 + 1) as u32
            },
            // turmoil drops a partition's messages for good, so a session
            // cut off mid-close stays open at the server until its idle
            // kill: the plan partitions only runs that have one.
            idle_session_timeout_ms: if rng.chance(50) {
                0
            } else {
                rng.pick(&[2_000, 5_000])
            },
            faults_ms: rng.pick(&[5_000, 15_000]),
        }
    }
}

impl PlannedFaults {
    /// The faults: per connect, and events through the faults phase.
    pub fn draw(rng: &mut Rng, options: &NetOptions) -> PlannedFaults {
        let ready_then_fin_pct = if rng.chance(50) { 0 } else { rng.range(5, 40) };
        let hang_pct = if rng.chance(50) { 0 } else { rng.range(2, 20) };
        let mut connects = Vec::new();
        for process in 0..options.processes {
            for nth in 0..PLANNED_CONNECTS {
                let roll = rng.below(100);
                let fault = if roll < ready_then_fin_pct {
                    PlannedFault::ReadyThenFin
                } else if roll < ready_then_fin_pct + hang_pct {
                    PlannedFault::Hang
                } else {
                    continue;
                };
                connects.push(PlannedConnect {
                    process,
                    nth,
                    fault,
                });
            }
        }
        let mut events = Vec::new();
        let until = options.faults_ms;
        // Each kind of event recurs at a random interval around its mean.
        let mut recurring =
            |rng: &mut Rng, every: u64, mut make: Box<dyn FnMut(&mut Rng) -> Event>| {
                if every == 0 {
                    return;
                }
                let mut at = rng.range(1, every * 2);
                while at < until {
                    events.push(TimedEvent {
                        at_ms: at,
                        event: make(rng),
                    });
                    at += rng.range(1, every * 2);
                }
            };
        let terminate_every = if rng.chance(50) {
            0
        } else {
            rng.pick(&[2_000, 6_000])
        };
        recurring(rng, terminate_every, Box::new(|_| Event::TerminateAll));
        let partition_every = if rng.chance(60) {
            0
        } else {
            rng.pick(&[3_000, 8_000])
        };
        // A partition's lost FIN leaves a session open at the server until
        // its idle kill: no partitions in a run without one.
        let partition_every = if options.idle_session_timeout_ms == 0 {
            0
        } else {
            partition_every
        };
        let processes = u64::from(options.processes);
        recurring(
            rng,
            partition_every,
            Box::new(move |rng| Event::Partition {
                process: rng.below(processes) as u32,
                for_ms: rng.range(100, 2_000),
            }),
        );
        let crash_every = if rng.chance(70) {
            0
        } else {
            rng.pick(&[5_000, 10_000])
        };
        recurring(
            rng,
            crash_every,
            Box::new(|rng| Event::CrashDb {
                for_ms: rng.range(100, 1_000),
            }),
        );
        let resize_every = if rng.chance(60) {
            0
        } else {
            rng.pick(&[1_000, 4_000])
        };
        let max_size = options.max_size as u64;
        recurring(
            rng,
            resize_every,
            Box::new(move |rng| Event::Resize {
                process: rng.below(processes) as u32,
                max_size: rng.range(1, max_size + 2) as usize,
            }),
        );
        // An autoscaler that flaps: half the resizes are followed within
        // 100 ms by another, while connections are still borrowed.
        let flaps: Vec<TimedEvent> = events
            .iter()
            .filter_map(|e| match e.event {
                Event::Resize { process, .. } if rng.chance(50) => Some(TimedEvent {
                    at_ms: e.at_ms + rng.range(1, 100),
                    event: Event::Resize {
                        process,
                        max_size: rng.range(1, max_size + 1) as usize,
                    },
                }),
                _ => None,
            })
            .filter(|e| e.at_ms < until)
            .collect();
        events.extend(flaps);
        events.sort_by_key(|e| e.at_ms);
        PlannedFaults { connects, events }
    }
}
