//! Scenario files: a run stored as data (TOML), self-contained and readable.
//!
//! ```toml
//! name = "bun-ready-then-fin"
//! about = "what it shows"
//! expect = "pass"              # or an invariant name, e.g. "ghost-idle"
//!
//! [pool]                       # pool_core::Config; omitted keys take defaults
//! max_size = 1
//!
//! [world]                      # WorldConfig
//! clients = 1
//!
//! [script]
//! steps = [
//!   { at_ms = 0, do = "acquire", client = 0 },
//!   { at_ms = 5, do = "connect-ok", conn = "c0" },
//!   { at_ms = 5, do = "deliver", signal = "connected c0" },
//!   { at_ms = 5, assert = { client = 0, granted = "c0", opened = 1 } },
//! ]
//! ```
//!
//! Entries are transitions, assertions, backend modes and repeats
//! (`script.rs`). A bad file is an error naming the file, the line and the
//! field; a replay in which a step resolves to nothing, or an assertion
//! fails, names the line too.

pub mod script;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use pool_core::{Config, Lifecycle, Mutation, RejectReason, Time};
use serde::Deserialize;

use crate::contract::Ledger;
use crate::invariant::Invariant;
use crate::transition::Step;
use crate::world::{SignalKind, WorldConfig};
pub use script::{
    Backend, Check, Entry, ExpectReply, ScriptDriver, ScriptStop, Select, StepMeta, StopKind,
};

/// A stored run.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    /// What it shows: the seed report or bug class, the race.
    pub about: String,
    pub expect: Expect,
    /// The seed report's bug it runs with, if any (`expect` is then the
    /// invariant that catches it; without the mutation it must pass).
    pub mutation: Option<Mutation>,
    /// The seed it was recorded from, if any.
    pub seed: Option<u64>,
    pub pool: Config,
    pub world: WorldConfig,
    pub steps: Vec<Step>,
    /// One per step: its line, whether it may resolve to nothing, a name
    /// to resolve, or the assertion or backend mode it stands for. Empty
    /// for a generated sequence (a seed's, proptest's, a fuzzer's): every
    /// step plain, and free to resolve to nothing, as the vocabulary allows.
    pub meta: Vec<StepMeta>,
}

impl PartialEq for Scenario {
    /// Equal runs: where a step was written (its line) is not part of it,
    /// and no meta is the same as every step plain and skippable.
    fn eq(&self, other: &Scenario) -> bool {
        (
            &self.name,
            &self.about,
            self.expect,
            self.mutation,
            self.seed,
            &self.pool,
            &self.world,
            &self.steps,
        ) == (
            &other.name,
            &other.about,
            other.expect,
            other.mutation,
            other.seed,
            &other.pool,
            &other.world,
            &other.steps,
        ) && self.meta_without_lines() == other.meta_without_lines()
    }
}

impl Eq for Scenario {}

/// What replaying a scenario must give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Pass,
    Violation(Invariant),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Pass => f.write_str("pass"),
            Expect::Violation(i) => f.write_str(i.name()),
        }
    }
}

/// A scenario file that cannot be used: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ScenarioError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    about: String,
    expect: String,
    #[serde(default)]
    mutation: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    /// A generated sequence: every step may resolve to nothing.
    #[serde(default)]
    steps_may_skip: bool,
    #[serde(default)]
    pool: Config,
    #[serde(default)]
    world: WorldConfig,
    script: ScriptTable,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptTable {
    steps: Vec<toml::Spanned<toml::Table>>,
}

