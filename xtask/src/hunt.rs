//! `cargo xtask hunt`: put each seed report's bug back and sweep seeds from 0
//! until the simulator catches it, by the invariant that should.

use std::time::Instant;

use pool_sim::{Invariant, Mutation, Outcome};

use crate::seeds;
use crate::sim::{DEFAULT_EVENTS, reproduce_command};

/// For each mutation (the seed reports' bugs, put back), sweep seeds from 0
/// until a violation, and check it is caught by its expected invariant.
/// Prints a table: mutation, expected invariant, invariant found, first
/// failing seed, seeds tried, wall time. Exits non-zero when a mutation
/// escapes or is caught only by an unexpected invariant.
#[derive(clap::Args)]
pub struct Args {
    /// Hunt only this mutation (default: every one).
    #[arg(long, value_name = "NAME")]
    mutation: Option<Mutation>,
    /// Give up on a mutation after this many seeds.
    #[arg(long, default_value_t = MAX_SEEDS)]
    max_seeds: u64,
    /// Steps in each seed's safety phase.
    #[arg(long, default_value_t = DEFAULT_EVENTS)]
    events: u64,
    /// Worker threads (default: every core).
    #[arg(long)]
    jobs: Option<usize>,
}

/// Seeds a hunt tries before it calls a mutation escaped (`hunt`'s default;
/// `bench` and `compare` use it too, so their figures match a plain hunt).
pub const MAX_SEEDS: u64 = 10_000;

/// One mutation's hunt.
pub struct Hunt {
    pub mutation: Mutation,
    /// The lowest failing seed and what it broke.
    pub found: Option<(u64, Outcome)>,
    pub seeds_tried: u64,
    pub seconds: f64,
}

impl Hunt {
    /// Caught, and by an invariant expected for this mutation.
    pub fn caught_as_expected(&self) -> bool {
        let expected = Invariant::catching(self.mutation);
        matches!(&self.found, Some((_, Outcome::Violated(v))) if expected.contains(&v.invariant))
    }
}

/// Hunt one mutation over seeds `0..max_seeds`.
pub fn hunt(mutation: Mutation, max_seeds: u64, events: u64, jobs: usize) -> Hunt {
    let seeds: Vec<u64> = (0..max_seeds).collect();
    #[allow(clippy::disallowed_methods)] // wall time, reported only
    let started = Instant::now();
    let batch = seeds::run(&seeds, events, Some(mutation), jobs, true, |_| {});
    Hunt {
        mutation,
        found: batch
            .failures
            .into_iter()
            .next()
            .map(|f| (f.seed, f.outcome)),
        seeds_tried: batch.ran,
        seconds: started.elapsed().as_secs_f64(),
    }
}

pub fn run(args: Args) -> i32 {
    let mutations: Vec<Mutation> = match args.mutation {
        Some(m) => vec![m],
        None => Mutation::ALL.to_vec(),
    };
    let jobs = seeds::jobs(args.jobs);
    println!(
        "hunt: {} mutation(s), seeds from 0 up to {}, {} events each, {jobs} jobs",
        mutations.len(),
        args.max_seeds,
        args.events
    );
    let expected_of = |m: Mutation| {
        Invariant::catching(m)
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let name_width = mutations.iter().map(|m| m.name().len()).max().unwrap_or(8);
    let expected_width = mutations
        .iter()
        .map(|&m| expected_of(m).len())
        .max()
        .unwrap_or(8);
    let found_width = Invariant::ALL
        .iter()
        .map(|i| i.name().len())
        .max()
        .unwrap_or(5);
    println!(
        "{:<name_width$} {:<expected_width$} {:<found_width$} {:>10} {:>11} {:>9}  verdict",
        "mutation", "expected", "found", "first seed", "seeds tried", "wall"
    );
    let mut bad = Vec::new();
    for mutation in mutations {
        let h = hunt(mutation, args.max_seeds, args.events, jobs);
        // A found outcome is a failure: an invariant, or else a panic.
        let (found, seed) = match &h.found {
            Some((seed, outcome)) => (
                outcome.invariant().map_or("panic", |i| i.name()).to_owned(),
                seed.to_string(),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let verdict = if h.caught_as_expected() {
            "caught"
        } else if h.found.is_none() {
            "ESCAPED"
        } else {
            "WRONG INVARIANT"
        };
        println!(
            "{:<name_width$} {:<expected_width$} {:<found_width$} {:>10} {:>11} {:>8.2}s  {verdict}",
            mutation.name(),
            expected_of(mutation),
            found,
            seed,
            h.seeds_tried,
            h.seconds
        );
        if !h.caught_as_expected() {
            bad.push(h);
        }
    }
    if bad.is_empty() {
        println!("every mutation was caught by its expected invariant");
        return 0;
    }
    println!();
    for h in &bad {
        match &h.found {
            None => println!(
                "{} escaped {} seeds: the simulator does not reach it; widen the swarm or the events",
                h.mutation, h.seeds_tried
            ),
            Some((seed, outcome)) => println!(
                "{} was caught by an unexpected outcome ({outcome:?}); look: {}",
                h.mutation,
                reproduce_command(*seed, args.events, Some(h.mutation))
            ),
        }
    }
    1
}
