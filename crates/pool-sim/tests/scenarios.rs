//! Every file in `scenarios/` replayed, each reported as its own test.

use std::path::Path;

use libtest_mimic::{Arguments, Failed, Trial};
use pool_sim::run::{Options, Outcome, run_scenario};
use pool_sim::scenario::files_in;
use pool_sim::{Expect, Scenario};

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let files = files_in(&dir).expect("the scenarios directory is readable");
    let trials = files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Trial::test(format!("scenario::{name}"), move || replay(&path))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn replay(path: &Path) -> Result<(), Failed> {
    let scenario = Scenario::load(path).map_err(|e| e.to_string())?;
    let report = run_scenario(&scenario, Options::default());
    let got = match &report.outcome {
        Outcome::Pass => Expect::Pass,
        Outcome::Violated(v) => Expect::Violation(v.invariant),
        Outcome::Panicked { message, .. } => return Err(format!("panicked: {message}").into()),
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
