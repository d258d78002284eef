//! `cargo xtask replay`: run scenario files and compare with their `expect`.

use std::path::{Path, PathBuf};

use pool_sim::{Expect, Mutation, Options, Outcome, Scenario, run_scenario, scenario::files_in};

use crate::print;

/// Replay a scenario file, or every `*.toml` under a directory, and check
/// each ends as its `expect` says. A scenario with a `mutation` must end so
/// with the mutation, and pass without it.
#[derive(clap::Args)]
pub struct Args {
    /// A scenario file or a directory of them.
    path: PathBuf,
    /// Run with this seed report's bug put back instead of the file's own
    /// (then the outcome is shown, not compared with `expect`).
    #[arg(long, value_name = "NAME")]
    mutation: Option<Mutation>,
    /// Write the run as Chrome Trace Event JSON (open it in ui.perfetto.dev);
    /// for a single scenario file.
    #[arg(long, value_name = "FILE")]
    perfetto: Option<PathBuf>,
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
    if args.perfetto.is_some() && files.len() != 1 {
        eprintln!("error: --perfetto needs a single scenario file, not a directory");
        return 2;
    }
    if files.is_empty() {
        eprintln!(
            "error: no *.toml scenario files under {}",
            args.path.display()
        );
        return 1;
    }
    let mut worst = 0;
    let mut failed = 0;
    let mut assertions = 0;
    for file in &files {
        let (code, held) = replay_one(file, args.mutation, args.verbose, args.perfetto.as_deref());
        assertions += held;
        if code != 0 {
            failed += 1;
            worst = worst.max(code);
        }
    }
    if files.len() > 1 {
        println!(
            "\nreplayed {} scenarios: {} as expected, {failed} not; {assertions} assertions checked",
            files.len(),
            files.len() - failed
        );
    }
    worst
}

/// Replay one file: 0 when it ends as expected, and the assertions it
/// checked.
fn replay_one(
    path: &Path,
    mutation: Option<Mutation>,
    verbose: bool,
    perfetto: Option<&Path>,
) -> (i32, u64) {
    let mut assertions = 0;
    let code = replay_file(path, mutation, verbose, perfetto, &mut assertions);
    (code, assertions)
}

fn replay_file(
    path: &Path,
    mutation: Option<Mutation>,
    verbose: bool,
    perfetto: Option<&Path>,
    assertions: &mut u64,
) -> i32 {
    let scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            println!("BAD  {e}");
            return 1;
        }
    };
    let keep = print::keep(verbose, perfetto.is_some());
    let steps = scenario.steps.len();
    // `run_scenario` runs with `mutation` when one is given, else with the
    // file's own (if any).
    let options = Options {
        keep,
        mutation,
        ..Options::default()
    };
    let report = run_scenario(&scenario, options);
    *assertions += report.counters.assertions;
    if let Some(out) = perfetto
        && let Err(code) = print::write_perfetto(out, &report)
    {
        return code;
    }
    if let Some(m) = mutation {
        // An explicit mutation: show what it does to this scenario.
        println!(
            "{}: with {m}: {}",
            path.display(),
            print::outcome_line(&report.outcome)
        );
        print!("{}", print::failure(&report));
        return report.outcome.exit_code();
    }
    if !ends_as(&report.outcome, scenario.expect) {
        let with = scenario
            .mutation
            .map(|m| format!(" with {m}"))
            .unwrap_or_default();
        println!(
            "FAIL {}{with}: expected {}, got {}",
            path.display(),
            scenario.expect,
            print::outcome_line(&report.outcome)
        );
        print!("{}", print::failure(&report));
        println!(
            "  see every event: cargo xtask replay {} --verbose",
            path.display()
        );
        return failure_code(&report.outcome);
    }
    let asserted = match report.counters.assertions {
        0 => String::new(),
        n => format!(", {n} assertions held"),
    };
    let mut line = format!(
        "ok   {} ({steps} steps{asserted}, expect {}, trace {:016x})",
        path.display(),
        scenario.expect,
        report.trace_hash
    );
    if let Some(m) = scenario.mutation {
        // The other direction: without the bug, the same steps pass.
        let clean = Scenario {
            mutation: None,
            ..scenario.clone()
        };
        let report = run_scenario(&clean, Options::default());
        if report.outcome != Outcome::Pass {
            println!(
                "FAIL {}: without {m} it must pass, got {}",
                path.display(),
                print::outcome_line(&report.outcome)
            );
            print!("{}", print::failure(&report));
            return failure_code(&report.outcome);
        }
        line = format!(
            "ok   {} ({steps} steps, {} with {m}, pass without it)",
            path.display(),
            scenario.expect
        );
    }
    println!("{line}");
    0
}

fn ends_as(outcome: &Outcome, expect: Expect) -> bool {
    match (outcome, expect) {
        (Outcome::Pass, Expect::Pass) => true,
        (Outcome::Violated(v), Expect::Violation(i)) => v.invariant == i,
        _ => false,
    }
}

fn failure_code(outcome: &Outcome) -> i32 {
    match outcome {
        Outcome::Pass => 1,
        other => other.exit_code(),
    }
}
