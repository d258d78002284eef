//! What a scenario file's script says beyond its transitions: names instead
//! of counted indexes, steps that may resolve to nothing, backend modes that
//! last, and assertions on what the pool did. And the driver that replays a
//! script, strictly.
//!
//! An entry of `steps = [...]` is one of:
//! - a transition: `{ at_ms = 5, do = "connect-ok", attempt = 0 }`, or by
//!   name: `conn = "c3"` (an attempt or an open session, `c3@P1` in another
//!   pool), `signal = "closed c0"` (`connected`, `connect-failed` or
//!   `closed`; `valid` and `invalid` answer a validation ping);
//!   `may_skip = true` lets it resolve to nothing;
//! - an assertion: `{ at_ms = 9, assert = { idle = 1, opened = 2 } }`;
//! - a backend mode: `{ at_ms = 0, backend = "ok", after_ms = 5 }` (also
//!   `"fail"`, `"hang"`, and `"manual"`, the default);
//! - a repeat: `{ at_ms = 0, repeat = 3, every_ms = 100, steps = [...] }`,
//!   whose steps' `at_ms` count from the start of each round.

use std::collections::BTreeSet;

use pool_core::{ConnId, Lifecycle, RejectReason, Time};

use crate::pool::SimPool;
use crate::trace::Target;
use crate::transition::{Step, Transition};
use crate::world::{ClientState, Reply, SignalKind, World};

/// What a step of a scenario carries besides its transition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepMeta {
    /// Its line in the file, for errors.
    pub line: Option<usize>,
    /// It may resolve to nothing (recorded steps that did are marked so);
    /// otherwise a step that resolves to nothing fails the replay.
    pub may_skip: bool,
    /// Named rather than counted: resolved against the world when it comes.
    pub select: Option<Select>,
    /// The entry is an assertion or a backend mode, not a step of its own:
    /// its transition is a `wait` to its time.
    pub entry: Entry,
}

impl StepMeta {
    /// A plain step that may resolve to nothing (a generated sequence's).
    pub fn skippable() -> StepMeta {
        StepMeta {
            may_skip: true,
            ..StepMeta::default()
        }
    }
}

/// What a script entry is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Entry {
    /// A transition.
    #[default]
    Step,
    /// Assertions checked at its time.
    Assert(Vec<Check>),
    /// A backend mode from its time on.
    Backend(Backend),
}

/// A connection, or a signal, named instead of counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// `conn = "c3"`: the attempt (connect answers) or the open session
    /// (`kill`) of this connection.
    Conn { pool: u32, conn: ConnId },
    /// `signal = "closed c3"`: the oldest queued signal of this kind.
    Signal {
        kind: SignalKind,
        pool: u32,
        conn: ConnId,
    },
}

/// How the backend answers connects, from a point of the script on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// Only the script's own steps answer connects and deliver signals.
    #[default]
    Manual,
    /// Every connect succeeds `after_ms` after it was opened.
    Ok { after_ms: u64 },
    /// Every connect fails `after_ms` after it was opened.
    Fail { after_ms: u64 },
    /// No connect is answered.
    Hang,
}

/// One assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A count or gauge of a pool, by name (`idle`, `opened`,
    /// `rejected_timeout`, ...), by the world's own count.
    Count { pool: u32, name: String, value: u64 },
    /// A pool's lifecycle.
    Lifecycle { pool: u32, lifecycle: Lifecycle },
    /// How a client's latest acquire has been answered by now.
    Client { client: u32, reply: ExpectReply },
    /// The commands a pool issued since the step before (in order).
    Commands { pool: u32, commands: Vec<String> },
}

/// What a client's latest acquire should have got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectReply {
    Waiting,
    /// Granted; this connection, if named.
    Granted(Option<ConnId>),
    Rejected(RejectReason),
    Cancelled,
}

/// The gauges a pool's count may be asserted on, besides the ledger's
/// counters: what it holds now, by ground truth.
pub const GAUGES: [&str; 7] = [
    "held", "idle", "borrowed", "opening", "waiters", "capacity", "sessions",
];

// ----- parsing -----

