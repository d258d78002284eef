//! `cargo xtask replay PATH... --all-mutations`: every file against every bug
//! of `cargo xtask hunt`, one at a time, without the seeded sweep.
//!
//! A file catches a mutation when its replay with the mutation does not end
//! as the file expects without it: an invariant fires, an assertion fails, a
//! named step no longer resolves. "As the file expects without it" is the
//! file's `expect`, or a pass for a file that carries its own mutation (such a
//! file must pass without its bug). That is the question a suite of ported
//! tests answers on its own: which real bugs would it have caught.

use std::path::{Path, PathBuf};

use pool_sim::scenario::{Entry, StopKind};
use pool_sim::{Expect, Mutation, Options, Outcome, Scenario, run_scenario};

use super::ends_as;
use crate::print;

/// A file that ends as expected on the reference pool, ready to judge.
struct Judged {
    name: String,
    scenario: Scenario,
    /// The same, with its assertions turned into plain waits.
    bare: Scenario,
    expect: Expect,
    /// Mutations it catches.
    catches: usize,
}

/// Replay `files` with each mutation; 0 when every file ends as expected
/// without one (the figures are a report, not a gate).
pub fn run(files: &[PathBuf]) -> i32 {
    let mut judged = Vec::with_capacity(files.len());
    let mut unusable = 0;
    for path in files {
        match baseline(path) {
            Ok(j) => judged.push(j),
            Err(why) => {
                println!("{why}");
                unusable += 1;
            }
        }
    }
    println!(
        "{} files against {} mutations (a file catches a mutation when its replay with it does not end as the file expects without it)\n",
        judged.len(),
        Mutation::ALL.len()
    );
    let width = Mutation::ALL
        .iter()
        .map(|m| m.name().len())
        .max()
        .unwrap_or(0);
    let mut caught = 0;
    // Caught only because a file asserts: the same files with their
    // assertions turned into plain waits all end as expected.
    let mut by_assertions_only = 0;
    for mutation in Mutation::ALL {
        let options = Options {
            mutation: Some(mutation),
            ..Options::default()
        };
        let mut by = Vec::new();
        let mut without_assertions = false;
        for file in &mut judged {
            // `run_scenario` takes the explicit mutation over the file's own.
            let outcome = run_scenario(&file.scenario, options).outcome;
            if ends_as(&outcome, file.expect) {
                continue;
            }
            file.catches += 1;
            by.push(format!("{} ({})", file.name, how(&outcome)));
            // A failed assertion stops the run, so whether an invariant
            // would have fired later is only known by running it again
            // without the assertions.
            without_assertions = without_assertions
                || match outcome {
                    Outcome::Script(ref stop) if stop.kind == StopKind::Assertion => {
                        let bare = run_scenario(&file.bare, options).outcome;
                        !ends_as(&bare, file.expect)
                    }
                    _ => true,
                };
        }
        let line = if by.is_empty() {
            "not caught".to_owned()
        } else {
            caught += 1;
            let only = if without_assertions {
                ""
            } else {
                by_assertions_only += 1;
                " [only the assertions catch it]"
            };
            format!("caught by {}{only}: {}", by.len(), by.join(", "))
        };
        println!("{:width$}  {line}", mutation.name());
    }
    let silent: Vec<&str> = judged
        .iter()
        .filter(|f| f.catches == 0)
        .map(|f| f.name.as_str())
        .collect();
    println!(
        "\n{caught} of {} mutations caught by these {} files on their own ({by_assertions_only} of them only by the files' assertions: without them the same steps pass); {} files catch none{}",
        Mutation::ALL.len(),
        judged.len(),
        silent.len(),
        if silent.is_empty() {
            String::new()
        } else {
            format!(": {}", silent.join(", "))
        }
    );
    if unusable > 0 {
        println!("{unusable} files left out: they do not end as expected without a mutation");
        return 1;
    }
    0
}

/// Load `path` and check it ends as expected without any mutation: a file
/// that already fails would "catch" everything.
fn baseline(path: &Path) -> Result<Judged, String> {
    let scenario = Scenario::load(path).map_err(|e| format!("BAD  {e}"))?;
    let expect = match scenario.mutation {
        Some(_) => Expect::Pass,
        None => scenario.expect,
    };
    let clean = Scenario {
        mutation: None,
        ..scenario.clone()
    };
    let outcome = run_scenario(&clean, Options::default()).outcome;
    if !ends_as(&outcome, expect) {
        return Err(format!(
            "FAIL {} without a mutation: expected {expect}, got {}",
            path.display(),
            print::outcome_line(&outcome)
        ));
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let mut bare = clean.clone();
    for meta in &mut bare.meta {
        if matches!(meta.entry, Entry::Assert(_)) {
            // An assertion's step is already a wait to its time.
            meta.entry = Entry::Step;
        }
    }
    Ok(Judged {
        name,
        bare,
        scenario: clean,
        expect,
        catches: 0,
    })
}

/// How a replay ended, in a word or two.
fn how(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pass => "passed".to_owned(),
        Outcome::Violated(v) => v.invariant.name().to_owned(),
        Outcome::Panicked { .. } => "panic".to_owned(),
        Outcome::Script(stop) => {
            let what = match stop.kind {
                StopKind::Assertion => "assertion",
                StopKind::Skipped => "step skipped",
                StopKind::Unresolved => "step unresolved",
            };
            match stop.line {
                Some(line) => format!("{what}, line {line}"),
                None => what.to_owned(),
            }
        }
    }
}