impl Scenario {
    /// Read and parse a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            path: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Scenario::parse(path, &text)
    }

    /// Parse scenario text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let error = |span: Option<std::ops::Range<usize>>, message: String| ScenarioError {
            path: path.to_owned(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let file: File = toml::from_str(text)
            .map_err(|e| error(e.span(), e.message().trim_end().replace('\n', " ")))?;
        let expect = match file.expect.as_str() {
            "pass" => Expect::Pass,
            name => Expect::Violation(name.parse().map_err(|e| {
                let at = text.find("expect").map(|i| i..i);
                error(at, format!("`expect`: {e} (or `pass`)"))
            })?),
        };
        let mutation = match &file.mutation {
            None => None,
            Some(name) => Some(name.parse().map_err(|e| {
                let at = text.find("mutation").map(|i| i..i);
                error(at, format!("`mutation`: {e}"))
            })?),
        };
        if let Some(problem) = file.world.problem() {
            let at = text.find("[world]").map(|i| i..i);
            return Err(error(at, format!("[world]: {problem}")));
        }
        let counters: BTreeSet<&'static str> = Ledger::default()
            .named()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut steps = Vec::with_capacity(file.script.steps.len());
        let mut meta = Vec::with_capacity(file.script.steps.len());
        let mut last = Time::ZERO;
        for (n, spanned) in file.script.steps.into_iter().enumerate() {
            let span = Some(spanned.span());
            let line = span.clone().map(|s| line_of(text, s.start));
            let mut table = spanned.into_inner();
            let what = table
                .get("do")
                .and_then(|v| v.as_str())
                .map(|d| format!(" (`{d}`)"))
                .unwrap_or_default();
            let step_error =
                |message: String| error(span.clone(), format!("step {n}{what}: {message}"));
            let at = take_time(&mut table, "at_ms").map_err(&step_error)?;
            let entries = match table.remove("repeat") {
                None => vec![(at, table)],
                Some(count) => repeat(at, count, table).map_err(&step_error)?,
            };
            for (at, table) in entries {
                if at < last {
                    return Err(step_error(format!(
                        "`at_ms` = {} is earlier than the step before ({})",
                        at.as_millis(),
                        last.as_millis()
                    )));
                }
                last = at;
                let (transition, mut step_meta) =
                    script::parse_entry(table, &counters).map_err(&step_error)?;
                step_meta.line = line;
                step_meta.may_skip |= file.steps_may_skip;
                steps.push(Step { at, transition });
                meta.push(step_meta);
            }
        }
        Ok(Scenario {
            name: file.name,
            about: file.about,
            expect,
            mutation,
            seed: file.seed,
            pool: file.pool,
            world: file.world,
            steps,
            meta,
        })
    }

    /// Remove step `i` (with its meta).
    pub fn remove_step(&mut self, i: usize) -> Step {
        if !self.meta.is_empty() {
            self.meta.remove(i);
        }
        self.steps.remove(i)
    }

    /// Step `i`'s meta (for a generated sequence: plain, skippable).
    pub fn meta_of(&self, i: usize) -> StepMeta {
        match self.meta.get(i) {
            Some(meta) => meta.clone(),
            None => StepMeta::skippable(),
        }
    }

    fn meta_without_lines(&self) -> Vec<StepMeta> {
        (0..self.steps.len())
            .map(|i| StepMeta {
                line: None,
                ..self.meta_of(i)
            })
            .collect()
    }

    /// Mark each step that resolved to nothing in a run of it as
    /// `may_skip`, and only those: what `--record` and shrinking write, so
    /// the file replays strictly.
    pub fn mark_skips<'t>(&mut self, targets: impl IntoIterator<Item = &'t crate::trace::Target>) {
        let metas: Vec<StepMeta> = targets
            .into_iter()
            .zip(0..self.steps.len())
            .map(|(target, i)| {
                let mut meta = self.meta.get(i).cloned().unwrap_or_default();
                meta.may_skip = matches!(target, crate::trace::Target::Skipped(_));
                meta
            })
            .collect();
        if metas.len() == self.steps.len() {
            self.meta = metas;
        }
    }

    /// The scenario as TOML. `notes`, if given, are one trailing comment per
    /// step (what each step resolved to when recorded).
    pub fn to_toml(&self, header: &str, notes: Option<&[String]>) -> String {
        let mut out = String::new();
        for line in header.lines() {
            out.push_str(&format!("# {line}\n"));
        }
        out.push_str(&format!(
            "name = {}\n",
            toml::Value::String(self.name.clone())
        ));
        out.push_str(&format!(
            "about = {}\n",
            toml::Value::String(self.about.clone())
        ));
        out.push_str(&format!("expect = \"{}\"\n", self.expect));
        if let Some(mutation) = self.mutation {
            out.push_str(&format!("mutation = \"{mutation}\"\n"));
        }
        if let Some(seed) = self.seed {
            out.push_str(&format!("seed = {seed}\n"));
        }
        if self.meta.is_empty() && !self.steps.is_empty() {
            out.push_str("steps_may_skip = true\n");
        }
        out.push_str("\n[pool]\n");
        out.push_str(&toml::to_string(&self.pool).expect("a config serializes"));
        out.push_str("\n[world]\n");
        out.push_str(&toml::to_string(&self.world).expect("a config serializes"));
        out.push_str("\n[script]\nsteps = [\n");
        for (i, step) in self.steps.iter().enumerate() {
            let entry = match self.meta.get(i) {
                Some(meta) => entry_toml(step, meta),
                None => step_toml(step),
            };
            out.push_str(&format!("  {entry},"));
            if let Some(note) = notes.and_then(|n| n.get(i)) {
                out.push_str(&format!("  # {note}"));
            }
            out.push('\n');
        }
        out.push_str("]\n");
        out
    }
}