/// Parse one script entry (already without `at_ms`): the step, its meta.
/// Errors are messages; the caller adds the file, line and step.
pub(super) fn parse_entry(
    mut table: toml::Table,
    counters: &BTreeSet<&'static str>,
) -> Result<(Transition, StepMeta), String> {
    let mut meta = StepMeta::default();
    if let Some(value) = table.remove("assert") {
        only(&table, &[], "an assertion")?;
        let toml::Value::Table(assert) = value else {
            return Err("`assert` must be a table, e.g. `assert = { idle = 1 }`".to_owned());
        };
        meta.entry = Entry::Assert(parse_assert(assert, counters)?);
        return Ok((Transition::Wait, meta));
    }
    if let Some(value) = table.remove("backend") {
        only(&table, &["after_ms"], "a backend mode")?;
        let after_ms = match table.remove("after_ms") {
            None => 0,
            Some(toml::Value::Integer(ms)) if ms >= 0 => ms as u64,
            Some(other) => {
                return Err(format!(
                    "`after_ms` must be a non-negative integer, not {other}"
                ));
            }
        };
        let backend = match value.as_str() {
            Some("ok") => Backend::Ok { after_ms },
            Some("fail") => Backend::Fail { after_ms },
            Some("hang") if after_ms == 0 => Backend::Hang,
            Some("manual") if after_ms == 0 => Backend::Manual,
            Some("hang" | "manual") => {
                return Err("`after_ms` goes with `ok` and `fail` only".to_owned());
            }
            _ => {
                return Err(format!(
                    "`backend` must be \"ok\", \"fail\", \"hang\" or \"manual\", not {value}"
                ));
            }
        };
        meta.entry = Entry::Backend(backend);
        return Ok((Transition::Wait, meta));
    }
    let Some(name) = table.get("do").and_then(|v| v.as_str()).map(str::to_owned) else {
        return Err(
            "an entry needs `do` (a transition), `assert`, `backend` or `repeat`".to_owned(),
        );
    };
    let Some(fields) = crate::transition::fields(&name) else {
        // serde names the known kinds in its error.
        let error = Transition::deserialize_table(table).expect_err("unknown `do`");
        return Err(error);
    };
    match table.remove("may_skip") {
        None => {}
        Some(toml::Value::Boolean(b)) => meta.may_skip = b,
        Some(other) => return Err(format!("`may_skip` must be true or false, not {other}")),
    }
    // Names instead of indexes: resolved when the step comes.
    let index_key = match name.as_str() {
        "connect-ok" | "connect-fail" | "ready-then-fin" => Some("attempt"),
        "kill" => Some("session"),
        "deliver" | "echo" => Some("signal"),
        _ => None,
    };
    if let Some(index_key) = index_key {
        if let Some(conn) = table.remove("conn") {
            if index_key == "signal" {
                return Err(format!(
                    "`{name}` names its signal: `signal = \"closed c3\"`"
                ));
            }
            if table.contains_key(index_key) {
                return Err(format!("give `{index_key}` or `conn`, not both"));
            }
            let (pool, conn) = parse_conn(&conn)?;
            meta.select = Some(Select::Conn { pool, conn });
            table.insert(index_key.to_owned(), toml::Value::Integer(0));
        } else if index_key == "signal"
            && let Some(toml::Value::String(signal)) = table.get("signal")
        {
            meta.select = Some(parse_signal(signal)?);
            table.insert("signal".to_owned(), toml::Value::Integer(0));
        }
    }
    for key in table.keys() {
        if key != "do" && !fields.contains(&key.as_str()) {
            let allowed = if fields.is_empty() {
                "it takes no fields".to_owned()
            } else {
                format!("it takes {}", fields.join(", "))
            };
            let named = if index_key.is_some() {
                " (or a name: `conn`, `signal`)"
            } else {
                ""
            };
            return Err(format!("`{name}` has no field `{key}`: {allowed}{named}"));
        }
    }
    let transition = Transition::deserialize_table(table)?;
    Ok((transition, meta))
}

/// No key but `allowed` left in `table`.
fn only(table: &toml::Table, allowed: &[&str], what: &str) -> Result<(), String> {
    match table.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!("{what} takes no `{key}`")),
        None => Ok(()),
    }
}

