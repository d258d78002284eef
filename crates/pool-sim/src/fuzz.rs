//! Raw bytes into the vocabulary, for cargo-fuzz (and anything else that
//! generates bytes): a [`Case`] decodes into a scenario (a bounded world and
//! a list of transitions), a [`CoreCase`] into raw pool-core inputs. Any
//! bytes decode to something valid, so every fuzz input means something, and
//! a finding is stored decoded, as a scenario file, never as raw bytes.

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use pool_core::{Config, ConnId, Input, Mutation, Pool, RequestId, Setting, Time};
use serde::{Deserialize, Serialize};

use crate::scenario::{Expect, Scenario};
use crate::transition::{Step, Transition};
use crate::world::WorldConfig;

/// Most transitions a case holds (a longer input is cut).
pub const MAX_STEPS: usize = 256;

/// A world and its transitions.
#[derive(Clone, Debug, Arbitrary)]
pub struct Case {
    pool: CaseConfig,
    clients: u8,
    /// 0: one process; 1: several processes; 2: a pooler with a registry.
    topology: u8,
    /// How many processes or keys (1..=3).
    width: u8,
    role_limit: u8,
    steps: Vec<CaseStep>,
}

/// A pool config from a handful of bytes: every timer from a short list of
/// interesting values (0 disables).
#[derive(Clone, Debug, Arbitrary, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseConfig {
    max_size: u8,
    min_idle: u8,
    idle_timeout: u8,
    max_lifetime: u8,
    acquire_timeout: u8,
    connect_timeout: u8,
    backoff: u8,
    validate_idle: u8,
}

#[derive(Clone, Debug, Arbitrary)]
struct CaseStep {
    /// Milliseconds after the step before; 250 and up jump whole seconds.
    delay: u8,
    transition: Transition,
}

const TIMERS: [u64; 8] = [0, 1, 5, 20, 100, 1_000, 30_000, 600_000];

impl CaseConfig {
    pub fn config(&self) -> Config {
        let max_size = usize::from(self.max_size % 9);
        let timer = |b: u8| TIMERS[usize::from(b) % TIMERS.len()];
        Config {
            max_size,
            min_idle: usize::from(self.min_idle) % (max_size + 1),
            idle_timeout_ms: timer(self.idle_timeout),
            max_lifetime_ms: timer(self.max_lifetime),
            acquire_timeout_ms: timer(self.acquire_timeout),
            connect_timeout_ms: timer(self.connect_timeout),
            reconnect_backoff_ms: timer(self.backoff),
            validate_idle_ms: timer(self.validate_idle),
        }
    }
}

impl Case {
    /// Decode `data` (all of it) into a case.
    pub fn from_bytes(data: &[u8]) -> arbitrary::Result<Case> {
        Case::arbitrary_take_rest(Unstructured::new(data))
    }

    /// The case as a scenario (expecting a pass).
    pub fn scenario(&self) -> Scenario {
        let width = 1 + u32::from(self.width % 3);
        let (processes, keys) = match self.topology % 3 {
            0 => (1, 0),
            1 => (width, 0),
            _ => (1, width),
        };
        let world = WorldConfig {
            clients: 1 + u32::from(self.clients % 8),
            role_conn_limit: if self.role_limit < 192 {
                0
            } else {
                u32::from(self.role_limit % 12)
            },
            processes,
            keys,
            ..WorldConfig::default()
        };
        let mut at = 0u64;
        let steps = self
            .steps
            .iter()
            .take(MAX_STEPS)
            .map(|s| {
                at += match s.delay {
                    d @ 0..250 => u64::from(d),
                    d => u64::from(d - 249) * 1_000,
                };
                Step {
                    at: Time::from_millis(at),
                    transition: s.transition.clone(),
                }
            })
            .collect();
        Scenario {
            name: "fuzz".to_owned(),
            about: String::new(),
            expect: Expect::Pass,
            mutation: None,
            seed: None,
            pool: self.pool.config(),
            world,
            steps,
            meta: Vec::new(),
        }
    }
}

/// Raw pool-core inputs, including nonsense: unknown ids, events repeated
/// and out of order, time that stands still or steps back. Stored decoded,
/// as TOML, when a fuzzer finds one that breaks the core.
#[derive(Clone, Debug, Arbitrary, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreCase {
    pub config: CaseConfig,
    pub ops: Vec<CoreOp>,
}

/// One raw input to a pool (ids are small, so they often hit live ones).
#[derive(Clone, Debug, Arbitrary, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CoreOp {
    Acquire {
        request: u8,
        setting: Option<u8>,
        deadline_ms: Option<u16>,
    },
    Cancel {
        request: u8,
    },
    Recycle {
        conn: u8,
    },
    Taint {
        conn: u8,
    },
    Detach {
        conn: u8,
    },
    Connected {
        conn: u8,
    },
    ConnectFailed {
        conn: u8,
    },
    Closed {
        conn: u8,
    },
    Validated {
        conn: u8,
        ok: bool,
    },
    SetCapacity {
        capacity: u8,
    },
    Close {
        deadline_ms: Option<u16>,
    },
    /// Fire the timers due now (time may stand still).
    Timeout,
    /// Time moves on.
    Advance {
        ms: u16,
    },
    /// Time steps back: the pool must treat it as the latest time it saw.
    Rewind {
        ms: u16,
    },
}

