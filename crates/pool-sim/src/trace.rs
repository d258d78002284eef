//! The structured trace of a run, stamped with virtual time: a hash of every
//! line (for determinism checks), the last lines (for failure reports), and
//! optionally every line (for `--verbose`, snapshots and Perfetto).

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

use pool_core::{Command, ConnId, Input, Key, Login, PoolId, RequestId, Time};

use crate::invariant::Invariant;
use crate::transition::Transition;
use crate::world::{Qualified, Signal};

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A transition was applied; `target` is what its indices resolved to.
    Step {
        index: u64,
        transition: Transition,
        target: Target,
    },
    /// A pool (by index) was given an input.
    Input(u32, Input),
    /// A pool's timers were due.
    Timeout(u32),
    /// A pool emitted a command.
    Command(u32, Command),
    /// Something happened to a process or in the registry.
    World(WorldEvent),
    /// A backend signal entered the I/O queue, waiting to be delivered.
    Signal(Signal),
    /// The run entered a phase.
    Phase(&'static str),
    /// An invariant broke.
    Violation(Invariant),
}

/// Processes and the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorldEvent {
    Login {
        client: u32,
        key: Key,
        login: Login,
    },
    Committed {
        pool: PoolId,
    },
    Abandoned {
        pool: PoolId,
    },
    Collected {
        pool: PoolId,
    },
    Orphaned {
        process: u32,
        pool: u32,
    },
    WatchdogChecked {
        process: u32,
        close: bool,
    },
    Exited {
        process: u32,
        pool: u32,
        sessions: u32,
    },
    Spawned {
        process: u32,
        pool: u32,
    },
}

impl fmt::Display for WorldEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WorldEvent::Login { client, key, login } => {
                let (what, id) = match login {
                    Login::Ready(id) => ("ready", id),
                    Login::Initializing(id) => ("initializing", id),
                    Login::Created(id) => ("created", id),
                };
                write!(f, "registry: client {client} logs in to {key}: {what} {id}")
            }
            WorldEvent::Committed { pool } => write!(f, "registry: {pool} committed"),
            WorldEvent::Abandoned { pool } => write!(f, "registry: {pool} abandoned"),
            WorldEvent::Collected { pool } => write!(f, "registry: GC collects {pool}"),
            WorldEvent::Orphaned { process, pool } => {
                write!(f, "process {process} (P{pool}) orphaned")
            }
            WorldEvent::WatchdogChecked { process, close } => {
                let what = if close {
                    "closes the pool"
                } else {
                    "does nothing"
                };
                write!(f, "process {process}: watchdog check {what}")
            }
            WorldEvent::Exited {
                process,
                pool,
                sessions,
            } => write!(
                f,
                "process {process} (P{pool}) exits; the OS closes its {sessions} sessions"
            ),
            WorldEvent::Spawned { process, pool } => {
                write!(f, "process {process} starts with P{pool}")
            }
        }
    }
}

/// What a transition's indices resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// It needs no entity (kill-all, control, wait).
    World,
    Client {
        client: u32,
        request: Option<RequestId>,
        conn: Option<ConnId>,
    },
    Conn(u32, ConnId),
    Pool(u32),
    Signal(Signal),
    /// Nothing to apply it to; it changed nothing.
    Skipped(&'static str),
}

/// One trace line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    pub at: Time,
    pub event: Event,
}

/// How much of the trace a run keeps beyond its hash and last lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keep {
    /// Hash and the last lines only: the fast default.
    #[default]
    Tail,
    /// Every line, in memory.
    All,
    /// Every line, also printed to stdout as it happens.
    Echo,
    /// The hash only, no lines: the explorer's copies of a world, of which
    /// there are millions (it replays the path it reports, with its trace).
    Hash,
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    keep: Keep,
    hasher: TraceHasher,
    lines: u64,
    tail: VecDeque<Line>,
    all: Vec<Line>,
}

/// How many lines a failure report shows.
pub const TAIL_LINES: usize = 40;

impl Trace {
    pub fn new(keep: Keep) -> Trace {
        Trace {
            keep,
            hasher: TraceHasher::default(),
            lines: 0,
            tail: match keep {
                Keep::Hash => VecDeque::new(),
                _ => VecDeque::with_capacity(TAIL_LINES),
            },
            all: Vec::new(),
        }
    }

    pub fn push(&mut self, at: Time, event: Event) {
        let line = Line { at, event };
        line.hash(&mut self.hasher);
        self.lines += 1;
        match self.keep {
            Keep::Hash => return,
            Keep::Tail => {}
            Keep::All => self.all.push(line.clone()),
            Keep::Echo => {
                println!("{line}");
                self.all.push(line.clone());
            }
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// What this trace keeps.
    pub fn keep(&self) -> Keep {
        self.keep
    }

    /// A hash of every line so far: equal for equal runs, byte for byte.
    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn len(&self) -> u64 {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The last lines (at most `TAIL_LINES`).
    pub fn tail(&self) -> impl Iterator<Item = &Line> {
        self.tail.iter()
    }

    /// Every line, when kept (`Keep::All` or `Keep::Echo`).
    pub fn all(&self) -> &[Line] {
        &self.all
    }

    pub fn into_all(self) -> Vec<Line> {
        self.all
    }
}

/// A word-at-a-time multiply-rotate hash (FxHash's mixing): stable across
/// runs of one binary, cheap enough to hash every line of every run, and
/// good enough to tell two traces apart.
#[derive(Debug)]
struct TraceHasher(u64);

impl Default for TraceHasher {
    fn default() -> Self {
        TraceHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for TraceHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }

    fn write_isize(&mut self, i: isize) {
        self.mix(i as u64);
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8}ms ", self.at.as_millis())?;
        match &self.event {
            Event::Step {
                index,
                transition,
                target,
            } => {
                write!(f, "#{index:<5} {}", transition.name())?;
                write_fields(f, transition)?;
                match target {
                    Target::World => Ok(()),
                    Target::Client {
                        client,
                        request,
                        conn,
                    } => {
                        write!(f, "  => client {client}")?;
                        if let Some(r) = request {
                            write!(f, " {r}")?;
                        }
                        if let Some(c) = conn {
                            write!(f, " {c}")?;
                        }
                        Ok(())
                    }
                    Target::Conn(p, c) => write!(f, "  => {}", Qualified(*p, *c)),
                    Target::Pool(p) => write!(f, "  => P{p}"),
                    Target::Signal(s) => write!(f, "  => {s}"),
                    Target::Skipped(why) => write!(f, "  => skipped: {why}"),
                }
            }
            Event::Input(p, input) => write!(f, "       P{p} <- {input}"),
            Event::Timeout(p) => write!(f, "       P{p} <- timeout"),
            Event::Command(p, command) => write!(f, "       P{p} -> {command}"),
            Event::World(event) => write!(f, "       ** {event}"),
            Event::Signal(signal) => write!(f, "       io   .. {signal} queued"),
            Event::Phase(phase) => write!(f, "====== {phase}"),
            Event::Violation(invariant) => write!(f, "!!!!!! {invariant} violated"),
        }
    }
}

/// The transition's fields after its name, `key=value`, as in scenario files.
fn write_fields(f: &mut fmt::Formatter<'_>, transition: &Transition) -> fmt::Result {
    match toml::Value::try_from(transition) {
        Ok(toml::Value::Table(table)) => {
            for (key, value) in table.iter().filter(|(k, _)| *k != "do") {
                write!(f, " {key}={value}")?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