/// `"c3"` or `"c3@P1"`.
fn parse_conn(value: &toml::Value) -> Result<(u32, ConnId), String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("`conn` must be a name like \"c3\" or \"c3@P1\", not {value}"))?;
    let (conn, pool) = match text.split_once('@') {
        Some((conn, pool)) => (conn, pool.strip_prefix('P').and_then(|p| p.parse().ok())),
        None => (text, Some(0)),
    };
    match (conn.strip_prefix('c').and_then(|n| n.parse().ok()), pool) {
        (Some(n), Some(pool)) => Ok((pool, ConnId(n))),
        _ => Err(format!(
            "`{text}` is not a connection: write \"c3\", or \"c3@P1\" for another pool"
        )),
    }
}

/// `"closed c3"`, `"connected c3@P1"`, `"connect-failed c0"`.
fn parse_signal(text: &str) -> Result<Select, String> {
    let bad = || {
        format!(
            "`signal = \"{text}\"`: write the kind and the connection, e.g. \"closed c3\" (kinds: connected, connect-failed, closed, valid, invalid)"
        )
    };
    let (kind, conn) = text.split_once(' ').ok_or_else(bad)?;
    let kind = match kind {
        "connected" => SignalKind::Connected,
        "connect-failed" => SignalKind::ConnectFailed,
        "closed" => SignalKind::Closed,
        "valid" => SignalKind::Validated { ok: true },
        "invalid" => SignalKind::Validated { ok: false },
        _ => return Err(bad()),
    };
    let (pool, conn) = parse_conn(&toml::Value::String(conn.to_owned())).map_err(|_| bad())?;
    Ok(Select::Signal { kind, pool, conn })
}