/// One step as an inline table: `{ at_ms = 5, do = "acquire", client = 0 }`.
pub fn step_toml(step: &Step) -> String {
    let mut table = toml::Table::new();
    table.insert(
        "at_ms".into(),
        toml::Value::Integer(step.at.as_millis() as i64),
    );
    if let Ok(toml::Value::Table(fields)) = toml::Value::try_from(&step.transition) {
        table.extend(fields);
    }
    toml::Value::Table(table).to_string()
}

/// A step as written with its meta: a transition (named, or skippable), an
/// assertion, or a backend mode.
pub fn entry_toml(step: &Step, meta: &StepMeta) -> String {
    let mut table = toml::Table::new();
    table.insert(
        "at_ms".into(),
        toml::Value::Integer(step.at.as_millis() as i64),
    );
    match &meta.entry {
        Entry::Step => {
            if let Ok(toml::Value::Table(fields)) = toml::Value::try_from(&step.transition) {
                table.extend(fields);
            }
            match meta.select {
                Some(Select::Conn { pool, conn }) => {
                    table.remove("attempt");
                    table.remove("session");
                    let name = crate::world::Qualified(pool, conn).to_string();
                    table.insert("conn".into(), toml::Value::String(name));
                }
                Some(Select::Signal { kind, pool, conn }) => {
                    let kind = match kind {
                        SignalKind::Connected => "connected",
                        SignalKind::ConnectFailed => "connect-failed",
                        SignalKind::Closed => "closed",
                        SignalKind::Validated { ok: true } => "valid",
                        SignalKind::Validated { ok: false } => "invalid",
                    };
                    let name = crate::world::Qualified(pool, conn);
                    table.insert(
                        "signal".into(),
                        toml::Value::String(format!("{kind} {name}")),
                    );
                }
                None => {}
            }
            if meta.may_skip {
                table.insert("may_skip".into(), toml::Value::Boolean(true));
            }
        }
        Entry::Backend(backend) => {
            let (mode, after_ms) = match *backend {
                Backend::Manual => ("manual", None),
                Backend::Hang => ("hang", None),
                Backend::Ok { after_ms } => ("ok", Some(after_ms)),
                Backend::Fail { after_ms } => ("fail", Some(after_ms)),
            };
            table.insert("backend".into(), toml::Value::String(mode.into()));
            if let Some(ms) = after_ms {
                table.insert("after_ms".into(), toml::Value::Integer(ms as i64));
            }
        }
        Entry::Assert(checks) => {
            table.insert("assert".into(), toml::Value::Table(checks_toml(checks)));
        }
    }
    toml::Value::Table(table).to_string()
}

