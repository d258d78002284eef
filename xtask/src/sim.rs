//! `cargo xtask sim`: run one seed and tell the story.

use std::path::PathBuf;

use pool_sim::{Mutation, Options, Outcome, Scenario};

use crate::print;

/// Run one seed: print the options it drew, then a summary. On failure:
/// the invariant, the virtual time, the last trace lines and the command
/// that reproduces it.
#[derive(clap::Args)]
pub struct Args {
    /// The seed: it draws every option of the run and every event.
    #[arg(long)]
    seed: u64,
    /// Steps in the safety phase (faults on) before the liveness phase.
    #[arg(long, default_value_t = DEFAULT_EVENTS)]
    events: u64,
    /// Put a seed report's bug back into the core (see `cargo xtask hunt`).
    #[arg(long, value_name = "NAME")]
    mutation: Option<Mutation>,
    /// Write the run as a scenario file that replays it without the RNG.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// With --record: end the file with assertions of what held at the end
    /// of the safety phase (each pool's gauges and counts, each client's
    /// answer), so the recording fails when a change alters them.
    #[arg(long, requires = "record")]
    record_asserts: bool,
    /// Write the run as Chrome Trace Event JSON (open it in ui.perfetto.dev):
    /// a track per connection, client waits, faults, the violation.
    #[arg(long, value_name = "FILE")]
    perfetto: Option<PathBuf>,
    /// Print one line per event as it happens.
    #[arg(long, short)]
    verbose: bool,
}

pub const DEFAULT_EVENTS: u64 = 1_000;

pub fn run(args: Args) -> i32 {
    let options = Options {
        keep: print::keep(args.verbose, args.perfetto.is_some()),
        mutation: args.mutation,
        record_asserts: args.record_asserts,
        ..Options::default()
    };
    print!("pool-sim: seed {}, {} events", args.seed, args.events);
    match args.mutation {
        Some(m) => println!(", mutation {m} ({})", m.origin()),
        None => println!(),
    }
    let mut rng = pool_sim::swarm::Rng::new(args.seed);
    let swarm = pool_sim::Swarm::draw(&mut rng, args.events);
    print!("{}", print::options(&swarm));
    if args.verbose {
        println!("trace:");
    }
    let (recorded, report) = pool_sim::run::record_seed(args.seed, args.events, options);
    print!("{}", print::summary(&report));
    print!("{}", print::failure(&report));
    let reproduce = reproduce_command(args.seed, args.events, args.mutation);
    if report.outcome != Outcome::Pass {
        println!("\nreproduce: {reproduce}");
        println!("  add --verbose for every event, --record FILE to keep it as a scenario,");
        println!(
            "  or shrink it: {} --out FILE",
            seed_command("shrink", args.seed, args.events, args.mutation)
        );
    }
    if let Some(path) = &args.perfetto
        && let Err(code) = crate::print::write_perfetto(path, &report)
    {
        return code;
    }
    if let Some(path) = &args.record {
        let scenario = Scenario {
            about: format!("Recorded by `{reproduce}`."),
            ..recorded
        };
        let mut notes: Vec<String> = report
            .recorded
            .iter()
            .map(|(_, target)| print::target_note(target))
            .collect();
        notes.resize(
            scenario.steps.len(),
            "what held at the end of the safety phase".to_owned(),
        );
        let header = format!(
            "pool-sim scenario, recorded by `{reproduce} --record`.\nReplay: cargo xtask replay <this file>\nThe seed also drew (not needed to replay):\n{}",
            print::options(&swarm).trim_end()
        );
        if let Err(e) = std::fs::write(path, scenario.to_toml(&header, Some(&notes))) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 1;
        }
        let asserted = scenario
            .meta
            .iter()
            .filter(|m| matches!(m.entry, pool_sim::scenario::Entry::Assert(_)))
            .count();
        println!(
            "recorded {} steps ({asserted} of them assertions) to {} (replay: cargo xtask replay {})",
            scenario.steps.len(),
            path.display(),
            path.display()
        );
    }
    report.outcome.exit_code()
}

/// The command that reruns a seed exactly.
pub fn reproduce_command(seed: u64, events: u64, mutation: Option<Mutation>) -> String {
    seed_command("sim", seed, events, mutation)
}

/// `cargo xtask <subcommand>` on a seed, with the arguments that make the
/// run the same one (`sim` reruns it, `shrink` shrinks it).
pub fn seed_command(
    subcommand: &str,
    seed: u64,
    events: u64,
    mutation: Option<Mutation>,
) -> String {
    let mut command = format!("cargo xtask {subcommand} --seed {seed}");
    if events != DEFAULT_EVENTS {
        command.push_str(&format!(" --events {events}"));
    }
    command + &mutation_arg(mutation)
}

/// ` --mutation NAME`, or nothing: the tail of a command line that puts the
/// same bug back.
pub fn mutation_arg(mutation: Option<Mutation>) -> String {
    mutation
        .map(|m| format!(" --mutation {m}"))
        .unwrap_or_default()
}