/// `assert = { pool = 0, idle = 1, client = 2, granted = "c3", ... }`.
fn parse_assert(
    mut table: toml::Table,
    counters: &BTreeSet<&'static str>,
) -> Result<Vec<Check>, String> {
    let index = |table: &mut toml::Table, key: &str| -> Result<Option<u32>, String> {
        match table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if (0..=u32::MAX as i64).contains(&n) => {
                Ok(Some(n as u32))
            }
            Some(other) => Err(format!("`{key}` must be a number, not {other}")),
        }
    };
    let pool = index(&mut table, "pool")?.unwrap_or(0);
    let client = index(&mut table, "client")?;
    let mut checks = Vec::new();
    let mut reply = None;
    let mut set_reply = |r: ExpectReply| match reply.replace(r) {
        None => Ok(()),
        Some(_) => Err(
            "one client answer per assertion: granted, rejected, waiting or cancelled".to_owned(),
        ),
    };
    // `granted`, `rejected` and `cancelled` are a client's answer when a
    // client is named, else the pool's counts.
    let answers = client.is_some();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("granted" | "rejected" | "cancelled", value) if !answers && value.is_integer() => {
                let name = key.clone();
                let value = value
                    .as_integer()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("`{name}` must be a count"))?
                    as u64;
                checks.push(Check::Count { pool, name, value });
            }
            ("granted", toml::Value::Boolean(true)) => set_reply(ExpectReply::Granted(None))?,
            ("granted", conn @ toml::Value::String(_)) => {
                let (_, conn) = parse_conn(&conn)?;
                set_reply(ExpectReply::Granted(Some(conn)))?;
            }
            ("rejected", toml::Value::String(reason)) => {
                let reason = match reason.as_str() {
                    "timeout" => RejectReason::Timeout,
                    "closed" => RejectReason::Closed,
                    "connect-failed" => RejectReason::ConnectFailed,
                    other => {
                        return Err(format!(
                            "`rejected = \"{other}\"`: the reasons are timeout, closed, connect-failed"
                        ));
                    }
                };
                set_reply(ExpectReply::Rejected(reason))?;
            }
            ("waiting", toml::Value::Boolean(true)) => set_reply(ExpectReply::Waiting)?,
            ("cancelled", toml::Value::Boolean(true)) => set_reply(ExpectReply::Cancelled)?,
            ("granted" | "rejected" | "waiting" | "cancelled", other) => {
                return Err(format!(
                    "`{key} = {other}`: write granted = true or \"c3\", rejected = \"timeout\", waiting = true, cancelled = true"
                ));
            }
            ("lifecycle", toml::Value::String(l)) => {
                let lifecycle = match l.as_str() {
                    "open" => Lifecycle::Open,
                    "closing" => Lifecycle::Closing,
                    "closed" => Lifecycle::Closed,
                    other => {
                        return Err(format!(
                            "`lifecycle = \"{other}\"`: write open, closing or closed"
                        ));
                    }
                };
                checks.push(Check::Lifecycle { pool, lifecycle });
            }
            ("commands", toml::Value::Array(items)) => {
                let commands = items
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s),
                        other => Err(format!("`commands` lists strings, not {other}")),
                    })
                    .collect::<Result<_, _>>()?;
                checks.push(Check::Commands { pool, commands });
            }
            (name, value) if GAUGES.contains(&name) || counters.contains(name) => {
                let value = match value {
                    toml::Value::Integer(n) if n >= 0 => n as u64,
                    other => return Err(format!("`{name}` must be a count, not {other}")),
                };
                let name = name.to_owned();
                checks.push(Check::Count { pool, name, value });
            }
            (name, _) => {
                return Err(format!(
                    "an assertion has no `{name}`: it takes pool, client and granted / rejected / waiting / cancelled, lifecycle, commands, the gauges ({}) and the counts ({})",
                    GAUGES.join(", "),
                    counters.iter().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    match (client, reply) {
        (Some(client), Some(reply)) => checks.push(Check::Client { client, reply }),
        (None, None) => {}
        (Some(_), None) => {
            return Err("`client` goes with granted, rejected, waiting or cancelled".to_owned());
        }
        (None, Some(_)) => return Err("say whose answer: `client = N`".to_owned()),
    }
    if checks.is_empty() {
        return Err("an assertion that asserts nothing".to_owned());
    }
    Ok(checks)
}

// ----- recording -----

/// The assertions that hold of `world` now: each pool's gauges, counts and
/// lifecycle, and each client's latest answer. One group per assertion
/// entry (a pool, or a client).
pub fn snapshot<P: SimPool>(world: &World<P>) -> Vec<Vec<Check>> {
    let mut groups = Vec::new();
    for (px, slot) in world.pools().iter().enumerate() {
        if slot.service == crate::world::Service::Exited {
            continue;
        }
        let pool = px as u32;
        let census = slot.census();
        let gauges = [
            census.held(),
            census.pooled,
            census.borrowed,
            census.opening,
            slot.waiting(),
            slot.capacity,
            census.sessions,
        ];
        let mut checks: Vec<Check> = GAUGES
            .iter()
            .zip(gauges)
            .map(|(name, value)| Check::Count {
                pool,
                name: (*name).to_owned(),
                value: value as u64,
            })
            .chain(
                slot.contract
                    .ledger
                    .named()
                    .into_iter()
                    .map(|(name, value)| Check::Count {
                        pool,
                        name: name.to_owned(),
                        value,
                    }),
            )
            .collect();
        let lifecycle = match slot.close {
            None => Lifecycle::Open,
            Some(c) if c.completed_at.is_none() => Lifecycle::Closing,
            Some(_) => Lifecycle::Closed,
        };
        checks.push(Check::Lifecycle { pool, lifecycle });
        groups.push(checks);
    }
    for (client, c) in world.clients().iter().enumerate() {
        let Some(last) = c.last else { continue };
        let reply = match last.reply {
            Reply::Waiting => ExpectReply::Waiting,
            Reply::Granted(conn) => ExpectReply::Granted(Some(conn)),
            Reply::Rejected(reason) => ExpectReply::Rejected(reason),
            Reply::Cancelled => ExpectReply::Cancelled,
        };
        groups.push(vec![Check::Client {
            client: client as u32,
            reply,
        }]);
    }
    groups
}

// ----- replay -----

/// Why a scripted replay stopped short of its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptStop {
    /// The step (0-based) and its line in the file.
    pub step: usize,
    pub line: Option<usize>,
    pub kind: StopKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// A step resolved to nothing and was not marked `may_skip`.
    Skipped,
    /// A step names what is not there: no such attempt, session or signal,
    /// or an index past its candidates.
    Unresolved,
    /// An assertion did not hold.
    Assertion,
}

/// Replays a scenario's script: named steps resolved against the world,
/// backend modes answering connects, assertions checked, and a step that
/// resolves to nothing refused unless it may.
#[derive(Debug)]
pub struct ScriptDriver<'a> {
    steps: &'a [Step],
    meta: &'a [StepMeta],
    next: usize,
    backend: Backend,
    /// Since when the current backend mode holds.
    backend_since: Time,
    /// The scripted step just handed out (auto steps are not judged).
    pending: Option<usize>,
    stop: Option<ScriptStop>,
}

