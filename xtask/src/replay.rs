//! `cargo xtask replay`: run scenario files and compare with their `expect`;
//! with `--all-mutations`, replay each against every mutation and report which
//! files catch which bug.

mod mutations;

use std::path::{Path, PathBuf};

use pool_sim::{Expect, Mutation, Options, Outcome, Scenario, run_scenario, scenario::files_in};

use crate::print;

/// Replay a scenario file, or every `*.toml` under a directory, and check
/// each ends as its `expect` says. A scenario with a `mutation` must end so
/// with the mutation, and pass without it.
#[derive(clap::Args)]
pub struct Args {
    /// Scenario files or directories of them (several, so that a shell glob
    /// such as `scenarios/seed-*.toml` works).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Run with this seed report's bug put back instead of the file's own
    /// (then the outcome is shown, not compared with `expect`).
    #[arg(long, value_name = "NAME", conflicts_with = "all_mutations")]
    mutation: Option<Mutation>,
    /// Replay every file with every mutation of `cargo xtask hunt`, one at a
    /// time, and print which files catch each (the replay does not end as
    /// the file expects without it), then how many mutations the files
    /// catch on their own.
    #[arg(long, conflicts_with_all = ["perfetto", "verbose"])]
    all_mutations: bool,
    /// Write the run as Chrome Trace Event JSON (open it in ui.perfetto.dev);
    /// for a single scenario file.
    #[arg(long, value_name = "FILE")]
    perfetto: Option<PathBuf>,
    /// Print one line per event as it happens.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(args: Args) -> i32 {
    let mut files = Vec::new();
    for path in &args.paths {
        if path.is_dir() {
            match files_in(path) {
                Ok(found) => files.extend(found),
                Err(e) => {
                    eprintln!("error: cannot list {}: {e}", path.display());
                    return 1;
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    if args.perfetto.is_some() && files.len() != 1 {
        eprintln!("error: --perfetto needs a single scenario file, not a directory");
        return 2;
    }
    if files.is_empty() {
        let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!("error: no *.toml scenario files under {}", paths.join(" "));
        return 1;
    }
    if args.all_mutations {
        return mutations::run(&files);
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

pub(crate) fn ends_as(outcome: &Outcome, expect: Expect) -> bool {
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