impl CoreCase {
    pub fn from_bytes(data: &[u8]) -> arbitrary::Result<CoreCase> {
        CoreCase::arbitrary_take_rest(Unstructured::new(data))
    }
}

/// Drive a reference pool (with `mutation`, if the build has them) through
/// `case`, draining commands after every input. `Err` says what broke: the
/// pool's own bookkeeping (`Pool::check_consistency`), or a refused input
/// that changed the pool (rule 10). A panic is a bug as well.
pub fn drive_core(case: &CoreCase, mutation: Option<Mutation>) -> Result<(), String> {
    let mut now = Time::ZERO;
    #[cfg_attr(not(feature = "mutations"), allow(unused_mut))]
    let mut pool = Pool::new(now, case.config.config());
    #[cfg(feature = "mutations")]
    pool.set_mutation(mutation);
    #[cfg(not(feature = "mutations"))]
    let _ = mutation;
    drain(&mut pool);
    for (i, op) in case.ops.iter().enumerate() {
        let input = match *op {
            CoreOp::Timeout => {
                pool.handle_timeout(now);
                None
            }
            CoreOp::Advance { ms } => {
                now = now.plus_ms(u64::from(ms));
                None
            }
            CoreOp::Rewind { ms } => {
                now = Time::from_millis(now.as_millis().saturating_sub(u64::from(ms)));
                None
            }
            ref op => Some(input_of(op, now)),
        };
        if let Some(input) = input {
            let before = (
                pool.stats(),
                pool.conns().collect::<Vec<_>>(),
                pool.poll_timeout(),
            );
            if let Err(error) = pool.handle(now, input.clone()) {
                let after = (
                    pool.stats(),
                    pool.conns().collect::<Vec<_>>(),
                    pool.poll_timeout(),
                );
                if before != after || pool.poll_command().is_some() {
                    return Err(format!(
                        "op {i}: `{input}` was refused ({error}) but changed the pool"
                    ));
                }
            }
        }
        drain(&mut pool);
        pool.check_consistency()
            .map_err(|e| format!("op {i} ({op:?}): {e}"))?;
    }
    Ok(())
}

fn input_of(op: &CoreOp, now: Time) -> Input {
    let conn = |c: u8| ConnId(u64::from(c));
    let request = |r: u8| RequestId(u64::from(r));
    let deadline = |ms: Option<u16>| ms.map(|ms| now.plus_ms(u64::from(ms)));
    match *op {
        CoreOp::Acquire {
            request: r,
            setting,
            deadline_ms,
        } => Input::Acquire {
            request: request(r),
            setting: setting.map(|s| Setting(u32::from(s % 4))),
            deadline: deadline(deadline_ms),
        },
        CoreOp::Cancel { request: r } => Input::Cancel {
            request: request(r),
        },
        CoreOp::Recycle { conn: c } => Input::Recycle { conn: conn(c) },
        CoreOp::Taint { conn: c } => Input::Taint { conn: conn(c) },
        CoreOp::Detach { conn: c } => Input::Detach { conn: conn(c) },
        CoreOp::Connected { conn: c } => Input::Connected { conn: conn(c) },
        CoreOp::ConnectFailed { conn: c } => Input::ConnectFailed { conn: conn(c) },
        CoreOp::Closed { conn: c } => Input::Closed { conn: conn(c) },
        CoreOp::Validated { conn: c, ok } => Input::Validated { conn: conn(c), ok },
        CoreOp::SetCapacity { capacity } => Input::SetCapacity {
            capacity: usize::from(capacity % 12),
        },
        CoreOp::Close { deadline_ms } => Input::Close {
            deadline: deadline(deadline_ms),
        },
        CoreOp::Timeout | CoreOp::Advance { .. } | CoreOp::Rewind { .. } => {
            unreachable!("handled by the caller")
        }
    }
}

fn drain(pool: &mut Pool) {
    while pool.poll_command().is_some() {}
}

/// The mutation named by `POOL_SIM_MUTATION` (how `cargo xtask fuzz
/// --mutation` reaches a fuzz target), read once.
pub fn mutation_from_env() -> Option<Mutation> {
    static MUTATION: std::sync::OnceLock<Option<Mutation>> = std::sync::OnceLock::new();
    *MUTATION.get_or_init(|| {
        let name = std::env::var("POOL_SIM_MUTATION").ok()?;
        match name.parse() {
            Ok(m) => Some(m),
            Err(e) => panic!("POOL_SIM_MUTATION: {e}"),
        }
    })
}

/// What the scenario parser owes any text: an error that names the file, or
/// a scenario that survives its own TOML.
pub fn check_scenario_text(path: &Path, text: &str) -> Result<(), String> {
    match Scenario::parse(path, text) {
        Err(e) if e.path == path => Ok(()),
        Err(e) => Err(format!("an error naming another file: {e}")),
        Ok(scenario) => {
            let again = Scenario::parse(path, &scenario.to_toml("", None))
                .map_err(|e| format!("a parsed scenario's own TOML does not parse: {e}"))?;
            if again == scenario {
                Ok(())
            } else {
                Err(format!(
                    "round trip changed the scenario: {scenario:?} -> {again:?}"
                ))
            }
        }
    }
}