impl<'a> ScriptDriver<'a> {
    /// `meta` is empty (every step plain and skippable: a generated
    /// sequence) or one per step.
    pub fn new(steps: &'a [Step], meta: &'a [StepMeta]) -> ScriptDriver<'a> {
        assert!(meta.is_empty() || meta.len() == steps.len());
        ScriptDriver {
            steps,
            meta,
            next: 0,
            backend: Backend::Manual,
            backend_since: Time::ZERO,
            pending: None,
            stop: None,
        }
    }

    fn meta(&self, i: usize) -> Option<&'a StepMeta> {
        self.meta.get(i)
    }

    fn halt(&mut self, step: usize, kind: StopKind, message: String) {
        let line = self.meta(step).and_then(|m| m.line);
        self.stop = Some(ScriptStop {
            step,
            line,
            kind,
            message,
        });
    }

    /// The backend's own next step, if one is due by `by`.
    fn backend_step<P: SimPool>(&self, world: &World<P>, by: Option<Time>) -> Option<Step> {
        let now = world.now();
        if self.backend != Backend::Manual && !world.inbox().is_empty() {
            // A live backend's signals are delivered as they come.
            return Some(Step {
                at: now,
                transition: Transition::Deliver { signal: 0 },
            });
        }
        let (after_ms, ok) = match self.backend {
            Backend::Ok { after_ms } => (after_ms, true),
            Backend::Fail { after_ms } => (after_ms, false),
            Backend::Manual | Backend::Hang => return None,
        };
        let answer = world
            .attempts()
            .enumerate()
            .filter_map(|(i, (pool, conn))| {
                let opened = world.conn(pool, conn)?.opened_at;
                Some((opened.max(self.backend_since).plus_ms(after_ms), i as u32))
            })
            .min();
        // The pool's own timers may open connects before that (a refill, a
        // reopen): let the clock stop at them, so those are answered on
        // time too.
        let timer = world.next_timer().filter(|&t| t > now);
        let (at, attempt) = match (answer, timer) {
            (Some((at, attempt)), timer) if timer.is_none_or(|t| at <= t) => (at, attempt),
            (_, Some(t)) if by.is_none_or(|by| t < by) => {
                return Some(Step {
                    at: t,
                    transition: Transition::Wait,
                });
            }
            _ => return None,
        };
        if by.is_some_and(|by| at > by) {
            return None;
        }
        let transition = match ok {
            true => Transition::ConnectOk { attempt },
            false => Transition::ConnectFail { attempt },
        };
        Some(Step {
            at: at.max(now),
            transition,
        })
    }

    /// A named step's index, against the world as it is now.
    fn resolve<P: SimPool>(
        &self,
        world: &World<P>,
        step: &Step,
        select: Select,
    ) -> Result<Step, String> {
        let mut step = step.clone();
        match (select, &mut step.transition) {
            (
                Select::Conn { pool, conn },
                Transition::ConnectOk { attempt }
                | Transition::ConnectFail { attempt }
                | Transition::ReadyThenFin { attempt },
            ) => {
                *attempt = world
                    .attempts()
                    .position(|a| a == (pool, conn))
                    .ok_or_else(|| format!("no connect of {} in flight", named(pool, conn)))?
                    as u32;
            }
            (Select::Conn { pool, conn }, Transition::Kill { session }) => {
                *session = world
                    .open_sessions()
                    .position(|s| s == (pool, conn))
                    .ok_or_else(|| format!("no open session of {}", named(pool, conn)))?
                    as u32;
            }
            (Select::Signal { kind, pool, conn }, Transition::Deliver { signal }) => {
                *signal = world
                    .inbox()
                    .iter()
                    .position(|q| {
                        q.signal.kind == kind && q.signal.pool == pool && q.signal.conn == conn
                    })
                    .ok_or_else(|| format!("no {kind:?} signal of {} queued", named(pool, conn)))?
                    as u32;
            }
            (Select::Signal { kind, pool, conn }, Transition::Echo { signal }) => {
                // Indexed among the signals that may be repeated.
                let named_signal = |q: &&crate::world::Queued| {
                    q.signal.kind == kind && q.signal.pool == pool && q.signal.conn == conn
                };
                *signal = world
                    .inbox()
                    .iter()
                    .filter(|q| !matches!(q.signal.kind, SignalKind::Validated { .. }))
                    .position(|q| named_signal(&q))
                    .ok_or_else(|| {
                        format!(
                            "no {kind:?} signal of {} queued to repeat",
                            named(pool, conn)
                        )
                    })? as u32;
            }
            _ => unreachable!("the parser names only attempts, sessions and signals"),
        }
        Ok(step)
    }

    /// Check the assertions of step `i` against the world now.
    fn check<P: SimPool>(&mut self, world: &mut World<P>, i: usize, checks: &[Check]) {
        let log = world.take_command_log();
        for check in checks {
            world.counters.assertions += 1;
            if let Err(message) = evaluate(world, check, &log) {
                return self.halt(i, StopKind::Assertion, message);
            }
        }
    }
}

