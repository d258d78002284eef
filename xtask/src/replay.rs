//! `cargo xtask replay`: run scenario files and compare with their `expect`.

use std::path::{Path, PathBuf};

use pool_sim::{Expect, Keep, Options, Outcome, Scenario, run_scenario, scenario::files_in};

use crate::print;

/// Replay a scenario file, or every `*.toml` under a directory, and check
/// each ends as its `expect` says.
#[derive(clap::Args)]
pub struct Args {
    /// A scenario file or a directory of them.
    path: PathBuf,
    /// Print one line per event as it happens.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(args: Args) -> i32 {
    let files = if args.path.is_dir() {
        match files_in(&args.path) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("error: cannot list {}: {e}", args.path.display());
                return 1;
            }
        }
    } else {
        vec![args.path.clone()]
    };
    if files.is_empty() {
        eprintln!(
            "error: no *.toml scenario files under {}",
            args.path.display()
        );
        return 1;
    }
    let mut worst = 0;
    let mut failed = 0;
    for file in &files {
        let code = replay_one(file, args.verbose);
        if code != 0 {
            failed += 1;
            worst = worst.max(code);
        }
    }
    if files.len() > 1 {
        println!(
            "\nreplayed {} scenarios: {} as expected, {failed} not",
            files.len(),
            files.len() - failed
        );
    }
    worst
}

/// Replay one file; 0 when it ends as expected.
fn replay_one(path: &Path, verbose: bool) -> i32 {
    let scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            println!("BAD  {e}");
            return 1;
        }
    };
    let keep = if verbose { Keep::Echo } else { Keep::Tail };
    let report = run_scenario(
        &scenario,
        Options {
            keep,
            record: false,
        },
    );
    let got = match &report.outcome {
        Outcome::Pass => Some(Expect::Pass),
        Outcome::Violated(v) => Some(Expect::Violation(v.invariant)),
        Outcome::Panicked { .. } => None,
    };
    let steps = scenario.steps.len();
    if got == Some(scenario.expect) {
        println!(
            "ok   {} ({} steps, expect {}, trace {:016x})",
            path.display(),
            steps,
            scenario.expect,
            report.trace_hash
        );
        return 0;
    }
    println!(
        "FAIL {}: expected {}, got {}",
        path.display(),
        scenario.expect,
        print::outcome_line(&report.outcome)
    );
    print!("{}", print::failure(&report));
    println!(
        "  see every event: cargo xtask replay {} --verbose",
        path.display()
    );
    match report.outcome {
        Outcome::Pass => 1,
        ref outcome => outcome.exit_code(),
    }
}
