//! `cargo xtask compare`: which tool finds what. For every mutation, the
//! time and the inputs to the first failure under the seeded simulator's
//! hunt, under proptest, and under cargo-fuzz, all on one core.

use std::time::Instant;

use pool_sim::run::{Options, Outcome, run_scenario};
use pool_sim::{Mutation, strategy};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::fuzz::{ensure_cargo_fuzz, fuzz};
use crate::hunt::{MAX_SEEDS, hunt};
use crate::sim::DEFAULT_EVENTS;

/// For every mutation: time and inputs to the first failure under the
/// simulator's hunt (seeds), proptest (generated cases) and cargo-fuzz
/// (executions of the `transitions` target), one core each, with a cap.
#[derive(clap::Args)]
pub struct Args {
    /// Only this mutation (default: every one).
    #[arg(long, value_name = "NAME")]
    mutation: Option<Mutation>,
    /// Cap per tool and mutation, in seconds (cargo-fuzz, proptest).
    #[arg(long, default_value_t = 120)]
    seconds: u64,
}

/// One tool on one mutation: found after `inputs` in `seconds`, or not.
struct Attempt {
    inputs: u64,
    seconds: f64,
    found: bool,
}

impl Attempt {
    fn cell(&self) -> String {
        if self.found {
            format!("{} in {:.2} s", self.inputs, self.seconds)
        } else {
            format!("not in {} ({:.0} s)", self.inputs, self.seconds)
        }
    }
}

pub fn run(args: Args) -> i32 {
    if let Err(e) = ensure_cargo_fuzz() {
        eprintln!("error: {e}");
        return 1;
    }
    let mutations = match args.mutation {
        Some(m) => vec![m],
        None => Mutation::ALL.to_vec(),
    };
    // Build the fuzz target once, so no run pays for it.
    if let Err(e) = fuzz("transitions", 1, None, 1) {
        eprintln!("error: {e}");
        return 1;
    }
    println!(
        "compare: inputs and time to the first failure, one core, cap {} s per tool",
        args.seconds
    );
    println!(
        "{:<28} {:>24} {:>24} {:>24}",
        "mutation", "hunt (seeds)", "proptest (cases)", "cargo-fuzz (execs)"
    );
    for mutation in mutations {
        let h = hunt(mutation, MAX_SEEDS, DEFAULT_EVENTS, 1);
        let hunted = Attempt {
            inputs: h.seeds_tried,
            seconds: h.seconds,
            found: h.found.is_some(),
        };
        let prop = proptest_until_failure(mutation, args.seconds);
        let fuzzed = match fuzz("transitions", args.seconds, Some(mutation), 1) {
            Ok(run) => Attempt {
                inputs: run.executions,
                seconds: run.seconds,
                found: !run.artifacts.is_empty(),
            },
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        println!(
            "{:<28} {:>24} {:>24} {:>24}",
            mutation.name(),
            hunted.cell(),
            prop.cell(),
            fuzzed.cell()
        );
    }
    0
}

/// Generate scenarios (the properties' strategy) until one breaks an
/// invariant with `mutation`, from a fixed proptest seed.
fn proptest_until_failure(mutation: Mutation, cap_seconds: u64) -> Attempt {
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = strategy::scenario(120);
    let options = Options {
        mutation: Some(mutation),
        ..Options::default()
    };
    #[allow(clippy::disallowed_methods)] // wall time, reported only
    let started = Instant::now();
    let mut cases = 0;
    loop {
        let seconds = started.elapsed().as_secs_f64();
        if seconds > cap_seconds as f64 {
            return Attempt {
                inputs: cases,
                seconds,
                found: false,
            };
        }
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        cases += 1;
        let report = run_scenario(&tree.current(), options);
        if report.outcome != Outcome::Pass {
            return Attempt {
                inputs: cases,
                seconds: started.elapsed().as_secs_f64(),
                found: true,
            };
        }
    }
}