fn named(pool: u32, conn: ConnId) -> String {
    crate::world::Qualified(pool, conn).to_string()
}

/// One assertion against the world; `log` is the commands since the step
/// before.
fn evaluate<P: SimPool>(
    world: &World<P>,
    check: &Check,
    log: &[(u32, pool_core::Command)],
) -> Result<(), String> {
    let pool_slot = |pool: u32| {
        world
            .pools()
            .get(pool as usize)
            .ok_or_else(|| format!("there is no pool P{pool}"))
    };
    match check {
        Check::Count { pool, name, value } => {
            let slot = pool_slot(*pool)?;
            let census = slot.census();
            let got = match name.as_str() {
                "held" => census.held() as u64,
                "idle" => census.pooled as u64,
                "borrowed" => census.borrowed as u64,
                "opening" => census.opening as u64,
                "waiters" => slot.waiting() as u64,
                "capacity" => slot.capacity as u64,
                "sessions" => census.sessions as u64,
                counter => slot
                    .contract
                    .ledger
                    .named()
                    .into_iter()
                    .find(|(n, _)| *n == counter)
                    .map(|(_, v)| v)
                    .expect("the parser takes only known counts"),
            };
            if got != *value {
                return Err(format!("P{pool} {name}: expected {value}, got {got}"));
            }
        }
        Check::Lifecycle { pool, lifecycle } => {
            let slot = pool_slot(*pool)?;
            let got = match slot.close {
                None => Lifecycle::Open,
                Some(c) if c.completed_at.is_none() => Lifecycle::Closing,
                Some(_) => Lifecycle::Closed,
            };
            if got != *lifecycle {
                return Err(format!(
                    "P{pool} lifecycle: expected {lifecycle:?}, got {got:?}"
                ));
            }
        }
        Check::Client { client, reply } => {
            let c = world
                .clients()
                .get(*client as usize)
                .ok_or_else(|| format!("there is no client {client}"))?;
            let Some(last) = c.last else {
                return Err(format!("client {client} has made no acquire"));
            };
            let ok = match (reply, last.reply) {
                (ExpectReply::Waiting, Reply::Waiting)
                | (ExpectReply::Cancelled, Reply::Cancelled)
                | (ExpectReply::Granted(None), Reply::Granted(_)) => true,
                (ExpectReply::Granted(Some(want)), Reply::Granted(got)) => *want == got,
                (ExpectReply::Rejected(want), Reply::Rejected(got)) => *want == got,
                _ => false,
            };
            if !ok {
                let holds = match c.state {
                    ClientState::Holding { conn, .. } => format!(", holding {conn}"),
                    _ => String::new(),
                };
                return Err(format!(
                    "client {client}'s {}: expected {reply:?}, got {:?} at {}{holds}",
                    last.request, last.reply, last.at
                ));
            }
        }
        Check::Commands { pool, commands } => {
            let got: Vec<String> = log
                .iter()
                .filter(|(p, _)| p == pool)
                .map(|(_, c)| c.to_string())
                .collect();
            if &got != commands {
                return Err(format!(
                    "P{pool}'s commands since the step before: expected {commands:?}, got {got:?}"
                ));
            }
        }
    }
    Ok(())
}

