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
//! ]
//! ```
//!
//! A bad file is an error naming the file, the line and the field.

use std::fmt;
use std::path::{Path, PathBuf};

use pool_core::{Config, Mutation, Time};
use serde::Deserialize;

use crate::invariant::Invariant;
use crate::transition::{Step, Transition};
use crate::world::WorldConfig;

/// A stored run.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

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
        let mut steps = Vec::with_capacity(file.script.steps.len());
        let mut last = Time::ZERO;
        for (n, spanned) in file.script.steps.into_iter().enumerate() {
            let span = Some(spanned.span());
            let mut table = spanned.into_inner();
            let what = table
                .get("do")
                .and_then(|v| v.as_str())
                .map(|d| format!(" (`{d}`)"))
                .unwrap_or_default();
            let step_error =
                |message: String| error(span.clone(), format!("step {n}{what}: {message}"));
            let at = match table.remove("at_ms") {
                Some(toml::Value::Integer(ms)) if ms >= 0 => Time::from_millis(ms as u64),
                Some(other) => {
                    return Err(step_error(format!(
                        "`at_ms` must be a non-negative integer, not {other}"
                    )));
                }
                None => return Err(step_error("`at_ms` is missing".to_owned())),
            };
            if at < last {
                return Err(step_error(format!(
                    "`at_ms` = {} is earlier than the step before ({})",
                    at.as_millis(),
                    last.as_millis()
                )));
            }
            last = at;
            let transition = Transition::deserialize(toml::Value::Table(table))
                .map_err(|e| step_error(e.to_string().trim_end().replace('\n', " ")))?;
            steps.push(Step { at, transition });
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
        })
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
        out.push_str("\n[pool]\n");
        out.push_str(&toml::to_string(&self.pool).expect("a config serializes"));
        out.push_str("\n[world]\n");
        out.push_str(&toml::to_string(&self.world).expect("a config serializes"));
        out.push_str("\n[script]\nsteps = [\n");
        for (i, step) in self.steps.iter().enumerate() {
            out.push_str(&format!("  {},", step_toml(step)));
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
