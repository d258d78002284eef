//! Every file in `scenarios/` replayed, each reported as its own test. A
//! scenario with a mutation is tested both ways: with the bug put back it
//! ends as its `expect` says; without it, the same steps pass.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use pool_sim::run::{Options, Outcome, run_scenario};
use pool_sim::scenario::files_in;
use pool_sim::{Expect, Mutation, Scenario};

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let files = files_in(&dir).expect("the scenarios directory is readable");
    let mut trials = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(&dir)
            .unwrap_or(&path)
            .with_extension("")
            .to_string_lossy()
            .replace('/', "::");
        // A file that does not parse fails its first trial, with the error.
        let mutation = Scenario::load(&path).ok().and_then(|s| s.mutation);
        let p = path.clone();
        let trial = Trial::test(format!("scenario::{name}"), move || replay(&p, true));
        trials.push(match mutation {
            Some(_) if !Mutation::available() => {
                trial.with_ignored_flag(true) // needs the mutations feature
            }
            _ => trial,
        });
        if mutation.is_some() {
            let p: PathBuf = path.clone();
            trials.push(Trial::test(
                format!("scenario::{name}::without-mutation"),
                move || replay(&p, false),
            ));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Replay `path`; with `as_written` false, drop its mutation and expect a
/// pass.
fn replay(path: &Path, as_written: bool) -> Result<(), Failed> {
    let mut scenario = Scenario::load(path).map_err(|e| e.to_string())?;
    if !as_written {
        scenario.mutation = None;
        scenario.expect = Expect::Pass;
    }
    let report = run_scenario(&scenario, Options::default());
    let got = match &report.outcome {
        Outcome::Pass => Expect::Pass,
        Outcome::Violated(v) => Expect::Violation(v.invariant),
        Outcome::Panicked { message, .. } => return Err(format!("panicked: {message}").into()),
        Outcome::Script(stop) => {
            let line = stop.line.map(|l| format!(":{l}")).unwrap_or_default();
            return Err(format!(
                "{}{line}: {:?}: {}",
                path.display(),
                stop.kind,
                stop.message
            )
            .into());
        }
    };
    if got == scenario.expect {
        return Ok(());
    }
    Err(format!(
        "expected {}, got {:?}\nlast trace lines:\n{}\nsee every event: cargo xtask replay {} --verbose",
        scenario.expect,
        report.outcome,
        report.tail.join("\n"),
        path.display()
    )
    .into())
}