impl<P: SimPool> crate::driver::Driver<P> for ScriptDriver<'_> {
    fn next(&mut self, world: &mut World<P>) -> Option<Step> {
        if self.stop.is_some() {
            return None;
        }
        if self.next == 0 && self.pending.is_none() {
            world.log_commands();
        }
        // The backend acts while the script lasts, and goes first at equal
        // times: a connect that succeeds "after 0 ms" has landed before the
        // next scripted step.
        let step = self.steps.get(self.next)?;
        if let Some(auto) = self.backend_step(world, Some(step.at)) {
            self.pending = None;
            return Some(auto);
        }
        let i = self.next;
        self.next += 1;
        self.pending = Some(i);
        let meta = self.meta(i);
        if !matches!(meta.map(|m| &m.entry), Some(Entry::Assert(_))) {
            // An assertion's `commands` are those since the step before it.
            drop(world.take_command_log());
        }
        let Some(meta) = meta else {
            return Some(step.clone());
        };
        match &meta.entry {
            Entry::Backend(backend) => {
                self.backend = *backend;
                self.backend_since = step.at;
            }
            Entry::Assert(_) => {}
            Entry::Step if meta.select.is_none() => {
                // A counted step of a file means the index it says: one past
                // its candidates is a typo, not a wrap-around.
                if !meta.may_skip {
                    if step.at > world.now() {
                        world.advance_to(step.at);
                    }
                    if let Some(message) = world.index_out_of_range(&step.transition) {
                        self.halt(i, StopKind::Unresolved, message);
                        return None;
                    }
                }
            }
            Entry::Step => {
                // The world as it will be at the step's time: let the clock
                // run there first (timers fire), then name.
                if step.at > world.now() {
                    world.advance_to(step.at);
                }
                let select = meta.select.expect("checked above");
                match self.resolve(world, step, select) {
                    Ok(step) => return Some(step),
                    Err(message) if meta.may_skip => {
                        let _ = message;
                        return Some(Step {
                            at: step.at,
                            transition: Transition::Wait,
                        });
                    }
                    Err(message) => {
                        self.halt(i, StopKind::Unresolved, message);
                        return None;
                    }
                }
            }
        }
        Some(step.clone())
    }

    fn stop(&self) -> Option<&ScriptStop> {
        self.stop.as_ref()
    }

    fn applied(&mut self, world: &mut World<P>, target: &Target) {
        let Some(i) = self.pending.take() else {
            return;
        };
        let meta = self.meta(i);
        if let Target::Skipped(why) = target
            && meta.is_some_and(|m| !m.may_skip)
        {
            let what = self.steps[i].transition.name();
            return self.halt(
                i,
                StopKind::Skipped,
                format!("`{what}` resolved to nothing: {why} (mark it `may_skip = true` if that is meant)"),
            );
        }
        if let Some(Entry::Assert(checks)) = meta.map(|m| &m.entry) {
            self.check(world, i, checks);
        }
    }
}

impl Transition {
    /// A transition from a table with `do` and its fields; the error as a
    /// one-line message.
    pub(super) fn deserialize_table(table: toml::Table) -> Result<Transition, String> {
        use serde::Deserialize;
        Transition::deserialize(toml::Value::Table(table))
            .map_err(|e| e.to_string().trim_end().replace('\n', " "))
    }
}
