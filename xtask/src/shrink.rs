//! `cargo xtask shrink`: a failing seed (or scenario file) down to a short
//! regression scenario.

use std::path::PathBuf;
use std::time::Instant;

use pool_sim::shrink::{Keeps, shrink};
use pool_sim::{Expect, Mutation, Options, Outcome, Scenario};

use crate::print;
use crate::sim::{DEFAULT_EVENTS, mutation_arg, reproduce_command, seed_command};

/// Shrink a failing run to a 1-minimal scenario: delta debugging over its
/// transitions (chunks, then single ones, then smaller values and times)
/// while the same invariant still fires, and (with a mutation) the same
/// steps still pass without it.
#[derive(clap::Args)]
pub struct Args {
    /// The failing seed to shrink.
    #[arg(
        long,
        conflicts_with = "scenario",
        required_unless_present = "scenario"
    )]
    seed: Option<u64>,
    /// Or: a scenario file that breaks an invariant when replayed (the one
    /// that fires is kept, whatever its `expect` says).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Steps in the seed's safety phase.
    #[arg(long, default_value_t = DEFAULT_EVENTS)]
    events: u64,
    /// The seed report's bug to put back (a scenario's own by default).
    #[arg(long, value_name = "NAME")]
    mutation: Option<Mutation>,
    /// Where to write the shrunk scenario.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The scenario's name (default: from the mutation and seed).
    #[arg(long)]
    name: Option<String>,
    /// Shrink a network simulation (`cargo xtask netsim`) instead: its
    /// planned faults, clients and processes.
    #[arg(long)]
    netsim: bool,
    /// With --netsim --seed: the pool under test.
    #[arg(long, default_value = "pool-tokio", requires = "netsim")]
    pool: pool_netsim::under_test::PoolKind,
}

pub fn run(args: Args) -> i32 {
    if args.netsim {
        return crate::netsim::shrink_cmd(
            args.seed,
            args.scenario.as_deref(),
            args.pool,
            &args.out,
        );
    }
    // What to shrink, what to call it, and the command that shrinks it (for
    // the scenario's `about`); the bug is --mutation, else a file's own.
    let (original, source, command, mutation) = match (&args.scenario, args.seed) {
        (Some(path), _) => match Scenario::load(path) {
            Ok(s) => {
                let mutation = args.mutation.or(s.mutation);
                let command = format!(
                    "cargo xtask shrink --scenario {}{}",
                    path.display(),
                    mutation_arg(mutation)
                );
                (s, format!("scenario {}", path.display()), command, mutation)
            }
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        },
        (None, Some(seed)) => {
            let options = Options {
                mutation: args.mutation,
                ..Options::default()
            };
            let (scenario, _) = pool_sim::run::record_seed(seed, args.events, options);
            (
                scenario,
                reproduce_command(seed, args.events, args.mutation),
                seed_command("shrink", seed, args.events, args.mutation),
                args.mutation,
            )
        }
        (None, None) => unreachable!("clap requires --seed or --scenario"),
    };
    let options = Options {
        mutation,
        ..Options::default()
    };
    let outcome = pool_sim::run_scenario(&original, options).outcome;
    let Outcome::Violated(violation) = &outcome else {
        println!(
            "{source} does not break an invariant ({}): nothing to shrink",
            print::outcome_line(&outcome)
        );
        return 1;
    };
    let invariant = violation.invariant;
    let with = mutation.map(|m| format!(" with {m}")).unwrap_or_default();
    println!(
        "shrinking {source}: {} transitions, {invariant}{with}",
        original.steps.len()
    );
    #[allow(clippy::disallowed_methods)] // wall time, reported only
    let started = Instant::now();
    let keeps = Keeps {
        invariant,
        mutation,
    };
    let Some(shrunk) = shrink(&original, keeps) else {
        println!("cannot shrink: the failure needs the mutation and also fails without it");
        return 1;
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut scenario = shrunk.scenario;
    scenario.name = args
        .name
        .clone()
        .unwrap_or_else(|| match (mutation, args.seed) {
            (Some(m), Some(seed)) => format!("{m}-seed-{seed}"),
            (None, Some(seed)) => format!("seed-{seed}-{invariant}"),
            _ => format!("{}-shrunk", original.name),
        });
    scenario.expect = Expect::Violation(invariant);
    scenario.about = format!(
        "{invariant} caught{with}, shrunk by `{command}` from {} to {} transitions.{}",
        shrunk.steps_before,
        scenario.steps.len(),
        mutation
            .map(|m| format!(" Without {m} the same steps pass. Bug from {}.", m.origin()))
            .unwrap_or_default()
    );
    // What each step resolves to, as comments.
    let record = Options {
        mutation,
        record: true,
        ..Options::default()
    };
    let replay =
        pool_sim::run::run_steps(pool_sim::run::reference_pools(mutation), &scenario, record);
    let notes: Vec<String> = replay
        .recorded
        .iter()
        .map(|(_, t)| print::target_note(t))
        .collect();
    let header = "pool-sim regression scenario (shrunk). Replay: cargo xtask replay <this file>";
    if let Err(e) = std::fs::write(&args.out, scenario.to_toml(header, Some(&notes))) {
        eprintln!("error: cannot write {}: {e}", args.out.display());
        return 1;
    }
    println!(
        "shrunk {} -> {} transitions in {seconds:.2}s ({} runs); 1-minimal: removing any one transition loses {invariant}",
        shrunk.steps_before,
        scenario.steps.len(),
        shrunk.runs
    );
    println!(
        "wrote {} (replay: cargo xtask replay {})",
        args.out.display(),
        args.out.display()
    );
    0
}