/// An assertion's checks as one table (they share one pool and at most one
/// client).
fn checks_toml(checks: &[Check]) -> toml::Table {
    let mut table = toml::Table::new();
    let int = |n: u64| toml::Value::Integer(n as i64);
    let mut pool = None;
    for check in checks {
        match check {
            Check::Count {
                pool: p,
                name,
                value,
            } => {
                pool = Some(*p);
                table.insert(name.clone(), int(*value));
            }
            Check::Lifecycle { pool: p, lifecycle } => {
                pool = Some(*p);
                let l = match lifecycle {
                    Lifecycle::Open => "open",
                    Lifecycle::Closing => "closing",
                    Lifecycle::Closed => "closed",
                };
                table.insert("lifecycle".into(), toml::Value::String(l.into()));
            }
            Check::Commands { pool: p, commands } => {
                pool = Some(*p);
                let list = commands.iter().cloned().map(toml::Value::String).collect();
                table.insert("commands".into(), toml::Value::Array(list));
            }
            Check::Client { client, reply } => {
                table.insert("client".into(), int(u64::from(*client)));
                let (key, value) = match reply {
                    ExpectReply::Waiting => ("waiting", toml::Value::Boolean(true)),
                    ExpectReply::Cancelled => ("cancelled", toml::Value::Boolean(true)),
                    ExpectReply::Granted(None) => ("granted", toml::Value::Boolean(true)),
                    ExpectReply::Granted(Some(conn)) => {
                        ("granted", toml::Value::String(conn.to_string()))
                    }
                    ExpectReply::Rejected(reason) => {
                        let reason = match reason {
                            RejectReason::Timeout => "timeout",
                            RejectReason::Closed => "closed",
                            RejectReason::ConnectFailed => "connect-failed",
                        };
                        ("rejected", toml::Value::String(reason.into()))
                    }
                };
                table.insert(key.into(), value);
            }
        }
    }
    if let Some(p) = pool.filter(|&p| p != 0) {
        table.insert("pool".into(), int(u64::from(p)));
    }
    table
}

/// A non-negative integer number of milliseconds under `key`, taken out.
fn take_time(table: &mut toml::Table, key: &str) -> Result<Time, String> {
    match table.remove(key) {
        Some(toml::Value::Integer(ms)) if ms >= 0 => Ok(Time::from_millis(ms as u64)),
        Some(other) => Err(format!(
            "`{key}` must be a non-negative integer, not {other}"
        )),
        None => Err(format!("`{key}` is missing")),
    }
}

/// `{ at_ms, repeat = K, every_ms = P, steps = [...] }`: K rounds, P apart,
/// each entry at its own `at_ms` within the round.
fn repeat(
    at: Time,
    count: toml::Value,
    mut table: toml::Table,
) -> Result<Vec<(Time, toml::Table)>, String> {
    let rounds = match count {
        toml::Value::Integer(n) if (1..=10_000).contains(&n) => n as u64,
        other => {
            return Err(format!(
                "`repeat` must be a count from 1 to 10000, not {other}"
            ));
        }
    };
    let every = take_time(&mut table, "every_ms")?.as_millis();
    let Some(toml::Value::Array(items)) = table.remove("steps") else {
        return Err("`repeat` needs `steps = [...]`, the entries of one round".to_owned());
    };
    if let Some(key) = table.keys().next() {
        return Err(format!(
            "`repeat` takes at_ms, every_ms and steps, not `{key}`"
        ));
    }
    let mut round = Vec::with_capacity(items.len());
    for item in items {
        let toml::Value::Table(mut entry) = item else {
            return Err("a repeat's steps are tables".to_owned());
        };
        if entry.contains_key("repeat") {
            return Err("a repeat cannot hold a repeat".to_owned());
        }
        let offset = take_time(&mut entry, "at_ms")?.as_millis();
        if offset >= every.max(1) && rounds > 1 {
            return Err(format!(
                "a step at {offset} ms into a round of every_ms = {every} runs into the next round"
            ));
        }
        round.push((offset, entry));
    }
    let mut out = Vec::with_capacity(round.len() * rounds as usize);
    for r in 0..rounds {
        for (offset, entry) in &round {
            out.push((at.plus_ms(r * every + offset), entry.clone()));
        }
    }
    Ok(out)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Every `*.toml` file under `dir` (recursively), sorted by path.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
